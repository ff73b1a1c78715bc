//! Randomization (permutation) inference for a fixed-effect contrast of a linear mixed model whose treatment
//! is assigned to units (schools) that contain whole levels of every grouping factor.
//!
//! The estimate is the GLS estimate l'β̂ with the variance parameters θ held at the fit's estimates, so the
//! observed estimate is the fit's own. The statistic is that estimate divided by its cluster-robust (CR0)
//! standard error by unit, Σ_u (l'M X_u'Θ_u⁻¹ e_u)² with M = (X'Θ⁻¹X)⁻¹ and e the GLS residuals, recomputed
//! under every assignment ([`Statistic::Studentized`]), or the estimate itself ([`Statistic::Estimate`], the
//! default). The treatment is re-assigned many times (within strata, such as matched sets,
//! or across all units) and the statistic recomputed under each assignment; the p value is the share of
//! assignments, the observed one included, whose |statistic| is at least the observed one. Any statistic gives
//! an exact test of a sharp null when the assignment is as good as random among the units it is re-drawn
//! from. For a population-mean effect that varies across units, studentizing is the usual remedy for unequal
//! group sizes (Chung & Romano 2013 and Wu & Ding 2021 show it for complete randomization; for re-assignment
//! within matched sets and this GLS statistic it is a heuristic); measured here it is conservative for the
//! units' realized mean effect, which the estimate's intervals cover at about the nominal rate.
//!
//! No model is refitted and nothing is factored at the size of the data. Every column of the design is a
//! function of the unit's 0/1 treatment g, so X(g) = X(0) + g (X(1) − X(0)) exactly, and with Θ_u = D_u +
//! Z̃_u Z̃_u' the unit's working covariance (block diagonal across units by the nesting):
//!
//! ```text
//! X'Θ⁻¹X = Σ_u H_u(0) + Σ_{u treated} (H_u(1) − H_u(0)),   H_u(g) = X_u(g)'Θ_u⁻¹X_u(g),
//! ```
//!
//! and the same for X'Θ⁻¹r of each response r. The per-unit blocks are computed once (Woodbury on the unit's
//! few random effects); an assignment costs its treated units' p × p additions and one p × p Cholesky, and
//! the studentized statistic O(units × p²) more for the scores u_u = h_u(g) − H_u(g)β̂.
//!
//! Intervals invert the test of a sharp null: the programme changed outcomes by τ on the rows of a response
//! `d` (its effect pattern, such as treated pupils in programme years) and by given amounts on others, so the
//! outcome without it is y − τd − Σ c_k d_k. The estimate and the scores are linear in the outcome, so each
//! assignment's statistic is (A − τB) / √(quadratic in τ), kept as five numbers, and the interval (the τ not
//! rejected at 5%) is found by bisection on the same assignments for every τ.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dense::{backward_solve, cholesky, forward_solve};
use crate::error::MixedModelError;

/// How the treatment is re-assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permutation {
    /// Treatment labels are shuffled among the units of each stratum (each matched set keeps its number of
    /// treated units).
    WithinStrata,
    /// Treatment labels are shuffled among all units.
    All,
}

/// What the randomization needs, per frame row unless said otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RandomizationDesign<'a> {
    /// The model frame with every unit untreated (g = 0): its `x` (columns named as `terms`) and random terms.
    pub untreated: &'a psmeval_frame::ModelFrame,
    /// The same frame with every unit treated (g = 1): same rows, columns and random terms.
    pub treated: &'a psmeval_frame::ModelFrame,
    /// The fixed effects kept by the fit, in the order of its β.
    pub terms: &'a [String],
    /// The fit's relative covariance parameters θ, in lme4's order.
    pub theta: &'a [f64],
    /// Prior weights (none: all 1).
    pub weights: Option<&'a [f64]>,
    /// Responses whose GLS estimates are recomputed (the outcome and the effect patterns), each one per row.
    pub responses: &'a [Vec<f64>],
    /// The unit (school) of each row.
    pub unit: &'a [u32],
    /// The observed treatment of each row (constant within a unit).
    pub assigned: &'a [bool],
    /// The stratum (matched set) of each row (constant within a unit), for [`Permutation::WithinStrata`].
    pub strata: Option<&'a [u32]>,
}

/// The GLS estimates of every response under the observed and many re-drawn assignments.
#[derive(Debug, Clone, PartialEq)]
pub struct Randomization {
    /// The scheme.
    pub permutation: Permutation,
    /// Assignments drawn.
    pub draws: usize,
    /// Assignments under which X'Θ⁻¹X was singular (left out of every p value).
    pub failed: usize,
    /// Units and treated units.
    pub units: usize,
    /// Treated units.
    pub treated_units: usize,
    p: usize,
    m: usize,
    /// The per-unit blocks (for the studentized statistic's scores).
    blocks: Vec<UnitBlocks>,
    /// The observed assignment.
    observed: Assignment,
    /// The successful re-drawn assignments.
    drawn: Vec<Assignment>,
}

/// One assignment: its treated units, the Cholesky factor of X'Θ⁻¹X and β̂ of every response (p × m).
#[derive(Debug, Clone, PartialEq)]
struct Assignment {
    flags: Vec<bool>,
    chol: Vec<f64>,
    beta: Vec<f64>,
}

/// The statistic of a randomization test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// The estimate itself: exact under the sharp null, and its intervals condition on the units' realized
    /// effects (measured on the Maths Teacher Exchange design with an effect SD 1.5 times the mean effect: 94.7%
    /// coverage of the realized mean effect, benches/README.md). In theory it may under-cover a population-mean
    /// effect that varies across units when the treated and untreated groups differ much in size.
    #[default]
    Estimate,
    /// The estimate divided by its cluster-robust (CR0, by unit) standard error, recomputed under every
    /// assignment: exact under the sharp null like any statistic; aimed at a population-mean effect that varies
    /// across units with unequal group sizes (shown for complete randomization by Chung & Romano 2013 and Wu &
    /// Ding 2021; heuristic within matched sets); conservative for the realized mean effect (99.0% in the same
    /// run). Costs O(units × p²) per assignment and contrast.
    Studentized,
}

/// A randomization test of one contrast with its test-inversion interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomizationTest {
    /// The scheme.
    pub permutation: Permutation,
    /// The statistic.
    pub statistic: Statistic,
    /// Assignments used (draws that could be computed).
    pub draws: usize,
    /// The observed estimate l'β̂ (the fit's).
    pub estimate: f64,
    /// SD of the estimate over the re-drawn assignments under the null of no effect.
    pub null_sd: f64,
    /// p value of the null of no effect: (1 + draws with |statistic| ≥ observed) / (1 + draws).
    pub p_value: f64,
    /// Lower limit of the 95% interval: the smallest effect the test does not reject at 5%.
    pub ci_low: f64,
    /// Upper limit.
    pub ci_high: f64,
}

/// Per-unit blocks: H_u(0) and H_u(1) − H_u(0) (p × p), h_u(0) and h_u(1) − h_u(0) (p × m).
#[derive(Debug, Clone, PartialEq)]
struct UnitBlocks {
    h0: Vec<f64>,
    dh: Vec<f64>,
    r0: Vec<f64>,
    dr: Vec<f64>,
}

/// Assignments whose statistics are computed together (each unit's blocks read once per batch).
const BATCH: usize = 64;

fn mix(seed: u64, b: u64) -> u64 {
    // SplitMix64 of (seed, draw): independent streams per draw.
    let mut z = seed ^ b.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Randomization {
    /// Computes the per-unit blocks, the observed estimates and `draws` re-drawn assignments (at least 99),
    /// deterministic for a `seed` whatever the number of threads.
    pub fn new(
        design: &RandomizationDesign<'_>,
        permutation: Permutation,
        draws: usize,
        seed: u64,
    ) -> Result<Randomization, MixedModelError> {
        let bad = |reason: String| MixedModelError::Robust { reason };
        let f0 = design.untreated;
        let f1 = design.treated;
        let n = f0.y.len();
        if draws < 99 {
            return Err(bad(format!("{draws} randomization draws; at least 99 are needed")));
        }
        for (what, len) in [
            ("treated frame", f1.y.len()),
            ("unit", design.unit.len()),
            ("assigned", design.assigned.len()),
            ("weights", design.weights.map_or(n, <[f64]>::len)),
            ("strata", design.strata.map_or(n, <[u32]>::len)),
        ]
        .into_iter()
        .chain(design.responses.iter().map(|r| ("response", r.len())))
        {
            if len != n {
                return Err(MixedModelError::DimensionMismatch { what: what.into(), expected: n, found: len });
            }
        }
        for (what, rows) in [("untreated design", f0.x.nrows()), ("treated design", f1.x.nrows())].into_iter().chain(
            f0.random
                .iter()
                .chain(&f1.random)
                .flat_map(|t| [("random term", t.codes.len()), ("random term", t.z.nrows())]),
        ) {
            if rows != n {
                return Err(MixedModelError::DimensionMismatch { what: what.into(), expected: n, found: rows });
            }
        }
        // The random part must not depend on the treatment (a term such as `(1 + group | school)` would make
        // Θ depend on the assignment, which the per-unit blocks assume it does not).
        let same = |a: &psmeval_frame::RandomTerm, b: &psmeval_frame::RandomTerm| {
            a.group == b.group && a.names == b.names && a.codes == b.codes && a.z == b.z
        };
        if f0.random.len() != f1.random.len() || f0.random.iter().zip(&f1.random).any(|(a, b)| !same(a, b)) {
            return Err(bad(
                "the random effects depend on the treatment; randomization inference needs a random part without it"
                    .into(),
            ));
        }
        let m = design.responses.len();
        let p = design.terms.len();
        let column = |f: &psmeval_frame::ModelFrame, t: &String| {
            f.x_names.iter().position(|x| x == t).ok_or_else(|| {
                bad(format!(
                    "the fixed effect `{t}` is not in the design with every unit untreated or treated (a term that \
                     exists only for one treatment value, such as a factor of the treatment, cannot be re-assigned)"
                ))
            })
        };
        let cols0: Vec<usize> = design.terms.iter().map(|t| column(f0, t)).collect::<Result<_, _>>()?;
        let cols1: Vec<usize> = design.terms.iter().map(|t| column(f1, t)).collect::<Result<_, _>>()?;
        // Units → 0..U, with their treatment and stratum (constant within a unit).
        let mut ids: Vec<u32> = design.unit.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let n_units = ids.len();
        let unit: Vec<usize> = design.unit.iter().map(|u| ids.binary_search(u).expect("present")).collect();
        let mut treated = vec![None::<bool>; n_units];
        let mut stratum = vec![None::<u32>; n_units];
        for i in 0..n {
            let u = unit[i];
            if *treated[u].get_or_insert(design.assigned[i]) != design.assigned[i] {
                return Err(bad(format!("the treatment varies within unit {}", ids[u])));
            }
            if let Some(s) = design.strata
                && *stratum[u].get_or_insert(s[i]) != s[i]
            {
                return Err(bad(format!("unit {} lies in more than one stratum", ids[u])));
            }
        }
        let treated: Vec<bool> = treated.into_iter().map(|t| t.unwrap_or(false)).collect();
        let treated_units = treated.iter().filter(|&&t| t).count();
        if treated_units == 0 || treated_units == n_units {
            return Err(bad(format!(
                "{treated_units} of {n_units} units are treated; randomization needs treated and untreated units"
            )));
        }
        // Nesting: each level of each grouping factor lies in one unit; its position among the unit's
        // random effects.
        let lambdas = crate::fit::lambda_blocks(&f0.random, design.theta)?;
        let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); n_units];
        for (i, &u) in unit.iter().enumerate() {
            rows_of[u].push(i);
        }
        let mut position: Vec<Vec<usize>> = f0.random.iter().map(|t| vec![usize::MAX; t.levels.len()]).collect();
        let mut q_of = vec![0usize; n_units];
        let mut home: Vec<Vec<usize>> = f0.random.iter().map(|t| vec![usize::MAX; t.levels.len()]).collect();
        for (u, rows) in rows_of.iter().enumerate() {
            for (k, term) in f0.random.iter().enumerate() {
                for &i in rows {
                    let level = term.codes[i] as usize;
                    if home[k][level] == usize::MAX {
                        home[k][level] = u;
                        position[k][level] = q_of[u];
                        q_of[u] += term.names.len();
                    } else if home[k][level] != u {
                        return Err(bad(format!(
                            "level `{}` of the grouping factor `{}` lies in more than one unit: randomization by \
                             unit needs every random term nested in the unit",
                            term.levels[level], term.group
                        )));
                    }
                }
            }
        }
        let weight = |i: usize| design.weights.map_or(1.0, |w| w[i]);
        // Per unit: G = K'WK for K = [Z̃ X(0) X(1) R], then the Schur complement of I + Z̃'WZ̃.
        let blocks: Vec<UnitBlocks> = rows_of
            .par_iter()
            .enumerate()
            .map(|(u, rows)| {
                let qz = q_of[u];
                let r = 2 * p + m;
                let width = qz + r;
                let mut g = vec![0.0; width * width];
                let mut k = vec![0.0; width];
                for &i in rows {
                    k.iter_mut().for_each(|v| *v = 0.0);
                    for (t, term) in f0.random.iter().enumerate() {
                        let q = term.names.len();
                        let start = position[t][term.codes[i] as usize];
                        let lam = &lambdas[t];
                        for b in 0..q {
                            k[start + b] = (0..q).map(|a| term.z[[i, a]] * lam[a * q + b]).sum();
                        }
                    }
                    for j in 0..p {
                        k[qz + j] = f0.x[[i, cols0[j]]];
                        k[qz + p + j] = f1.x[[i, cols1[j]]];
                    }
                    for (j, resp) in design.responses.iter().enumerate() {
                        k[qz + 2 * p + j] = resp[i];
                    }
                    let w = weight(i);
                    for a in 0..width {
                        let ka = w * k[a];
                        if ka != 0.0 {
                            for b in a..width {
                                g[a * width + b] += ka * k[b];
                            }
                        }
                    }
                }
                for a in 0..width {
                    for b in 0..a {
                        g[a * width + b] = g[b * width + a];
                    }
                }
                // A = I + Z̃'WZ̃ = LL'; C = L⁻¹ Z̃'W[X R]; S = [X R]'W[X R] − C'C.
                let mut a = vec![0.0; qz * qz];
                for i in 0..qz {
                    for j in 0..qz {
                        a[i * qz + j] = g[i * width + j] + if i == j { 1.0 } else { 0.0 };
                    }
                }
                let ok = cholesky(&mut a, qz);
                debug_assert!(ok, "I + Z̃'WZ̃ is positive definite");
                let mut c = vec![0.0; qz * r];
                for i in 0..qz {
                    c[i * r..(i + 1) * r].copy_from_slice(&g[i * width + qz..(i + 1) * width]);
                }
                forward_solve(&a, qz, &mut c, r);
                let s = |x: usize, y: usize| {
                    g[(qz + x) * width + qz + y] - (0..qz).map(|l| c[l * r + x] * c[l * r + y]).sum::<f64>()
                };
                let mut blk = UnitBlocks {
                    h0: vec![0.0; p * p],
                    dh: vec![0.0; p * p],
                    r0: vec![0.0; p * m],
                    dr: vec![0.0; p * m],
                };
                for x in 0..p {
                    for y in 0..p {
                        let h0 = s(x, y);
                        blk.h0[x * p + y] = h0;
                        blk.dh[x * p + y] = s(p + x, p + y) - h0;
                    }
                    for y in 0..m {
                        let r0 = s(x, 2 * p + y);
                        blk.r0[x * m + y] = r0;
                        blk.dr[x * m + y] = s(p + x, 2 * p + y) - r0;
                    }
                }
                blk
            })
            .collect();
        let mut base_h = vec![0.0; p * p];
        let mut base_r = vec![0.0; p * m];
        for b in &blocks {
            base_h.iter_mut().zip(&b.h0).for_each(|(s, x)| *s += x);
            base_r.iter_mut().zip(&b.r0).for_each(|(s, x)| *s += x);
        }
        // β̂ of every response under an assignment (treated flags per unit).
        let estimate = |flags: Vec<bool>| -> Option<Assignment> {
            let mut h = base_h.clone();
            let mut rhs = base_r.clone();
            for (b, _) in blocks.iter().zip(&flags).filter(|(_, t)| **t) {
                h.iter_mut().zip(&b.dh).for_each(|(s, x)| *s += x);
                rhs.iter_mut().zip(&b.dr).for_each(|(s, x)| *s += x);
            }
            if !cholesky(&mut h, p) {
                return None;
            }
            forward_solve(&h, p, &mut rhs, m);
            backward_solve(&h, p, &mut rhs, m);
            rhs.iter().all(|v| v.is_finite()).then_some(Assignment { flags, chol: h, beta: rhs })
        };
        let observed =
            estimate(treated.clone()).ok_or_else(|| bad("X'V⁻¹X is singular under the observed assignment".into()))?;
        // Groups of units whose labels are shuffled together.
        let groups: Vec<Vec<usize>> = match permutation {
            Permutation::All => vec![(0..n_units).collect()],
            Permutation::WithinStrata => {
                if design.strata.is_none() {
                    return Err(bad("randomization within strata needs a stratum for every row".into()));
                }
                let mut by: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
                for (u, s) in stratum.iter().enumerate() {
                    by.entry(s.expect("every unit has rows")).or_default().push(u);
                }
                by.into_values().collect()
            }
        };
        let drawn: Vec<Option<Assignment>> = (0..draws)
            .into_par_iter()
            .map(|b| {
                use rand::RngExt;
                use rand::SeedableRng;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix(seed, b as u64));
                let mut flags = treated.clone();
                for group in &groups {
                    let mut labels: Vec<bool> = group.iter().map(|&u| treated[u]).collect();
                    for i in (1..labels.len()).rev() {
                        let j = rng.random_range(0..=i);
                        labels.swap(i, j);
                    }
                    for (&u, l) in group.iter().zip(labels) {
                        flags[u] = l;
                    }
                }
                estimate(flags)
            })
            .collect();
        let failed = drawn.iter().filter(|d| d.is_none()).count();
        let drawn: Vec<Assignment> = drawn.into_iter().flatten().collect();
        if drawn.len() < 99 {
            return Err(bad(format!("only {} of {draws} re-drawn assignments could be estimated", drawn.len())));
        }
        Ok(Randomization { permutation, draws, failed, units: n_units, treated_units, p, m, blocks, observed, drawn })
    }

    /// β̂ of response `r` under the observed assignment (the fit's β̂ for the outcome).
    pub fn observed_beta(&self, r: usize) -> Vec<f64> {
        (0..self.p).map(|x| self.observed.beta[x * self.m + r]).collect()
    }

    /// The statistics of a batch of assignments as functions of τ: (A − τB) / √(SS − 2τ·SD + τ²·DD) for the
    /// studentized statistic (S_j − τD_j the units' scores), A − τB for the estimate. Units are the outer
    /// loop, so each unit's blocks are read once per batch.
    fn lines(
        &self,
        batch: &[Assignment],
        l: &[f64],
        combo: &[(usize, f64)],
        own: usize,
        studentized: bool,
    ) -> Vec<Line> {
        let (p, m) = (self.p, self.m);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        // Per assignment: a_vec = (X'Θ⁻¹X)⁻¹ l, β̂ of the combined outcome and of the effect pattern.
        let per: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = batch
            .iter()
            .map(|asg| {
                let mut av = l.to_vec();
                if studentized {
                    forward_solve(&asg.chol, p, &mut av, 1);
                    backward_solve(&asg.chol, p, &mut av, 1);
                }
                let bc: Vec<f64> = (0..p).map(|x| combo.iter().map(|&(r, c)| c * asg.beta[x * m + r]).sum()).collect();
                let bo: Vec<f64> = (0..p).map(|x| asg.beta[x * m + own]).collect();
                (av, bc, bo)
            })
            .collect();
        let mut out: Vec<Line> =
            per.iter().map(|(_, bc, bo)| Line { a: dot(l, bc), b: dot(l, bo), ss: 1.0, sd: 0.0, dd: 0.0 }).collect();
        if !studentized {
            return out;
        }
        out.iter_mut().for_each(|line| line.ss = 0.0);
        let mut v = vec![0.0; p];
        let (mut hc0, mut hcd, mut ho0, mut hod) = (vec![0.0; p], vec![0.0; p], vec![0.0; p], vec![0.0; p]);
        for (j, blk) in self.blocks.iter().enumerate() {
            // The unit's X'Θ⁻¹r for the combined outcome and the pattern, untreated and the treated change.
            for x in 0..p {
                hc0[x] = combo.iter().map(|&(r, c)| c * blk.r0[x * m + r]).sum();
                hcd[x] = combo.iter().map(|&(r, c)| c * blk.dr[x * m + r]).sum();
                ho0[x] = blk.r0[x * m + own];
                hod[x] = blk.dr[x * m + own];
            }
            for ((asg, (av, bc, bo)), line) in batch.iter().zip(&per).zip(out.iter_mut()) {
                let g = asg.flags[j];
                for (x, vx) in v.iter_mut().enumerate() {
                    let mut t = dot(&blk.h0[x * p..(x + 1) * p], av);
                    if g {
                        t += dot(&blk.dh[x * p..(x + 1) * p], av);
                    }
                    *vx = t;
                }
                let (mut sj, mut dj) = (dot(av, &hc0) - dot(&v, bc), dot(av, &ho0) - dot(&v, bo));
                if g {
                    sj += dot(av, &hcd);
                    dj += dot(av, &hod);
                }
                line.ss += sj * sj;
                line.sd += sj * dj;
                line.dd += dj * dj;
            }
        }
        out
    }

    /// The test of the contrast `l'β` of response `response` (the outcome), with the interval for the
    /// effect τ on the rows of response `own` under the sharp null that the outcome without the programme
    /// is y − τ·own − Σ c·fixed (each `fixed` entry a response index and its assumed effect c).
    pub fn test(
        &self,
        l: &[f64],
        response: usize,
        own: usize,
        fixed: &[(usize, f64)],
        statistic: Statistic,
    ) -> Result<RandomizationTest, MixedModelError> {
        let (p, m) = (self.p, self.m);
        if l.len() != p {
            return Err(MixedModelError::DimensionMismatch { what: "contrast".into(), expected: p, found: l.len() });
        }
        if let Some(&bad) = [response, own].iter().chain(fixed.iter().map(|(k, _)| k)).find(|&&k| k >= m) {
            return Err(MixedModelError::DimensionMismatch { what: "response".into(), expected: m, found: bad + 1 });
        }
        let studentized = statistic == Statistic::Studentized;
        let combo: Vec<(usize, f64)> =
            std::iter::once((response, 1.0)).chain(fixed.iter().map(|&(k, c)| (k, -c))).collect();
        let estimate: f64 = (0..p).map(|x| l[x] * self.observed.beta[x * m + response]).sum();
        let obs = self.lines(std::slice::from_ref(&self.observed), l, &combo, own, studentized)[0];
        let lines: Vec<Line> = self
            .drawn
            .par_chunks(BATCH)
            .flat_map_iter(|batch| self.lines(batch, l, &combo, own, studentized))
            .collect();
        if !(obs.b.is_finite() && obs.b.abs() > 1e-8) {
            return Err(MixedModelError::Robust {
                reason: format!("the contrast does not estimate the effect pattern (l'β̂(d) = {})", obs.b),
            });
        }
        let k = lines.len() as f64;
        let p_of = |tau: f64| {
            let t_obs = obs.at(tau).abs();
            let exceed = lines.iter().filter(|line| line.at(tau).abs() >= t_obs * (1.0 - 1e-10)).count();
            (1.0 + exceed as f64) / (1.0 + k)
        };
        let mean = lines.iter().map(|line| line.a).sum::<f64>() / k;
        let null_sd = (lines.iter().map(|line| (line.a - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt();
        // The statistic is 0 at τ = A/B (the estimate when B = 1): search outwards, then bisect.
        let centre = obs.a / obs.b;
        let robust_se = (obs.ss - 2.0 * centre * obs.sd + centre * centre * obs.dd).max(0.0).sqrt() / obs.b.abs();
        let step0 = match if studentized { robust_se } else { null_sd } {
            s if s.is_finite() && s > 0.0 => s,
            _ => estimate.abs().max(1e-8),
        };
        let (ci_low, ci_high) = crate::robust::test_inversion(centre, step0, |tau| p_of(tau) > 0.05);
        Ok(RandomizationTest {
            permutation: self.permutation,
            statistic,
            draws: self.drawn.len(),
            estimate,
            null_sd,
            p_value: p_of(0.0),
            ci_low,
            ci_high,
        })
    }
}

/// An assignment's statistic as a function of τ: (a − τb) / √(ss − 2τ·sd + τ²·dd).
#[derive(Debug, Clone, Copy)]
struct Line {
    a: f64,
    b: f64,
    ss: f64,
    sd: f64,
    dd: f64,
}

impl Line {
    fn at(&self, tau: f64) -> f64 {
        let q = self.ss - 2.0 * tau * self.sd + tau * tau * self.dd;
        let t = (self.a - tau * self.b) / q.max(0.0).sqrt();
        // A score sum of exactly 0 (a degenerate assignment) never counts as extreme.
        if t.is_nan() { 0.0 } else { t }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use psmeval_frame::{ModelFrame, RandomTerm};

    use super::*;
    use crate::{LmmOptions, MixedModel, fit_lmm};

    /// 24 schools (12 treated, in 12 pairs), 2 years × 8 pupils, school and school:year intercepts; the
    /// design `1 + post + group + post:group` built for a treatment vector.
    fn frame(group_of: &dyn Fn(usize) -> f64, y: &[f64]) -> ModelFrame {
        let n = y.len();
        let school = |i: usize| i / 16;
        let year = |i: usize| (i / 8) % 2;
        let x = Array2::from_shape_fn((n, 4), |(i, j)| {
            let g = group_of(school(i));
            let post = year(i) as f64;
            [1.0, post, g, post * g][j]
        });
        let codes_s: Vec<u32> = (0..n).map(|i| school(i) as u32).collect();
        let codes_c: Vec<u32> = (0..n).map(|i| (school(i) * 2 + year(i)) as u32).collect();
        ModelFrame {
            response_name: "y".into(),
            y: y.to_vec(),
            x,
            x_names: ["(Intercept)", "post", "group", "post:group"].map(String::from).to_vec(),
            random: vec![
                RandomTerm {
                    group: "school".into(),
                    levels: (0..24).map(|s| format!("s{s:02}")).collect(),
                    codes: codes_s,
                    names: vec!["(Intercept)".into()],
                    z: Array2::ones((n, 1)),
                },
                RandomTerm {
                    group: "school:year".into(),
                    levels: (0..48).map(|s| format!("c{s:02}")).collect(),
                    codes: codes_c,
                    names: vec!["(Intercept)".into()],
                    z: Array2::ones((n, 1)),
                },
            ],
            rows: (0..n).collect(),
            n_dropped: 0,
        }
    }

    fn data() -> Vec<f64> {
        // A deterministic pseudo-random outcome with school and cohort variation and an effect of 0.4.
        let mut state = 12345u64;
        let mut unif = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
        };
        let school: Vec<f64> = (0..24).map(|_| unif()).collect();
        let cohort: Vec<f64> = (0..48).map(|_| 0.6 * unif()).collect();
        (0..384)
            .map(|i| {
                let (s, t) = (i / 16, (i / 8) % 2);
                school[s] + cohort[s * 2 + t] + 0.4 * treated(s) * t as f64 + unif()
            })
            .collect()
    }

    fn treated(s: usize) -> f64 {
        f64::from(u8::from(s.is_multiple_of(2)))
    }

    /// The data, the fit and what the randomization needs: schools as units, pairs as strata, responses y
    /// and the effect pattern (treated pupils in the second year).
    struct Fixture {
        y: Vec<f64>,
        f_obs: ModelFrame,
        f0: ModelFrame,
        f1: ModelFrame,
        fit: crate::LmmFit,
        terms: Vec<String>,
        responses: Vec<Vec<f64>>,
        unit: Vec<u32>,
        strata: Vec<u32>,
        assigned: Vec<bool>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let y = data();
            let f_obs = frame(&treated, &y);
            let fit = fit_lmm(&f_obs, &LmmOptions::default()).unwrap();
            let d: Vec<f64> = (0..384).map(|i| treated(i / 16) * ((i / 8) % 2) as f64).collect();
            Fixture {
                f0: frame(&|_| 0.0, &y),
                f1: frame(&|_| 1.0, &y),
                terms: f_obs.x_names.clone(),
                responses: vec![y.clone(), d],
                unit: (0..384).map(|i| (i / 16) as u32).collect(),
                strata: (0..384).map(|i| (i / 32) as u32).collect(),
                assigned: (0..384).map(|i| treated(i / 16) == 1.0).collect(),
                y,
                f_obs,
                fit,
            }
        }

        fn design(&self) -> RandomizationDesign<'_> {
            RandomizationDesign {
                untreated: &self.f0,
                treated: &self.f1,
                terms: &self.terms,
                theta: self.fit.theta(),
                weights: None,
                responses: &self.responses,
                unit: &self.unit,
                assigned: &self.assigned,
                strata: Some(&self.strata),
            }
        }
    }

    #[test]
    fn observed_estimate_is_the_fit_and_draws_match_a_direct_gls() {
        let fx = Fixture::new();
        let (y, fit, unit, terms) = (&fx.y, &fx.fit, &fx.unit, &fx.terms);
        let design = fx.design();
        let r = Randomization::new(&design, Permutation::WithinStrata, 199, 7).unwrap();
        // The observed GLS estimate at θ̂ is the fit's β̂.
        for (a, b) in r.observed_beta(0).iter().zip(fit.beta()) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Under another assignment, a fit with θ held at θ̂ on the permuted design gives the same β̂: check
        // a draw against a direct GLS from a fresh frame.
        let flip = |s: usize| 1.0 - treated(s);
        let f_flip = frame(&flip, y);
        let gls = crate::Cr2::at(&f_flip, terms, &[0.0; 4], fit.theta(), None, unit).unwrap().gls_estimate();
        let flags: Vec<bool> = (0..24).map(|s| flip(s) == 1.0).collect();
        let assigned_flip: Vec<bool> = (0..384).map(|i| flags[i / 16]).collect();
        let design_flip = RandomizationDesign { assigned: &assigned_flip, ..design };
        let r_flip = Randomization::new(&design_flip, Permutation::WithinStrata, 99, 7).unwrap();
        for (a, b) in r_flip.observed_beta(0).iter().zip(&gls) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // The effect pattern is estimated exactly by the observed design.
        let l = [0.0, 0.0, 0.0, 1.0];
        let t = r.test(&l, 0, 1, &[], Statistic::Estimate).unwrap();
        assert!((t.estimate - fit.beta()[3]).abs() < 1e-9);
        assert!(t.ci_low < t.estimate && t.estimate < t.ci_high);
        assert!((1.0 / 200.0..=1.0).contains(&t.p_value));
        // The p value at a bound is 5% by construction; the interval contains the truth 0.4 here.
        assert!(t.ci_low < 0.4 && 0.4 < t.ci_high, "{t:?}");
        // Same seed, same bits; another seed, other draws.
        let again = Randomization::new(&design, Permutation::WithinStrata, 199, 7).unwrap();
        assert_eq!(again.test(&l, 0, 1, &[], Statistic::Estimate).unwrap(), t);
        let other = Randomization::new(&design, Permutation::WithinStrata, 199, 8).unwrap();
        assert_ne!(other.test(&l, 0, 1, &[], Statistic::Estimate).unwrap().null_sd, t.null_sd);
    }

    /// Prior weights (as matching with replacement gives: constant within a school, from 1 to 3 here): the
    /// observed estimate is the weighted fit's β̂, and a re-assigned design's is the weighted GLS at θ̂.
    #[test]
    fn weighted_draws_match_a_direct_weighted_gls() {
        let fx = Fixture::new();
        let w: Vec<f64> = (0..384).map(|i| 1.0 + ((i / 16) % 3) as f64).collect();
        let fit = fit_lmm(&fx.f_obs, &LmmOptions { weights: Some(w.clone()), ..LmmOptions::default() }).unwrap();
        let design = RandomizationDesign { theta: fit.theta(), weights: Some(&w), ..fx.design() };
        let r = Randomization::new(&design, Permutation::All, 99, 7).unwrap();
        for (a, b) in r.observed_beta(0).iter().zip(fit.beta()) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let unweighted = Randomization::new(&fx.design(), Permutation::All, 99, 7).unwrap();
        assert!((unweighted.observed_beta(0)[3] - r.observed_beta(0)[3]).abs() > 1e-6, "the weights matter here");
        let flip = |s: usize| 1.0 - treated(s);
        let f_flip = frame(&flip, &fx.y);
        let gls =
            crate::Cr2::at(&f_flip, &fx.terms, &[0.0; 4], fit.theta(), Some(&w), &fx.unit).unwrap().gls_estimate();
        let assigned_flip: Vec<bool> = (0..384).map(|i| flip(i / 16) == 1.0).collect();
        let r_flip =
            Randomization::new(&RandomizationDesign { assigned: &assigned_flip, ..design }, Permutation::All, 99, 7)
                .unwrap();
        for (a, b) in r_flip.observed_beta(0).iter().zip(&gls) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let t = r.test(&[0.0, 0.0, 0.0, 1.0], 0, 1, &[], Statistic::Estimate).unwrap();
        assert!(t.ci_low < t.estimate && t.estimate < t.ci_high, "{t:?}");
    }

    #[test]
    fn within_strata_keeps_each_set_and_all_shuffles_freely() {
        let fx = Fixture::new();
        let design = fx.design();
        let within = Randomization::new(&design, Permutation::WithinStrata, 199, 3).unwrap();
        let all = Randomization::new(&design, Permutation::All, 199, 3).unwrap();
        assert_eq!((within.units, within.treated_units, all.units), (24, 12, 24));
        let l = [0.0, 0.0, 0.0, 1.0];
        let (tw, ta) = (
            within.test(&l, 0, 1, &[], Statistic::Estimate).unwrap(),
            all.test(&l, 0, 1, &[], Statistic::Estimate).unwrap(),
        );
        assert_eq!(tw.estimate, ta.estimate);
        assert_ne!(tw.null_sd, ta.null_sd);
        // A contrast that does not estimate the effect pattern (the `post` main effect) cannot be inverted.
        let e = within.test(&[0.0, 1.0, 0.0, 0.0], 0, 1, &[], Statistic::Studentized).unwrap_err();
        assert!(e.to_string().contains("does not estimate"), "{e}");
        // Shifting the outcome by a fixed effect on the pattern moves the interval by the same amount.
        let shifted = within.test(&l, 0, 1, &[(1, 0.25)], Statistic::Estimate).unwrap();
        assert!((shifted.ci_low - (tw.ci_low - 0.25)).abs() < 1e-9, "{shifted:?} {tw:?}");
        // Bad input: a stratum split across a unit, a treatment varying within a unit, too few draws.
        let split: Vec<u32> = (0..384).map(|i| (i / 8) as u32).collect();
        let e = Randomization::new(&RandomizationDesign { strata: Some(&split), ..design }, Permutation::All, 99, 1)
            .unwrap_err();
        assert!(e.to_string().contains("more than one stratum"), "{e}");
        let mixed: Vec<bool> = (0..384).map(|i| i % 2 == 0).collect();
        let e = Randomization::new(&RandomizationDesign { assigned: &mixed, ..design }, Permutation::All, 99, 1)
            .unwrap_err();
        assert!(e.to_string().contains("varies within unit"), "{e}");
        let e = Randomization::new(&design, Permutation::All, 50, 1).unwrap_err();
        assert!(e.to_string().contains("at least 99"), "{e}");
        // A random part that changes with the treatment (as `(1 + group | school)` would) is refused.
        let mut slope = fx.f1.clone();
        slope.random[0].z.column_mut(0).fill(2.0);
        let e = Randomization::new(&RandomizationDesign { treated: &slope, ..design }, Permutation::All, 99, 1)
            .unwrap_err();
        assert!(e.to_string().contains("depend on the treatment"), "{e}");
        // A grouping factor crossing units is refused.
        let cohorts: Vec<u32> = (0..384).map(|i| (i / 8) as u32).collect();
        let assigned_c: Vec<bool> = (0..384).map(|i| (i / 8) % 2 == 0).collect();
        let e = Randomization::new(
            &RandomizationDesign { unit: &cohorts, assigned: &assigned_c, strata: None, ..design },
            Permutation::All,
            99,
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("nested in the unit"), "{e}");
    }

    #[test]
    fn studentized_scores_are_the_cr0_sandwich() {
        let fx = Fixture::new();
        let (y, f_obs, fit) = (&fx.y, &fx.f_obs, &fx.fit);
        let design = fx.design();
        let r = Randomization::new(&design, Permutation::WithinStrata, 199, 11).unwrap();
        let l = [0.0, 0.0, 0.0, 1.0];
        let line = r.lines(std::slice::from_ref(&r.observed), &l, &[(0, 1.0)], 1, true)[0];
        // Brute force: Θ_j = I + Z̃_j Z̃_j' per school (16 × 16), M = (Σ X_j'Θ_j⁻¹X_j)⁻¹, e = y − Xβ̂,
        // SE² = Σ_j (l'M X_j'Θ_j⁻¹e_j)².
        let (t1, t2) = (fit.theta()[0], fit.theta()[1]);
        let (mut info, mut scores) = (vec![0.0; 16], Vec::new());
        for j in 0..24 {
            let rows: Vec<usize> = (j * 16..(j + 1) * 16).collect();
            let mut theta_j = vec![0.0; 256];
            for (a, &ia) in rows.iter().enumerate() {
                for (b, &ib) in rows.iter().enumerate() {
                    let same_year = (ia / 8) % 2 == (ib / 8) % 2;
                    theta_j[a * 16 + b] = t1 * t1 + if same_year { t2 * t2 } else { 0.0 } + f64::from(u8::from(a == b));
                }
            }
            let ti = crate::dense::inverse(&theta_j, 16).unwrap();
            let x = |a: usize, c: usize| f_obs.x[[rows[a], c]];
            let mut xtx = vec![0.0; 16];
            let mut xte = vec![0.0; 4];
            let e: Vec<f64> =
                rows.iter().map(|&i| y[i] - (0..4).map(|c| f_obs.x[[i, c]] * fit.beta()[c]).sum::<f64>()).collect();
            for a in 0..16 {
                for b in 0..16 {
                    for c in 0..4 {
                        xte[c] += x(a, c) * ti[a * 16 + b] * e[b];
                        for k in 0..4 {
                            xtx[c * 4 + k] += x(a, c) * ti[a * 16 + b] * x(b, k);
                        }
                    }
                }
            }
            info.iter_mut().zip(&xtx).for_each(|(s, v)| *s += v);
            scores.push(xte);
        }
        let m = crate::dense::inverse(&info, 4).unwrap();
        let ml: Vec<f64> = (0..4).map(|c| (0..4).map(|k| m[c * 4 + k] * l[k]).sum()).collect();
        let se2: f64 = scores.iter().map(|u| u.iter().zip(&ml).map(|(a, b)| a * b).sum::<f64>().powi(2)).sum();
        assert!((line.ss - se2).abs() < 1e-9 * se2, "{} vs {se2}", line.ss);
        // The effect pattern lies in the observed design, so its scores vanish and the SE does not depend on τ.
        assert!(line.dd < 1e-20 * se2 && line.sd.abs() < 1e-10 * se2, "{line:?}");
        let t = r.test(&l, 0, 1, &[], Statistic::Studentized).unwrap();
        assert_eq!(t.statistic, Statistic::Studentized);
        assert!(t.ci_low < 0.4 && 0.4 < t.ci_high && t.ci_low < t.estimate && t.estimate < t.ci_high, "{t:?}");
        assert!((1.0 / 200.0..=1.0).contains(&t.p_value));
    }
}
