//! The impact model of an evaluation: a multilevel difference-in-differences model of one outcome in one
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

use psmeval_frame::{Column, Formula, Table, parse_formula};
use psmeval_multilevel::{ConditionalModes, VarianceComponent};
use serde::{Deserialize, Serialize};

use crate::effects::{Effect, did_contrasts};
use crate::model::{ModelOptions, fit_formula};
use crate::record::ModelRecord;
use crate::sample::Sample;
use crate::study::{EffectSizeDefinition, Family, Study};

/// A school's random intercept (conditional mode) with its conditional SD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// A fitted impact model: its record, the school effects and the programme effects.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpactFit {
    /// The record of the fit (coefficients, variance components, diagnostics).
    pub model: ModelRecord,
    /// School intercepts.
    pub school_effects: Vec<SchoolEffect>,
    /// Per-year and pooled effects.
    pub effects: Vec<Effect>,
    /// ICC of a random-intercept model (logistic: latent scale).
    pub icc: Option<f64>,
    /// Messages about the fit (dropped aliased columns, separation).
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

fn is_constant(col: &Column) -> bool {
    match col {
        Column::Numeric(v) => v.windows(2).all(|w| w[0] == w[1]),
        Column::Text(v) => v.windows(2).all(|w| w[0] == w[1]),
    }
}

/// The formula of the effect-size model: the default formula without pupil covariates.
fn unconditional_formula(study: &Study) -> String {
    let slope = if study.model.random_slope_year { "1 + year_c" } else { "1" };
    format!("outcome ~ factor({}) * group + ({slope} | {})", study.data.year, study.data.school_id)
}

/// The variance of the standard logistic distribution, π²/3: the pupil-level variance of a logistic model on
/// the latent scale.
pub const LOGISTIC_VARIANCE: f64 = std::f64::consts::PI * std::f64::consts::PI / 3.0;

fn options(study: &Study, family: Family) -> ModelOptions {
    ModelOptions { reml: !study.model.ml, ..ModelOptions::new(family) }
}

/// The effect-size SD: total (EEF) or pupil-level SD of the model without pupil covariates.
pub fn unconditional_sd(
    study: &Study,
    sample: &Sample,
    family: Family,
    definition: EffectSizeDefinition,
) -> Result<f64, String> {
    let formula = unconditional_formula(study);
    let parsed = parse_formula(&formula).map_err(|e| format!("formula `{formula}`: {e}"))?;
    // Only the variance components are needed: no Satterthwaite df, no Hessian.
    let opts = ModelOptions { satterthwaite: false, hessian_se: false, ..options(study, family) };
    let (fit, _) = fit_formula(&parsed, &formula, &sample.table, &sample.weights, &opts)?;
    let components = fit.variance_components();
    let between = intercept_variance(components);
    let within = match family {
        Family::Gaussian => components.iter().find(|r| r.term.is_none()).map_or(f64::NAN, |r| r.variance),
        Family::Binomial => LOGISTIC_VARIANCE,
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
fn intercept_variance(components: &[VarianceComponent]) -> f64 {
    components.iter().filter(|r| r.term.as_deref() == Some("(Intercept)")).map(|r| r.variance).sum()
}

/// Fits the impact model `formula` to `sample` and evaluates the DiD contrasts for `years` (the years present).
pub fn fit_impact(
    study: &Study,
    sample: &Sample,
    formula: &Formula,
    formula_text: &str,
    family: Family,
    years: &[i64],
    es_sd: f64,
) -> Result<ImpactFit, String> {
    let (fit, frame) = fit_formula(formula, formula_text, &sample.table, &sample.weights, &options(study, family))?;
    let contrasts = did_contrasts(&frame.x_names, &study.data.year, years, study.years.programme_start)?;
    let effects = contrasts
        .iter()
        .map(|c| {
            let t = fit.contrast(&c.l)?;
            Ok(Effect::new(c.period, t.estimate, t.std_error, t.df.unwrap_or(f64::INFINITY), es_sd))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let treated = treated_schools(&sample.table, &study.data.school_id)?;
    Ok(ImpactFit {
        model: fit.record(formula_text, frame.n_dropped),
        school_effects: school_effects(fit.ranef(), &study.data.school_id, &treated),
        effects,
        icc: fit.icc(),
        notes: fit.notes(),
    })
}

/// The schools' random intercepts, in the model's level order.
fn school_effects(ranef: &[ConditionalModes], school: &str, treated: &HashMap<String, bool>) -> Vec<SchoolEffect> {
    ranef
        .iter()
        .filter(|t| t.group == school)
        .flat_map(|t| {
            let c = t.terms.iter().position(|n| n == "(Intercept)");
            t.levels.iter().enumerate().filter_map(move |(j, l)| {
                c.map(|c| SchoolEffect {
                    school: l.clone(),
                    estimate: t.modes[j][c],
                    cond_sd: t.cond_sd[j][c],
                    treated: treated.get(l).copied().unwrap_or(false),
                })
            })
        })
        .collect()
}

/// School id → treated, from the sample's `group` column.
fn treated_schools(table: &Table, school_id: &str) -> Result<HashMap<String, bool>, String> {
    let school = table.column(school_id).map_err(|e| e.to_string())?;
    let group = table.numeric("group").map_err(|e| e.to_string())?;
    Ok((0..table.n_rows()).filter_map(|i| school.text_at(i).map(|s| (s, group[i] == 1.0))).collect())
}
