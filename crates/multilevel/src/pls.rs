//! Penalized least squares for a given θ (Bates et al. 2015, section 3): the random-effects cross-products are
//! computed once and stored in one of three layouts: one q×q block per level when there is a single term, one
//! dense block for several terms with few random effects in all, and a sparse matrix factored by a sparse
//! Cholesky (see `sparse`) for several terms otherwise (nested or crossed, any size that fits in memory).
//! Each evaluation factors `Λ'Z'ZΛ + I`, forms the Schur complement for the fixed effects and returns the
//! pieces of the profiled deviance. Its cost is independent of the number of observations.

// Index loops mirror the matrix formulas (row-major `a[i * n + j]`).
#![allow(clippy::needless_range_loop)]

use psmeval_frame::RandomTerm;

use crate::error::MixedModelError;
use rayon::prelude::*;

use crate::dense::{backward_solve, cholesky, forward_solve};
use crate::sparse::SparseRe;

/// Largest random-effects dimension for which several terms share one dense block (O(m³) per evaluation);
/// above it the sparse factorization is faster.
pub(crate) const MAX_DENSE: usize = 120;

/// Largest Cholesky factor of the sparse path, in bytes (8 GiB).
pub(crate) const MAX_FACTOR_BYTES: usize = 8 << 30;

/// How several random-effects terms are factored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MultiTerm {
    /// Dense up to [`MAX_DENSE`] random effects, sparse above.
    Auto,
    /// Always the sparse factorization (tests compare it with the dense one).
    #[cfg_attr(not(test), allow(dead_code))]
    Sparse,
}

/// One random-effects term after lme4's reordering, with its place in θ and in `u`.
#[derive(Debug, Clone)]
pub(crate) struct TermInfo {
    pub group: String,
    pub names: Vec<String>,
    pub levels: Vec<String>,
    pub q: usize,
    pub theta_offset: usize,
    pub u_offset: usize,
}

impl TermInfo {
    /// The term's lower-triangular relative covariance factor Λ_k (q×q, row-major) from its θ slice, filled
    /// column by column as lme4 does.
    pub fn lambda(&self, theta: &[f64]) -> Vec<f64> {
        let q = self.q;
        let mut lam = vec![0.0; q * q];
        let mut t = self.theta_offset;
        for c in 0..q {
            for r in c..q {
                lam[r * q + c] = theta[t];
                t += 1;
            }
        }
        lam
    }
}

/// The rows of each level of a grouping factor, in row order: level `j`'s rows are
/// `rows[start[j]..start[j + 1]]` (a counting sort of the codes).
pub(crate) struct RowsByLevel {
    pub start: Vec<usize>,
    pub rows: Vec<usize>,
}

pub(crate) fn rows_by_level(codes: &[u32], levels: usize) -> RowsByLevel {
    let mut start = vec![0usize; levels + 1];
    for &c in codes {
        start[c as usize + 1] += 1;
    }
    for j in 0..levels {
        start[j + 1] += start[j];
    }
    let mut next = start.clone();
    let mut rows = vec![0usize; codes.len()];
    for (i, &c) in codes.iter().enumerate() {
        rows[next[c as usize]] = i;
        next[c as usize] += 1;
    }
    RowsByLevel { start, rows }
}

/// The terms' places in θ and `u`, in the order given (lme4's): the terms, the length of θ and of `u`.
pub(crate) fn term_layout(random: &[&RandomTerm]) -> (Vec<TermInfo>, usize, usize) {
    let mut terms = Vec::with_capacity(random.len());
    let (mut t_off, mut u_off) = (0, 0);
    for rt in random {
        let q = rt.z.ncols();
        terms.push(TermInfo {
            group: rt.group.clone(),
            names: rt.names.clone(),
            levels: rt.levels.clone(),
            q,
            theta_offset: t_off,
            u_offset: u_off,
        });
        t_off += q * (q + 1) / 2;
        u_off += q * rt.levels.len();
    }
    (terms, t_off, u_off)
}

/// A diagonal block of `Z'Z` with its rows of `Z'X` and `Z'y`.
#[derive(Debug, Clone)]
struct Block {
    m: usize,
    ztz: Vec<f64>,
    ztx: Vec<f64>,
    zty: Vec<f64>,
}

/// The PLS problem: fixed cross-products plus the terms' layout.
#[derive(Debug, Clone)]
pub(crate) struct Pls {
    pub n: usize,
    pub p: usize,
    pub terms: Vec<TermInfo>,
    pub n_theta: usize,
    storage: Storage,
    xtx: Vec<f64>,
    xty: Vec<f64>,
    yty: f64,
}

/// The random-effects cross-products in the layout their factorization uses.
#[derive(Debug, Clone)]
enum Storage {
    /// One block per level of a single term.
    PerLevel(Vec<Block>),
    /// One dense block for several terms.
    Dense(Block),
    /// A sparse matrix for several terms.
    Sparse(Box<SparseRe>),
}

/// What one evaluation at θ gives.
#[derive(Debug, Clone)]
pub(crate) struct PlsEval {
    /// log |L_θ|² = log det(Λ'Z'ZΛ + I).
    pub ldl2: f64,
    /// log |R_X|².
    pub ldrx2: f64,
    /// Penalized weighted residual sum of squares ‖y − Xβ − ZΛu‖² + ‖u‖².
    pub pwrss: f64,
    pub beta: Vec<f64>,
    /// Lower Cholesky factor of the fixed-effects Schur complement (p×p): cov(β) = σ² (L_X L_X')⁻¹.
    pub lx: Vec<f64>,
}

/// Conditional modes and the pieces needed for conditional variances.
#[derive(Debug, Clone)]
pub(crate) struct Modes {
    /// b = Λu, in the layout of `u` (term by term, level-major within a term).
    pub b: Vec<f64>,
    /// Per term, per level: the q×q conditional covariance Λ (L L')⁻¹ Λ' of b / σ².
    pub cond_cov: Vec<Vec<Vec<f64>>>,
}

impl Pls {
    /// Sets up cross-products (`xtx`: X'X when the caller has it). `terms` must already be in lme4's order.
    /// `Err` when several terms need a sparse factor larger than [`MAX_FACTOR_BYTES`] or the factorization
    /// cannot be set up.
    ///
    /// The sums run in parallel over columns of X (X'y) and over levels (a single term's blocks), each sum
    /// still taken over the rows in row order: the same bits as a serial pass, whatever the thread count.
    pub fn new(
        y: &[f64],
        x: &ndarray::Array2<f64>,
        xtx: Option<Vec<f64>>,
        random: &[&RandomTerm],
        multi: MultiTerm,
    ) -> Result<Pls, MixedModelError> {
        let n = y.len();
        let p = x.ncols();
        let (terms, t_off, u_off) = term_layout(random);
        let xtx = xtx.unwrap_or_else(|| psmeval_frame::design::crossprod(x));
        // X'y by groups of 8 columns (one cache line of a row), y'y alongside.
        let column_groups: Vec<usize> = (0..p).step_by(8).collect();
        let (xty_parts, yty) = rayon::join(
            || {
                column_groups
                    .par_iter()
                    .map(|&lo| {
                        let hi = (lo + 8).min(p);
                        let mut s = vec![0.0; hi - lo];
                        match x.as_slice() {
                            Some(rows) => {
                                for (xi, &yi) in rows.chunks_exact(p).zip(y) {
                                    for (sa, &xa) in s.iter_mut().zip(&xi[lo..hi]) {
                                        *sa += xa * yi;
                                    }
                                }
                            }
                            None => {
                                for (xi, &yi) in x.outer_iter().zip(y) {
                                    for (k, sa) in s.iter_mut().enumerate() {
                                        *sa += xi[lo + k] * yi;
                                    }
                                }
                            }
                        }
                        s
                    })
                    .collect::<Vec<_>>()
            },
            || y.iter().fold(0.0, |s, v| s + v * v),
        );
        let xty: Vec<f64> = xty_parts.concat();
        let m = u_off;
        let storage = if random.len() == 1 {
            let rt = random[0];
            let q = rt.z.ncols();
            let rows = rows_by_level(&rt.codes, rt.levels.len());
            let blocks: Vec<Block> = (0..rt.levels.len())
                .into_par_iter()
                .map(|j| {
                    let mut blk = Block { m: q, ztz: vec![0.0; q * q], ztx: vec![0.0; q * p], zty: vec![0.0; q] };
                    for &i in &rows.rows[rows.start[j]..rows.start[j + 1]] {
                        let zi = rt.z.row(i);
                        let xi = x.row(i);
                        for a in 0..q {
                            blk.zty[a] += zi[a] * y[i];
                            for b in 0..q {
                                blk.ztz[a * q + b] += zi[a] * zi[b];
                            }
                            for b in 0..p {
                                blk.ztx[a * p + b] += zi[a] * xi[b];
                            }
                        }
                    }
                    blk
                })
                .collect();
            Storage::PerLevel(blocks)
        } else if m <= MAX_DENSE && multi == MultiTerm::Auto {
            // Several terms share one dense block of size Σ levels·q (see `MAX_DENSE`).
            let mut blk = Block { m, ztz: vec![0.0; m * m], ztx: vec![0.0; m * p], zty: vec![0.0; m] };
            let mut idx: Vec<(usize, f64)> = Vec::new();
            for i in 0..n {
                idx.clear();
                for (rt, ti) in random.iter().zip(&terms) {
                    let base = ti.u_offset + rt.codes[i] as usize * ti.q;
                    for c in 0..ti.q {
                        idx.push((base + c, rt.z[[i, c]]));
                    }
                }
                let xi = x.row(i);
                for &(a, za) in &idx {
                    blk.zty[a] += za * y[i];
                    for &(b, zb) in &idx {
                        blk.ztz[a * m + b] += za * zb;
                    }
                    for b in 0..p {
                        blk.ztx[a * p + b] += za * xi[b];
                    }
                }
            }
            Storage::Dense(blk)
        } else {
            let label = || random.iter().map(|t| format!("(… | {})", t.group)).collect::<Vec<_>>().join(" + ");
            let sparse = SparseRe::new(y, x, random, &terms)
                .map_err(|reason| MixedModelError::Factorization { terms: label(), reason })?;
            let bytes = sparse.factor_len().saturating_mul(8);
            if bytes > MAX_FACTOR_BYTES {
                return Err(MixedModelError::TooLarge { terms: label(), size: m, bytes, max: MAX_FACTOR_BYTES });
            }
            Storage::Sparse(Box::new(sparse))
        };
        Ok(Pls { n, p, terms, n_theta: t_off, storage, xtx, xty, yty })
    }

    /// Lower bounds of θ: 0 on diagonal elements of each Λ_k, −∞ elsewhere.
    pub fn lower_bounds(&self) -> Vec<f64> {
        let mut lb = Vec::with_capacity(self.n_theta);
        for t in &self.terms {
            for c in 0..t.q {
                for r in c..t.q {
                    lb.push(if r == c { 0.0 } else { f64::NEG_INFINITY });
                }
            }
        }
        lb
    }

    /// lme4's starting value: Λ_k = I.
    pub fn theta_start(&self) -> Vec<f64> {
        self.lower_bounds().iter().map(|&l| if l == 0.0 { 1.0 } else { 0.0 }).collect()
    }

    /// The Λ block applying to block `k` (m×m, row-major).
    fn block_lambda(&self, theta: &[f64]) -> Vec<f64> {
        let m = match &self.storage {
            Storage::Dense(blk) => blk.m,
            _ => return self.terms[0].lambda(theta),
        };
        let mut lam = vec![0.0; m * m];
        for t in &self.terms {
            let lk = t.lambda(theta);
            for j in 0..t.levels.len() {
                let o = t.u_offset + j * t.q;
                for r in 0..t.q {
                    for c in 0..=r {
                        lam[(o + r) * m + o + c] = lk[r * t.q + c];
                    }
                }
            }
        }
        lam
    }

    /// Factor one block: returns (L, R_ZX = L⁻¹Λ'Z'X, r_Zy = L⁻¹Λ'Z'y) or `None` if not positive definite.
    fn factor_block(blk: &Block, lam: &[f64], p: usize) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let m = blk.m;
        // T = Z'Z Λ, then A = Λ' T + I.
        let mut t = vec![0.0; m * m];
        for a in 0..m {
            for c in 0..m {
                let mut s = 0.0;
                for k in c..m {
                    let l = lam[k * m + c];
                    if l != 0.0 {
                        s += blk.ztz[a * m + k] * l;
                    }
                }
                t[a * m + c] = s;
            }
        }
        let mut l = vec![0.0; m * m];
        for r in 0..m {
            for c in 0..=r {
                let mut s = if r == c { 1.0 } else { 0.0 };
                for k in r..m {
                    let lv = lam[k * m + r];
                    if lv != 0.0 {
                        s += lv * t[k * m + c];
                    }
                }
                l[r * m + c] = s;
            }
        }
        if !cholesky(&mut l, m) {
            return None;
        }
        // Λ'Z'X and Λ'Z'y.
        let mut rzx = vec![0.0; m * p];
        let mut rzy = vec![0.0; m];
        for r in 0..m {
            for k in r..m {
                let lv = lam[k * m + r];
                if lv != 0.0 {
                    for c in 0..p {
                        rzx[r * p + c] += lv * blk.ztx[k * p + c];
                    }
                    rzy[r] += lv * blk.zty[k];
                }
            }
        }
        forward_solve(&l, m, &mut rzx, p);
        forward_solve(&l, m, &mut rzy, 1);
        Some((l, rzx, rzy))
    }

    /// Accumulated Schur-complement pieces over blocks: (Σ log|L|², Σ R'R, Σ R'r, Σ r'r).
    fn accumulate(&self, theta: &[f64]) -> Option<(f64, Vec<f64>, Vec<f64>, f64)> {
        let p = self.p;
        let blocks: &[Block] = match &self.storage {
            Storage::PerLevel(blocks) => blocks,
            Storage::Dense(blk) => std::slice::from_ref(blk),
            Storage::Sparse(sparse) => return sparse.accumulate(&self.terms, theta),
        };
        let lam = self.block_lambda(theta);
        let zero = || Some((0.0, vec![0.0; p * p], vec![0.0; p], 0.0));
        // Adds one block's pieces into `acc`. A block's sums start from zero and are then added (for one
        // random effect per block, `acc + (0 + v)` is `acc + v`, so they go straight in); `scratch` is reused.
        let one_into = |acc: &mut (f64, Vec<f64>, Vec<f64>, f64), scratch: &mut (Vec<f64>, Vec<f64>), blk: &Block| {
            let (l, rzx, rzy) = Self::factor_block(blk, &lam, p)?;
            let m = blk.m;
            let ld: f64 = (0..m).map(|i| 2.0 * l[i * m + i].ln()).sum();
            acc.0 += ld;
            if m == 1 {
                for a in 0..p {
                    let ra = rzx[a];
                    acc.2[a] += ra * rzy[0];
                    for b in 0..=a {
                        acc.1[a * p + b] += ra * rzx[b];
                    }
                }
                acc.3 += rzy[0] * rzy[0];
                return Some(());
            }
            let (sxx, sxy) = scratch;
            sxx.fill(0.0);
            sxy.fill(0.0);
            let mut syy = 0.0;
            for r in 0..m {
                for a in 0..p {
                    let ra = rzx[r * p + a];
                    sxy[a] += ra * rzy[r];
                    for b in 0..=a {
                        sxx[a * p + b] += ra * rzx[r * p + b];
                    }
                }
                syy += rzy[r] * rzy[r];
            }
            acc.1.iter_mut().zip(sxx.iter()).for_each(|(u, v)| *u += v);
            acc.2.iter_mut().zip(sxy.iter()).for_each(|(u, v)| *u += v);
            acc.3 += syy;
            Some(())
        };
        let fold = |chunk: &[Block]| {
            let mut acc = zero()?;
            let mut scratch = (vec![0.0; p * p], vec![0.0; p]);
            for blk in chunk {
                one_into(&mut acc, &mut scratch, blk)?;
            }
            Some(acc)
        };
        let add = |x: Option<(f64, Vec<f64>, Vec<f64>, f64)>, y: Option<(f64, Vec<f64>, Vec<f64>, f64)>| {
            let (mut a, b) = (x?, y?);
            a.0 += b.0;
            a.1.iter_mut().zip(&b.1).for_each(|(u, v)| *u += v);
            a.2.iter_mut().zip(&b.2).for_each(|(u, v)| *u += v);
            a.3 += b.3;
            Some(a)
        };
        if blocks.len() >= 2048 {
            // Fixed chunks, combined in chunk order: the same floating-point sums whatever the thread count.
            let parts: Vec<_> = blocks.par_chunks(512).map(fold).collect();
            parts.into_iter().fold(zero(), add)
        } else {
            fold(blocks)
        }
    }

    /// Evaluates the PLS solution at θ; `None` when a factorization fails (the optimizer then sees +∞).
    pub fn eval(&self, theta: &[f64]) -> Option<PlsEval> {
        let p = self.p;
        let (ldl2, sxx, sxy, syy) = self.accumulate(theta)?;
        let mut lx = self.xtx.clone();
        for a in 0..p {
            for b in 0..=a {
                lx[a * p + b] -= sxx[a * p + b];
            }
        }
        if !cholesky(&mut lx, p) {
            return None;
        }
        let mut c: Vec<f64> = self.xty.iter().zip(&sxy).map(|(a, b)| a - b).collect();
        forward_solve(&lx, p, &mut c, 1);
        let pwrss = self.yty - syy - c.iter().map(|v| v * v).sum::<f64>();
        if !(pwrss > 0.0 && pwrss.is_finite()) {
            return None;
        }
        let ldrx2 = (0..p).map(|i| 2.0 * lx[i * p + i].ln()).sum();
        let mut beta = c;
        backward_solve(&lx, p, &mut beta, 1);
        Some(PlsEval { ldl2, ldrx2, pwrss, beta, lx })
    }

    /// The profiled deviance (ML) or REML criterion at θ; +∞ on numerical failure.
    pub fn objective(&self, theta: &[f64], reml: bool) -> f64 {
        match self.eval(theta) {
            Some(e) => self.criterion(&e, reml),
            None => f64::INFINITY,
        }
    }

    /// The criterion from an evaluation.
    pub fn criterion(&self, e: &PlsEval, reml: bool) -> f64 {
        let two_pi = 2.0 * std::f64::consts::PI;
        if reml {
            let nmp = (self.n - self.p) as f64;
            e.ldl2 + e.ldrx2 + nmp * (1.0 + (two_pi * e.pwrss / nmp).ln())
        } else {
            let n = self.n as f64;
            e.ldl2 + n * (1.0 + (two_pi * e.pwrss / n).ln())
        }
    }

    /// Conditional modes b = Λu and conditional covariances (over σ²) at θ with fixed effects β.
    pub fn modes(&self, theta: &[f64], beta: &[f64]) -> Option<Modes> {
        let p = self.p;
        let (blocks, single_term): (&[Block], bool) = match &self.storage {
            Storage::PerLevel(blocks) => (blocks, true),
            Storage::Dense(blk) => (std::slice::from_ref(blk), false),
            Storage::Sparse(sparse) => return sparse.modes(&self.terms, theta, beta),
        };
        let lam = self.block_lambda(theta);
        let total: usize = blocks.iter().map(|b| b.m).sum();
        let mut b_all = vec![0.0; total];
        let mut cond_cov: Vec<Vec<Vec<f64>>> = self.terms.iter().map(|t| vec![Vec::new(); t.levels.len()]).collect();
        let mut off = 0;
        for (k, blk) in blocks.iter().enumerate() {
            let m = blk.m;
            let (l, rzx, rzy) = Self::factor_block(blk, &lam, p)?;
            let mut u: Vec<f64> =
                (0..m).map(|r| rzy[r] - (0..p).map(|a| rzx[r * p + a] * beta[a]).sum::<f64>()).collect();
            backward_solve(&l, m, &mut u, 1);
            // M = L⁻¹ Λ' (m×m); cond cov = M'M restricted to each level's block.
            let mut mt = vec![0.0; m * m];
            for r in 0..m {
                for c in 0..m {
                    mt[r * m + c] = lam[c * m + r];
                }
            }
            forward_solve(&l, m, &mut mt, m);
            for r in 0..m {
                b_all[off + r] = (0..m).map(|c| lam[r * m + c] * u[c]).sum();
            }
            let mut put = |ti: usize, level: usize, start: usize, q: usize| {
                let mut cov = vec![0.0; q * q];
                for a in 0..q {
                    for bb in 0..q {
                        cov[a * q + bb] = (0..m).map(|r| mt[r * m + start + a] * mt[r * m + start + bb]).sum();
                    }
                }
                cond_cov[ti][level] = cov;
            };
            if single_term {
                put(0, k, 0, m);
            } else {
                for (ti, t) in self.terms.iter().enumerate() {
                    for j in 0..t.levels.len() {
                        put(ti, j, t.u_offset + j * t.q, t.q);
                    }
                }
            }
            off += m;
        }
        Some(Modes { b: b_all, cond_cov })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each level's rows, in row order, whatever the order of the codes (levels without rows included).
    #[test]
    fn rows_by_level_is_a_stable_counting_sort() {
        let codes = [2u32, 0, 2, 3, 0, 2];
        let r = rows_by_level(&codes, 5);
        assert_eq!(r.start, [0, 2, 2, 5, 6, 6]);
        assert_eq!(r.rows, [1, 4, 0, 2, 5, 3]);
    }
}
