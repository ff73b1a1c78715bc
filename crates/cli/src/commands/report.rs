//! `psmeval report`: rebuilds an evaluation's report (tables, figures, report.md, report.html) from its
//! `results.json` alone, without refitting anything.

use std::path::PathBuf;

use anyhow::Result;
use psmeval_evaluation::Evaluation;

use crate::args::ReportArgs;
use crate::error::InputError;
use crate::table::{Outputs, check_output_dir};

/// Runs the command.
pub fn run(a: &ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.results)
        .map_err(|e| InputError::new(format!("{}: cannot read the results file: {e}", a.results.display())))?;
    let evaluation: Evaluation = serde_json::from_str(&text).map_err(|e| {
        InputError::new(format!("{}: not the results.json of `psmeval evaluate`: {e}", a.results.display()))
    })?;
    let out = a.out.clone().unwrap_or_else(|| {
        a.results
            .parent()
            .map_or_else(|| PathBuf::from("."), |p| if p.as_os_str().is_empty() { ".".into() } else { p.to_path_buf() })
    });
    check_output_dir(&out)?;
    let files = psmeval_report::render_evaluation(&evaluation)?;
    let mut outputs = Outputs::new();
    outputs.protect(&a.results);
    outputs.add_artifacts(&out, &files);
    outputs.commit()?;
    if !a.quiet {
        eprintln!("wrote the report of {} to {}", a.results.display(), out.display());
    }
    Ok(())
}
