//! The evaluation pipeline and its result: a validated [`Plan`] and the loaded tables go in; matching, one
//! analysis sample per outcome × subgroup, the multilevel difference-in-differences impact models (in
//! parallel) and their effects come out as an [`Evaluation`], plain serializable data holding everything a
//! report shows. The run is deterministic: the same plan and tables give the same `Evaluation`, whatever the
//! thread count.

use std::collections::HashMap;

use psmeval_frame::{Table, TableError};
use psmeval_matching::{MatchError, MatchResult, match_units};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::effects::{Effect, JointTest};
use crate::float::nan_if_null;
use crate::gap_closing::{GapClosing, subgroup_variable};
use crate::headline::HeadlineRow;
use crate::impact::{EffectTerms, InferenceSummary, SchoolEffect, default_formula, fit_impact, unconditional_sd};
use crate::mdes::{AnalyticMdes, bloom};
use crate::plan::Plan;
use crate::record::ModelRecord;
use crate::sample::{MatchedSchool, OutcomeRows, SampleCounts, build_sample};
use crate::sensitivity::{Sensitivity, SensitivityRow};
use crate::study::{Family, OutcomeSpec, Study, SubgroupSpec};
use crate::trend::{CellMean, clustered_means};

/// An input file and its fingerprint (the caller reads and hashes the files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Path as given in the study (relative to the study file where it was relative).
    pub path: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Data rows.
    pub rows: usize,
}

/// One outcome × subgroup analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeResult {
    /// Outcome name.
    pub name: String,
    /// Subgroup name, or `null` for all pupils.
    pub subgroup: Option<String>,
    /// `gaussian` or `binomial`.
    pub family: Family,
    /// Standardized within year.
    pub standardized: bool,
    /// Pupils analysed.
    pub n_pupils: usize,
    /// Schools analysed.
    pub n_schools: usize,
    /// Sample flow.
    pub counts: SampleCounts,
    /// The impact model's formula.
    pub formula: String,
    /// The fitted impact model, `null` when the analysis could not be run.
    pub model: Option<ModelRecord>,
    /// SD used for effect sizes (`null` when not analysed).
    #[serde(deserialize_with = "nan_if_null")]
    pub effect_size_sd: f64,
    /// Per-year and pooled effects.
    pub effects: Vec<Effect>,
    /// Bloom's analytic MDES of the design (linear outcomes; see [`crate::mdes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytic_mdes: Option<AnalyticMdes>,
    /// A binary outcome's per-year and pooled effects in percentage points, by g-computation from the
    /// logistic model (see [`crate::gcomp`]); absent for scores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percentage_points: Vec<Effect>,
    /// Mean outcome by year and group with 95% intervals (clustered by school).
    pub trend: Vec<CellMean>,
    /// Intraclass correlation of the model (random-intercept models).
    pub icc: Option<f64>,
    /// Why this analysis could not be run, when it could not (the other fields are then empty).
    pub skipped: Option<String>,
    /// Decisions taken for this analysis that a reader should know about.
    pub notes: Vec<String>,
    /// The schools' random intercepts (conditional modes with conditional SDs).
    #[serde(default)]
    pub school_effects: Vec<SchoolEffect>,
    /// What the effects' intervals account for (`null` when not analysed).
    #[serde(default)]
    pub inference: Option<InferenceSummary>,
    /// Event-study estimates: the change in the gap since the reference year, for every other year.
    #[serde(default)]
    pub event_study: Vec<Effect>,
    /// The event study's reference year (the last pre-programme year).
    #[serde(default)]
    pub event_reference: Option<i64>,
    /// Joint test of parallel pre-programme trends (all pre-programme event-study estimates 0).
    #[serde(default)]
    pub pretrend: Option<JointTest>,
}

/// Everything an evaluation produced: the seam between computing and presenting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// psmeval's version.
    pub psmeval_version: String,
    /// The study as written.
    pub study: Study,
    /// The study file's text.
    pub study_file: String,
    /// Input files with hashes.
    pub inputs: Vec<InputFile>,
    /// Propensity model, matched sets and balance.
    pub matching: MatchResult,
    /// Outcome analyses in study order (outcome-major, all pupils first, then subgroups).
    pub outcomes: Vec<OutcomeResult>,
    /// Gap-closing analyses: per outcome and subgroup of a 0/1 pupil column, the programme's effect on the
    /// subgroup minus its effect on the other pupils (see [`crate::gap_closing`]).
    #[serde(default)]
    pub gap_closing: Vec<GapClosing>,
    /// Sensitivity analyses of the primary outcome's pooled effect (see [`crate::sensitivity`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<Sensitivity>,
    /// The headline table: one row per analysed outcome and subgroup (see [`crate::headline`]).
    #[serde(default)]
    pub headline: Vec<HeadlineRow>,
}

/// Why an evaluation stopped. Each variant says which input is at fault.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EvaluationError {
    /// The plan does not fit the tables (a column is missing, a year has no pupils…).
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// A column of the school table is unusable (a treatment that is not 0/1, repeated ids…).
    #[error("the school table: {0}")]
    Schools(TableError),
    /// Matching failed.
    #[error(transparent)]
    Matching(#[from] MatchError),
    /// An analysis sample could not be built.
    #[error("{analysis}: {message}")]
    Sample {
        /// `outcome `…`` or `outcome `…`, subgroup `…``.
        analysis: String,
        /// What went wrong.
        message: String,
    },
}

impl EvaluationError {
    /// True when the error stems from the user's study or data (not from psmeval itself).
    pub fn is_input_error(&self) -> bool {
        match self {
            EvaluationError::Matching(e) => !e.is_internal(),
            _ => true,
        }
    }
}

/// What the pipeline is doing, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A stage started; `total` is the number of steps when it has several.
    Started {
        /// The stage.
        stage: &'static str,
        /// Its step count.
        total: Option<u64>,
    },
    /// One step of the current stage is done.
    Advanced,
    /// The current stage is done.
    Finished,
}

/// Runs the evaluation of `plan` on the school and pupil tables. `inputs` and `study_file` are recorded in
/// the result as given; `progress` is told what is happening (from several threads).
pub fn evaluate(
    plan: &Plan,
    schools: &Table,
    pupils: &Table,
    inputs: Vec<InputFile>,
    study_file: String,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Evaluation, EvaluationError> {
    let study = &plan.study;
    plan.check_data(schools, pupils)?;
    let treat = schools.binary(&study.data.treatment).map_err(EvaluationError::Schools)?;
    let ids = schools.unique_ids(&study.data.school_id).map_err(EvaluationError::Schools)?;

    progress(Progress::Started { stage: "propensity scores and matching", total: None });
    let matching = match_units(&study.matching, schools, &treat, &ids)?;
    progress(Progress::Finished);
    let matched = matched_schools(&matching);

    // Every model at once: the impact analyses (outcome-major: all pupils, then each subgroup), the
    // gap-closing models and the sensitivity refits of the primary outcome (the first when none is marked).
    // None needs another's result to be fitted; the gap-closing effect sizes (which divide by the all-pupils
    // analysis's SD) and the sensitivity table (which starts from the main analysis) are completed after.
    let years = plan.years();
    let primary = study.outcomes.iter().find(|o| o.primary).or(study.outcomes.first());
    let mut tasks = Vec::new();
    for o in &study.outcomes {
        tasks.push(Task::Impact(o, None));
        for s in &study.subgroups {
            tasks.push(Task::Impact(o, Some(s)));
        }
    }
    let n_impact = tasks.len();
    if study.model.gap_closing {
        for o in &study.outcomes {
            for s in &study.subgroups {
                if let Some(v) = subgroup_variable(s, pupils) {
                    tasks.push(Task::Gap(o, s, v));
                }
            }
        }
    }
    let n_gap = tasks.len() - n_impact;
    if let Some(p) = primary.filter(|_| study.model.sensitivity) {
        tasks.extend(crate::sensitivity::REFITS.iter().map(|&v| Task::Sensitivity(p, v)));
    }
    // Each outcome's rows of the national table, found once for all its models (an outcome whose rows cannot
    // be found leaves each model to report why).
    let outcome_rows: Vec<Option<OutcomeRows>> =
        study.outcomes.par_iter().map(|o| OutcomeRows::new(study, pupils, o).ok()).collect();
    let shared =
        |o: &OutcomeSpec| study.outcomes.iter().position(|s| std::ptr::eq(s, o)).and_then(|k| outcome_rows[k].as_ref());
    let stage = "fitting impact, gap-closing and sensitivity models";
    progress(Progress::Started { stage, total: Some(tasks.len() as u64) });
    let done: Vec<Done> = tasks
        .par_iter()
        .with_max_len(1)
        .map(|t| {
            let d = match t {
                Task::Impact(o, s) => Done::Impact(analyse(plan, pupils, &matched, o, *s, shared(o))),
                Task::Gap(o, s, v) => Done::Gap(crate::gap_closing::fit_gap_closing(
                    study,
                    pupils,
                    &matched,
                    (o, shared(o)),
                    s,
                    v,
                    &years,
                )),
                Task::Sensitivity(o, v) => Done::Sensitivity(crate::sensitivity::variant_row(
                    plan,
                    schools,
                    pupils,
                    &matched,
                    o,
                    *v,
                    shared(o),
                )),
            };
            progress(Progress::Advanced);
            d
        })
        .collect();
    progress(Progress::Finished);
    let mut done = done.into_iter();
    let outcomes: Vec<OutcomeResult> = done
        .by_ref()
        .take(n_impact)
        .map(|d| match d {
            Done::Impact(r) => r,
            _ => unreachable!("the impact analyses come first"),
        })
        .collect::<Result<_, _>>()?;
    let all_pupils =
        |name: &str| outcomes.iter().find(|r| r.name == name && r.subgroup.is_none() && r.skipped.is_none());
    // A gap-closing analysis is reported for an outcome whose all-pupils analysis was fitted.
    let gap_closing: Vec<GapClosing> = tasks[n_impact..n_impact + n_gap]
        .iter()
        .zip(done.by_ref().take(n_gap))
        .filter_map(|(t, d)| match (t, d) {
            (Task::Gap(o, ..), Done::Gap(fit)) => all_pupils(&o.name).map(|all| fit.finish(all.effect_size_sd)),
            _ => unreachable!("the gap-closing models come second"),
        })
        .collect();
    let refits: Vec<SensitivityRow> = done
        .map(|d| match d {
            Done::Sensitivity(row) => row,
            _ => unreachable!("the sensitivity refits come last"),
        })
        .collect();
    let sensitivity = match (primary.filter(|_| study.model.sensitivity), primary.and_then(|p| all_pupils(&p.name))) {
        (Some(p), Some(main)) => {
            let inference = crate::sensitivity::inference_row(plan, pupils, &matched, p, main, shared(p));
            Some(crate::sensitivity::assemble(main, std::iter::once(inference).chain(refits).collect()))
        }
        _ => None,
    };
    let headline = crate::headline::headline(study, &outcomes);
    Ok(Evaluation {
        psmeval_version: env!("CARGO_PKG_VERSION").to_string(),
        study: study.clone(),
        study_file,
        inputs,
        matching,
        outcomes,
        headline,
        gap_closing,
        sensitivity,
    })
}

/// One model of an evaluation, as [`evaluate`] runs them side by side.
enum Task<'a> {
    /// The impact analysis of an outcome, for all pupils or a subgroup.
    Impact(&'a OutcomeSpec, Option<&'a SubgroupSpec>),
    /// The gap-closing model of an outcome for a subgroup's 0/1 column.
    Gap(&'a OutcomeSpec, &'a SubgroupSpec, String),
    /// A sensitivity refit of the primary outcome.
    Sensitivity(&'a OutcomeSpec, crate::sensitivity::Variant),
}

/// A [`Task`]'s result (a dozen or so per evaluation, each moved once: their sizes do not matter).
#[allow(clippy::large_enum_variant)]
enum Done {
    Impact(Result<OutcomeResult, EvaluationError>),
    Gap(crate::gap_closing::GapFit),
    Sensitivity(SensitivityRow),
}

/// The matched schools of a matching result (weight above 0) with their group, weight and matched set
/// (numbered in the order of the result's matched sets).
pub(crate) fn matched_schools(matching: &MatchResult) -> HashMap<String, MatchedSchool> {
    let sets: HashMap<&str, u32> = matching.matches.iter().enumerate().map(|(k, s)| (&*s.treated, k as u32)).collect();
    matching
        .units
        .iter()
        .filter(|u| u.weight > 0.0)
        .map(|u| {
            let set = u.subclass.as_deref().and_then(|s| sets.get(s).copied());
            (u.id.to_string(), MatchedSchool { treated: u.treated, weight: u.weight, set })
        })
        .collect()
}

/// One outcome × subgroup analysis of `plan` in the `matched` schools.
pub(crate) fn analyse(
    plan: &Plan,
    pupils: &Table,
    matched: &HashMap<String, MatchedSchool>,
    outcome: &OutcomeSpec,
    subgroup: Option<&SubgroupSpec>,
    shared: Option<&OutcomeRows>,
) -> Result<OutcomeResult, EvaluationError> {
    let study = &plan.study;
    let analysis = match subgroup {
        Some(s) => format!("outcome `{}`, subgroup `{}`", outcome.name, s.name),
        None => format!("outcome `{}`", outcome.name),
    };
    let sample = build_sample(study, pupils, matched, outcome, subgroup, &[], shared)
        .map_err(|message| EvaluationError::Sample { analysis, message })?;
    let (formula_text, notes) = match &study.model.formula {
        Some(f) => (f.clone(), Vec::new()),
        None => default_formula(study, &sample),
    };
    let mut result = OutcomeResult {
        name: outcome.name.clone(),
        subgroup: subgroup.map(|s| s.name.clone()),
        family: outcome.family,
        standardized: outcome.standardize_within_year,
        n_pupils: sample.counts.n_pupils,
        n_schools: sample.counts.n_schools,
        counts: sample.counts.clone(),
        formula: formula_text.clone(),
        model: None,
        effect_size_sd: f64::NAN,
        effects: Vec::new(),
        percentage_points: Vec::new(),
        trend: Vec::new(),
        icc: None,
        skipped: None,
        notes,
        school_effects: Vec::new(),
        inference: None,
        event_study: Vec::new(),
        event_reference: None,
        pretrend: None,
        analytic_mdes: None,
    };
    if sample.counts.n_treated_schools == 0 || sample.counts.n_schools == sample.counts.n_treated_schools {
        result.skipped = Some("the sample needs pupils in both lead and contrast schools".into());
        return Ok(result);
    }
    // Trend: mean outcome by year and group, clustered by school.
    let y = sample.table.numeric("outcome").expect("built by sample");
    let yr: Vec<i64> =
        sample.table.numeric(&study.data.year).expect("built by sample").iter().map(|&v| v as i64).collect();
    let g: Vec<bool> = sample.table.numeric("group").expect("built by sample").iter().map(|&v| v == 1.0).collect();
    let (codes, _) = psmeval_frame::design::factor_codes(
        sample.table.column(&study.data.school_id).expect("built by sample"),
        &(0..sample.table.n_rows()).collect::<Vec<_>>(),
    );
    let weights = (!sample.weights.iter().all(|&w| w == 1.0)).then_some(sample.weights.as_slice());
    result.trend = clustered_means(y, &yr, &g, &codes, weights);
    let present: Vec<i64> = plan.years().into_iter().filter(|y| yr.contains(y)).collect();
    let start = study.years.programme_start;
    if !(present.iter().any(|&y| y < start) && present.iter().any(|&y| y >= start)) {
        result.skipped = Some("this sample has no pupils before or none after the programme start".into());
        return Ok(result);
    }
    // A sample that cannot be modelled (a year without treatment pupils in a subgroup, a constant outcome,
    // one pupil per school…) is reported as not analysed; the other analyses go on.
    let (es_sd, unadjusted) = match unconditional_sd(study, &sample, outcome.family, study.effect_size.definition) {
        Ok(sd) => sd,
        Err(e) => {
            result.skipped = Some(format!("the effect-size model could not be fitted: {e}"));
            return Ok(result);
        }
    };
    let parsed;
    let formula = match &plan.model_formula {
        Some(f) => f,
        None => match psmeval_frame::parse_formula(&formula_text) {
            Ok(f) => {
                parsed = f;
                &parsed
            }
            Err(e) => {
                result.skipped = Some(format!("the impact model could not be fitted: formula `{formula_text}`: {e}"));
                return Ok(result);
            }
        },
    };
    let fit = match fit_impact(
        study,
        &sample,
        formula,
        &formula_text,
        outcome.family,
        EffectTerms { years: &present, term: "group" },
        es_sd,
    ) {
        Ok(fit) => fit,
        Err(e) => {
            result.skipped = Some(format!("the impact model could not be fitted: {e}"));
            return Ok(result);
        }
    };
    result.notes.extend(fit.notes);
    result.model = Some(fit.model);
    result.effect_size_sd = fit.effect_size_sd;
    result.effects = fit.effects;
    result.percentage_points = fit.percentage_points;
    result.icc = fit.icc;
    result.school_effects = fit.school_effects;
    result.inference = Some(fit.inference);
    result.event_study = fit.event_study;
    result.event_reference = Some(fit.event_reference);
    result.pretrend = fit.pretrend;
    if let (Some(unadjusted), Some(adjusted)) = (unadjusted, fit.variances) {
        let post = yr.iter().filter(|&&y| y >= start).count() as f64;
        let n = post / sample.counts.n_schools.max(1) as f64;
        result.analytic_mdes = bloom(sample.counts.n_schools, sample.counts.n_treated_schools, n, unadjusted, adjusted);
    }
    Ok(result)
}
