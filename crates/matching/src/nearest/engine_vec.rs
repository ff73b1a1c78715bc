//! The scalar-distance engine: MatchIt's outward walk from each treated unit's sorted position (rounds in
//! `m.order`, `m.order = "closest"`, and with replacement the k nearest chosen as libc++ chooses them),
//! answered with sorted per-cell control lists and [`SkipList`]s instead of a position-by-position walk.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::libcxx;
use super::skiplist::SkipList;
use super::{collect_sets, stable_order};

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
pub(super) struct VecEngine<'a> {
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
    pub(super) fn new(
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
    pub(super) fn match_rounds(&mut self, ord: &[usize], k: usize) -> Vec<(usize, Vec<usize>)> {
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
    pub(super) fn match_closest(&mut self, k: usize) -> Vec<(usize, Vec<usize>)> {
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
    pub(super) fn match_with_replacement(&self, k: usize) -> Vec<(usize, Vec<usize>)> {
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
        libcxx::partial_sort(&mut ind, k, &less);
        ind[..k].iter().map(|&i| ids[i]).collect()
    } else {
        libcxx::sort(&mut ind, &less);
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
