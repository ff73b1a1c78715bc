//! The common result of every matching method: matched sets, subclasses, ATT weights and their invariants.
//!
//! Weights follow MatchIt 4.7 for the ATT: without replacement they come from the subclasses
//! (`get_weights_from_subclass`: treated 1, each control `n_treated / n_controls` of its subclass); with
//! replacement from the match matrix (`weights_matrixC`: each control accumulates `1 / k_t` over the treated
//! units `t` it serves, where `k_t` is that unit's number of matches). Then, as `matchit(normalize = TRUE)`,
//! the nonzero weights of each group are rescaled to average 1 (`.make_sum_to_n`).

use ndarray::ArrayView2;
use serde::Serialize;
use thiserror::Error;

/// The inputs of a matching problem, shared by [`crate::nearest`], [`crate::optimal`] and [`Matches::check`].
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    /// The distance measure of each unit (propensity score or its logit); must be finite.
    pub distance: &'a [f64],
    /// Treatment indicator of each unit (`true` = treated, the focal group of the ATT).
    pub treat: &'a [bool],
    /// Exact-matching cell of each unit (e.g. the code of the combination of the `exact` variables): units
    /// in different cells are never matched. `None`: no exact matching.
    pub exact: Option<&'a [u32]>,
    /// Covariates for Mahalanobis matching (`mahvars`), one row per unit. When given, matching uses the
    /// Mahalanobis distance on these columns and the caliper still applies to [`Problem::distance`].
    pub mahvars: Option<ArrayView2<'a, f64>>,
}

impl<'a> Problem<'a> {
    /// A problem with a distance and a treatment only.
    pub fn new(distance: &'a [f64], treat: &'a [bool]) -> Self {
        Self { distance, treat, exact: None, mahvars: None }
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.treat.len()
    }

    /// Whether there are no units.
    pub fn is_empty(&self) -> bool {
        self.treat.is_empty()
    }
}

/// One treated unit and its matched controls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedSet {
    /// Index (0-based, in the input order) of the treated unit.
    pub treated: usize,
    /// Indices of its controls, in MatchIt's `match.matrix` column order: without replacement the order in
    /// which they were matched (first round first); with replacement nearest first.
    pub controls: Vec<usize>,
}

/// The result of a matching method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matches {
    /// Matched sets, one per treated unit with at least one control, in the treated units' input order
    /// (so set `s` is MatchIt's subclass `s + 1`).
    pub sets: Vec<MatchedSet>,
    /// Treated units that were not discarded but received no control (caliper, exact cells, or controls
    /// used up), in input order. Never dropped silently.
    pub unmatched_treated: Vec<usize>,
    /// Treated units that received at least one but fewer than `ratio` controls, in input order.
    pub short_treated: Vec<usize>,
    /// Units discarded by the common-support rule (they can never be matched).
    pub discarded: Vec<bool>,
    /// Matching weights (ATT, normalized so the nonzero weights of each group average 1); 0 = unmatched.
    pub weights: Vec<f64>,
    /// Subclass (index into [`Matches::sets`]) of each matched unit; all `None` when matching with
    /// replacement (MatchIt returns no subclass then).
    pub subclass: Vec<Option<usize>>,
    /// Whether controls could be reused.
    pub replace: bool,
    /// Controls requested per treated unit.
    pub ratio: usize,
    /// The caliper actually applied, in units of the distance (after multiplying by the SD), if any.
    pub caliper_width: Option<f64>,
    /// Whether fewer controls were available than `ratio` times the treated units (MatchIt's warning
    /// "not all treated units will get `ratio` matches"; computed over the whole sample, or per exact cell).
    pub controls_short: bool,
}

impl Matches {
    /// Builds the result from the matched sets, computing subclasses, weights and the unmatched lists.
    pub fn from_sets(
        problem: &Problem<'_>,
        mut sets: Vec<MatchedSet>,
        discarded: Vec<bool>,
        replace: bool,
        ratio: usize,
        caliper_width: Option<f64>,
        controls_short: bool,
    ) -> Self {
        let n = problem.len();
        sets.retain(|s| !s.controls.is_empty());
        sets.sort_by_key(|s| s.treated);
        let mut has_set = vec![false; n];
        for s in &sets {
            has_set[s.treated] = true;
        }
        let unmatched_treated =
            (0..n).filter(|&i| problem.treat[i] && !discarded[i] && !has_set[i]).collect::<Vec<_>>();
        let short_treated = sets.iter().filter(|s| s.controls.len() < ratio).map(|s| s.treated).collect();
        let mut subclass = vec![None; n];
        if !replace {
            for (k, s) in sets.iter().enumerate() {
                subclass[s.treated] = Some(k);
                for &c in &s.controls {
                    subclass[c] = Some(k);
                }
            }
        }
        let weights = att_weights(problem.treat, &sets);
        Self {
            sets,
            unmatched_treated,
            short_treated,
            discarded,
            weights,
            subclass,
            replace,
            ratio,
            caliper_width,
            controls_short,
        }
    }

    /// Number of matched treated units.
    pub fn n_treated_matched(&self) -> usize {
        self.sets.len()
    }

    /// Number of distinct matched controls.
    pub fn n_controls_matched(&self, treat: &[bool]) -> usize {
        self.weights.iter().zip(treat).filter(|(w, t)| **w > 0.0 && !**t).count()
    }

    /// Total absolute distance difference over all matched pairs.
    pub fn total_distance(&self, distance: &[f64]) -> f64 {
        self.sets.iter().flat_map(|s| s.controls.iter().map(move |&c| (distance[s.treated] - distance[c]).abs())).sum()
    }

    /// Checks the invariants every matching result must satisfy on its problem: indices and groups valid, no
    /// discarded unit matched, no control reused without replacement, at most `ratio` controls per set,
    /// caliper and exact cells respected, the unmatched lists complete, subclasses and weights consistent
    /// with the sets (weights to a relative 1e-12).
    pub fn check(&self, problem: &Problem<'_>) -> Result<(), InvariantError> {
        let n = problem.len();
        for (what, len) in [
            ("discarded", self.discarded.len()),
            ("weights", self.weights.len()),
            ("subclass", self.subclass.len()),
            ("distance", problem.distance.len()),
        ] {
            if len != n {
                return Err(InvariantError::Length { what, len, expected: n });
            }
        }
        let mut uses = vec![0usize; n];
        let mut seen_treated = vec![false; n];
        let mut last_treated = None;
        for (k, s) in self.sets.iter().enumerate() {
            let t = s.treated;
            if t >= n || !problem.treat[t] {
                return Err(InvariantError::NotTreated { set: k, unit: t });
            }
            if last_treated.is_some_and(|p| p >= t) {
                return Err(InvariantError::SetOrder { set: k });
            }
            last_treated = Some(t);
            seen_treated[t] = true;
            if self.discarded[t] {
                return Err(InvariantError::DiscardedMatched { unit: t });
            }
            if s.controls.is_empty() || s.controls.len() > self.ratio {
                return Err(InvariantError::SetSize { set: k, size: s.controls.len(), ratio: self.ratio });
            }
            for (j, &c) in s.controls.iter().enumerate() {
                if c >= n || problem.treat[c] {
                    return Err(InvariantError::NotControl { set: k, unit: c });
                }
                if self.discarded[c] {
                    return Err(InvariantError::DiscardedMatched { unit: c });
                }
                if s.controls[..j].contains(&c) {
                    return Err(InvariantError::DuplicateInSet { set: k, unit: c });
                }
                uses[c] += 1;
                if !self.replace && uses[c] > 1 {
                    return Err(InvariantError::ControlReused { unit: c });
                }
                if let Some(w) = self.caliper_width {
                    let d = (problem.distance[t] - problem.distance[c]).abs();
                    if d > w {
                        return Err(InvariantError::Caliper { treated: t, control: c, difference: d, width: w });
                    }
                }
                if let Some(ex) = problem.exact
                    && ex[t] != ex[c]
                {
                    return Err(InvariantError::Exact { treated: t, control: c });
                }
            }
        }
        let expected_unmatched: Vec<usize> =
            (0..n).filter(|&i| problem.treat[i] && !self.discarded[i] && !seen_treated[i]).collect();
        if expected_unmatched != self.unmatched_treated {
            return Err(InvariantError::UnmatchedList);
        }
        let mut set_of = vec![None; n];
        if !self.replace {
            for (k, s) in self.sets.iter().enumerate() {
                set_of[s.treated] = Some(k);
                for &c in &s.controls {
                    set_of[c] = Some(k);
                }
            }
        }
        for (i, (sc, expected)) in self.subclass.iter().zip(&set_of).enumerate() {
            if sc != expected {
                return Err(InvariantError::Subclass { unit: i });
            }
        }
        let expected = att_weights(problem.treat, &self.sets);
        for (i, (w, e)) in self.weights.iter().zip(&expected).enumerate() {
            if (w - e).abs() > 1e-12 * e.abs().max(1.0) || (*w > 0.0) != (*e > 0.0) {
                return Err(InvariantError::Weight { unit: i, weight: *w, expected: *e });
            }
        }
        Ok(())
    }
}

/// ATT matching weights from matched sets, as MatchIt: treated 1; a control gets `1 / k_t` from each treated
/// unit `t` it serves (`k_t` = that unit's number of controls); then the nonzero weights of each group are
/// rescaled to average 1. Without replacement this equals the subclass rule `n_treated / n_controls`.
pub fn att_weights(treat: &[bool], sets: &[MatchedSet]) -> Vec<f64> {
    let mut w = vec![0.0; treat.len()];
    for s in sets {
        if s.controls.is_empty() {
            continue;
        }
        w[s.treated] += 1.0;
        let share = 1.0 / s.controls.len() as f64;
        for &c in &s.controls {
            w[c] += share;
        }
    }
    for group in [true, false] {
        let (mut sum, mut count) = (0.0, 0usize);
        for (wi, &t) in w.iter().zip(treat) {
            if t == group && *wi > 0.0 {
                sum += *wi;
                count += 1;
            }
        }
        if count > 0 {
            for (wi, &t) in w.iter_mut().zip(treat) {
                if t == group && *wi > 0.0 {
                    *wi = count as f64 * *wi / sum;
                }
            }
        }
    }
    w
}

/// A violated invariant of a [`Matches`] result.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum InvariantError {
    /// A per-unit vector has the wrong length.
    #[error("`{what}` has {len} entries, expected {expected}")]
    Length {
        /// Which vector.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The number of units.
        expected: usize,
    },
    /// A set's treated unit is not a treated unit.
    #[error("set {set}: unit {unit} is not a treated unit")]
    NotTreated {
        /// Set index.
        set: usize,
        /// Unit index.
        unit: usize,
    },
    /// A set's control is not a control unit.
    #[error("set {set}: unit {unit} is not a control unit")]
    NotControl {
        /// Set index.
        set: usize,
        /// Unit index.
        unit: usize,
    },
    /// Sets are not in increasing order of their treated unit.
    #[error("set {set} is out of order")]
    SetOrder {
        /// Set index.
        set: usize,
    },
    /// A discarded unit was matched.
    #[error("discarded unit {unit} was matched")]
    DiscardedMatched {
        /// Unit index.
        unit: usize,
    },
    /// A set is empty or has more than `ratio` controls.
    #[error("set {set} has {size} controls (ratio {ratio})")]
    SetSize {
        /// Set index.
        set: usize,
        /// Number of controls.
        size: usize,
        /// Requested ratio.
        ratio: usize,
    },
    /// A control appears twice in one set.
    #[error("set {set} contains control {unit} twice")]
    DuplicateInSet {
        /// Set index.
        set: usize,
        /// Unit index.
        unit: usize,
    },
    /// A control was used twice without replacement.
    #[error("control {unit} was used more than once without replacement")]
    ControlReused {
        /// Unit index.
        unit: usize,
    },
    /// A pair violates the caliper.
    #[error("pair ({treated}, {control}) differs by {difference} > caliper {width}")]
    Caliper {
        /// Treated unit.
        treated: usize,
        /// Control unit.
        control: usize,
        /// Absolute distance difference.
        difference: f64,
        /// Caliper width.
        width: f64,
    },
    /// A pair lies in different exact cells.
    #[error("pair ({treated}, {control}) lies in different exact cells")]
    Exact {
        /// Treated unit.
        treated: usize,
        /// Control unit.
        control: usize,
    },
    /// `unmatched_treated` is not exactly the non-discarded treated units without a set.
    #[error("the list of unmatched treated units is wrong")]
    UnmatchedList,
    /// A unit's subclass disagrees with the sets.
    #[error("unit {unit} has the wrong subclass")]
    Subclass {
        /// Unit index.
        unit: usize,
    },
    /// A unit's weight disagrees with the sets.
    #[error("unit {unit} has weight {weight}, expected {expected}")]
    Weight {
        /// Unit index.
        unit: usize,
        /// Stored weight.
        weight: f64,
        /// Weight recomputed from the sets.
        expected: f64,
    },
}
