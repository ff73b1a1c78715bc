//! Power by simulation: the study's whole design (population, matching, impact models, inference) run on many
//! simulated populations at each effect of a grid, giving per analysis (outcome × subgroup) and effect the
//! power, bias, empirical SE, mean reported SE and coverage of the 95% interval, each with its Monte Carlo SE,
//! and the minimum detectable effect (MDES) at 80% power.
//!
//! A run is a grid of units, replicate `r` in `0..R` × effect `e`. Replicate `r`'s population seed depends on
//! `(seed, r)` only, so all effects of a replicate are simulated on the same schools and pupils (common random
//! numbers give a smooth power curve) and a replicate gives the same draws wherever and in whatever order it
//! runs. [`run_shard`] runs shard `i` of `N` (contiguous replicate ranges; `0` of `1` is the whole run),
//! [`collect`] checks and merges shards, and [`summarize`] turns the draws into [`PowerResults`]. Draws are
//! kept in (replicate, effect, analysis) order and summed in that order, so the summary is bit-identical
//! whatever the sharding or the number of threads.
//!
//! The truth an interval is checked against is the simulated population's own effect on the analysed scale:
//! the mean over the lead schools' pupils in programme years (after the outcome's and subgroup's filters) of
//! the observed outcome minus the outcome the simulator records for the same pupil without the programme,
//! divided by the year's standardization SD when the outcome is standardized, averaged over the programme
//! years as the pooled estimate averages the years' contrasts. Banded and clamped scores make it smaller than
//! the latent effect simulated. A binary outcome is judged by its percentage-point effect (g-computation; the
//! log-odds ratio has no such truth), whose truth is the mean change in the share reaching the standard, ×100.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use psmeval_frame::Table;
use psmeval_synth::{Population, simulate, validate};

pub use crate::design::Design;

use crate::effects::ModelBased;
use crate::float::nan_if_null;
use crate::sample::standardization;
use crate::study::{ClusterBy, Family, InferenceMethod, InferenceSpec, OutcomeSpec, SubgroupSpec, filter_rows};
use crate::{EvaluationError, Plan, Study, evaluate, population_tables};

/// The most units (replicates × effects) one run may have.
pub const MAX_UNITS: u64 = 10_000_000;

/// The power at which the MDES is read off the simulated curve.
pub const TARGET_POWER: f64 = 0.8;

/// What a power run simulates: identical settings give identical results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSettings {
    /// Replicates (populations) per effect.
    pub replicates: u64,
    /// Simulated programme effects, latent pupil SD units.
    pub effects: Vec<f64>,
    /// Master seed; replicate `r` simulates with [`replicate_seed`]`(seed, r)`.
    pub seed: u64,
    /// The simulated design.
    pub design: Design,
}

/// One analysis: an outcome in all pupils or in a subgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Outcome name.
    pub outcome: String,
    /// Subgroup name (`None`: all pupils).
    pub subgroup: Option<String>,
    /// The model family.
    pub family: Family,
}

/// The pooled effect of one analysis in one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draw {
    /// Replicate index.
    pub replicate: u64,
    /// Index into the effects.
    pub effect: usize,
    /// Index into the analyses.
    pub analysis: usize,
    /// Pooled estimate.
    #[serde(deserialize_with = "nan_if_null")]
    pub estimate: f64,
    /// Its SE (the study's inference).
    #[serde(deserialize_with = "nan_if_null")]
    pub std_error: f64,
    /// Lower 95% limit.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_low: f64,
    /// Upper 95% limit.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_high: f64,
    /// p value.
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
    /// The population's true effect on the analysed scale, where defined (see the module documentation).
    pub truth: Option<f64>,
    /// The model's own interval and p value, when the study's inference is another (CR2, wild).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_based: Option<ModelBased>,
    /// Bloom's analytic MDES of the replicate's analysis (linear outcomes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytic_mdes: Option<f64>,
}

/// Power and coverage the model-based intervals would have had, beside the study's inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPoint {
    /// Share with p < 0.05.
    #[serde(deserialize_with = "nan_if_null")]
    pub power: f64,
    /// Mean model-based SE.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_se: f64,
    /// Share of model-based 95% intervals covering the truth.
    pub coverage: Option<f64>,
}

/// A unit (or one of its analyses) that gave no estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Replicate index.
    pub replicate: u64,
    /// Index into the effects.
    pub effect: usize,
    /// Index into the analyses (`None`: the whole unit).
    pub analysis: Option<usize>,
    /// Why.
    pub reason: String,
}

/// The draws of one shard, as written by `psmeval power --shard i/N` and read by [`collect`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerShard {
    /// Always [`SHARD_FORMAT`].
    pub format: String,
    /// psmeval version that ran the shard.
    pub psmeval_version: String,
    /// SHA-256 of the study file the shard ran.
    pub study_sha256: String,
    /// The study as parsed (for the report of merged shards).
    pub study: Study,
    /// The settings.
    pub settings: PowerSettings,
    /// This shard's index, from 0.
    pub shard: usize,
    /// Number of shards.
    pub shards: usize,
    /// The analyses (index order of the draws).
    pub analyses: Vec<Analysis>,
    /// Estimates, in (replicate, effect, analysis) order.
    pub draws: Vec<Draw>,
    /// Units or analyses without an estimate.
    pub failures: Vec<Failure>,
}

/// The `format` of a shard file.
pub const SHARD_FORMAT: &str = "psmeval power shard v2";

/// One point of a power curve: an analysis at one effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerPoint {
    /// Simulated effect, latent SD units.
    pub effect: f64,
    /// Replicates with an estimate.
    pub replicates: usize,
    /// Replicates without one.
    pub failed: usize,
    /// Share of replicates with p < 0.05 (at effect 0: the rejection rate).
    #[serde(deserialize_with = "nan_if_null")]
    pub power: f64,
    /// Its Monte Carlo SE.
    #[serde(deserialize_with = "nan_if_null")]
    pub power_mcse: f64,
    /// Mean true effect on the analysed scale (`None` where undefined).
    pub mean_truth: Option<f64>,
    /// Mean estimate.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_estimate: f64,
    /// Mean of estimate − truth.
    pub bias: Option<f64>,
    /// Its Monte Carlo SE.
    pub bias_mcse: Option<f64>,
    /// SD of the estimates over replicates.
    #[serde(deserialize_with = "nan_if_null")]
    pub empirical_se: f64,
    /// Its Monte Carlo SE.
    #[serde(deserialize_with = "nan_if_null")]
    pub empirical_se_mcse: f64,
    /// Mean reported SE.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_se: f64,
    /// Its Monte Carlo SE.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_se_mcse: f64,
    /// Share of 95% intervals covering the truth.
    pub coverage: Option<f64>,
    /// Its Monte Carlo SE.
    pub coverage_mcse: Option<f64>,
    /// The model-based intervals' power and coverage, when every draw kept them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_based: Option<ModelPoint>,
}

/// The minimum detectable effect of an analysis at [`TARGET_POWER`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mdes {
    /// Interpolated between the grid's effects (latent SD units), when the curve crosses the target.
    pub effect: Option<f64>,
    /// The same on the analysed scale (mean true effect interpolated likewise), when defined.
    pub analysed: Option<f64>,
    /// How it was read off the curve, or why it could not be.
    pub note: String,
}

/// Power results of one analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisPower {
    /// The analysis.
    #[serde(flatten)]
    pub analysis: Analysis,
    /// One point per effect, in the order of the settings.
    pub effects: Vec<PowerPoint>,
    /// The MDES at 80% power.
    pub mdes: Mdes,
    /// Bloom's analytic MDES (total-SD units), the mean over the replicates' analyses, for comparison.
    pub analytic_mdes: Option<f64>,
}

/// The results of a power run (`results.json` of `psmeval power`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerResults {
    /// psmeval version.
    pub psmeval_version: String,
    /// The study's title.
    pub title: Option<String>,
    /// SHA-256 of the study file.
    pub study_sha256: String,
    /// Replicates per effect.
    pub replicates: u64,
    /// The settings simulated.
    pub settings: PowerSettings,
    /// The study's inference, in words.
    pub inference: String,
    /// Per analysis.
    pub analyses: Vec<AnalysisPower>,
    /// Units or analyses without an estimate (all of them, for the record).
    pub failures: Vec<Failure>,
}

/// Why a power run, shard or merge cannot proceed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PowerError {
    /// A setting is out of range.
    #[error("{option}: {message}")]
    Setting {
        /// The option (`replicates`, `effects`, `shard`, a `[simulation]` field…).
        option: String,
        /// What is wrong.
        message: String,
    },
    /// The study cannot be evaluated on the simulated data (a column the simulator does not write…).
    #[error("the study cannot be run on simulated data: {0}")]
    Study(EvaluationError),
    /// Shards cannot be merged.
    #[error("{shard}: {message}")]
    Shard {
        /// The shard (a file name, as the caller labelled it).
        shard: String,
        /// What is wrong.
        message: String,
    },
}

fn setting(option: &str, message: impl Into<String>) -> PowerError {
    PowerError::Setting { option: option.to_string(), message: message.into() }
}

/// SplitMix64 finalizer.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The population seed of replicate `r` of a run seeded `seed`.
pub fn replicate_seed(seed: u64, r: u64) -> u64 {
    splitmix(seed ^ splitmix(r))
}

/// The replicates of shard `shard` of `shards`: a contiguous range, the ranges of all shards covering
/// `0..replicates` once.
pub fn shard_range(replicates: u64, shard: usize, shards: usize) -> std::ops::Range<u64> {
    let (s, n) = (shard as u128, shards as u128);
    let r = u128::from(replicates);
    (r * s / n) as u64..(r * (s + 1) / n) as u64
}

/// The analyses of a plan, in `evaluate`'s order (outcome-major, all pupils then each subgroup).
pub fn analyses(plan: &Plan) -> Vec<Analysis> {
    let mut out = Vec::new();
    for o in &plan.study.outcomes {
        for s in std::iter::once(None).chain(plan.study.subgroups.iter().map(Some)) {
            out.push(Analysis { outcome: o.name.clone(), subgroup: s.map(|s| s.name.clone()), family: o.family });
        }
    }
    out
}

/// Checks the settings: at least one replicate, a non-empty grid of finite effects, a valid design.
pub fn check_settings(settings: &PowerSettings) -> Result<(), PowerError> {
    if settings.replicates == 0 {
        return Err(setting("replicates", "must be at least 1"));
    }
    // The units of a run are listed before it starts; a grid beyond this is a typo, not a study.
    if settings.replicates.saturating_mul(settings.effects.len() as u64) > MAX_UNITS {
        return Err(setting(
            "replicates",
            format!(
                "{} replicates × {} effects is more than {MAX_UNITS} runs; split the study into smaller runs",
                settings.replicates,
                settings.effects.len()
            ),
        ));
    }
    if settings.effects.is_empty() {
        return Err(setting("effects", "give at least one effect"));
    }
    if let Some(e) = settings.effects.iter().find(|e| !e.is_finite()) {
        return Err(setting("effects", format!("{e} is not a finite number")));
    }
    for &e in &settings.effects {
        validate(&settings.design.sim_config(e, 0)).map_err(|err| match err {
            psmeval_synth::SimError::OutOfRange { name, value, reason } => {
                let option = match name {
                    "effect" => "effects".to_string(),
                    "mean_cohort" => "simulation.cohort_size".to_string(),
                    "first_year" | "last_year" | "programme_start" => format!("years ({name})"),
                    other => format!("simulation.{other}"),
                };
                setting(&option, format!("{value} is out of range: {reason}"))
            }
            other => setting("simulation", other.to_string()),
        })?;
    }
    Ok(())
}

/// Runs shard `shard` of `shards` (0 of 1: every replicate). `study_sha256` identifies the study file in the
/// shard; `progress` is called once per finished unit (from several threads).
pub fn run_shard(
    plan: &Plan,
    study_sha256: &str,
    settings: &PowerSettings,
    shard: usize,
    shards: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<PowerShard, PowerError> {
    check_settings(settings)?;
    if shards == 0 || shard >= shards {
        return Err(setting("shard", format!("{shard}/{shards}: the index must be below the number of shards")));
    }
    let range = shard_range(settings.replicates, shard, shards);
    let analyses = analyses(plan);
    let mut units: Vec<(u64, usize)> = range.flat_map(|r| (0..settings.effects.len()).map(move |e| (r, e))).collect();
    // The first unit runs alone: a study that cannot run on simulated data (a column the simulator does not
    // write, more matches than controls…) is one error, not a failure in every unit.
    let mut results: Vec<(Vec<Draw>, Vec<Failure>)> = Vec::with_capacity(units.len());
    if let Some(&(r, e)) = units.first() {
        match evaluate_unit(plan, settings, &analyses, r, e) {
            Ok(first) => results.push(first),
            Err(UnitError::Simulation(why)) => return Err(setting("simulation", why)),
            Err(UnitError::Evaluation(err)) => return Err(PowerError::Study(err)),
        }
        progress();
        units.remove(0);
    }
    results.extend(
        units
            .par_iter()
            .map(|&(r, e)| {
                let out = run_unit(plan, settings, &analyses, r, e);
                progress();
                out
            })
            .collect::<Vec<_>>(),
    );
    let (mut draws, mut failures) = (Vec::new(), Vec::new());
    for (d, f) in results {
        draws.extend(d);
        failures.extend(f);
    }
    Ok(PowerShard {
        format: SHARD_FORMAT.to_string(),
        psmeval_version: env!("CARGO_PKG_VERSION").to_string(),
        study_sha256: study_sha256.to_string(),
        study: plan.study.clone(),
        settings: settings.clone(),
        shard,
        shards,
        analyses,
        draws,
        failures,
    })
}

/// Why a unit gave no evaluation at all.
enum UnitError {
    Simulation(String),
    Evaluation(EvaluationError),
}

/// Simulates replicate `r` at effect `e` and evaluates it; a unit that fails as a whole is one failure.
fn run_unit(
    plan: &Plan,
    settings: &PowerSettings,
    analyses: &[Analysis],
    r: u64,
    e: usize,
) -> (Vec<Draw>, Vec<Failure>) {
    evaluate_unit(plan, settings, analyses, r, e).unwrap_or_else(|err| {
        let reason = match err {
            UnitError::Simulation(why) => format!("simulation: {why}"),
            UnitError::Evaluation(err) => err.to_string(),
        };
        (Vec::new(), vec![Failure { replicate: r, effect: e, analysis: None, reason }])
    })
}

fn evaluate_unit(
    plan: &Plan,
    settings: &PowerSettings,
    analyses: &[Analysis],
    r: u64,
    e: usize,
) -> Result<(Vec<Draw>, Vec<Failure>), UnitError> {
    let cfg = settings.design.sim_config(settings.effects[e], replicate_seed(settings.seed, r));
    let pop = simulate(&cfg).map_err(|err| UnitError::Simulation(err.to_string()))?;
    let (schools, pupils) = population_tables(&pop).map_err(|err| UnitError::Simulation(err.to_string()))?;
    // The power analysis reports the programme effects only: no gap-closing or sensitivity models.
    let mut plan = plan.clone();
    plan.study.model.gap_closing = false;
    plan.study.model.sensitivity = false;
    let ev = evaluate(&plan, &schools, &pupils, Vec::new(), String::new(), &|_| {}).map_err(UnitError::Evaluation)?;
    let (mut draws, mut failures) = (Vec::new(), Vec::new());
    for (a, analysis) in analyses.iter().enumerate() {
        let fail = |reason: String| Failure { replicate: r, effect: e, analysis: Some(a), reason };
        let Some(res) = ev.outcomes.iter().find(|o| o.name == analysis.outcome && o.subgroup == analysis.subgroup)
        else {
            failures.push(fail("not in the evaluation's results".into()));
            continue;
        };
        if let Some(why) = &res.skipped {
            failures.push(fail(why.clone()));
            continue;
        }
        // A binary outcome's power is that of its percentage-point effect, which has a true value.
        let effects = if analysis.family == Family::Binomial { &res.percentage_points } else { &res.effects };
        let Some(pooled) = effects.iter().find(|x| x.year.is_pooled()) else {
            failures.push(fail("no pooled effect".into()));
            continue;
        };
        if !(pooled.estimate.is_finite() && pooled.std_error.is_finite()) {
            failures.push(fail("the pooled effect has no finite estimate and SE".into()));
            continue;
        }
        let outcome = plan.study.outcomes.iter().find(|o| o.name == analysis.outcome);
        let subgroup = analysis.subgroup.as_ref().and_then(|s| plan.study.subgroups.iter().find(|g| &g.name == s));
        let truth = outcome.and_then(|o| true_effect(&plan, &pop, &pupils, o, subgroup));
        draws.push(Draw {
            replicate: r,
            effect: e,
            analysis: a,
            estimate: pooled.estimate,
            std_error: pooled.std_error,
            ci_low: pooled.ci_low,
            ci_high: pooled.ci_high,
            p_value: pooled.p_value,
            truth,
            model_based: pooled.model_based.clone(),
            analytic_mdes: res.analytic_mdes.as_ref().map(|m| m.mdes),
        });
    }
    Ok((draws, failures))
}

/// The population's true effect for an analysis on the analysed scale (see the module documentation), or
/// `None` where the outcome has no recorded untreated value or the effect has no defined truth.
pub fn true_effect(
    plan: &Plan,
    pop: &Population,
    pupils: &Table,
    outcome: &OutcomeSpec,
    subgroup: Option<&SubgroupSpec>,
) -> Option<f64> {
    let study = &plan.study;
    let untreated: Vec<f64> = match outcome.column.as_str() {
        "maths" => pop.pupils.maths_untreated.clone(),
        "expected" => pop.pupils.expected_untreated.iter().map(|&v| v as f64).collect(),
        _ => return None,
    };
    let years = pupils.numeric(&study.data.year).ok()?;
    let y = pupils.numeric(&outcome.column).ok()?;
    let in_years: Vec<usize> = (0..pupils.n_rows())
        .filter(|&i| years[i] >= study.years.first as f64 && years[i] <= study.years.last as f64)
        .collect();
    let outcome_rows = filter_rows(pupils, &outcome.filter, &in_years);
    let rows = match subgroup {
        Some(s) => filter_rows(pupils, &s.filter, &outcome_rows),
        None => outcome_rows.clone(),
    };
    let leads: HashSet<i64> =
        pop.schools.school_id.iter().zip(&pop.schools.lead).filter(|(_, l)| **l == 1).map(|(id, _)| *id).collect();
    let treated: Vec<usize> = rows
        .into_iter()
        .filter(|&i| {
            years[i] >= study.years.programme_start as f64
                && y[i].is_finite()
                && leads.contains(&pop.pupils.school_id[i])
        })
        .collect();
    if treated.is_empty() {
        return None;
    }
    // Per programme year, the mean effect on the analysed scale; the pooled truth is their mean, as the pooled
    // estimate is the mean of the years' contrasts.
    let scale: HashMap<i64, f64> = match outcome.family {
        Family::Binomial => HashMap::new(),
        _ if outcome.standardize_within_year => {
            standardization(&outcome.column, years, y, outcome_rows.iter().copied())
                .ok()?
                .into_iter()
                .map(|(k, (_, s))| (k, s))
                .collect()
        }
        _ => HashMap::new(),
    };
    let unit = if outcome.family == Family::Binomial { 100.0 } else { 1.0 };
    let mut by_year: std::collections::BTreeMap<i64, (f64, usize)> = std::collections::BTreeMap::new();
    for &i in &treated {
        let year = years[i] as i64;
        let e = by_year.entry(year).or_default();
        e.0 += unit * (y[i] - untreated[i]) / scale.get(&year).copied().unwrap_or(1.0);
        e.1 += 1;
    }
    Some(by_year.values().map(|(s, n)| s / *n as f64).sum::<f64>() / by_year.len() as f64)
}

/// Merges shards (labelled for errors, e.g. by file name) into one shard holding every replicate once.
/// Every shard must come from the same study file, settings and number of shards, and each index must occur
/// exactly once; nothing is merged otherwise.
pub fn collect(shards: Vec<(String, PowerShard)>) -> Result<PowerShard, PowerError> {
    let bad = |shard: &str, message: String| PowerError::Shard { shard: shard.to_string(), message };
    let Some((first_label, first)) = shards.first() else {
        return Err(bad("shards", "no shard files to collect".into()));
    };
    let mut seen: Vec<Option<String>> = vec![None; first.shards];
    for (label, s) in &shards {
        if s.format != SHARD_FORMAT {
            return Err(bad(label, format!("not a psmeval power shard (format `{}`)", s.format)));
        }
        if s.study_sha256 != first.study_sha256 || s.study != first.study {
            return Err(bad(label, format!("comes from another study file than {first_label}")));
        }
        if s.settings != first.settings {
            let what = if s.settings.seed != first.settings.seed {
                format!("seed {} where {first_label} has {}", s.settings.seed, first.settings.seed)
            } else {
                format!("other settings (replicates, effects or design) than {first_label}")
            };
            return Err(bad(label, format!("was run with {what}")));
        }
        if s.shards != first.shards || s.analyses != first.analyses {
            return Err(bad(
                label,
                format!("is shard {} of {}, where {first_label} is of {}", s.shard, s.shards, first.shards),
            ));
        }
        match seen.get_mut(s.shard) {
            None => return Err(bad(label, format!("shard index {} is not below {}", s.shard, s.shards))),
            Some(Some(other)) => {
                return Err(bad(label, format!("shard {} of {} is also in {other}", s.shard, s.shards)));
            }
            Some(slot) => *slot = Some(label.clone()),
        }
        let range = shard_range(s.settings.replicates, s.shard, s.shards);
        if let Some(d) = s.draws.iter().find(|d| !range.contains(&d.replicate)) {
            return Err(bad(label, format!("holds replicate {} outside its range {range:?}", d.replicate)));
        }
    }
    let missing: Vec<String> =
        seen.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| i.to_string()).collect();
    if !missing.is_empty() {
        return Err(bad("shards", format!("shard(s) {} of {} missing", missing.join(", "), first.shards)));
    }
    let mut ordered: Vec<&PowerShard> = shards.iter().map(|(_, s)| s).collect();
    ordered.sort_by_key(|s| s.shard);
    let mut merged = ordered[0].clone();
    merged.shard = 0;
    merged.shards = 1;
    merged.draws = ordered.iter().flat_map(|s| s.draws.iter().cloned()).collect();
    merged.failures = ordered.iter().flat_map(|s| s.failures.iter().cloned()).collect();
    Ok(merged)
}

/// The study's inference in words, for reports.
pub fn inference_label(spec: &InferenceSpec) -> String {
    let cluster = match spec.cluster {
        ClusterBy::School => "school",
        ClusterBy::MatchedSet => "matched set",
    };
    let linear = match spec.method {
        InferenceMethod::Cr2 => {
            format!("cluster-robust CR2 standard errors with Bell–McCaffrey small-sample df, clustered by {cluster}")
        }
        InferenceMethod::Wild => format!(
            "wild cluster bootstrap-t ({} draws, {:?} weights, CR2 standard errors), clustered by {cluster}",
            spec.bootstrap_draws, spec.bootstrap_weights
        ),
        InferenceMethod::Permutation => format!(
            "randomization inference ({} statistic, {} re-drawn assignments {}; CR2 standard errors by {cluster})",
            match spec.statistic {
                psmeval_multilevel::Statistic::Studentized => "studentized",
                psmeval_multilevel::Statistic::Estimate => "estimate",
            },
            spec.permutations,
            match spec.permute {
                crate::study::PermuteAmong::MatchedSet => "within matched sets",
                crate::study::PermuteAmong::All => "among all matched schools",
            }
        ),
        InferenceMethod::Model => "the mixed model's own standard errors with Satterthwaite df".to_string(),
    };
    let logistic = match spec.method {
        InferenceMethod::Model => "Wald z tests",
        _ => "CR2 of the working linear model",
    };
    format!("{linear} for linear models; {logistic} for logistic models")
}

/// Summarizes a whole run (a shard of all replicates, or merged shards).
pub fn summarize(run: &PowerShard) -> PowerResults {
    let (title, inference) = (run.study.title.clone(), inference_label(&run.study.inference));
    let s = &run.settings;
    let analyses = run
        .analyses
        .iter()
        .enumerate()
        .map(|(a, analysis)| {
            let effects: Vec<PowerPoint> = (0..s.effects.len())
                .map(|e| {
                    let draws: Vec<&Draw> = run.draws.iter().filter(|d| d.analysis == a && d.effect == e).collect();
                    let failed =
                        run.failures.iter().filter(|f| f.effect == e && f.analysis.is_none_or(|x| x == a)).count();
                    point(s.effects[e], &draws, failed)
                })
                .collect();
            let mdes = mdes(&effects);
            let bloom: Vec<f64> =
                run.draws.iter().filter(|d| d.analysis == a).filter_map(|d| d.analytic_mdes).collect();
            let analytic_mdes = (!bloom.is_empty()).then(|| mean(bloom.iter().copied()).0);
            AnalysisPower { analysis: analysis.clone(), effects, mdes, analytic_mdes }
        })
        .collect();
    PowerResults {
        psmeval_version: run.psmeval_version.clone(),
        title,
        study_sha256: run.study_sha256.clone(),
        replicates: s.replicates,
        settings: s.clone(),
        inference,
        analyses,
        failures: run.failures.clone(),
    }
}

fn mean(v: impl Iterator<Item = f64>) -> (f64, usize) {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        s += x;
        n += 1;
    }
    (s / n as f64, n)
}

fn sd(v: &[f64]) -> f64 {
    let (m, n) = mean(v.iter().copied());
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt()
}

fn share_mcse(p: f64, n: usize) -> f64 {
    (p * (1.0 - p) / n as f64).sqrt()
}

fn point(effect: f64, draws: &[&Draw], failed: usize) -> PowerPoint {
    let n = draws.len();
    let est: Vec<f64> = draws.iter().map(|d| d.estimate).collect();
    let se: Vec<f64> = draws.iter().map(|d| d.std_error).collect();
    let power = draws.iter().filter(|d| d.p_value < 0.05).count() as f64 / n as f64;
    let empirical_se = sd(&est);
    let mean_se = mean(se.iter().copied()).0;
    // Bias and coverage only where every draw has a truth.
    let truths: Option<Vec<f64>> = draws.iter().map(|d| d.truth).collect();
    let truths = truths.filter(|t| !t.is_empty());
    let (mean_truth, bias, bias_mcse, coverage, coverage_mcse) = match &truths {
        Some(t) => {
            let errors: Vec<f64> = est.iter().zip(t).map(|(e, t)| e - t).collect();
            let cover =
                draws.iter().zip(t).filter(|(d, t)| d.ci_low <= **t && **t <= d.ci_high).count() as f64 / n as f64;
            (
                Some(mean(t.iter().copied()).0),
                Some(mean(errors.iter().copied()).0),
                Some(sd(&errors) / (n as f64).sqrt()),
                Some(cover),
                Some(share_mcse(cover, n)),
            )
        }
        None => (None, None, None, None, None),
    };
    let models: Option<Vec<&ModelBased>> = draws.iter().map(|d| d.model_based.as_ref()).collect();
    let model_based = models.filter(|m| !m.is_empty()).map(|m| ModelPoint {
        power: m.iter().filter(|d| d.p_value < 0.05).count() as f64 / n as f64,
        mean_se: mean(m.iter().map(|d| d.std_error)).0,
        coverage: truths
            .as_ref()
            .map(|t| m.iter().zip(t).filter(|(d, t)| d.ci_low <= **t && **t <= d.ci_high).count() as f64 / n as f64),
    });
    PowerPoint {
        effect,
        replicates: n,
        failed,
        power,
        power_mcse: share_mcse(power, n),
        mean_truth,
        mean_estimate: mean(est.iter().copied()).0,
        bias,
        bias_mcse,
        empirical_se,
        empirical_se_mcse: empirical_se / (2.0 * (n as f64 - 1.0)).sqrt(),
        mean_se,
        mean_se_mcse: sd(&se) / (n as f64).sqrt(),
        coverage,
        coverage_mcse,
        model_based,
    }
}

/// The MDES at [`TARGET_POWER`]: linear interpolation between the first pair of grid effects (in increasing
/// order, at or above 0) whose power crosses the target.
pub fn mdes(points: &[PowerPoint]) -> Mdes {
    let mut p: Vec<&PowerPoint> = points.iter().filter(|p| p.effect >= 0.0 && p.replicates > 0).collect();
    p.sort_by(|a, b| a.effect.total_cmp(&b.effect));
    let target = TARGET_POWER;
    let none = |note: String| Mdes { effect: None, analysed: None, note };
    match p.first() {
        None => return none("no effect at or above 0 was simulated".into()),
        Some(first) if first.power >= target => {
            return none(format!(
                "power is already {:.0}% at the smallest effect simulated ({}); simulate smaller effects",
                100.0 * first.power,
                first.effect
            ));
        }
        _ => {}
    }
    for w in p.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.power < target && b.power >= target {
            let f = (target - a.power) / (b.power - a.power);
            let effect = a.effect + f * (b.effect - a.effect);
            let analysed = match (a.mean_truth, b.mean_truth) {
                (Some(x), Some(y)) => Some(x + f * (y - x)),
                _ => None,
            };
            return Mdes {
                effect: Some(effect),
                analysed,
                note: format!(
                    "interpolated between effects {} and {} (power {:.3} and {:.3})",
                    a.effect, b.effect, a.power, b.power
                ),
            };
        }
    }
    let last = p[p.len() - 1];
    none(format!(
        "power stays below {:.0}% up to the largest effect simulated ({}: {:.0}%); simulate larger effects",
        100.0 * target,
        last.effect,
        100.0 * last.power
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(effect: f64, power: f64, truth: Option<f64>) -> PowerPoint {
        PowerPoint {
            effect,
            replicates: 100,
            failed: 0,
            power,
            power_mcse: 0.0,
            mean_truth: truth,
            mean_estimate: 0.0,
            bias: None,
            bias_mcse: None,
            empirical_se: 0.0,
            empirical_se_mcse: 0.0,
            mean_se: 0.0,
            mean_se_mcse: 0.0,
            coverage: None,
            coverage_mcse: None,
            model_based: None,
        }
    }

    #[test]
    fn mdes_interpolates_the_first_crossing() {
        let m = mdes(&[pt(0.1, 0.6, Some(0.08)), pt(0.0, 0.05, Some(0.0)), pt(0.2, 0.9, Some(0.16))]);
        assert!((m.effect.unwrap() - (0.1 + 0.1 * 2.0 / 3.0)).abs() < 1e-12);
        assert!((m.analysed.unwrap() - (0.08 + 0.08 * 2.0 / 3.0)).abs() < 1e-12);
        assert!(mdes(&[pt(0.0, 0.05, None), pt(0.1, 0.5, None)]).effect.is_none());
        assert!(mdes(&[pt(0.1, 0.85, None)]).note.contains("smaller effects"));
    }

    #[test]
    fn absurd_grids_are_refused_by_name() {
        let design = Design {
            schools: 100,
            leads: 5,
            first_year: 2013,
            last_year: 2017,
            programme_start: 2015,
            cohort_size: 20.0,
            school_sd: 0.3,
            slope_sd: 0.04,
            cohort_sd: 0.1,
            pupil_sd: 0.72,
            effect_sd: 0.0,
            pretrend: 0.0,
            basis: crate::design::DesignBasis {
                from: crate::study::DesignFrom::Defaults,
                sources: Default::default(),
                data_fit: None,
            },
        };
        let s = |replicates, effects: Vec<f64>| PowerSettings { replicates, effects, seed: 1, design: design.clone() };
        assert!(check_settings(&s(100, vec![0.0, 0.1])).is_ok());
        let e = check_settings(&s(u64::MAX, vec![0.0, 0.1])).unwrap_err().to_string();
        assert!(e.starts_with("replicates:") && e.contains("runs"), "{e}");
        assert!(check_settings(&s(0, vec![0.0])).unwrap_err().to_string().starts_with("replicates:"));
        assert!(check_settings(&s(1, vec![f64::NAN])).unwrap_err().to_string().starts_with("effects:"));
        let bad = PowerSettings { design: Design { leads: 80, ..design.clone() }, ..s(1, vec![0.0]) };
        assert!(check_settings(&bad).unwrap_err().to_string().starts_with("simulation.leads:"));
    }

    #[test]
    fn shard_ranges_cover_every_replicate_once() {
        for (r, n) in [(10u64, 3usize), (3, 5), (1000, 7), (1, 1)] {
            let all: Vec<u64> = (0..n).flat_map(|i| shard_range(r, i, n)).collect();
            assert_eq!(all, (0..r).collect::<Vec<_>>());
        }
    }

    #[test]
    fn seeds_differ_by_replicate_and_seed() {
        let s: HashSet<u64> =
            (0..1000).map(|r| replicate_seed(7, r)).chain((0..1000).map(|r| replicate_seed(8, r))).collect();
        assert_eq!(s.len(), 2000);
    }

    #[test]
    fn summary_statistics() {
        let d = |r: u64, est: f64, p: f64| Draw {
            replicate: r,
            effect: 0,
            analysis: 0,
            estimate: est,
            std_error: 0.1,
            ci_low: est - 0.196,
            ci_high: est + 0.196,
            p_value: p,
            truth: Some(0.0),
            model_based: None,
            analytic_mdes: None,
        };
        let draws = [d(0, 0.1, 0.3), d(1, -0.1, 0.3), d(2, 0.3, 0.01), d(3, -0.3, 0.01)];
        let refs: Vec<&Draw> = draws.iter().collect();
        let p = point(0.0, &refs, 1);
        assert_eq!((p.replicates, p.failed), (4, 1));
        assert_eq!(p.power, 0.5);
        assert_eq!(p.coverage, Some(0.5));
        assert!(p.bias.unwrap().abs() < 1e-15);
        let sd = ((0.01 + 0.01 + 0.09 + 0.09) / 3.0f64).sqrt();
        assert!((p.empirical_se - sd).abs() < 1e-12);
        assert!((p.mean_se - 0.1).abs() < 1e-12);
        // One draw without a truth: no bias or coverage.
        let mut d2 = draws.clone();
        d2[0].truth = None;
        let refs: Vec<&Draw> = d2.iter().collect();
        assert!(point(0.0, &refs, 0).coverage.is_none());
    }
}
