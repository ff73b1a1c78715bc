//! Writing a synthetic population ([`psmeval_synth::Population`]) as tables plus `truth.json`, shared by
//! `psmeval simulate` and the built-in example.

use std::path::Path;

use anyhow::Result;
use polars::prelude::{Column as PlColumn, DataFrame, NamedFromOwned, NumericNative, Series};
use psmeval_synth::{Population, Pupils, Schools};

use crate::table::{Format, Outputs, dataframe_bytes};

/// A polars column that takes `values` over without a copy.
fn owned<T: NumericNative>(name: &str, values: Vec<T>) -> PlColumn
where
    Series: NamedFromOwned<Vec<T>>,
{
    Series::from_vec(name.into(), values).into()
}

/// The school table as a polars frame (the columns moved, not copied).
pub fn schools_frame(s: Schools) -> Result<DataFrame> {
    Ok(DataFrame::new_infer_height(vec![
        owned("school_id", s.school_id),
        owned("la", s.la),
        owned("region", s.region),
        owned("urban", s.urban),
        owned("n_pupils", s.n_pupils),
        owned("pct_fsm", s.pct_fsm),
        owned("pct_eal", s.pct_eal),
        owned("pct_sen", s.pct_sen),
        owned("idaci", s.idaci),
        owned("prior_attainment", s.prior_attainment),
        owned("ofsted", s.ofsted),
        owned("lead", s.lead),
    ])?)
}

/// The pupil table as a polars frame (the columns moved, not copied: the national one is 6 million rows).
pub fn pupils_frame(p: Pupils) -> Result<DataFrame> {
    Ok(DataFrame::new_infer_height(vec![
        owned("pupil_id", p.pupil_id),
        owned("school_id", p.school_id),
        owned("year", p.year),
        owned("key_stage", p.key_stage),
        owned("female", p.female),
        owned("fsm", p.fsm),
        owned("eal", p.eal),
        owned("sen", p.sen),
        owned("prior", p.prior),
        owned("maths", p.maths),
        owned("expected", p.expected),
    ])?)
}

/// Writes `schools.<ext>`, `pupils.<ext>` and `truth.json` under `dir`.
pub fn write_population(pop: Population, dir: &Path, format: Format) -> Result<()> {
    population_outputs(pop, dir, format)?.commit()
}

/// `schools.<ext>`, `pupils.<ext>` and `truth.json` under `dir`, rendered and not yet written; the population
/// is consumed, its columns handed to polars as they are.
pub fn population_outputs(pop: Population, dir: &Path, format: Format) -> Result<Outputs> {
    let ext = format.extension();
    let mut outputs = Outputs::new();
    let Population { schools, pupils, truth } = pop;
    outputs.add(dir.join(format!("schools.{ext}")), dataframe_bytes(&mut schools_frame(schools)?, format)?);
    outputs.add(dir.join(format!("pupils.{ext}")), dataframe_bytes(&mut pupils_frame(pupils)?, format)?);
    outputs.add(dir.join("truth.json"), serde_json::to_string_pretty(&truth)? + "\n");
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
