//! The contract of a fitted mixed model, whatever its family: [`MixedModel`], implemented by the linear
//! [`LmmFit`](crate::LmmFit) and the logistic [`GlmmFit`](crate::glmm::GlmmFit), so callers read estimates,
//! variance components, conditional modes and contrasts through one code path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use crate::error::MixedModelError;
use crate::optim::OptSummary;
use crate::result::{ConditionalModes, ContrastTest, Correlation, FixedEffect, VarianceComponent};

/// The response distribution of a fitted model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Normal responses with an identity link (a linear mixed model, lme4's `lmer`).
    #[default]
    Gaussian,
    /// Binomial proportions with the totals as prior weights, Bernoulli when the weights are 1 (a logistic
    /// mixed model, lme4's `glmer(family = binomial)`).
    Binomial,
}

/// A fitted mixed model: what a report or an impact estimate needs, for a linear or a logistic fit.
///
/// Vectors follow the fit's fixed-effects columns (after dropping aliased ones) and lme4's order of terms.
pub trait MixedModel {
    /// The response distribution.
    fn family(&self) -> Family;
    /// Observations used.
    fn n_obs(&self) -> usize;
    /// Grouping factor name → number of levels.
    fn groups(&self) -> &BTreeMap<String, usize>;
    /// Fixed-effect estimates β̂ (link scale).
    fn beta(&self) -> &[f64];
    /// Covariance of β̂ (p × p, row-major), the one behind the standard errors.
    fn vcov(&self) -> &[f64];
    /// The fixed-effects table.
    fn fixed_effects(&self) -> &[FixedEffect];
    /// Variance components, in lme4's `VarCorr` order (an LMM's residual last).
    fn variance_components(&self) -> &[VarianceComponent];
    /// Correlations within vector random-effects terms.
    fn correlations(&self) -> &[Correlation];
    /// Conditional modes with conditional SDs, one entry per random-effects term.
    fn ranef(&self) -> &[ConditionalModes];
    /// Relative covariance parameters θ (each term's lower-triangular Λ by columns), in lme4's order.
    fn theta(&self) -> &[f64];
    /// Log-likelihood: REML or ML for an LMM; the full marginal log-likelihood for a GLMM.
    fn log_likelihood(&self) -> f64;
    /// Akaike information criterion.
    fn aic(&self) -> f64;
    /// Bayesian information criterion.
    fn bic(&self) -> f64;
    /// Whether the optimizer converged.
    fn converged(&self) -> bool;
    /// Whether the fit is singular (a diagonal element of Λ within 1e-4 of 0, lme4's `isSingular`).
    fn singular(&self) -> bool;
    /// The optimizer's record.
    fn optimizer(&self) -> &OptSummary;
    /// Fixed-effects columns dropped because they were aliased (rank-deficient X), as lme4 names them.
    fn dropped_columns(&self) -> &[String];
    /// Intra-class correlation for a model whose only random term is one scalar intercept: τ²/(τ² + σ²) for
    /// an LMM, τ²/(τ² + π²/3) on the latent scale for a logistic GLMM; `None` otherwise.
    fn icc(&self) -> Option<f64>;
    /// Test of the linear combination L'β (`l` has one weight per fixed effect): lmerTest's `contest1D` with
    /// Satterthwaite df for an LMM, a Wald z test for a GLMM.
    fn contrast(&self, l: &[f64]) -> Result<ContrastTest, MixedModelError>;
}

/// L'β̂ and √(L' V L) for a contrast `l` of `beta` with covariance `vcov` (p × p, row-major).
pub(crate) fn contrast_estimate(beta: &[f64], vcov: &[f64], l: &[f64]) -> Result<(f64, f64), MixedModelError> {
    let p = beta.len();
    if l.len() != p {
        return Err(MixedModelError::DimensionMismatch { what: "contrast".to_string(), expected: p, found: l.len() });
    }
    let estimate: f64 = l.iter().zip(beta).map(|(a, b)| a * b).sum();
    let mut var = 0.0;
    for (i, li) in l.iter().enumerate() {
        for (j, lj) in l.iter().enumerate() {
            var += li * vcov[i * p + j] * lj;
        }
    }
    Ok((estimate, var.sqrt()))
}

/// Two-sided p-value of a t statistic on `df` degrees of freedom; NaN when `df` is not finite and positive.
pub(crate) fn p_value_t(t: f64, df: f64) -> f64 {
    if df.is_finite() && df > 0.0 {
        StudentsT::new(0.0, 1.0, df).map(|d| 2.0 * d.sf(t.abs())).unwrap_or(f64::NAN)
    } else {
        f64::NAN
    }
}

/// Two-sided p-value of a z statistic from the standard normal.
pub(crate) fn p_value_z(z: f64) -> f64 {
    let normal = Normal::new(0.0, 1.0).expect("standard normal");
    2.0 * normal.cdf(-z.abs())
}

/// The model-based Wald chi-square test of the q constraints `c β = 0` from β̂ and its covariance `vcov`
/// (p × p, row-major): Q = (cβ̂)'(c V c')⁻¹(cβ̂) on q df. Returns (Q, q, p value).
pub fn wald_chi_square(beta: &[f64], vcov: &[f64], c: &[Vec<f64>]) -> Result<(f64, usize, f64), MixedModelError> {
    let p = beta.len();
    let q = c.len();
    if q == 0 {
        return Err(MixedModelError::DimensionMismatch { what: "constraints".into(), expected: 1, found: 0 });
    }
    if let Some(row) = c.iter().find(|r| r.len() != p) {
        return Err(MixedModelError::DimensionMismatch { what: "constraint".into(), expected: p, found: row.len() });
    }
    let cb: Vec<f64> = c.iter().map(|r| r.iter().zip(beta).map(|(a, b)| a * b).sum()).collect();
    let mut cvc = vec![0.0; q * q];
    for (i, ri) in c.iter().enumerate() {
        for (j, rj) in c.iter().enumerate() {
            cvc[i * q + j] = (0..p).map(|a| (0..p).map(|b| ri[a] * vcov[a * p + b] * rj[b]).sum::<f64>()).sum();
        }
    }
    let inv = crate::dense::inverse(&cvc, q).ok_or_else(|| MixedModelError::NotComparable {
        reason: "the constraints' covariance is singular (are they linearly dependent?)".into(),
    })?;
    let chi2: f64 = (0..q).map(|i| (0..q).map(|j| cb[i] * inv[i * q + j] * cb[j]).sum::<f64>()).sum();
    let p_value = statrs::distribution::ChiSquared::new(q as f64)
        .map(|d| statrs::distribution::ContinuousCDF::sf(&d, chi2))
        .unwrap_or(f64::NAN);
    Ok((chi2, q, p_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_serializes_lowercase() {
        assert_eq!(serde_json::to_string(&Family::Gaussian).unwrap(), r#""gaussian""#);
        assert_eq!(serde_json::from_str::<Family>(r#""binomial""#).unwrap(), Family::Binomial);
    }

    #[test]
    fn p_values() {
        let p = p_value_z(1.959_963_984_540_054);
        assert!((p - 0.05).abs() < 1e-11, "{p}"); // statrs erfc: 2e-12
        // R: 2 * pt(-2, 10) = 0.07338803.
        assert!((p_value_t(2.0, 10.0) - 0.073_388_03).abs() < 1e-8);
        assert!(p_value_t(2.0, f64::NAN).is_nan());
        assert!(p_value_t(2.0, 0.0).is_nan());
    }
}
