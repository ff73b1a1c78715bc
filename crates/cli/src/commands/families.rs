//! `psmeval families`: every school's family of the k most similar schools (see
//! [`psmeval_matching::families`]), written as `families.csv`, `summary.csv`, `summary.json` and a report.

use std::path::PathBuf;

use anyhow::Result;
use psmeval_matching::families::{FamilyMetric, families};

use crate::args::{FamiliesArgs, MetricArg};
use crate::error::InputError;
use crate::progress::Progress;
use crate::table::{Outputs, check_output_dir, load_table};

/// Runs the command.
pub fn run(a: &FamiliesArgs) -> Result<()> {
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("out/families"));
    check_output_dir(&out)?;
    let progress = Progress::new(a.quiet);
    let step = progress.step("loading the schools");
    let (table, source) = match &a.schools {
        Some(path) => (load_table(path)?, path.display().to_string()),
        None => {
            let (_, schools, _) = crate::population::example_tables()?;
            (schools, "the example schools".to_string())
        }
    };
    let metric = match a.metric {
        MetricArg::Mahalanobis => FamilyMetric::Mahalanobis,
        MetricArg::Standardized => FamilyMetric::Standardized,
        MetricArg::Propensity => FamilyMetric::Propensity,
    };
    if a.treat.is_some() && metric != FamilyMetric::Propensity {
        return Err(
            InputError::new("--treat is the 0/1 column of the propensity metric: add --metric propensity").into()
        );
    }
    step.finish();
    let step = progress.step("finding the families");
    let fams = families(&table, &a.id, &a.vars, a.within.as_deref(), a.k, metric, a.treat.as_deref())
        .map_err(|e| InputError::new(format!("{source}: {e}")))?;
    if let Some(id) = &a.school
        && !fams.families.iter().any(|f| f.id == *id)
    {
        return Err(InputError::new(format!("--school: no school with id `{id}` in {source}")).into());
    }
    step.finish();
    let step = progress.step("writing families, summaries and report");
    let files = psmeval_report::render_families(&fams, a.school.as_deref())?;
    let mut summary = serde_json::to_value(&fams)?;
    // The JSON summary leaves the members to families.csv (16,800 x k rows at national scale).
    if let Some(list) = summary.get_mut("families").and_then(|v| v.as_array_mut()) {
        for f in list {
            if let Some(obj) = f.as_object_mut() {
                obj.remove("members");
            }
        }
    }
    let mut outputs = Outputs::new();
    if let Some(p) = &a.schools {
        outputs.protect(p);
    }
    outputs.add_artifacts(&out, &files);
    outputs.add(out.join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n");
    outputs.commit()?;
    step.finish();
    progress.message(&format!(
        "wrote the families of {} schools (k = {}) to {}",
        fams.n_schools,
        fams.k,
        out.display()
    ));
    Ok(())
}
