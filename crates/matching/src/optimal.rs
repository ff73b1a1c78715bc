//! Optimal pair and k:1 matching: the matching of minimum total absolute distance difference.
//!
//! Like optmatch's `pairmatch` (and MatchIt's `method = "optimal"` with `ratio = k`), every treated unit gets
//! up to `ratio` distinct controls, each control serves at most one treated unit, and among the matchings
//! with the most pairs the one with the smallest sum of `|d_t − d_c|` is returned. A caliper (inclusive,
//! same widths as [`crate::nearest`]) and exact cells forbid pairs; common-support discarding applies first.
//!
//! The solver is an exact min-cost max-flow (successive shortest paths with Dijkstra and node potentials),
//! solved separately in each exact cell. Without a caliper it runs on the sorted line of units (O(n) edges,
//! see `solve_cell_line`), costing O(F · n log n) for F matched pairs; with a caliper, on the bipartite
//! graph of the pairs within the caliper (O(F · E log V)). It is meant for problems up to tens of
//! thousands of units per cell; the greedy [`crate::nearest`] matcher is the one that scales to millions. Ties between equally good matchings are resolved
//! deterministically (by input order), not as optmatch would.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::error::MethodError;
use crate::matches::{MatchedSet, Matches, Problem};
use crate::nearest::{Caliper, NearestOptions, caliper_width};
use crate::support::{Discard, discard};

/// Options of [`optimal`]. `Default` is pair matching with no caliper and no discarding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimalOptions {
    /// Controls per treated unit (1 = pair matching, the default); 0 is an error.
    pub ratio: usize,
    /// Caliper on the distance. Default none.
    pub caliper: Option<Caliper>,
    /// Common-support rule. Default [`Discard::None`].
    pub discard: Discard,
}

impl Default for OptimalOptions {
    fn default() -> Self {
        Self { ratio: 1, caliper: None, discard: Discard::None }
    }
}

/// The options optimal matching shares with nearest-neighbour matching (ratio, caliper, discard); order,
/// replacement and seed do not apply to it.
impl From<&NearestOptions> for OptimalOptions {
    fn from(o: &NearestOptions) -> Self {
        Self { ratio: o.ratio, caliper: o.caliper, discard: o.discard.clone() }
    }
}

impl OptimalOptions {
    /// Pair matching (ratio 1) with no caliper and no discarding: the default.
    pub fn pair() -> Self {
        Self::default()
    }
}

/// Optimal k:1 matching without replacement (see the module documentation).
pub fn optimal(problem: &Problem<'_>, opts: &OptimalOptions) -> Result<Matches, MethodError> {
    crate::validate::problem(problem)?;
    if opts.ratio == 0 {
        return Err(MethodError::RatioZero);
    }
    if problem.mahvars.is_some() {
        return Err(MethodError::Unsupported("mahvars with optimal matching"));
    }
    let n = problem.len();
    let d = problem.distance;
    let treat = problem.treat;
    let discarded = discard(d, treat, &opts.discard)?;
    let width = opts.caliper.map(|c| caliper_width(c, d, &discarded)).transpose()?;
    let cell = |i: usize| problem.exact.map_or(0, |e| e[i]);
    let mut cells: Vec<u32> = (0..n).map(cell).collect();
    cells.sort_unstable();
    cells.dedup();
    let mut sets = Vec::new();
    let mut any_common = false;
    let mut controls_short = false;
    for &c in &cells {
        let t: Vec<usize> = (0..n).filter(|&i| treat[i] && !discarded[i] && cell(i) == c).collect();
        let k: Vec<usize> = (0..n).filter(|&i| !treat[i] && !discarded[i] && cell(i) == c).collect();
        let n1 = (0..n).filter(|&i| treat[i] && cell(i) == c).count();
        let n0 = (0..n).filter(|&i| !treat[i] && cell(i) == c).count();
        if n1 > 0 && n0 > 0 {
            any_common = true;
        }
        if n1 > 0 && n0 < opts.ratio.saturating_mul(n1) {
            controls_short = true;
        }
        if t.is_empty() || k.is_empty() {
            continue;
        }
        sets.extend(match width {
            None => solve_cell_line(d, &t, &k, opts.ratio),
            Some(w) => solve_cell(d, &t, &k, opts.ratio, Some(w)),
        });
    }
    if !any_common {
        return Err(MethodError::NoCommonCell);
    }
    if sets.is_empty() {
        return Err(MethodError::NothingMatched);
    }
    Ok(Matches::from_sets(problem, sets, discarded, false, opts.ratio, width, controls_short))
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    to: usize,
    rev: usize,
    cap: usize,
    cost: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct State {
    dist: f64,
    node: usize,
}

impl Eq for State {}

impl Ord for State {
    fn cmp(&self, other: &Self) -> Ordering {
        other.dist.partial_cmp(&self.dist).unwrap_or(Ordering::Equal).then(other.node.cmp(&self.node))
    }
}

impl PartialOrd for State {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn add_edge(g: &mut [Vec<Edge>], from: usize, to: usize, cap: usize, cost: f64) {
    let (rf, rt) = (g[to].len(), g[from].len());
    g[from].push(Edge { to, rev: rf, cap, cost });
    g[to].push(Edge { to: from, rev: rt, cap: 0, cost: -cost });
}

/// Min-cost max-flow on one cell: source → treated (capacity `ratio`) → allowed controls → sink.
fn solve_cell(d: &[f64], treated: &[usize], controls: &[usize], ratio: usize, width: Option<f64>) -> Vec<MatchedSet> {
    let (nt, nc) = (treated.len(), controls.len());
    let (source, sink) = (0, nt + nc + 1);
    let mut g: Vec<Vec<Edge>> = vec![Vec::new(); nt + nc + 2];
    for (i, &t) in treated.iter().enumerate() {
        add_edge(&mut g, source, 1 + i, ratio, 0.0);
        for (j, &c) in controls.iter().enumerate() {
            let cost = (d[t] - d[c]).abs();
            if width.is_none_or(|w| cost <= w) {
                add_edge(&mut g, 1 + i, 1 + nt + j, 1, cost);
            }
        }
    }
    for j in 0..nc {
        add_edge(&mut g, 1 + nt + j, sink, 1, 0.0);
    }
    min_cost_flow(&mut g, source, sink);
    let mut sets = Vec::new();
    for (i, &t) in treated.iter().enumerate() {
        let mut cs: Vec<usize> = g[1 + i]
            .iter()
            .filter(|e| e.to > nt && e.to <= nt + nc && e.cap == 0 && e.cost >= 0.0)
            .map(|e| controls[e.to - 1 - nt])
            .collect();
        cs.sort_by(|&a, &b| {
            (d[t] - d[a]).abs().partial_cmp(&(d[t] - d[b]).abs()).unwrap_or(Ordering::Equal).then(a.cmp(&b))
        });
        if !cs.is_empty() {
            sets.push(MatchedSet { treated: t, controls: cs });
        }
    }
    sets
}

/// Successive shortest paths (Dijkstra with node potentials; all initial costs are non-negative), one unit
/// per augmentation, until the sink is unreachable: a minimum-cost maximum flow.
fn min_cost_flow(g: &mut [Vec<Edge>], source: usize, sink: usize) {
    let v = g.len();
    let mut h = vec![0.0f64; v];
    let mut dist = vec![f64::INFINITY; v];
    let mut prev: Vec<(usize, usize)> = vec![(usize::MAX, usize::MAX); v];
    loop {
        dist.fill(f64::INFINITY);
        dist[source] = 0.0;
        let mut heap = BinaryHeap::new();
        heap.push(State { dist: 0.0, node: source });
        while let Some(State { dist: du, node: u }) = heap.pop() {
            if du > dist[u] {
                continue;
            }
            for (ei, e) in g[u].iter().enumerate() {
                if e.cap == 0 {
                    continue;
                }
                // Reduced costs are non-negative in exact arithmetic; clamp rounding noise.
                let nd = du + (e.cost + h[u] - h[e.to]).max(0.0);
                if nd < dist[e.to] {
                    dist[e.to] = nd;
                    prev[e.to] = (u, ei);
                    heap.push(State { dist: nd, node: e.to });
                }
            }
        }
        if !dist[sink].is_finite() {
            break;
        }
        for (hv, dv) in h.iter_mut().zip(&dist) {
            if dv.is_finite() {
                *hv += dv;
            }
        }
        let mut x = sink;
        while x != source {
            let (u, ei) = prev[x];
            g[u][ei].cap -= 1;
            let r = g[u][ei].rev;
            g[x][r].cap += 1;
            x = u;
        }
    }
}

/// Min-cost max-flow on the line (no caliper): units in sorted order joined to their neighbours by edges
/// costing the gap, so a flow's cost is the total distance its units travel. This has O(n) edges instead of
/// n₁·n₀, with the same optimum as the bipartite problem. It fixes how many controls each treated unit gets
/// and which controls are used; pairing supplies and demands in sorted order (optimal for |x − y| on a
/// line) then yields the pairs.
fn solve_cell_line(d: &[f64], treated: &[usize], controls: &[usize], ratio: usize) -> Vec<MatchedSet> {
    let mut units: Vec<usize> = treated.iter().chain(controls).copied().collect();
    units.sort_by(|&a, &b| d[a].partial_cmp(&d[b]).unwrap_or(Ordering::Equal).then(a.cmp(&b)));
    let is_treated = |u: usize| treated.binary_search(&u).is_ok();
    let m = units.len();
    let (source, sink) = (0, m + 1);
    let big = ratio.saturating_mul(treated.len()).saturating_add(1);
    let mut g: Vec<Vec<Edge>> = vec![Vec::new(); m + 2];
    let mut supply_edge = vec![usize::MAX; m];
    let mut demand_edge = vec![usize::MAX; m];
    for (i, &u) in units.iter().enumerate() {
        if is_treated(u) {
            supply_edge[i] = g[source].len();
            add_edge(&mut g, source, 1 + i, ratio, 0.0);
        } else {
            demand_edge[i] = g[1 + i].len();
            add_edge(&mut g, 1 + i, sink, 1, 0.0);
        }
        if i + 1 < m {
            let gap = d[units[i + 1]] - d[u];
            add_edge(&mut g, 1 + i, 2 + i, big, gap);
            add_edge(&mut g, 2 + i, 1 + i, big, gap);
        }
    }
    min_cost_flow(&mut g, source, sink);
    let mut supplies = Vec::new();
    let mut demands = Vec::new();
    for (i, &u) in units.iter().enumerate() {
        if supply_edge[i] != usize::MAX {
            let sent = ratio - g[source][supply_edge[i]].cap;
            supplies.extend(std::iter::repeat_n(u, sent));
        } else if g[1 + i][demand_edge[i]].cap == 0 {
            demands.push(u);
        }
    }
    let mut by_treated: Vec<(usize, Vec<usize>)> = Vec::new();
    for (&t, &c) in supplies.iter().zip(&demands) {
        match by_treated.last_mut() {
            Some((lt, cs)) if *lt == t => cs.push(c),
            _ => by_treated.push((t, vec![c])),
        }
    }
    by_treated
        .into_iter()
        .map(|(t, mut cs)| {
            cs.sort_by(|&a, &b| {
                (d[t] - d[a]).abs().partial_cmp(&(d[t] - d[b]).abs()).unwrap_or(Ordering::Equal).then(a.cmp(&b))
            });
            MatchedSet { treated: t, controls: cs }
        })
        .collect()
}
