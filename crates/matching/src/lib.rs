//! Propensity scores, matching and balance diagnostics with MatchIt's semantics.
//!
//! One entry point, in the spirit of MatchIt's `matchit()`: [`match_units`] takes a [`MatchSpec`] (the
//! formula of the propensity model or a distance column, the method and its options) and a table of units,
//! and returns a [`MatchResult`] (sample sizes, propensity model, matched sets, balance before and after,
//! every unit with its weight, notes), plain data that serializes to a results file and back.
//!
//! ```
//! use psmeval_frame::{Column, Table};
//! use psmeval_matching::{MatchSpec, match_units};
//!
//! // Ten schools, three of them in the programme.
//! let treated = [false, false, true, false, false, true, false, true, false, false];
//! let fsm = vec![12.0, 30.0, 25.0, 8.0, 19.0, 33.0, 27.0, 41.0, 15.0, 36.0];
//! let table = Table::new()
//!     .with("lead", Column::Numeric(treated.iter().map(|&t| f64::from(u8::from(t))).collect()))?
//!     .with("pct_fsm", Column::Numeric(fsm))?;
//! let ids: Vec<String> = (1..=10).map(|i| format!("school-{i}")).collect();
//!
//! let spec = MatchSpec::new("lead ~ pct_fsm"); // 1:1 nearest neighbour on a logistic score
//! let result = match_units(&spec, &table, &treated, &ids)?;
//! assert_eq!((result.n.all_treated, result.n.all_control), (3, 7));
//! assert_eq!((result.n.matched_treated, result.n.matched_control), (3, 3));
//! assert_eq!(result.matches.len(), 3);
//! assert_eq!(result.balance.after[0].term, "distance");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The steps are modules of their own, usable directly:
//! - [`propensity`]: binomial GLM (logit/probit) fitted exactly as R's `glm` does, giving the distance;
//! - [`support`]: common-support discarding (`discard = "treated" | "control" | "both"`);
//! - [`distance`]: Mahalanobis distances for `mahvars`;
//! - [`nearest`]: greedy nearest-neighbour matching (MatchIt 4.7 rules) in O(n log n);
//! - [`optimal`]: optimal pair and k:1 matching (minimum total distance);
//! - [`matches`](mod@matches): the common result of every method (matched sets, subclasses, weights) and its invariants;
//! - [`balance`]: standardized mean differences, variance ratios and eCDF statistics before and after;
//! - [`families`](mod@families): every school's family of the k most similar schools on intake variables.
//!
//! [`spec`], [`result`] and [`error`] hold the entry point's input, output and errors. The crate computes
//! only: no I/O, no printing.

#![deny(missing_docs)]

pub mod balance;
pub mod distance;
pub mod error;
pub mod families;
pub mod matches;
mod nan;
pub mod nearest;
pub mod optimal;
pub mod propensity;
pub mod result;
mod run;
pub mod spec;
pub mod support;
mod validate;

pub use error::{MatchError, MethodError, SpecField};
pub use nearest::Order;
pub use result::{BalancePair, Id, MatchResult, MatchSampleSizes, MatchedSetIds, PropensitySummary, Unit};
pub use run::match_units;
pub use spec::{CommonSupport, DistanceLink, MatchSpec, Method};
