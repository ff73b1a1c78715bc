//! Propensity scores: a binomial GLM (logit or probit link) fitted the way R's `glm.fit` fits it.
//!
//! MatchIt's default distance is `glm(treat ~ ..., family = binomial)`'s fitted values, and matching is
//! sensitive to the last digits of the scores (ties, calipers, the order of greedy matching). R's `glm`
//! stops before full convergence, so agreeing with it to 1e-8 means following its procedure, not merely
//! maximising the same likelihood. [`fit_binomial_glm`] therefore follows `glm.fit` step by step:
//!
//! - start `mustart = (w·y + 0.5)/(w + 1)`, `eta = linkfun(mustart)`;
//! - iteratively reweighted least squares: working response `z = eta + (y − mu)/mu.eta(eta)`, working
//!   weights `sqrt(w·mu.eta²/V(mu))`, a least-squares step solved by Householder QR with LINPACK `dqrdc2`'s
//!   limited column pivoting (tolerance `min(1e-7, epsilon/1000)` = 1e-11);
//! - stop when `|dev − dev_old|/(|dev| + 0.1) < epsilon` (1e-8), at most `maxit` (25) iterations, with
//!   `glm.fit`'s step halving when the deviance is not finite or the fitted values are invalid;
//! - R's link functions with their clamps (`logit` caps `exp(eta)` for `|eta| > 30`; `probit` clamps
//!   `eta` at `±qnorm(DBL_EPSILON)` and floors `mu.eta` at `DBL_EPSILON`);
//! - standard errors from the last IRLS QR with dispersion 1, `z = b/se`, `p = 2·Φ(−|z|)` (`summary.glm`).
//!
//! The least-squares step is a two-level ("tall-skinny") QR: fixed-size row blocks of `[X·w | z·w]` are
//! reduced to triangles in parallel, the stacked triangles are reduced again with `dqrdc2`'s pivoting. The
//! blocks are fixed, so results do not depend on the number of threads; the cost is O(n·p²) per iteration
//! with O(p²) memory per block, which keeps ten million rows practical. Orthogonal reductions preserve
//! column norms and the least-squares solution, so rank decisions and coefficients are `glm.fit`'s up to
//! rounding.
//!
//! Where R would return an `NA` coefficient for an aliased column, [`fit_binomial_glm`] returns
//! [`PropensityError::Collinear`] or [`PropensityError::ConstantCovariate`] naming the column; R's warnings
//! (`fitted probabilities numerically 0 or 1 occurred`, non-convergence, step halving) become
//! [`PropensityWarning`]s in the result.
//!
//! Why not `linfa-logistic`: it minimises a penalised loss by default (`alpha = 1`), with `alpha(0)` it
//! reaches the unpenalised maximum only to its L-BFGS gradient tolerance (1e-4 on the summed gradient), it
//! stops silently at its iteration limit, has no probit link, weights, standard errors or deviance, and
//! its "positive" class is the more frequent label. A dev-test (`tests/propensity_linfa.rs`) checks that
//! its unpenalised maximum agrees with this fit to the precision its stopping rule allows.

use std::fmt;

use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::gamma::ln_gamma;
use thiserror::Error;

/// Rows per block of the first QR level (fixed, so results do not depend on the thread count).
const BLOCK: usize = 4096;
/// `-qnorm(.Machine$double.eps)` as R computes it: the probit link clamps `eta` to ±this.
const PROBIT_THRESH: f64 = 8.125890664701906;
/// `logit_linkinv`'s cut-offs (R's `family.c`).
const LOGIT_THRESH: f64 = 30.0;

/// Link function of the binomial GLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// `binomial(link = "logit")`, MatchIt's default.
    Logit,
    /// `binomial(link = "probit")`.
    Probit,
}

impl Link {
    /// R's `linkfun`: `log(mu/(1 − mu))` or `qnorm(mu)`.
    pub fn linkfun(self, mu: f64) -> f64 {
        match self {
            Link::Logit => (mu / (1.0 - mu)).ln(),
            Link::Probit => standard_normal().inverse_cdf(mu),
        }
    }

    /// R's `linkinv`, with R's clamps.
    pub fn linkinv(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                let t = if eta < -LOGIT_THRESH {
                    f64::EPSILON
                } else if eta > LOGIT_THRESH {
                    1.0 / f64::EPSILON
                } else {
                    eta.exp()
                };
                t / (1.0 + t)
            }
            Link::Probit => standard_normal().cdf(eta.clamp(-PROBIT_THRESH, PROBIT_THRESH)),
        }
    }

    /// R's `mu.eta` (derivative of `linkinv`), with R's floor at `DBL_EPSILON`.
    pub fn mu_eta(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                if !(-LOGIT_THRESH..=LOGIT_THRESH).contains(&eta) {
                    f64::EPSILON
                } else {
                    let opexp = 1.0 + eta.exp();
                    eta.exp() / (opexp * opexp)
                }
            }
            Link::Probit => dnorm(eta).max(f64::EPSILON),
        }
    }
}

fn standard_normal() -> Normal {
    Normal::standard()
}

fn dnorm(x: f64) -> f64 {
    const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    INV_SQRT_2PI * (-0.5 * x * x).exp()
}

/// `glm.control`: convergence tolerance and iteration limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlmControl {
    /// Relative deviance change that counts as converged (R: `epsilon = 1e-8`).
    pub epsilon: f64,
    /// Maximum number of IRLS iterations (R: `maxit = 25`; 0 is taken as 1).
    pub maxit: usize,
}

impl Default for GlmControl {
    fn default() -> Self {
        GlmControl { epsilon: 1e-8, maxit: 25 }
    }
}

/// One row of the coefficient table (`summary.glm`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coefficient {
    /// Column name of the design matrix.
    pub term: String,
    /// Estimate.
    pub estimate: f64,
    /// Standard error (dispersion 1).
    pub std_error: f64,
    /// Wald statistic `estimate / std_error`.
    pub z_value: f64,
    /// Two-sided p-value `2·Φ(−|z|)`.
    pub p_value: f64,
}

/// Something R's `glm` would warn about; the fit is still returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PropensityWarning {
    /// `glm.fit: fitted probabilities numerically 0 or 1 occurred` — (quasi-)separation: some units are
    /// perfectly predicted and their scores are 0 or 1 to within `10·DBL_EPSILON`.
    FittedProbabilitiesZeroOrOne {
        /// Units with a fitted probability below `10·DBL_EPSILON` or above `1 − 10·DBL_EPSILON`.
        count: usize,
    },
    /// `glm.fit: algorithm did not converge` within the iteration limit.
    NotConverged {
        /// Iterations run.
        iterations: usize,
    },
    /// `step size truncated due to divergence` / `out of bounds` (step halving).
    StepHalved {
        /// Iteration at which the step was halved.
        iteration: usize,
    },
    /// `glm.fit: algorithm stopped at boundary value`.
    Boundary,
    /// `non-integer #successes in a binomial glm!` (non-integer prior weights).
    NonIntegerSuccesses,
}

impl fmt::Display for PropensityWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropensityWarning::FittedProbabilitiesZeroOrOne { count } => write!(
                f,
                "fitted probabilities numerically 0 or 1 occurred for {count} unit(s) (separation: some units are \
                 perfectly predicted by the covariates)"
            ),
            PropensityWarning::NotConverged { iterations } => {
                write!(f, "the propensity model did not converge in {iterations} iterations")
            }
            PropensityWarning::StepHalved { iteration } => {
                write!(f, "step size truncated due to divergence at iteration {iteration}")
            }
            PropensityWarning::Boundary => write!(f, "algorithm stopped at boundary value"),
            PropensityWarning::NonIntegerSuccesses => write!(f, "non-integer #successes in a binomial glm"),
        }
    }
}

/// A fitted propensity model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropensityFit {
    /// Link function.
    pub link: Link,
    /// Column names of the design matrix, in order.
    pub terms: Vec<String>,
    /// Coefficient table, one row per column of the design.
    pub coefficients: Vec<Coefficient>,
    /// Fitted probabilities (propensity scores), one per row.
    pub fitted: Vec<f64>,
    /// Linear predictor `X·b`, one per row.
    pub linear_predictor: Vec<f64>,
    /// Residual deviance.
    pub deviance: f64,
    /// Null deviance (intercept-only model, or `linkinv(0)` without an intercept).
    pub null_deviance: f64,
    /// AIC as R's `binomial()$aic` computes it.
    pub aic: f64,
    /// Residual degrees of freedom (rows with positive weight minus rank).
    pub df_residual: usize,
    /// Null degrees of freedom.
    pub df_null: usize,
    /// IRLS iterations run (R's `iter`).
    pub iterations: usize,
    /// Whether the deviance criterion was met.
    pub converged: bool,
    /// R's warnings for this fit.
    pub warnings: Vec<PropensityWarning>,
}

impl PropensityFit {
    /// The propensity scores (MatchIt's `distance` with `link = "logit"` or `"probit"`).
    pub fn score(&self) -> &[f64] {
        &self.fitted
    }

    /// The linear predictor (MatchIt's `link = "linear.logit"` / `"linear.probit"`, i.e.
    /// `predict(type = "link")`). With the logit link it equals `logit(score)` wherever `|eta| ≤ 30`.
    pub fn linear(&self) -> &[f64] {
        &self.linear_predictor
    }
}

/// Why a propensity model could not be fitted.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PropensityError {
    /// An input has the wrong length.
    #[error("{what} has length {found}, but the design matrix has {expected}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// The design matrix has no rows.
    #[error("the design matrix has no rows")]
    NoRows,
    /// The design matrix has no columns.
    #[error("the design matrix has no columns")]
    NoColumns,
    /// A covariate value is NaN or infinite.
    #[error("covariate `{term}` is not finite in row {row} ({value})")]
    NonFiniteCovariate {
        /// Column name.
        term: String,
        /// Row (0-based).
        row: usize,
        /// The value.
        value: f64,
    },
    /// The response is not 0 or 1.
    #[error("the treatment indicator must be 0 or 1, but row {row} has {value}")]
    ResponseNotBinary {
        /// Row (0-based).
        row: usize,
        /// The value.
        value: f64,
    },
    /// A prior weight is negative or not finite.
    #[error("prior weight in row {row} is {value}; weights must be finite and non-negative")]
    InvalidWeight {
        /// Row (0-based).
        row: usize,
        /// The value.
        value: f64,
    },
    /// Every unit (with positive weight) is treated, or none is.
    #[error("{}", if *all_treated { format!("all {n} units are treated: there are no controls") } else { format!("none of the {n} units is treated") })]
    NoVariation {
        /// True if all units are treated, false if none is.
        all_treated: bool,
        /// Units with positive weight.
        n: usize,
    },
    /// Fewer units with positive weight than coefficients.
    #[error("{n} units with positive weight for {p} coefficients")]
    TooFewObservations {
        /// Units with positive weight.
        n: usize,
        /// Columns of the design.
        p: usize,
    },
    /// A covariate is constant (or all zero), so it duplicates the intercept (R: `NA` coefficient).
    #[error("covariate `{term}` is constant ({value}) among the units used, so its coefficient is not estimable")]
    ConstantCovariate {
        /// Column name.
        term: String,
        /// Its value.
        value: f64,
    },
    /// A covariate is a linear combination of earlier columns (R: `NA` coefficient).
    #[error("covariate `{term}` is collinear with {} (glm would give it an NA coefficient)", fmt_terms(with))]
    Collinear {
        /// The aliased column (the first one `dqrdc2` moves to the end).
        term: String,
        /// The earlier columns it is (numerically) a combination of.
        with: Vec<String>,
        /// Every aliased column, in pivot order.
        all_aliased: Vec<String>,
    },
    /// `glm.fit` would stop with an error here (e.g. no valid coefficients after step halving).
    #[error("the IRLS algorithm failed at iteration {iteration}: {reason}")]
    NumericalFailure {
        /// Iteration (1-based).
        iteration: usize,
        /// R's message.
        reason: &'static str,
    },
}

fn fmt_terms(t: &[String]) -> String {
    if t.is_empty() {
        "earlier columns".into()
    } else {
        t.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
    }
}

/// Fits `glm(y ~ X - 1, family = binomial(link), weights)` with R's default control (see the module doc).
///
/// `x` is the design matrix (n × p, including the intercept column if any, named `(Intercept)` or all
/// ones), `names` its column names, `y` the 0/1 treatment indicator, `weights` optional prior weights.
pub fn fit_binomial_glm(
    x: ArrayView2<f64>,
    names: &[String],
    y: &[f64],
    weights: Option<&[f64]>,
    link: Link,
) -> Result<PropensityFit, PropensityError> {
    fit_binomial_glm_with(x, names, y, weights, link, &GlmControl::default())
}

/// [`fit_binomial_glm`] with an explicit `glm.control`.
pub fn fit_binomial_glm_with(
    x: ArrayView2<f64>,
    names: &[String],
    y: &[f64],
    weights: Option<&[f64]>,
    link: Link,
    control: &GlmControl,
) -> Result<PropensityFit, PropensityError> {
    let (n, p) = x.dim();
    validate(x, names, y, weights)?;
    // glm.control rejects maxit < 1; treat 0 as 1 rather than fail.
    let maxit = control.maxit.max(1);
    let w: Vec<f64> = weights.map_or_else(|| vec![1.0; n], <[f64]>::to_vec);
    // binomial()$initialize: y[weights == 0] <- 0; mustart <- (weights * y + 0.5)/(weights + 1).
    let y: Vec<f64> = y.iter().zip(&w).map(|(&yi, &wi)| if wi == 0.0 { 0.0 } else { yi }).collect();
    let mut warnings = Vec::new();
    if y.iter().zip(&w).any(|(&yi, &wi)| ((wi * yi) - (wi * yi).round_ties_even()).abs() > 0.001) {
        warnings.push(PropensityWarning::NonIntegerSuccesses);
    }
    let n_ok = w.iter().filter(|&&wi| wi > 0.0).count();
    let n_treated = y.iter().zip(&w).filter(|(yi, wi)| **wi > 0.0 && **yi == 1.0).count();
    if n_treated == 0 || n_treated == n_ok {
        return Err(PropensityError::NoVariation { all_treated: n_treated > 0, n: n_ok });
    }
    if n_ok < p {
        return Err(PropensityError::TooFewObservations { n: n_ok, p });
    }

    let mut eta: Vec<f64> = y.iter().zip(&w).map(|(&yi, &wi)| link.linkfun((wi * yi + 0.5) / (wi + 1.0))).collect();
    let mut mu: Vec<f64> = eta.iter().map(|&e| link.linkinv(e)).collect();
    let mut devold = deviance(&y, &mu, &w);
    let mut coefold: Option<Vec<f64>> = None;
    let mut start = vec![0.0; p];
    let mut conv = false;
    let mut boundary = false;
    let mut iter = 0;
    let mut last: Option<Step> = None;
    let tol = 1e-7_f64.min(control.epsilon / 1000.0);
    for it in 1..=maxit {
        iter = it;
        let step = wls_step(x, &y, &w, &eta, &mu, link, tol, it)?;
        if step.rank < p {
            return Err(aliased_error(x, names, &w, &step));
        }
        if step.coef.iter().any(|c| !c.is_finite()) {
            return Err(PropensityError::NumericalFailure { iteration: it, reason: "non-finite coefficients" });
        }
        start.clone_from(&step.coef);
        last = Some(step);
        update(x, &start, link, &mut eta, &mut mu);
        let mut dev = deviance(&y, &mu, &w);
        boundary = false;
        if !dev.is_finite() || !valid_mu(&mu) {
            let Some(old) = coefold.as_ref() else {
                return Err(PropensityError::NumericalFailure {
                    iteration: it,
                    reason: "no valid set of coefficients has been found: please supply starting values",
                });
            };
            warnings.push(PropensityWarning::StepHalved { iteration: it });
            let mut ii = 1;
            while !dev.is_finite() || !valid_mu(&mu) {
                if ii > maxit {
                    return Err(PropensityError::NumericalFailure {
                        iteration: it,
                        reason: "inner loop; cannot correct step size",
                    });
                }
                ii += 1;
                for (s, o) in start.iter_mut().zip(old) {
                    *s = (*s + o) / 2.0;
                }
                update(x, &start, link, &mut eta, &mut mu);
                dev = deviance(&y, &mu, &w);
            }
            boundary = true;
        }
        if (dev - devold).abs() / (dev.abs() + 0.1) < control.epsilon {
            conv = true;
            devold = dev;
            break;
        }
        devold = dev;
        coefold = Some(start.clone());
    }
    let dev = devold;
    let step = last.expect("maxit >= 1");
    if !conv {
        warnings.push(PropensityWarning::NotConverged { iterations: iter });
    }
    if boundary {
        warnings.push(PropensityWarning::Boundary);
    }
    let eps10 = 10.0 * f64::EPSILON;
    let extreme = mu.iter().filter(|&&m| m > 1.0 - eps10 || m < eps10).count();
    if extreme > 0 {
        warnings.push(PropensityWarning::FittedProbabilitiesZeroOrOne { count: extreme });
    }

    // Null deviance: intercept-only fit, i.e. the weighted mean (glm.fit's wtdmu).
    let intercept = has_intercept(x, names);
    let wtdmu = if intercept {
        sum_f(y.iter().zip(&w).map(|(a, b)| a * b)) / sum_f(w.iter().copied())
    } else {
        link.linkinv(0.0)
    };
    let null_deviance = sum_f(y.iter().zip(&w).map(|(&yi, &wi)| dev_resid(yi, wtdmu, wi)));
    let aic =
        -2.0 * sum_f(
            y.iter()
                .zip(&w)
                .zip(&mu)
                .filter(|((_, wi), _)| **wi > 0.0)
                .map(|((&yi, &wi), &m)| dbinom_log((wi * yi).round_ties_even(), wi.round_ties_even(), m)),
        ) + 2.0 * p as f64;

    let se = step.std_errors();
    let normal = standard_normal();
    let coefficients = (0..p)
        .map(|j| {
            let z = start[j] / se[j];
            Coefficient {
                term: names[j].clone(),
                estimate: start[j],
                std_error: se[j],
                z_value: z,
                p_value: 2.0 * normal.cdf(-z.abs()),
            }
        })
        .collect();
    Ok(PropensityFit {
        link,
        terms: names.to_vec(),
        coefficients,
        fitted: mu,
        linear_predictor: eta,
        deviance: dev,
        null_deviance,
        aic,
        df_residual: n_ok - p,
        df_null: n_ok - usize::from(intercept),
        iterations: iter,
        converged: conv,
        warnings,
    })
}

fn validate(x: ArrayView2<f64>, names: &[String], y: &[f64], weights: Option<&[f64]>) -> Result<(), PropensityError> {
    let (n, p) = x.dim();
    if n == 0 {
        return Err(PropensityError::NoRows);
    }
    if p == 0 {
        return Err(PropensityError::NoColumns);
    }
    if names.len() != p {
        return Err(PropensityError::LengthMismatch { what: "names", expected: p, found: names.len() });
    }
    if y.len() != n {
        return Err(PropensityError::LengthMismatch { what: "the response", expected: n, found: y.len() });
    }
    if let Some(w) = weights {
        if w.len() != n {
            return Err(PropensityError::LengthMismatch { what: "weights", expected: n, found: w.len() });
        }
        if let Some((row, &value)) = w.iter().enumerate().find(|(_, v)| !v.is_finite() || **v < 0.0) {
            return Err(PropensityError::InvalidWeight { row, value });
        }
    }
    if let Some((row, &value)) = y.iter().enumerate().find(|(_, v)| **v != 0.0 && **v != 1.0) {
        return Err(PropensityError::ResponseNotBinary { row, value });
    }
    for (row, r) in x.outer_iter().enumerate() {
        if let Some((j, &value)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(PropensityError::NonFiniteCovariate { term: names[j].clone(), row, value });
        }
    }
    Ok(())
}

fn has_intercept(x: ArrayView2<f64>, names: &[String]) -> bool {
    names.iter().any(|s| s == "(Intercept)") || x.columns().into_iter().any(|c| c.iter().all(|&v| v == 1.0))
}

fn valid_mu(mu: &[f64]) -> bool {
    mu.iter().all(|&m| m.is_finite() && m > 0.0 && m < 1.0)
}

/// `eta = X·b`, `mu = linkinv(eta)`.
fn update(x: ArrayView2<f64>, b: &[f64], link: Link, eta: &mut [f64], mu: &mut [f64]) {
    eta.par_chunks_mut(BLOCK).zip(mu.par_chunks_mut(BLOCK)).enumerate().for_each(|(c, (e, m))| {
        for (k, (ei, mi)) in e.iter_mut().zip(m.iter_mut()).enumerate() {
            let row = x.row(c * BLOCK + k);
            let mut s = 0.0;
            for (xv, bv) in row.iter().zip(b) {
                s += xv * bv;
            }
            *ei = s;
            *mi = link.linkinv(s);
        }
    });
}

fn y_log_y(y: f64, mu: f64) -> f64 {
    if y != 0.0 { y * (y / mu).ln() } else { 0.0 }
}

/// R's `binomial_dev_resids` for one unit.
fn dev_resid(y: f64, mu: f64, w: f64) -> f64 {
    2.0 * w * (y_log_y(y, mu) + y_log_y(1.0 - y, 1.0 - mu))
}

fn deviance(y: &[f64], mu: &[f64], w: &[f64]) -> f64 {
    let parts: Vec<(f64, f64)> = y
        .par_chunks(BLOCK)
        .zip(mu.par_chunks(BLOCK))
        .zip(w.par_chunks(BLOCK))
        .map(|((y, m), w)| neumaier(y.iter().zip(m).zip(w).map(|((&yi, &mi), &wi)| dev_resid(yi, mi, wi))))
        .collect();
    let mut acc = (0.0, 0.0);
    for (s, c) in parts {
        acc = neumaier_add(neumaier_add(acc, s), c);
    }
    acc.0 + acc.1
}

fn neumaier(it: impl Iterator<Item = f64>) -> (f64, f64) {
    it.fold((0.0, 0.0), neumaier_add)
}

fn neumaier_add((s, c): (f64, f64), v: f64) -> (f64, f64) {
    let t = s + v;
    let c = if s.abs() >= v.abs() { c + ((s - t) + v) } else { c + ((v - t) + s) };
    (t, c)
}

/// Compensated sum (R sums in long double).
fn sum_f(it: impl Iterator<Item = f64>) -> f64 {
    let (s, c) = neumaier(it);
    s + c
}

/// `dbinom(k, size, prob, log = TRUE)`.
fn dbinom_log(k: f64, size: f64, prob: f64) -> f64 {
    if size == 0.0 {
        return if k == 0.0 { 0.0 } else { f64::NEG_INFINITY };
    }
    let lchoose = if size == 1.0 { 0.0 } else { ln_gamma(size + 1.0) - ln_gamma(k + 1.0) - ln_gamma(size - k + 1.0) };
    let a = if k > 0.0 { k * prob.ln() } else { 0.0 };
    let b = if size - k > 0.0 { (size - k) * (1.0 - prob).ln() } else { 0.0 };
    lchoose + a + b
}

/// One weighted least-squares step: `dqrls` on `[X·w | z·w]` for the rows with positive weight.
#[derive(Debug)]
struct Step {
    /// Coefficients in the original column order (aliased columns 0, as `dqrls`).
    coef: Vec<f64>,
    /// Numerical rank.
    rank: usize,
    /// `pivot[j]`: original column at pivoted position j.
    pivot: Vec<usize>,
    /// Reduced matrix after `dqrdc2` (column-major, `rows` × p): R in its upper triangle.
    qr: Vec<f64>,
    rows: usize,
    /// Column norms of the weighted design.
    norms: Vec<f64>,
}

impl Step {
    fn r(&self, i: usize, j: usize) -> f64 {
        self.qr[j * self.rows + i]
    }

    /// `sqrt(diag(chol2inv(R)))` mapped back to the original order (full rank).
    fn std_errors(&self) -> Vec<f64> {
        let k = self.rank;
        // Rinv: upper triangular inverse of R[0..k, 0..k], column-major.
        let mut rinv = vec![0.0; k * k];
        for j in 0..k {
            rinv[j * k + j] = 1.0 / self.r(j, j);
            for i in (0..j).rev() {
                let mut s = 0.0;
                for m in i + 1..=j {
                    s += self.r(i, m) * rinv[j * k + m];
                }
                rinv[j * k + i] = -s / self.r(i, i);
            }
        }
        let mut se = vec![f64::NAN; self.pivot.len()];
        for i in 0..k {
            let mut s = 0.0;
            for j in i..k {
                s += rinv[j * k + i] * rinv[j * k + i];
            }
            se[self.pivot[i]] = s.sqrt();
        }
        se
    }
}

#[allow(clippy::too_many_arguments)]
fn wls_step(
    x: ArrayView2<f64>,
    y: &[f64],
    w: &[f64],
    eta: &[f64],
    mu: &[f64],
    link: Link,
    tol: f64,
    iteration: usize,
) -> Result<Step, PropensityError> {
    let (n, p) = x.dim();
    let q = p + 1;
    let n_blocks = n.div_ceil(BLOCK);
    // Level 1: each block of rows → its triangular factor (row-major blocks of ≤ q rows × q).
    let blocks: Vec<Result<(Vec<f64>, usize), PropensityError>> = (0..n_blocks)
        .into_par_iter()
        .map(|b| {
            let lo = b * BLOCK;
            let hi = (lo + BLOCK).min(n);
            let good: Vec<usize> = (lo..hi).filter(|&i| w[i] > 0.0).filter(|&i| link.mu_eta(eta[i]) != 0.0).collect();
            let m = good.len();
            let mut a = vec![0.0; m * q]; // column-major m × q
            for (r, &i) in good.iter().enumerate() {
                let me = link.mu_eta(eta[i]);
                let var = mu[i] * (1.0 - mu[i]);
                if var == 0.0 || var.is_nan() {
                    return Err(PropensityError::NumericalFailure { iteration, reason: "0s in V(mu)" });
                }
                let z = eta[i] + (y[i] - mu[i]) / me;
                let ww = (w[i] * me * me / var).sqrt();
                let row = x.row(i);
                for j in 0..p {
                    a[j * m + r] = row[j] * ww;
                }
                a[p * m + r] = z * ww;
            }
            householder(&mut a, m, q);
            let rows = m.min(q);
            let mut out = vec![0.0; rows * q];
            for i in 0..rows {
                for j in i..q {
                    out[i * q + j] = a[j * m + i];
                }
            }
            Ok((out, rows))
        })
        .collect();
    let mut stacked_rows = 0;
    let mut parts = Vec::with_capacity(blocks.len());
    for b in blocks {
        let (v, r) = b?;
        stacked_rows += r;
        parts.push((v, r));
    }
    // Level 2: dqrdc2 + dqrsl on the stacked triangles.
    let s = stacked_rows;
    let mut a = vec![0.0; s * p];
    let mut z = vec![0.0; s];
    let mut r0 = 0;
    for (v, r) in &parts {
        for i in 0..*r {
            for j in 0..p {
                a[j * s + r0 + i] = v[i * q + j];
            }
            z[r0 + i] = v[i * q + p];
        }
        r0 += r;
    }
    let norms: Vec<f64> = (0..p).map(|j| norm2(&a[j * s..(j + 1) * s])).collect();
    let (rank, pivot, qraux) = dqrdc2(&mut a, s, p, tol);
    // dqrsl: qty = Q'z, then back-substitute R b = qty[0..rank].
    for j in 0..rank.min(s.saturating_sub(1)) {
        if qraux[j] != 0.0 {
            let col = &mut a[j * s..(j + 1) * s];
            let diag = col[j];
            col[j] = qraux[j];
            let t = -dot(&col[j..], &z[j..]) / col[j];
            for (zi, ci) in z[j..].iter_mut().zip(&col[j..]) {
                *zi += t * ci;
            }
            col[j] = diag;
        }
    }
    let mut bp = vec![0.0; p];
    for j in (0..rank).rev() {
        let mut v = z[j];
        for m in j + 1..rank {
            v -= a[m * s + j] * bp[m];
        }
        bp[j] = v / a[j * s + j];
    }
    let mut coef = vec![0.0; p];
    for j in 0..p {
        coef[pivot[j]] = bp[j];
    }
    Ok(Step { coef, rank, pivot, qr: a, rows: s, norms })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm2(a: &[f64]) -> f64 {
    let scale = a.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    if scale == 0.0 {
        return 0.0;
    }
    let s: f64 = a.iter().map(|v| (v / scale) * (v / scale)).sum();
    scale * s.sqrt()
}

/// Unpivoted Householder QR in place (LINPACK conventions), column-major m × q. R is left in the upper
/// triangle; the reflectors below it are not needed.
fn householder(a: &mut [f64], m: usize, q: usize) {
    for l in 0..q.min(m.saturating_sub(1)) {
        let (left, right) = a.split_at_mut((l + 1) * m);
        let col = &mut left[l * m..];
        let mut nrm = norm2(&col[l..]);
        if nrm == 0.0 {
            continue;
        }
        if col[l] != 0.0 {
            nrm = nrm.copysign(col[l]);
        }
        for v in &mut col[l..] {
            *v /= nrm;
        }
        col[l] += 1.0;
        for j in 0..q - l - 1 {
            let cj = &mut right[j * m..(j + 1) * m];
            let t = -dot(&col[l..], &cj[l..]) / col[l];
            for (c, h) in cj[l..].iter_mut().zip(&col[l..]) {
                *c += t * h;
            }
        }
        col[l] = -nrm;
    }
}

/// LINPACK `dqrdc2` (R's modification with limited pivoting): column-major n × p in place. Returns the
/// rank, the pivot (original column at each position) and `qraux`.
fn dqrdc2(x: &mut [f64], n: usize, p: usize, tol: f64) -> (usize, Vec<usize>, Vec<f64>) {
    let mut jpvt: Vec<usize> = (0..p).collect();
    let mut qraux: Vec<f64> = (0..p).map(|j| norm2(&x[j * n..(j + 1) * n])).collect();
    let mut work1 = qraux.clone();
    let mut work2: Vec<f64> = qraux.iter().map(|&v| if v == 0.0 { 1.0 } else { v }).collect();
    let lup = n.min(p);
    let mut k = p + 1; // 1-based as in the Fortran
    for l in 0..lup {
        // Move columns with negligible remaining norm to the end.
        while l + 1 < k && qraux[l] < work2[l] * tol {
            let col: Vec<f64> = x[l * n..(l + 1) * n].to_vec();
            x.copy_within((l + 1) * n..p * n, l * n);
            x[(p - 1) * n..p * n].copy_from_slice(&col);
            jpvt[l..].rotate_left(1);
            qraux[l..].rotate_left(1);
            work1[l..].rotate_left(1);
            work2[l..].rotate_left(1);
            k -= 1;
        }
        if l + 1 == n {
            break;
        }
        let (left, right) = x.split_at_mut((l + 1) * n);
        let col = &mut left[l * n..];
        let mut nrmxl = norm2(&col[l..]);
        if nrmxl == 0.0 {
            continue;
        }
        if col[l] != 0.0 {
            nrmxl = nrmxl.copysign(col[l]);
        }
        for v in &mut col[l..] {
            *v /= nrmxl;
        }
        col[l] += 1.0;
        for j in l + 1..p {
            let cj = &mut right[(j - l - 1) * n..(j - l) * n];
            let t = -dot(&col[l..], &cj[l..]) / col[l];
            for (c, h) in cj[l..].iter_mut().zip(&col[l..]) {
                *c += t * h;
            }
            if qraux[j] != 0.0 {
                let tt = (1.0 - (cj[l].abs() / qraux[j]).powi(2)).max(0.0);
                if tt.abs() >= 1e-6 {
                    qraux[j] *= tt.sqrt();
                } else {
                    qraux[j] = norm2(&cj[l + 1..]);
                    work1[j] = qraux[j];
                }
            }
        }
        qraux[l] = col[l];
        col[l] = -nrmxl;
    }
    let rank = (k - 1).min(n);
    (rank, jpvt, qraux)
}

/// Names the first aliased column (constant or collinear) and what it is a combination of.
fn aliased_error(x: ArrayView2<f64>, names: &[String], w: &[f64], step: &Step) -> PropensityError {
    let k = step.rank;
    let all_aliased: Vec<String> = step.pivot[k..].iter().map(|&j| names[j].clone()).collect();
    for &j in &step.pivot[k..] {
        let mut vals = x.column(j).into_iter().zip(w).filter(|(_, wi)| **wi > 0.0).map(|(v, _)| *v);
        if let Some(first) = vals.next()
            && vals.all(|v| v == first)
        {
            return PropensityError::ConstantCovariate { term: names[j].clone(), value: first };
        }
    }
    // Solve R11 c = R12[:, first aliased] for the combination of kept columns.
    let ja = k; // pivoted position of the first aliased column
    let mut c = vec![0.0; k];
    for i in (0..k).rev() {
        let mut v = step.r(i, ja);
        for (m, cm) in c.iter().enumerate().skip(i + 1) {
            v -= step.r(i, m) * cm;
        }
        c[i] = v / step.r(i, i);
    }
    let target = step.norms[step.pivot[ja]];
    let with = (0..k)
        .filter(|&i| (c[i] * step.norms[step.pivot[i]]).abs() > 1e-6 * target)
        .map(|i| names[step.pivot[i]].clone())
        .collect();
    PropensityError::Collinear { term: names[step.pivot[ja]].clone(), with, all_aliased }
}
