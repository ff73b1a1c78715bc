//! Fitting a linear mixed model: validation of the model frame, optimization of the profiled criterion, and
//! the immutable [`LmmFit`] result with everything lme4's `summary`, `VarCorr`, `ranef(condVar = TRUE)` and
//! lmerTest report, plus predictions and likelihood-ratio tests.

// Index loops mirror the matrix formulas (row-major `a[i * n + j]`).
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;

use ndarray::Array2;
use psmeval_frame::{ModelFrame, RandomTerm};
use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF, StudentsT};

use crate::error::LmmError;
use crate::optim::{OptSummary, minimize};
use crate::pls::Pls;
use crate::satterthwaite::{SatterthwaiteParts, satterthwaite_parts};

/// Fitting options. Defaults: REML, Satterthwaite df on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmmOptions {
    /// REML (default `true`) or maximum likelihood.
    pub reml: bool,
    /// Compute Satterthwaite df and p-values (default `true`).
    pub satterthwaite: bool,
    /// lme4's `isSingular` tolerance on diagonal θ (default 1e-4).
    pub singular_tol: f64,
}

impl Default for LmmOptions {
    fn default() -> Self {
        LmmOptions { reml: true, satterthwaite: true, singular_tol: 1e-4 }
    }
}

/// One row of the fixed-effects table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixedEffect {
    /// Column name of X.
    pub term: String,
    /// Estimate β̂.
    pub estimate: f64,
    /// Standard error.
    pub std_error: f64,
    /// Satterthwaite df (NaN if not computed).
    pub df: f64,
    /// t statistic.
    pub t_value: f64,
    /// Two-sided p-value from t on `df` (NaN if df not computed).
    pub p_value: f64,
}

/// One variance component (lme4's `VarCorr` diagonal, then the residual).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RandomEffect {
    /// Grouping factor, or `Residual`.
    pub group: String,
    /// Column of the term; `None` for the residual.
    pub term: Option<String>,
    /// Variance.
    pub variance: f64,
    /// Standard deviation.
    pub std_dev: f64,
}

/// A correlation between two random effects of the same term.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// Conditional modes (BLUPs) of one random-effects term.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RanefTerm {
    /// Grouping factor.
    pub group: String,
    /// Columns of the term.
    pub terms: Vec<String>,
    /// Level labels.
    pub levels: Vec<String>,
    /// `values[level][column]`: conditional mode.
    pub values: Vec<Vec<f64>>,
    /// `cond_sd[level][column]`: conditional standard deviation (lme4's `condVar`).
    pub cond_sd: Vec<Vec<f64>>,
}

/// A fitted linear mixed model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LmmFit {
    /// REML (true) or ML.
    pub reml: bool,
    /// Observations.
    pub n_obs: usize,
    /// Grouping factors and their level counts.
    pub groups: BTreeMap<String, usize>,
    /// Relative covariance parameters, in lme4's order.
    pub theta: Vec<f64>,
    /// Fixed effects.
    pub beta: Vec<f64>,
    /// Fixed-effects table.
    pub fixed_effects: Vec<FixedEffect>,
    /// Covariance of β̂ (p×p, row-major).
    pub vcov: Vec<f64>,
    /// Variance components, residual last.
    pub random_effects: Vec<RandomEffect>,
    /// Correlations within terms.
    pub correlations: Vec<Correlation>,
    /// Residual standard deviation.
    pub sigma: f64,
    /// Log-likelihood (REML log-likelihood for REML fits).
    pub log_likelihood: f64,
    /// REML criterion (REML) or deviance (ML), as `REMLcrit()` / `deviance()`.
    pub criterion: f64,
    /// AIC with df = p + length(θ) + 1.
    pub aic: f64,
    /// BIC.
    pub bic: f64,
    /// Number of parameters p + length(θ) + 1.
    pub n_params: usize,
    /// Whether the optimizer converged.
    pub converged: bool,
    /// Whether the fit is singular (a diagonal θ within the tolerance of 0).
    pub singular: bool,
    /// Objective evaluations.
    pub iterations: usize,
    /// The optimizer's record.
    pub optimizer: OptSummary,
    /// Intra-class correlation τ²/(τ² + σ²) for a model whose only random term is one scalar intercept.
    pub icc: Option<f64>,
    /// Conditional modes with conditional SDs, per term in lme4's order.
    pub ranef: Vec<RanefTerm>,
    /// Fixed-effects column names.
    pub x_names: Vec<String>,
    /// Fixed-effects columns dropped because they were aliased (rank-deficient X), as lme4's message names them.
    pub dropped_columns: Vec<String>,
    /// Satterthwaite ingredients for [`LmmFit::contrast`] (not serialized).
    #[serde(skip)]
    satterthwaite: Option<SatterthwaiteParts>,
}

/// A test of one linear combination L'β of the fixed effects (lmerTest's `contest1D`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContrastTest {
    /// L'β̂.
    pub estimate: f64,
    /// √(L' cov(β̂) L).
    pub std_error: f64,
    /// Satterthwaite degrees of freedom (NaN when the fit was made without them).
    pub df: f64,
    /// t statistic.
    pub t_value: f64,
    /// Two-sided p-value from t on `df`.
    pub p_value: f64,
}

/// A likelihood-ratio test of two nested ML fits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LikelihoodRatioTest {
    /// 2 (ℓ_large − ℓ_small).
    pub chisq: f64,
    /// Difference in parameter counts.
    pub df: usize,
    /// Upper chi-square tail probability.
    pub p_value: f64,
}

fn validate(frame: &ModelFrame) -> Result<(), LmmError> {
    let n = frame.y.len();
    if n == 0 {
        return Err(LmmError::NoObservations);
    }
    if frame.random.is_empty() {
        return Err(LmmError::NoRandomTerms);
    }
    let dim = |what: &str, expected: usize, found: usize| {
        if expected != found {
            Err(LmmError::DimensionMismatch { what: what.to_string(), expected, found })
        } else {
            Ok(())
        }
    };
    dim("x rows", n, frame.x.nrows())?;
    dim("x_names", frame.x.ncols(), frame.x_names.len())?;
    if let Some(i) = frame.y.iter().position(|v| !v.is_finite()) {
        return Err(LmmError::NonFinite { what: frame.response_name.clone(), row: i + 1 });
    }
    for (j, name) in frame.x_names.iter().enumerate() {
        if let Some(i) = frame.x.column(j).iter().position(|v| !v.is_finite()) {
            return Err(LmmError::NonFinite { what: name.clone(), row: i + 1 });
        }
    }
    let p = frame.x.ncols();
    if n <= p {
        return Err(LmmError::TooFewObservations { n_obs: n, p });
    }
    for rt in &frame.random {
        dim(&format!("codes of `{}`", rt.group), n, rt.codes.len())?;
        dim(&format!("z rows of `{}`", rt.group), n, rt.z.nrows())?;
        dim(&format!("names of `{}`", rt.group), rt.z.ncols(), rt.names.len())?;
        if let Some(i) = rt.codes.iter().position(|&c| c as usize >= rt.levels.len()) {
            return Err(LmmError::DimensionMismatch {
                what: format!("level code of `{}` at row {}", rt.group, i + 1),
                expected: rt.levels.len(),
                found: rt.codes[i] as usize,
            });
        }
        if rt.levels.len() >= n {
            return Err(LmmError::TooManyLevels { group: rt.group.clone(), levels: rt.levels.len(), n_obs: n });
        }
        for (c, name) in rt.names.iter().enumerate() {
            if let Some(i) = rt.z.column(c).iter().position(|v| !v.is_finite()) {
                return Err(LmmError::NonFinite { what: format!("{name} | {}", rt.group), row: i + 1 });
            }
        }
    }
    if frame.random.len() > 1 {
        let size: usize = frame.random.iter().map(|rt| rt.levels.len() * rt.z.ncols()).sum();
        if size > crate::pls::MAX_DENSE {
            return Err(LmmError::TooLarge { size, max: crate::pls::MAX_DENSE });
        }
    }
    Ok(())
}

/// Fits `y = Xβ + Zb + ε` by REML or ML as lme4's `lmer`. Fixed-effects columns that are linear
/// combinations of earlier columns are dropped first, as lme4 does, and named in `dropped_columns`.
pub fn fit_lmm(frame: &ModelFrame, options: &LmmOptions) -> Result<LmmFit, LmmError> {
    validate(frame)?;
    let aliased = frame.aliased_columns();
    if aliased.is_empty() {
        return fit_full_rank(frame, options);
    }
    if aliased.len() == frame.x.ncols() {
        return Err(LmmError::RankDeficient { column: frame.x_names[aliased[0]].clone() });
    }
    let mut fit = fit_full_rank(&frame.without_columns(&aliased), options)?;
    fit.dropped_columns = aliased.iter().map(|&j| frame.x_names[j].clone()).collect();
    Ok(fit)
}

/// The fit of a frame whose X has full column rank (`fit_lmm` has dropped aliased columns).
fn fit_full_rank(frame: &ModelFrame, options: &LmmOptions) -> Result<LmmFit, LmmError> {
    let reml = options.reml;
    // lme4 orders terms by decreasing number of levels (stable).
    let mut order: Vec<&RandomTerm> = frame.random.iter().collect();
    order.sort_by_key(|t| std::cmp::Reverse(t.levels.len()));
    let pls = Pls::new(&frame.y, &frame.x, &order);
    let lower = pls.lower_bounds();
    let mut theta = pls.theta_start();
    let opt = minimize(|t| pls.objective(t, reml), &mut theta, &lower);
    let eval = pls
        .eval(&theta)
        .ok_or_else(|| LmmError::Optimizer { reason: "no finite objective at the optimum".to_string() })?;
    let n = pls.n;
    let p = pls.p;
    let criterion = pls.criterion(&eval, reml);
    let sigma2 = eval.pwrss / if reml { (n - p) as f64 } else { n as f64 };
    let sigma = sigma2.sqrt();
    let unscaled = crate::dense::chol_inverse(&eval.lx, p);
    let vcov: Vec<f64> = unscaled.iter().map(|v| v * sigma2).collect();
    let satterthwaite = if options.satterthwaite { satterthwaite_parts(&pls, &theta, sigma, reml) } else { None };
    let df: Vec<f64> = (0..p)
        .map(|j| {
            let mut l = vec![0.0; p];
            l[j] = 1.0;
            satterthwaite.as_ref().map_or(f64::NAN, |s| s.df(&l, &vcov))
        })
        .collect();
    let fixed_effects = (0..p)
        .map(|j| {
            let se = vcov[j * p + j].sqrt();
            let t = eval.beta[j] / se;
            let p_value = if df[j].is_finite() && df[j] > 0.0 {
                StudentsT::new(0.0, 1.0, df[j]).map(|d| 2.0 * d.sf(t.abs())).unwrap_or(f64::NAN)
            } else {
                f64::NAN
            };
            FixedEffect {
                term: frame.x_names[j].clone(),
                estimate: eval.beta[j],
                std_error: se,
                df: df[j],
                t_value: t,
                p_value,
            }
        })
        .collect();
    let mut random_effects = Vec::new();
    let mut correlations = Vec::new();
    let mut singular = false;
    for t in &pls.terms {
        let q = t.q;
        let lam = t.lambda(&theta);
        for c in 0..q {
            if lam[c * q + c] < options.singular_tol {
                singular = true;
            }
        }
        let mut cov = vec![0.0; q * q];
        for a in 0..q {
            for b in 0..q {
                cov[a * q + b] = sigma2 * (0..q).map(|k| lam[a * q + k] * lam[b * q + k]).sum::<f64>();
            }
        }
        for a in 0..q {
            random_effects.push(RandomEffect {
                group: t.group.clone(),
                term: Some(t.names[a].clone()),
                variance: cov[a * q + a],
                std_dev: cov[a * q + a].sqrt(),
            });
        }
        for a in 0..q {
            for b in a + 1..q {
                correlations.push(Correlation {
                    group: t.group.clone(),
                    term1: t.names[a].clone(),
                    term2: t.names[b].clone(),
                    correlation: cov[a * q + b] / (cov[a * q + a] * cov[b * q + b]).sqrt(),
                });
            }
        }
    }
    random_effects.push(RandomEffect { group: "Residual".to_string(), term: None, variance: sigma2, std_dev: sigma });
    let modes = pls
        .modes(&theta, &eval.beta)
        .ok_or_else(|| LmmError::Optimizer { reason: "conditional modes not computable".to_string() })?;
    let ranef = pls
        .terms
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let q = t.q;
            let values =
                (0..t.levels.len()).map(|j| (0..q).map(|c| modes.b[t.u_offset + j * q + c]).collect()).collect();
            let cond_sd = modes.cond_cov[k]
                .iter()
                .map(|cov| (0..q).map(|c| (sigma2 * cov[c * q + c]).sqrt()).collect())
                .collect();
            RanefTerm { group: t.group.clone(), terms: t.names.clone(), levels: t.levels.clone(), values, cond_sd }
        })
        .collect();
    let icc = (pls.terms.len() == 1 && pls.terms[0].q == 1 && pls.terms[0].names[0] == "(Intercept)").then(|| {
        let tau2 = random_effects[0].variance;
        tau2 / (tau2 + sigma2)
    });
    let n_params = p + theta.len() + 1;
    let log_likelihood = -criterion / 2.0;
    let groups = pls.terms.iter().map(|t| (t.group.clone(), t.levels.len())).collect();
    Ok(LmmFit {
        reml,
        n_obs: n,
        groups,
        beta: eval.beta.clone(),
        fixed_effects,
        vcov,
        random_effects,
        correlations,
        sigma,
        log_likelihood,
        criterion,
        aic: criterion + 2.0 * n_params as f64,
        bic: criterion + (n as f64).ln() * n_params as f64,
        n_params,
        converged: opt.converged,
        singular,
        iterations: opt.evaluations,
        optimizer: opt,
        icc,
        ranef,
        x_names: frame.x_names.clone(),
        theta,
        dropped_columns: Vec::new(),
        satterthwaite,
    })
}

/// Fits a linear mixed model with prior weights: observation i has residual variance σ²/wᵢ (lme4's `weights`).
/// Equivalent to scaling the rows of y, X and Z by √wᵢ; the log-likelihood includes ½ Σ log wᵢ, as lme4's.
pub fn fit_lmm_weighted(frame: &ModelFrame, weights: &[f64], options: &LmmOptions) -> Result<LmmFit, LmmError> {
    if weights.len() != frame.y.len() {
        return Err(LmmError::DimensionMismatch {
            what: "weights".to_string(),
            expected: frame.y.len(),
            found: weights.len(),
        });
    }
    if let Some(row) = weights.iter().position(|w| !(w.is_finite() && *w > 0.0)) {
        return Err(LmmError::NonFinite { what: "weights (must be positive and finite)".to_string(), row: row + 1 });
    }
    let root: Vec<f64> = weights.iter().map(|w| w.sqrt()).collect();
    let mut scaled = frame.clone();
    for (i, r) in root.iter().enumerate() {
        scaled.y[i] *= r;
        scaled.x.row_mut(i).mapv_inplace(|v| v * r);
        for t in &mut scaled.random {
            t.z.row_mut(i).mapv_inplace(|v| v * r);
        }
    }
    let mut fit = fit_lmm(&scaled, options)?;
    let half_log_w: f64 = weights.iter().map(|w| w.ln()).sum::<f64>() / 2.0;
    fit.log_likelihood += half_log_w;
    fit.criterion -= 2.0 * half_log_w;
    fit.aic -= 2.0 * half_log_w;
    fit.bic -= 2.0 * half_log_w;
    Ok(fit)
}

impl LmmFit {
    /// Estimate, standard error and Satterthwaite df of the contrast L'β (`l` has one weight per fixed
    /// effect), as lmerTest's `contest1D(fit, L)`.
    pub fn contrast(&self, l: &[f64]) -> Result<ContrastTest, LmmError> {
        let p = self.beta.len();
        if l.len() != p {
            return Err(LmmError::DimensionMismatch { what: "contrast".to_string(), expected: p, found: l.len() });
        }
        let estimate: f64 = l.iter().zip(&self.beta).map(|(a, b)| a * b).sum();
        let mut var = 0.0;
        for i in 0..p {
            for j in 0..p {
                var += l[i] * self.vcov[i * p + j] * l[j];
            }
        }
        let std_error = var.sqrt();
        let df = self.satterthwaite.as_ref().map_or(f64::NAN, |s| s.df(l, &self.vcov));
        let t_value = estimate / std_error;
        let p_value = if df.is_finite() && df > 0.0 {
            StudentsT::new(0.0, 1.0, df).map(|d| 2.0 * d.sf(t_value.abs())).unwrap_or(f64::NAN)
        } else {
            f64::NAN
        };
        Ok(ContrastTest { estimate, std_error, df, t_value, p_value })
    }

    /// Population-level predictions Xβ̂ for a fixed-effects matrix with the fit's columns.
    pub fn predict_fixed(&self, x: &Array2<f64>) -> Result<Vec<f64>, LmmError> {
        if x.ncols() != self.beta.len() {
            return Err(LmmError::DimensionMismatch {
                what: "columns of x".to_string(),
                expected: self.beta.len(),
                found: x.ncols(),
            });
        }
        Ok(x.rows().into_iter().map(|r| r.iter().zip(&self.beta).map(|(a, b)| a * b).sum()).collect())
    }

    /// Predictions for a model frame: Xβ̂ plus, when `include_random`, Zb̂ for every term matched by group name
    /// and level label (a level not seen in the fit contributes 0, as lme4's `allow.new.levels`).
    pub fn predict(&self, frame: &ModelFrame, include_random: bool) -> Result<Vec<f64>, LmmError> {
        let mut pred = self.predict_fixed(&frame.x)?;
        if !include_random {
            return Ok(pred);
        }
        for rt in &frame.random {
            let Some(re) = self.ranef.iter().find(|r| r.group == rt.group && r.terms == rt.names) else {
                return Err(LmmError::NotComparable { reason: format!("no random term `{}` in the fit", rt.group) });
            };
            let index: std::collections::HashMap<&str, usize> =
                re.levels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
            let map: Vec<Option<usize>> = rt.levels.iter().map(|l| index.get(l.as_str()).copied()).collect();
            for (i, pr) in pred.iter_mut().enumerate() {
                if let Some(j) = map[rt.codes[i] as usize] {
                    *pr += (0..rt.names.len()).map(|c| rt.z[[i, c]] * re.values[j][c]).sum::<f64>();
                }
            }
        }
        Ok(pred)
    }
}

/// Likelihood-ratio test of `small` nested in `large`; both must be ML fits on the same observations.
pub fn likelihood_ratio_test(small: &LmmFit, large: &LmmFit) -> Result<LikelihoodRatioTest, LmmError> {
    if small.reml || large.reml {
        return Err(LmmError::NotComparable { reason: "both fits must be ML (REML = false)".to_string() });
    }
    if small.n_obs != large.n_obs {
        return Err(LmmError::NotComparable { reason: "different numbers of observations".to_string() });
    }
    if large.n_params <= small.n_params {
        return Err(LmmError::NotComparable { reason: "the larger model must have more parameters".to_string() });
    }
    let df = large.n_params - small.n_params;
    let chisq = (2.0 * (large.log_likelihood - small.log_likelihood)).max(0.0);
    let p_value = ChiSquared::new(df as f64).map(|d| d.sf(chisq)).unwrap_or(f64::NAN);
    Ok(LikelihoodRatioTest { chisq, df, p_value })
}
