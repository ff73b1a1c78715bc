//! The record of a fitted mixed model as `results.json` and `psmeval lmm --json` hold it: plain,
//! serializable data with lme4's vocabulary (t tests with Satterthwaite df for linear models, Wald z tests
//! and odds ratios for logistic models). The two families keep their JSON shapes; readers use the
//! family-independent accessors ([`ModelRecord::coefficients`], [`ModelRecord::variance_components`]).

use std::collections::BTreeMap;

use psmeval_multilevel::{
    Correlation, Cr2, DfMethod, FixedEffect, GlmmFit, LmmFit, MixedModel, OptSummary, VarianceComponent,
};
use serde::{Deserialize, Serialize};

use crate::float::nan_if_null;
use crate::study::Family;

/// A fitted linear or logistic mixed model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelRecord {
    /// A linear mixed model (`lmer`).
    Linear(LinearModelRecord),
    /// A logistic mixed model (`glmer`, binomial family, logit link).
    Logistic(LogisticModelRecord),
}

/// A fixed effect of a linear mixed model with its Satterthwaite t test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TCoefficient {
    /// R's term name.
    pub term: String,
    /// Estimate.
    pub estimate: f64,
    /// Standard error.
    pub std_error: f64,
    /// Satterthwaite df (`null` where it could not be computed).
    #[serde(deserialize_with = "nan_if_null")]
    pub df: f64,
    /// t statistic.
    pub t_value: f64,
    /// Two-sided p value.
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
}

/// A fixed effect of a logistic mixed model with its Wald z test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZCoefficient {
    /// R's term name.
    pub term: String,
    /// Estimate (log odds).
    pub estimate: f64,
    /// Standard error.
    pub std_error: f64,
    /// z statistic.
    pub z_value: f64,
    /// Two-sided p value.
    pub p_value: f64,
    /// exp(estimate).
    pub odds_ratio: f64,
}

/// The record of a linear mixed model fit (issue #4's shape, plus the dropped-row count, θ and the ICC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModelRecord {
    /// The formula as given.
    pub formula: String,
    /// Always `gaussian`.
    pub family: Family,
    /// REML (true) or ML.
    pub reml: bool,
    /// Observations used.
    pub n_obs: usize,
    /// Rows dropped for a missing value in a used column.
    pub n_dropped: usize,
    /// Levels per grouping factor.
    pub groups: BTreeMap<String, usize>,
    /// Log-likelihood (REML log-likelihood for REML fits).
    pub log_likelihood: f64,
    /// REML criterion (REML) or deviance (ML).
    pub criterion: f64,
    /// AIC.
    pub aic: f64,
    /// BIC.
    pub bic: f64,
    /// Residual SD.
    pub sigma: f64,
    /// How the fixed effects' df were computed: Satterthwaite (the default, left out of the file), or none as
    /// lme4's summary (`"lme4"`: every `df` and `p_value` is then null).
    #[serde(default, skip_serializing_if = "DfMethod::is_satterthwaite")]
    pub df_method: DfMethod,
    /// Fixed effects with Satterthwaite tests (t values only with `df_method` `"lme4"`).
    pub fixed_effects: Vec<TCoefficient>,
    /// Variance components, residual last.
    pub random_effects: Vec<VarianceComponent>,
    /// Correlations of random effects.
    pub correlations: Vec<Correlation>,
    /// Relative covariance parameters.
    pub theta: Vec<f64>,
    /// Intraclass correlation (one scalar random intercept only).
    pub icc: Option<f64>,
    /// Optimizer converged.
    pub converged: bool,
    /// Singular fit.
    pub singular: bool,
    /// Objective evaluations.
    pub iterations: usize,
    /// Aliased fixed-effects columns dropped before fitting (as lme4).
    pub dropped_columns: Vec<String>,
    /// What the optimizer did (absent from results files written before it was recorded).
    #[serde(default)]
    pub optimizer: OptSummary,
    /// Cluster-robust tests of the fixed effects, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robust: Option<RobustRecord>,
}

/// Cluster-robust (CR2) tests of a linear model's fixed effects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustRecord {
    /// `CR2`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the clusters are (a column or grouping factor).
    pub cluster: String,
    /// Number of clusters.
    pub clusters: usize,
    /// Each fixed effect with its CR2 SE, Satterthwaite (Bell–McCaffrey) df and p value.
    pub fixed_effects: Vec<RobustCoefficient>,
}

/// One fixed effect's cluster-robust test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustCoefficient {
    /// R's term name.
    pub term: String,
    /// Estimate (as the model's).
    pub estimate: f64,
    /// CR2 standard error.
    pub std_error: f64,
    /// Satterthwaite df under the working model.
    #[serde(deserialize_with = "nan_if_null")]
    pub df: f64,
    /// Two-sided p value from t(df).
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
}

impl RobustRecord {
    /// The record of a CR2 fit clustered by `cluster`.
    pub fn cr2(cluster: &str, cr2: &Cr2) -> RobustRecord {
        RobustRecord {
            kind: "CR2".into(),
            cluster: cluster.to_string(),
            clusters: cr2.n_clusters,
            fixed_effects: cr2
                .fixed_effects()
                .into_iter()
                .map(|f| RobustCoefficient {
                    term: f.term,
                    estimate: f.estimate,
                    std_error: f.std_error,
                    df: f.df.unwrap_or(f64::NAN),
                    p_value: f.p_value,
                })
                .collect(),
        }
    }
}

/// The record of a logistic mixed model fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticModelRecord {
    /// The formula as given.
    pub formula: String,
    /// Always `binomial`.
    pub family: Family,
    /// Always `logit`.
    pub link: String,
    /// Quadrature points (1 = Laplace).
    pub nagq: usize,
    /// Observations used.
    pub n_obs: usize,
    /// Rows dropped for a missing value in a used column.
    pub n_dropped: usize,
    /// Levels per grouping factor.
    pub groups: BTreeMap<String, usize>,
    /// Full marginal log-likelihood.
    pub log_likelihood: f64,
    /// glmer's `logLik()` (differs by a constant for nAGQ > 1; see the multilevel crate's docs).
    pub glmer_log_likelihood: f64,
    /// glmer's `deviance()`.
    pub deviance: f64,
    /// The objective glmer minimizes.
    pub criterion: f64,
    /// AIC.
    pub aic: f64,
    /// BIC.
    pub bic: f64,
    /// Fixed effects with Wald z tests and odds ratios.
    pub fixed_effects: Vec<ZCoefficient>,
    /// Whether SEs come from the finite-difference Hessian (as glmer's default).
    pub se_from_hessian: bool,
    /// Variance components.
    pub random_effects: Vec<VarianceComponent>,
    /// Correlations of random effects.
    pub correlations: Vec<Correlation>,
    /// Relative covariance parameters.
    pub theta: Vec<f64>,
    /// Optimizer converged.
    pub converged: bool,
    /// Singular fit.
    pub singular: bool,
    /// Objective evaluations.
    pub iterations: usize,
    /// Separation and convergence diagnostics.
    pub diagnostics: DiagnosticsRecord,
    /// Aliased fixed-effects columns dropped before fitting (as glmer).
    pub dropped_columns: Vec<String>,
    /// What the optimizer did (absent from results files written before it was recorded).
    #[serde(default)]
    pub optimizer: OptSummary,
}

/// The diagnostics of a logistic fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticsRecord {
    /// Levels whose responses are all 0 or all 1 (perfectly separated groups).
    pub separated_groups: Vec<String>,
    /// Levels whose PIRLS did not converge at the optimum.
    pub pirls_not_converged: Vec<String>,
    /// The optimizer's final status.
    pub optimizer_status: String,
    /// Whether the finite-difference Hessian was not positive definite (SEs then come from `R_X`).
    pub hessian_not_positive_definite: bool,
    /// Observations whose fitted probability is numerically 0 or 1 (separation by a covariate).
    pub fitted_probabilities_0_or_1: usize,
}

impl ModelRecord {
    /// The record of a linear fit of `formula`, `n_dropped` rows having been dropped for missing values.
    pub fn linear(formula: &str, n_dropped: usize, fit: &LmmFit) -> ModelRecord {
        ModelRecord::Linear(LinearModelRecord {
            formula: formula.to_string(),
            family: Family::Gaussian,
            reml: fit.reml,
            n_obs: fit.n_obs(),
            n_dropped,
            groups: fit.groups().clone(),
            log_likelihood: fit.log_likelihood(),
            criterion: fit.criterion,
            aic: fit.aic(),
            bic: fit.bic(),
            sigma: fit.sigma,
            df_method: fit.df_method,
            fixed_effects: fit
                .fixed_effects()
                .iter()
                .map(|c| TCoefficient {
                    term: c.term.clone(),
                    estimate: c.estimate,
                    std_error: c.std_error,
                    df: c.df.unwrap_or(f64::NAN),
                    t_value: c.statistic,
                    p_value: c.p_value,
                })
                .collect(),
            random_effects: fit.variance_components().to_vec(),
            correlations: fit.correlations().to_vec(),
            theta: fit.theta().to_vec(),
            icc: fit.icc(),
            converged: fit.converged(),
            singular: fit.singular(),
            iterations: fit.optimizer().evaluations,
            dropped_columns: fit.dropped_columns().to_vec(),
            optimizer: fit.optimizer().clone(),
            robust: None,
        })
    }

    /// The record of a logistic fit of `formula`.
    pub fn logistic(formula: &str, n_dropped: usize, fit: &GlmmFit) -> ModelRecord {
        ModelRecord::Logistic(LogisticModelRecord {
            formula: formula.to_string(),
            family: Family::Binomial,
            link: "logit".into(),
            nagq: fit.nagq,
            n_obs: fit.n_obs(),
            n_dropped,
            groups: fit.groups().clone(),
            log_likelihood: fit.log_likelihood(),
            glmer_log_likelihood: fit.glmer_log_likelihood,
            deviance: fit.deviance,
            criterion: fit.criterion,
            aic: fit.aic(),
            bic: fit.bic(),
            fixed_effects: fit
                .fixed_effects()
                .iter()
                .map(|c| ZCoefficient {
                    term: c.term.clone(),
                    estimate: c.estimate,
                    std_error: c.std_error,
                    z_value: c.statistic,
                    p_value: c.p_value,
                    odds_ratio: c.estimate.exp(),
                })
                .collect(),
            se_from_hessian: fit.se_from_hessian,
            random_effects: fit.variance_components().to_vec(),
            correlations: fit.correlations().to_vec(),
            theta: fit.theta().to_vec(),
            converged: fit.converged(),
            singular: fit.singular(),
            iterations: fit.optimizer().evaluations,
            diagnostics: DiagnosticsRecord {
                separated_groups: fit.diagnostics.separated_groups.clone(),
                pirls_not_converged: fit.diagnostics.pirls_not_converged.clone(),
                optimizer_status: fit.optimizer().status.clone(),
                hessian_not_positive_definite: fit.diagnostics.hessian_not_positive_definite,
                fitted_probabilities_0_or_1: fit.diagnostics.fitted_probabilities_0_or_1,
            },
            dropped_columns: fit.dropped_columns().to_vec(),
            optimizer: fit.optimizer().clone(),
        })
    }

    /// `gaussian` or `binomial`.
    pub fn family(&self) -> Family {
        match self {
            ModelRecord::Linear(_) => Family::Gaussian,
            ModelRecord::Logistic(_) => Family::Binomial,
        }
    }

    /// The name of the test statistic: `t` (linear) or `z` (logistic).
    pub fn statistic_name(&self) -> &'static str {
        match self {
            ModelRecord::Linear(_) => "t",
            ModelRecord::Logistic(_) => "z",
        }
    }

    /// The fixed effects in the family-independent vocabulary (df `None` for Wald z tests).
    pub fn coefficients(&self) -> Vec<FixedEffect> {
        match self {
            ModelRecord::Linear(m) => m
                .fixed_effects
                .iter()
                .map(|c| FixedEffect {
                    term: c.term.clone(),
                    estimate: c.estimate,
                    std_error: c.std_error,
                    statistic: c.t_value,
                    df: m.df_method.is_satterthwaite().then_some(c.df),
                    p_value: c.p_value,
                })
                .collect(),
            ModelRecord::Logistic(m) => m
                .fixed_effects
                .iter()
                .map(|c| FixedEffect {
                    term: c.term.clone(),
                    estimate: c.estimate,
                    std_error: c.std_error,
                    statistic: c.z_value,
                    df: None,
                    p_value: c.p_value,
                })
                .collect(),
        }
    }

    /// Variance components (a linear model's residual last, with no term).
    pub fn variance_components(&self) -> &[VarianceComponent] {
        match self {
            ModelRecord::Linear(m) => &m.random_effects,
            ModelRecord::Logistic(m) => &m.random_effects,
        }
    }

    /// The formula fitted.
    pub fn formula(&self) -> &str {
        match self {
            ModelRecord::Linear(m) => &m.formula,
            ModelRecord::Logistic(m) => &m.formula,
        }
    }

    /// The optimizer reported convergence.
    pub fn converged(&self) -> bool {
        match self {
            ModelRecord::Linear(m) => m.converged,
            ModelRecord::Logistic(m) => m.converged,
        }
    }

    /// A variance component is estimated at zero (or a correlation at ±1).
    pub fn singular(&self) -> bool {
        match self {
            ModelRecord::Linear(m) => m.singular,
            ModelRecord::Logistic(m) => m.singular,
        }
    }

    /// Aliased fixed-effects columns dropped before fitting.
    pub fn dropped_columns(&self) -> &[String] {
        match self {
            ModelRecord::Linear(m) => &m.dropped_columns,
            ModelRecord::Logistic(m) => &m.dropped_columns,
        }
    }

    /// Rows dropped for a missing value.
    pub fn n_dropped(&self) -> usize {
        match self {
            ModelRecord::Linear(m) => m.n_dropped,
            ModelRecord::Logistic(m) => m.n_dropped,
        }
    }
}

/// lme4's message for dropped aliased columns, or nothing.
pub fn dropped_message(dropped: &[String]) -> Option<String> {
    (!dropped.is_empty()).then(|| {
        format!(
            "fixed-effect model matrix is rank deficient so dropping {} column{}: {}",
            dropped.len(),
            if dropped.len() == 1 { "" } else { "s" },
            dropped.join(", ")
        )
    })
}
