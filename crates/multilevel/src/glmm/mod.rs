//! Generalized linear mixed models for binary and binomial-count outcomes, fitted as lme4's `glmer` fits
//! them: the Laplace approximation (`nAGQ = 1`) or adaptive Gauss–Hermite quadrature (`nAGQ > 1`, one scalar
//! term) to the marginal likelihood, evaluated by penalized iteratively reweighted least squares (PIRLS) on
//! the spherical random effects `u` (`b = Λ u`, `u ~ N(0, I)`), and glmer's two-stage optimization: first θ
//! alone with β updated inside PIRLS (glmer's `nAGQ = 0` stage), then (θ, β) jointly, with BOBYQA as glmer, or
//! for a Laplace fit with a scalar term by Newton steps on the exact gradient, which end at the optimum
//! BOBYQA approaches (to its tolerance) in a small fraction of the evaluations.
//!
//! One grouping factor with a scalar or vector term: the penalized system is block diagonal (one q × q block
//! per level), so a PIRLS evaluation costs O(n·q² + groups·q³). Several terms, nested such as
//! `(1 | school) + (1 | school:year)` or crossed (Laplace only, as glmer): PIRLS for all conditional modes at
//! once on the sparse system `Λ'Z'WZΛ + I`, laid out and ordered once per model and refactored numerically at
//! each Newton step (no fill for nested terms, so the cost grows linearly with the number of cohorts); the
//! second stage is BOBYQA in (θ, β) and the standard errors come from the finite-difference Hessian, as
//! glmer's (`multi`).
//!
//! Likelihood scales. [`MixedModel::log_likelihood`] of a [`GlmmFit`] is always the full marginal
//! log-likelihood, `log ∫ Π_i Binomial(m_i y_i; m_i, μ_i(u)) φ(u) du`, including the binomial coefficients.
//! glmer's Laplace objective is on that scale (`aic()` + ‖u‖² + log|L|²), but glmer's `nAGQ > 1` objective
//! replaces the family's `aic()` by the sum of deviance residuals, dropping the constant
//! `C = -2 Σ_i [log choose(m_i, m_i y_i) + m_i (y_i log y_i + (1 - y_i) log(1 - y_i))]` (zero for 0/1 data);
//! glmer's `logLik()` is minus half its objective. [`GlmmFit::criterion`] holds glmer's objective value and
//! [`GlmmFit::glmer_log_likelihood`] glmer's `logLik()`, so both conventions are available.
//!
//! The parts, one per file: the data laid out by level (`problem`), PIRLS for the conditional modes
//! (`pirls`), the Laplace / quadrature objective (`quadrature`), the Schur system in β (`schur`), the exact
//! Laplace gradient (`gradient`), finite-difference Hessians (`hessian`), the Newton second stage (`newton`),
//! the two-stage fit that assembles a [`GlmmFit`] (`fit`), and the fit with several terms (`multi`).

use std::collections::BTreeMap;

use psmeval_frame::ModelFrame;
use serde::{Deserialize, Serialize};

use crate::error::MixedModelError;
use crate::model::{Family, MixedModel, contrast_estimate, p_value_z};
use crate::optim::OptSummary;
use crate::result::{ConditionalModes, ContrastTest, Correlation, FixedEffect, VarianceComponent};

mod fit;
mod gradient;
mod hessian;
mod multi;
mod newton;
mod pirls;
mod problem;
mod quadrature;
mod schur;

pub use fit::fit_glmm;

/// The link function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// `log(μ / (1 - μ))`.
    Logit,
}

/// Options of [`fit_glmm`]. Defaults: Laplace, no weights, Hessian standard errors.
#[derive(Debug, Clone, PartialEq)]
pub struct GlmmOptions {
    /// Quadrature points: 1 is the Laplace approximation (default); more needs one scalar random term.
    pub nagq: usize,
    /// Prior weights (binomial totals for proportions); `None` (default) means all 1 (Bernoulli).
    pub weights: Option<Vec<f64>>,
    /// Whether fixed-effect standard errors come from the finite-difference Hessian of the objective in
    /// (θ, β), as glmer's default `vcov(use.hessian = TRUE)` (default `true`), or from `R_X` (`false`).
    pub use_hessian: bool,
}

impl Default for GlmmOptions {
    fn default() -> Self {
        GlmmOptions { nagq: 1, weights: None, use_hessian: true }
    }
}

/// Diagnostics of a fit: never errors, reported alongside the estimates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlmmDiagnostics {
    /// Levels whose responses are all 0 or all 1 (perfectly separated groups): their conditional modes sit
    /// far in the tail and are held only by the random-effects prior.
    pub separated_groups: Vec<String>,
    /// Levels whose PIRLS did not converge at the optimum.
    pub pirls_not_converged: Vec<String>,
    /// Whether the finite-difference Hessian was not positive definite (SEs then come from `R_X`).
    pub hessian_not_positive_definite: bool,
    /// Observations whose fitted probability is within 10 ε of 0 or 1 (glm's "fitted probabilities
    /// numerically 0 or 1 occurred"): a sign of separation by a covariate; its coefficient and SE are then
    /// unreliable.
    pub fitted_probabilities_0_or_1: usize,
}

/// A fitted generalized linear mixed model. The quantities common to both families are read through
/// [`MixedModel`] (Wald z statistics, `df = None`; variance components without a residual, σ² = 1 for the
/// binomial family); the fields here are the GLMM's own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GlmmFit {
    /// Link.
    pub link: Link,
    /// Quadrature points (1 = Laplace).
    pub nagq: usize,
    /// glmer's `logLik()`: equal to the full log-likelihood for Laplace, that plus `C/2` for `nAGQ > 1`.
    pub glmer_log_likelihood: f64,
    /// glmer's `deviance()`: the sum of squared deviance residuals at the conditional modes.
    pub deviance: f64,
    /// The objective glmer minimizes, at the optimum (`-2 glmer_log_likelihood`).
    pub criterion: f64,
    /// Whether the standard errors and `vcov` come from the finite-difference Hessian (else from `R_X`).
    pub se_from_hessian: bool,
    /// Diagnostics.
    pub diagnostics: GlmmDiagnostics,
    family: Family,
    n_obs: usize,
    groups: BTreeMap<String, usize>,
    theta: Vec<f64>,
    beta: Vec<f64>,
    vcov: Vec<f64>,
    fixed_effects: Vec<FixedEffect>,
    variance_components: Vec<VarianceComponent>,
    correlations: Vec<Correlation>,
    ranef: Vec<ConditionalModes>,
    log_likelihood: f64,
    aic: f64,
    bic: f64,
    converged: bool,
    singular: bool,
    optimizer: OptSummary,
    icc: Option<f64>,
    dropped_columns: Vec<String>,
}

impl MixedModel for GlmmFit {
    fn family(&self) -> Family {
        self.family
    }
    fn n_obs(&self) -> usize {
        self.n_obs
    }
    fn groups(&self) -> &BTreeMap<String, usize> {
        &self.groups
    }
    fn beta(&self) -> &[f64] {
        &self.beta
    }
    fn vcov(&self) -> &[f64] {
        &self.vcov
    }
    fn fixed_effects(&self) -> &[FixedEffect] {
        &self.fixed_effects
    }
    fn variance_components(&self) -> &[VarianceComponent] {
        &self.variance_components
    }
    fn correlations(&self) -> &[Correlation] {
        &self.correlations
    }
    fn ranef(&self) -> &[ConditionalModes] {
        &self.ranef
    }
    fn theta(&self) -> &[f64] {
        &self.theta
    }
    fn log_likelihood(&self) -> f64 {
        self.log_likelihood
    }
    fn aic(&self) -> f64 {
        self.aic
    }
    fn bic(&self) -> f64 {
        self.bic
    }
    fn converged(&self) -> bool {
        self.converged
    }
    fn singular(&self) -> bool {
        self.singular
    }
    fn optimizer(&self) -> &OptSummary {
        &self.optimizer
    }
    fn dropped_columns(&self) -> &[String] {
        &self.dropped_columns
    }
    fn icc(&self) -> Option<f64> {
        self.icc
    }
    /// Wald z test of L'β from β̂ and `vcov` (`df = None`).
    fn contrast(&self, l: &[f64]) -> Result<ContrastTest, MixedModelError> {
        let (estimate, std_error) = contrast_estimate(&self.beta, &self.vcov, l)?;
        let statistic = estimate / std_error;
        Ok(ContrastTest { estimate, std_error, statistic, df: None, p_value: p_value_z(statistic) })
    }
}

impl GlmmFit {
    /// The conditional linear predictor η = Xβ̂ + Zb̂ of every row of `frame` (the frame the model was
    /// fitted to), from the fixed effects and conditional modes.
    pub fn linear_predictor(&self, frame: &ModelFrame) -> Result<Vec<f64>, MixedModelError> {
        linear_predictor(frame, &self.fixed_effects, &self.beta, &self.ranef)
    }
}

/// η = Xβ + Zb for the rows of `frame`: `beta` belongs to the columns named in `fixed`, `ranef` to the frame's
/// random terms (matched by grouping factor, level label and column name).
pub(crate) fn linear_predictor(
    frame: &ModelFrame,
    fixed: &[FixedEffect],
    beta: &[f64],
    ranef: &[ConditionalModes],
) -> Result<Vec<f64>, MixedModelError> {
    let cols: Vec<usize> = fixed
        .iter()
        .map(|f| {
            frame
                .x_names
                .iter()
                .position(|n| *n == f.term)
                .ok_or(MixedModelError::UnknownTerm { group: f.term.clone() })
        })
        .collect::<Result<_, _>>()?;
    let n = frame.y.len();
    let mut eta: Vec<f64> = (0..n).map(|i| cols.iter().zip(beta).map(|(&c, b)| frame.x[[i, c]] * b).sum()).collect();
    for term in &frame.random {
        let modes = ranef
            .iter()
            .find(|m| m.group == term.group)
            .ok_or_else(|| MixedModelError::UnknownTerm { group: term.group.clone() })?;
        let index: std::collections::HashMap<&str, usize> =
            modes.levels.iter().enumerate().map(|(k, l)| (l.as_str(), k)).collect();
        let level_of: Vec<Option<usize>> = term.levels.iter().map(|l| index.get(l.as_str()).copied()).collect();
        let col_of: Vec<Option<usize>> = term.names.iter().map(|c| modes.terms.iter().position(|t| t == c)).collect();
        for (i, e) in eta.iter_mut().enumerate() {
            let Some(level) = level_of[term.codes[i] as usize] else { continue };
            for (a, c) in col_of.iter().enumerate() {
                if let Some(c) = c {
                    *e += term.z[[i, a]] * modes.modes[level][*c];
                }
            }
        }
    }
    Ok(eta)
}
