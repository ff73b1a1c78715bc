# Reference values for CR2 cluster-robust inference after lmer fits, as computed by clubSandwich:
#   vcovCR(fit, cluster = ..., type = "CR2"), coef_test(..., test = "Satterthwaite"),
#   Wald_test(..., test = "HTZ") and linear_contrast(..., test = "Satterthwaite").
# The maths is written up in /work/notes/cr2.md.
#
# Generated with R 4.2.2 Patched (2022-11-10), lme4 1.1.31, clubSandwich 0.5.8, nlme 3.1.162, Matrix 1.5.3
# (Debian packages). Runtime ~20 s.
# (clubSandwich 0.6.0, the current release, has the same lmerMod code.)
#
# Rerun from crates/multilevel:  Rscript tests/reference/cr2_reference.R
# Reads tests/data/{sleepstudy,sleepstudy_did,glmm_schools}.csv; writes tests/data/cr2_nested.csv (a small
# synthetic data set: 30 sets x 3 schools x 8 pupils, set-level treatment) and tests/reference/cr2_reference.json.
# Numbers are written with sprintf("%.17g") (jsonlite's digits = NA keeps only 15 significant digits).
#
# Besides clubSandwich's numbers, the script contains an independent implementation of the formulas in the note
# (dense per-cluster version and a reduced "low-rank" version that never forms n_j x n_j matrices) and records
# how far each is from clubSandwich ("checks"), so the note's formulas are verified, not just transcribed.
# clubSandwich refuses lmer fits with prior weights; for the weighted model the JSON holds the natural
# extension (working covariance Z_j Lambda Lambda' Z_j' + diag(1/w_j)) from the implementation below, cross-checked
# against clubSandwich's own lme (nlme) method with weights = varFixed(~ 1/w), which uses that working covariance.
suppressPackageStartupMessages({ library(lme4); library(clubSandwich); library(nlme) })

ctrl <- lmerControl(optimizer = "nloptwrap",
                    optCtrl = list(ftol_rel = 1e-14, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5))

# ---------------------------------------------------------------- JSON writer with full precision
json_num <- function(v) ifelse(is.finite(v), sprintf("%.17g", v), "null")
json_str <- function(s) paste0('"', gsub('"', '\\"', gsub("\\", "\\\\", s, fixed = TRUE), fixed = TRUE), '"')
to_json <- function(x, ind = "") {
  ind2 <- paste0(ind, "  ")
  if (is.null(x)) return("null")
  if (is.list(x)) {
    if (length(x) == 0) return(if (is.null(names(x))) "[]" else "{}")
    items <- vapply(x, to_json, "", ind = ind2)
    if (!is.null(names(x))) items <- paste0(json_str(names(x)), ": ", items)
    br <- if (is.null(names(x))) c("[", "]") else c("{", "}")
    return(paste0(br[1], "\n", ind2, paste(items, collapse = paste0(",\n", ind2)), "\n", ind, br[2]))
  }
  if (is.matrix(x)) return(to_json(lapply(seq_len(nrow(x)), function(i) I(unname(x[i, ]))), ind))
  box <- inherits(x, "AsIs") || length(x) != 1
  x <- unclass(x)
  v <- if (is.character(x) || is.factor(x)) json_str(as.character(x))
       else if (is.logical(x)) ifelse(x, "true", "false")
       else json_num(as.numeric(x))
  if (box) paste0("[", paste(v, collapse = ", "), "]") else v
}

# ---------------------------------------------------------------- independent implementation of the note
msqrt <- function(S, power) {            # symmetric matrix power; eigenvalues <= 1e-12 mapped to 0 (as clubSandwich)
  e <- eigen(S, symmetric = TRUE)
  v <- ifelse(e$values > 1e-12, e$values^power, 0)
  e$vectors %*% (v * t(e$vectors))
}

# Per-cluster ingredients: M = (sum X_j' W_j X_j)^{-1}, u_j = X_j' W_j A_j e_j, Psi_j = E_j Theta_j E_j',
# Gamma_j = E_j X_j with E_j = X_j' W_j A_j.  Theta_j = Zt_j Zt_j' + diag(1/w_j), Zt = Z Lambda.
cr2_parts <- function(X, e, ZL, cluster, w = NULL, reduced = FALSE, whitened = FALSE) {
  cl <- factor(cluster)
  idx <- split(seq_len(nrow(X)), cl)
  if (is.null(w)) w <- rep(1, nrow(X))
  p <- ncol(X)
  blocks <- lapply(idx, function(i) {
    Zj <- ZL[i, , drop = FALSE]
    Zj <- Zj[, colSums(Zj != 0) > 0, drop = FALSE]
    Xj <- X[i, , drop = FALSE]
    ej <- e[i]
    if (reduced) {                       # unweighted only: project onto span[Zt_j, X_j]; Theta = I off that span
      stopifnot(all(w[i] == 1))
      s <- svd(cbind(Zj, Xj))
      Q <- s$u[, s$d > max(s$d) * 1e-10, drop = FALSE]
      Zh <- crossprod(Q, Zj)
      list(X = crossprod(Q, Xj), e = drop(crossprod(Q, ej)), Theta = diag(ncol(Q)) + tcrossprod(Zh))
    } else {
      list(X = Xj, e = ej, Theta = tcrossprod(Zj) + diag(1 / w[i], length(i)))
    }
  })
  for (j in seq_along(blocks)) blocks[[j]]$W <- solve(blocks[[j]]$Theta)
  M <- solve(Reduce(`+`, lapply(blocks, function(b) crossprod(b$X, b$W %*% b$X))))
  parts <- lapply(blocks, function(b) {
    Th_h <- msqrt(b$Theta, 0.5)          # any F with F'F = Theta gives the same A_j; use the symmetric root
    S <- b$Theta - b$X %*% M %*% t(b$X)
    A <- Th_h %*% msqrt(Th_h %*% S %*% Th_h, -0.5) %*% Th_h
    if (whitened) {                      # NOT clubSandwich: CR2 of the whitened regression (only for comparison)
      Tm <- msqrt(b$Theta, -0.5)
      A <- Th_h %*% msqrt(diag(nrow(S)) - Tm %*% b$X %*% M %*% t(b$X) %*% Tm, -0.5) %*% Tm
    }
    E <- crossprod(b$X, b$W %*% A)
    list(u = drop(E %*% b$e), Psi = E %*% b$Theta %*% t(E), Gamma = E %*% b$X)
  })
  U <- sapply(parts, `[[`, "u")
  if (p == 1) U <- matrix(U, nrow = 1)
  list(M = M, V = M %*% tcrossprod(U) %*% M, Psi = lapply(parts, `[[`, "Psi"),
       Gamma = lapply(parts, `[[`, "Gamma"), J = length(idx))
}

# Satterthwaite df for c'beta:  P_ab = delta_ab d_a - t_a' M t_b,  d_a = c'M Psi_a M c,  t_a = Gamma_a' M c.
satt_df <- function(pt, cvec) {
  m <- drop(pt$M %*% cvec)
  d <- sapply(pt$Psi, function(P) sum(m * (P %*% m)))
  Tm <- t(sapply(pt$Gamma, function(G) drop(crossprod(G, m))))
  if (length(m) == 1) Tm <- matrix(Tm, ncol = 1)
  P <- diag(d, length(d)) - Tm %*% pt$M %*% t(Tm)
  sum(diag(P))^2 / sum(P^2)
}

# HTZ: Omega = sum_a C M (Psi_a - Gamma_a M Gamma_a') M C',  Ct = Omega^{-1/2} C,
# D_a = Ct M Psi_a M Ct',  K_a = Ct M Gamma_a L (M = L L'),  B_ab = delta_ab D_a - K_a K_b',
# nu = q(q+1) / sum_ab [tr(B_ab^2) + tr(B_ab)^2],  F = (nu-q+1)/nu * Q/q ~ F(q, nu-q+1).
htz <- function(pt, C, beta, V) {
  q <- nrow(C); p <- ncol(C)
  Om <- Reduce(`+`, Map(function(P, G) C %*% pt$M %*% (P - G %*% pt$M %*% t(G)) %*% pt$M %*% t(C), pt$Psi, pt$Gamma))
  Ct <- msqrt(Om, -0.5) %*% C
  L <- t(chol(pt$M))
  D <- lapply(pt$Psi, function(P) Ct %*% pt$M %*% P %*% pt$M %*% t(Ct))
  K <- lapply(pt$Gamma, function(G) Ct %*% pt$M %*% G %*% L)
  Sv <- Reduce(`+`, lapply(K, function(k) tcrossprod(as.vector(k))))
  S4 <- array(Sv, c(q, p, q, p))
  tot <- sum(sapply(D, function(d) sum(d * t(d)))) - 2 * sum(mapply(function(d, k) sum(diag(d %*% k %*% t(k))), D, K)) +
    sum(S4 * aperm(S4, c(3, 2, 1, 4))) +
    sum(sapply(D, function(d) sum(diag(d))^2)) - 2 * sum(mapply(function(d, k) sum(diag(d)) * sum(k^2), D, K)) +
    sum(Sv^2)
  nu <- q * (q + 1) / tot
  Q <- drop(t(C %*% beta) %*% solve(C %*% V %*% t(C), C %*% beta))
  Fs <- (nu - q + 1) / nu * Q / q
  list(Q = Q, Fstat = Fs, delta = (nu - q + 1) / nu, df_num = q, df_den = nu - q + 1, p_val = pf(Fs, q, nu - q + 1, lower.tail = FALSE),
       Omega = Om)
}

reldiff <- function(a, b) max(abs(a - b)) / max(abs(b))

# ---------------------------------------------------------------- data
ss <- read.csv("tests/data/sleepstudy.csv", colClasses = c(Subject = "character"))
did <- read.csv("tests/data/sleepstudy_did.csv", colClasses = c(Subject = "character"))
sch <- read.csv("tests/data/glmm_schools.csv", colClasses = c(school = "character"))

set.seed(20240601)
n_set <- 30; n_sch <- 3; n_pup <- 8
nest <- expand.grid(pupil = seq_len(n_pup), school_in_set = seq_len(n_sch), set = seq_len(n_set))
nest$set <- sprintf("t%02d", nest$set)
nest$school <- paste0(nest$set, "s", nest$school_in_set)
nest$pupil <- paste0(nest$school, "p", nest$pupil)
treat_sets <- sample(unique(nest$set), n_set / 2)
nest$treat <- as.integer(nest$set %in% treat_sets)
nest$x <- round(rnorm(nrow(nest)), 4)
u_set <- setNames(rnorm(n_set, sd = 0.4), unique(nest$set))
u_sch <- setNames(rnorm(n_set * n_sch, sd = 0.6), unique(nest$school))
nest$y <- round(10 + 0.5 * nest$x + 0.3 * nest$treat + u_set[nest$set] + u_sch[nest$school] + rnorm(nrow(nest)), 4)
write.csv(nest[, c("y", "x", "treat", "set", "school", "pupil")], "tests/data/cr2_nested.csv", row.names = FALSE)
nest <- read.csv("tests/data/cr2_nested.csv", colClasses = c(set = "character", school = "character",
                                                               pupil = "character"))

# ---------------------------------------------------------------- models
rowvec <- function(nm, w) { v <- setNames(rep(0, length(nm)), nm); v[names(w)] <- w; unname(v) }
cmat <- function(nm, rows) do.call(rbind, lapply(rows, function(r) rowvec(nm, r)))

specs <- list(
  list(id = "sleep_ri", data_file = "sleepstudy.csv", data = ss, formula = Reaction ~ Days + (1 | Subject),
       reml = TRUE, cluster = "Subject",
       description = "(a) random intercept, clustered by its grouping factor",
       wald = list(both = list(c("(Intercept)" = 1), c(Days = 1))),
       contrasts = list(mean_of_two = c("(Intercept)" = 0.5, Days = 0.5))),
  list(id = "sleep_rs", data_file = "sleepstudy.csv", data = ss, formula = Reaction ~ Days + (Days | Subject),
       reml = TRUE, cluster = "Subject", description = "(b) correlated random intercept + slope, REML",
       wald = list(both = list(c("(Intercept)" = 1), c(Days = 1)))),
  list(id = "sleep_rs_ml", data_file = "sleepstudy.csv", data = ss, formula = Reaction ~ Days + (Days | Subject),
       reml = FALSE, cluster = "Subject", description = "(b') as sleep_rs but ML (beta and theta from the ML fit)"),
  list(id = "did", data_file = "sleepstudy_did.csv", data = did, formula = Reaction ~ factor(period) * g + (1 | Subject),
       reml = TRUE, cluster = "Subject",
       description = "(d) difference-in-differences: factor(period) * g with subject-level treatment g",
       wald = list(interactions = list(c("factor(period)1:g" = 1), c("factor(period)2:g" = 1), c("factor(period)3:g" = 1)),
                   event_vs_base = list(c("factor(period)2:g" = 1, "factor(period)1:g" = -0.5),
                                        c("factor(period)3:g" = 1, "factor(period)1:g" = -0.5))),
       contrasts = list(p2_vs_base = c("factor(period)2:g" = 1, "factor(period)1:g" = -0.5),
                        p3_vs_base = c("factor(period)3:g" = 1, "factor(period)1:g" = -0.5),
                        mean_p23_vs_base = c("factor(period)2:g" = 0.5, "factor(period)3:g" = 0.5, "factor(period)1:g" = -0.5),
                        intercept_plus_g = c("(Intercept)" = 1, g = 1))),
  list(id = "nested_set", data_file = "cr2_nested.csv", data = nest, formula = y ~ x + treat + (1 | school),
       reml = TRUE, cluster = "set",
       description = "(e) random intercept per school, clustered by the coarser 'set' (schools nested in sets)",
       wald = list(x_and_treat = list(c(x = 1), c(treat = 1))),
       contrasts = list(x_plus_treat_half = c(x = 0.5, treat = 0.5))),
  list(id = "nested_school", data_file = "cr2_nested.csv", data = nest, formula = y ~ x + treat + (1 | school),
       reml = TRUE, cluster = "school", description = "(e') same model, clustered by the grouping factor school"),
  list(id = "nested_set_2re", data_file = "cr2_nested.csv", data = nest, formula = y ~ x + treat + (1 | set) + (1 | school),
       reml = TRUE, cluster = "set", description = "(e'') random intercepts for set and school, clustered by set",
       wald = list(x_and_treat = list(c(x = 1), c(treat = 1)))),
  list(id = "schools", data_file = "glmm_schools.csv", data = sch,
       formula = prior ~ factor(year) + lead + fsm + eal + sen + female + (1 | school),
       reml = TRUE, cluster = "school",
       description = paste("200 schools x 30 pupils, pupil-level covariates; a singular fit (theta = 0), so",
                           "Theta_j = I and CR2 reduces to the OLS (Bell-McCaffrey) form"),
       wald = list(year = list(c("factor(year)2023" = 1), c("factor(year)2024" = 1)),
                   pupil_chars = list(c(fsm = 1), c(eal = 1), c(sen = 1), c(female = 1)))),
  list(id = "schools_lpm", data_file = "glmm_schools.csv", data = sch,
       formula = y ~ factor(year) * lead + fsm + prior + (1 | school),
       reml = TRUE, cluster = "school", description = "linear probability model, 200 schools x 30 pupils, theta > 0",
       wald = list(lead_terms = list(c(lead = 1), c("factor(year)2023:lead" = 1), c("factor(year)2024:lead" = 1))),
       contrasts = list(lead_2024 = c(lead = 1, "factor(year)2024:lead" = 1)))
)

checks <- list()
run_model <- function(s) {
  fit <- lmer(s$formula, data = s$data, REML = s$reml, control = ctrl)
  clus <- s$data[[s$cluster]]
  nm <- names(fixef(fit))
  V <- vcovCR(fit, cluster = clus, type = "CR2")
  ct <- coef_test(fit, vcov = V, test = "Satterthwaite")
  X <- getME(fit, "X"); e <- drop(getME(fit, "y") - X %*% fixef(fit))
  ZL <- as.matrix(getME(fit, "Z") %*% t(getME(fit, "Lambdat")))
  pt <- cr2_parts(X, e, ZL, clus)
  ptr <- cr2_parts(X, e, ZL, clus, reduced = TRUE)
  ptw <- cr2_parts(X, e, ZL, clus, whitened = TRUE)
  ck <- list(whitened_variant_differs_by = reldiff(ptw$V, unclass(V)[, ]), vcov_dense = reldiff(pt$V, unclass(V)[, ]), vcov_reduced = reldiff(ptr$V, unclass(V)[, ]),
             bread_vs_lme4 = reldiff(pt$M * sigma(fit)^2, as.matrix(vcov(fit))),
             df_dense = reldiff(sapply(seq_along(nm), function(k) satt_df(pt, diag(length(nm))[k, ])), ct$df_Satt),
             df_reduced = reldiff(sapply(seq_along(nm), function(k) satt_df(ptr, diag(length(nm))[k, ])), ct$df_Satt))
  wald <- lapply(names(s$wald), function(wn) {
    C <- cmat(nm, s$wald[[wn]])
    wt <- Wald_test(fit, constraints = C, vcov = V, test = "HTZ")
    mine <- htz(pt, C, fixef(fit), unclass(V)[, ])
    ck[[paste0("wald_", wn)]] <<- reldiff(c(mine$Fstat, mine$df_den), c(wt$Fstat, wt$df_denom))
    ck[[paste0("wald_", wn, "_omega_is_CMC")]] <<- reldiff(mine$Omega, C %*% pt$M %*% t(C))
    list(name = wn, constraints = C, Q = mine$Q, Fstat = wt$Fstat, delta = wt$delta, df_num = wt$df_num,
         df_den = wt$df_denom, p_val = wt$p_val)
  })
  contr <- lapply(names(s$contrasts), function(cn) {
    L <- matrix(rowvec(nm, s$contrasts[[cn]]), nrow = 1)
    lc <- linear_contrast(fit, vcov = V, contrasts = L, test = "Satterthwaite", p_values = TRUE)
    w1 <- Wald_test(fit, constraints = L, vcov = V, test = "HTZ")
    ck[[paste0("contrast_", cn)]] <<- reldiff(c(satt_df(pt, drop(L)), satt_df(ptr, drop(L)), w1$df_denom, w1$Fstat),
                                              c(lc$df, lc$df, lc$df, (lc$Est / lc$SE)^2))
    list(name = cn, L = I(drop(L)), estimate = lc$Est, se = lc$SE, df = lc$df, t = lc$Est / lc$SE, p_val = lc$p_val,
         ci95 = c(lc$CI_L, lc$CI_U), wald_htz_F = w1$Fstat, wald_htz_df_den = w1$df_denom, wald_htz_p = w1$p_val)
  })
  checks[[s$id]] <<- ck
  list(id = s$id, description = s$description, data_file = s$data_file,
       formula = paste(deparse(s$formula), collapse = ""), reml = s$reml,
       cluster = s$cluster, n_obs = nobs(fit), n_clusters = nlevels(factor(clus)),
       grouping_factors = as.list(ngrps(fit)),
       coef_names = I(nm), beta = I(unname(fixef(fit))), se_lme4 = I(unname(sqrt(diag(as.matrix(vcov(fit)))))),
       theta = I(unname(getME(fit, "theta"))), sigma = sigma(fit),
       vcov_cr2 = unname(unclass(V)[, ]), se_cr2 = I(unname(ct$SE)), t_stat = I(unname(ct$tstat)),
       df_satt = I(unname(ct$df_Satt)), p_satt = I(unname(ct$p_Satt)),
       wald_htz = wald, contrasts = contr, source = "clubSandwich")
}
models <- lapply(specs, run_model)

# ---------------------------------------------------------------- prior weights
wfit <- lmer(Reaction ~ Days + (Days | Subject), data = did, weights = w, REML = TRUE, control = ctrl)
cs_weight_error <- tryCatch({ vcovCR(wfit, cluster = did$Subject, type = "CR2"); "no error" },
                            error = function(e) conditionMessage(e))
Xw <- getME(wfit, "X"); ew <- drop(getME(wfit, "y") - Xw %*% fixef(wfit))
ZLw <- as.matrix(getME(wfit, "Z") %*% t(getME(wfit, "Lambdat")))
ptw <- cr2_parts(Xw, ew, ZLw, did$Subject, w = did$w)
nmw <- names(fixef(wfit))
dfw <- sapply(seq_along(nmw), function(k) satt_df(ptw, diag(length(nmw))[k, ]))
sew <- sqrt(diag(ptw$V))
Cw <- diag(2)
hw <- htz(ptw, Cw, fixef(wfit), ptw$V)
Lw <- c(0.5, 0.5)
# Cross-check: the same model in nlme (weights = varFixed(~ 1/w) means Var(e_i) = sigma^2 / w_i), clubSandwich's lme method.
did$invw <- 1 / did$w
lfit <- lme(Reaction ~ Days, random = ~ Days | Subject, weights = varFixed(~ invw), data = did, method = "REML",
            control = lmeControl(msMaxIter = 1000, tolerance = 1e-12, opt = "optim"))
Vl <- vcovCR(lfit, type = "CR2")
ctl <- coef_test(lfit, vcov = Vl, test = "Satterthwaite")
wl <- Wald_test(lfit, constraints = Cw, vcov = Vl, test = "HTZ")
checks$weighted <- list(bread_vs_lme4 = reldiff(ptw$M * sigma(wfit)^2, as.matrix(vcov(wfit))),
                        beta_lmer_vs_lme = reldiff(fixef(wfit), fixef(lfit)),
                        vcov_vs_clubSandwich_lme = reldiff(ptw$V, unclass(Vl)[, ]),
                        df_vs_clubSandwich_lme = reldiff(dfw, ctl$df_Satt),
                        wald_vs_clubSandwich_lme = reldiff(c(hw$Fstat, hw$df_den), c(wl$Fstat, wl$df_denom)))
weighted <- list(id = "sleep_rs_weighted", description = paste(
  "(c) prior weights: clubSandwich (0.5.8 and 0.6.0) refuses lmer fits with weights; these numbers are the",
  "natural extension (Theta_j = Zt_j Zt_j' + diag(1/w_j)) from this script's implementation of the note,",
  "cross-checked against clubSandwich's lme method (see checks.weighted and lme_cross_check)"),
  data_file = "sleepstudy_did.csv", formula = "Reaction ~ Days + (Days | Subject)", weights = "w", reml = TRUE,
  cluster = "Subject", n_obs = nobs(wfit), n_clusters = ptw$J, coef_names = I(nmw),
  beta = I(unname(fixef(wfit))), se_lme4 = I(unname(sqrt(diag(as.matrix(vcov(wfit)))))),
  theta = I(unname(getME(wfit, "theta"))), sigma = sigma(wfit),
  vcov_cr2 = unname(ptw$V), se_cr2 = I(unname(sew)), t_stat = I(unname(fixef(wfit) / sew)), df_satt = I(dfw),
  p_satt = I(2 * pt(abs(fixef(wfit) / sew), dfw, lower.tail = FALSE)),
  wald_htz = list(list(name = "both", constraints = Cw, Q = hw$Q, Fstat = hw$Fstat, delta = hw$delta,
                       df_num = hw$df_num, df_den = hw$df_den, p_val = hw$p_val)),
  contrasts = list(list(name = "mean_of_two", L = I(Lw), estimate = sum(Lw * fixef(wfit)),
                        se = sqrt(drop(t(Lw) %*% ptw$V %*% Lw)), df = satt_df(ptw, Lw))),
  source = "extension (not clubSandwich)", clubSandwich_error = cs_weight_error,
  lme_cross_check = list(beta = I(unname(fixef(lfit))), vcov_cr2 = unname(unclass(Vl)[, ]),
                         df_satt = I(unname(ctl$df_Satt)), wald_Fstat = wl$Fstat, wald_df_den = wl$df_denom))

# ---------------------------------------------------------------- what clubSandwich refuses
nfit <- lmer(y ~ x + treat + (1 | school), data = nest, REML = TRUE, control = ctrl)
errors <- list(
  prior_weights = cs_weight_error,
  cluster_finer_than_grouping = tryCatch({ vcovCR(nfit, cluster = nest$pupil, type = "CR2"); "no error" },
                                         error = function(e) conditionMessage(e)),
  cluster_crossing_grouping = tryCatch({  # clusters that split schools: pupils 1-4 vs 5-8 of each set
    vcovCR(nfit, cluster = paste(nest$set, substr(nest$pupil, nchar(nest$pupil), nchar(nest$pupil)) <= "4"),
           type = "CR2"); "no error" }, error = function(e) conditionMessage(e)))

out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  clubSandwich = as.character(packageVersion("clubSandwich")),
                  nlme = as.character(packageVersion("nlme")), Matrix = as.character(packageVersion("Matrix"))),
  optimizer = "nloptwrap, ftol_rel = ftol_abs = 1e-14, xtol_rel = 1e-12",
  note = paste("vcov_cr2 is p x p (rows); wald_htz constraints are q x p (rows); df_den = nu - q + 1;",
               "Fstat = delta * Q / q with delta = (nu - q + 1) / nu; checks are max relative differences between",
               "this script's implementation of /work/notes/cr2.md and clubSandwich;",
               "checks.<model>.whitened_variant_differs_by shows how far the (wrong) whitened-regression CR2 is from",
               "clubSandwich: models where it is ~1e-16 cannot tell the two apart"),
  models = c(models, list(weighted)),
  errors = errors,
  checks = checks)
writeLines(to_json(out), "tests/reference/cr2_reference.json")
cat("checks (max relative differences):\n"); str(checks)
