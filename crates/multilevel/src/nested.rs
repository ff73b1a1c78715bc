//! The blocked factorization of two nested random-effects terms, such as `(1 | school) + (1 | school:year)`
//! or `(1 + year | school) + (1 | school:year)`: an inner scalar term each of whose levels lies within one
//! level of an outer term (any number of coefficients), as MixedModels.jl factors them.
//!
//! Ordering the inner levels first, the inner block of `A = Λ'Z'ZΛ + I` is diagonal and each inner level
//! couples to its outer level only, so the Cholesky factor is, per outer level `s` with inner levels `c`:
//! `L_cc = √A_cc`, `l_sc = A_sc / L_cc`, and `L_ss` the Cholesky factor of `A_ss − Σ_c l_sc l_sc'` (q × q).
//! The rows of `R = L⁻¹Λ'Z'[X y]` follow in the same sweep, `r_c = b_c / L_cc` and `r_s = L_ss⁻¹(b_s − Σ_c
//! l_sc r_c')`, and `R'R` is summed from them without storing `R`. The outer levels are independent, so the
//! sweep runs in parallel over fixed chunks of them, added in chunk order: the result does not depend on the
//! number of threads. It gives the same quantities as the general sparse path (`sparse.rs`), which remains for
//! the conditional modes and every other structure.

// Index loops mirror the matrix formulas.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use crate::dense::{cholesky, congruence};
use crate::pls::TermInfo;
use crate::sparse::{Accumulated, split_gram};

/// Outer levels per chunk of the parallel sweep (fixed, so sums do not depend on the thread count).
const CHUNK: usize = 256;

/// Rows of `R` gathered (column-major) before they are added to `R'R`.
const BLOCK: usize = 64;

/// The cross-products of two nested terms, grouped by outer level.
#[derive(Debug, Clone)]
pub(crate) struct NestedBlocks {
    /// Number of fixed effects; rows of `Z'[X y]` have `p + 1` entries.
    p: usize,
    /// The inner (scalar) and outer terms' indices in lme4's order.
    inner: usize,
    outer: usize,
    /// Coefficients of the outer term.
    q: usize,
    /// Inner levels of outer level `s`: `outer_ptr[s]..outer_ptr[s + 1]` in the inner arrays.
    outer_ptr: Vec<usize>,
    /// Per inner level (grouped by outer level): `Σ z²`.
    inner_ztz: Vec<f64>,
    /// Per inner level: `Σ z z_outer` (q).
    inner_cross: Vec<f64>,
    /// Per inner level: `Σ z [x y]` (p + 1).
    inner_ztxy: Vec<f64>,
    /// Per outer level: `Σ z_outer z_outer'` (q × q, row-major).
    outer_ztz: Vec<f64>,
    /// Per outer level: `Σ z_outer [x y]'` (q × (p + 1), row-major).
    outer_ztxy: Vec<f64>,
}

/// The cross-products of one random-effects term's levels that [`NestedBlocks::new`] needs, laid out as
/// `u` is (level-major, `q` per level).
pub(crate) struct TermProducts<'a> {
    /// The term's diagonal blocks of `Z'Z` (q × q per level, row-major).
    pub ztz: &'a [f64],
    /// Its rows of `Z'X` (`p` per coefficient) and `Z'y`.
    pub ztx: &'a [f64],
    pub zty: &'a [f64],
}

impl NestedBlocks {
    /// The blocks when `terms` are two terms of which one is scalar and nested in the other (the inner one is
    /// [`NestedBlocks::inner_term`]'s): `cross` lists, for each pair of an inner level and an outer level that
    /// share rows, `(inner level, outer level, Σ z z_outer (q))`. `None` when the terms are not so nested (an inner level meets several outer levels).
    pub fn new(
        terms: &[TermInfo],
        products: [TermProducts<'_>; 2],
        cross: &[(usize, usize, &[f64])],
        p: usize,
    ) -> Option<NestedBlocks> {
        let inner = Self::inner_term(terms)?;
        let outer = 1 - inner;
        let (n_in, n_out, q) = (terms[inner].levels.len(), terms[outer].levels.len(), terms[outer].q);
        let k = p + 1;
        // Each inner level's outer level, which must be unique.
        let mut parent = vec![usize::MAX; n_in];
        let mut cross_of = vec![0usize; n_in];
        for (e, &(c, s, _)) in cross.iter().enumerate() {
            if c >= n_in || s >= n_out || parent[c] != usize::MAX {
                return None;
            }
            parent[c] = s;
            cross_of[c] = e;
        }
        if parent.contains(&usize::MAX) {
            return None;
        }
        let mut outer_ptr = vec![0usize; n_out + 1];
        for &s in &parent {
            outer_ptr[s + 1] += 1;
        }
        for s in 0..n_out {
            outer_ptr[s + 1] += outer_ptr[s];
        }
        let mut next = outer_ptr.clone();
        let mut order = vec![0usize; n_in];
        for (c, &s) in parent.iter().enumerate() {
            order[next[s]] = c;
            next[s] += 1;
        }
        let (pi, po) = (&products[inner], &products[outer]);
        let mut inner_ztz = Vec::with_capacity(n_in);
        let mut inner_cross = Vec::with_capacity(n_in * q);
        let mut inner_ztxy = Vec::with_capacity(n_in * k);
        for &c in &order {
            inner_ztz.push(pi.ztz[c]);
            inner_cross.extend_from_slice(cross[cross_of[c]].2);
            inner_ztxy.extend_from_slice(&pi.ztx[c * p..(c + 1) * p]);
            inner_ztxy.push(pi.zty[c]);
        }
        let mut outer_ztxy = Vec::with_capacity(n_out * q * k);
        for r in 0..n_out * q {
            outer_ztxy.extend_from_slice(&po.ztx[r * p..(r + 1) * p]);
            outer_ztxy.push(po.zty[r]);
        }
        Some(NestedBlocks {
            p,
            inner,
            outer,
            q,
            outer_ptr,
            inner_ztz,
            inner_cross,
            inner_ztxy,
            outer_ztz: po.ztz.to_vec(),
            outer_ztxy,
        })
    }

    /// Which of two terms would be the inner one: the scalar one, or of two scalar terms the one with more
    /// levels. `None` unless there are two terms and one is scalar.
    pub fn inner_term(terms: &[TermInfo]) -> Option<usize> {
        match terms {
            [a, b] if a.q == 1 && (b.q != 1 || a.levels.len() >= b.levels.len()) => Some(0),
            [_, b] if b.q == 1 => Some(1),
            _ => None,
        }
    }

    /// log|L|² and `R'R`'s pieces at θ (as the sparse path's `accumulate`), or `None` when a block is not
    /// positive definite.
    pub fn accumulate(&self, terms: &[TermInfo], theta: &[f64]) -> Option<Accumulated> {
        let (p, q, k) = (self.p, self.q, self.p + 1);
        let lam_in = terms[self.inner].lambda(theta)[0];
        let lam = terms[self.outer].lambda(theta);
        let n_out = self.outer_ptr.len() - 1;
        let parts: Vec<Option<(f64, Vec<f64>)>> = (0..n_out.div_ceil(CHUNK))
            .into_par_iter()
            .map(|chunk| {
                let levels = chunk * CHUNK..((chunk + 1) * CHUNK).min(n_out);
                // Rows of R, column-major in blocks of BLOCK rows, and R'R's lower triangle.
                let mut r = vec![0.0; k * BLOCK];
                let mut row = 0;
                let mut prod = vec![0.0; k * k];
                let flush = |r: &[f64], rows: usize, prod: &mut [f64]| {
                    for a in 0..k {
                        let ra = &r[a * BLOCK..a * BLOCK + rows];
                        for c in 0..=a {
                            prod[a * k + c] += dot(ra, &r[c * BLOCK..c * BLOCK + rows]);
                        }
                    }
                };
                let mut ldl2 = 0.0;
                let (mut a_ss, mut b_s, mut l_sc) = (vec![0.0; q * q], vec![0.0; q * k], vec![0.0; q]);
                for s in levels {
                    // A_ss = Λ' Z'Z_ss Λ + I and b_s = Λ' Z'[X y]_s.
                    congruence(&lam, &self.outer_ztz[s * q * q..(s + 1) * q * q], &lam, q, q, &mut a_ss);
                    for a in 0..q {
                        a_ss[a * q + a] += 1.0;
                    }
                    let bxy = &self.outer_ztxy[s * q * k..(s + 1) * q * k];
                    for a in 0..q {
                        for j in 0..k {
                            b_s[a * k + j] = (a..q).map(|c| lam[c * q + a] * bxy[c * k + j]).sum();
                        }
                    }
                    for c in self.outer_ptr[s]..self.outer_ptr[s + 1] {
                        let a_cc = lam_in * lam_in * self.inner_ztz[c] + 1.0;
                        let l_cc = a_cc.sqrt();
                        ldl2 += a_cc.ln();
                        // l_sc = Λ' Z'Z_sc λ / L_cc.
                        let zc = &self.inner_cross[c * q..(c + 1) * q];
                        for a in 0..q {
                            l_sc[a] = (a..q).map(|b| lam[b * q + a] * zc[b]).sum::<f64>() * lam_in / l_cc;
                        }
                        for a in 0..q {
                            for b in 0..=a {
                                a_ss[a * q + b] -= l_sc[a] * l_sc[b];
                            }
                        }
                        let bxy = &self.inner_ztxy[c * k..(c + 1) * k];
                        for j in 0..k {
                            let rc = lam_in * bxy[j] / l_cc;
                            r[j * BLOCK + row] = rc;
                            for a in 0..q {
                                b_s[a * k + j] -= l_sc[a] * rc;
                            }
                        }
                        row += 1;
                        if row == BLOCK {
                            flush(&r, row, &mut prod);
                            row = 0;
                        }
                    }
                    // L_ss (lower, in place) and r_s = L_ss⁻¹ b_s.
                    if !cholesky(&mut a_ss, q) {
                        return None;
                    }
                    for j in 0..q {
                        ldl2 += 2.0 * a_ss[j * q + j].ln();
                    }
                    for a in 0..q {
                        for j in 0..k {
                            let v = (b_s[a * k + j] - (0..a).map(|c| a_ss[a * q + c] * b_s[c * k + j]).sum::<f64>())
                                / a_ss[a * q + a];
                            b_s[a * k + j] = v;
                            r[j * BLOCK + row] = v;
                        }
                        row += 1;
                        if row == BLOCK {
                            flush(&r, row, &mut prod);
                            row = 0;
                        }
                    }
                }
                flush(&r, row, &mut prod);
                Some((ldl2, prod))
            })
            .collect();
        let mut ldl2 = 0.0;
        let mut prod = vec![0.0; k * k];
        for part in parts {
            let (l, pr) = part?;
            ldl2 += l;
            prod.iter_mut().zip(&pr).for_each(|(a, b)| *a += b);
        }
        Some(split_gram(ldl2, &prod, p))
    }
}

/// Dot product with four partial sums (vectorizes; the order is fixed, so the bits are too).
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}
