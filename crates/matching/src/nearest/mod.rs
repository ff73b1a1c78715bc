//! Greedy nearest-neighbour matching with MatchIt 4.7's rules, in O(n log n).
//!
//! What MatchIt 4.7.2 does (`R/matchit2nearest.R`, `src/nn_matchC_vec.cpp`, `src/nn_matchC_vec_closest.cpp`,
//! `src/nn_matchC_mahcovs.cpp`, `src/internal.cpp`), and therefore what this module reproduces:
//!
//! - Units are sorted by distance with R's stable `order()` (ties keep input order). A treated unit's search
//!   starts at its own sorted position and walks outward, one position at a time, alternating left (first)
//!   and right, over every unit (treated units and used controls are stepped over). Along each side the
//!   absolute difference grows, so each side yields its nearest acceptable control; the closer of the two
//!   wins, and on a tie the one found first, i.e. the left one iff its step count is not larger.
//! - Without replacement, `ratio = k` runs k rounds over the treated units in `m.order`; every treated unit
//!   gets its first control before any gets its second. From round 2 on, the walk starts at the outermost of
//!   the unit's previous matches and skips candidates closer than the farthest of them. A treated unit
//!   without a control in round 1 leaves the matching; one without a control in a later round keeps the
//!   controls it has.
//! - `m.order = "closest"`: in each round every eligible treated unit proposes its nearest control; pairs
//!   are taken in increasing order of distance (stable); when a pair's control is already used, the unit
//!   searches again (starting beyond that control) and its new pair is re-queued before all pairs at least as
//!   far.
//! - With replacement MatchIt uses data order and, per treated unit, collects up to k candidates on each
//!   side, then keeps the k nearest with `std::partial_sort` (or `std::sort`). Which of several equally
//!   distant candidates is kept, and in what order, depends on the C++ library MatchIt was built with; this
//!   module reproduces libc++ (the build behind MatchIt's own test snapshots, which it matches exactly).
//! - The caliper is inclusive (`|d_t − d_c| <= width`); with `Caliper::Sd` the width is the caliper times the
//!   sample SD (n − 1) of the distance over all non-discarded units (`process.caliper`).
//! - Exact cells: a control is acceptable only in the treated unit's cell; the walk still steps over units
//!   of other cells, so step counts (tie-breaking) are the same as MatchIt's.
//! - `mahvars`: the search order comes from the first Mahalanobis coordinate (sorted within the exact cell
//!   when `exact` is given, as MatchIt matches each cell separately), the caliper applies to the distance,
//!   and among equally distant controls the one found *last* wins (MatchIt's insertion rule). Distances
//!   are computed from raw differences, so mirror-image pairs tie exactly; MatchIt decides such ties by
//!   rounding in its BLAS/LAPACK transform, which cannot be reproduced bit for bit, so only there can the
//!   matched sets differ. Each search scans the cell's controls (only those within the caliper when one
//!   is given): O(n₁·n₀) without a caliper. `m.order = "closest"` with `mahvars` is not implemented.
//! - `m.order = "random"` uses a seeded ChaCha8 shuffle, not R's RNG: random orders are reproducible from the
//!   seed but are not R's `sample()`.
//!
//! Instead of MatchIt's position-by-position walk (O(n) per treated unit once controls are used up), each
//! exact cell keeps its controls in sorted order with two union–find "next unused control to the
//! left/right" structures, and step counts are recomputed from sorted positions, so every query is
//! O(log n) amortized and the matched sets are identical. Matching with replacement is independent across
//! treated units and runs in parallel (rayon), with deterministic output.
//!
//! The module is split by concept: this file holds the options and the entry point [`nearest`];
//! `engine_vec` matches on a scalar distance, `engine_mahal` on Mahalanobis distances within the caliper,
//! `skiplist` is the "next unused control" structure and `libcxx` reproduces libc++'s sorts.

mod engine_mahal;
mod engine_vec;
mod libcxx;
mod skiplist;

use std::cmp::Ordering;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::distance::Mahalanobis;
use crate::error::MethodError;
use crate::matches::{MatchedSet, Matches, Problem};
use crate::support::{Discard, discard};
use engine_mahal::MahalEngine;
use engine_vec::VecEngine;

/// The errors of [`nearest`] and [`crate::optimal::optimal`], under the name this module has always
/// exported; the type is [`crate::error::MethodError`].
pub use crate::error::MethodError as MatchError;

/// Order in which treated units are matched (MatchIt's `m.order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Largest distance first (MatchIt's default for a propensity score).
    #[default]
    Largest,
    /// Smallest distance first.
    Smallest,
    /// A random order, seeded by [`NearestOptions::seed`].
    Random,
    /// Input order.
    Data,
    /// Closest pairs first.
    Closest,
}

/// A caliper on the distance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Caliper {
    /// In standard deviations of the distance (MatchIt's `std.caliper = TRUE`, the default).
    Sd(f64),
    /// In units of the distance (`std.caliper = FALSE`).
    Raw(f64),
}

/// Options of [`nearest`]. `Default` gives MatchIt's defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NearestOptions {
    /// Controls per treated unit (k:1 matching). Default 1.
    pub ratio: usize,
    /// Whether a control may be matched to several treated units. Default `false`.
    pub replace: bool,
    /// Matching order. Default [`Order::Largest`]; ignored with replacement (MatchIt uses data order).
    pub order: Order,
    /// Caliper on the distance. Default none. Must be non-negative.
    pub caliper: Option<Caliper>,
    /// Common-support rule. Default [`Discard::None`].
    pub discard: Discard,
    /// Seed of [`Order::Random`]. Default 1.
    pub seed: u64,
}

impl Default for NearestOptions {
    fn default() -> Self {
        Self { ratio: 1, replace: false, order: Order::Largest, caliper: None, discard: Discard::None, seed: 1 }
    }
}

/// The caliper width in units of the distance: `Sd(c)` is `c` times the sample SD of the distance over the
/// non-discarded units.
pub fn caliper_width(caliper: Caliper, distance: &[f64], discarded: &[bool]) -> Result<f64, MethodError> {
    let (c, std) = match caliper {
        Caliper::Sd(c) => (c, true),
        Caliper::Raw(c) => (c, false),
    };
    if !(c.is_finite() && c >= 0.0) {
        return Err(MethodError::InvalidCaliper { value: c });
    }
    if !std {
        return Ok(c);
    }
    let kept: Vec<f64> = distance.iter().zip(discarded).filter(|(_, d)| !**d).map(|(x, _)| *x).collect();
    let m = kept.len() as f64;
    let mean = kept.iter().sum::<f64>() / m;
    let var = kept.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (m - 1.0);
    Ok(c * var.sqrt())
}

/// Greedy nearest-neighbour matching for the ATT with MatchIt 4.7's rules (see the module documentation).
pub fn nearest(problem: &Problem<'_>, opts: &NearestOptions) -> Result<Matches, MethodError> {
    crate::validate::problem(problem)?;
    if opts.ratio == 0 {
        return Err(MethodError::RatioZero);
    }
    let n = problem.len();
    let treat = problem.treat;
    let d = problem.distance;
    let discarded = discard(d, treat, &opts.discard)?;
    let width = opts.caliper.map(|c| caliper_width(c, d, &discarded)).transpose()?;
    let k = opts.ratio;

    // Exact cells: compact codes, and MatchIt's check that some cell holds both groups.
    let cell: Vec<usize> = match problem.exact {
        None => vec![0; n],
        Some(ex) => {
            let mut codes: Vec<u32> = ex.to_vec();
            codes.sort_unstable();
            codes.dedup();
            ex.iter().map(|c| codes.binary_search(c).unwrap_or(0)).collect()
        }
    };
    let n_cells = cell.iter().max().map_or(1, |m| m + 1);
    let mut n1 = vec![0usize; n_cells];
    let mut n0 = vec![0usize; n_cells];
    for i in 0..n {
        if treat[i] {
            n1[cell[i]] += 1;
        } else {
            n0[cell[i]] += 1;
        }
    }
    if !(0..n_cells).any(|c| n1[c] > 0 && n0[c] > 0) {
        return Err(MethodError::NoCommonCell);
    }
    let controls_short = !opts.replace && (0..n_cells).any(|c| n1[c] > 0 && (n0[c] as f64) < k as f64 * n1[c] as f64);
    // No treated unit can receive more distinct controls than a cell holds, so a larger ratio matches exactly
    // as this one does (and cannot make the engines reserve room for ratio x treated matches).
    let ratio = k;
    let k = k.min(n0.iter().copied().max().unwrap_or(1).max(1));

    let sets = if let Some(x) = problem.mahvars {
        if opts.order == Order::Closest && !opts.replace {
            return Err(MethodError::Unsupported("m.order = closest with mahvars"));
        }
        let metric = Mahalanobis::new(x, treat, &discarded)?;
        let engine = MahalEngine::new(d, treat, &cell, n_cells, &discarded, width, metric);
        if opts.replace {
            engine.match_with_replacement(k)
        } else {
            let ord = treated_order(problem, &discarded, opts.order, opts.seed);
            engine.match_rounds(&ord, k)
        }
    } else {
        let mut engine = VecEngine::new(d, treat, &cell, n_cells, &discarded, width);
        if opts.replace {
            engine.match_with_replacement(k)
        } else if opts.order == Order::Closest {
            engine.match_closest(k)
        } else {
            let ord = treated_order(problem, &discarded, opts.order, opts.seed);
            engine.match_rounds(&ord, k)
        }
    };
    let sets: Vec<MatchedSet> = sets
        .into_iter()
        .filter(|(_, c)| !c.is_empty())
        .map(|(treated, controls)| MatchedSet { treated, controls })
        .collect();
    if sets.is_empty() {
        return Err(MethodError::NothingMatched);
    }
    Ok(Matches::from_sets(problem, sets, discarded, opts.replace, ratio, width, controls_short))
}

/// Treated units in matching order (MatchIt's `ord`): largest/smallest by distance with R's stable
/// `order()`, data order, or a seeded shuffle of the non-discarded treated units.
fn treated_order(problem: &Problem<'_>, discarded: &[bool], order: Order, seed: u64) -> Vec<usize> {
    let d = problem.distance;
    let mut t: Vec<usize> = (0..problem.len()).filter(|&i| problem.treat[i] && !discarded[i]).collect();
    match order {
        Order::Largest => t.sort_by(|&a, &b| d[b].partial_cmp(&d[a]).unwrap_or(Ordering::Equal)),
        Order::Smallest => t.sort_by(|&a, &b| d[a].partial_cmp(&d[b]).unwrap_or(Ordering::Equal)),
        Order::Random => t.shuffle(&mut ChaCha8Rng::seed_from_u64(seed)),
        Order::Data | Order::Closest => {}
    }
    t
}

/// Stable ascending sort of unit indices by a key (R's `order()`); `-0.0` equals `0.0`. Sorts
/// (order-preserving bits, index) pairs, which is the stable order and parallelizes well.
fn stable_order(key: &[f64]) -> Vec<usize> {
    let mut v: Vec<(u64, usize)> = key
        .par_iter()
        .enumerate()
        .map(|(i, &k)| {
            let bits = (k + 0.0).to_bits();
            (if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }, i)
        })
        .collect();
    v.par_sort_unstable();
    v.into_par_iter().map(|(_, i)| i).collect()
}

fn collect_sets(treat: &[bool], controls: Vec<Vec<usize>>) -> Vec<(usize, Vec<usize>)> {
    controls.into_iter().enumerate().filter(|(t, c)| treat[*t] && !c.is_empty()).collect()
}
