//! The blocked factorization of crossed random-effects terms with a dense tail, as MixedModels.jl factors
//! them: the first term in lme4's order (the one with the most levels, such as students in InstEval's
//! `(1 | s) + (1 | d) + (1 | dept:service)`) has a block-diagonal block in `A = Λ'Z'ZΛ + I`, one `q₁ × q₁`
//! block per level, and every other random effect goes into one dense block, the tail.
//!
//! With `A₁₁ = D D'` (per level `i`, `D_i` the Cholesky factor of its block) and `W = D⁻¹A₁₂`, the factor is
//! `L = [D 0; W' L₂₂]` with `L₂₂ L₂₂' = C = A₂₂ − W'W`. Each level of the first term couples only to the tail
//! levels it shares observations with, so `W'W` is a sum of small outer products, summed column by column
//! in parallel (each column by one thread, in a fixed order). `C` is factored by faer's dense Cholesky on
//! every core: in faer 0.24 its blocked recursion and matrix products split the output among threads and
//! keep each entry's sums in one order (a test compares the bits at 1 and 3 threads); faer's parallel
//! matrix-vector kernel does split sums, so the triangular solves run sequentially. With `b = Λ'Z'[X y]`
//! split as the factor is, the rows of `R = L⁻¹b` are `r₁ᵢ = D_i⁻¹ b₁ᵢ` and `r₂ = L₂₂⁻¹(b₂ − W'r₁)`.
//!
//! The sparse path (`sparse.rs`) reaches the same factor through an approximate-minimum-degree ordering,
//! which for such models also eliminates the first term's levels first and leaves a dense trailing
//! supernode; the explicit blocks avoid its per-evaluation assembly and permutation, run the dense part on
//! every core, and give the conditional variances from `C⁻¹` instead of a simplicial selected inverse.
//! [`DenseTail::worthwhile`] decides from the sparse factor's shape; a small tail (256 random effects or
//! fewer) is always taken, whatever the structure (for nested terms `C` is then block-diagonal).

// Index loops mirror the matrix formulas.
#![allow(clippy::needless_range_loop)]

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::cholesky::llt::factor::LltRegularization;
use faer::{Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::dense::{backward_solve, cholesky, congruence, forward_solve, lambda_sandwich};
use crate::nested::dot;
use crate::pls::{Modes, TermInfo};
use crate::sparse::{Accumulated, split_gram};

/// Largest tail (random effects outside the first term) factored densely: 4,096² values are 128 MiB, held
/// once per evaluation in flight (Satterthwaite's derivatives run one per thread), three times while the
/// conditional modes are computed (`C`'s factor, its inverse and faer's scratch).
pub(crate) const MAX_TAIL: usize = 4096;

/// One block of `Z'Z` between a level of the first term and a tail level, or between two tail levels.
#[derive(Debug, Clone)]
struct Cross {
    /// Tail term of the columns.
    col_term: usize,
    /// First tail row of the columns (0-based within the tail).
    col_base: usize,
    /// Offset of the block's values (rows × q of `col_term`, row-major) in the owner's value array.
    offset: usize,
}

/// A block of `Z'Z` between two tail levels (upper triangle: `row_base ≤ col_base`).
#[derive(Debug, Clone)]
struct TailPair {
    row_term: usize,
    row_base: usize,
    cross: Cross,
}

/// The cross-products of the terms, split into the first term's blocks and the dense tail.
#[derive(Debug, Clone)]
pub(crate) struct DenseTail {
    p: usize,
    /// Coefficients and levels of the first term; random effects in the tail.
    q1: usize,
    n1: usize,
    m2: usize,
    /// Per first-term level: `Σ z z'` (q₁ × q₁) and `Σ z [x y]'` (q₁ × (p + 1)), row-major.
    first_ztz: Vec<f64>,
    first_ztxy: Vec<f64>,
    /// The first-term level `i`'s blocks with the tail: `cross[cross_ptr[i]..cross_ptr[i + 1]]`, by column.
    cross_ptr: Vec<usize>,
    cross: Vec<Cross>,
    cross_ztz: Vec<f64>,
    /// Per tail column: its term and the first column of its level's block.
    col_block: Vec<(usize, usize)>,
    /// Per tail column that starts a level's block: the `(first-term level, index in cross)` of the blocks in
    /// that column, by level (`by_col[by_col_ptr[j]..by_col_ptr[j + 1]]`; empty for other columns).
    by_col_ptr: Vec<usize>,
    by_col: Vec<(usize, usize)>,
    /// Whether every term is scalar; then `cols[e]` is the tail column of `cross[e]`.
    scalar: bool,
    cols: Vec<usize>,
    /// Blocks among tail levels and their values.
    tail_pairs: Vec<TailPair>,
    tail_ztz: Vec<f64>,
    /// Tail rows of `Z'[X y]` (m₂ × (p + 1), row-major).
    tail_ztxy: Vec<f64>,
}

/// One block of `Z'Z` as the sparse path stores it: `(row term, row base, column term, column base, values)`
/// with bases in `u`'s layout and values row-major.
pub(crate) type ZtzBlock<'a> = (usize, usize, usize, usize, &'a [f64]);

/// The first term's part of the factor at θ: every `D_i` (q₁ × q₁ lower, row-major, level after level) and
/// every block of `W` (laid out as the cross-products are).
struct FirstFactor {
    d: Vec<f64>,
    w: Vec<f64>,
}

impl DenseTail {
    /// Whether the dense tail pays: a tail of at most [`MAX_TAIL`] random effects that is small (256 or fewer)
    /// or that the sparse factor fills in anyway (its largest supernode has at least half the tail's columns).
    pub fn worthwhile(terms: &[TermInfo], largest_supernode: usize) -> bool {
        if terms.len() < 2 || terms[0].levels.is_empty() {
            return false;
        }
        let m2: usize = terms[1..].iter().map(|t| t.q * t.levels.len()).sum();
        m2 > 0 && m2 <= MAX_TAIL && (m2 <= 256 || 2 * largest_supernode >= m2)
    }

    /// The blocks from the stored cross-products: `blocks` lists every block of the upper triangle of `Z'Z`
    /// (diagonal blocks full), `ztx` and `zty` the rows of `Z'X` and `Z'y` in `u`'s layout.
    pub fn new(terms: &[TermInfo], blocks: &[ZtzBlock<'_>], ztx: &[f64], zty: &[f64], p: usize) -> DenseTail {
        let (q1, n1) = (terms[0].q, terms[0].levels.len());
        let m1 = q1 * n1;
        let m2: usize = terms[1..].iter().map(|t| t.q * t.levels.len()).sum();
        let row_of = |r: usize| -> Vec<f64> {
            let mut v = ztx[r * p..(r + 1) * p].to_vec();
            v.push(zty[r]);
            v
        };
        let first_ztxy = (0..m1).flat_map(row_of).collect();
        let tail_ztxy = (m1..m1 + m2).flat_map(row_of).collect();
        let mut first_ztz = vec![0.0; n1 * q1 * q1];
        let mut per_level: Vec<Vec<(usize, usize, &[f64])>> = vec![Vec::new(); n1];
        let (mut tail_pairs, mut tail_ztz) = (Vec::new(), Vec::new());
        for &(rt, rb, ct, cb, ztz) in blocks {
            if rt == 0 && ct == 0 {
                let level = rb / q1;
                first_ztz[level * q1 * q1..(level + 1) * q1 * q1].copy_from_slice(ztz);
            } else if rt == 0 {
                per_level[rb / q1].push((ct, cb - m1, ztz));
            } else {
                let cross = Cross { col_term: ct, col_base: cb - m1, offset: tail_ztz.len() };
                tail_ztz.extend_from_slice(ztz);
                tail_pairs.push(TailPair { row_term: rt, row_base: rb - m1, cross });
            }
        }
        let (mut cross_ptr, mut cross, mut cross_ztz) = (vec![0], Vec::new(), Vec::new());
        let mut col_count = vec![0usize; m2 + 1];
        for mut list in per_level {
            list.sort_by_key(|&(_, cb, _)| cb);
            for (ct, cb, ztz) in list {
                col_count[cb + 1] += 1;
                cross.push(Cross { col_term: ct, col_base: cb, offset: cross_ztz.len() });
                cross_ztz.extend_from_slice(ztz);
            }
            cross_ptr.push(cross.len());
        }
        let mut by_col_ptr = col_count;
        for j in 0..m2 {
            by_col_ptr[j + 1] += by_col_ptr[j];
        }
        let mut next = by_col_ptr.clone();
        let mut by_col = vec![(0, 0); cross.len()];
        for i in 0..n1 {
            for e in cross_ptr[i]..cross_ptr[i + 1] {
                let cb = cross[e].col_base;
                by_col[next[cb]] = (i, e);
                next[cb] += 1;
            }
        }
        let col_block = terms[1..]
            .iter()
            .enumerate()
            .flat_map(|(t, term)| {
                let base = term.u_offset - m1;
                (0..term.q * term.levels.len()).map(move |c| (t + 1, base + c / term.q * term.q))
            })
            .collect();
        let scalar = terms.iter().all(|t| t.q == 1);
        let cols = cross.iter().map(|c| c.col_base).collect();
        DenseTail {
            p,
            q1,
            n1,
            m2,
            first_ztz,
            first_ztxy,
            cross_ptr,
            cross,
            cross_ztz,
            col_block,
            by_col_ptr,
            by_col,
            scalar,
            cols,
            tail_pairs,
            tail_ztz,
            tail_ztxy,
        }
    }

    /// Every `D_i` and `W_i = D_i⁻¹ Λ₁'Z'Z_{i,tail}Λ_c`, or `None` when some `A_ii` is not positive definite.
    fn first_factor(&self, terms: &[TermInfo], lambdas: &[Vec<f64>]) -> Option<FirstFactor> {
        let q1 = self.q1;
        let lam1 = &lambdas[0];
        let mut d = vec![0.0; self.n1 * q1 * q1];
        let mut w = vec![0.0; self.cross_ztz.len()];
        for (i, di) in d.chunks_exact_mut(q1 * q1).enumerate() {
            congruence(lam1, &self.first_ztz[i * q1 * q1..(i + 1) * q1 * q1], lam1, q1, q1, di);
            for a in 0..q1 {
                di[a * q1 + a] += 1.0;
            }
            cholesky(di, q1).then_some(())?;
            for c in &self.cross[self.cross_ptr[i]..self.cross_ptr[i + 1]] {
                let qc = terms[c.col_term].q;
                let range = c.offset..c.offset + q1 * qc;
                congruence(lam1, &self.cross_ztz[range.clone()], &lambdas[c.col_term], q1, qc, &mut w[range.clone()]);
                forward_solve(di, q1, &mut w[range], qc);
            }
        }
        Some(FirstFactor { d, w })
    }

    /// `L₂₂`, the Cholesky factor of `C = A₂₂ − W'W` (lower triangle of a column-major m₂ × m₂ buffer), or
    /// `None` when `C` is not positive definite. `W'W` is summed column by column in parallel (each column in
    /// a fixed order), then `A₂₂` is added.
    fn tail_factor(&self, terms: &[TermInfo], lambdas: &[Vec<f64>], f: &FirstFactor) -> Option<Vec<f64>> {
        let m2 = self.m2;
        let mut c = vec![0.0; m2 * m2];
        if self.scalar {
            // Every term scalar: block e of W is the single value w[e], in column cols[e].
            c.par_chunks_mut(m2).enumerate().for_each(|(j, col)| {
                for &(i, ef) in &self.by_col[self.by_col_ptr[j]..self.by_col_ptr[j + 1]] {
                    let wf = f.w[ef];
                    let end = self.cross_ptr[i + 1];
                    for (&row, &we) in self.cols[ef..end].iter().zip(&f.w[ef..end]) {
                        col[row] -= we * wf;
                    }
                }
            });
        } else {
            c.par_chunks_mut(m2).enumerate().for_each(|(j, col)| {
                let (t, base) = self.col_block[j];
                let (b, qf) = (j - base, terms[t].q);
                for &(i, ef) in &self.by_col[self.by_col_ptr[base]..self.by_col_ptr[base + 1]] {
                    let wf = &f.w[self.cross[ef].offset..];
                    for ce in &self.cross[ef..self.cross_ptr[i + 1]] {
                        let qc = terms[ce.col_term].q;
                        let we = &f.w[ce.offset..ce.offset + self.q1 * qc];
                        for a in 0..qc {
                            let row = ce.col_base + a;
                            if row >= j {
                                col[row] -= (0..self.q1).map(|kk| we[kk * qc + a] * wf[kk * qf + b]).sum::<f64>();
                            }
                        }
                    }
                }
            });
        }
        for j in 0..m2 {
            c[j * m2 + j] += 1.0;
        }
        let mut blk = Vec::new();
        for pr in &self.tail_pairs {
            let (qr, qc) = (terms[pr.row_term].q, terms[pr.cross.col_term].q);
            let ztz = &self.tail_ztz[pr.cross.offset..pr.cross.offset + qr * qc];
            blk.resize(qr * qc, 0.0);
            congruence(&lambdas[pr.row_term], ztz, &lambdas[pr.cross.col_term], qr, qc, &mut blk);
            let (rb, cb) = (pr.row_base, pr.cross.col_base);
            for a in 0..qr {
                for b in 0..qc {
                    // The block sits above the diagonal (rb < cb) or on it; store its lower mirror.
                    let (row, col) = (cb + b, rb + a);
                    if row >= col {
                        c[col * m2 + row] += blk[a * qc + b];
                    }
                }
            }
        }
        // L₂₂ in place, on every core.
        let par = Par::rayon(0);
        let mut mem = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(m2, par, Default::default()));
        let mat = MatMut::from_column_major_slice_mut(&mut c, m2, m2);
        llt::factor::cholesky_in_place(
            mat,
            LltRegularization::default(),
            par,
            MemStack::new(&mut mem),
            Default::default(),
        )
        .ok()?;
        (0..m2).all(|j| c[j * m2 + j] > 0.0 && c[j * m2 + j].is_finite()).then_some(c)
    }

    /// The rows `r₁ᵢ = D_i⁻¹Λ₁'rhs_i` (q₁ × k per level, row-major) and `b₂ − W'r₁` (column-major m₂ × k)
    /// for right-hand sides with `k` values per row of `u` (`Z'[X y]` for an evaluation, `Z'(y − Xβ)` for the
    /// modes).
    fn forward(
        &self,
        terms: &[TermInfo],
        lambdas: &[Vec<f64>],
        f: &FirstFactor,
        rhs: (&[f64], &[f64]),
        k: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let (q1, m2) = (self.q1, self.m2);
        let (first_rhs, tail_rhs) = rhs;
        // b₂ = Λ'rhs over the tail rows.
        let mut b2 = vec![0.0; m2 * k];
        let mut row = 0;
        for (t, term) in terms.iter().enumerate().skip(1) {
            let (q, lam) = (term.q, &lambdas[t]);
            for _ in 0..term.levels.len() {
                for a in 0..q {
                    for j in 0..k {
                        b2[j * m2 + row + a] = (a..q).map(|c| lam[c * q + a] * tail_rhs[(row + c) * k + j]).sum();
                    }
                }
                row += q;
            }
        }
        let lam1 = &lambdas[0];
        let mut r1 = vec![0.0; self.n1 * q1 * k];
        for (i, r) in r1.chunks_exact_mut(q1 * k).enumerate() {
            let rhs = &first_rhs[i * q1 * k..(i + 1) * q1 * k];
            for a in 0..q1 {
                for j in 0..k {
                    r[a * k + j] = (a..q1).map(|c| lam1[c * q1 + a] * rhs[c * k + j]).sum();
                }
            }
            forward_solve(&f.d[i * q1 * q1..(i + 1) * q1 * q1], q1, r, k);
            for ce in &self.cross[self.cross_ptr[i]..self.cross_ptr[i + 1]] {
                let qc = terms[ce.col_term].q;
                let we = &f.w[ce.offset..ce.offset + q1 * qc];
                for a in 0..qc {
                    for j in 0..k {
                        b2[j * m2 + ce.col_base + a] -= (0..q1).map(|c| we[c * qc + a] * r[c * k + j]).sum::<f64>();
                    }
                }
            }
        }
        (r1, b2)
    }

    /// log|L|² of the first term's blocks and the tail's factor.
    fn log_det(&self, f: &FirstFactor, l22: &[f64]) -> f64 {
        let q1 = self.q1;
        let first: f64 =
            f.d.chunks_exact(q1 * q1).map(|d| (0..q1).map(|a| 2.0 * d[a * q1 + a].ln()).sum::<f64>()).sum();
        first + (0..self.m2).map(|j| 2.0 * l22[j * self.m2 + j].ln()).sum::<f64>()
    }

    /// log|L|² and `R'R`'s pieces at θ (as the sparse path's `accumulate`), or `None` when a block is not
    /// positive definite.
    pub fn accumulate(&self, terms: &[TermInfo], theta: &[f64]) -> Option<Accumulated> {
        let (k, m2) = (self.p + 1, self.m2);
        let lambdas: Vec<Vec<f64>> = terms.iter().map(|t| t.lambda(theta)).collect();
        let f = self.first_factor(terms, &lambdas)?;
        let l22 = self.tail_factor(terms, &lambdas, &f)?;
        let (r1, mut r2) = self.forward(terms, &lambdas, &f, (&self.first_ztxy, &self.tail_ztxy), k);
        // Sequential: faer's parallel matrix-vector kernel splits sums across threads, so a one-column solve
        // could change in the last bits with the thread count.
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(
            MatRef::from_column_major_slice(&l22, m2, m2),
            MatMut::from_column_major_slice_mut(&mut r2, m2, k),
            Par::Seq,
        );
        // The lower triangle of [R r]'[R r], row-major (entry (j, jj ≤ j) at j·k + jj), as `split_gram` reads.
        let mut prod = vec![0.0; k * k];
        for r in r1.chunks_exact(k) {
            for j in 0..k {
                for jj in 0..=j {
                    prod[j * k + jj] += r[j] * r[jj];
                }
            }
        }
        for j in 0..k {
            for jj in 0..=j {
                prod[j * k + jj] += dot(&r2[j * m2..(j + 1) * m2], &r2[jj * m2..(jj + 1) * m2]);
            }
        }
        Some(split_gram(self.log_det(&f, &l22), &prod, self.p))
    }

    /// Conditional modes `b = Λu` and each level's conditional covariance over σ² (`Λ (A⁻¹)_ii Λ'`), as the
    /// sparse path's `modes`.
    pub fn modes(&self, terms: &[TermInfo], theta: &[f64], beta: &[f64]) -> Option<Modes> {
        let (p, q1, m2) = (self.p, self.q1, self.m2);
        let lambdas: Vec<Vec<f64>> = terms.iter().map(|t| t.lambda(theta)).collect();
        // Z'(y − Xβ) for every row of u.
        let resid = |ztxy: &[f64]| -> Vec<f64> {
            ztxy.chunks_exact(p + 1).map(|row| row[p] - (0..p).map(|a| row[a] * beta[a]).sum::<f64>()).collect()
        };
        let (first_rhs, tail_rhs) = (resid(&self.first_ztxy), resid(&self.tail_ztxy));
        let f = self.first_factor(terms, &lambdas)?;
        let l22 = self.tail_factor(terms, &lambdas, &f)?;
        let (r1, mut u2) = self.forward(terms, &lambdas, &f, (&first_rhs, &tail_rhs), 1);
        // Sequential throughout (see `accumulate`); this runs once per fit.
        let par = Par::Seq;
        let l22 = MatRef::from_column_major_slice(&l22, m2, m2);
        let mut u2m = MatMut::from_column_major_slice_mut(&mut u2, m2, 1);
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(l22, u2m.as_mut(), par);
        faer::linalg::triangular_solve::solve_upper_triangular_in_place(l22.transpose(), u2m, par);
        // C⁻¹ (lower triangle) for the tail's blocks and the first term's corrections.
        let mut cinv = Mat::<f64>::zeros(m2, m2);
        let mut mem = MemBuffer::new(llt::inverse::inverse_scratch::<f64>(m2, par));
        llt::inverse::inverse(cinv.as_mut(), l22, par, MemStack::new(&mut mem));
        let cinv_at = |i: usize, j: usize| if i >= j { cinv[(i, j)] } else { cinv[(j, i)] };
        let m1 = q1 * self.n1;
        let mut u = vec![0.0; m1 + m2];
        u[m1..].copy_from_slice(&u2);
        let mut first_cov = Vec::with_capacity(self.n1);
        for i in 0..self.n1 {
            let d = &f.d[i * q1 * q1..(i + 1) * q1 * q1];
            let blocks = &self.cross[self.cross_ptr[i]..self.cross_ptr[i + 1]];
            // u₁ᵢ = D_i⁻ᵀ(r₁ᵢ − W_i u₂) and M = I + W_i C⁻¹ W_i'.
            let mut v: Vec<f64> = r1[i * q1..(i + 1) * q1].to_vec();
            let mut m = vec![0.0; q1 * q1];
            for a in 0..q1 {
                m[a * q1 + a] = 1.0;
            }
            for ce in blocks {
                let qc = terms[ce.col_term].q;
                let we = &f.w[ce.offset..ce.offset + q1 * qc];
                for a in 0..q1 {
                    v[a] -= (0..qc).map(|x| we[a * qc + x] * u2[ce.col_base + x]).sum::<f64>();
                }
                for cf in blocks {
                    let qf = terms[cf.col_term].q;
                    let wf = &f.w[cf.offset..cf.offset + q1 * qf];
                    for a in 0..q1 {
                        for b in 0..q1 {
                            let mut s = 0.0;
                            for x in 0..qc {
                                for y in 0..qf {
                                    s += we[a * qc + x] * cinv_at(ce.col_base + x, cf.col_base + y) * wf[b * qf + y];
                                }
                            }
                            m[a * q1 + b] += s;
                        }
                    }
                }
            }
            backward_solve(d, q1, &mut v, 1);
            u[i * q1..(i + 1) * q1].copy_from_slice(&v);
            // (A⁻¹)_ii = D⁻ᵀ M D⁻¹.
            let mut dinv = vec![0.0; q1 * q1];
            for a in 0..q1 {
                dinv[a * q1 + a] = 1.0;
            }
            forward_solve(d, q1, &mut dinv, q1);
            let mut zb = vec![0.0; q1 * q1];
            for a in 0..q1 {
                for b in 0..q1 {
                    let mut s = 0.0;
                    for x in a..q1 {
                        for y in b..q1 {
                            s += dinv[x * q1 + a] * m[x * q1 + y] * dinv[y * q1 + b];
                        }
                    }
                    zb[a * q1 + b] = s;
                }
            }
            first_cov.push(zb);
        }
        let mut b = vec![0.0; m1 + m2];
        let mut cond = Vec::with_capacity(terms.len());
        let mut first_cov = first_cov.into_iter();
        for (t, term) in terms.iter().enumerate() {
            let (q, lam) = (term.q, &lambdas[t]);
            let mut per_level = Vec::with_capacity(term.levels.len());
            for level in 0..term.levels.len() {
                let base = term.u_offset + level * q;
                for a in 0..q {
                    b[base + a] = (0..=a).map(|c| lam[a * q + c] * u[base + c]).sum();
                }
                let zb = if t == 0 {
                    first_cov.next()?
                } else {
                    let tb = base - m1;
                    (0..q * q).map(|e| cinv_at(tb + e / q, tb + e % q)).collect()
                };
                per_level.push(lambda_sandwich(lam, &zb, q));
            }
            cond.push(per_level);
        }
        Some(Modes { b, cond_cov: cond })
    }
}
