//! What [`crate::match_units`] returns: [`MatchResult`], plain serializable data from which reports are
//! rendered (and rebuilt from `results.json`), with its parts.
//!
//! Serialized field names and their order are part of the results file format: `n`, `propensity`,
//! `distance_label`, `matches`, `unmatched_treated`, `balance`, `notes`, then `units`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::balance::{self, BalanceRow};
use crate::propensity::{Link, PropensityFit};

/// A unit's id as the result holds it: shared, so that in a result built by [`crate::match_units`] the units,
/// their matched sets and the sets' lists name a unit without a copy of its id each (a national table has
/// hundreds of thousands). Serialized as a string; a result read back from JSON holds one copy per mention.
pub type Id = Arc<str>;

/// Everything a matching run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchResult {
    /// Sample sizes.
    pub n: MatchSampleSizes,
    /// The propensity model, unless the distance came from a column.
    pub propensity: Option<PropensitySummary>,
    /// What the distance is (`Propensity score`, `Linear predictor of the propensity model`, or
    /// ``Distance (`column`)``).
    pub distance_label: String,
    /// Matched sets, in the treated units' input order.
    pub matches: Vec<MatchedSetIds>,
    /// Treated units not discarded but left without a match, by id.
    pub unmatched_treated: Vec<Id>,
    /// Balance before and after, the distance first.
    pub balance: BalancePair,
    /// Diagnostics worth a reader's attention.
    pub notes: Vec<String>,
    /// Every unit used (complete cases, in input order) with its distance and weight (absent from results
    /// files written before it was recorded).
    #[serde(default)]
    pub units: Vec<Unit>,
}

/// Sample sizes of a matching run (schools, or whatever the units are), as in MatchIt's `nn` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchSampleSizes {
    /// Treated units in the data.
    pub all_treated: usize,
    /// Control units in the data.
    pub all_control: usize,
    /// Treated units with at least one match.
    pub matched_treated: usize,
    /// Distinct controls matched.
    pub matched_control: usize,
    /// Treated units not discarded but left without a match.
    pub unmatched_treated: usize,
    /// Controls not discarded and not matched.
    pub unmatched_control: usize,
    /// Treated units discarded for lack of common support.
    pub discarded_treated: usize,
    /// Controls discarded.
    pub discarded_control: usize,
    /// Effective sample size of the matched treated units, (Σw)²/Σw² ([`balance::ess`]).
    pub ess_treated: f64,
    /// Effective sample size of the matched controls.
    pub ess_control: f64,
}

/// The sizes of a balance table computed with the matching weights and the discarded units.
impl From<&balance::SampleSizes> for MatchSampleSizes {
    fn from(n: &balance::SampleSizes) -> Self {
        MatchSampleSizes {
            all_treated: n.treated.all,
            all_control: n.control.all,
            matched_treated: n.treated.matched,
            matched_control: n.control.matched,
            unmatched_treated: n.treated.unmatched,
            unmatched_control: n.control.unmatched,
            discarded_treated: n.treated.discarded,
            discarded_control: n.control.discarded,
            ess_treated: n.treated.matched_ess,
            ess_control: n.control.matched_ess,
        }
    }
}

/// Balance before and after matching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalancePair {
    /// Full sample (weights 1).
    pub before: Vec<BalanceRow>,
    /// Matched sample (matching weights).
    pub after: Vec<BalanceRow>,
}

/// A unit of the matching problem with its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// The unit's id.
    pub id: Id,
    /// Treated.
    pub treated: bool,
    /// Matching distance.
    pub distance: f64,
    /// Matching weight (0 = not matched).
    pub weight: f64,
    /// Matched set: the treated unit's id (without replacement; `None` with replacement or unmatched).
    pub subclass: Option<Id>,
    /// Discarded for lack of common support.
    pub discarded: bool,
}

/// A matched set by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchedSetIds {
    /// Treated unit's id.
    pub treated: Id,
    /// Control ids (in MatchIt's match-matrix order).
    pub controls: Vec<Id>,
}

/// The propensity model of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropensitySummary {
    /// The formula.
    pub formula: String,
    /// The link (`logit` or `probit`; the same as `fit.link`, kept as its own field of the results file).
    pub link_name: Link,
    /// The fit (coefficients with SEs, deviance, iterations, warnings), its fields inline.
    #[serde(flatten)]
    pub fit: PropensityFit,
}

impl std::ops::Deref for PropensitySummary {
    type Target = PropensityFit;
    fn deref(&self) -> &PropensityFit {
        &self.fit
    }
}
