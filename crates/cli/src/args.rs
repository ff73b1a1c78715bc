//! Command-line arguments (clap derive). Each subcommand's options are documented here; `psmeval <command>
//! --help` prints them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::table::Format;

/// Propensity-score matched, multilevel evaluations of school programmes.
///
/// psmeval matches treatment schools to contrast schools on propensity scores (with MatchIt's rules), fits
/// multilevel models of pupils in schools (with lme4's numbers), and writes the tables and figures of an
/// evaluation report.
#[derive(Debug, Parser)]
#[command(name = "psmeval", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// psmeval's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a synthetic England-like primary-school population (schools, pupils, truth.json).
    Simulate(SimulateArgs),
}

/// Options of `psmeval simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Directory to write `schools.<ext>`, `pupils.<ext>` and `truth.json` into (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A named size: `national` (16,800 schools) or `small` (1,000 schools, for tests and quick looks).
    #[arg(long, value_enum, default_value_t = Preset::National)]
    pub preset: Preset,
    /// Number of schools (overrides the preset).
    #[arg(long, value_name = "N")]
    pub schools: Option<usize>,
    /// Number of lead (treated) schools.
    #[arg(long, value_name = "K", default_value_t = 47)]
    pub leads: usize,
    /// First academic year, as the year it ends in (2013 = 2012/13).
    #[arg(long, default_value_t = 2013)]
    pub first_year: i32,
    /// Last academic year (2017 = 2016/17).
    #[arg(long, default_value_t = 2017)]
    pub last_year: i32,
    /// First year in which the programme affects lead-school pupils.
    #[arg(long, default_value_t = 2015)]
    pub programme_start: i32,
    /// True programme effect in pupil-level SD units.
    #[arg(long, value_name = "D", default_value_t = 0.10, allow_negative_numbers = true)]
    pub effect: f64,
    /// Random seed; the same arguments and seed give byte-identical files.
    #[arg(long, value_name = "S", default_value_t = 20_130_901)]
    pub seed: u64,
    /// Output format of the tables.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
}

/// Population sizes for `simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// About 16,800 schools and 600,000 pupils per year group.
    National,
    /// 1,000 schools.
    Small,
}
