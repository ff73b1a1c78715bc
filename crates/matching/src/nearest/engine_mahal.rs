//! The Mahalanobis engine (`mahvars`): candidates within the propensity caliper and the exact cell, ranked
//! by squared Mahalanobis distance with MatchIt's "found last wins" tie rule.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::{collect_sets, stable_order};
use crate::distance::Mahalanobis;

/// Mahalanobis matching within the propensity caliper (`mahvars`).
#[derive(Debug)]
pub(super) struct MahalEngine<'a> {
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
    pub(super) fn new(
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

    pub(super) fn match_rounds(&self, ord: &[usize], k: usize) -> Vec<(usize, Vec<usize>)> {
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

    pub(super) fn match_with_replacement(&self, k: usize) -> Vec<(usize, Vec<usize>)> {
        let treated: Vec<usize> = (0..self.d.len()).filter(|&i| self.treat[i] && !self.discarded[i]).collect();
        treated.par_iter().map(|&t| (t, Self::best(self.candidates(t, None), k))).collect()
    }
}
