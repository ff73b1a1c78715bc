//! `psmeval evaluate`: a whole evaluation from one study file — validate, match schools, build each outcome ×
//! subgroup sample, fit the multilevel difference-in-differences models (in parallel), and write
//! `results.json`, CSV tables, figures and the report.
//!
//! Flow: study file → [`Study`] → checks (static, then against the data) → matching ([`crate::matching`]) →
//! samples ([`crate::sample`]) → impact fits ([`crate::impact`]) → [`Evaluation`] (plain, serializable) →
//! outputs ([`crate::evaluate_report`]). The whole run is deterministic: the same study and seed give
//! byte-identical `results.json` whatever the thread count (no timings or paths of temporary files in it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::args::EvaluateArgs;
use crate::effects::Effect;
use crate::error::InputError;
use crate::impact::{ImpactFit, default_formula, fit_impact, unconditional_sd};
use crate::matching::{MatchRun, run_matching};
use crate::progress::Progress;
use crate::sample::{MatchedSchool, SampleCounts, build_sample};
use crate::study::{Family, Study};
use crate::table::{load_table, require_binary, require_unique_ids};
use psmeval_multilevel::describe::{CellMean, clustered_means};

/// An input file and its fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputFile {
    /// Path as given in the study (relative to the study file where it was relative).
    pub path: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Data rows.
    pub rows: usize,
}

/// One outcome × subgroup analysis.
#[derive(Debug, Clone, Serialize)]
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
    /// The fitted impact model (the `psmeval lmm` JSON).
    pub model: serde_json::Value,
    /// SD used for effect sizes.
    pub effect_size_sd: f64,
    /// Per-year and pooled effects.
    pub effects: Vec<Effect>,
    /// Mean outcome by year and group with 95% intervals (clustered by school).
    pub trend: Vec<CellMean>,
    /// Intraclass correlation of the model (random-intercept models).
    pub icc: Option<f64>,
    /// Why this analysis could not be run, when it could not (the other fields are then empty).
    pub skipped: Option<String>,
    /// Decisions taken for this analysis that a reader should know about.
    pub notes: Vec<String>,
    #[serde(skip)]
    /// The fit, for the report (not serialized twice).
    pub fit: Option<ImpactFit>,
}

/// Everything an evaluation produced.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// psmeval's version.
    pub psmeval_version: &'static str,
    /// The study as parsed.
    pub study: Study,
    /// The study file's text.
    pub study_file: String,
    /// Input files with hashes.
    pub inputs: Vec<InputFile>,
    /// Propensity model, matched sets and balance.
    pub matching: MatchRun,
    /// Outcome analyses in study order (outcome-major, all pupils first, then subgroups).
    pub outcomes: Vec<OutcomeResult>,
}

fn sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs the evaluation described by `study_path`.
pub fn evaluate(study_path: &Path, progress: &Progress) -> Result<Evaluation> {
    let text = std::fs::read_to_string(study_path)
        .map_err(|e| InputError::new(format!("{}: cannot read the study file: {e}", study_path.display())))?;
    let study = Study::parse(&text, study_path)?;
    let problems = study.check_static();
    if !problems.is_empty() {
        return Err(InputError::new(format!("{}:\n  {}", study_path.display(), problems.join("\n  "))).into());
    }
    let step = progress.step("loading tables");
    let schools = load_table(&study.data.schools)?;
    let pupils = load_table(&study.data.pupils)?;
    step.finish();
    let problems = study.check_data(&schools, &pupils);
    if !problems.is_empty() {
        return Err(InputError::new(format!("{}:\n  {}", study_path.display(), problems.join("\n  "))).into());
    }
    let treat = require_binary(&schools, &study.data.treatment, &study.data.schools)?;
    let ids = require_unique_ids(&schools, &study.data.school_id, &study.data.schools)?;
    let inputs = vec![
        InputFile {
            path: display_relative(&study.data.schools, study_path),
            sha256: sha256(&study.data.schools)?,
            rows: schools.n_rows(),
        },
        InputFile {
            path: display_relative(&study.data.pupils, study_path),
            sha256: sha256(&study.data.pupils)?,
            rows: pupils.n_rows(),
        },
    ];

    let step = progress.step("propensity scores and matching");
    let matching = run_matching(&study.matching, &schools, &treat, &ids, &study.data.schools)?;
    step.finish();
    let matched: HashMap<String, MatchedSchool> = matching
        .units
        .iter()
        .filter(|u| u.weight > 0.0)
        .map(|u| (u.id.clone(), MatchedSchool { treated: u.treated, weight: u.weight }))
        .collect();

    // Outcome-major order: all pupils, then each subgroup.
    let mut jobs = Vec::new();
    for o in &study.outcomes {
        jobs.push((o, None));
        for s in &study.subgroups {
            jobs.push((o, Some(s)));
        }
    }
    let bar = progress.bar("fitting impact models", jobs.len() as u64);
    let outcomes: Vec<OutcomeResult> = jobs
        .par_iter()
        .map(|(o, s)| {
            let r = analyse(&study, &pupils, &matched, o, *s);
            bar.inc(1);
            r
        })
        .collect::<Result<_>>()?;
    bar.finish();
    // results.json shows the table paths as the study file gives them, not as resolved from the working
    // directory, so the same study gives the same bytes wherever it is run from.
    let mut study = study;
    study.data.schools = PathBuf::from(&inputs[0].path);
    study.data.pupils = PathBuf::from(&inputs[1].path);
    Ok(Evaluation { psmeval_version: env!("CARGO_PKG_VERSION"), study, study_file: text, inputs, matching, outcomes })
}

fn display_relative(path: &Path, study_path: &Path) -> String {
    let base = study_path.parent().unwrap_or(Path::new(""));
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

fn analyse(
    study: &Study,
    pupils: &psmeval_frame::Table,
    matched: &HashMap<String, MatchedSchool>,
    outcome: &crate::study::OutcomeSpec,
    subgroup: Option<&crate::study::SubgroupSpec>,
) -> Result<OutcomeResult> {
    let label = match subgroup {
        Some(s) => format!("outcome `{}`, subgroup `{}`", outcome.name, s.name),
        None => format!("outcome `{}`", outcome.name),
    };
    let sample = build_sample(study, pupils, matched, outcome, subgroup)
        .map_err(|e| InputError::new(format!("{label}: {e}")))?;
    let (formula, notes) = match &study.model.formula {
        Some(f) => (f.clone(), Vec::new()),
        None => default_formula(study, &sample),
    };
    let years: Vec<i64> = (study.years.first..=study.years.last).collect();
    let mut result = OutcomeResult {
        name: outcome.name.clone(),
        subgroup: subgroup.map(|s| s.name.clone()),
        family: outcome.family,
        standardized: outcome.standardize_within_year,
        n_pupils: sample.counts.n_pupils,
        n_schools: sample.counts.n_schools,
        counts: sample.counts.clone(),
        formula: formula.clone(),
        model: serde_json::Value::Null,
        effect_size_sd: f64::NAN,
        effects: Vec::new(),
        trend: Vec::new(),
        icc: None,
        skipped: None,
        notes,
        fit: None,
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
    let present: Vec<i64> = years.iter().copied().filter(|y| yr.contains(y)).collect();
    let start = study.years.programme_start;
    if !(present.iter().any(|&y| y < start) && present.iter().any(|&y| y >= start)) {
        result.skipped = Some("this sample has no pupils before or none after the programme start".into());
        return Ok(result);
    }
    // A sample that cannot be modelled (a year without treatment pupils in a subgroup, a constant outcome,
    // one pupil per school…) is reported as not analysed; the other analyses go on.
    let es_sd = match unconditional_sd(study, &sample, outcome.family, study.effect_size.definition) {
        Ok(sd) => sd,
        Err(e) => {
            result.skipped = Some(format!("the effect-size model could not be fitted: {e}"));
            return Ok(result);
        }
    };
    let fit = match fit_impact(study, &sample, &formula, outcome.family, &present, es_sd) {
        Ok(fit) => fit,
        Err(e) => {
            result.skipped = Some(format!("the impact model could not be fitted: {e}"));
            return Ok(result);
        }
    };
    result.notes.extend(fit.notes.iter().cloned());
    result.model = fit.model.clone();
    result.effect_size_sd = es_sd;
    result.effects = fit.effects.clone();
    result.icc = fit.icc;
    result.fit = Some(fit);
    Ok(result)
}

/// Runs `psmeval evaluate` from its arguments and writes every output.
pub fn run(a: &EvaluateArgs) -> Result<()> {
    let progress = Progress::new(a.quiet);
    let (study_path, out): (PathBuf, PathBuf) = if a.example {
        let out = a.out.clone().unwrap_or_else(|| PathBuf::from("reports/example"));
        let cfg = crate::example::config(a);
        let step = progress.step("simulating the example population");
        let study = crate::example::write_example(&out, &cfg)?;
        step.finish();
        (study, out)
    } else {
        let Some(study) = a.study.clone() else {
            return Err(InputError::new("give a study file, or --example to run the built-in example").into());
        };
        let out = a.out.clone().unwrap_or_else(|| {
            PathBuf::from("reports")
                .join(study.file_stem().map_or("evaluation".into(), |s| s.to_string_lossy().to_string()))
        });
        (study, out)
    };
    let evaluation = evaluate(&study_path, &progress)?;
    let step = progress.step("writing results, tables, figures and report");
    crate::evaluate_report::write_outputs(&evaluation, &out)?;
    step.finish();
    progress.message(&format!("wrote {}", out.display()));
    Ok(())
}
