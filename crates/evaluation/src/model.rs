//! One way to fit a mixed model from a table and a formula, for both families: the frame, the response
//! checks of binomial models, prior weights, the fit, and its [`ModelRecord`]. `psmeval lmm` and the
//! evaluation's impact models both go through [`fit_model`], so a linear and a logistic outcome differ only in
//! the [`ModelOptions`] they pass.

use psmeval_frame::formula::Response;
use psmeval_frame::{Formula, ModelFrame, Table, binomial_counts, build_model_frame};
use psmeval_multilevel::glmm::{GlmmOptions, fit_glmm};
use psmeval_multilevel::{
    ConditionalModes, ContrastTest, Cr2, GlmmFit, LmmFit, LmmOptions, MixedModel, VarianceComponent, fit_lmm,
};

use crate::record::{ModelRecord, dropped_message};
use crate::study::Family;

/// How to fit a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// Response family.
    pub family: Family,
    /// REML (linear models only; logistic models are always fitted by ML).
    pub reml: bool,
    /// Adaptive Gauss–Hermite quadrature points (logistic models; 1 = Laplace).
    pub nagq: usize,
    /// Satterthwaite df for the fixed effects (linear models).
    pub satterthwaite: bool,
    /// SEs from the finite-difference Hessian as glmer does (logistic models); otherwise from the PIRLS
    /// information at the optimum.
    pub hessian_se: bool,
}

impl ModelOptions {
    /// lme4's defaults for `family`: REML and Satterthwaite df for linear models, Laplace and Hessian SEs for
    /// logistic models.
    pub fn new(family: Family) -> ModelOptions {
        ModelOptions { family, reml: true, nagq: 1, satterthwaite: true, hessian_se: true }
    }
}

/// A fitted model of either family.
#[derive(Debug, Clone)]
pub enum Fitted {
    /// A linear mixed model.
    Linear(LmmFit),
    /// A logistic mixed model.
    Logistic(GlmmFit),
}

impl Fitted {
    /// The record of the fit of `formula` (`n_dropped` rows dropped for missing values).
    pub fn record(&self, formula: &str, n_dropped: usize) -> ModelRecord {
        match self {
            Fitted::Linear(f) => ModelRecord::linear(formula, n_dropped, f),
            Fitted::Logistic(f) => ModelRecord::logistic(formula, n_dropped, f),
        }
    }

    /// The conditional modes of the random effects with their conditional SDs.
    pub fn ranef(&self) -> &[ConditionalModes] {
        match self {
            Fitted::Linear(f) => f.ranef(),
            Fitted::Logistic(f) => f.ranef(),
        }
    }

    /// The variance components (a linear model's residual last, with no term).
    pub fn variance_components(&self) -> &[VarianceComponent] {
        match self {
            Fitted::Linear(f) => f.variance_components(),
            Fitted::Logistic(f) => f.variance_components(),
        }
    }

    /// The intraclass correlation of a model with one scalar random intercept (latent scale for logistic).
    pub fn icc(&self) -> Option<f64> {
        match self {
            Fitted::Linear(f) => f.icc(),
            Fitted::Logistic(f) => f.icc(),
        }
    }

    /// The CR2 cluster-robust variance of a linear fit's fixed effects, clustered by `cluster` (a code per
    /// frame row); `weights` are the fit's prior weights per frame row. Logistic fits have none here.
    pub fn cr2(&self, frame: &ModelFrame, weights: Option<&[f64]>, cluster: &[u32]) -> Result<Cr2, String> {
        match self {
            Fitted::Linear(f) => Cr2::new(frame, f, weights, cluster).map_err(|e| e.to_string()),
            Fitted::Logistic(_) => {
                Err("cluster-robust (CR2) inference is implemented for linear models only".to_string())
            }
        }
    }

    /// Test of the contrast `l · β` (Satterthwaite t for linear models, Wald z for logistic ones).
    pub fn contrast(&self, l: &[f64]) -> Result<ContrastTest, String> {
        match self {
            Fitted::Linear(f) => f.contrast(l).map_err(|e| e.to_string()),
            Fitted::Logistic(f) => f.contrast(l).map_err(|e| e.to_string()),
        }
    }

    /// Messages a reader of the fit should see: dropped aliased columns, and for logistic models fitted
    /// probabilities numerically 0 or 1.
    pub fn notes(&self) -> Vec<String> {
        let (dropped, extreme) = match self {
            Fitted::Linear(f) => (f.dropped_columns(), 0),
            Fitted::Logistic(f) => (f.dropped_columns(), f.diagnostics.fitted_probabilities_0_or_1),
        };
        dropped_message(dropped)
            .into_iter()
            .chain((extreme > 0).then(|| {
                format!(
                    "fitted probabilities numerically 0 or 1 occurred for {extreme} pupils: a covariate may separate \
                     the outcome, so its coefficient and SE are unreliable"
                )
            }))
            .collect()
    }
}

/// Binomial responses: 0/1 columns (prior weights 1), `cbind(successes, failures)` (proportions with the
/// totals as weights), or proportions in [0, 1] with the number of trials as `weights`. Values outside the
/// allowed range are named with their data row. Returns the prior weights to use.
pub fn binomial_response(
    formula: &Formula,
    table: &Table,
    frame: &mut ModelFrame,
    weights: Option<&[f64]>,
) -> Result<Option<Vec<f64>>, String> {
    if matches!(formula.response, Response::Cbind(..)) {
        if weights.is_some() {
            return Err("give either a cbind(successes, failures) response or weights, not both".into());
        }
        let (y, w) = binomial_counts(formula, table, &frame.rows).map_err(|e| e.to_string())?;
        frame.y = y;
        return Ok(Some(w));
    }
    let row = |k: usize| frame.rows[k] + 1;
    match weights {
        None => {
            if let Some(k) = frame.y.iter().position(|&v| v != 0.0 && v != 1.0) {
                return Err(format!(
                    "a binomial response must be 0 or 1 (or a proportion with weights, or cbind(successes, \
                     failures)); `{}` is {} in data row {}",
                    frame.response_name,
                    frame.y[k],
                    row(k)
                ));
            }
            Ok(None)
        }
        Some(w) => {
            if let Some(k) = frame.y.iter().position(|&v| !(0.0..=1.0).contains(&v)) {
                return Err(format!(
                    "with weights, a binomial response must be a proportion in [0, 1]; `{}` is {} in data row {}",
                    frame.response_name,
                    frame.y[k],
                    row(k)
                ));
            }
            if let Some(k) = w.iter().position(|&v| !(v.is_finite() && v > 0.0)) {
                return Err(format!(
                    "weights must be positive numbers of trials; found {} in data row {}",
                    w[k],
                    row(k)
                ));
            }
            Ok(Some(w.to_vec()))
        }
    }
}

/// Weights of a model's observations, one per frame row.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// Every observation weighs 1.
    None,
    /// lme4's prior weights: residual variance σ²/w for linear models; the number of trials of a proportion
    /// response for logistic models.
    Prior(Vec<f64>),
    /// Matching (sampling) weights: prior weights of a 0/1 response; ignored for `cbind` responses, whose
    /// totals are the weights.
    Sampling(Vec<f64>),
}

impl Weights {
    /// Sampling weights of the frame's rows from per-table-row `weights`, or [`Weights::None`] when all are 1.
    pub fn sampling(frame: &ModelFrame, weights: &[f64]) -> Weights {
        let w: Vec<f64> = frame.rows.iter().map(|&i| weights[i]).collect();
        if w.iter().all(|&v| v == 1.0) { Weights::None } else { Weights::Sampling(w) }
    }
}

/// Fits `formula` (parsed) to `frame`, built from `table`. Returns the fit and the frame (whose response a
/// `cbind` binomial model replaces by proportions).
pub fn fit_model(
    formula: &Formula,
    table: &Table,
    mut frame: ModelFrame,
    weights: Weights,
    options: &ModelOptions,
) -> Result<(Fitted, ModelFrame), String> {
    let fitted = match options.family {
        Family::Gaussian => {
            let weights = match weights {
                Weights::None => None,
                Weights::Prior(w) | Weights::Sampling(w) => Some(w),
            };
            let opts = LmmOptions { reml: options.reml, satterthwaite: options.satterthwaite, weights };
            Fitted::Linear(fit_lmm(&frame, &opts).map_err(|e| e.to_string())?)
        }
        Family::Binomial => {
            let weights = match weights {
                Weights::None => binomial_response(formula, table, &mut frame, None)?,
                Weights::Prior(w) => binomial_response(formula, table, &mut frame, Some(&w))?,
                Weights::Sampling(w) => binomial_response(formula, table, &mut frame, None)?.or(Some(w)),
            };
            let opts = GlmmOptions { nagq: options.nagq, weights, use_hessian: options.hessian_se };
            Fitted::Logistic(fit_glmm(&frame, &opts).map_err(|e| e.to_string())?)
        }
    };
    Ok((fitted, frame))
}

/// Builds the frame of `formula` (written `formula_text`) on `table` and fits it, with matching weights
/// `row_weights` (one per table row) as sampling weights. Errors building the frame name the formula.
pub fn fit_formula(
    formula: &Formula,
    formula_text: &str,
    table: &Table,
    row_weights: &[f64],
    options: &ModelOptions,
) -> Result<(Fitted, ModelFrame), String> {
    let frame = build_model_frame(formula, table).map_err(|e| format!("formula `{formula_text}`: {e}"))?;
    let weights = Weights::sampling(&frame, row_weights);
    fit_model(formula, table, frame, weights, options)
}
