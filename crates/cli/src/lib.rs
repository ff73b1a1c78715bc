//! The `psmeval` command-line tool as a library: argument types, table loading and writing, and one module
//! per command. The binary (`main.rs`) only parses arguments and maps errors to exit codes; end-to-end tests
//! drive the binary, unit tests call these modules.

pub mod args;
pub mod effects;
pub mod error;
pub mod evaluate;
pub mod evaluate_report;
pub mod example;
pub mod impact;
pub mod lmm_cmd;
pub mod match_cmd;
pub mod matching;
pub mod plot;
pub mod progress;
pub mod report;
pub mod sample;
pub mod simulate;
pub mod study;
pub mod table;
