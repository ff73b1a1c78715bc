# Reference values for Satterthwaite tests of contrasts (lmerTest's contest1D) and for prior weights in lmer.
# Run from crates/multilevel:  Rscript tests/reference/contrast_weights_reference.R
# Writes tests/data/sleepstudy_did.csv and tests/reference/contrast_weights_reference.json.
suppressPackageStartupMessages({ library(lme4); library(lmerTest); library(jsonlite) })

d <- sleepstudy
d$Subject <- as.character(d$Subject)
# A difference-in-differences layout: four periods, half the subjects "treated".
d$period <- pmin(d$Days %/% 3, 3)
d$g <- as.integer(as.integer(factor(d$Subject)) %% 2 == 0)
d$w <- 1 + (d$Days %% 3) / 2
write.csv(d[, c("Reaction", "Days", "Subject", "period", "g", "w")], "tests/data/sleepstudy_did.csv", row.names = FALSE)

ctrl <- lmerControl(optimizer = "nloptwrap",
                    optCtrl = list(ftol_rel = 1e-14, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5))

fit_did <- lmer(Reaction ~ factor(period) * g + (1 | Subject), data = d, REML = TRUE, control = ctrl)
nm <- names(fixef(fit_did))
L <- function(w) { v <- setNames(rep(0, length(nm)), nm); v[names(w)] <- w; unname(v) }
# Per-period effects relative to the mean of periods 0 and 1, and their mean (as psmeval evaluate builds them).
contrasts <- list(
  L(c("factor(period)2:g" = 1, "factor(period)1:g" = -0.5)),
  L(c("factor(period)3:g" = 1, "factor(period)1:g" = -0.5)),
  L(c("factor(period)2:g" = 0.5, "factor(period)3:g" = 0.5, "factor(period)1:g" = -0.5)),
  L(c("(Intercept)" = 1, "g" = 1))
)
tests <- lapply(contrasts, function(l) {
  r <- contest1D(fit_did, l)
  list(l = l, estimate = r$Estimate, std_error = r$`Std. Error`, df = r$df, t_value = r$`t value`,
       p_value = r$`Pr(>|t|)`)
})

weighted <- lapply(c(TRUE, FALSE), function(reml) {
  f <- lmer(Reaction ~ Days + (Days | Subject), data = d, weights = w, REML = reml, control = ctrl)
  s <- summary(f, ddf = "Satterthwaite")
  list(reml = reml, log_likelihood = as.numeric(logLik(f)),
       criterion = if (reml) REMLcrit(f) else deviance(f), aic = AIC(f), bic = BIC(f),
       beta = unname(fixef(f)), std_error = unname(coef(s)[, "Std. Error"]), df = unname(coef(s)[, "df"]),
       sigma = sigma(f), theta = unname(getME(f, "theta")))
})

out <- list(
  lme4_version = as.character(packageVersion("lme4")),
  lmerTest_version = as.character(packageVersion("lmerTest")),
  did = list(formula = "Reaction ~ factor(period) * g + (1 | Subject)", names = nm,
             log_likelihood = as.numeric(logLik(fit_did)), contrasts = tests),
  weighted = list(formula = "Reaction ~ Days + (Days | Subject)", fits = weighted)
)
write_json(out, "tests/reference/contrast_weights_reference.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
