# Reference values for psmeval-multilevel's logistic GLMMs with several random-effects terms (nested and
# crossed), fitted by lme4's glmer (Laplace).
# Run from crates/multilevel:  Rscript tests/reference/glmer_multiterm_reference.R
# Writes the data sets to tests/data/*.csv and the expected values to
# tests/reference/glmer_multiterm_reference.json.
#   chem97_pass   A-level chemistry pupils in schools in local education authorities (mlmRev::Chem97, real
#                 data), a pass at grade C or above (score >= 6): (1 | lea) + (1 | lea:school), nested
#   cohorts_bin   pupils in school-years in schools, simulated as the evaluation's design with a school-by-year
#                 (cohort) shock: (1 | school) + (1 | school:year), nested; and with a random slope on year in
#                 the school term, (1 + yr | school) + (1 | school:year)
#   feeder_bin    pupils cross-classified by primary and secondary school, simulated: (1 | primary) +
#                 (1 | secondary), crossed
#   cbpp_obs      lme4's cbpp with an observation-level random effect for overdispersion, binomial totals as
#                 weights: cbind(incidence, failures) ~ period + (1 | herd) + (1 | obs), nested
# glmer runs with bobyqa in both stages and a tight end radius, so its optimum is its objective's own (not
# the default tolerance's approach to it), and with tolPwrss = 1e-11: with the default 1e-7 its PIRLS stops
# while the penalized deviance still changes by 1e-7 relative, and log|L|² is then evaluated with the weights
# of the penultimate iterate, which moves the objective by up to 0.09 (chem97) and the optimum with it. Each
# model is also fitted with glmer's default PIRLS tolerance (`<name>_default`), to measure that difference.
suppressPackageStartupMessages({ library(lme4); library(jsonlite); library(mlmRev) })
outdir <- "tests/data"
write_data <- function(df, name) write.csv(df, file.path(outdir, paste0(name, ".csv")), row.names = FALSE)
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-9), tolPwrss = 1e-11)
ctrl_default <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-9))

cond_sd <- function(pv, nlev) {
  if (is.list(pv)) return(do.call(cbind, lapply(pv, cond_sd, nlev = nlev)))
  matrix(t(sapply(seq_len(nlev), function(i) sqrt(diag(as.matrix(pv[, , i]))))), nrow = nlev)
}
describe <- function(fit, seconds) {
  vc <- as.data.frame(VarCorr(fit))
  re <- ranef(fit, condVar = TRUE)
  ranefs <- lapply(names(re), function(g) {
    r <- re[[g]]
    pv <- attr(r, "postVar")
    keep <- seq_len(min(200, nrow(r)))
    list(group = g, levels = rownames(r)[keep], terms = colnames(r),
         values = unname(as.matrix(r))[keep, , drop = FALSE],
         cond_sd = cond_sd(pv, nrow(r))[keep, , drop = FALSE])
  })
  cf <- coef(summary(fit))
  list(
    logLik = as.numeric(logLik(fit)), deviance = deviance(fit), AIC = AIC(fit), BIC = BIC(fit),
    devfun_value = update(fit, devFunOnly = TRUE)(c(getME(fit, "theta"), fixef(fit))),
    sum_dev_resid = sum(residuals(fit, type = "deviance")^2), sum_u2 = sum(getME(fit, "u")^2),
    ldL2 = fit@pp$ldL2(),
    theta = unname(getME(fit, "theta")), beta = unname(fixef(fit)), beta_names = names(fixef(fit)),
    se_hessian = unname(sqrt(diag(as.matrix(vcov(fit, use.hessian = TRUE))))),
    se_rx = unname(sqrt(diag(as.matrix(vcov(fit, use.hessian = FALSE))))),
    z_value = unname(cf[, 3]), p_value = unname(cf[, 4]),
    varcomp = lapply(seq_len(nrow(vc)), function(i)
      list(group = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    singular = isSingular(fit), ngrps = as.list(ngrps(fit)),
    messages = fit@optinfo$conv$lme4$messages,
    glmer_seconds = seconds,
    ranef = ranefs
  )
}

chem <- Chem97[, c("lea", "school", "score", "gcsecnt")]
chem$pass <- as.numeric(chem$score >= 6)
chem$score <- NULL
write_data(chem, "chem97_pass")

set.seed(20261206)
n_school <- 300; years <- 2013:2017; per <- 12
g <- expand.grid(pupil = seq_len(per), year = years, school = seq_len(n_school))
treated_school <- rbinom(n_school, 1, 0.3)
u0 <- rnorm(n_school, 0, 0.5); u1 <- rnorm(n_school, 0, 0.15)
cohort <- rnorm(n_school * length(years), 0, 0.35)
g$yr <- g$year - 2015
g$treated <- treated_school[g$school]
g$post <- as.numeric(g$year >= 2015)
g$prior <- round(rnorm(nrow(g)), 4)
ci <- (g$school - 1) * length(years) + (g$year - 2012)
eta <- -0.2 + 0.8 * g$prior + 0.25 * g$post * g$treated + u0[g$school] + u1[g$school] * g$yr + cohort[ci]
g$y <- rbinom(nrow(g), 1, plogis(eta))
g$school <- sprintf("s%03d", g$school)
cohorts <- g[, c("school", "year", "yr", "treated", "post", "prior", "y")]
write_data(cohorts, "cohorts_bin")

set.seed(7)
n_primary <- 3000; n_secondary <- 400; per_primary <- 5
pid <- rep(seq_len(n_primary), each = per_primary)
sid <- pmin(n_secondary, pmax(1, floor((pid - 1) / 7.5) + 1 + sample(-2:2, length(pid), replace = TRUE)))
x <- round(rnorm(length(pid)), 4)
eta <- 0.3 + 0.6 * x + rnorm(n_primary, 0, 0.7)[pid] + rnorm(n_secondary, 0, 0.5)[sid]
feeder <- data.frame(primary = sprintf("p%04d", pid), secondary = sprintf("q%03d", sid), x = x,
                     y = rbinom(length(pid), 1, plogis(eta)))
write_data(feeder, "feeder_bin")

cb <- lme4::cbpp
cbpp_obs <- data.frame(herd = as.character(cb$herd), obs = sprintf("o%02d", seq_len(nrow(cb))),
                       incidence = cb$incidence, failures = cb$size - cb$incidence, period = as.character(cb$period))
write_data(cbpp_obs, "cbpp_obs")

models <- list(
  chem97_pass = list(pass ~ gcsecnt + (1 | lea) + (1 | lea:school), chem),
  cohorts_bin = list(y ~ post * treated + prior + (1 | school) + (1 | school:year), cohorts),
  cohorts_bin_slope = list(y ~ post * treated + prior + (1 + yr | school) + (1 | school:year), cohorts),
  feeder_bin = list(y ~ x + (1 | primary) + (1 | secondary), feeder),
  cbpp_obs = list(cbind(incidence, failures) ~ period + (1 | herd) + (1 | obs), cbpp_obs)
)
out <- list()
for (nm in names(models)) {
  m <- models[[nm]]
  t0 <- proc.time()[["elapsed"]]
  fit <- glmer(m[[1]], data = m[[2]], family = binomial, control = ctrl)
  secs <- proc.time()[["elapsed"]] - t0
  out[[nm]] <- describe(fit, secs)
  t0 <- proc.time()[["elapsed"]]
  fit_default <- glmer(m[[1]], data = m[[2]], family = binomial, control = ctrl_default)
  secs_default <- proc.time()[["elapsed"]] - t0
  out[[paste0(nm, "_default")]] <- describe(fit_default, secs_default)
  cat(nm, secs, "s (tolPwrss 1e-11),", secs_default, "s (default)\n")
}
out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE),
           "tests/reference/glmer_multiterm_reference.json")
