//! `psmeval simulate`: writes a synthetic population (see `psmeval_synth`) as tables plus `truth.json`.

use anyhow::Result;
use psmeval_synth::{SimConfig, simulate};

use crate::args::{Preset, SimulateArgs};
use crate::error::input;
use crate::population::write_population;

/// The simulation configuration the arguments describe.
pub fn config(a: &SimulateArgs) -> SimConfig {
    let base = match a.preset {
        Preset::National => SimConfig::default(),
        Preset::Small => SimConfig::small(),
    };
    SimConfig {
        schools: a.schools.unwrap_or(base.schools),
        leads: a.leads,
        first_year: a.first_year,
        last_year: a.last_year,
        programme_start: a.programme_start,
        effect: a.effect,
        cohort_sd: a.cohort_sd,
        pretrend: a.pretrend,
        effect_sd: a.effect_sd,
        school_sd: a.school_sd,
        slope_sd: a.slope_sd,
        pupil_sd: a.pupil_sd,
        seed: a.seed,
        ..base
    }
}

/// Runs the command.
pub fn run(a: &SimulateArgs) -> Result<()> {
    let cfg = config(a);
    crate::table::check_output_dir(&a.out)?;
    let pop = simulate(&cfg).map_err(input("invalid simulation parameters"))?;
    let (schools, lead, pupils) = (pop.schools.school_id.len(), pop.schools.lead.iter().sum::<i64>(), pop.pupils.len());
    write_population(pop, &a.out, a.format)?;
    eprintln!("wrote {schools} schools ({lead} lead) and {pupils} pupil rows to {}", a.out.display());
    Ok(())
}
