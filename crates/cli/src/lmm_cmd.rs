//! `psmeval lmm`: fit one linear (or logistic) mixed model from a table and an lme4 formula, print an
//! lme4-like summary, and write the fit as JSON and the conditional modes as CSV.
//!
//! The JSON shapes ([`LmmJson`], [`GlmmJson`]) are shared with `psmeval evaluate`, whose `results.json`
//! embeds one per impact model. They hold no timings, so the same data and formula give identical bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use psmeval_frame::{ModelFrame, binomial_counts, build_model_frame, parse_formula};
use psmeval_multilevel::glmm::{self, GlmmFit, GlmmOptions};
use psmeval_multilevel::{Correlation, FixedEffect, LmmFit, LmmOptions, RandomEffect, fit_lmm, fit_lmm_weighted};
use serde::Serialize;

use crate::args::{FamilyArg, LmmArgs};
use crate::error::InputError;
use crate::report::{num, pval};
use crate::table::{load_table, write_text};

/// The JSON of a linear mixed model fit (issue #4's shape, plus the dropped-row count, θ and the ICC).
#[derive(Debug, Serialize)]
pub struct LmmJson<'a> {
    /// The formula as given.
    pub formula: &'a str,
    /// Always `gaussian`.
    pub family: &'static str,
    /// REML (true) or ML.
    pub reml: bool,
    /// Observations used.
    pub n_obs: usize,
    /// Rows dropped for a missing value in a used column.
    pub n_dropped: usize,
    /// Levels per grouping factor.
    pub groups: &'a BTreeMap<String, usize>,
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
    /// Fixed effects with Satterthwaite tests.
    pub fixed_effects: &'a [FixedEffect],
    /// Variance components, residual last.
    pub random_effects: &'a [RandomEffect],
    /// Correlations of random effects.
    pub correlations: &'a [Correlation],
    /// Relative covariance parameters.
    pub theta: &'a [f64],
    /// Intraclass correlation (one scalar random intercept only).
    pub icc: Option<f64>,
    /// Optimizer converged.
    pub converged: bool,
    /// Singular fit.
    pub singular: bool,
    /// Objective evaluations.
    pub iterations: usize,
    /// Aliased fixed-effects columns dropped before fitting (as lme4).
    pub dropped_columns: &'a [String],
}

impl<'a> LmmJson<'a> {
    /// The JSON view of `fit`.
    pub fn new(formula: &'a str, n_dropped: usize, fit: &'a LmmFit) -> Self {
        LmmJson {
            formula,
            family: "gaussian",
            reml: fit.reml,
            n_obs: fit.n_obs,
            n_dropped,
            groups: &fit.groups,
            log_likelihood: fit.log_likelihood,
            criterion: fit.criterion,
            aic: fit.aic,
            bic: fit.bic,
            sigma: fit.sigma,
            fixed_effects: &fit.fixed_effects,
            random_effects: &fit.random_effects,
            correlations: &fit.correlations,
            theta: &fit.theta,
            icc: fit.icc,
            converged: fit.converged,
            singular: fit.singular,
            iterations: fit.iterations,
            dropped_columns: &fit.dropped_columns,
        }
    }
}

/// The JSON of a logistic mixed model fit.
#[derive(Debug, Serialize)]
pub struct GlmmJson<'a> {
    /// The formula as given.
    pub formula: &'a str,
    /// `binomial`.
    pub family: glmm::Family,
    /// `logit`.
    pub link: glmm::Link,
    /// Quadrature points (1 = Laplace).
    pub nagq: usize,
    /// Observations used.
    pub n_obs: usize,
    /// Rows dropped for a missing value in a used column.
    pub n_dropped: usize,
    /// Levels per grouping factor.
    pub groups: &'a BTreeMap<String, usize>,
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
    pub fixed_effects: &'a [glmm::FixedEffect],
    /// Whether SEs come from the finite-difference Hessian (as glmer's default).
    pub se_from_hessian: bool,
    /// Variance components.
    pub random_effects: &'a [glmm::RandomEffect],
    /// Correlations of random effects.
    pub correlations: &'a [glmm::Correlation],
    /// Relative covariance parameters.
    pub theta: &'a [f64],
    /// Optimizer converged.
    pub converged: bool,
    /// Singular fit.
    pub singular: bool,
    /// Objective evaluations.
    pub iterations: usize,
    /// Separation and convergence diagnostics.
    pub diagnostics: &'a glmm::GlmmDiagnostics,
    /// Aliased fixed-effects columns dropped before fitting (as glmer).
    pub dropped_columns: &'a [String],
}

impl<'a> GlmmJson<'a> {
    /// The JSON view of `fit`.
    pub fn new(formula: &'a str, n_dropped: usize, fit: &'a GlmmFit) -> Self {
        GlmmJson {
            formula,
            family: fit.family,
            link: fit.link,
            nagq: fit.nagq,
            n_obs: fit.n_obs,
            n_dropped,
            groups: &fit.groups,
            log_likelihood: fit.log_likelihood,
            glmer_log_likelihood: fit.glmer_log_likelihood,
            deviance: fit.deviance,
            criterion: fit.criterion,
            aic: fit.aic,
            bic: fit.bic,
            fixed_effects: &fit.fixed_effects,
            se_from_hessian: fit.se_from_hessian,
            random_effects: &fit.random_effects,
            correlations: &fit.correlations,
            theta: &fit.theta,
            converged: fit.converged,
            singular: fit.singular,
            iterations: fit.iterations,
            diagnostics: &fit.diagnostics,
            dropped_columns: &fit.dropped_columns,
        }
    }
}

/// Binomial responses: 0/1 columns (prior weights 1), `cbind(successes, failures)` (proportions with the
/// totals as weights), or proportions in [0, 1] with the number of trials as `weights`. Values outside the
/// allowed range are named with their data row.
pub fn binomial_response(
    formula: &psmeval_frame::Formula,
    table: &psmeval_frame::Table,
    frame: &mut ModelFrame,
    weights: Option<&[f64]>,
) -> Result<Option<Vec<f64>>, String> {
    if matches!(formula.response, psmeval_frame::formula::Response::Cbind(..)) {
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

fn lmm_summary(formula: &str, fit: &LmmFit, n_dropped: usize) -> String {
    let mut s = format!(
        "Linear mixed model fit by {} (Satterthwaite df)\nFormula: {formula}\n\n",
        if fit.reml { "REML" } else { "maximum likelihood" }
    );
    let _ = writeln!(s, "{fit}");
    if let Some(m) = dropped_message(&fit.dropped_columns) {
        let _ = writeln!(s, "{m}");
    }
    if n_dropped > 0 {
        let _ = writeln!(s, "{n_dropped} rows with missing values dropped");
    }
    s
}

fn glmm_summary(formula: &str, fit: &GlmmFit, n_dropped: usize) -> String {
    let mut s = format!(
        "Generalized linear mixed model fit by maximum likelihood ({}) [glmerMod]\n Family: binomial ( logit )\nFormula: {formula}\n\n",
        if fit.nagq <= 1 {
            "Laplace Approximation".to_string()
        } else {
            format!("Adaptive Gauss-Hermite Quadrature, nAGQ = {}", fit.nagq)
        }
    );
    let _ = writeln!(
        s,
        "     AIC      BIC   logLik deviance\n{:>8} {:>8} {:>8} {:>8}\n",
        num(fit.aic, 1),
        num(fit.bic, 1),
        num(fit.glmer_log_likelihood, 1),
        num(fit.criterion, 1)
    );
    let _ = writeln!(s, "Random effects:\n Groups   Name        Variance Std.Dev.");
    for r in &fit.random_effects {
        let _ = writeln!(s, " {:<8} {:<11} {:>8} {:>8}", r.group, r.term, num(r.variance, 4), num(r.std_dev, 4));
    }
    let groups: Vec<String> = fit.groups.iter().map(|(g, n)| format!("{g}, {n}")).collect();
    let _ = writeln!(s, "Number of obs: {}, groups:  {}\n", fit.n_obs, groups.join("; "));
    let width = fit.fixed_effects.iter().map(|f| f.term.len()).max().unwrap_or(0).max(11);
    let _ = writeln!(
        s,
        "Fixed effects:\n{:<width$} {:>10} {:>10} {:>8} {:>10} {:>10}",
        "", "Estimate", "Std. Error", "z value", "Pr(>|z|)", "Odds ratio"
    );
    for f in &fit.fixed_effects {
        let _ = writeln!(
            s,
            "{:<width$} {:>10} {:>10} {:>8} {:>10} {:>10}",
            f.term,
            num(f.estimate, 5),
            num(f.std_error, 5),
            num(f.z_value, 3),
            pval(f.p_value),
            num(f.odds_ratio, 4)
        );
    }
    if let Some(m) = dropped_message(&fit.dropped_columns) {
        let _ = writeln!(s, "\n{m}");
    }
    if !fit.converged {
        let _ = writeln!(s, "\nWarning: the optimizer did not converge ({})", fit.diagnostics.optimizer_status);
    }
    if fit.singular {
        let _ = writeln!(s, "\nboundary (singular) fit: a variance component is estimated at zero");
    }
    if fit.diagnostics.fitted_probabilities_0_or_1 > 0 {
        let _ = writeln!(
            s,
            "\nWarning: fitted probabilities numerically 0 or 1 occurred ({} observations): a covariate may \
             separate the outcome; its coefficient and SE are unreliable",
            fit.diagnostics.fitted_probabilities_0_or_1
        );
    }
    if !fit.diagnostics.separated_groups.is_empty() {
        let _ = writeln!(
            s,
            "\nNote: {} groups have all-0 or all-1 responses (separated); their modes rest on the random-effects prior",
            fit.diagnostics.separated_groups.len()
        );
    }
    if n_dropped > 0 {
        let _ = writeln!(s, "{n_dropped} rows with missing values dropped");
    }
    s
}

/// Conditional modes as CSV: `group,level,term,estimate,cond_sd`.
fn ranef_csv(rows: impl Iterator<Item = (String, String, String, f64, f64)>) -> String {
    let mut s = String::from("group,level,term,estimate,cond_sd\n");
    let q =
        |v: &str| if v.contains([',', '"', '\n']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() };
    for (g, l, t, e, sd) in rows {
        let _ = writeln!(s, "{},{},{},{e},{sd}", q(&g), q(&l), q(&t));
    }
    s
}

/// Runs `psmeval lmm`.
pub fn run(a: &LmmArgs) -> Result<()> {
    let at = |e: String| -> anyhow::Error { InputError::new(format!("{}: {e}", a.data.display())).into() };
    let formula = parse_formula(&a.formula).map_err(|e| InputError::new(format!("--formula: {e}")))?;
    if formula.random.is_empty() {
        return Err(InputError::new(format!(
            "--formula: `{}` has no random-effects term such as `(1 | school_id)`; a mixed model needs one",
            a.formula
        ))
        .into());
    }
    if a.nagq == 0 {
        return Err(InputError::new("--nagq must be at least 1 (1 = Laplace)").into());
    }
    let progress = crate::progress::Progress::new(a.quiet);
    let step = progress.step("loading the table");
    let table = load_table(&a.data)?;
    step.finish();
    let step = progress.step("building the model frame");
    let mut frame = build_model_frame(&formula, &table).map_err(|e| at(e.to_string()))?;
    step.finish();
    let weights: Option<Vec<f64>> = match &a.weights {
        Some(c) => {
            let w = table.numeric(c).map_err(|e| at(format!("--weights: {e}")))?;
            let w: Vec<f64> = frame.rows.iter().map(|&i| w[i]).collect();
            if let Some(k) = w.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(at(format!(
                    "--weights: `{c}` is {} in data row {}; weights must be positive",
                    w[k],
                    frame.rows[k] + 1
                )));
            }
            Some(w)
        }
        None => None,
    };
    let n_dropped = frame.n_dropped;
    let step = progress.step("fitting the model");
    let (json, summary, ranef) = match a.family {
        FamilyArg::Gaussian => {
            if a.nagq != 1 {
                return Err(InputError::new("--nagq applies to --family binomial only").into());
            }
            let opts = LmmOptions { reml: !a.ml, ..LmmOptions::default() };
            let fit = match &weights {
                Some(w) => fit_lmm_weighted(&frame, w, &opts),
                None => fit_lmm(&frame, &opts),
            }
            .map_err(|e| at(format!("cannot fit `{}`: {e}", a.formula)))?;
            let json = serde_json::to_string_pretty(&LmmJson::new(&a.formula, n_dropped, &fit))? + "\n";
            let ranef = ranef_csv(fit.ranef.iter().flat_map(|t| {
                t.levels.iter().enumerate().flat_map(move |(j, l)| {
                    t.terms.iter().enumerate().map(move |(c, name)| {
                        (t.group.clone(), l.clone(), name.clone(), t.values[j][c], t.cond_sd[j][c])
                    })
                })
            }));
            (json, lmm_summary(&a.formula, &fit, n_dropped), ranef)
        }
        FamilyArg::Binomial => {
            if a.ml {
                return Err(
                    InputError::new("--ml applies to linear models; logistic models are always fitted by ML").into()
                );
            }
            let weights = binomial_response(&formula, &table, &mut frame, weights.as_deref()).map_err(at)?;
            let fit = glmm::fit_glmm(&frame, &GlmmOptions { nagq: a.nagq, weights, use_hessian: true })
                .map_err(|e| at(format!("cannot fit `{}`: {e}", a.formula)))?;
            let json = serde_json::to_string_pretty(&GlmmJson::new(&a.formula, n_dropped, &fit))? + "\n";
            let ranef = ranef_csv(fit.ranef.iter().flat_map(|t| {
                t.levels.iter().flat_map(move |l| {
                    t.terms.iter().enumerate().map(move |(c, name)| {
                        (t.group.clone(), l.level.clone(), name.clone(), l.modes[c], l.cond_sd[c])
                    })
                })
            }));
            (json, glmm_summary(&a.formula, &fit, n_dropped), ranef)
        }
    };
    step.finish();
    if let Some(p) = &a.json {
        write_text(p, &json)?;
    }
    if let Some(p) = &a.ranef {
        write_text(p, &ranef)?;
    }
    print!("{summary}");
    Ok(())
}
