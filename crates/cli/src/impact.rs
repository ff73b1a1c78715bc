//! The impact model of `psmeval evaluate`: a multilevel difference-in-differences model of one outcome in one
//! matched sample, its per-year and pooled programme effects, and the effect-size denominator.
//!
//! - Continuous outcomes: a linear mixed model (REML unless the study asks for ML) and lmerTest-style
//!   Satterthwaite tests of the DiD contrasts ([`crate::effects::did_contrasts`]).
//! - Binary outcomes: a logistic mixed model (Laplace, as glmer's default) with Wald z tests of the same
//!   contrasts on the log-odds scale.
//!
//! Effect sizes follow the study's definition. EEF's convention divides by the total SD of a model without
//! pupil covariates, `outcome ~ factor(year) * group + (1 | school)` (`(1 + year_c | school)` with random
//! slopes; also when the study gives its own formula): √(school intercept variance + σ²), the intercept
//! variance being the between-school variance at the programme start (`year_c` = 0). For logistic
//! models the pupil-level variance is that of the standard logistic distribution, π²/3 (the latent-variable
//! scale), so effect sizes of binary outcomes are on a comparable latent SD scale.

use std::collections::HashMap;

use psmeval_frame::{ModelFrame, Table, build_model_frame, parse_formula};
use psmeval_multilevel::glmm::{GlmmOptions, fit_glmm};
use psmeval_multilevel::{LmmOptions, fit_lmm, fit_lmm_weighted};

use crate::effects::{Effect, did_contrasts};
use crate::lmm_cmd::{GlmmJson, LmmJson, binomial_response, dropped_message};
use crate::sample::Sample;
use crate::study::{EffectSizeDefinition, Family, Study};

/// One coefficient of the impact model, as the report's table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Coefficient {
    /// R's term name.
    pub term: String,
    /// Estimate.
    pub estimate: f64,
    /// Standard error.
    pub std_error: f64,
    /// Satterthwaite df (linear models) or `None` (Wald z).
    pub df: Option<f64>,
    /// t or z statistic.
    pub statistic: f64,
    /// Two-sided p value.
    pub p_value: f64,
}

/// One variance component.
#[derive(Debug, Clone, PartialEq)]
pub struct VarianceComponent {
    /// Grouping factor or `Residual`.
    pub group: String,
    /// Term, `None` for the residual.
    pub term: Option<String>,
    /// Variance.
    pub variance: f64,
    /// SD.
    pub std_dev: f64,
}

/// A school's random intercept (conditional mode) with its conditional SD.
#[derive(Debug, Clone, PartialEq)]
pub struct SchoolEffect {
    /// School id.
    pub school: String,
    /// Conditional mode.
    pub estimate: f64,
    /// Conditional SD.
    pub cond_sd: f64,
    /// Treatment school.
    pub treated: bool,
}

/// A fitted impact model: its JSON, the tables the report shows, and the programme effects.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpactFit {
    /// The `psmeval lmm` JSON of the fit.
    pub model: serde_json::Value,
    /// Fixed effects.
    pub coefficients: Vec<Coefficient>,
    /// `t` (linear) or `z` (logistic).
    pub statistic_name: &'static str,
    /// Variance components.
    pub variance_components: Vec<VarianceComponent>,
    /// School intercepts.
    pub school_effects: Vec<SchoolEffect>,
    /// Per-year and pooled effects.
    pub effects: Vec<Effect>,
    /// ICC of a random-intercept model (logistic: latent scale).
    pub icc: Option<f64>,
    /// Converged.
    pub converged: bool,
    /// Singular.
    pub singular: bool,
    /// Messages about the fit (dropped aliased columns).
    pub notes: Vec<String>,
}

/// `outcome ~ factor(<year>) * group + <covariates> + (1 | <school>)`, or `(1 + year_c | <school>)` with
/// random slopes on year (centred at the programme start). Covariates constant in `sample` (such as `fsm` in
/// the FSM subgroup) are left out, and named in the returned notes, where lme4 would drop the aliased column.
pub fn default_formula(study: &Study, sample: &Sample) -> (String, Vec<String>) {
    let mut f = format!("outcome ~ factor({}) * group", study.data.year);
    let mut notes = Vec::new();
    let mut covariates = Vec::new();
    for c in &study.model.covariates {
        match sample.table.column(c) {
            Ok(col) if is_constant(col) => {
                notes.push(format!("covariate `{c}` is constant in this sample and was left out of the model"))
            }
            _ => covariates.push(c),
        }
    }
    for c in covariates {
        f.push_str(" + ");
        f.push_str(c);
    }
    let slope = if study.model.random_slope_year { "1 + year_c" } else { "1" };
    f.push_str(&format!(" + ({slope} | {})", study.data.school_id));
    (f, notes)
}

fn is_constant(col: &psmeval_frame::Column) -> bool {
    match col {
        psmeval_frame::Column::Numeric(v) => v.windows(2).all(|w| w[0] == w[1]),
        psmeval_frame::Column::Text(v) => v.windows(2).all(|w| w[0] == w[1]),
    }
}

/// The formula of the effect-size model: the default formula without pupil covariates.
fn unconditional_formula(study: &Study) -> String {
    let slope = if study.model.random_slope_year { "1 + year_c" } else { "1" };
    format!("outcome ~ factor({}) * group + ({slope} | {})", study.data.year, study.data.school_id)
}

fn frame(sample: &Sample, formula: &str) -> Result<(ModelFrame, Vec<f64>, psmeval_frame::Formula), String> {
    let f = parse_formula(formula).map_err(|e| format!("formula `{formula}`: {e}"))?;
    let mf = build_model_frame(&f, &sample.table).map_err(|e| format!("formula `{formula}`: {e}"))?;
    let w: Vec<f64> = mf.rows.iter().map(|&i| sample.weights[i]).collect();
    Ok((mf, w, f))
}

fn weights_or_none(w: Vec<f64>) -> Option<Vec<f64>> {
    (!w.iter().all(|&v| v == 1.0)).then_some(w)
}

const LOGISTIC_VARIANCE: f64 = std::f64::consts::PI * std::f64::consts::PI / 3.0;

/// The effect-size SD: total (EEF) or pupil-level SD of the model without pupil covariates.
pub fn unconditional_sd(
    study: &Study,
    sample: &Sample,
    family: Family,
    definition: EffectSizeDefinition,
) -> Result<f64, String> {
    let formula = unconditional_formula(study);
    let (mut mf, w, f) = frame(sample, &formula)?;
    let (between, within) = match family {
        Family::Gaussian => {
            let opts = LmmOptions { reml: !study.model.ml, satterthwaite: false, ..LmmOptions::default() };
            let fit = match weights_or_none(w) {
                Some(w) => fit_lmm_weighted(&mf, &w, &opts),
                None => fit_lmm(&mf, &opts),
            }
            .map_err(|e| e.to_string())?;
            let (res, rest): (Vec<_>, Vec<_>) = fit.random_effects.iter().partition(|r| r.term.is_none());
            (intercept_variance(rest.iter().map(|r| (r.term.as_deref(), r.variance))), res[0].variance)
        }
        Family::Binomial => {
            let prior = binomial_response(&f, &sample.table, &mut mf, None)?;
            let weights = prior.or_else(|| weights_or_none(w));
            let fit =
                fit_glmm(&mf, &GlmmOptions { nagq: 1, weights, use_hessian: false }).map_err(|e| e.to_string())?;
            (
                intercept_variance(fit.random_effects.iter().map(|r| (Some(r.term.as_str()), r.variance))),
                LOGISTIC_VARIANCE,
            )
        }
    };
    let sd = match definition {
        EffectSizeDefinition::Eef => (between + within).sqrt(),
        EffectSizeDefinition::Residual => within.sqrt(),
    };
    if !(sd.is_finite() && sd > 0.0) {
        return Err(format!("the effect-size SD is {sd}; the outcome has no variation in this sample"));
    }
    Ok(sd)
}

/// Between-school variance of the intercepts (slopes vary with year; the intercept is the variance at the
/// programme start, where `year_c` = 0).
fn intercept_variance<'a>(rows: impl Iterator<Item = (Option<&'a str>, f64)>) -> f64 {
    rows.filter(|(t, _)| *t == Some("(Intercept)")).map(|(_, v)| v).sum()
}

/// Fits the impact model `formula` to `sample` and evaluates the DiD contrasts for `years` (the years present).
pub fn fit_impact(
    study: &Study,
    sample: &Sample,
    formula: &str,
    family: Family,
    years: &[i64],
    es_sd: f64,
) -> Result<ImpactFit, String> {
    let (mut mf, w, f) = frame(sample, formula)?;
    let contrasts = did_contrasts(&mf.x_names, &study.data.year, years, study.years.programme_start)?;
    let treated_map = treated_schools(&sample.table, &study.data.school_id)?;
    let treated = &treated_map;
    let school_group = &study.data.school_id;
    match family {
        Family::Gaussian => {
            let opts = LmmOptions { reml: !study.model.ml, ..LmmOptions::default() };
            let fit = match weights_or_none(w) {
                Some(w) => fit_lmm_weighted(&mf, &w, &opts),
                None => fit_lmm(&mf, &opts),
            }
            .map_err(|e| e.to_string())?;
            let effects = contrasts
                .iter()
                .map(|c| {
                    let t = fit.contrast(&c.l).map_err(|e| e.to_string())?;
                    Ok(Effect::new(c.period.clone(), t.estimate, t.std_error, t.df, es_sd))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let school_effects = fit
                .ranef
                .iter()
                .filter(|t| &t.group == school_group)
                .flat_map(|t| {
                    let c = t.terms.iter().position(|n| n == "(Intercept)");
                    t.levels.iter().enumerate().filter_map(move |(j, l)| {
                        c.map(|c| SchoolEffect {
                            school: l.clone(),
                            estimate: t.values[j][c],
                            cond_sd: t.cond_sd[j][c],
                            treated: treated.get(l).copied().unwrap_or(false),
                        })
                    })
                })
                .collect();
            Ok(ImpactFit {
                model: serde_json::to_value(LmmJson::new(formula, mf.n_dropped, &fit)).map_err(|e| e.to_string())?,
                coefficients: fit
                    .fixed_effects
                    .iter()
                    .map(|c| Coefficient {
                        term: c.term.clone(),
                        estimate: c.estimate,
                        std_error: c.std_error,
                        df: Some(c.df),
                        statistic: c.t_value,
                        p_value: c.p_value,
                    })
                    .collect(),
                statistic_name: "t",
                variance_components: fit
                    .random_effects
                    .iter()
                    .map(|r| VarianceComponent {
                        group: r.group.clone(),
                        term: r.term.clone(),
                        variance: r.variance,
                        std_dev: r.std_dev,
                    })
                    .collect(),
                school_effects,
                effects,
                icc: fit.icc,
                converged: fit.converged,
                singular: fit.singular,
                notes: dropped_message(&fit.dropped_columns).into_iter().collect(),
            })
        }
        Family::Binomial => {
            let prior = binomial_response(&f, &sample.table, &mut mf, None)?;
            let weights = prior.or_else(|| weights_or_none(w));
            let fit = fit_glmm(&mf, &GlmmOptions { nagq: 1, weights, use_hessian: true }).map_err(|e| e.to_string())?;
            let p = fit.beta.len();
            let effects = contrasts
                .iter()
                .map(|c| {
                    let est: f64 = c.l.iter().zip(&fit.beta).map(|(a, b)| a * b).sum();
                    let mut var = 0.0;
                    for i in 0..p {
                        for j in 0..p {
                            var += c.l[i] * fit.vcov[i * p + j] * c.l[j];
                        }
                    }
                    Effect::new(c.period.clone(), est, var.sqrt(), f64::INFINITY, es_sd)
                })
                .collect();
            let school_effects = fit
                .ranef
                .iter()
                .filter(|t| &t.group == school_group)
                .flat_map(|t| {
                    let c = t.terms.iter().position(|n| n == "(Intercept)");
                    t.levels.iter().filter_map(move |l| {
                        c.map(|c| SchoolEffect {
                            school: l.level.clone(),
                            estimate: l.modes[c],
                            cond_sd: l.cond_sd[c],
                            treated: treated.get(&l.level).copied().unwrap_or(false),
                        })
                    })
                })
                .collect();
            let icc = (fit.random_effects.len() == 1 && fit.random_effects[0].term == "(Intercept)").then(|| {
                let tau2 = fit.random_effects[0].variance;
                tau2 / (tau2 + LOGISTIC_VARIANCE)
            });
            Ok(ImpactFit {
                model: serde_json::to_value(GlmmJson::new(formula, mf.n_dropped, &fit)).map_err(|e| e.to_string())?,
                coefficients: fit
                    .fixed_effects
                    .iter()
                    .map(|c| Coefficient {
                        term: c.term.clone(),
                        estimate: c.estimate,
                        std_error: c.std_error,
                        df: None,
                        statistic: c.z_value,
                        p_value: c.p_value,
                    })
                    .collect(),
                statistic_name: "z",
                variance_components: fit
                    .random_effects
                    .iter()
                    .map(|r| VarianceComponent {
                        group: r.group.clone(),
                        term: Some(r.term.clone()),
                        variance: r.variance,
                        std_dev: r.std_dev,
                    })
                    .collect(),
                school_effects,
                effects,
                icc,
                converged: fit.converged,
                singular: fit.singular,
                notes: dropped_message(&fit.dropped_columns)
                    .into_iter()
                    .chain((fit.diagnostics.fitted_probabilities_0_or_1 > 0).then(|| {
                        format!(
                            "fitted probabilities numerically 0 or 1 occurred for {} pupils: a covariate may separate \
                             the outcome, so its coefficient and SE are unreliable",
                            fit.diagnostics.fitted_probabilities_0_or_1
                        )
                    }))
                    .collect(),
            })
        }
    }
}

/// School id → treated, from the sample's `group` column.
fn treated_schools(table: &Table, school_id: &str) -> Result<HashMap<String, bool>, String> {
    let school = table.column(school_id).map_err(|e| e.to_string())?;
    let group = table.numeric("group").map_err(|e| e.to_string())?;
    Ok((0..table.n_rows()).filter_map(|i| school.text_at(i).map(|s| (s, group[i] == 1.0))).collect())
}
