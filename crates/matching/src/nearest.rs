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

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use thiserror::Error;

use crate::distance::{DistanceError, Mahalanobis};
use crate::matches::{MatchedSet, Matches, Problem};
use crate::support::{Discard, SupportError, discard};

/// Order in which treated units are matched (MatchIt's `m.order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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

/// Errors of [`nearest`] and [`crate::optimal::optimal`].
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum MatchError {
    /// An input vector has the wrong length.
    #[error("`{what}` has {len} entries, expected {expected}")]
    Length {
        /// Which input.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The number of units.
        expected: usize,
    },
    /// No treated units.
    #[error("there are no treated units")]
    NoTreated,
    /// No control units.
    #[error("there are no control units")]
    NoControls,
    /// A distance is NaN or infinite.
    #[error("distance of unit {index} is not finite ({value})")]
    NonFiniteDistance {
        /// Unit index.
        index: usize,
        /// The value.
        value: f64,
    },
    /// `ratio` is 0.
    #[error("ratio must be at least 1")]
    RatioZero,
    /// The caliper is negative or not finite.
    #[error("caliper must be a non-negative finite number, not {value}")]
    InvalidCaliper {
        /// The caliper given.
        value: f64,
    },
    /// No exact cell contains both treated and control units (MatchIt: "no matches were found").
    #[error("no exact-matching cell contains both treated and control units")]
    NoCommonCell,
    /// No unit was matched (MatchIt: "no units were matched").
    #[error("no units were matched")]
    NothingMatched,
    /// A combination of options this implementation does not support.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// Common-support error.
    #[error(transparent)]
    Support(#[from] SupportError),
    /// Mahalanobis distance error.
    #[error(transparent)]
    Distance(#[from] DistanceError),
}

/// Checks lengths, finiteness and group sizes shared by every method.
pub(crate) fn validate(problem: &Problem<'_>) -> Result<(), MatchError> {
    let n = problem.len();
    if problem.distance.len() != n {
        return Err(MatchError::Length { what: "distance", len: problem.distance.len(), expected: n });
    }
    if let Some(ex) = problem.exact
        && ex.len() != n
    {
        return Err(MatchError::Length { what: "exact", len: ex.len(), expected: n });
    }
    if let Some(m) = problem.mahvars
        && m.nrows() != n
    {
        return Err(MatchError::Length { what: "mahvars", len: m.nrows(), expected: n });
    }
    if let Some((index, &value)) = problem.distance.iter().enumerate().find(|(_, d)| !d.is_finite()) {
        return Err(MatchError::NonFiniteDistance { index, value });
    }
    if !problem.treat.iter().any(|&t| t) {
        return Err(MatchError::NoTreated);
    }
    if problem.treat.iter().all(|&t| t) {
        return Err(MatchError::NoControls);
    }
    Ok(())
}

/// The caliper width in units of the distance: `Sd(c)` is `c` times the sample SD of the distance over the
/// non-discarded units.
pub fn caliper_width(caliper: Caliper, distance: &[f64], discarded: &[bool]) -> Result<f64, MatchError> {
    let (c, std) = match caliper {
        Caliper::Sd(c) => (c, true),
        Caliper::Raw(c) => (c, false),
    };
    if !(c.is_finite() && c >= 0.0) {
        return Err(MatchError::InvalidCaliper { value: c });
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
pub fn nearest(problem: &Problem<'_>, opts: &NearestOptions) -> Result<Matches, MatchError> {
    validate(problem)?;
    if opts.ratio == 0 {
        return Err(MatchError::RatioZero);
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
        return Err(MatchError::NoCommonCell);
    }
    let controls_short = !opts.replace && (0..n_cells).any(|c| n1[c] > 0 && (n0[c] as f64) < (k * n1[c]) as f64);

    let sets = if let Some(x) = problem.mahvars {
        if opts.order == Order::Closest && !opts.replace {
            return Err(MatchError::Unsupported("m.order = closest with mahvars"));
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
        return Err(MatchError::NothingMatched);
    }
    Ok(Matches::from_sets(problem, sets, discarded, opts.replace, k, width, controls_short))
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

/// Indices into a sorted list with "nearest alive to the left / right" queries (two union–find forests).
#[derive(Debug)]
struct SkipList {
    /// `left[i + 1]` leads to the nearest alive element ≤ i; 0 means none.
    left: Vec<usize>,
    /// `right[i]` leads to the nearest alive element ≥ i; `len` means none.
    right: Vec<usize>,
}

impl SkipList {
    fn new(len: usize) -> Self {
        Self { left: (0..=len).collect(), right: (0..=len).collect() }
    }

    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            let up = parent[parent[x]];
            parent[x] = up;
            x = up;
        }
        x
    }

    /// Nearest alive index ≤ i.
    fn alive_at_or_left(&mut self, i: usize) -> Option<usize> {
        let r = Self::find(&mut self.left, i + 1);
        (r > 0).then(|| r - 1)
    }

    /// Nearest alive index ≥ i.
    fn alive_at_or_right(&mut self, i: usize) -> Option<usize> {
        let r = Self::find(&mut self.right, i);
        (r < self.right.len() - 1).then_some(r)
    }

    fn remove(&mut self, i: usize) {
        self.left[i + 1] = i;
        self.right[i] = i + 1;
    }
}

/// Where a search starts: MatchIt's `iil`, `iir` and `min_dist`.
#[derive(Debug, Clone, Copy)]
struct Start {
    lo: usize,
    hi: usize,
    min_dist: f64,
}

/// A candidate found on one side: unit, distance difference, steps walked from the start.
#[derive(Debug, Clone, Copy)]
struct Found {
    unit: usize,
    dist: f64,
    steps: usize,
}

/// Matching on a scalar distance.
#[derive(Debug)]
struct VecEngine<'a> {
    d: &'a [f64],
    treat: &'a [bool],
    discarded: &'a [bool],
    width: Option<f64>,
    /// Sorted position of each unit.
    pos: Vec<usize>,
    /// Units in sorted order.
    order: Vec<usize>,
    cell: &'a [usize],
    /// Non-discarded controls of each cell, in sorted order.
    cell_controls: Vec<Vec<usize>>,
    /// Distances of `cell_controls`, contiguous (for the `min_dist` searches).
    cell_d: Vec<Vec<f64>>,
    /// Index of each control in its cell's list; for a treated unit, the number of its cell's controls
    /// sorted before it.
    cell_index: Vec<usize>,
    skips: Vec<SkipList>,
}

impl<'a> VecEngine<'a> {
    fn new(
        d: &'a [f64],
        treat: &'a [bool],
        cell: &'a [usize],
        n_cells: usize,
        discarded: &'a [bool],
        width: Option<f64>,
    ) -> Self {
        let n = d.len();
        let order = stable_order(d);
        let mut pos = vec![0; n];
        for (p, &u) in order.iter().enumerate() {
            pos[u] = p;
        }
        let mut cell_controls = vec![Vec::new(); n_cells];
        let mut cell_d = vec![Vec::new(); n_cells];
        let mut cell_index = vec![0; n];
        for &u in &order {
            cell_index[u] = cell_controls[cell[u]].len();
            if !treat[u] && !discarded[u] {
                cell_controls[cell[u]].push(u);
                cell_d[cell[u]].push(d[u]);
            }
        }
        let skips = cell_controls.iter().map(|c| SkipList::new(c.len())).collect();
        Self { d, treat, discarded, width, pos, order, cell, cell_controls, cell_d, cell_index, skips }
    }

    /// MatchIt's start: the unit's own position widened to its previous matches (and a rejected control).
    fn start(&self, t: usize, extremes: Option<(usize, usize)>) -> Start {
        let ii = self.pos[t];
        let di = self.d[t];
        match extremes {
            None => Start { lo: ii, hi: ii, min_dist: 0.0 },
            Some((lo, hi)) => {
                let (lo, hi) = (lo.min(ii), hi.max(ii));
                let dl = (di - self.d[self.order[lo]]).abs();
                let dr = (di - self.d[self.order[hi]]).abs();
                let min_dist = if lo == ii {
                    dr
                } else if hi == ii {
                    dl
                } else {
                    dl.max(dr)
                };
                Start { lo, hi, min_dist }
            }
        }
    }

    /// Nearest unused acceptable control on each side of `start` (see the module documentation).
    fn sides(&mut self, t: usize, s: Start) -> (Option<Found>, Option<Found>) {
        let c = self.cell[t];
        let di = self.d[t];
        let d = self.d;
        let pos = &self.pos;
        // The search starts are the unit itself or controls of its cell, whose list indices are known.
        let (ul, uh) = (self.order[s.lo], self.order[s.hi]);
        let upto = self.cell_index[ul];
        let from = self.cell_index[uh] + usize::from(!self.treat[uh]);
        let cd = &self.cell_d[c];
        // Left: the nearest alive entry before `upto` with |di - d| >= min_dist (monotone along the side).
        let mut left = if upto == 0 { None } else { self.skips[c].alive_at_or_left(upto - 1) };
        if let Some(i) = left
            && (di - cd[i]).abs() < s.min_dist
        {
            let bound = cd[..i].partition_point(|&x| (di - x).abs() >= s.min_dist);
            left = if bound == 0 { None } else { self.skips[c].alive_at_or_left(bound - 1) };
        }
        let mut right = if from >= cd.len() { None } else { self.skips[c].alive_at_or_right(from) };
        if let Some(i) = right
            && (di - cd[i]).abs() < s.min_dist
        {
            let bound = i + cd[i..].partition_point(|&x| (di - x).abs() < s.min_dist);
            right = if bound >= cd.len() { None } else { self.skips[c].alive_at_or_right(bound) };
        }
        let list = &self.cell_controls[c];
        let within = |x: f64| self.width.is_none_or(|w| x <= w);
        let left = left.map(|i| list[i]).map(|u| Found { unit: u, dist: (di - d[u]).abs(), steps: s.lo - pos[u] });
        let right = right.map(|i| list[i]).map(|u| Found { unit: u, dist: (di - d[u]).abs(), steps: pos[u] - s.hi });
        (left.filter(|f| within(f.dist)), right.filter(|f| within(f.dist)))
    }

    /// The nearest unused acceptable control from `start` (one candidate per call, as MatchIt without
    /// replacement): the closer side; on a tie the side reached first (left iff not more steps).
    fn find_one(&mut self, t: usize, s: Start) -> Option<Found> {
        match self.sides(t, s) {
            (Some(l), Some(r)) => Some(match l.dist.partial_cmp(&r.dist) {
                Some(Ordering::Less) => l,
                Some(Ordering::Greater) => r,
                _ => {
                    if l.steps <= r.steps {
                        l
                    } else {
                        r
                    }
                }
            }),
            (l, r) => l.or(r),
        }
    }

    fn use_control(&mut self, u: usize) {
        self.skips[self.cell[u]].remove(self.cell_index[u]);
    }

    /// Without replacement, `k` rounds over the treated units in `ord`.
    fn match_rounds(&mut self, ord: &[usize], k: usize) -> Vec<(usize, Vec<usize>)> {
        let n = self.d.len();
        let mut controls: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut extremes: Vec<Option<(usize, usize)>> = vec![None; n];
        let mut active: Vec<bool> = (0..n).map(|i| self.treat[i] && !self.discarded[i]).collect();
        for r in 1..=k {
            for &t in ord {
                if !active[t] {
                    continue;
                }
                let s = self.start(t, extremes[t]);
                match self.find_one(t, s) {
                    None => {
                        if r == 1 {
                            active[t] = false;
                        }
                    }
                    Some(f) => {
                        self.use_control(f.unit);
                        controls[t].push(f.unit);
                        let p = self.pos[f.unit];
                        extremes[t] = Some(extremes[t].map_or((p, p), |(lo, hi)| (lo.min(p), hi.max(p))));
                    }
                }
            }
        }
        collect_sets(self.treat, controls)
    }

    /// `m.order = "closest"` without replacement.
    fn match_closest(&mut self, k: usize) -> Vec<(usize, Vec<usize>)> {
        let n = self.d.len();
        let mut controls: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut extremes: Vec<Option<(usize, usize)>> = vec![None; n];
        let mut active: Vec<bool> = (0..n).map(|i| self.treat[i] && !self.discarded[i]).collect();
        let mut used = vec![false; n];
        for _ in 1..=k {
            let mut heap = BinaryHeap::new();
            let mut seq = 0i64;
            for t in 0..n {
                if !active[t] {
                    continue;
                }
                let s = self.start(t, extremes[t]);
                match self.find_one(t, s) {
                    None => active[t] = false,
                    Some(f) => {
                        heap.push(std::cmp::Reverse(Pair { dist: f.dist, seq, treated: t, control: f.unit }));
                        seq += 1;
                    }
                }
            }
            let mut requeued = 0i64;
            while let Some(std::cmp::Reverse(p)) = heap.pop() {
                let t = p.treated;
                if !active[t] {
                    continue;
                }
                if used[p.control] {
                    let p_c = self.pos[p.control];
                    let ext = Some(extremes[t].map_or((p_c, p_c), |(lo, hi)| (lo.min(p_c), hi.max(p_c))));
                    let s = self.start(t, ext);
                    match self.find_one(t, s) {
                        None => active[t] = false,
                        Some(f) => {
                            requeued -= 1;
                            heap.push(std::cmp::Reverse(Pair {
                                dist: f.dist,
                                seq: requeued,
                                treated: t,
                                control: f.unit,
                            }));
                        }
                    }
                    continue;
                }
                used[p.control] = true;
                self.use_control(p.control);
                controls[t].push(p.control);
                let pc = self.pos[p.control];
                extremes[t] = Some(extremes[t].map_or((pc, pc), |(lo, hi)| (lo.min(pc), hi.max(pc))));
                if controls[t].len() >= k {
                    active[t] = false;
                }
            }
        }
        collect_sets(self.treat, controls)
    }

    /// With replacement: each treated unit independently (in parallel) gets its k nearest controls, chosen
    /// as MatchIt does (up to k candidates per side, then libc++'s partial sort).
    fn match_with_replacement(&self, k: usize) -> Vec<(usize, Vec<usize>)> {
        let treated: Vec<usize> = (0..self.d.len()).filter(|&i| self.treat[i] && !self.discarded[i]).collect();
        treated.par_iter().map(|&t| (t, self.k_nearest(t, k))).collect()
    }

    fn k_nearest(&self, t: usize, k: usize) -> Vec<usize> {
        let list = &self.cell_controls[self.cell[t]];
        let ii = self.pos[t];
        let di = self.d[t];
        let split = self.cell_index[t];
        let (mut li, mut ri) = (split, split); // next left is li - 1, next right is ri
        let (mut l_stop, mut r_stop) = (false, false);
        let (mut nl, mut nr) = (0usize, 0usize);
        let mut ids: Vec<usize> = Vec::with_capacity(2 * k);
        let mut dists: Vec<f64> = Vec::with_capacity(2 * k);
        loop {
            if li == 0 || nl == k {
                l_stop = true;
            }
            if ri >= list.len() || nr == k {
                r_stop = true;
            }
            if l_stop && r_stop {
                break;
            }
            // Discovery times: left step a at 2a - 1, right step b at 2b.
            let go_left = if l_stop {
                false
            } else if r_stop {
                true
            } else {
                let a = ii - self.pos[list[li - 1]];
                let b = self.pos[list[ri]] - ii;
                2 * a - 1 < 2 * b
            };
            let u = if go_left { list[li - 1] } else { list[ri] };
            let dist = (di - self.d[u]).abs();
            let stop = self.width.is_some_and(|w| dist > w)
                || (ids.len() >= k && dists.iter().filter(|&&x| x < dist).count() >= k);
            if go_left {
                li -= 1;
                if stop {
                    l_stop = true;
                    continue;
                }
                nl += 1;
            } else {
                ri += 1;
                if stop {
                    r_stop = true;
                    continue;
                }
                nr += 1;
            }
            ids.push(u);
            dists.push(dist);
        }
        select_k(&ids, &dists, k)
    }
}

/// MatchIt's final choice among the candidates: as found if at most k and already sorted, else the first k
/// after libc++'s `std::partial_sort` (more than k) or `std::sort` (at most k) by distance.
fn select_k(ids: &[usize], dists: &[f64], k: usize) -> Vec<usize> {
    let n = ids.len();
    if n <= 1 || (n <= k && dists.windows(2).all(|w| w[0] <= w[1])) {
        return ids.to_vec();
    }
    let mut ind: Vec<usize> = (0..n).collect();
    let less = |a: &usize, b: &usize| dists[*a] < dists[*b];
    if n > k {
        stl::partial_sort(&mut ind, k, &less);
        ind[..k].iter().map(|&i| ids[i]).collect()
    } else {
        stl::sort(&mut ind, &less);
        ind.iter().map(|&i| ids[i]).collect()
    }
}

/// A proposed pair in `m.order = "closest"`, ordered by distance then queue sequence.
#[derive(Debug, Clone, Copy)]
struct Pair {
    dist: f64,
    seq: i64,
    treated: usize,
    control: usize,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pair {}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist.partial_cmp(&other.dist).unwrap_or(Ordering::Equal).then(self.seq.cmp(&other.seq))
    }
}

fn collect_sets(treat: &[bool], controls: Vec<Vec<usize>>) -> Vec<(usize, Vec<usize>)> {
    controls.into_iter().enumerate().filter(|(t, c)| treat[*t] && !c.is_empty()).collect()
}

/// Mahalanobis matching within the propensity caliper (`mahvars`).
#[derive(Debug)]
struct MahalEngine<'a> {
    d: &'a [f64],
    treat: &'a [bool],
    discarded: &'a [bool],
    cell: &'a [usize],
    width: Option<f64>,
    metric: Mahalanobis,
    /// Position in the search order (first Mahalanobis coordinate, within the exact cell).
    mpos: Vec<usize>,
    /// Non-discarded controls of each cell, sorted by distance (to restrict the scan to the caliper).
    cell_controls: Vec<Vec<usize>>,
}

impl<'a> MahalEngine<'a> {
    fn new(
        distance: &'a [f64],
        treat: &'a [bool],
        cell: &'a [usize],
        n_cells: usize,
        discarded: &'a [bool],
        width: Option<f64>,
        metric: Mahalanobis,
    ) -> Self {
        let n = treat.len();
        let first: Vec<f64> = metric.transformed().column(0).to_vec();
        let order = stable_order(&first);
        let mut mpos = vec![0; n];
        let mut counter = vec![0usize; n_cells];
        for &u in &order {
            mpos[u] = counter[cell[u]];
            counter[cell[u]] += 1;
        }
        let mut cell_controls = vec![Vec::new(); n_cells];
        for u in stable_order(distance) {
            if !treat[u] && !discarded[u] {
                cell_controls[cell[u]].push(u);
            }
        }
        Self { d: distance, treat, discarded, cell, width, metric, mpos, cell_controls }
    }

    /// Acceptable controls of `t` (same cell, within the caliper, not `used`), with their squared
    /// Mahalanobis distance and discovery time in MatchIt's walk.
    fn candidates(&self, t: usize, used: Option<&[bool]>) -> Vec<(f64, usize, usize)> {
        let list = &self.cell_controls[self.cell[t]];
        let dt = self.d[t];
        let a = match self.width {
            Some(w) => list.partition_point(|&u| self.d[u] < dt && (dt - self.d[u]).abs() > w),
            None => 0,
        };
        let mut out = Vec::new();
        for &u in &list[a..] {
            if self.width.is_some_and(|w| self.d[u] > dt && (dt - self.d[u]).abs() > w) {
                break;
            }
            if used.is_some_and(|x| x[u]) {
                continue;
            }
            let dist = self.metric.squared(t, u);
            if !dist.is_finite() {
                continue;
            }
            let (pt, pu) = (self.mpos[t], self.mpos[u]);
            let time = if pu < pt { 2 * (pt - pu) - 1 } else { 2 * (pu - pt) };
            out.push((dist, time, u));
        }
        out
    }

    /// The best `k` candidates: smallest distance, and among equal distances the one found last.
    fn best(mut c: Vec<(f64, usize, usize)>, k: usize) -> Vec<usize> {
        c.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(Ordering::Equal).then(y.1.cmp(&x.1)));
        c.into_iter().take(k).map(|x| x.2).collect()
    }

    fn match_rounds(&self, ord: &[usize], k: usize) -> Vec<(usize, Vec<usize>)> {
        let n = self.d.len();
        let mut used = vec![false; n];
        let mut controls: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut active: Vec<bool> = (0..n).map(|i| self.treat[i] && !self.discarded[i]).collect();
        for r in 1..=k {
            for &t in ord {
                if !active[t] {
                    continue;
                }
                match Self::best(self.candidates(t, Some(&used)), 1).first() {
                    None => {
                        if r == 1 {
                            active[t] = false;
                        }
                    }
                    Some(&u) => {
                        used[u] = true;
                        controls[t].push(u);
                    }
                }
            }
        }
        collect_sets(self.treat, controls)
    }

    fn match_with_replacement(&self, k: usize) -> Vec<(usize, Vec<usize>)> {
        let treated: Vec<usize> = (0..self.d.len()).filter(|&i| self.treat[i] && !self.discarded[i]).collect();
        treated.par_iter().map(|&t| (t, Self::best(self.candidates(t, None), k))).collect()
    }
}

/// libc++'s `std::partial_sort` (LLVM `__partial_sort_impl`, `__sift_down`, and `__pop_heap` with Floyd's
/// sift-down), so ties among equally distant candidates come out as in the build of MatchIt that produced
/// its test snapshots (libc++; a libstdc++ build of MatchIt may order or choose tied candidates differently).
/// libc++'s `std::sort` below its insertion-sort limit (24 elements) is a sorting network on the first
/// three elements followed by insertion, which keeps equal elements in order; `sort` is therefore a stable
/// sort (exact for up to 24 candidates, i.e. `ratio` up to 24).
mod stl {
    fn sift_down<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], len: usize, start: usize, less: &F) {
        let mut child = start;
        if len < 2 || (len - 2) / 2 < child {
            return;
        }
        child = 2 * child + 1;
        if child + 1 < len && less(&v[child], &v[child + 1]) {
            child += 1;
        }
        if less(&v[child], &v[start]) {
            return;
        }
        let top = v[start];
        let mut hole = start;
        loop {
            v[hole] = v[child];
            hole = child;
            if (len - 2) / 2 < child {
                break;
            }
            child = 2 * child + 1;
            if child + 1 < len && less(&v[child], &v[child + 1]) {
                child += 1;
            }
            if less(&v[child], &top) {
                break;
            }
        }
        v[hole] = top;
    }

    fn floyd_sift_down<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], len: usize, less: &F) -> usize {
        let mut hole = 0;
        let mut child = 0;
        loop {
            let mut child_i = hole + child + 1;
            child = 2 * child + 1;
            if child + 1 < len && less(&v[child_i], &v[child_i + 1]) {
                child_i += 1;
                child += 1;
            }
            v[hole] = v[child_i];
            hole = child_i;
            if child > (len - 2) / 2 {
                return hole;
            }
        }
    }

    fn sift_up<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], mut last: usize, len: usize, less: &F) {
        if len > 1 {
            let mut len = (len - 2) / 2;
            let mut ptr = len;
            last -= 1;
            if less(&v[ptr], &v[last]) {
                let t = v[last];
                loop {
                    v[last] = v[ptr];
                    last = ptr;
                    if len == 0 {
                        break;
                    }
                    len = (len - 1) / 2;
                    ptr = len;
                    if !less(&v[ptr], &t) {
                        break;
                    }
                }
                v[last] = t;
            }
        }
    }

    fn pop_heap<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], len: usize, less: &F) {
        if len > 1 {
            let top = v[0];
            let mut hole = floyd_sift_down(v, len, less);
            let last = len - 1;
            if hole == last {
                v[hole] = top;
            } else {
                v[hole] = v[last];
                hole += 1;
                v[last] = top;
                sift_up(v, hole, hole, less);
            }
        }
    }

    /// `std::partial_sort(v.begin(), v.begin() + middle, v.end(), less)` as libc++ does it.
    pub(super) fn partial_sort<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], middle: usize, less: &F) {
        if middle == 0 {
            return;
        }
        if middle > 1 {
            let mut start = (middle - 2) / 2;
            loop {
                sift_down(v, middle, start, less);
                if start == 0 {
                    break;
                }
                start -= 1;
            }
        }
        for i in middle..v.len() {
            if less(&v[i], &v[0]) {
                v.swap(i, 0);
                sift_down(v, middle, 0, less);
            }
        }
        let mut n = middle;
        while n > 1 {
            pop_heap(&mut v[..n], n, less);
            n -= 1;
        }
    }

    /// `std::sort` on short ranges (stable, see the module note).
    pub(super) fn sort<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], less: &F) {
        v.sort_by(|a, b| {
            if less(a, b) {
                std::cmp::Ordering::Less
            } else if less(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn sorts_like_a_sort() {
            let keys: Vec<f64> = (0..40).map(|i| ((i * 7919) % 13) as f64).collect();
            let less = |a: &usize, b: &usize| keys[*a] < keys[*b];
            for n in [0, 1, 2, 5, 16, 17, 40] {
                let mut all: Vec<f64> = (0..n).map(|i| keys[i]).collect();
                all.sort_by(f64::total_cmp);
                for m in 1..=n {
                    let mut v: Vec<usize> = (0..n).collect();
                    super::partial_sort(&mut v, m, &less);
                    let got: Vec<f64> = v[..m].iter().map(|&i| keys[i]).collect();
                    assert_eq!(got, all[..m].to_vec(), "partial n={n} m={m}");
                    let mut s = v.clone();
                    s.sort_unstable();
                    assert_eq!(s, (0..n).collect::<Vec<_>>());
                }
            }
        }

        /// Worked by hand through libc++'s code: five candidates, three tied at the minimum.
        #[test]
        fn tie_order_is_libcxx() {
            let keys = [9.96e-4, 5e-5, 1.48e-3, 5e-5, 5e-5];
            let mut v = vec![0, 1, 2, 3, 4];
            super::partial_sort(&mut v, 3, &|a: &usize, b: &usize| keys[*a] < keys[*b]);
            assert_eq!(&v[..3], &[3, 4, 1]);
        }
    }
}
