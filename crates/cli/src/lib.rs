//! The `psmeval` command-line tool as a library: argument types, reading and writing files, progress, and
//! one module per command. The statistics live in the library crates (`psmeval-matching`,
//! `psmeval-multilevel`, `psmeval-evaluation`) and the renderings in `psmeval-report`; this crate is glue.
//! The binary (`main.rs`) only parses arguments and maps errors to exit codes; end-to-end tests drive the
//! binary.

pub mod args;
pub mod commands;
pub mod error;
pub mod example;
pub mod population;
pub mod progress;
pub mod table;
