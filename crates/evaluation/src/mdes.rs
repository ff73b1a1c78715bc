//! The analytic minimum detectable effect of a two-level design with the treatment at school level (Bloom's
//! formula, as in Dong & Maynard's PowerUp! for cluster designs with covariates):
//!
//! MDES = M · √( ρ(1 − R²₂) / (P(1 − P)J) + (1 − ρ)(1 − R²₁) / (P(1 − P)Jn) ),  M = t₀.₉₇₅,df + t₀.₈₀,df,
//! df = J − 2,
//!
//! in SD units of the outcome's total SD, with J schools, a share P of them treated, n pupils per school in
//! the programme years, ρ the ICC of the model without pupil covariates, and R²₂ and R²₁ the shares of the
//! school and pupil variance the impact model's covariates explain. It treats the comparison as a post-test
//! contrast of treated and contrast schools: a difference-in-differences removes stable school differences,
//! so for this design the formula is conservative; `psmeval power` simulates the design itself.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::float::nan_if_null;

/// Bloom's MDES and what went into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticMdes {
    /// MDES at 80% power, 5% two-sided, in total-SD units.
    #[serde(deserialize_with = "nan_if_null")]
    pub mdes: f64,
    /// Schools (J).
    pub schools: usize,
    /// Share of treated schools (P).
    pub treated_share: f64,
    /// Mean pupils per school in the programme years (n).
    pub pupils_per_school: f64,
    /// ICC of the model without covariates (ρ).
    pub icc: f64,
    /// School-level variance explained by the covariates (R²₂).
    pub r2_school: f64,
    /// Pupil-level variance explained by the covariates (R²₁).
    pub r2_pupil: f64,
    /// Degrees of freedom of the multiplier (J − 2).
    pub df: f64,
    /// The multiplier M.
    pub multiplier: f64,
}

/// Bloom's MDES from the design and the variance components `(school, pupil)` of the models without and with
/// covariates. `None` when the inputs cannot give one (fewer than 3 schools, no treated or no contrast
/// school, a variance that is not positive).
pub fn bloom(
    schools: usize,
    treated: usize,
    pupils_per_school: f64,
    unadjusted: (f64, f64),
    adjusted: (f64, f64),
) -> Option<AnalyticMdes> {
    let (b0, w0) = unadjusted;
    let (b1, w1) = adjusted;
    if schools < 3 || treated == 0 || treated >= schools || !(b0 > 0.0 && w0 > 0.0 && pupils_per_school > 0.0) {
        return None;
    }
    let j = schools as f64;
    let p = treated as f64 / j;
    let icc = b0 / (b0 + w0);
    let r2_school = (1.0 - b1 / b0).clamp(0.0, 1.0);
    let r2_pupil = (1.0 - w1 / w0).clamp(0.0, 1.0);
    let df = j - 2.0;
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    let multiplier = t.inverse_cdf(0.975) + t.inverse_cdf(0.80);
    let var = icc * (1.0 - r2_school) / (p * (1.0 - p) * j)
        + (1.0 - icc) * (1.0 - r2_pupil) / (p * (1.0 - p) * j * pupils_per_school);
    Some(AnalyticMdes {
        mdes: multiplier * var.sqrt(),
        schools,
        treated_share: p,
        pupils_per_school,
        icc,
        r2_school,
        r2_pupil,
        df,
        multiplier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// J = 40 schools, n = 60, P = 0.5, ρ = 0.2, R²₂ = R²₁ = 0.5: M = qt(.975, 38) + qt(.8, 38) = 2.875577 and
    /// MDES = 0.2969883 (both from R).
    #[test]
    fn matches_the_textbook_formula() {
        let m = bloom(40, 20, 60.0, (0.2, 0.8), (0.1, 0.4)).unwrap();
        assert!((m.icc - 0.2).abs() < 1e-12 && (m.r2_school - 0.5).abs() < 1e-12 && (m.r2_pupil - 0.5).abs() < 1e-12);
        let var: f64 = 0.2 * 0.5 / (0.25 * 40.0) + 0.8 * 0.5 / (0.25 * 40.0 * 60.0);
        assert!((m.mdes - m.multiplier * var.sqrt()).abs() < 1e-12);
        assert!((m.multiplier - 2.875577).abs() < 1e-6, "{}", m.multiplier);
        assert!((m.mdes - 0.2969883).abs() < 1e-6, "{}", m.mdes);
        assert!(bloom(40, 0, 60.0, (0.2, 0.8), (0.1, 0.4)).is_none());
        assert!(bloom(40, 20, 60.0, (0.0, 0.8), (0.1, 0.4)).is_none());
    }
}
