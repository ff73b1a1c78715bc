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
//!
//! ```
//! use psmeval_frame::{Column, Table, build_model_frame, parse_formula};
//!
//! let table = Table::new()
//!     .with("maths", Column::Numeric(vec![98.0, 103.0, 101.0, 95.0, 110.0, 104.0]))?
//!     .with("fsm", Column::Numeric(vec![1.0, 0.0, 0.0, 1.0, 0.0, f64::NAN]))?
//!     .with("region", Column::Text(["a", "b", "b", "a", "c", "c"].map(|s| Some(s.to_string())).to_vec()))?
//!     .with("school", Column::Text(["s1", "s1", "s2", "s2", "s3", "s3"].map(|s| Some(s.to_string())).to_vec()))?;
//! let formula = parse_formula("maths ~ fsm + factor(region) + (1 | school)")?;
//! let frame = build_model_frame(&formula, &table)?;
//! // R's treatment contrasts and column names; the row with a missing `fsm` is dropped and counted.
//! assert_eq!(frame.x_names, ["(Intercept)", "fsm", "factor(region)b", "factor(region)c"]);
//! assert_eq!((frame.y.len(), frame.n_dropped), (5, 1));
//! assert_eq!(frame.random[0].levels, ["s1", "s2", "s3"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod design;
pub mod formula;
pub mod table;

pub use design::{Coding, FrameError, ModelFrame, RandomTerm, binomial_counts, build_model_frame, covariate_matrix};
pub use formula::{Formula, FormulaError, MAX_FORMULA_CHARS, MAX_NESTING, MAX_TERMS, parse_formula};
pub use table::{Column, RowFilter, Table, TableError};
