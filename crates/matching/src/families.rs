//! Families of similar schools: for every school, the `k` schools most like it on a set of intake variables
//! (the local-authority analyst's "family of schools"), optionally only among schools of the same group
//! (region, phase).
//!
//! Distances are Euclidean after a linear map of the variables: each standardized by its SD over all schools
//! ([`FamilyMetric::Standardized`]), or whitened by the Cholesky factor of their covariance over all schools
//! ([`FamilyMetric::Mahalanobis`], the same transform as matching's `mahvars` with one group, so squared
//! Euclidean distances of the mapped rows are squared Mahalanobis distances), or, with
//! [`FamilyMetric::Propensity`], the difference of the schools' linear propensity scores (the logit of a
//! logistic regression of a 0/1 column, such as taking part in a programme, on the variables, fitted as R's
//! `glm` fits it) divided by their SD over all schools: schools alike in their chance of taking part, as
//! in propensity-score matching. All three are in SD units. The k nearest neighbours come
//! from a k-d tree per group (median splits on the widest coordinate), so a national table of 16,800 schools
//! takes well under a second; ties in distance are broken by id (as text, ascending), and a school is never
//! its own member. Every query is independent and run in parallel; results do not depend on the thread count.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use ndarray::Array2;
use psmeval_frame::{Table, TableError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::distance::mahalanobis_transform;
use crate::propensity::{Link, PropensityFit, fit_binomial_glm};

/// How distances between schools are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FamilyMetric {
    /// Euclidean on the variables divided by their SDs (over all schools).
    Standardized,
    /// Mahalanobis on the covariance of the variables over all schools.
    #[default]
    Mahalanobis,
    /// Absolute difference of the linear propensity scores (logit link) of a 0/1 column, in SDs of the
    /// score over all schools.
    Propensity,
}

/// One member of a school's family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The member's id.
    pub id: String,
    /// 1 = the nearest.
    pub rank: usize,
    /// Its distance from the school, in the metric's units (SDs for both metrics).
    pub distance: f64,
}

/// A school's family and a summary of its intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// The school's id.
    pub id: String,
    /// The school's group (`within`), when families are formed within groups.
    pub group: Option<String>,
    /// The members, nearest first.
    pub members: Vec<Member>,
    /// Mean of each variable over the members (in the order of [`Families::variables`]).
    pub mean: Vec<f64>,
    /// SD of each variable over the members (n − 1 denominator; 0 for a family of one).
    pub sd: Vec<f64>,
    /// Mean distance of the members from the school.
    pub mean_distance: f64,
    /// The school's own value of each variable.
    #[serde(default)]
    pub values: Vec<f64>,
    /// The school's propensity score (fitted probability), with [`FamilyMetric::Propensity`].
    #[serde(default)]
    pub propensity: Option<f64>,
}

/// Every school's family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Families {
    /// The metric used.
    pub metric: FamilyMetric,
    /// Members per family.
    pub k: usize,
    /// The intake variables, in order.
    pub variables: Vec<String>,
    /// The grouping column families were formed within, if any.
    pub within: Option<String>,
    /// Schools (one family each).
    pub n_schools: usize,
    /// Families in the order of the input rows.
    pub families: Vec<Family>,
    /// Mean of each variable over all schools.
    #[serde(default)]
    pub center: Vec<f64>,
    /// SD of each variable over all schools (n − 1 denominator).
    #[serde(default)]
    pub scale: Vec<f64>,
    /// The 0/1 column of the propensity model, with [`FamilyMetric::Propensity`].
    #[serde(default)]
    pub treat: Option<String>,
    /// The propensity model's coefficients (`treat ~ variables`, logit link).
    #[serde(default)]
    pub propensity: Vec<crate::propensity::Coefficient>,
}

/// A family search that cannot be run, naming the variable, school or group at fault.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum FamilyError {
    /// `k` is zero.
    #[error("k must be at least 1 (members per family)")]
    ZeroK,
    /// No intake variables.
    #[error("no intake variables given")]
    NoVariables,
    /// A column could not be used.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A variable is missing or not finite for a school.
    #[error("`{variable}` is missing or not finite for school `{id}` (row {row}); fill it in or leave the school out")]
    Missing {
        /// The variable.
        variable: String,
        /// The school.
        id: String,
        /// 1-based row.
        row: usize,
    },
    /// A variable has the same value for every school: it cannot tell schools apart.
    #[error("`{variable}` has the same value ({value}) for every school; leave it out")]
    Constant {
        /// The variable.
        variable: String,
        /// Its value.
        value: f64,
    },
    /// The covariance of the variables is singular (one is a linear combination of others).
    #[error("the intake variables are collinear (their covariance is singular); leave one of them out")]
    Singular,
    /// A group has too few schools for families of k.
    #[error("{where_} has {schools} schools: a family of k = {k} needs at least {} (lower --k)", k + 1)]
    TooFewSchools {
        /// `the table` or `group `London``.
        where_: String,
        /// Schools there.
        schools: usize,
        /// Members asked for.
        k: usize,
    },
    /// The id column repeats an id or misses one.
    #[error("{0}")]
    Ids(String),
    /// The propensity metric without a 0/1 column to model.
    #[error("the propensity metric needs the 0/1 column whose probability it models (--treat COLUMN)")]
    NoTreatment,
    /// The propensity model cannot be fitted.
    #[error("the propensity model `{treat} ~ {variables}`: {reason}")]
    Propensity {
        /// The 0/1 column.
        treat: String,
        /// The variables, joined by ` + `.
        variables: String,
        /// What the fit reported.
        reason: String,
    },
}

/// Families of the schools in `table` (one row per school) on the numeric columns `variables`, ids from the
/// column `id`, optionally within the groups of the column `within` (see the module documentation);
/// `treat` is the 0/1 column of the propensity model, needed by [`FamilyMetric::Propensity`] only.
pub fn families(
    table: &Table,
    id: &str,
    variables: &[String],
    within: Option<&str>,
    k: usize,
    metric: FamilyMetric,
    treat: Option<&str>,
) -> Result<Families, FamilyError> {
    if k == 0 {
        return Err(FamilyError::ZeroK);
    }
    if variables.is_empty() {
        return Err(FamilyError::NoVariables);
    }
    let ids = table.unique_ids(id).map_err(|e| FamilyError::Ids(e.to_string()))?;
    let n = ids.len();
    if n <= k {
        return Err(FamilyError::TooFewSchools { where_: "the table".into(), schools: n, k });
    }
    let mut x = Array2::<f64>::zeros((n, variables.len()));
    for (j, v) in variables.iter().enumerate() {
        let col = table.numeric(v)?;
        for i in 0..n {
            if !col[i].is_finite() {
                return Err(FamilyError::Missing { variable: v.clone(), id: ids[i].to_string(), row: i + 1 });
            }
            x[[i, j]] = col[i];
        }
        if col.iter().all(|&c| c == col[0]) {
            return Err(FamilyError::Constant { variable: v.clone(), value: col[0] });
        }
    }
    let groups: Vec<Option<String>> = match within {
        None => vec![None; n],
        Some(w) => {
            let col = table.column(w)?;
            (0..n)
                .map(|i| {
                    col.text_at(i).map(Some).ok_or_else(|| {
                        FamilyError::Ids(format!("`{w}` is missing for school `{}` (row {})", ids[i], i + 1))
                    })
                })
                .collect::<Result<_, _>>()?
        }
    };
    let treatment = match (metric, treat) {
        (FamilyMetric::Propensity, None) => return Err(FamilyError::NoTreatment),
        (FamilyMetric::Propensity, Some(t)) => {
            Some((t, table.binary(t)?.into_iter().map(|b| f64::from(u8::from(b))).collect::<Vec<f64>>()))
        }
        _ => None,
    };
    let (coords, fit) = coordinates(&x, variables, metric, treatment.as_ref().map(|(t, y)| (*t, y.as_slice())))?;
    // Rank of each id in text order: the tie-break.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
    let mut id_rank = vec![0u32; n];
    for (r, &i) in order.iter().enumerate() {
        id_rank[i] = r as u32;
    }
    let mut by_group: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by_group.entry(g.as_deref()).or_default().push(i);
    }
    for (g, members) in &by_group {
        if members.len() <= k {
            let where_ = match g {
                None => "the table".to_string(),
                Some(g) => format!("group `{g}` of `{}`", within.unwrap_or_default()),
            };
            return Err(FamilyError::TooFewSchools { where_, schools: members.len(), k });
        }
    }
    let d = coords.ncols();
    let points: Vec<f64> = coords.iter().copied().collect();
    let mut nearest: Vec<Vec<(f64, usize)>> = vec![Vec::new(); n];
    for members in by_group.values() {
        let tree = KdTree::new(&points, d, members.clone());
        let found: Vec<(usize, Vec<(f64, usize)>)> =
            members.par_iter().map(|&i| (i, tree.nearest(&points, d, i, k, &id_rank))).collect();
        for (i, f) in found {
            nearest[i] = f;
        }
    }
    let families = (0..n)
        .map(|i| {
            let found = &nearest[i];
            let members: Vec<Member> = found
                .iter()
                .enumerate()
                .map(|(r, &(d2, j))| Member { id: ids[j].to_string(), rank: r + 1, distance: d2.sqrt() })
                .collect();
            let m = found.len() as f64;
            let mean: Vec<f64> =
                (0..variables.len()).map(|v| found.iter().map(|&(_, j)| x[[j, v]]).sum::<f64>() / m).collect();
            let sd: Vec<f64> = (0..variables.len())
                .map(|v| {
                    if found.len() < 2 {
                        return 0.0;
                    }
                    let ss: f64 = found.iter().map(|&(_, j)| (x[[j, v]] - mean[v]).powi(2)).sum();
                    (ss / (m - 1.0)).sqrt()
                })
                .collect();
            let mean_distance = members.iter().map(|mb| mb.distance).sum::<f64>() / m;
            Family {
                id: ids[i].to_string(),
                group: groups[i].clone(),
                members,
                mean,
                sd,
                mean_distance,
                values: x.row(i).to_vec(),
                propensity: fit.as_ref().map(|f| f.fitted[i]),
            }
        })
        .collect();
    let (center, scale) = (0..variables.len()).map(|j| mean_sd(x.column(j).iter().copied())).unzip();
    Ok(Families {
        metric,
        k,
        variables: variables.to_vec(),
        within: within.map(str::to_string),
        n_schools: n,
        families,
        center,
        scale,
        treat: treatment.map(|(t, _)| t.to_string()),
        propensity: fit.map(|f| f.coefficients).unwrap_or_default(),
    })
}

/// The points whose Euclidean distances are the metric's distances (one row per school), and the
/// propensity fit with [`FamilyMetric::Propensity`] (`treat` is then the 0/1 column's name and values).
fn coordinates(
    x: &Array2<f64>,
    variables: &[String],
    metric: FamilyMetric,
    treat: Option<(&str, &[f64])>,
) -> Result<(Array2<f64>, Option<PropensityFit>), FamilyError> {
    let n = x.nrows();
    let coords = match (metric, treat) {
        (FamilyMetric::Standardized, _) => standardize(x),
        (FamilyMetric::Mahalanobis, _) => {
            mahalanobis_transform(x.view(), &vec![false; n], &vec![false; n]).map_err(|_| FamilyError::Singular)?
        }
        (FamilyMetric::Propensity, None) => return Err(FamilyError::NoTreatment),
        (FamilyMetric::Propensity, Some((t, y))) => {
            let design =
                Array2::from_shape_fn((n, variables.len() + 1), |(i, j)| if j == 0 { 1.0 } else { x[[i, j - 1]] });
            let mut names = vec!["(Intercept)".to_string()];
            names.extend(variables.iter().cloned());
            let fail = |reason: String| FamilyError::Propensity {
                treat: t.to_string(),
                variables: variables.join(" + "),
                reason,
            };
            let fit = fit_binomial_glm(design.view(), &names, y, None, Link::Logit).map_err(|e| fail(e.to_string()))?;
            let (mean, sd) = mean_sd(fit.linear().iter().copied());
            if !(sd > 0.0 && sd.is_finite()) {
                return Err(fail("the scores do not vary (the variables do not predict it)".into()));
            }
            let z = Array2::from_shape_fn((n, 1), |(i, _)| (fit.linear()[i] - mean) / sd);
            return Ok((z, Some(fit)));
        }
    };
    if coords.ncols() != variables.len() {
        return Err(FamilyError::Singular);
    }
    Ok((coords, None))
}

/// Mean and SD (n − 1 denominator) of the values.
fn mean_sd(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count() as f64;
    let mean = values.clone().sum::<f64>() / n;
    (mean, (values.map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
}

/// Each column minus its mean, divided by its SD (n − 1).
fn standardize(x: &Array2<f64>) -> Array2<f64> {
    let mut z = x.clone();
    for j in 0..x.ncols() {
        let (mean, sd) = mean_sd(x.column(j).iter().copied());
        z.column_mut(j).iter_mut().for_each(|v| *v = (*v - mean) / sd);
    }
    z
}

/// Squared Euclidean distance between points `a` and `b` of a row-major `d`-column array.
fn dist2(points: &[f64], d: usize, a: usize, b: usize) -> f64 {
    points[a * d..a * d + d].iter().zip(&points[b * d..b * d + d]).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// A candidate neighbour ordered by (distance, id rank): the heap's top is the worst kept.
#[derive(Clone, Copy)]
struct Candidate {
    d2: f64,
    rank: u32,
    index: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.d2.total_cmp(&other.d2).then(self.rank.cmp(&other.rank))
    }
}

/// A k-d tree over some of the points: nodes split at the median of their widest coordinate.
struct KdTree {
    /// Point indices, arranged so that every node covers a contiguous range.
    index: Vec<usize>,
    nodes: Vec<Node>,
}

struct Node {
    start: usize,
    end: usize,
    /// Bounding box of the node's points: `lo[k]`, `hi[k]` per coordinate.
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// Children (none for a leaf).
    children: Option<(usize, usize)>,
}

impl Node {
    /// Squared distance from point `x` to the node's bounding box (0 inside it).
    fn gap2(&self, x: &[f64]) -> f64 {
        x.iter()
            .zip(self.lo.iter().zip(&self.hi))
            .map(|(&v, (&lo, &hi))| {
                let gap = if v < lo {
                    lo - v
                } else if v > hi {
                    v - hi
                } else {
                    0.0
                };
                gap * gap
            })
            .sum()
    }
}

const LEAF: usize = 16;

impl KdTree {
    fn new(points: &[f64], d: usize, index: Vec<usize>) -> KdTree {
        let mut tree = KdTree { index, nodes: Vec::new() };
        let n = tree.index.len();
        tree.build(points, d, 0, n);
        tree
    }

    fn build(&mut self, points: &[f64], d: usize, start: usize, end: usize) -> usize {
        let mut lo = vec![f64::INFINITY; d];
        let mut hi = vec![f64::NEG_INFINITY; d];
        for &i in &self.index[start..end] {
            for c in 0..d {
                lo[c] = lo[c].min(points[i * d + c]);
                hi[c] = hi[c].max(points[i * d + c]);
            }
        }
        let id = self.nodes.len();
        self.nodes.push(Node { start, end, lo: lo.clone(), hi: hi.clone(), children: None });
        if end - start > LEAF {
            let axis = (0..d).max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b]))).unwrap_or(0);
            let mid = start + (end - start) / 2;
            self.index[start..end]
                .select_nth_unstable_by(mid - start, |&a, &b| points[a * d + axis].total_cmp(&points[b * d + axis]));
            let left = self.build(points, d, start, mid);
            let right = self.build(points, d, mid, end);
            self.nodes[id].children = Some((left, right));
        }
        id
    }

    /// The `k` nearest points to point `q` (excluding itself), nearest first, as (squared distance, index).
    fn nearest(&self, points: &[f64], d: usize, q: usize, k: usize, rank: &[u32]) -> Vec<(f64, usize)> {
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
        self.search(0, points, d, q, k, rank, &mut heap);
        let mut out: Vec<Candidate> = heap.into_vec();
        out.sort();
        out.into_iter().map(|c| (c.d2, c.index)).collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        node: usize,
        points: &[f64],
        d: usize,
        q: usize,
        k: usize,
        rank: &[u32],
        heap: &mut BinaryHeap<Candidate>,
    ) {
        let nd = &self.nodes[node];
        // Smallest squared distance from q to the node's box; a node that cannot beat the worst kept (ties
        // included, so the id rule sees every tied candidate) is skipped.
        let bound = nd.gap2(&points[q * d..q * d + d]);
        if heap.len() == k && heap.peek().is_some_and(|w| bound > w.d2) {
            return;
        }
        match nd.children {
            None => {
                for &j in &self.index[nd.start..nd.end] {
                    if j == q {
                        continue;
                    }
                    let c = Candidate { d2: dist2(points, d, q, j), rank: rank[j], index: j };
                    if heap.len() < k {
                        heap.push(c);
                    } else if heap.peek().is_some_and(|w| c < *w) {
                        heap.pop();
                        heap.push(c);
                    }
                }
            }
            Some((left, right)) => {
                // Visit the child whose box is nearer first.
                let near = |child: usize| self.nodes[child].gap2(&points[q * d..q * d + d]);
                let (first, second) = if near(left) <= near(right) { (left, right) } else { (right, left) };
                self.search(first, points, d, q, k, rank, heap);
                self.search(second, points, d, q, k, rank, heap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use psmeval_frame::Column;

    fn table(n: usize, seed: u64) -> Table {
        // A small deterministic generator: values with many exact ties (rounded to 0.5).
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 * 8.0).round() / 2.0
        };
        let a: Vec<f64> = (0..n).map(|_| next()).collect();
        let b: Vec<f64> = (0..n).map(|_| next()).collect();
        let c: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a + 0.5 * b + next()).collect();
        let region: Vec<Option<String>> = (0..n).map(|i| Some(["N", "S", "L"][i % 3].to_string())).collect();
        Table::new()
            .with("id", Column::Text((0..n).map(|i| Some(format!("s{:04}", (i * 7919) % 10_000))).collect()))
            .unwrap()
            .with("a", Column::Numeric(a))
            .unwrap()
            .with("b", Column::Numeric(b))
            .unwrap()
            .with("c", Column::Numeric(c))
            .unwrap()
            .with("region", Column::Text(region))
            .unwrap()
    }

    /// Every pair, sorted by (distance, id): the definition the tree must reproduce.
    fn brute_force(
        t: &Table,
        vars: &[String],
        within: Option<&str>,
        k: usize,
        metric: FamilyMetric,
        treat: Option<(&str, &[f64])>,
    ) -> Vec<Vec<String>> {
        let ids = t.unique_ids("id").unwrap();
        let n = ids.len();
        let mut x = Array2::zeros((n, vars.len()));
        for (j, v) in vars.iter().enumerate() {
            for (i, &val) in t.numeric(v).unwrap().iter().enumerate() {
                x[[i, j]] = val;
            }
        }
        let (y, _) = coordinates(&x, vars, metric, treat).unwrap();
        let pts: Vec<f64> = y.iter().copied().collect();
        let d = y.ncols();
        let group = |i: usize| within.map(|w| t.column(w).unwrap().text_at(i));
        (0..n)
            .map(|i| {
                let mut others: Vec<usize> = (0..n).filter(|&j| j != i && group(j) == group(i)).collect();
                others
                    .sort_by(|&a, &b| dist2(&pts, d, i, a).total_cmp(&dist2(&pts, d, i, b)).then(ids[a].cmp(&ids[b])));
                others.into_iter().take(k).map(|j| ids[j].to_string()).collect()
            })
            .collect()
    }

    #[test]
    fn the_tree_finds_the_brute_force_families_with_ties_broken_by_id() {
        let vars: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let t = with_treatment(table(700, 3));
        let lead = t.numeric("lead").unwrap().to_vec();
        for metric in [FamilyMetric::Standardized, FamilyMetric::Mahalanobis, FamilyMetric::Propensity] {
            for within in [None, Some("region")] {
                for k in [1, 5, 20] {
                    let f = families(&t, "id", &vars, within, k, metric, Some("lead")).unwrap();
                    let got: Vec<Vec<String>> =
                        f.families.iter().map(|fam| fam.members.iter().map(|m| m.id.clone()).collect()).collect();
                    let want = brute_force(&t, &vars, within, k, metric, Some(("lead", &lead)));
                    assert_eq!(got, want, "{metric:?} {within:?} k={k}");
                    for fam in &f.families {
                        assert!(fam.members.iter().all(|m| m.id != fam.id), "never its own member");
                        assert!(fam.members.windows(2).all(|w| w[0].distance <= w[1].distance));
                        assert_eq!(fam.members.iter().map(|m| m.rank).collect::<Vec<_>>(), (1..=k).collect::<Vec<_>>());
                    }
                }
            }
        }
    }

    /// `table` with a 0/1 `lead` that depends on `a` and `b`.
    fn with_treatment(t: Table) -> Table {
        let (a, b) = (t.numeric("a").unwrap().to_vec(), t.numeric("b").unwrap().to_vec());
        let lead =
            (0..a.len()).map(|i| f64::from(u8::from(a[i] - 0.5 * b[i] + ((i * 37) % 11) as f64 / 3.0 > 4.0))).collect();
        t.with("lead", Column::Numeric(lead)).unwrap()
    }

    #[test]
    fn propensity_families_are_nearest_on_the_standardized_linear_score() {
        let vars: Vec<String> = vec!["a".into(), "b".into()];
        let t = with_treatment(table(200, 5));
        let f = families(&t, "id", &vars, None, 6, FamilyMetric::Propensity, Some("lead")).unwrap();
        let mut x = Array2::<f64>::ones((200, 3));
        for (j, v) in vars.iter().enumerate() {
            for (i, &val) in t.numeric(v).unwrap().iter().enumerate() {
                x[[i, j + 1]] = val;
            }
        }
        let names = ["(Intercept)", "a", "b"].map(String::from);
        let fit = fit_binomial_glm(x.view(), &names, t.numeric("lead").unwrap(), None, Link::Logit).unwrap();
        let lp = fit.linear();
        let mean = lp.iter().sum::<f64>() / 200.0;
        let sd = (lp.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 199.0).sqrt();
        let ids = t.unique_ids("id").unwrap();
        let fam = &f.families[17];
        assert!((fam.propensity.unwrap() - fit.fitted[17]).abs() < 1e-12);
        for m in &fam.members {
            let j = ids.iter().position(|i| **i == *m.id).unwrap();
            assert!((m.distance - (lp[17] - lp[j]).abs() / sd).abs() < 1e-9, "{m:?}");
        }
        assert_eq!(f.propensity.len(), 3);
        assert_eq!(f.treat.as_deref(), Some("lead"));
        assert_eq!(fam.values, vec![t.numeric("a").unwrap()[17], t.numeric("b").unwrap()[17]]);
        let e = families(&t, "id", &vars, None, 6, FamilyMetric::Propensity, None).unwrap_err();
        assert_eq!(e, FamilyError::NoTreatment);
        let e = families(&t, "id", &vars, None, 6, FamilyMetric::Propensity, Some("a")).unwrap_err().to_string();
        assert!(e.contains("must be 0 or 1"), "{e}");
        let all = t.clone().with("all", Column::Numeric(vec![1.0; 200])).unwrap();
        let e = families(&all, "id", &vars, None, 6, FamilyMetric::Propensity, Some("all")).unwrap_err().to_string();
        assert!(e.starts_with("the propensity model `all ~ a + b`"), "{e}");
    }

    #[test]
    fn families_match_the_r_brute_force_on_exam_schools() {
        // tests/reference/families_reference.R: members exactly (ties by id as text), distances 1e-9 for the
        // closed-form metrics and 1e-6 for the propensity metric (glm's convergence tolerance), fitted
        // probabilities 1e-6.
        let r: serde_json::Value =
            serde_json::from_str(include_str!("../tests/reference/families_reference.json")).unwrap();
        let rows = r["table"].as_array().unwrap();
        let col = |k: &str| Column::Numeric(rows.iter().map(|row| row[k].as_f64().unwrap()).collect());
        let t = Table::new()
            .with("id", Column::Text(rows.iter().map(|row| row["id"].as_str().map(String::from)).collect()))
            .unwrap()
            .with("lrt", col("lrt"))
            .unwrap()
            .with("girls", col("girls"))
            .unwrap()
            .with("size", col("size"))
            .unwrap()
            .with("sngl", col("sngl"))
            .unwrap();
        let vars: Vec<String> = ["lrt", "girls", "size"].map(String::from).to_vec();
        for (name, metric, tol) in [
            ("mahalanobis", FamilyMetric::Mahalanobis, 1e-9),
            ("standardized", FamilyMetric::Standardized, 1e-9),
            ("propensity", FamilyMetric::Propensity, 1e-6),
        ] {
            let f = families(&t, "id", &vars, None, 5, metric, Some("sngl")).unwrap();
            for (fam, want) in f.families.iter().zip(r[name].as_array().unwrap()) {
                let ids: Vec<&str> = fam.members.iter().map(|m| m.id.as_str()).collect();
                let want_ids: Vec<&str> =
                    want["members"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
                assert_eq!(ids, want_ids, "{name}: school {}", fam.id);
                for (m, d) in fam.members.iter().zip(want["distance"].as_array().unwrap()) {
                    assert!((m.distance - d.as_f64().unwrap()).abs() < tol, "{name}: {} {m:?} {d}", fam.id);
                }
            }
            if metric == FamilyMetric::Propensity {
                for (fam, p) in f.families.iter().zip(r["fitted"].as_array().unwrap()) {
                    assert!((fam.propensity.unwrap() - p.as_f64().unwrap()).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn summaries_are_the_members_means_and_sds() {
        let vars: Vec<String> = vec!["a".into(), "b".into()];
        let t = table(50, 9);
        let f = families(&t, "id", &vars, None, 4, FamilyMetric::Standardized, None).unwrap();
        let ids = t.unique_ids("id").unwrap();
        let a = t.numeric("a").unwrap();
        let fam = &f.families[10];
        let vals: Vec<f64> = fam.members.iter().map(|m| a[ids.iter().position(|i| **i == *m.id).unwrap()]).collect();
        let mean = vals.iter().sum::<f64>() / 4.0;
        let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
        assert!((fam.mean[0] - mean).abs() < 1e-12 && (fam.sd[0] - sd).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_named() {
        let vars: Vec<String> = vec!["a".into(), "b".into()];
        let t = table(30, 1);
        let e = families(&t, "id", &vars, None, 30, FamilyMetric::Mahalanobis, None).unwrap_err().to_string();
        assert_eq!(e, "the table has 30 schools: a family of k = 30 needs at least 31 (lower --k)");
        let e = families(&t, "id", &vars, Some("region"), 10, FamilyMetric::Mahalanobis, None).unwrap_err().to_string();
        assert!(e.contains("group `L` of `region` has 10 schools"), "{e}");
        assert_eq!(families(&t, "id", &vars, None, 0, FamilyMetric::Mahalanobis, None), Err(FamilyError::ZeroK));
        let flat = t.clone().with("flat", Column::Numeric(vec![2.0; 30])).unwrap();
        let e =
            families(&flat, "id", &["a".into(), "flat".into()], None, 3, FamilyMetric::Standardized, None).unwrap_err();
        assert_eq!(e.to_string(), "`flat` has the same value (2) for every school; leave it out");
        let a = t.numeric("a").unwrap().to_vec();
        let twice: Vec<f64> = a.iter().map(|v| 2.0 * v + 1.0).collect();
        let col = t.clone().with("a2", Column::Numeric(twice)).unwrap();
        let e = families(&col, "id", &["a".into(), "a2".into()], None, 3, FamilyMetric::Mahalanobis, None).unwrap_err();
        assert_eq!(e, FamilyError::Singular);
        let mut gap = a.clone();
        gap[4] = f64::NAN;
        let g = t.clone().with("gap", Column::Numeric(gap)).unwrap();
        let e = families(&g, "id", &["gap".into()], None, 3, FamilyMetric::Standardized, None).unwrap_err().to_string();
        assert!(e.contains("`gap` is missing") && e.contains("row 5"), "{e}");
        let e =
            families(&t, "id", &["region".into()], None, 3, FamilyMetric::Standardized, None).unwrap_err().to_string();
        assert!(e.contains("must be numeric"), "{e}");
    }
}
