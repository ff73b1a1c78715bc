//! `psmeval evaluate`: a whole evaluation from one study file (or the built-in example). Reads the study
//! and its tables, hashes the inputs, runs [`psmeval_evaluation::evaluate`], and writes `results.json` and
//! the report rendered by [`psmeval_report::render_evaluation`]. Everything is rendered in memory before the
//! first file is written, so an evaluation that fails writes nothing. The built-in example writes its data
//! and study file on a thread of its own while the same tables are evaluated in memory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use psmeval_evaluation::{Evaluation, EvaluationError, InputFile, Plan, PlanError, Study, evaluate};
use sha2::{Digest, Sha256};

use crate::args::EvaluateArgs;
use crate::error::InputError;
use crate::progress::Progress;
use crate::table::{Outputs, check_output_dir, load_table};

/// Runs `psmeval evaluate` from its arguments and writes every output.
pub fn run(a: &EvaluateArgs) -> Result<()> {
    let progress = Progress::new(a.quiet);
    let (study_path, out, evaluation) = if a.example {
        let out = a.out.clone().unwrap_or_else(|| PathBuf::from("out/example"));
        check_output_dir(&out)?;
        let (study_path, evaluation) = run_example(a, &out, &progress)?;
        (study_path, out, evaluation)
    } else {
        let Some(study) = a.study.clone() else {
            return Err(InputError::new("give a study file, or --example to run the built-in example").into());
        };
        let out = a.out.clone().unwrap_or_else(|| {
            PathBuf::from("out")
                .join(study.file_stem().map_or("evaluation".into(), |s| s.to_string_lossy().to_string()))
        });
        check_output_dir(&out)?;
        let evaluation = run_study(&study, &progress)?;
        (study, out, evaluation)
    };
    let step = progress.step("rendering tables, figures and report");
    let files = psmeval_report::render_evaluation(&evaluation)?;
    let results = serde_json::to_string_pretty(&evaluation)? + "\n";
    step.finish();
    let step = progress.step("writing results, tables, figures and report");
    let mut outputs = Outputs::new();
    outputs.protect(&study_path);
    for input in &evaluation.inputs {
        outputs.protect(&study_path.parent().unwrap_or(Path::new("")).join(&input.path));
    }
    outputs.add_artifacts(&out, &files);
    outputs.add(out.join("results.json"), results);
    outputs.commit()?;
    step.finish();
    progress.message(&format!("wrote {}", out.display()));
    Ok(())
}

/// The built-in example: simulates the population, then writes it with the study file (`out/data/`,
/// `out/study.toml`) while the same tables are evaluated in memory. The written CSV files hold every value
/// exactly (shortest round-trip text), so this is the evaluation of the written study, without reading the
/// data back (a test compares the two `results.json`). Returns the study file's path and the evaluation.
fn run_example(a: &EvaluateArgs, out: &Path, progress: &Progress) -> Result<(PathBuf, Evaluation)> {
    let cfg = crate::example::config(a);
    let step = progress.step("simulating the example population");
    let pop = psmeval_synth::simulate(&cfg).map_err(crate::error::input("invalid simulation parameters"))?;
    step.finish();
    let text = crate::example::study_text(&cfg);
    let study_path = out.join("study.toml");
    let plan = Plan::new(Study::from_toml(&text)?)?;
    let (schools_path, pupils_path) = table_paths(&study_path, &plan.study);
    progress.message("writing the example data and study file while the evaluation runs");
    // The writer has a thread of its own: on a worker of the pool that the evaluation uses, it would wait for
    // the evaluation's tasks that worker takes up while polars formats the CSV.
    // The evaluation's tables are built first; the population then goes to the writer, which hands its columns
    // to polars without a copy.
    let tables = psmeval_evaluation::population_tables(&pop);
    let (written, evaluation) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| crate::example::write_example(out, &cfg, pop));
        let evaluation = (|| -> Result<Evaluation> {
            let (schools, pupils) = tables?;
            let input = |path: &Path, rows: usize| InputFile {
                path: display_relative(path, &study_path),
                sha256: String::new(),
                rows,
            };
            let inputs = vec![input(&schools_path, schools.n_rows()), input(&pupils_path, pupils.n_rows())];
            let observer = progress.observer();
            evaluate(&plan, &schools, &pupils, inputs, text.clone(), &|p| observer.observe(p))
                .map_err(|e| evaluation_error(&e, &study_path, &schools_path))
        })();
        let written = writer.join().unwrap_or_else(|_| Err(anyhow::anyhow!("writing the example data failed")));
        (written, evaluation)
    });
    let written = written?;
    let mut evaluation = evaluation?;
    for (input, sha256) in evaluation.inputs.iter_mut().zip([written.schools_sha256, written.pupils_sha256]) {
        input.sha256 = sha256;
    }
    Ok((written.study, evaluation))
}

/// Reads, checks and evaluates the study at `study_path`.
pub fn run_study(study_path: &Path, progress: &Progress) -> Result<Evaluation> {
    let text = std::fs::read_to_string(study_path)
        .map_err(|e| InputError::new(format!("{}: cannot read the study file: {e}", study_path.display())))?;
    let at_study = |e: PlanError| -> anyhow::Error {
        match e {
            PlanError::Invalid(_) => InputError::new(format!("{}:\n  {e}", study_path.display())).into(),
            _ => InputError::new(format!("{}: {e}", study_path.display())).into(),
        }
    };
    let mut study = Study::from_toml(&text).map_err(at_study)?;
    // Tables are read relative to the study file; results.json shows their paths as the study gives them,
    // so the same study gives the same bytes wherever it is run from.
    let (schools_path, pupils_path) = table_paths(study_path, &study);
    study.data.schools = PathBuf::from(display_relative(&schools_path, study_path));
    study.data.pupils = PathBuf::from(display_relative(&pupils_path, study_path));
    let plan = Plan::new(study).map_err(at_study)?;

    let step = progress.step("loading tables");
    let schools = load_table(&schools_path)?;
    let pupils = load_table(&pupils_path)?;
    step.finish();
    let inputs = vec![
        InputFile {
            path: display_relative(&schools_path, study_path),
            sha256: sha256(&schools_path)?,
            rows: schools.n_rows(),
        },
        InputFile {
            path: display_relative(&pupils_path, study_path),
            sha256: sha256(&pupils_path)?,
            rows: pupils.n_rows(),
        },
    ];
    let observer = progress.observer();
    evaluate(&plan, &schools, &pupils, inputs, text, &|p| observer.observe(p))
        .map_err(|e| evaluation_error(&e, study_path, &schools_path))
}

/// The study's table paths, resolved against the study file's folder.
pub fn table_paths(study_path: &Path, study: &Study) -> (PathBuf, PathBuf) {
    let base = study_path.parent().unwrap_or(Path::new(""));
    let resolve = |p: &Path| if p.is_relative() { base.join(p) } else { p.to_path_buf() };
    (resolve(&study.data.schools), resolve(&study.data.pupils))
}

/// An evaluation error as the CLI reports it: plan problems under the study file, school-table problems
/// under the school file, an input error (exit 2) unless psmeval itself failed.
pub fn evaluation_error(e: &EvaluationError, study_path: &Path, schools_path: &Path) -> anyhow::Error {
    let input = e.is_input_error();
    let message = match e {
        EvaluationError::Plan(p) => format!("{}:\n  {p}", study_path.display()),
        EvaluationError::Schools(_) | EvaluationError::Matching(_) => {
            format!("{}: {}", schools_path.display(), strip_table_prefix(e))
        }
        _ => e.to_string(),
    };
    if input { InputError::new(message).into() } else { anyhow::anyhow!(message) }
}

/// The message of a school-table error without the library's generic "the school table: " prefix (the path
/// says which table).
fn strip_table_prefix(e: &EvaluationError) -> String {
    let s = e.to_string();
    s.strip_prefix("the school table: ").map(str::to_string).unwrap_or(s)
}

fn sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn display_relative(path: &Path, study_path: &Path) -> String {
    let base = study_path.parent().unwrap_or(Path::new(""));
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}
