//! Penalized least squares for models with several random-effects terms (nested such as
//! `(1 | school) + (1 | school:year)`, or crossed) through a sparse Cholesky factorization of
//! `A = Λ'Z'ZΛ + I` (faer's, with an approximate-minimum-degree ordering computed once per model).
//!
//! The pattern of `A` does not depend on θ, so the symbolic factorization is done once; each evaluation
//! fills `A`'s values from the stored `Z'Z` blocks, refactors numerically and solves for the fixed-effects
//! Schur complement with `p + 1` right-hand sides (`Λ'Z'X` and `Λ'Z'y`): the same quantities as the dense
//! path, at a cost that follows the factor's fill instead of the cube of the number of random effects.
//! For a nested model the ordering eliminates the inner levels (cohorts) first; their columns have one
//! off-diagonal entry each and there is no fill. Two nested terms with a scalar inner one (the cohort model)
//! evaluate instead by the explicit blocked factorization of `nested.rs`, in parallel over outer levels and
//! without storing `R` (about 15 times faster on the national cohort model). Other structures whose factor
//! fills in a dense tail (crossed terms such as InstEval's), or whose tail is small, evaluate by the explicit
//! blocks of `tail.rs`. Otherwise conditional variances come from the selected inverse of `A` (Takahashi's
//! recurrences) on a simplicial factor at the optimum only.

// Index loops mirror the matrix formulas.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;
use std::sync::Arc;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::LltRegularization;
use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::linalg::cholesky::{
    CholeskySymbolicParams, LltRef, SymbolicCholesky, SymbolicCholeskyRaw, SymmetricOrdering,
    factorize_symbolic_cholesky, supernodal::SupernodalLltRef,
};
use faer::sparse::{SparseColMatRef, SymbolicSparseColMatRef};
use faer::{Conj, MatMut, Par, Side};
use psmeval_frame::RandomTerm;

use crate::dense::{congruence, lambda_sandwich};
use crate::nested::{NestedBlocks, TermProducts};
use crate::pls::{Modes, TermInfo};
use crate::tail::{DenseTail, ZtzBlock};

/// One q_r×q_c block of `Z'Z` between a level of one term (rows) and a level of another or the same term
/// (columns), in the upper triangle of the `u` ordering.
#[derive(Debug, Clone)]
struct Pair {
    row_term: usize,
    row_base: usize,
    col_term: usize,
    col_base: usize,
    /// The block's values, q_r×q_c row-major (full, also for a diagonal block).
    ztz: Vec<f64>,
    /// Position of entry (α, β) in the CSC values of `A`; `usize::MAX` for the lower half of a diagonal block.
    pos: Vec<usize>,
}

/// The sparse random-effects part of a PLS problem.
#[derive(Debug, Clone)]
pub(crate) struct SparseRe {
    m: usize,
    p: usize,
    col_ptr: Vec<usize>,
    row_idx: Vec<usize>,
    /// Positions of the diagonal entries of `A` in the CSC values (the `+ I`).
    diag_pos: Vec<usize>,
    pairs: Vec<Pair>,
    /// `Z'X` (m×p row-major) and `Z'y`.
    ztx: Vec<f64>,
    zty: Vec<f64>,
    /// For each random effect: its term.
    term_of: Vec<usize>,
    symbolic: Arc<SymbolicCholesky<usize>>,
    /// Positions of the diagonal in a simplicial factor's values (empty for a supernodal factor).
    l_diag: Vec<usize>,
    /// The blocked factorization when the model is two nested terms (the evaluations' fast path).
    nested: Option<NestedBlocks>,
    /// The first term's blocks and a dense tail, when the tail is small or the sparse factor would fill it in
    /// anyway (and the terms are not two nested ones).
    tail: Option<DenseTail>,
}

/// What one factorization at θ gives: log|L|², Σ R'R (lower p×p), Σ R'r, Σ r'r as in the dense path.
pub(crate) type Accumulated = (f64, Vec<f64>, Vec<f64>, f64);

/// [`Accumulated`] from log|L|² and the lower triangle of `[R r]'[R r]` ((p + 1) × (p + 1), row-major).
pub(crate) fn split_gram(ldl2: f64, prod: &[f64], p: usize) -> Accumulated {
    let k = p + 1;
    let mut sxx = vec![0.0; p * p];
    let mut sxy = vec![0.0; p];
    for a in 0..p {
        sxx[a * p..a * p + a + 1].copy_from_slice(&prod[a * k..a * k + a + 1]);
        sxy[a] = prod[p * k + a];
    }
    (ldl2, sxx, sxy, prod[p * k + p])
}

impl SparseRe {
    /// Stores the cross-products of the terms (already in lme4's order, laid out by `terms`) and computes the
    /// symbolic factorization. `Err` names what could not be set up (memory).
    pub fn new(
        y: &[f64],
        x: &ndarray::Array2<f64>,
        random: &[&RandomTerm],
        terms: &[TermInfo],
    ) -> Result<SparseRe, String> {
        let n = y.len();
        let p = x.ncols();
        let m: usize = terms.iter().map(|t| t.q * t.levels.len()).sum();
        let mut pairs: Vec<Pair> = Vec::new();
        // Diagonal blocks: one per level of each term, indexed directly.
        let mut diag_index: Vec<Vec<usize>> = Vec::with_capacity(terms.len());
        for (k, t) in terms.iter().enumerate() {
            let first = pairs.len();
            for j in 0..t.levels.len() {
                let base = t.u_offset + j * t.q;
                pairs.push(Pair {
                    row_term: k,
                    row_base: base,
                    col_term: k,
                    col_base: base,
                    ztz: vec![0.0; t.q * t.q],
                    pos: Vec::new(),
                });
            }
            diag_index.push((first..pairs.len()).collect());
        }
        let mut off: HashMap<(usize, usize), usize> = HashMap::new();
        // The last block found per pair of terms: rows of one school and cohort come together, so most rows
        // skip the hash lookup.
        let n_terms = terms.len();
        let mut last: Vec<Option<((usize, usize), usize)>> = vec![None; n_terms * n_terms];
        let mut ztx = vec![0.0; m * p];
        let mut zty = vec![0.0; m];
        for i in 0..n {
            let xi = x.row(i);
            for (k, (rt, t)) in random.iter().zip(terms).enumerate() {
                let level = rt.codes[i] as usize;
                let base = t.u_offset + level * t.q;
                let zi = rt.z.row(i);
                let d = &mut pairs[diag_index[k][level]].ztz;
                for a in 0..t.q {
                    for b in 0..t.q {
                        d[a * t.q + b] += zi[a] * zi[b];
                    }
                    zty[base + a] += zi[a] * y[i];
                    for c in 0..p {
                        ztx[(base + a) * p + c] += zi[a] * xi[c];
                    }
                }
                for (s, (rs, ts)) in random.iter().zip(terms).enumerate().skip(k + 1) {
                    let col_base = ts.u_offset + rs.codes[i] as usize * ts.q;
                    let idx = match last[k * n_terms + s] {
                        Some((key, idx)) if key == (base, col_base) => idx,
                        _ => {
                            let idx = *off.entry((base, col_base)).or_insert_with(|| {
                                pairs.push(Pair {
                                    row_term: k,
                                    row_base: base,
                                    col_term: s,
                                    col_base,
                                    ztz: vec![0.0; t.q * ts.q],
                                    pos: Vec::new(),
                                });
                                pairs.len() - 1
                            });
                            last[k * n_terms + s] = Some(((base, col_base), idx));
                            idx
                        }
                    };
                    let zs = rs.z.row(i);
                    let blk = &mut pairs[idx].ztz;
                    for a in 0..t.q {
                        for b in 0..ts.q {
                            blk[a * ts.q + b] += zi[a] * zs[b];
                        }
                    }
                }
            }
        }
        // The upper-triangular CSC pattern: every (row, col) with row ≤ col of every block.
        let mut entries: Vec<(usize, usize, usize, usize)> = Vec::new(); // (col, row, pair, offset in block)
        for (pi, pr) in pairs.iter().enumerate() {
            let (qr, qc) = (terms[pr.row_term].q, terms[pr.col_term].q);
            for a in 0..qr {
                for b in 0..qc {
                    let (r, c) = (pr.row_base + a, pr.col_base + b);
                    if r <= c {
                        entries.push((c, r, pi, a * qc + b));
                    }
                }
            }
        }
        entries.sort_unstable();
        let mut col_ptr = vec![0usize; m + 1];
        let mut row_idx = Vec::with_capacity(entries.len());
        let mut diag_pos = vec![usize::MAX; m];
        for pr in &mut pairs {
            pr.pos = vec![usize::MAX; pr.ztz.len()];
        }
        for (e, &(c, r, pi, o)) in entries.iter().enumerate() {
            col_ptr[c + 1] += 1;
            row_idx.push(r);
            pairs[pi].pos[o] = e;
            if r == c {
                diag_pos[c] = e;
            }
        }
        for c in 0..m {
            col_ptr[c + 1] += col_ptr[c];
        }
        let term_of =
            terms.iter().enumerate().flat_map(|(k, t)| std::iter::repeat_n(k, t.q * t.levels.len())).collect();
        let symbolic = symbolic_factor(m, &col_ptr, &row_idx, SupernodalThreshold::AUTO)?;
        // A simplicial factor's diagonal positions, for the row-major forward solve of `accumulate`.
        let l_diag = match symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(sym) => {
                let f = sym.factor();
                (0..m)
                    .map(|j| (f.col_ptr()[j]..f.col_ptr()[j + 1]).find(|&e| f.row_idx()[e] == j))
                    .collect::<Option<Vec<usize>>>()
                    .ok_or("the simplicial factor has no diagonal entry")?
            }
            SymbolicCholeskyRaw::Supernodal(_) => Vec::new(),
        };
        let nested = nested_blocks(terms, &pairs, &ztx, &zty, p);
        let largest_supernode = match symbolic.raw() {
            SymbolicCholeskyRaw::Supernodal(sym) => {
                sym.supernode_begin().iter().zip(sym.supernode_end()).map(|(b, e)| e - b).max().unwrap_or(0)
            }
            SymbolicCholeskyRaw::Simplicial(_) => 0,
        };
        let tail = (nested.is_none() && DenseTail::worthwhile(terms, largest_supernode)).then(|| {
            let blocks: Vec<ZtzBlock<'_>> =
                pairs.iter().map(|pr| (pr.row_term, pr.row_base, pr.col_term, pr.col_base, &pr.ztz[..])).collect();
            DenseTail::new(terms, &blocks, &ztx, &zty, p)
        });
        Ok(SparseRe {
            m,
            p,
            col_ptr,
            row_idx,
            diag_pos,
            pairs,
            ztx,
            zty,
            term_of,
            symbolic: Arc::new(symbolic),
            l_diag,
            nested,
            tail,
        })
    }

    /// Number of stored values of the Cholesky factor (its memory is 8 bytes each).
    pub fn factor_len(&self) -> usize {
        self.symbolic.len_val()
    }

    /// The values of `A = Λ'Z'ZΛ + I` at the stored pattern.
    fn a_values(&self, lambdas: &[Vec<f64>], terms: &[TermInfo]) -> Vec<f64> {
        let mut values = vec![0.0; self.row_idx.len()];
        let mut tmp = Vec::new();
        for pr in &self.pairs {
            let (qr, qc) = (terms[pr.row_term].q, terms[pr.col_term].q);
            let (lr, lc) = (&lambdas[pr.row_term], &lambdas[pr.col_term]);
            if qr == 1 && qc == 1 {
                values[pr.pos[0]] += lr[0] * pr.ztz[0] * lc[0];
                continue;
            }
            tmp.resize(qr * qc, 0.0);
            congruence(lr, &pr.ztz, lc, qr, qc, &mut tmp);
            for (&pos, &v) in pr.pos.iter().zip(&tmp) {
                if pos != usize::MAX {
                    values[pos] += v;
                }
            }
        }
        for &d in &self.diag_pos {
            values[d] += 1.0;
        }
        values
    }

    /// `Λ'v` for a vector laid out as `u` with `cols` columns (row-major m×cols).
    fn lambda_t(&self, lambdas: &[Vec<f64>], terms: &[TermInfo], v: &[f64], cols: usize) -> Vec<f64> {
        let mut out = vec![0.0; self.m * cols];
        let mut r = 0;
        while r < self.m {
            let t = &terms[self.term_of[r]];
            let lam = &lambdas[self.term_of[r]];
            for a in 0..t.q {
                for k in a..t.q {
                    let l = lam[k * t.q + a];
                    if l != 0.0 {
                        for c in 0..cols {
                            out[(r + a) * cols + c] += l * v[(r + k) * cols + c];
                        }
                    }
                }
            }
            r += t.q;
        }
        out
    }

    /// Factors `A` at θ and returns the Schur-complement pieces, or `None` if `A` is not positive definite:
    /// by the blocked factorization for two nested terms, by the first term's blocks and a dense tail when the
    /// tail is small or filled in anyway (crossed terms), by the sparse factorization otherwise.
    pub fn accumulate(&self, terms: &[TermInfo], theta: &[f64]) -> Option<Accumulated> {
        match (&self.nested, &self.tail) {
            (Some(blocks), _) => blocks.accumulate(terms, theta),
            (None, Some(tail)) => tail.accumulate(terms, theta),
            (None, None) => self.accumulate_sparse(terms, theta),
        }
    }

    /// [`SparseRe::accumulate`] by the sparse factorization, whatever the structure.
    pub(crate) fn accumulate_sparse(&self, terms: &[TermInfo], theta: &[f64]) -> Option<Accumulated> {
        let (m, p) = (self.m, self.p);
        let lambdas: Vec<Vec<f64>> = terms.iter().map(|t| t.lambda(theta)).collect();
        let values = self.a_values(&lambdas, terms);
        let w = self.lambda_t(&lambdas, terms, &self.ztx, p);
        let wy = self.lambda_t(&lambdas, terms, &self.zty, 1);
        let k = p + 1;
        if let SymbolicCholeskyRaw::Simplicial(sym) = self.symbolic.raw() {
            return self.accumulate_simplicial(sym.factor(), &values, &w, &wy);
        }
        // Right-hand sides [W wy], column-major m×(p+1) for faer.
        let mut rhs = vec![0.0; m * k];
        for r in 0..m {
            for c in 0..p {
                rhs[c * m + r] = w[r * p + c];
            }
            rhs[p * m + r] = wy[r];
        }
        let b = rhs.clone();
        let (ldl2, _) = factor_and_solve(&self.symbolic, m, &self.col_ptr, &self.row_idx, &values, &mut rhs, k)?;
        // S = [W wy]' A⁻¹ [W wy] (k×k, lower triangle) from contiguous columns.
        let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
        let col = |v: &[f64], c: usize| -> Vec<f64> { v[c * m..(c + 1) * m].to_vec() };
        let mut sxx = vec![0.0; p * p];
        let mut sxy = vec![0.0; p];
        for a in 0..p {
            let xa = col(&rhs, a);
            for c in 0..=a {
                sxx[a * p + c] = dot(&b[c * m..(c + 1) * m], &xa);
            }
            sxy[a] = dot(&b[p * m..], &xa);
        }
        let syy = dot(&b[p * m..], &rhs[p * m..]);
        Some((ldl2, sxx, sxy, syy))
    }

    /// The Schur-complement pieces from a simplicial factor (nested models: no fill): R = L⁻¹P[W wy] by a
    /// forward solve on row-major rows (k contiguous values per random effect), then R'R in one pass.
    fn accumulate_simplicial(
        &self,
        factor: SymbolicSparseColMatRef<'_, usize>,
        values: &[f64],
        w: &[f64],
        wy: &[f64],
    ) -> Option<Accumulated> {
        let (m, p, k) = (self.m, self.p, self.p + 1);
        let lvalues = factor_numeric(&self.symbolic, m, &self.col_ptr, &self.row_idx, values)?;
        let (lcp, lri) = (factor.col_ptr(), factor.row_idx());
        let mut x = vec![0.0; m * k];
        match self.symbolic.perm() {
            Some(perm) => {
                let inv = perm.arrays().1;
                for r in 0..m {
                    let row = &mut x[inv[r] * k..(inv[r] + 1) * k];
                    row[..p].copy_from_slice(&w[r * p..(r + 1) * p]);
                    row[p] = wy[r];
                }
            }
            None => {
                for r in 0..m {
                    x[r * k..r * k + p].copy_from_slice(&w[r * p..(r + 1) * p]);
                    x[r * k + p] = wy[r];
                }
            }
        }
        let mut ldl2 = 0.0;
        let mut xj = vec![0.0; k];
        for j in 0..m {
            let d = lvalues[self.l_diag[j]];
            if !(d > 0.0 && d.is_finite()) {
                return None;
            }
            ldl2 += 2.0 * d.ln();
            for c in 0..k {
                x[j * k + c] /= d;
                xj[c] = x[j * k + c];
            }
            for e in lcp[j]..lcp[j + 1] {
                let i = lri[e];
                if i != j {
                    let l = lvalues[e];
                    let row = &mut x[i * k..(i + 1) * k];
                    for c in 0..k {
                        row[c] -= l * xj[c];
                    }
                }
            }
        }
        // R'R (lower triangle) row by row; plain loops rather than faer's dense kernels, which leave wide
        // vector registers in a state that slowed the scalar code run after them (the logistic model's
        // PIRLS) tenfold on this machine's CPUs.
        let mut prod = vec![0.0; k * k];
        for r in 0..m {
            let row = &x[r * k..(r + 1) * k];
            for a in 0..k {
                let ra = row[a];
                if ra != 0.0 {
                    for (pc, &rc) in prod[a * k..a * k + a + 1].iter_mut().zip(&row[..=a]) {
                        *pc += ra * rc;
                    }
                }
            }
        }
        Some(split_gram(ldl2, &prod, p))
    }

    /// Conditional modes b = Λu (u-ordered) and, per term and level, the q×q conditional covariance of b over
    /// σ² (the level's diagonal block of Λ A⁻¹ Λ'), at θ with fixed effects β.
    pub fn modes(&self, terms: &[TermInfo], theta: &[f64], beta: &[f64]) -> Option<Modes> {
        if let Some(tail) = &self.tail {
            return tail.modes(terms, theta, beta);
        }
        self.modes_sparse(terms, theta, beta)
    }

    /// [`SparseRe::modes`] by the sparse factorization, whatever the structure.
    pub(crate) fn modes_sparse(&self, terms: &[TermInfo], theta: &[f64], beta: &[f64]) -> Option<Modes> {
        let (m, p) = (self.m, self.p);
        let lambdas: Vec<Vec<f64>> = terms.iter().map(|t| t.lambda(theta)).collect();
        let values = self.a_values(&lambdas, terms);
        let w = self.lambda_t(&lambdas, terms, &self.ztx, p);
        let wy = self.lambda_t(&lambdas, terms, &self.zty, 1);
        let mut rhs: Vec<f64> = (0..m).map(|r| wy[r] - (0..p).map(|a| w[r * p + a] * beta[a]).sum::<f64>()).collect();
        let simplicial =
            symbolic_factor(m, &self.col_ptr, &self.row_idx, SupernodalThreshold::FORCE_SIMPLICIAL).ok()?;
        let (_, lvalues) = factor_and_solve(&simplicial, m, &self.col_ptr, &self.row_idx, &values, &mut rhs, 1)?;
        // b = Λ u.
        let mut b = vec![0.0; m];
        let mut r = 0;
        while r < m {
            let t = &terms[self.term_of[r]];
            let lam = &lambdas[self.term_of[r]];
            for a in 0..t.q {
                b[r + a] = (0..=a).map(|k| lam[a * t.q + k] * rhs[r + k]).sum();
            }
            r += t.q;
        }
        let blocks: Vec<(usize, usize)> =
            terms.iter().flat_map(|t| (0..t.levels.len()).map(move |j| (t.u_offset + j * t.q, t.q))).collect();
        let mut inverse = inverse_blocks(&simplicial, &lvalues, &blocks)?.into_iter();
        let mut cond = Vec::with_capacity(terms.len());
        for (k, t) in terms.iter().enumerate() {
            let q = t.q;
            let lam = &lambdas[k];
            let mut per_level = Vec::with_capacity(t.levels.len());
            for _ in 0..t.levels.len() {
                let zb = inverse.next()?;
                per_level.push(lambda_sandwich(lam, &zb, q));
            }
            cond.push(per_level);
        }
        Some(Modes { b, cond_cov: cond })
    }
}

/// The nested blocks of two terms from the stored cross-products (`pairs` holds each term's diagonal blocks,
/// level by level, first), or `None` when the terms are not two nested ones.
fn nested_blocks(terms: &[TermInfo], pairs: &[Pair], ztx: &[f64], zty: &[f64], p: usize) -> Option<NestedBlocks> {
    let inner = NestedBlocks::inner_term(terms)?;
    let mut first = 0;
    let products: Vec<(Vec<f64>, std::ops::Range<usize>)> = terms
        .iter()
        .map(|t| {
            let levels = first..first + t.levels.len();
            first = levels.end;
            let ztz = pairs[levels].iter().flat_map(|pr| pr.ztz.iter().copied()).collect();
            (ztz, t.u_offset..t.u_offset + t.q * t.levels.len())
        })
        .collect();
    let cross: Vec<(usize, usize, &[f64])> = pairs[first..]
        .iter()
        .map(|pr| {
            let (lr, lc) =
                ((pr.row_base - terms[0].u_offset) / terms[0].q, (pr.col_base - terms[1].u_offset) / terms[1].q);
            if inner == 0 { (lr, lc, &pr.ztz[..]) } else { (lc, lr, &pr.ztz[..]) }
        })
        .collect();
    let term_products = |k: usize| TermProducts {
        ztz: &products[k].0,
        ztx: &ztx[products[k].1.start * p..products[k].1.end * p],
        zty: &zty[products[k].1.clone()],
    };
    NestedBlocks::new(terms, [term_products(0), term_products(1)], &cross, p)
}

/// The symbolic Cholesky factorization of the upper-triangular pattern (AMD ordering).
pub(crate) fn symbolic_factor(
    m: usize,
    col_ptr: &[usize],
    row_idx: &[usize],
    threshold: SupernodalThreshold,
) -> Result<SymbolicCholesky<usize>, String> {
    let pattern = SymbolicSparseColMatRef::new_checked(m, m, col_ptr, None, row_idx);
    let params = CholeskySymbolicParams { supernodal_flop_ratio_threshold: threshold, ..Default::default() };
    factorize_symbolic_cholesky(pattern, Side::Upper, SymmetricOrdering::Amd, params)
        .map_err(|e| format!("the sparse factorization could not be set up ({e:?})"))
}

/// The numeric factor of `A` (upper CSC) in `symbolic`'s layout, or `None` when `A` is not positive definite.
pub(crate) fn factor_numeric(
    symbolic: &SymbolicCholesky<usize>,
    m: usize,
    col_ptr: &[usize],
    row_idx: &[usize],
    values: &[f64],
) -> Option<Vec<f64>> {
    let a = SparseColMatRef::new(SymbolicSparseColMatRef::new_checked(m, m, col_ptr, None, row_idx), values);
    let par = Par::Seq;
    let mut mem = MemBuffer::new(symbolic.factorize_numeric_llt_scratch::<f64>(par, Default::default()));
    let stack = MemStack::new(&mut mem);
    let mut lvalues = vec![0.0; symbolic.len_val()];
    symbolic
        .factorize_numeric_llt(
            &mut lvalues,
            a,
            Side::Upper,
            LltRegularization::default(),
            par,
            stack,
            Default::default(),
        )
        .ok()?;
    Some(lvalues)
}

/// Numeric factorization of `A` (upper CSC) and an in-place solve of `A X = rhs` (column-major m×k).
/// Returns log|L|² and the factor's values, or `None` when `A` is not positive definite.
fn factor_and_solve(
    symbolic: &SymbolicCholesky<usize>,
    m: usize,
    col_ptr: &[usize],
    row_idx: &[usize],
    values: &[f64],
    rhs: &mut [f64],
    k: usize,
) -> Option<(f64, Vec<f64>)> {
    let lvalues = factor_numeric(symbolic, m, col_ptr, row_idx, values)?;
    solve_in_place(symbolic, &lvalues, rhs, k);
    let ldl2 = log_det(symbolic, &lvalues)?;
    Some((ldl2, lvalues))
}

/// Solves `A X = rhs` in place (column-major m×k) with a numeric factor `lvalues` of `symbolic`'s layout.
pub(crate) fn solve_in_place(symbolic: &SymbolicCholesky<usize>, lvalues: &[f64], rhs: &mut [f64], k: usize) {
    let m = symbolic.nrows();
    let par = Par::Seq;
    let mut mem = MemBuffer::new(symbolic.solve_in_place_scratch::<f64>(k, par));
    let stack = MemStack::new(&mut mem);
    let llt = LltRef::new(symbolic, lvalues);
    let x = MatMut::from_column_major_slice_mut(rhs, m, k);
    llt.solve_in_place_with_conj(Conj::No, x, par, stack);
}

/// Diagonal blocks of `A⁻¹` from a numeric factor `lvalues` of a simplicial `symbolic` factorization: for each
/// `(base, q)` the q×q block of rows and columns `base..base + q` (original order), row-major, from the
/// selected inverse. `None` for a supernodal factorization or a factor that is not positive definite.
pub(crate) fn inverse_blocks(
    simplicial: &SymbolicCholesky<usize>,
    lvalues: &[f64],
    blocks: &[(usize, usize)],
) -> Option<Vec<Vec<f64>>> {
    let m = simplicial.nrows();
    let SymbolicCholeskyRaw::Simplicial(sym) = simplicial.raw() else { return None };
    let factor = sym.factor();
    let (lcp, lri) = (factor.col_ptr(), factor.row_idx());
    let z = selected_inverse(m, lcp, lri, lvalues)?;
    let inv = simplicial.perm().map(|perm| perm.arrays().1.to_vec()).unwrap_or_else(|| (0..m).collect());
    // Entry (i, j) of A⁻¹ (original order): in column min of the permuted factor's pattern.
    let entry = |i: usize, j: usize| -> f64 {
        let (pi, pj) = (inv[i], inv[j]);
        let (row, col) = if pi >= pj { (pi, pj) } else { (pj, pi) };
        (lcp[col]..lcp[col + 1]).find(|&e| lri[e] == row).map_or(f64::NAN, |e| z[e])
    };
    Some(blocks.iter().map(|&(base, q)| (0..q * q).map(|e| entry(base + e / q, base + e % q)).collect()).collect())
}

/// log|L|² = Σ 2 ln L_jj from a numeric factor in either layout; `None` if a pivot is not positive.
pub(crate) fn log_det(symbolic: &SymbolicCholesky<usize>, lvalues: &[f64]) -> Option<f64> {
    let mut sum = 0.0;
    match symbolic.raw() {
        SymbolicCholeskyRaw::Simplicial(sym) => {
            let f = sym.factor();
            for j in 0..sym.nrows() {
                let e = (f.col_ptr()[j]..f.col_ptr()[j + 1]).find(|&e| f.row_idx()[e] == j)?;
                sum += 2.0 * lvalues[e].ln();
            }
        }
        SymbolicCholeskyRaw::Supernodal(sym) => {
            let llt = SupernodalLltRef::new(sym, lvalues);
            for s in 0..sym.n_supernodes() {
                let blk = llt.supernode(s).val();
                for j in 0..blk.ncols() {
                    sum += 2.0 * blk[(j, j)].ln();
                }
            }
        }
    }
    sum.is_finite().then_some(sum)
}

/// The entries of Z = A⁻¹ on the pattern of a simplicial lower factor L (CSC, any order within columns), by
/// Takahashi's recurrences from the last column back: with S column j's off-diagonal pattern, l its values
/// and y = Z_{S,S} l (every pair of S lies in L's pattern), Z_{S,j} = −y / L_jj and
/// Z_jj = 1/L_jj² + l'y / L_jj².
pub(crate) fn selected_inverse(m: usize, col_ptr: &[usize], row_idx: &[usize], l: &[f64]) -> Option<Vec<f64>> {
    let mut z = vec![0.0; l.len()];
    let mut zdiag = vec![0.0; m];
    let mut mark = vec![usize::MAX; m];
    let mut y = vec![0.0; m];
    for j in (0..m).rev() {
        let range = col_ptr[j]..col_ptr[j + 1];
        let dpos = range.clone().find(|&e| row_idx[e] == j)?;
        let d = l[dpos];
        let off: Vec<usize> = range.clone().filter(|&e| e != dpos).collect();
        for &e in &off {
            mark[row_idx[e]] = e;
            y[row_idx[e]] = 0.0;
        }
        for &e in &off {
            let k = row_idx[e];
            let lk = l[e];
            y[k] += zdiag[k] * lk;
            for f in col_ptr[k]..col_ptr[k + 1] {
                let r = row_idx[f];
                if r > k && mark[r] != usize::MAX && range.contains(&mark[r]) {
                    // Z_rk with r, k both in S_j.
                    let zrk = z[f];
                    y[r] += zrk * lk;
                    y[k] += zrk * l[mark[r]];
                }
            }
        }
        let mut diag = 1.0 / (d * d);
        for &e in &off {
            let k = row_idx[e];
            z[e] = -y[k] / d;
            diag += l[e] * y[k] / (d * d);
        }
        z[dpos] = diag;
        zdiag[j] = diag;
        for &e in &off {
            mark[row_idx[e]] = usize::MAX;
        }
    }
    Some(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense inverse of a small SPD matrix for checking the selected inverse.
    fn dense_inverse(a: &[f64], n: usize) -> Vec<f64> {
        crate::dense::inverse(a, n).unwrap()
    }

    #[test]
    fn selected_inverse_matches_dense_inverse() {
        // A 5×5 SPD matrix with an arrow pattern (fill after ordering is whatever AMD chooses).
        let n = 5;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            a[i * n + i] = 4.0 + i as f64;
        }
        for &(i, j, v) in &[(0, 4, 1.0), (1, 4, -0.5), (2, 3, 0.7), (3, 4, 0.3), (0, 2, 0.2)] {
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
        let mut col_ptr = vec![0usize];
        let mut row_idx = Vec::new();
        let mut values = Vec::new();
        for c in 0..n {
            for r in 0..=c {
                if a[r * n + c] != 0.0 {
                    row_idx.push(r);
                    values.push(a[r * n + c]);
                }
            }
            col_ptr.push(row_idx.len());
        }
        let sym = symbolic_factor(n, &col_ptr, &row_idx, SupernodalThreshold::FORCE_SIMPLICIAL).unwrap();
        let mut rhs = vec![1.0; n];
        let (ldl2, lv) = factor_and_solve(&sym, n, &col_ptr, &row_idx, &values, &mut rhs, 1).unwrap();
        let inv = dense_inverse(&a, n);
        // The solve.
        for i in 0..n {
            let want: f64 = (0..n).map(|j| inv[i * n + j]).sum();
            assert!((rhs[i] - want).abs() < 1e-12);
        }
        // log det against the dense Cholesky.
        let mut l = a.clone();
        assert!(crate::dense::cholesky(&mut l, n));
        let want: f64 = (0..n).map(|i| 2.0 * l[i * n + i].ln()).sum();
        assert!((ldl2 - want).abs() < 1e-12);
        // The supernodal layout gives the same solve and log-determinant.
        let sup = symbolic_factor(n, &col_ptr, &row_idx, SupernodalThreshold::FORCE_SUPERNODAL).unwrap();
        assert!(matches!(sup.raw(), SymbolicCholeskyRaw::Supernodal(_)));
        let mut rhs_sup = vec![1.0; n];
        let (ldl2_sup, _) = factor_and_solve(&sup, n, &col_ptr, &row_idx, &values, &mut rhs_sup, 1).unwrap();
        assert!((ldl2_sup - want).abs() < 1e-12);
        for i in 0..n {
            assert!((rhs_sup[i] - rhs[i]).abs() < 1e-12);
        }
        let SymbolicCholeskyRaw::Simplicial(s) = sym.raw() else { panic!("forced simplicial") };
        let f = s.factor();
        let z = selected_inverse(n, f.col_ptr(), f.row_idx(), &lv).unwrap();
        let fwd = sym.perm().map(|p| p.arrays().0.to_vec()).unwrap_or_else(|| (0..n).collect());
        for c in 0..n {
            for e in f.col_ptr()[c]..f.col_ptr()[c + 1] {
                let r = f.row_idx()[e];
                let want = inv[fwd[r] * n + fwd[c]];
                assert!((z[e] - want).abs() < 1e-12, "({r},{c}) {} vs {want}", z[e]);
            }
        }
    }

    /// The frame of `crate::fit::tests::frame` with its school term's slope dropped when `slope` is false,
    /// laid out in lme4's order as the sparse path stores it.
    fn stored(crossed: bool, slope: bool, tangled: bool) -> (SparseRe, Vec<TermInfo>) {
        let mut frame = crate::fit::tests::frame(crossed);
        if !slope {
            let school = &mut frame.random[0];
            school.z = school.z.column(0).to_owned().insert_axis(ndarray::Axis(1));
            school.names.truncate(1);
        }
        if tangled {
            // One cohort of school 0 also holds a row of school 1: not nested any more.
            let i = frame.random[0].codes.iter().position(|&s| s == 1).unwrap();
            frame.random[1].codes[i] = 0;
        }
        let order: Vec<&RandomTerm> =
            crate::fit::lme4_term_order(&frame.random).into_iter().map(|k| &frame.random[k]).collect();
        let (terms, _, _) = crate::pls::term_layout(&order);
        (SparseRe::new(&frame.y, &frame.x, &order, &terms).unwrap(), terms)
    }

    /// 700 schools with 3 cohorts of 3 pupils each (several chunks of outer levels and many blocks of rows in
    /// the nested sweep), a school term with or without a slope on `x`, and an intercept per cohort.
    fn large_nested(slope: bool) -> (SparseRe, Vec<TermInfo>) {
        let mut u = crate::fit::tests::stream(11);
        let (schools, years, per) = (700usize, 3usize, 3usize);
        let n = schools * years * per;
        let (mut y, mut xs, mut s_codes, mut c_codes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let (s, c) = (i / (years * per), i / per);
            let x = u();
            y.push(x + (s % 7) as f64 * 0.1 + (c % 5) as f64 * 0.05 + u());
            xs.push(x);
            s_codes.push(s as u32);
            c_codes.push(c as u32);
        }
        let x = ndarray::Array2::from_shape_fn((n, 2), |(i, j)| if j == 0 { 1.0 } else { xs[i] });
        let q = if slope { 2 } else { 1 };
        let school = RandomTerm {
            group: "school".into(),
            levels: (0..schools).map(|s| format!("s{s:03}")).collect(),
            codes: s_codes,
            names: ["(Intercept)", "x"][..q].iter().map(|v| v.to_string()).collect(),
            z: x.slice_axis(ndarray::Axis(1), (0..q).into()).to_owned(),
        };
        let cohort = RandomTerm {
            group: "school:year".into(),
            levels: (0..schools * years).map(|c| format!("c{c:04}")).collect(),
            codes: c_codes,
            names: vec!["(Intercept)".into()],
            z: ndarray::Array2::ones((n, 1)),
        };
        let order = [&cohort, &school];
        let (terms, _, _) = crate::pls::term_layout(&order);
        (SparseRe::new(&y, &x, &order, &terms).unwrap(), terms)
    }

    #[test]
    fn nested_blocks_match_the_sparse_factorization() {
        for (large, slope) in [(false, false), (false, true), (true, false), (true, true)] {
            let (sparse, terms) = if large { large_nested(slope) } else { stored(false, slope, false) };
            assert!(sparse.nested.is_some(), "nested terms take the blocked path (slope {slope})");
            let n_theta: usize = terms.iter().map(|t| t.q * (t.q + 1) / 2).sum();
            for point in 0..4 {
                let theta: Vec<f64> = (0..n_theta).map(|j| 0.3 + 0.25 * point as f64 - 0.1 * j as f64).collect();
                let (l1, xx1, xy1, yy1) = sparse.accumulate(&terms, &theta).unwrap();
                let (l2, xx2, xy2, yy2) = sparse.accumulate_sparse(&terms, &theta).unwrap();
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-11 * (1.0 + a.abs().max(b.abs()));
                assert!(close(l1, l2), "log|L|² {l1} against {l2}");
                assert!(close(yy1, yy2), "r'r {yy1} against {yy2}");
                for (a, b) in xx1.iter().zip(&xx2).chain(xy1.iter().zip(&xy2)) {
                    assert!(close(*a, *b), "R'R entry {a} against {b} (slope {slope}, θ {theta:?})");
                }
            }
        }
    }

    /// InstEval's shape at a small size: `students` students with `per` ratings each of `instructors`
    /// instructors, crossed with one department per 10 instructors; a slope on `x` in the student, instructor
    /// or department term as `slope` says.
    fn crossed_design(
        students: usize,
        per: usize,
        instructors: usize,
        slope: (bool, bool, bool),
    ) -> (SparseRe, Vec<TermInfo>) {
        let mut u = crate::fit::tests::stream(23);
        let n = students * per;
        let (mut y, mut xs, mut codes) = (Vec::new(), Vec::new(), [Vec::new(), Vec::new(), Vec::new()]);
        for i in 0..n {
            let (s, d) = (i / per, ((u() * instructors as f64) as usize).min(instructors - 1));
            let x = u();
            y.push(x + (s % 9) as f64 * 0.05 + (d % 7) as f64 * 0.1 + u());
            xs.push(x);
            codes[0].push(s as u32);
            codes[1].push(d as u32);
            codes[2].push((d / 10) as u32);
        }
        let x = ndarray::Array2::from_shape_fn((n, 2), |(i, j)| if j == 0 { 1.0 } else { xs[i] });
        let term = |group: &str, levels: usize, k: usize, with_slope: bool| {
            let q = if with_slope { 2 } else { 1 };
            RandomTerm {
                group: group.into(),
                levels: (0..levels).map(|l| format!("{group}{l:04}")).collect(),
                codes: codes[k].clone(),
                names: ["(Intercept)", "x"][..q].iter().map(|v| v.to_string()).collect(),
                z: x.slice_axis(ndarray::Axis(1), (0..q).into()).to_owned(),
            }
        };
        let random = [
            term("s", students, 0, slope.0),
            term("d", instructors, 1, slope.1),
            term("dept", instructors.div_ceil(10), 2, slope.2),
        ];
        let order: Vec<&RandomTerm> = random.iter().collect();
        let (terms, _, _) = crate::pls::term_layout(&order);
        (SparseRe::new(&y, &x, &order, &terms).unwrap(), terms)
    }

    fn large_crossed(slope: (bool, bool)) -> (SparseRe, Vec<TermInfo>) {
        crossed_design(400, 8, 60, (slope.0, slope.1, false))
    }

    #[test]
    fn dense_tail_matches_the_sparse_factorization() {
        let cases = [
            ("school slope + rater", stored(true, true, false)),
            ("school + rater", stored(true, false, false)),
            ("InstEval-like", large_crossed((false, false))),
            ("student slope", large_crossed((true, false))),
            ("instructor slope", large_crossed((false, true))),
            ("slopes in every term", crossed_design(400, 8, 60, (true, true, true))),
            ("330-column tail, filled in", crossed_design(1000, 10, 300, (false, false, false))),
        ];
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()));
        for (name, (sparse, terms)) in cases {
            assert!(sparse.tail.is_some(), "{name}: crossed terms take the dense tail");
            let n_theta: usize = terms.iter().map(|t| t.q * (t.q + 1) / 2).sum();
            for point in 0..4 {
                let theta: Vec<f64> = (0..n_theta).map(|j| 0.3 + 0.25 * point as f64 - 0.07 * j as f64).collect();
                let (l1, xx1, xy1, yy1) = sparse.accumulate(&terms, &theta).unwrap();
                let (l2, xx2, xy2, yy2) = sparse.accumulate_sparse(&terms, &theta).unwrap();
                assert!(close(l1, l2, 1e-11), "{name}: log|L|² {l1} against {l2}");
                assert!(close(yy1, yy2, 1e-11), "{name}: r'r {yy1} against {yy2}");
                for (a, b) in xx1.iter().zip(&xx2).chain(xy1.iter().zip(&xy2)) {
                    assert!(close(*a, *b, 1e-11), "{name}: R'R entry {a} against {b} (θ {theta:?})");
                }
                let beta = [0.4 - 0.1 * point as f64, 0.7];
                let m1 = sparse.modes(&terms, &theta, &beta).unwrap();
                let m2 = sparse.modes_sparse(&terms, &theta, &beta).unwrap();
                for (a, b) in m1.b.iter().zip(&m2.b) {
                    assert!(close(*a, *b, 1e-10), "{name}: mode {a} against {b}");
                }
                for (a, b) in m1.cond_cov.iter().flatten().flatten().zip(m2.cond_cov.iter().flatten().flatten()) {
                    assert!(close(*a, *b, 1e-10), "{name}: conditional covariance {a} against {b}");
                }
                assert_eq!(m1.cond_cov.iter().flatten().count(), m2.cond_cov.iter().flatten().count());
            }
        }
    }

    #[test]
    fn the_dense_tail_is_taken_when_small_or_filled_in() {
        let (_, terms) = large_crossed((false, false));
        let m2 = 66;
        assert!(DenseTail::worthwhile(&terms, 0), "a tail of {m2} is always dense");
        let mut wide = terms.clone();
        wide[1].levels = (0..1000).map(|l| l.to_string()).collect();
        assert!(!DenseTail::worthwhile(&wide, 100), "a sparse tail of 1,006 stays sparse");
        assert!(DenseTail::worthwhile(&wide, 600), "a tail the factor fills in goes dense");
        wide[1].levels = (0..5000).map(|l| l.to_string()).collect();
        assert!(!DenseTail::worthwhile(&wide, 5000), "a tail above MAX_TAIL stays sparse");
        assert!(stored(false, true, false).0.tail.is_none(), "nested terms keep their blocks");
        // Through the sparse factor's own shape: a 330-column tail that the students' ratings fill in is taken,
        // one where each student rates a single instructor (no fill) is not.
        assert!(crossed_design(1000, 10, 300, (false, false, false)).0.tail.is_some());
        assert!(crossed_design(3000, 1, 300, (false, false, false)).0.tail.is_none());
    }

    #[test]
    fn the_dense_tail_gives_the_same_bits_for_any_number_of_threads() {
        for slope in [false, true] {
            dense_tail_bits_do_not_depend_on_threads(crossed_design(1000, 10, 300, (slope, false, false)));
        }
    }

    fn dense_tail_bits_do_not_depend_on_threads((sparse, terms): (SparseRe, Vec<TermInfo>)) {
        assert!(sparse.tail.is_some());
        let n_theta: usize = terms.iter().map(|t| t.q * (t.q + 1) / 2).sum();
        let theta: Vec<f64> = (0..n_theta).map(|j| 0.6 - 0.05 * j as f64).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (l, xx, xy, yy) = sparse.accumulate(&terms, &theta).unwrap();
                let modes = sparse.modes(&terms, &theta, &[0.2, 0.5]).unwrap();
                let mut bits: Vec<u64> = [l, yy].iter().chain(&xx).chain(&xy).map(|v| v.to_bits()).collect();
                bits.extend(modes.b.iter().chain(modes.cond_cov.iter().flatten().flatten()).map(|v| v.to_bits()));
                bits
            })
        };
        let one = run(1);
        assert_eq!(one, run(3), "1 and 3 threads");
        assert_eq!(one, run(2), "1 and 2 threads");
    }

    #[test]
    fn crossed_or_tangled_terms_take_the_sparse_path() {
        assert!(stored(true, true, false).0.nested.is_none());
        assert!(stored(true, false, false).0.nested.is_none());
        assert!(stored(false, true, true).0.nested.is_none());
    }
}
