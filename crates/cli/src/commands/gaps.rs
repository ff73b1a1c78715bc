//! `psmeval gaps`: attainment gaps by area (see [`psmeval_evaluation::gaps`]), written as `gaps.csv`,
//! `results.json`, a ranked figure and a report.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use psmeval_evaluation::gaps::gaps;
use psmeval_frame::RowFilter;

use crate::args::GapsArgs;
use crate::error::InputError;
use crate::progress::Progress;
use crate::table::{Outputs, check_output_dir, load_table};

/// Runs the command.
pub fn run(a: &GapsArgs) -> Result<()> {
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("out/gaps"));
    check_output_dir(&out)?;
    let progress = Progress::new(a.quiet);
    let step = progress.step("loading the tables");
    let (pupils, schools, source, mut filters) = match &a.pupils {
        Some(path) => {
            let schools = a.schools.as_ref().map(|p| load_table(p)).transpose()?;
            (load_table(path)?, schools, path.display().to_string(), Vec::new())
        }
        None => {
            let (pop, schools, pupils) = crate::population::example_tables()?;
            let last = pop.truth.config.last_year.to_string();
            let example = if a.filters.is_empty() {
                vec![
                    RowFilter { column: "year".into(), value: last },
                    RowFilter { column: "key_stage".into(), value: "2".into() },
                ]
            } else {
                Vec::new()
            };
            (pupils, Some(schools), "the example pupils".to_string(), example)
        }
    };
    filters.extend(a.filters.iter().cloned());
    let at = |e: String| InputError::new(format!("{source}: {e}"));
    let rows = pupils.filter_rows(&filters).map_err(|e| at(e.to_string()))?;
    let pupils = pupils.take_rows(&rows);
    let areas: Option<HashMap<String, String>> = match &schools {
        Some(s) if !pupils.has(&a.by) => {
            let ids = s.column(&a.school).map_err(|e| at(format!("school table: {e}")))?;
            let area = s.column(&a.by).map_err(|e| at(format!("school table: {e}")))?;
            Some((0..s.n_rows()).filter_map(|i| Some((ids.text_at(i)?, area.text_at(i)?))).collect())
        }
        _ => None,
    };
    step.finish();
    let step = progress.step("estimating the gaps");
    let gp = gaps(&pupils, &a.outcome, &a.group, &a.by, &a.school, areas.as_ref()).map_err(|e| at(e.to_string()))?;
    step.finish();
    let step = progress.step("writing the table, figure and report");
    let files = psmeval_report::render_gaps(&gp)?;
    let mut outputs = Outputs::new();
    for p in [&a.pupils, &a.schools].into_iter().flatten() {
        outputs.protect(p);
    }
    outputs.add_artifacts(&out, &files);
    outputs.add(out.join("results.json"), serde_json::to_string_pretty(&gp)? + "\n");
    outputs.commit()?;
    step.finish();
    progress.message(&format!("gaps in {} areas of `{}`; wrote {}", gp.areas.len(), gp.by, out.display()));
    Ok(())
}
