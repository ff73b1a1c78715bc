//! `psmeval`: propensity-score matched, multilevel evaluations of school programmes.
//!
//! The binary is glue: parse the arguments, run the command, print the error chain and exit with 0 (success),
//! 2 (usage or input error) or 1 (any other failure). Statistics live in the library crates.

use std::process::ExitCode;

use clap::Parser;
use psmeval::args::{Cli, Command};
use psmeval::commands;
use psmeval::error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(a) => commands::simulate::run(&a),
        Command::Match(a) => commands::r#match::run(&a),
        Command::Lmm(a) => commands::lmm::run(&a),
        Command::Evaluate(a) => commands::evaluate::run(&a),
        Command::Report(a) => commands::report::run(&a),
        Command::Power(a) => commands::power::run(&a),
        Command::Families(a) => commands::families::run(&a),
        Command::ValueAdded(a) => commands::value_added::run(&a),
        Command::Gaps(a) => commands::gaps::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(error::exit_code(&err) as u8)
        }
    }
}
