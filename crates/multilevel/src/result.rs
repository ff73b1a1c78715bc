//! The result vocabulary shared by linear and logistic mixed models: one fixed-effects row, one variance
//! component, one correlation, one set of conditional modes and one contrast test, whatever the family.
//! These are plain serializable values; a report renders them and never recomputes.

use serde::{Deserialize, Deserializer, Serialize};

/// How a linear mixed model's fixed-effects tests get their denominator degrees of freedom (lmerTest's
/// `ddf`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DfMethod {
    /// Satterthwaite's approximation, as lmerTest's `summary` (the default).
    #[default]
    Satterthwaite,
    /// None: estimates, SEs and t values only, as lme4's own `summary` (lmerTest's `ddf = "lme4"`); no p values.
    Lme4,
}

impl DfMethod {
    /// Whether this is the default, Satterthwaite (records leave it out then).
    pub fn is_satterthwaite(&self) -> bool {
        *self == DfMethod::Satterthwaite
    }
}

/// One row of the fixed-effects table.
///
/// For a linear mixed model the statistic is t with lmerTest's Satterthwaite degrees of freedom; for a
/// logistic one it is the Wald z of glmer's `summary`, with `df = None` (the normal reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixedEffect {
    /// Column name of X, as R prints it.
    pub term: String,
    /// Estimate β̂ (on the link scale for a GLMM).
    pub estimate: f64,
    /// Standard error.
    pub std_error: f64,
    /// `estimate / std_error`: t (LMM) or z (GLMM).
    pub statistic: f64,
    /// Satterthwaite degrees of freedom of t (LMM, when computed); `None` for a z statistic or when the LMM
    /// was fitted without Satterthwaite df.
    pub df: Option<f64>,
    /// Two-sided p-value: from t on `df`, or from the standard normal when `df` is `None` for a GLMM
    /// (NaN for an LMM fitted without Satterthwaite df).
    pub p_value: f64,
}

impl FixedEffect {
    /// `exp(estimate)`: the odds ratio of a logit-link coefficient (meaningless for a linear model).
    pub fn odds_ratio(&self) -> f64 {
        self.estimate.exp()
    }
}

/// One variance component, as a row of lme4's `VarCorr`: the variance of one column of a random-effects term,
/// or (LMM only) the residual variance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarianceComponent {
    /// Grouping factor, or `Residual`.
    pub group: String,
    /// Column of the term; `None` for the residual.
    pub term: Option<String>,
    /// Variance.
    pub variance: f64,
    /// Standard deviation.
    pub std_dev: f64,
}

/// A correlation between two columns of the same random-effects term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    /// Grouping factor.
    pub group: String,
    /// First column.
    pub term1: String,
    /// Second column.
    pub term2: String,
    /// Correlation.
    pub correlation: f64,
}

/// Conditional modes (BLUPs) of one random-effects term with their conditional standard deviations, as
/// lme4's `ranef(condVar = TRUE)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionalModes {
    /// Grouping factor.
    pub group: String,
    /// Columns of the term.
    pub terms: Vec<String>,
    /// Level labels.
    pub levels: Vec<String>,
    /// `modes[level][column]`: the conditional mode `b`.
    pub modes: Vec<Vec<f64>>,
    /// `cond_sd[level][column]`: the conditional standard deviation.
    pub cond_sd: Vec<Vec<f64>>,
}

/// A test of one linear combination L'β of the fixed effects: lmerTest's `contest1D` (t, Satterthwaite df)
/// for a linear model, a Wald z test (`df = None`) for a logistic one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContrastTest {
    /// L'β̂.
    pub estimate: f64,
    /// √(L' cov(β̂) L).
    pub std_error: f64,
    /// `estimate / std_error`: t (LMM) or z (GLMM).
    pub statistic: f64,
    /// Satterthwaite degrees of freedom (LMM fitted with them); `None` for z or when not computed.
    pub df: Option<f64>,
    /// Two-sided p-value (NaN for an LMM fitted without Satterthwaite df).
    pub p_value: f64,
}

/// A likelihood-ratio test of two nested ML fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LikelihoodRatioTest {
    /// 2 (ℓ_large − ℓ_small).
    pub chisq: f64,
    /// Difference in parameter counts.
    pub df: usize,
    /// Upper chi-square tail probability.
    pub p_value: f64,
}

/// JSON has no NaN or infinity (serde_json writes them as `null`): reads `null` back as NaN.
pub(crate) fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Reads `null` back as +∞ (an objective that never became finite).
pub(crate) fn inf_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// Reads a list of bounds with `null` as −∞ (the unbounded lower bounds of θ's off-diagonal entries).
pub(crate) fn neg_inf_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|v| v.unwrap_or(f64::NEG_INFINITY)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_round_trips_through_json() {
        let fe = FixedEffect {
            term: "lead".into(),
            estimate: 0.25,
            std_error: 0.1,
            statistic: 2.5,
            df: None,
            p_value: 0.0124,
        };
        let json = serde_json::to_string(&fe).unwrap();
        assert_eq!(
            json,
            r#"{"term":"lead","estimate":0.25,"std_error":0.1,"statistic":2.5,"df":null,"p_value":0.0124}"#
        );
        assert_eq!(serde_json::from_str::<FixedEffect>(&json).unwrap(), fe);
        assert_eq!(fe.odds_ratio(), 0.25f64.exp());
        let vc = VarianceComponent { group: "Residual".into(), term: None, variance: 4.0, std_dev: 2.0 };
        assert_eq!(serde_json::from_str::<VarianceComponent>(&serde_json::to_string(&vc).unwrap()).unwrap(), vc);
        let ct = ContrastTest { estimate: 1.0, std_error: 0.5, statistic: 2.0, df: Some(30.5), p_value: 0.05 };
        assert_eq!(serde_json::from_str::<ContrastTest>(&serde_json::to_string(&ct).unwrap()).unwrap(), ct);
    }
}
