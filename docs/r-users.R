# The R side of docs/r-users.md: prints every R number on that page.
#
# Run from the workspace root:  Rscript docs/r-users.R
# (optionally  R_USERS_JSON=/tmp/r-users.json Rscript docs/r-users.R  also writes the numbers as JSON).
# Produced with R 4.2.2 Patched (2022-11-10 r83330) on Debian 12 with the Debian packages MatchIt 4.5.1,
# lme4 1.1.31, lmerTest 3.1.3, Matrix 1.5.3 and jsonlite 1.8.4. Runtime about 5 s.
#
# Data: the shipped copies psmeval reads, so both programs see the same rows:
#   crates/matching/tests/data/lalonde.csv      MatchIt's lalonde (first column = row names, race as text)
#   crates/multilevel/tests/data/sleepstudy.csv lme4's sleepstudy
#   crates/multilevel/tests/data/cbpp.csv       lme4's cbpp, plus failures = size - incidence
#
# Debian's MatchIt 4.5.1 has a broken nearest-neighbour search (MatchIt issue #163) and psmeval follows
# MatchIt 4.7, so no comparison uses 4.5.1's matched sets (1c only counts how many of 4.7's pairs 4.5.1
# reproduces). The matched set of section 1c is MatchIt 4.7's own test snapshot (ngreifer/MatchIt
# tests/testthat/_snaps/nearest_snapshots.md, commit e352e52, as stored in
# crates/matching/tests/reference/nearest_scores.json); only MatchIt's balance code (summary.matchit,
# unaffected by the bug) is run on it.
suppressPackageStartupMessages({
  library(MatchIt)
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})
options(width = 120)
cat(R.version.string, "| MatchIt", format(packageVersion("MatchIt")), "| lme4", format(packageVersion("lme4")),
    "| lmerTest", format(packageVersion("lmerTest")), "| Matrix", format(packageVersion("Matrix")), "\n")

out <- list()                                    # everything printed, for R_USERS_JSON (see the end)
show <- function(key, title, x, digits = 7) {
  cat("\n==", title, "==\n")
  print(x, digits = digits)
  out[[key]] <<- if (is.matrix(x) || is.data.frame(x)) as.data.frame(x) else as.list(x)
  invisible(x)
}

# ------------------------------------------------------------------------------------------------------
# 1. psmeval match  vs  glm() + matchit() + summary()
# ------------------------------------------------------------------------------------------------------
d <- read.csv("crates/matching/tests/data/lalonde.csv", row.names = 1)
d$race <- factor(d$race)                         # black (reference), hispan, white: as MatchIt's lalonde
f <- treat ~ age + educ + race + married + nodegree + re74 + re75

# (a) The propensity model matchit() fits by default (distance = "glm", link = "logit").
ps_fit <- glm(f, data = d, family = binomial)
show("glm_coef", "1a glm coefficients (Estimate, SE)", coef(summary(ps_fit))[, 1:2], 10)
show("glm_fit", "1a glm deviance / AIC", c(deviance = deviance(ps_fit), AIC = AIC(ps_fit)), 10)
cat("\n1a propensity scores fitted(ps_fit), first 5 (all 614 in R_USERS_JSON):\n")
print(head(fitted(ps_fit), 5), digits = 15)
out$glm_fitted <- unname(fitted(ps_fit))

# (b) Balance before matching: summary(matchit(method = NULL)) (full sample; SMD scaled by the treated
#     group's SD, the ATT convention).
m0 <- matchit(f, data = d, method = NULL, distance = "glm")
show("balance_before", "1b balance before matching: summary(matchit(method = NULL))$sum.all",
     summary(m0)$sum.all[, 1:6])

# (c) Balance after 1:1 nearest-neighbour matching without replacement, largest score first (matchit's
#     defaults), on MatchIt 4.7's matched set.
ref <- fromJSON("crates/matching/tests/reference/nearest_scores.json", simplifyVector = FALSE)
titles <- vapply(ref$snapshots, `[[`, "", "title")
snap <- ref$snapshots[[which(titles == "baseline: PS vector, m.order='largest' (default)")]]
mm47 <- matrix(vapply(snap$value, function(v) if (is.null(v)) NA_character_ else v, ""),
               nrow = snap$nrow, ncol = snap$ncol, dimnames = list(unlist(snap$rownames), NULL))
m1 <- matchit(f, data = d, method = "nearest")   # a container only: its matched sets are replaced below
treat <- setNames(d$treat, rownames(d))
m1$match.matrix <- mm47[names(treat)[treat == 1], , drop = FALSE]
m1$subclass <- MatchIt:::mm2subclass(m1$match.matrix, treat)
m1$weights <- MatchIt:::weights.matrix(m1$match.matrix, treat)
s1 <- summary(m1)
show("nn_after", "1c sample sizes, MatchIt 4.7 matched set: summary(m)$nn", s1$nn)
show("balance_after", "1c balance after matching, MatchIt 4.7 matched set: summary(m)$sum.matched",
     s1$sum.matched[, 1:6])
cat("\n1c first matched pairs (treated -> control):\n")
print(head(m1$match.matrix, 3))
out$pairs_after <- as.list(setNames(m1$match.matrix[, 1], rownames(m1$match.matrix)))
# Why 4.5.1's own matched set is not used: it differs from 4.7's on this, MatchIt's default, case.
m451 <- matchit(f, data = d, method = "nearest")
same <- sum(m451$match.matrix[rownames(mm47), 1] == mm47[, 1], na.rm = TRUE)
show("pairs_451_same", "1c (not used) pairs of Debian's MatchIt 4.5.1 equal to 4.7's", c(same = same, of = nrow(mm47)))

# ------------------------------------------------------------------------------------------------------
# 2. psmeval lmm  vs  lmer() + lmerTest summary()   (lme4's default optimizer and tolerances)
# ------------------------------------------------------------------------------------------------------
sleep <- read.csv("crates/multilevel/tests/data/sleepstudy.csv")
sleep$Subject <- factor(sleep$Subject)
lmm_report <- function(key, label, fit) {
  show(paste0(key, "_fixef"), paste(label, "fixed effects (Estimate, SE, Satterthwaite df, t, p)"),
       coef(summary(fit)))
  vc <- as.data.frame(VarCorr(fit))
  show(paste0(key, "_vc"), paste(label, "variance components"),
       data.frame(vc[, 1:3], variance = vc$vcov, sd_or_cor = vc$sdcor))
  show(paste0(key, "_fit"), paste(label, "logLik / REML criterion / AIC / BIC"),
       c(logLik = as.numeric(logLik(fit)), REMLcrit = REMLcrit(fit), AIC = AIC(fit), BIC = BIC(fit)), 10)
}
fit_slope <- lmer(Reaction ~ Days + (Days | Subject), data = sleep)        # REML (default)
lmm_report("sleep_slope", "2a sleepstudy, Reaction ~ Days + (Days | Subject), REML:", fit_slope)
# The same model with the tight optimizer tolerances of the test references
# (crates/multilevel/tests/reference/lme4_reference.R): what remains is R's default stopping rule.
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_rel = 1e-14, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5))
lmm_report("sleep_slope_tight", "2a' the same, tight optimizer tolerances:",
           lmer(Reaction ~ Days + (Days | Subject), data = sleep, control = tight))
fit_int <- lmer(Reaction ~ Days + (1 | Subject), data = sleep)             # REML (default)
lmm_report("sleep_int", "2b sleepstudy, Reaction ~ Days + (1 | Subject), REML:", fit_int)

# ------------------------------------------------------------------------------------------------------
# 3. psmeval lmm --family binomial  vs  glmer()
# ------------------------------------------------------------------------------------------------------
cbpp_d <- read.csv("crates/multilevel/tests/data/cbpp.csv")
glmm_report <- function(key, label, fit) {
  show(paste0(key, "_fixef"), paste(label, "fixed effects (Estimate, SE, z, p)"), coef(summary(fit)))
  vc <- as.data.frame(VarCorr(fit))
  show(paste0(key, "_vc"), paste(label, "herd variance / SD"), c(variance = vc$vcov, sd = vc$sdcor))
  show(paste0(key, "_fit"), paste(label, "logLik / deviance / AIC / BIC"),
       c(logLik = as.numeric(logLik(fit)), deviance = deviance(fit), AIC = AIC(fit), BIC = BIC(fit)), 10)
}
fit_cbpp <- glmer(cbind(incidence, size - incidence) ~ factor(period) + (1 | herd),
                  data = cbpp_d, family = binomial)                          # Laplace (nAGQ = 1)
glmm_report("cbpp_laplace", "3a cbpp, Laplace:", fit_cbpp)
# glmer's Laplace objective (-2 log-likelihood) at its own optimum and at psmeval's estimates (theta, beta
# copied from `psmeval lmm --family binomial --json` on the same model): the two Laplace objectives differ.
devfun <- update(fit_cbpp, devFunOnly = TRUE)
psmeval_par <- c(0.6422614508356042,                                # theta = herd SD
                 -1.3985321497873593, -0.9923327249408384, -1.1286720996863244, -1.5803138889955095)
show("cbpp_devfun", "3a glmer's Laplace objective at glmer's and at psmeval's estimates",
     c(at_glmer = devfun(c(getME(fit_cbpp, "theta"), fixef(fit_cbpp))), at_psmeval = devfun(psmeval_par)), 10)
fit_cbpp10 <- update(fit_cbpp, nAGQ = 10)                                   # adaptive Gauss-Hermite
glmm_report("cbpp_agq10", "3b cbpp, nAGQ = 10:", fit_cbpp10)

# ------------------------------------------------------------------------------------------------------
# The same numbers as JSON (15 significant digits), for a mechanical comparison with psmeval's --json.
# ------------------------------------------------------------------------------------------------------
if (nzchar(Sys.getenv("R_USERS_JSON"))) {
  writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, dataframe = "columns", rownames = TRUE, na = "null"),
             Sys.getenv("R_USERS_JSON"))
}
