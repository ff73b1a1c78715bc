//! Model frames for psmeval.
//!
//! This crate turns R/lme4-style formulas and typed columns into the matrices the models need:
//! - [`table`]: a small column store ([`Table`], [`Column`]) that the CLI fills from CSV/Parquet;
//! - [`formula`]: the formula language (`y ~ a * factor(b) + (1 + x | g)`), parsed into terms;
//! - [`design`]: a [`ModelFrame`] — response, fixed-effects matrix `X` with R's column names, and
//!   random-effects terms (grouping factor codes plus per-term model matrices) — built from a formula and a
//!   table, with rows containing missing values dropped and counted.
//!
//! The crate does no I/O and no printing.

pub mod design;
pub mod formula;
pub mod table;

pub use design::{Coding, FrameError, ModelFrame, RandomTerm, binomial_counts, build_model_frame, covariate_matrix};
pub use formula::{Formula, FormulaError, parse_formula};
pub use table::{Column, Table, TableError};
