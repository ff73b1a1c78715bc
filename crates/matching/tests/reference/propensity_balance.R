# Reference values for tests/propensity_*.rs and tests/balance_*.rs.
#
# Usage (from the workspace root):  Rscript crates/matching/tests/reference/propensity_balance.R
# Produced with R 4.2.2 (Debian 12), MatchIt 4.5.1, jsonlite 1.8.4; writes propensity_balance.json beside
# this script. Numbers are written with 17 significant digits (jsonlite digits = NA), so they round-trip.
#
# 1. glm fits (stats::glm, family binomial) on MatchIt's lalonde data: coefficients, standard errors,
#    z and p from summary.glm (dispersion 1), deviance, null deviance, AIC, iterations, fitted values and
#    linear predictors. Cases: the logit and probit model MatchIt's snapshots use, an interaction, integer
#    prior weights, a quasi-separated model, a completely separated one (glm warns "fitted probabilities
#    numerically 0 or 1 occurred"), a run stopped at maxit = 3 (not converged), the data stacked ten times
#    (6140 rows, several QR blocks), and a rank-deficient design (glm's NA coefficient is recorded, so the
#    test can check that the Rust fit names the same column).
# 2. Balance (summary.matchit, standardize = TRUE, estimand ATT). Debian's MatchIt 4.5.1 nearest-neighbour
#    matching is broken (MatchIt #163), so no nearest-neighbour weights are used here. The weights come
#    from methods whose code is unaffected:
#      - "before": matchit(method = NULL), i.e. balance of the full sample (weights 1);
#      - "subclass": matchit(method = "subclass", subclass = 6, discard = "both"): ATT subclass weights,
#        non-uniform, with discarded units (summary()$sum.across uses the same bal1var() as every method);
#      - "cem": matchit(method = "cem"), coarsened exact matching with MatchIt's own cutpoints: non-uniform
#        weights with zeros (unmatched units stay in the data, as in summary.matchit), no distance;
#      - "subclass_sw": the subclass case with sampling weights s.weights = 1 + (age %% 3) / 2.
#    Each case records the inputs the Rust function receives (distance, weights, discarded, s.weights) so
#    the balance tests do not depend on the Rust propensity fit, and the expected table and sample sizes.
suppressPackageStartupMessages({
  library(MatchIt)
  library(jsonlite)
})
here <- "crates/matching/tests/reference"
csv <- "crates/matching/tests/data/lalonde.csv"
data("lalonde", package = "MatchIt")
if (!file.exists(csv)) write.csv(lalonde, csv, row.names = TRUE)
d <- read.csv(csv, row.names = 1)
d$race <- factor(d$race, levels = levels(lalonde$race))
stopifnot(isTRUE(all.equal(d, lalonde, check.attributes = FALSE)))

glm_case <- function(formula, link = "logit", data = d, weights = NULL, maxit = 25) {
  data$.w <- if (is.null(weights)) rep(1, nrow(data)) else weights
  warn <- character()
  fit <- withCallingHandlers(
    glm(formula, data = data, weights = .w, family = binomial(link = link),
        control = glm.control(maxit = maxit)),
    warning = function(w) { warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") })
  s <- coef(summary(fit))
  cf <- coef(fit)
  list(
    formula = deparse(formula), link = link,
    terms = names(cf),
    aliased = names(cf)[is.na(cf)],
    estimate = unname(s[, 1]), std_error = unname(s[, 2]), z_value = unname(s[, 3]), p_value = unname(s[, 4]),
    kept = rownames(s),
    deviance = fit$deviance, null_deviance = fit$null.deviance, aic = fit$aic,
    iterations = fit$iter, converged = fit$converged, warnings = warn,
    df_residual = fit$df.residual, df_null = fit$df.null,
    fitted = unname(fitted(fit)), linear_predictor = unname(fit$linear.predictors),
    weights = if (is.null(weights)) NULL else weights,
    maxit = maxit
  )
}

f_main <- treat ~ age + educ + race + married + nodegree + re74 + re75
d$sep <- as.numeric(d$treat == 1 & d$re75 > 6000)
d$re74x2 <- d$re74 * 2 + d$re75
d$sep2 <- ifelse(d$treat == 1, 1 + d$educ / 10, -1 - d$educ / 10)
glms <- list(
  logit = glm_case(f_main),
  probit = glm_case(f_main, link = "probit"),
  interaction = glm_case(treat ~ age * married + educ + race + nodegree + re74 + re75),
  weighted = glm_case(f_main, weights = 1 + (d$age %% 3)),
  separation = glm_case(treat ~ age + educ + race + sep),
  maxit3 = glm_case(f_main, maxit = 3),
  probit_separation = glm_case(treat ~ age + educ + race + sep, link = "probit"),
  complete_separation = glm_case(treat ~ age + sep2),
  # 6140 rows: more than one 4096-row block of the Rust two-level QR.
  replicated10 = glm_case(f_main, data = d[rep(seq_len(nrow(d)), 10), ]),
  collinear = glm_case(treat ~ age + educ + re74 + re75 + re74x2)
)

# Balance: the covariate matrix summary.matchit uses (factors expanded to all levels).
bal_case <- function(m) {
  s <- summary(m, standardize = TRUE, pair.dist = FALSE, un = TRUE)
  tab <- function(x) if (is.null(x)) NULL else list(
    term = rownames(x), mean_treated = unname(x[, 1]), mean_control = unname(x[, 2]), smd = unname(x[, 3]),
    var_ratio = unname(x[, 4]), ecdf_mean = unname(x[, 5]), ecdf_max = unname(x[, 6]))
  after <- if (!is.null(s$sum.across)) s$sum.across else s$sum.matched
  nn <- s$nn
  list(
    weights = unname(m$weights),
    discarded = unname(m$discarded),
    s_weights = if (is.null(m$s.weights)) NULL else unname(m$s.weights),
    distance = unname(m$distance),
    covariate_names = colnames(MatchIt:::get.covs.matrix(data = m$X)),
    before = tab(s$sum.all), after = tab(after),
    nn_rows = rownames(nn), nn_control = unname(nn[, "Control"]), nn_treated = unname(nn[, "Treated"])
  )
}
balance <- list(
  before = bal_case(matchit(f_main, data = d, method = NULL, distance = "glm")),
  subclass = bal_case(matchit(f_main, data = d, method = "subclass", subclass = 6, discard = "both",
                              estimand = "ATT")),
  cem = bal_case(matchit(f_main, data = d, method = "cem", estimand = "ATT")),
  subclass_sw = bal_case(suppressWarnings(matchit(f_main, data = d, method = "subclass", subclass = 6,
                                                  estimand = "ATT", s.weights = 1 + (d$age %% 3) / 2)))
)

out <- list(
  source = paste0(R.version.string, "; MatchIt ", packageVersion("MatchIt"), "; data(lalonde, package = 'MatchIt')"),
  glm = glms, balance = balance
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE),
           file.path(here, "propensity_balance.json"))
