//! Fitting a linear mixed model: validation of the model frame and weights, optimization of the profiled
//! criterion, and the immutable [`LmmFit`] with everything lme4's `summary`, `VarCorr`, `ranef(condVar =
//! TRUE)` and lmerTest report (read through [`MixedModel`]), plus predictions and likelihood-ratio tests.

// Index loops mirror the matrix formulas (row-major `a[i * n + j]`).
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;

use ndarray::Array2;
use psmeval_frame::{ModelFrame, RandomTerm};
use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

use crate::error::MixedModelError;
use crate::model::{Family, MixedModel, contrast_estimate, p_value_t};
use crate::optim::{OptParameters, OptSummary, Schedule, minimize};
use crate::pls::{MultiTerm, Pls};
use crate::result::{
    ConditionalModes, ContrastTest, Correlation, DfMethod, FixedEffect, LikelihoodRatioTest, VarianceComponent,
};
use crate::satterthwaite::{SatterthwaiteParts, satterthwaite_parts};
use crate::validate::{validate_frame, validate_weights};

/// Fitting options. Defaults: REML, Satterthwaite df on, no weights.
#[derive(Debug, Clone, PartialEq)]
pub struct LmmOptions {
    /// REML (default `true`) or maximum likelihood.
    pub reml: bool,
    /// Compute Satterthwaite df and p-values (default `true`).
    pub satterthwaite: bool,
    /// Prior weights, one per row (lme4's `weights`): observation i has residual variance σ²/wᵢ. `None`
    /// (default) means all 1.
    pub weights: Option<Vec<f64>>,
}

impl Default for LmmOptions {
    fn default() -> Self {
        LmmOptions { reml: true, satterthwaite: true, weights: None }
    }
}

/// lme4's `isSingular` tolerance on the diagonal of Λ.
const SINGULAR_TOL: f64 = 1e-4;

/// A fitted linear mixed model. The quantities common to both families are read through [`MixedModel`];
/// the fields here are the linear model's own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LmmFit {
    /// REML (true) or ML.
    pub reml: bool,
    /// Residual standard deviation σ.
    pub sigma: f64,
    /// REML criterion (REML) or deviance (ML), as `REMLcrit()` / `deviance()`.
    pub criterion: f64,
    /// Number of parameters p + length(θ) + 1 (the df of AIC and of likelihood-ratio tests).
    pub n_params: usize,
    /// How the fixed effects' tests got their df ([`LmmOptions::satterthwaite`]).
    pub df_method: DfMethod,
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
    /// Satterthwaite ingredients for [`MixedModel::contrast`] (not serialized).
    #[serde(skip)]
    satterthwaite: Option<SatterthwaiteParts>,
}

fn validate(frame: &ModelFrame) -> Result<(), MixedModelError> {
    validate_frame(frame)?;
    let n = frame.y.len();
    let p = frame.x.ncols();
    if n <= p {
        return Err(MixedModelError::TooFewObservations { n_obs: n, p });
    }
    for rt in &frame.random {
        if rt.levels.len() >= n {
            return Err(MixedModelError::TooManyLevels { group: rt.group.clone(), levels: rt.levels.len(), n_obs: n });
        }
    }
    Ok(())
}

/// The random-effects terms in lme4's order (`mkReTrms`): as written when their numbers of levels never
/// increase, otherwise by decreasing number of levels with ties in reverse written order
/// (`rev(order(nl))`).
pub(crate) fn lme4_term_order(random: &[RandomTerm]) -> Vec<usize> {
    let nl: Vec<usize> = random.iter().map(|t| t.levels.len()).collect();
    let mut idx: Vec<usize> = (0..random.len()).collect();
    if nl.windows(2).all(|w| w[1] <= w[0]) {
        return idx;
    }
    idx.sort_by_key(|&i| nl[i]); // stable ascending, as R's order()
    idx.reverse();
    idx
}

/// Each term's lower-triangular relative covariance factor Λ (q × q, row-major), in the written term order,
/// from θ laid out in lme4's term order (column by column within a term). A θ of the wrong length is an error.
pub(crate) fn lambda_blocks(random: &[RandomTerm], theta: &[f64]) -> Result<Vec<Vec<f64>>, MixedModelError> {
    let n_theta: usize = random.iter().map(|t| t.names.len() * (t.names.len() + 1) / 2).sum();
    if theta.len() != n_theta {
        return Err(MixedModelError::DimensionMismatch { what: "theta".into(), expected: n_theta, found: theta.len() });
    }
    let mut lambdas = vec![Vec::new(); random.len()];
    let mut offset = 0;
    for k in lme4_term_order(random) {
        let q = random[k].names.len();
        let mut lam = vec![0.0; q * q];
        for c in 0..q {
            for r in c..q {
                lam[r * q + c] = theta[offset];
                offset += 1;
            }
        }
        lambdas[k] = lam;
    }
    Ok(lambdas)
}

/// Fits `y = Xβ + Zb + ε` by REML or ML as lme4's `lmer`, with prior weights when `options.weights` is
/// set. Fixed-effects columns that are linear combinations of earlier columns are dropped first, as lme4
/// does, and named in [`MixedModel::dropped_columns`].
///
/// Weights: observation i has residual variance σ²/wᵢ; the fit is that of the rows of y, X and Z scaled by
/// √wᵢ, and the log-likelihood includes ½ Σ log wᵢ, as lme4's.
pub fn fit_lmm(frame: &ModelFrame, options: &LmmOptions) -> Result<LmmFit, MixedModelError> {
    fit_lmm_with(frame, options, MultiTerm::Auto)
}

/// [`fit_lmm`] with a choice of multi-term factorization (tests force the sparse one on small models).
pub(crate) fn fit_lmm_with(
    frame: &ModelFrame,
    options: &LmmOptions,
    multi: MultiTerm,
) -> Result<LmmFit, MixedModelError> {
    validate(frame)?;
    let Some(weights) = &options.weights else {
        return fit_unweighted(frame, options, multi);
    };
    validate_weights(weights, frame.y.len())?;
    let mut scaled = frame.clone();
    for (i, r) in weights.iter().map(|w| w.sqrt()).enumerate() {
        scaled.y[i] *= r;
        scaled.x.row_mut(i).mapv_inplace(|v| v * r);
        for t in &mut scaled.random {
            t.z.row_mut(i).mapv_inplace(|v| v * r);
        }
    }
    let mut fit = fit_unweighted(&scaled, options, multi)?;
    let half_log_w: f64 = weights.iter().map(|w| w.ln()).sum::<f64>() / 2.0;
    fit.log_likelihood += half_log_w;
    fit.criterion -= 2.0 * half_log_w;
    fit.aic -= 2.0 * half_log_w;
    fit.bic -= 2.0 * half_log_w;
    Ok(fit)
}

/// The fit of a validated frame (weights already applied): aliased columns dropped, then the full-rank fit.
fn fit_unweighted(frame: &ModelFrame, options: &LmmOptions, multi: MultiTerm) -> Result<LmmFit, MixedModelError> {
    // X'X once: for the rank check and, when X has full rank, for the fit.
    let xtx = psmeval_frame::design::crossprod(&frame.x);
    let aliased = psmeval_frame::design::aliased_in(&xtx, frame.x.ncols());
    if aliased.is_empty() {
        return fit_full_rank(frame, options, multi, Some(xtx));
    }
    if aliased.len() == frame.x.ncols() {
        return Err(MixedModelError::RankDeficient { column: frame.x_names[aliased[0]].clone() });
    }
    let mut fit = fit_full_rank(&frame.without_columns(&aliased), options, multi, None)?;
    fit.dropped_columns = aliased.iter().map(|&j| frame.x_names[j].clone()).collect();
    Ok(fit)
}

/// The fit of a frame whose X has full column rank (`xtx`: its X'X when already computed).
fn fit_full_rank(
    frame: &ModelFrame,
    options: &LmmOptions,
    multi: MultiTerm,
    xtx: Option<Vec<f64>>,
) -> Result<LmmFit, MixedModelError> {
    let reml = options.reml;
    let order: Vec<&RandomTerm> = lme4_term_order(&frame.random).into_iter().map(|k| &frame.random[k]).collect();
    let pls = Pls::new(&frame.y, &frame.x, xtx, &order, multi)?;
    let lower = pls.lower_bounds();
    let theta_initial = pls.theta_start();
    let mut theta = theta_initial.clone();
    // A coarse-to-fine run from lme4's start to a trust radius of 1e-7, and a restart with a smaller radius only
    // when that run stopped short of convergence: after a converged run the restart moved the criterion by at
    // most 6e-11 on every model measured (the national example's impact models, InstEval), at the cost of
    // 30-40% more evaluations. Below a radius of about 1e-7 the criterion's rounding (1e-14 of its size, 5e-9 on
    // InstEval) is larger than its changes: going on to 1e-9 cost 14% more evaluations on the 19 lme4
    // reference fits and moved none of their criteria by more than 1e-12 relative (lme4 itself stops at
    // NLopt's xtol_abs = ftol_abs = 1e-8).
    let schedule = Schedule {
        runs: &[(0.5, 1e-7), (1e-3, 1e-11)],
        max_fun_per_parameter: 20_000,
        restart_after_convergence: false,
    };
    let runs = minimize(|t| pls.objective(t, reml), &mut theta, &lower, schedule, OptParameters::Theta);
    let eval = pls
        .eval(&theta)
        .ok_or_else(|| MixedModelError::Optimizer { reason: "no finite objective at the optimum".to_string() })?;
    let n = pls.n;
    let p = pls.p;
    let criterion = pls.criterion(&eval, reml);
    let optimizer = OptSummary::new(theta_initial, lower, theta.clone(), criterion, runs);
    let sigma2 = eval.pwrss / if reml { (n - p) as f64 } else { n as f64 };
    let sigma = sigma2.sqrt();
    let unscaled = crate::dense::chol_inverse(&eval.lx, p);
    let vcov: Vec<f64> = unscaled.iter().map(|v| v * sigma2).collect();
    let satterthwaite = if options.satterthwaite { satterthwaite_parts(&pls, &theta, sigma, reml) } else { None };
    let fixed_effects = (0..p)
        .map(|j| {
            let mut l = vec![0.0; p];
            l[j] = 1.0;
            let df = satterthwaite.as_ref().map(|s| s.df(&l, &vcov));
            let se = vcov[j * p + j].sqrt();
            let t = eval.beta[j] / se;
            FixedEffect {
                term: frame.x_names[j].clone(),
                estimate: eval.beta[j],
                std_error: se,
                statistic: t,
                df,
                p_value: df.map_or(f64::NAN, |df| p_value_t(t, df)),
            }
        })
        .collect();
    let mut variance_components = Vec::new();
    let mut correlations = Vec::new();
    let mut singular = false;
    for t in &pls.terms {
        let q = t.q;
        let lam = t.lambda(&theta);
        for c in 0..q {
            if lam[c * q + c] < SINGULAR_TOL {
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
            variance_components.push(VarianceComponent {
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
    variance_components.push(VarianceComponent {
        group: "Residual".to_string(),
        term: None,
        variance: sigma2,
        std_dev: sigma,
    });
    let modes = pls
        .modes(&theta, &eval.beta)
        .ok_or_else(|| MixedModelError::Optimizer { reason: "conditional modes not computable".to_string() })?;
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
            ConditionalModes {
                group: t.group.clone(),
                terms: t.names.clone(),
                levels: t.levels.clone(),
                modes: values,
                cond_sd,
            }
        })
        .collect();
    let icc = (pls.terms.len() == 1 && pls.terms[0].q == 1 && pls.terms[0].names[0] == "(Intercept)").then(|| {
        let tau2 = variance_components[0].variance;
        tau2 / (tau2 + sigma2)
    });
    let n_params = p + theta.len() + 1;
    let log_likelihood = -criterion / 2.0;
    let groups = pls.terms.iter().map(|t| (t.group.clone(), t.levels.len())).collect();
    Ok(LmmFit {
        reml,
        sigma,
        criterion,
        n_params,
        df_method: if options.satterthwaite { DfMethod::Satterthwaite } else { DfMethod::Lme4 },
        family: Family::Gaussian,
        n_obs: n,
        groups,
        theta,
        beta: eval.beta.clone(),
        vcov,
        fixed_effects,
        variance_components,
        correlations,
        ranef,
        log_likelihood,
        aic: criterion + 2.0 * n_params as f64,
        bic: criterion + (n as f64).ln() * n_params as f64,
        converged: optimizer.converged,
        singular,
        optimizer,
        icc,
        dropped_columns: Vec::new(),
        satterthwaite,
    })
}

impl MixedModel for LmmFit {
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
    /// Estimate, standard error and Satterthwaite df of L'β, as lmerTest's `contest1D(fit, L)` (`df = None`
    /// and a NaN p-value when the fit was made without Satterthwaite df).
    fn contrast(&self, l: &[f64]) -> Result<ContrastTest, MixedModelError> {
        let (estimate, std_error) = contrast_estimate(&self.beta, &self.vcov, l)?;
        let df = self.satterthwaite.as_ref().map(|s| s.df(l, &self.vcov));
        let statistic = estimate / std_error;
        let p_value = df.map_or(f64::NAN, |df| p_value_t(statistic, df));
        Ok(ContrastTest { estimate, std_error, statistic, df, p_value })
    }
}

impl LmmFit {
    /// Population-level predictions Xβ̂ for a fixed-effects matrix with the fit's columns.
    pub fn predict_fixed(&self, x: &Array2<f64>) -> Result<Vec<f64>, MixedModelError> {
        if x.ncols() != self.beta.len() {
            return Err(MixedModelError::DimensionMismatch {
                what: "columns of x".to_string(),
                expected: self.beta.len(),
                found: x.ncols(),
            });
        }
        Ok(x.rows().into_iter().map(|r| r.iter().zip(&self.beta).map(|(a, b)| a * b).sum()).collect())
    }

    /// Predictions for a model frame: Xβ̂ plus, when `include_random`, Zb̂ for every term matched by group name
    /// and columns, level by label (a level not seen in the fit contributes 0, as lme4's `allow.new.levels`).
    pub fn predict(&self, frame: &ModelFrame, include_random: bool) -> Result<Vec<f64>, MixedModelError> {
        let mut pred = self.predict_fixed(&frame.x)?;
        if !include_random {
            return Ok(pred);
        }
        for rt in &frame.random {
            let Some(re) = self.ranef.iter().find(|r| r.group == rt.group && r.terms == rt.names) else {
                return Err(MixedModelError::UnknownTerm { group: rt.group.clone() });
            };
            let index: std::collections::HashMap<&str, usize> =
                re.levels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
            let map: Vec<Option<usize>> = rt.levels.iter().map(|l| index.get(l.as_str()).copied()).collect();
            for (i, pr) in pred.iter_mut().enumerate() {
                if let Some(j) = map[rt.codes[i] as usize] {
                    *pr += (0..rt.names.len()).map(|c| rt.z[[i, c]] * re.modes[j][c]).sum::<f64>();
                }
            }
        }
        Ok(pred)
    }
}

/// Likelihood-ratio test of `small` nested in `large`; both must be ML fits on the same observations.
pub fn likelihood_ratio_test(small: &LmmFit, large: &LmmFit) -> Result<LikelihoodRatioTest, MixedModelError> {
    if small.reml || large.reml {
        return Err(MixedModelError::NotComparable { reason: "both fits must be ML (REML = false)".to_string() });
    }
    if small.n_obs != large.n_obs {
        return Err(MixedModelError::NotComparable { reason: "different numbers of observations".to_string() });
    }
    if large.n_params <= small.n_params {
        return Err(MixedModelError::NotComparable {
            reason: "the larger model must have more parameters".to_string(),
        });
    }
    let df = large.n_params - small.n_params;
    let chisq = (2.0 * (large.log_likelihood - small.log_likelihood)).max(0.0);
    let p_value = ChiSquared::new(df as f64).map(|d| d.sf(chisq)).unwrap_or(f64::NAN);
    Ok(LikelihoodRatioTest { chisq, df, p_value })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic pseudo-random stream in [0, 1).
    pub(crate) fn stream(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Pupils in schools in years: a random intercept and slope on `x` by school, and an intercept by
    /// school:year (nested), or a crossed second factor.
    pub(crate) fn frame(crossed: bool) -> ModelFrame {
        let mut u = stream(7);
        let (schools, years, per) = (12usize, 3usize, 5usize);
        let n = schools * years * per;
        let mut y = Vec::with_capacity(n);
        let mut xs = Vec::with_capacity(n);
        let (mut s_codes, mut c_codes, mut r_codes) = (Vec::new(), Vec::new(), Vec::new());
        let school_eff: Vec<f64> = (0..schools).map(|_| u() - 0.5).collect();
        let cohort_eff: Vec<f64> = (0..schools * years).map(|_| 0.6 * (u() - 0.5)).collect();
        for s in 0..schools {
            for t in 0..years {
                for _ in 0..per {
                    let x = u();
                    let rater = (u() * 7.0) as u32;
                    let e = if crossed { 0.4 * rater as f64 / 7.0 } else { cohort_eff[s * years + t] };
                    y.push(1.0 + 0.5 * x + school_eff[s] * (1.0 + x) + e + (u() - 0.5));
                    xs.push(x);
                    s_codes.push(s as u32);
                    c_codes.push((s * years + t) as u32);
                    r_codes.push(rater);
                }
            }
        }
        let x = Array2::from_shape_fn((n, 2), |(i, j)| if j == 0 { 1.0 } else { xs[i] });
        let school = RandomTerm {
            group: "school".into(),
            levels: (0..schools).map(|s| format!("s{s:02}")).collect(),
            codes: s_codes,
            names: vec!["(Intercept)".into(), "x".into()],
            z: x.clone(),
        };
        let second = if crossed {
            RandomTerm {
                group: "rater".into(),
                levels: (0..7).map(|r| format!("r{r}")).collect(),
                codes: r_codes,
                names: vec!["(Intercept)".into()],
                z: Array2::ones((n, 1)),
            }
        } else {
            RandomTerm {
                group: "school:year".into(),
                levels: (0..schools * years).map(|c| format!("c{c:02}")).collect(),
                codes: c_codes,
                names: vec!["(Intercept)".into()],
                z: Array2::ones((n, 1)),
            }
        };
        ModelFrame {
            response_name: "y".into(),
            y,
            x,
            x_names: vec!["(Intercept)".into(), "x".into()],
            random: vec![school, second],
            rows: (0..n).collect(),
            n_dropped: 0,
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    /// The sparse factorization gives the dense one's fit (criterion, θ, β, SEs, df, conditional modes and
    /// SDs) on nested and crossed models with a vector-valued term, by REML and ML.
    #[test]
    fn sparse_and_dense_multi_term_fits_agree() {
        for crossed in [false, true] {
            for reml in [true, false] {
                let f = frame(crossed);
                let options = LmmOptions { reml, ..LmmOptions::default() };
                let dense = fit_lmm_with(&f, &options, MultiTerm::Auto).unwrap();
                let sparse = fit_lmm_with(&f, &options, MultiTerm::Sparse).unwrap();
                assert!(close(dense.criterion, sparse.criterion, 1e-10), "{} {}", dense.criterion, sparse.criterion);
                for (a, b) in dense.theta.iter().zip(&sparse.theta) {
                    assert!(close(*a, *b, 1e-5), "theta {a} {b}");
                }
                for (a, b) in dense.fixed_effects.iter().zip(&sparse.fixed_effects) {
                    assert!(close(a.estimate, b.estimate, 1e-6));
                    assert!(close(a.std_error, b.std_error, 1e-5));
                    assert!(close(a.df.unwrap(), b.df.unwrap(), 1e-3), "df {:?} {:?}", a.df, b.df);
                }
                for (a, b) in dense.ranef.iter().zip(&sparse.ranef) {
                    assert_eq!(a.group, b.group);
                    for (ma, mb) in a.modes.iter().flatten().zip(b.modes.iter().flatten()) {
                        assert!(close(*ma, *mb, 1e-5), "mode {ma} {mb}");
                    }
                    for (sa, sb) in a.cond_sd.iter().flatten().zip(b.cond_sd.iter().flatten()) {
                        assert!(close(*sa, *sb, 1e-5), "cond sd {sa} {sb}");
                    }
                }
            }
        }
    }
}
