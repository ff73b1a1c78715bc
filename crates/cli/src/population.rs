//! Writing a synthetic population ([`psmeval_synth::Population`]) as tables plus `truth.json`, shared by
//! `psmeval simulate` and the built-in example.

use std::path::Path;

use anyhow::Result;
use polars::prelude::{Column as PlColumn, DataFrame};
use psmeval_synth::Population;

use crate::table::{Format, Outputs, dataframe_bytes};

/// The school table as a polars frame.
pub fn schools_frame(pop: &Population) -> Result<DataFrame> {
    let s = &pop.schools;
    Ok(DataFrame::new_infer_height(vec![
        PlColumn::new("school_id".into(), &s.school_id),
        PlColumn::new("la".into(), &s.la),
        PlColumn::new("region".into(), &s.region),
        PlColumn::new("urban".into(), &s.urban),
        PlColumn::new("n_pupils".into(), &s.n_pupils),
        PlColumn::new("pct_fsm".into(), &s.pct_fsm),
        PlColumn::new("pct_eal".into(), &s.pct_eal),
        PlColumn::new("pct_sen".into(), &s.pct_sen),
        PlColumn::new("idaci".into(), &s.idaci),
        PlColumn::new("prior_attainment".into(), &s.prior_attainment),
        PlColumn::new("ofsted".into(), &s.ofsted),
        PlColumn::new("lead".into(), &s.lead),
    ])?)
}

/// The pupil table as a polars frame.
pub fn pupils_frame(pop: &Population) -> Result<DataFrame> {
    let p = &pop.pupils;
    Ok(DataFrame::new_infer_height(vec![
        PlColumn::new("pupil_id".into(), &p.pupil_id),
        PlColumn::new("school_id".into(), &p.school_id),
        PlColumn::new("year".into(), &p.year),
        PlColumn::new("key_stage".into(), &p.key_stage),
        PlColumn::new("female".into(), &p.female),
        PlColumn::new("fsm".into(), &p.fsm),
        PlColumn::new("eal".into(), &p.eal),
        PlColumn::new("sen".into(), &p.sen),
        PlColumn::new("prior".into(), &p.prior),
        PlColumn::new("maths".into(), &p.maths),
        PlColumn::new("expected".into(), &p.expected),
    ])?)
}

/// Writes `schools.<ext>`, `pupils.<ext>` and `truth.json` under `dir`.
pub fn write_population(pop: &Population, dir: &Path, format: Format) -> Result<()> {
    population_outputs(pop, dir, format)?.commit()
}

/// `schools.<ext>`, `pupils.<ext>` and `truth.json` under `dir`, rendered and not yet written.
pub fn population_outputs(pop: &Population, dir: &Path, format: Format) -> Result<Outputs> {
    let ext = format.extension();
    let mut outputs = Outputs::new();
    outputs.add(dir.join(format!("schools.{ext}")), dataframe_bytes(&mut schools_frame(pop)?, format)?);
    outputs.add(dir.join(format!("pupils.{ext}")), dataframe_bytes(&mut pupils_frame(pop)?, format)?);
    outputs.add(dir.join("truth.json"), serde_json::to_string_pretty(&pop.truth)? + "\n");
    Ok(outputs)
}

/// The built-in national synthetic population (`simulate`'s defaults) as school and pupil tables, for the
/// `--example` of the analyst commands.
pub fn example_tables() -> Result<(Population, psmeval_frame::Table, psmeval_frame::Table)> {
    let pop = psmeval_synth::simulate(&psmeval_synth::SimConfig::default())
        .map_err(|e| anyhow::anyhow!("simulating the example population: {e}"))?;
    let (schools, pupils) = psmeval_evaluation::population_tables(&pop)?;
    Ok((pop, schools, pupils))
}
