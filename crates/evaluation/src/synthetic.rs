//! The synthetic population of `psmeval_synth` as the school and pupil [`Table`]s an evaluation reads, in
//! memory: the same columns, names and values as the CSV files `psmeval simulate` writes.

use psmeval_frame::{Column, Table, TableError};
use psmeval_synth::Population;

fn ints(v: &[i64]) -> Column {
    Column::Numeric(v.iter().map(|&x| x as f64).collect())
}

/// The school table (one row per school) and the pupil table (one row per pupil and assessment).
pub fn population_tables(pop: &Population) -> Result<(Table, Table), TableError> {
    let s = &pop.schools;
    let schools = Table::new()
        .with("school_id", ints(&s.school_id))?
        .with("la", ints(&s.la))?
        .with("region", ints(&s.region))?
        .with("urban", ints(&s.urban))?
        .with("n_pupils", ints(&s.n_pupils))?
        .with("pct_fsm", Column::Numeric(s.pct_fsm.clone()))?
        .with("pct_eal", Column::Numeric(s.pct_eal.clone()))?
        .with("pct_sen", Column::Numeric(s.pct_sen.clone()))?
        .with("idaci", Column::Numeric(s.idaci.clone()))?
        .with("prior_attainment", Column::Numeric(s.prior_attainment.clone()))?
        .with("ofsted", ints(&s.ofsted))?
        .with("lead", ints(&s.lead))?;
    let p = &pop.pupils;
    let pupils = Table::new()
        .with("pupil_id", ints(&p.pupil_id))?
        .with("school_id", ints(&p.school_id))?
        .with("year", ints(&p.year))?
        .with("key_stage", ints(&p.key_stage))?
        .with("female", ints(&p.female))?
        .with("fsm", ints(&p.fsm))?
        .with("eal", ints(&p.eal))?
        .with("sen", ints(&p.sen))?
        .with("prior", Column::Numeric(p.prior.clone()))?
        .with("maths", Column::Numeric(p.maths.clone()))?
        .with("expected", ints(&p.expected))?;
    Ok((schools, pupils))
}
