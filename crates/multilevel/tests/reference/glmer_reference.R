# Reference values for crates/multilevel/tests/glmm_reference.rs, produced with R + lme4 (glmer).
# Run from crates/multilevel:  Rscript tests/reference/glmer_reference.R
# Writes tests/data/cbpp.csv, tests/data/glmm_schools.csv and tests/reference/glmer_reference.json.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })

cb <- lme4::cbpp
cb$failures <- cb$size - cb$incidence
write.csv(data.frame(herd = as.character(cb$herd), incidence = cb$incidence, size = cb$size,
                     failures = cb$failures, period = as.character(cb$period)),
          "tests/data/cbpp.csv", row.names = FALSE)

# Synthetic 'expected standard' data: 200 schools x 30 pupils, random school intercept.
set.seed(20261122)
J <- 200; m <- 30; n <- J * m
school <- rep(sprintf("s%03d", seq_len(J)), each = m)
u <- rnorm(J, 0, 0.6)[rep(seq_len(J), each = m)]
year <- sample(c("2022", "2023", "2024"), n, replace = TRUE)
lead <- rbinom(n, 1, 0.4)
fsm <- rbinom(n, 1, 0.25); eal <- rbinom(n, 1, 0.2); sen <- rbinom(n, 1, 0.15); female <- rbinom(n, 1, 0.5)
prior <- round(rnorm(n), 4)
eta <- -0.3 + 0.2 * (year == "2023") + 0.35 * (year == "2024") + 0.25 * lead + 0.15 * lead * (year == "2024") -
  0.4 * fsm - 0.1 * eal - 0.5 * sen + 0.1 * female + 0.9 * prior + u
y <- rbinom(n, 1, plogis(eta))
sch <- data.frame(school, y, year, lead, fsm, eal, sen, female, prior)
write.csv(sch, "tests/data/glmm_schools.csv", row.names = FALSE)

summarise <- function(fit) {
  re <- ranef(fit, condVar = TRUE)[[1]]
  pv <- attr(re, "postVar")
  vc <- as.data.frame(VarCorr(fit))
  list(
    nagq = fit@devcomp$dims[["nAGQ"]],
    logLik = as.numeric(logLik(fit)), deviance = deviance(fit), AIC = AIC(fit), BIC = BIC(fit),
    # What the optimizer minimized (lme4's devfun at the optimum) and its parts.
    devfun_value = update(fit, devFunOnly = TRUE)(c(getME(fit, "theta"), fixef(fit))),
    sum_dev_resid = sum(residuals(fit, type = "deviance")^2), sum_u2 = sum(getME(fit, "u")^2),
    ldL2 = fit@pp$ldL2(),
    theta = unname(getME(fit, "theta")), beta = unname(fixef(fit)), beta_names = names(fixef(fit)),
    se_hessian = unname(sqrt(diag(as.matrix(vcov(fit, use.hessian = TRUE))))),
    se_rx = unname(sqrt(diag(as.matrix(vcov(fit, use.hessian = FALSE))))),
    variance = vc$vcov, std_dev = vc$sdcor,
    ranef = unname(re[, 1]), ranef_levels = rownames(re), ranef_sd = sqrt(pv[1, 1, ]),
    z_value = unname(coef(summary(fit))[, 3]), p_value = unname(coef(summary(fit))[, 4])
  )
}
out <- list()
f1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)
out$cbpp_laplace <- summarise(f1)
f10 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial, nAGQ = 10)
out$cbpp_agq10 <- summarise(f10)
t0 <- Sys.time()
fs <- glmer(y ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school), data = sch, family = binomial)
out$schools_laplace <- summarise(fs)
out$schools_laplace$seconds <- as.numeric(Sys.time() - t0, units = "secs")
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/reference/glmer_reference.json")
