//! `psmeval match`: propensity scores, matching and balance for one unit table, written as a matched-unit
//! table, a JSON summary, a balance table on stdout and optional figures.

use anyhow::Result;
use polars::prelude::{Column as PlColumn, DataFrame};
use psmeval_matching::{MatchResult, match_units};
use psmeval_report::matching::{love_plot, score_plot, summary_text};
use psmeval_report::plot;

use crate::args::MatchArgs;
use crate::error::InputError;
use crate::table::{
    Format, Outputs, check_output_file, dataframe_bytes, load_columns, require_binary, require_unique_ids,
};

/// Runs the command.
pub fn run(a: &MatchArgs) -> Result<()> {
    let out_format = Format::from_path(&a.out)?;
    for p in [&a.love_plot, &a.score_plot].into_iter().flatten() {
        match p.extension().and_then(|e| e.to_str()) {
            Some("svg" | "png") => {}
            _ => {
                return Err(InputError::new(format!("{}: figures are written as .svg or .png", p.display())).into());
            }
        }
    }
    let outputs_named: Vec<&std::path::Path> =
        [Some(&a.out), a.json.as_ref(), a.love_plot.as_ref(), a.score_plot.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| p.as_path())
            .collect();
    for (i, p) in outputs_named.iter().enumerate() {
        check_output_file(p, &[a.data.as_path()])?;
        if outputs_named[..i].iter().any(|q| q == p) {
            return Err(InputError::new(format!("{}: named for two outputs", p.display())).into());
        }
    }
    let formula =
        psmeval_frame::parse_formula(&a.spec.formula).map_err(|e| InputError::new(format!("--formula: {e}")))?;
    // Only the columns the matching uses are read.
    let spec = a.spec.spec();
    let mut used = formula.columns();
    used.push(a.id.clone());
    used.extend(spec.distance_column.iter().chain(&spec.exact).chain(&spec.mahvars).cloned());
    let table = load_columns(&a.data, &used)?;
    let treatment = formula.response.label();
    let treat = require_binary(&table, &treatment, &a.data)?;
    let ids = require_unique_ids(&table, &a.id, &a.data)?;
    let run = match_units(&spec, &table, &treat, &ids).map_err(|e| {
        let message = format!("{}: {e}", a.data.display());
        if e.is_internal() { anyhow::anyhow!(message) } else { InputError::new(message).into() }
    })?;
    // Render everything before writing anything, so a failure leaves no partial outputs.
    let mut df = matched_frame(&run)?;
    let json = a.json.as_ref().map(|_| serde_json::to_string_pretty(&run)).transpose()?.map(|j| j + "\n");
    let love = a.love_plot.as_ref().map(|p| figure(&love_plot(&run), p)).transpose()?;
    let scores = a.score_plot.as_ref().map(|p| figure(&score_plot(&run), p)).transpose()?;
    let mut outputs = Outputs::new();
    outputs.protect(&a.data);
    outputs.add(&a.out, dataframe_bytes(&mut df, out_format)?);
    if let (Some(p), Some(j)) = (&a.json, json) {
        outputs.add(p, j);
    }
    for (p, bytes) in [(&a.love_plot, love), (&a.score_plot, scores)] {
        if let (Some(p), Some(bytes)) = (p, bytes) {
            outputs.add(p, bytes);
        }
    }
    outputs.commit()?;
    print!("{}", summary_text(&run));
    Ok(())
}

/// A figure's bytes for `path`: SVG or PNG by its extension (checked above).
fn figure(fig: &impl plot::Figure, path: &std::path::Path) -> Result<Vec<u8>> {
    let name = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().to_string());
    Ok(match path.extension().and_then(|e| e.to_str()) {
        Some("png") => plot::png(fig, &name)?,
        _ => plot::svg(fig, &name)?.into_bytes(),
    })
}

/// The matched-unit table: one row per unit kept (weight > 0).
pub fn matched_frame(run: &MatchResult) -> Result<DataFrame> {
    let kept: Vec<&psmeval_matching::Unit> = run.units.iter().filter(|u| u.weight > 0.0).collect();
    Ok(DataFrame::new_infer_height(vec![
        PlColumn::new("id".into(), kept.iter().map(|u| &*u.id).collect::<Vec<_>>()),
        PlColumn::new("treated".into(), kept.iter().map(|u| i64::from(u.treated)).collect::<Vec<_>>()),
        PlColumn::new("distance".into(), kept.iter().map(|u| u.distance).collect::<Vec<_>>()),
        PlColumn::new("weight".into(), kept.iter().map(|u| u.weight).collect::<Vec<_>>()),
        PlColumn::new("subclass".into(), kept.iter().map(|u| u.subclass.as_deref()).collect::<Vec<_>>()),
    ])?)
}
