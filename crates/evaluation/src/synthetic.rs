//! The synthetic population of `psmeval_synth` as the school and pupil [`Table`]s an evaluation reads, in
//! memory: the same columns, names and values as the CSV files `psmeval simulate` writes.

use psmeval_frame::{Column, Table, TableError};
use psmeval_synth::Population;
use rayon::prelude::*;

/// A population column, borrowed: integers (as `f64` in the table) or numbers.
enum Source<'a> {
    Ints(&'a [i64]),
    Numbers(&'a [f64]),
}

/// The table of `columns`, each converted on its own (in parallel: the pupil table's columns are millions of
/// rows each).
fn table_of(columns: Vec<(&str, Source<'_>)>) -> Result<Table, TableError> {
    let converted: Vec<(&str, Column)> = columns
        .into_par_iter()
        .map(|(name, source)| {
            let column = match source {
                Source::Ints(v) => Column::Numeric(v.iter().map(|&x| x as f64).collect()),
                Source::Numbers(v) => Column::Numeric(v.to_vec()),
            };
            (name, column)
        })
        .collect();
    converted.into_iter().try_fold(Table::new(), |table, (name, column)| table.with(name, column))
}

/// The school table (one row per school) and the pupil table (one row per pupil and assessment).
pub fn population_tables(pop: &Population) -> Result<(Table, Table), TableError> {
    use Source::{Ints, Numbers};
    let s = &pop.schools;
    let schools = table_of(vec![
        ("school_id", Ints(&s.school_id)),
        ("la", Ints(&s.la)),
        ("region", Ints(&s.region)),
        ("urban", Ints(&s.urban)),
        ("n_pupils", Ints(&s.n_pupils)),
        ("pct_fsm", Numbers(&s.pct_fsm)),
        ("pct_eal", Numbers(&s.pct_eal)),
        ("pct_sen", Numbers(&s.pct_sen)),
        ("idaci", Numbers(&s.idaci)),
        ("prior_attainment", Numbers(&s.prior_attainment)),
        ("ofsted", Ints(&s.ofsted)),
        ("lead", Ints(&s.lead)),
    ])?;
    let p = &pop.pupils;
    let pupils = table_of(vec![
        ("pupil_id", Ints(&p.pupil_id)),
        ("school_id", Ints(&p.school_id)),
        ("year", Ints(&p.year)),
        ("key_stage", Ints(&p.key_stage)),
        ("female", Ints(&p.female)),
        ("fsm", Ints(&p.fsm)),
        ("eal", Ints(&p.eal)),
        ("sen", Ints(&p.sen)),
        ("prior", Numbers(&p.prior)),
        ("maths", Numbers(&p.maths)),
        ("expected", Ints(&p.expected)),
    ])?;
    Ok((schools, pupils))
}
