# Reference values for psmeval-multilevel's tests: lme4 (lmer) + lmerTest (Satterthwaite df).
# Run from crates/multilevel:  Rscript tests/reference/lme4_reference.R
# Writes the data sets to tests/data/*.csv and the expected values to tests/reference/lme4_reference.json.
suppressPackageStartupMessages({ library(lme4); library(lmerTest); library(jsonlite) })
outdir <- "tests/data"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

write_data <- function(df, name) write.csv(df, file.path(outdir, paste0(name, ".csv")), row.names = FALSE)
write_data(sleepstudy, "sleepstudy")
write_data(Dyestuff, "dyestuff")
write_data(Dyestuff2, "dyestuff2")
write_data(Penicillin, "penicillin")
write_data(Pastes, "pastes")
cake2 <- cake
cake2$temperature <- as.integer(as.character(cake2$temperature))
write_data(cake2[, c("replicate", "recipe", "temperature", "angle")], "cake")
cake2$temperature <- factor(cake2$temperature)  # treatment contrasts (lme4's cake has an ordered factor)

ctrl <- lmerControl(optimizer = "nloptwrap",
                    optCtrl = list(ftol_rel = 1e-14, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5))

# Conditional SDs, levels x terms; postVar is a list of arrays when a factor has several (|| ) terms.
cond_sd <- function(pv, nlev) {
  if (is.list(pv)) return(do.call(cbind, lapply(pv, cond_sd, nlev = nlev)))
  matrix(t(sapply(seq_len(nlev), function(i) sqrt(diag(as.matrix(pv[, , i]))))), nrow = nlev)
}

describe <- function(fit) {
  s <- summary(fit, ddf = "Satterthwaite")
  cf <- coef(s)
  vc <- as.data.frame(VarCorr(fit))
  re <- ranef(fit, condVar = TRUE)
  ranefs <- lapply(names(re), function(g) {
    r <- re[[g]]
    pv <- attr(r, "postVar")
    list(group = g, levels = rownames(r), terms = colnames(r),
         values = unname(as.matrix(r)),
         cond_sd = cond_sd(pv, nrow(r)))
  })
  list(
    reml = isREML(fit),
    theta = unname(getME(fit, "theta")),
    beta_names = rownames(cf),
    beta = unname(cf[, "Estimate"]),
    std_error = unname(cf[, "Std. Error"]),
    df = unname(cf[, "df"]),
    t_value = unname(cf[, "t value"]),
    p_value = unname(cf[, "Pr(>|t|)"]),
    sigma = sigma(fit),
    varcomp = lapply(seq_len(nrow(vc)), function(i)
      list(group = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    loglik = as.numeric(logLik(fit)),
    criterion = if (isREML(fit)) unname(REMLcrit(fit)) else unname(deviance(fit)),
    aic = AIC(fit),
    bic = BIC(fit),
    singular = isSingular(fit),
    ngrps = as.list(ngrps(fit)),
    ranef = ranefs
  )
}

models <- list(
  sleep_corr = list(Reaction ~ Days + (Days | Subject), sleepstudy),
  sleep_uncorr = list(Reaction ~ Days + (Days || Subject), sleepstudy),
  dyestuff = list(Yield ~ 1 + (1 | Batch), Dyestuff),
  dyestuff2 = list(Yield ~ 1 + (1 | Batch), Dyestuff2),
  penicillin = list(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin),
  pastes = list(strength ~ 1 + (1 | batch / cask), Pastes),
  cake = list(angle ~ recipe * temperature + (1 | recipe:replicate), cake2)
)

out <- list()
for (nm in names(models)) {
  m <- models[[nm]]
  for (reml in c(TRUE, FALSE)) {
    fit <- lmerTest::lmer(m[[1]], data = m[[2]], REML = reml, control = ctrl)
    out[[paste0(nm, if (reml) "_reml" else "_ml")]] <- describe(fit)
  }
}
# Likelihood-ratio test between nested ML fits: sleepstudy uncorrelated vs correlated.
m0 <- lme4::lmer(Reaction ~ Days + (Days || Subject), sleepstudy, REML = FALSE, control = ctrl)
m1 <- lme4::lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE, control = ctrl)
a <- anova(m0, m1)
out$lrt_sleep <- list(chisq = a$Chisq[2], df = a$Df[2], p_value = a$`Pr(>Chisq)`[2])
out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     lmerTest = as.character(packageVersion("lmerTest")))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/lme4_reference.json")
