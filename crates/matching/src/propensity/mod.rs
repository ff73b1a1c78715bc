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
//!
//! Files: `link` (R's link functions), `irls` (the `glm.fit` loop, deviance and AIC), `qr` (the two-level
//! Householder QR with `dqrdc2` pivoting, the least-squares step and the naming of aliased columns) and
//! `error` (errors and R's warnings).

mod error;
mod irls;
mod link;
mod qr;

use serde::{Deserialize, Serialize};

pub use error::{PropensityError, PropensityWarning};
pub use irls::{fit_binomial_glm, fit_binomial_glm_with};
pub use link::Link;

/// Rows per block of the first QR level (fixed, so results do not depend on the thread count).
const BLOCK: usize = 4096;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coefficient {
    /// Column name of the design matrix.
    pub term: String,
    /// Estimate.
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub estimate: f64,
    /// Standard error (dispersion 1).
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub std_error: f64,
    /// Wald statistic `estimate / std_error`.
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub z_value: f64,
    /// Two-sided p-value `2·Φ(−|z|)`.
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub p_value: f64,
}

/// A fitted propensity model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub deviance: f64,
    /// Null deviance (intercept-only model, or `linkinv(0)` without an intercept).
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub null_deviance: f64,
    /// AIC as R's `binomial()$aic` computes it.
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
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
