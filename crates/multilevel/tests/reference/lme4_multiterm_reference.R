# Reference values for psmeval-multilevel's multi-term (nested and crossed) tests: lme4 (lmer) + lmerTest.
# Run from crates/multilevel:  Rscript tests/reference/lme4_multiterm_reference.R
# Writes the data sets to tests/data/*.csv and the expected values to
# tests/reference/lme4_multiterm_reference.json (same layout as lme4_reference.json).
#   chem97    pupils in schools in local education authorities (mlmRev::Chem97, real data), nested
#   egsingle  a three-level growth model: scores in pupils in schools, random intercept and slope in both
#             terms (mlmRev::egsingle, real data), nested
#   cohorts   pupils in school-years in schools, simulated: (1 + yr | school) + (1 | school:year), nested
#   insteval  lme4::InstEval, three crossed terms (73,421 ratings; 2,972 + 1,128 + 28 levels)
#   feeder    simulated cross-classification of pupils by primary and secondary school with more than 50,000
#             levels (45,000 primary + 6,000 secondary schools), crossed
suppressPackageStartupMessages({ library(lme4); library(lmerTest); library(jsonlite); library(mlmRev) })
outdir <- "tests/data"
write_data <- function(df, name) write.csv(df, file.path(outdir, paste0(name, ".csv")), row.names = FALSE)

ctrl <- lmerControl(optimizer = "nloptwrap",
                    optCtrl = list(ftol_rel = 1e-14, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5))
cond_sd <- function(pv, nlev) {
  if (is.list(pv)) return(do.call(cbind, lapply(pv, cond_sd, nlev = nlev)))
  matrix(t(sapply(seq_len(nlev), function(i) sqrt(diag(as.matrix(pv[, , i]))))), nrow = nlev)
}
describe <- function(fit, seconds) {
  s <- summary(fit, ddf = "Satterthwaite")
  cf <- coef(s)
  vc <- as.data.frame(VarCorr(fit))
  re <- ranef(fit, condVar = TRUE)
  ranefs <- lapply(names(re), function(g) {
    r <- re[[g]]
    pv <- attr(r, "postVar")
    # At most 200 levels per term keep the JSON small; the first ones in lme4's level order.
    keep <- seq_len(min(200, nrow(r)))
    list(group = g, levels = rownames(r)[keep], terms = colnames(r),
         values = unname(as.matrix(r))[keep, , drop = FALSE],
         cond_sd = cond_sd(pv, nrow(r))[keep, , drop = FALSE])
  })
  list(
    reml = isREML(fit), theta = unname(getME(fit, "theta")), beta_names = rownames(cf),
    beta = unname(cf[, "Estimate"]), std_error = unname(cf[, "Std. Error"]), df = unname(cf[, "df"]),
    t_value = unname(cf[, "t value"]), p_value = unname(cf[, "Pr(>|t|)"]), sigma = sigma(fit),
    varcomp = lapply(seq_len(nrow(vc)), function(i)
      list(group = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    loglik = as.numeric(logLik(fit)),
    criterion = if (isREML(fit)) unname(REMLcrit(fit)) else unname(deviance(fit)),
    aic = AIC(fit), bic = BIC(fit), singular = isSingular(fit), ngrps = as.list(ngrps(fit)),
    converged = is.null(fit@optinfo$conv$lme4$messages),
    lmer_seconds = seconds,
    ranef = ranefs
  )
}

chem97 <- Chem97[, c("lea", "school", "score", "gcsecnt")]
write_data(chem97, "chem97")
eg <- egsingle[, c("schoolid", "childid", "year", "math")]
write_data(eg, "egsingle")

set.seed(20261202)
n_school <- 400; years <- 2013:2017; per <- 15
g <- expand.grid(pupil = seq_len(per), year = years, school = seq_len(n_school))
treated_school <- rbinom(n_school, 1, 0.3)
u0 <- rnorm(n_school, 0, 0.3); u1 <- rnorm(n_school, 0, 0.05)
cohort <- rnorm(n_school * length(years), 0, 0.1)
g$yr <- g$year - 2015
g$treated <- treated_school[g$school]
g$post <- as.numeric(g$year >= 2015)
g$prior <- round(rnorm(nrow(g)), 4)
ci <- (g$school - 1) * length(years) + (g$year - 2012)
g$y <- round(0.2 + 0.5 * g$prior + 0.1 * g$post * g$treated + u0[g$school] + u1[g$school] * g$yr +
             cohort[ci] + rnorm(nrow(g), 0, 0.8), 5)
g$school <- sprintf("s%03d", g$school)
cohorts <- g[, c("school", "year", "yr", "treated", "post", "prior", "y")]
write_data(cohorts, "cohorts")

ie <- data.frame(s = InstEval$s, d = InstEval$d, dept = InstEval$dept,
                 service = as.character(InstEval$service), service1 = as.numeric(InstEval$service == "1"),
                 y = InstEval$y)
write_data(ie, "insteval")

set.seed(5)
n_primary <- 45000; n_secondary <- 6000; per_primary <- 3
pid <- rep(seq_len(n_primary), each = per_primary)
# Each primary sends its pupils to secondaries near it (a band), so the cross-classification is local.
sid <- pmin(n_secondary, pmax(1, floor((pid - 1) / 7.5) + 1 + sample(-1:1, length(pid), replace = TRUE)))
x <- round(rnorm(length(pid)), 4)
y <- round(1 + 0.3 * x + rnorm(n_primary, 0, 0.4)[pid] + rnorm(n_secondary, 0, 0.3)[sid] +
           rnorm(length(pid), 0, 0.7), 5)
feeder <- data.frame(primary = sprintf("p%05d", pid), secondary = sprintf("q%04d", sid), x = x, y = y)
write_data(feeder, "feeder")

models <- list(
  chem97 = list(score ~ gcsecnt + (1 | lea) + (1 | lea:school), chem97, c(TRUE, FALSE)),
  egsingle = list(math ~ year + (year | schoolid) + (year | childid), eg, TRUE),
  cohorts = list(y ~ post * treated + prior + (1 + yr | school) + (1 | school:year), cohorts, c(TRUE, FALSE)),
  insteval = list(y ~ service1 + (1 | s) + (1 | d) + (1 | dept:service), ie, TRUE),
  feeder = list(y ~ x + (1 | primary) + (1 | secondary), feeder, TRUE)
)
out <- list()
for (nm in names(models)) {
  m <- models[[nm]]
  for (reml in m[[3]]) {
    t0 <- proc.time()[["elapsed"]]
    fit <- lmerTest::lmer(m[[1]], data = m[[2]], REML = reml, control = ctrl)
    secs <- proc.time()[["elapsed"]] - t0
    out[[paste0(nm, if (reml) "_reml" else "_ml")]] <- describe(fit, secs)
    cat(nm, reml, secs, "s\n")
  }
}
out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     lmerTest = as.character(packageVersion("lmerTest")))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE),
           "tests/reference/lme4_multiterm_reference.json")
