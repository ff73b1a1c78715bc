//! Propensity scores, matching and balance diagnostics with MatchIt's semantics.
//!
//! - [`propensity`]: binomial GLM (logit/probit) fitted exactly as R's `glm` does, giving the distance;
//! - [`support`]: common-support discarding (`discard = "treated" | "control" | "both"`);
//! - [`distance`]: Mahalanobis distances for `mahvars`;
//! - [`nearest`]: greedy nearest-neighbour matching (MatchIt 4.7 rules) in O(n log n);
//! - [`optimal`]: optimal pair and k:1 matching (minimum total distance);
//! - [`matches`](mod@matches): the common result of every method (matched sets, subclasses, weights) and its invariants;
//! - [`balance`]: standardized mean differences, variance ratios and eCDF statistics before and after.
//!
//! The crate computes only: no I/O, no printing.

pub mod balance;
pub mod distance;
pub mod matches;
pub mod nearest;
pub mod optimal;
pub mod propensity;
pub mod support;
