//! Logistic GLMMs with several random-effects terms, nested (`(1 | school) + (1 | school:year)`, `(1 | a/b)`)
//! or crossed, fitted by the Laplace approximation as glmer fits them.
//!
//! The conditional modes `u` (all terms at once) come from PIRLS on the sparse system
//! `A(u) = Λ'Z'W(u)ZΛ + I`: its pattern does not depend on (θ, β, u), so it is laid out and ordered (AMD)
//! once per model, and every Newton step refills the values from one pass over the rows and refactors
//! numerically (no fill for nested terms, so the cost grows linearly with the number of cohorts). Each row's
//! positions in `A`'s values are stored once, so a pass is a scatter of a few products per row. A pass also
//! gives the deviance, so a line search's accepted trial point supplies the next step's system and the modes
//! keep the system at which they converged (for the gradient and the conditional SDs); only the modes of a
//! finite-difference Hessian's point, wanted for the gradient alone, may be found by passes without it.
//!
//! glmer's two stages: θ with β and `u` by joint PIRLS (`nAGQ = 0`, the Schur complement of the sparse
//! system in β), then (θ, β) jointly by Newton steps on the exact gradient (BOBYQA if they fail) with `u` by
//! PIRLS; the standard errors from the Hessian in (θ, β) (glmer's default) or from `R_X`. Sums over rows run
//! in parallel over fixed chunks added in chunk order, so results do not depend on the number of threads.

// Index loops mirror the matrix formulas.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::linalg::cholesky::{SymbolicCholesky, SymbolicCholeskyRaw};
use psmeval_frame::{ModelFrame, RandomTerm};
use rayon::prelude::*;

use super::fit::{fixed_effect_rows, newton_failed, newton_run, vcov_from_hessian};
use super::hessian::{fd_hessian_par, fd_jacobian};
use super::newton::{Laplace, newton_stage};
use super::problem::{binomial_constants, check_rank, mu_dev, mu_only};
use super::{GlmmDiagnostics, GlmmFit, GlmmOptions, Link};
use crate::dense::{chol_inverse, chol_solve, cholesky};
use crate::error::MixedModelError;
use crate::fit::lme4_term_order;
use crate::model::Family;
use crate::optim::{OptParameters, OptSummary, Schedule, minimize};
use crate::pls::{MAX_FACTOR_BYTES, TermInfo, term_layout};
use crate::result::{ConditionalModes, Correlation, VarianceComponent};
use crate::sparse::{factor_numeric, inverse_blocks, log_det, selected_inverse, solve_in_place, symbolic_factor};

/// PIRLS has converged when the Newton decrement of the penalized deviance in `u` is below this (one more
/// full step then puts the modes at rounding level).
const PIRLS_TOL: f64 = 1e-10;

/// Rows per chunk of a pass (at least; at most 8 chunks, so per-chunk copies of `Λ'Z'WX` stay small).
const MIN_CHUNK: usize = 32_768;

/// Maximum BOBYQA evaluations per parameter per run.
const MAX_FUN_PER_PARAMETER: usize = 10_000;

/// Marks a position of a row's product that is not stored (the lower half of a vector term's own block).
const NOT_STORED: u32 = u32::MAX;

/// A binomial GLMM with several random-effects terms, laid out for PIRLS on the sparse system.
#[derive(Debug)]
struct MultiProblem<'a> {
    n: usize,
    p: usize,
    /// Total number of random effects (length of `u`).
    m: usize,
    /// X's non-zero entries by row (each row's in column order): a factor design is mostly zeros, and every
    /// row sum over X skips them without changing a bit (a zero adds nothing).
    x: SparseRows,
    y: &'a [f64],
    w: Vec<f64>,
    sat: Vec<f64>,
    c_const: f64,
    /// The terms in lme4's order, with their places in θ and `u`.
    terms: Vec<TermInfo>,
    /// Each term's frame term (same order as `terms`).
    random: Vec<&'a RandomTerm>,
    /// Each term's Z, n × q row-major.
    z: Vec<Vec<f64>>,
    /// Upper CSC pattern of `A`.
    col_ptr: Vec<usize>,
    row_idx: Vec<usize>,
    diag_pos: Vec<usize>,
    /// Per row, the positions in `A`'s values of its products `zl_k[a] zl_s[b]` (k ≤ s; a ≤ b when k = s), in
    /// that order; `npos` per row.
    row_pos: Vec<u32>,
    npos: usize,
    symbolic: SymbolicCholesky<usize>,
    chunk: usize,
    /// The simplicial factorization for the selected inverse, with each row's products' positions in its
    /// factor (built on first use by the gradient).
    inverse_map: OnceLock<Option<InverseMap>>,
}

/// Where the entries of `A⁻¹` that each row's products need sit in the selected inverse of a simplicial factor.
#[derive(Debug)]
struct InverseMap {
    simplicial: SymbolicCholesky<usize>,
    /// Per row, in the order of `MultiProblem::row_pos`, the position in the factor's values.
    row_lpos: Vec<u32>,
}

/// What one pass over the rows accumulates.
#[derive(Debug, Default)]
struct Pass {
    /// The deviance (NaN from a [`Want::Step`] pass).
    dev: f64,
    /// Whether every row's η was finite (so the deviance is finite when `u` is).
    eta_finite: bool,
    /// `A`'s values (`Λ'Z'WZΛ + I`) at its pattern.
    values: Vec<f64>,
    /// `Λ'Z'r`, r = w (y − μ).
    grad_u: Vec<f64>,
    /// `Λ'Z'WX` (m × p, row-major), the joint stage only.
    b: Vec<f64>,
    /// `X'WX` (p × p, lower triangle) and `X'r`, the joint stage only.
    c: Vec<f64>,
    grad_beta: Vec<f64>,
    /// Each row's μ (for the gradient at the modes, which then needs no pass of its own over η).
    mu: Vec<f64>,
}

/// How much a pass computes. A line search's trial point is a full pass, so an accepted trial supplies the
/// next Newton step's system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// `A`'s values and `Λ'Z'r` without the deviance (NaN): no logarithm per row, for modes whose objective is
    /// not wanted ([`MultiProblem::modes_for_gradient`]).
    Step,
    /// The deviance, `A`'s values and `Λ'Z'r`.
    System,
    /// The system with the fixed-effects blocks (`Λ'Z'WX`, `X'WX`, `X'r`).
    Joint,
}

/// The result of PIRLS at fixed (θ, β).
#[derive(Debug, Clone)]
struct Modes {
    u: Vec<f64>,
    dev: f64,
    /// log |L|² at the modes.
    ldl2: f64,
    converged: bool,
    /// `A`'s values at the modes (for the gradient and the conditional SDs).
    a: Vec<f64>,
    /// Each row's μ at the modes.
    mu: Vec<f64>,
}

impl<'a> MultiProblem<'a> {
    fn new(frame: &'a ModelFrame, opts: &GlmmOptions) -> Result<MultiProblem<'a>, MixedModelError> {
        let n = frame.y.len();
        let p = frame.x.ncols();
        let dense: Vec<f64> = frame.x.as_standard_layout().iter().copied().collect();
        check_rank(&dense, n, p, &frame.x_names)?;
        let x = SparseRows::new(&dense, p);
        drop(dense);
        let w = opts.weights.clone().unwrap_or_else(|| vec![1.0; n]);
        let (sat, c_const) = binomial_constants(&frame.y, &w);
        let random: Vec<&RandomTerm> = lme4_term_order(&frame.random).into_iter().map(|k| &frame.random[k]).collect();
        let (terms, _, m) = term_layout(&random);
        let z: Vec<Vec<f64>> = random.iter().map(|rt| rt.z.as_standard_layout().iter().copied().collect()).collect();
        let label = || random.iter().map(|t| format!("(… | {})", t.group)).collect::<Vec<_>>().join(" + ");
        // Each row's products (row ≤ column in A), in the order `pass` visits them.
        let mut entries: Vec<(usize, usize)> = Vec::new(); // (row, col) of A for one row of the data
        let row_entries = |i: usize, out: &mut Vec<(usize, usize)>| row_entries(&random, &terms, i, out);
        row_entries(0, &mut entries);
        let npos = entries.len();
        // CSC keys (column-major order): col * m + row.
        let mut keys: Vec<u64> = Vec::with_capacity(n * npos + m);
        for i in 0..n {
            row_entries(i, &mut entries);
            keys.extend(entries.iter().map(|&(r, c)| (c * m + r) as u64));
        }
        keys.extend((0..m).map(|d| (d * m + d) as u64));
        keys.par_sort_unstable();
        keys.dedup();
        if keys.len() >= NOT_STORED as usize {
            return Err(MixedModelError::TooLarge {
                terms: label(),
                size: m,
                bytes: keys.len().saturating_mul(8),
                max: MAX_FACTOR_BYTES,
            });
        }
        let mut col_ptr = vec![0usize; m + 1];
        let mut row_idx = Vec::with_capacity(keys.len());
        let mut diag_pos = vec![0usize; m];
        for (e, &key) in keys.iter().enumerate() {
            let (c, r) = ((key / m as u64) as usize, (key % m as u64) as usize);
            col_ptr[c + 1] += 1;
            row_idx.push(r);
            if r == c {
                diag_pos[c] = e;
            }
        }
        for c in 0..m {
            col_ptr[c + 1] += col_ptr[c];
        }
        let mut row_pos = vec![NOT_STORED; n * npos];
        row_pos.par_chunks_mut(npos.max(1)).enumerate().for_each_init(Vec::new, |buf, (i, out)| {
            row_entries(i, buf);
            for (o, &(r, c)) in out.iter_mut().zip(buf.iter()) {
                let key = (c * m + r) as u64;
                *o = keys.binary_search(&key).map_or(NOT_STORED, |e| e as u32);
            }
        });
        drop(keys);
        let symbolic = symbolic_factor(m, &col_ptr, &row_idx, SupernodalThreshold::AUTO)
            .map_err(|reason| MixedModelError::Factorization { terms: label(), reason })?;
        let bytes = symbolic.len_val().saturating_mul(8);
        if bytes > MAX_FACTOR_BYTES {
            return Err(MixedModelError::TooLarge { terms: label(), size: m, bytes, max: MAX_FACTOR_BYTES });
        }
        let chunk = MIN_CHUNK.max(n.div_ceil(8));
        Ok(MultiProblem {
            n,
            p,
            m,
            x,
            y: &frame.y,
            w,
            sat,
            c_const,
            terms,
            random,
            z,
            col_ptr,
            row_idx,
            diag_pos,
            row_pos,
            npos,
            symbolic,
            chunk,
            inverse_map: OnceLock::new(),
        })
    }

    /// The simplicial factorization and every row's positions in it (once per model).
    fn inverse_map(&self) -> Option<&InverseMap> {
        self.inverse_map
            .get_or_init(|| {
                let simplicial =
                    symbolic_factor(self.m, &self.col_ptr, &self.row_idx, SupernodalThreshold::FORCE_SIMPLICIAL)
                        .ok()?;
                let SymbolicCholeskyRaw::Simplicial(sym) = simplicial.raw() else { return None };
                let factor = sym.factor();
                let (lcp, lri) = (factor.col_ptr(), factor.row_idx());
                let inv: Vec<usize> =
                    simplicial.perm().map(|perm| perm.arrays().1.to_vec()).unwrap_or_else(|| (0..self.m).collect());
                let mut row_lpos = vec![NOT_STORED; self.n * self.npos];
                row_lpos.par_chunks_mut(self.npos).enumerate().for_each_init(Vec::new, |buf, (i, out)| {
                    row_entries(&self.random, &self.terms, i, buf);
                    for (o, &(r, c)) in out.iter_mut().zip(buf.iter()) {
                        let (pr, pc) = (inv[r], inv[c]);
                        let (row, col) = (pr.max(pc), pr.min(pc));
                        *o = (lcp[col]..lcp[col + 1]).find(|&e| lri[e] == row).map_or(NOT_STORED, |e| e as u32);
                    }
                });
                row_lpos.iter().all(|&e| e != NOT_STORED).then_some(InverseMap { simplicial, row_lpos })
            })
            .as_ref()
    }

    fn n_theta(&self) -> usize {
        self.terms.iter().map(|t| t.q * (t.q + 1) / 2).sum()
    }

    /// Lower bounds of θ (0 on the diagonal of each Λ_k).
    fn lower_bounds(&self) -> Vec<f64> {
        self.terms
            .iter()
            .flat_map(|t| {
                (0..t.q).flat_map(move |c| (c..t.q).map(move |r| if r == c { 0.0 } else { f64::NEG_INFINITY }))
            })
            .collect()
    }

    fn lambdas(&self, theta: &[f64]) -> Vec<Vec<f64>> {
        self.terms.iter().map(|t| t.lambda(theta)).collect()
    }

    /// `Λ u` in the layout of `u`.
    fn lambda_u(&self, lambdas: &[Vec<f64>], u: &[f64]) -> Vec<f64> {
        let mut b = vec![0.0; self.m];
        for (t, lam) in self.terms.iter().zip(lambdas) {
            let q = t.q;
            for j in 0..t.levels.len() {
                let base = t.u_offset + j * q;
                for a in 0..q {
                    b[base + a] = (0..=a).map(|k| lam[a * q + k] * u[base + k]).sum();
                }
            }
        }
        b
    }

    /// `X β`.
    fn eta_fixed(&self, beta: &[f64]) -> Vec<f64> {
        (0..self.n)
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| {
                let (cols, vals) = self.x.row(i);
                cols.iter().zip(vals).map(|(&j, v)| v * beta[j as usize]).sum()
            })
            .collect()
    }

    /// One pass over the rows at linear predictor `off + Z b` (`b = Λu`): what `want` asks for.
    fn pass(&self, lambdas: &[Vec<f64>], off: &[f64], b: &[f64], want: Want) -> Pass {
        self.pass_with(lambdas, off, b, want, self.terms.iter().all(|t| t.q == 1))
    }

    /// [`Self::pass`], with the per-row loops for scalar terms (one random effect per term: `zl_k = λ_k z_ik`,
    /// no loops over a term's effects) when `scalar`; both give the same bits.
    fn pass_with(&self, lambdas: &[Vec<f64>], off: &[f64], b: &[f64], want: Want, scalar: bool) -> Pass {
        let (p, m) = (self.p, self.m);
        let qsum: usize = self.terms.iter().map(|t| t.q).sum();
        let lam1: Option<Vec<f64>> = scalar.then(|| lambdas.iter().map(|l| l[0]).collect());
        let chunks: Vec<Pass> = (0..self.n.div_ceil(self.chunk))
            .into_par_iter()
            .map(|c| {
                let rows = c * self.chunk..((c + 1) * self.chunk).min(self.n);
                let mut out = Pass {
                    eta_finite: true,
                    values: vec![0.0; self.row_idx.len()],
                    grad_u: vec![0.0; m],
                    mu: Vec::with_capacity(rows.len()),
                    ..Pass::default()
                };
                if want == Want::Joint {
                    out.b = vec![0.0; m * p];
                    out.c = vec![0.0; p * p];
                    out.grad_beta = vec![0.0; p];
                }
                let mut zl = vec![0.0; qsum];
                let mut base = vec![0usize; self.terms.len()];
                let nt = self.terms.len();
                for i in rows {
                    let mut eta = off[i];
                    if let Some(lam1) = &lam1 {
                        for (k, (rt, t)) in self.random.iter().zip(&self.terms).enumerate() {
                            base[k] = t.u_offset + rt.codes[i] as usize;
                            let zik = self.z[k][i];
                            eta += zik * b[base[k]];
                            zl[k] = lam1[k] * zik;
                        }
                    } else {
                        for (k, (rt, t)) in self.random.iter().zip(&self.terms).enumerate() {
                            base[k] = t.u_offset + rt.codes[i] as usize * t.q;
                            let zi = &self.z[k][i * t.q..(i + 1) * t.q];
                            eta += zi.iter().zip(&b[base[k]..base[k] + t.q]).map(|(z, b)| z * b).sum::<f64>();
                        }
                    }
                    out.eta_finite &= eta.is_finite();
                    let mu = if want == Want::Step {
                        mu_only(eta)
                    } else {
                        let (mu, d) = mu_dev(eta, self.y[i], self.w[i], self.sat[i]);
                        out.dev += d;
                        mu
                    };
                    out.mu.push(mu);
                    let wt = self.w[i] * mu * (1.0 - mu);
                    let r = self.w[i] * (self.y[i] - mu);
                    let pos = &self.row_pos[i * self.npos..(i + 1) * self.npos];
                    if lam1.is_some() {
                        // One random effect per term: zl (computed above) holds λ_k z_ik.
                        let mut e = 0;
                        for k in 0..nt {
                            out.grad_u[base[k]] += zl[k] * r;
                            let wz = wt * zl[k];
                            for s in k..nt {
                                out.values[pos[e] as usize] += wz * zl[s];
                                e += 1;
                            }
                        }
                    } else {
                        // zl_k = Λ_k' z_ik, laid out term after term.
                        let mut o = 0;
                        for (k, t) in self.terms.iter().enumerate() {
                            let (q, lam) = (t.q, &lambdas[k]);
                            let zi = &self.z[k][i * q..(i + 1) * q];
                            for a in 0..q {
                                zl[o + a] = (a..q).map(|rr| lam[rr * q + a] * zi[rr]).sum();
                                out.grad_u[base[k] + a] += zl[o + a] * r;
                            }
                            o += q;
                        }
                        let mut e = 0;
                        let mut ok = 0;
                        for (k, tk) in self.terms.iter().enumerate() {
                            let os = ok + tk.q;
                            for a in 0..tk.q {
                                for bb in a..tk.q {
                                    out.values[pos[e] as usize] += wt * zl[ok + a] * zl[ok + bb];
                                    e += 1;
                                }
                            }
                            let mut o2 = os;
                            for ts in &self.terms[k + 1..] {
                                for a in 0..tk.q {
                                    for bb in 0..ts.q {
                                        out.values[pos[e] as usize] += wt * zl[ok + a] * zl[o2 + bb];
                                        e += 1;
                                    }
                                }
                                o2 += ts.q;
                            }
                            ok = os;
                        }
                    }
                    if want == Want::Joint {
                        let (cols, vals) = self.x.row(i);
                        let mut o = 0;
                        for (k, t) in self.terms.iter().enumerate() {
                            for a in 0..t.q {
                                let f = wt * zl[o + a];
                                let row = &mut out.b[(base[k] + a) * p..(base[k] + a + 1) * p];
                                cols.iter().zip(vals).for_each(|(&j, &xv)| row[j as usize] += f * xv);
                            }
                            o += t.q;
                        }
                        for (e, (&ja, &xa)) in cols.iter().zip(vals).enumerate() {
                            let a = ja as usize;
                            out.grad_beta[a] += xa * r;
                            let wx = wt * xa;
                            let c_row = &mut out.c[a * p..a * p + a + 1];
                            for (&jc, &xc) in cols[..=e].iter().zip(&vals[..=e]) {
                                c_row[jc as usize] += wx * xc;
                            }
                        }
                    }
                }
                out
            })
            .collect();
        // Added in chunk order: the same bits whatever the number of threads.
        let mut total = Pass { eta_finite: true, mu: Vec::with_capacity(self.n), ..Pass::default() };
        for part in chunks {
            total.dev += part.dev;
            total.eta_finite &= part.eta_finite;
            total.mu.extend_from_slice(&part.mu);
            add(&mut total.values, &part.values);
            add(&mut total.grad_u, &part.grad_u);
            add(&mut total.b, &part.b);
            add(&mut total.c, &part.c);
            add(&mut total.grad_beta, &part.grad_beta);
        }
        for &d in &self.diag_pos {
            total.values[d] += 1.0;
        }
        if want == Want::Step {
            total.dev = f64::NAN;
        }
        total
    }

    /// The system at `u` (offset `off`).
    fn system_at(&self, lambdas: &[Vec<f64>], off: &[f64], u: &[f64]) -> Pass {
        self.pass(lambdas, off, &self.lambda_u(lambdas, u), Want::System)
    }

    /// The joint system (with the fixed-effects blocks) at (β, u).
    fn joint_at(&self, lambdas: &[Vec<f64>], beta: &[f64], u: &[f64]) -> Pass {
        self.pass(lambdas, &self.eta_fixed(beta), &self.lambda_u(lambdas, u), Want::Joint)
    }

    fn factor(&self, values: &[f64]) -> Option<Vec<f64>> {
        factor_numeric(&self.symbolic, self.m, &self.col_ptr, &self.row_idx, values)
    }

    /// PIRLS for the conditional modes at fixed (θ, β): Newton steps on the penalized deviance with step
    /// halving, from `start`.
    fn modes(&self, theta: &[f64], beta: &[f64], start: &[f64]) -> Modes {
        let lambdas = self.lambdas(theta);
        self.modes_from(&lambdas, &self.eta_fixed(beta), start.to_vec(), None)
    }

    /// The conditional modes at fixed (θ, β) for the gradient only (a finite difference's point): the modes,
    /// `A`'s values and μ of [`Self::modes`], the same bits, but neither the deviance nor log|L|² (both NaN).
    /// From a start within rounding of the modes' Newton step (a first-order prediction of them, as the
    /// Hessian's predicted and mirrored points have), PIRLS ends at its first check, and its passes then skip
    /// the deviance's logarithm per row; otherwise (or when η or ‖u‖² is not finite at the start, where
    /// [`Self::modes`] restarts from zero) it runs as [`Self::modes`], from a pass of its own with the
    /// deviance. A [`Want::Step`] pass is never handed to `modes_from`, whose first check reads its deviance.
    fn modes_for_gradient(&self, theta: &[f64], beta: &[f64], start: &[f64]) -> Modes {
        let lambdas = self.lambdas(theta);
        let off = self.eta_fixed(beta);
        let mut u = start.to_vec();
        let cur = self.pass(&lambdas, &off, &self.lambda_u(&lambdas, &u), Want::Step);
        if cur.eta_finite
            && dot(&u, &u).is_finite()
            && let Some(step) = self.newton_step(&cur, &u)
            && step.1 < PIRLS_TOL
        {
            // As `modes_from` at its first check: one more full step, and the system there.
            u.iter_mut().zip(&step.0).for_each(|(u, s)| *u += s);
            let at = self.pass(&lambdas, &off, &self.lambda_u(&lambdas, &u), Want::Step);
            return Modes { u, dev: f64::NAN, ldl2: f64::NAN, converged: true, a: at.values, mu: at.mu };
        }
        self.modes_from(&lambdas, &off, u, None)
    }

    /// PIRLS's Newton step at `u` from the system `cur` there, with its decrement; `None` when `A` cannot be
    /// factored.
    fn newton_step(&self, cur: &Pass, u: &[f64]) -> Option<(Vec<f64>, f64)> {
        let l = self.factor(&cur.values)?;
        let grad: Vec<f64> = cur.grad_u.iter().zip(u).map(|(g, u)| g - u).collect();
        let mut step = grad.clone();
        solve_in_place(&self.symbolic, &l, &mut step, 1);
        let decrement = dot(&step, &grad);
        Some((step, decrement))
    }

    /// PIRLS from `u`, with the system there when the caller has it.
    fn modes_from(&self, lambdas: &[Vec<f64>], off: &[f64], mut u: Vec<f64>, at_u: Option<Pass>) -> Modes {
        let mut cur = at_u.unwrap_or_else(|| self.system_at(lambdas, off, &u));
        let mut pdev = cur.dev + dot(&u, &u);
        if !pdev.is_finite() {
            u.iter_mut().for_each(|v| *v = 0.0);
            cur = self.system_at(lambdas, off, &u);
            pdev = cur.dev + dot(&u, &u);
        }
        let mut converged = false;
        // Whether `u` moved after `cur` was computed.
        let mut moved = false;
        for _ in 0..60 {
            let Some((step, decrement)) = self.newton_step(&cur, &u) else { break };
            if decrement < PIRLS_TOL {
                // One more full step puts the modes at rounding level (Newton's quadratic convergence): the
                // objective's log|L|² is not stationary in u, so the rest of a stopped iteration would show in
                // it at first order, and in the finite-difference Hessian amplified by 1/δ².
                u.iter_mut().zip(&step).for_each(|(u, s)| *u += s);
                moved = true;
                converged = true;
                break;
            }
            let mut accepted = false;
            let mut t = 1.0;
            for _ in 0..30 {
                let trial: Vec<f64> = u.iter().zip(&step).map(|(u, s)| u + t * s).collect();
                let at = self.system_at(lambdas, off, &trial);
                let pd = at.dev + dot(&trial, &trial);
                if pd.is_finite() && pd <= pdev + 1e-12 * (1.0 + pdev.abs()) {
                    u = trial;
                    cur = at;
                    pdev = pd;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                // No step lowers the penalized deviance any more: converged if the decrement is at the level of
                // the rounding of a sum over all rows.
                converged = decrement < 1e-6;
                break;
            }
        }
        // The deviance and log|L|² at the final point.
        if moved {
            cur = self.system_at(lambdas, off, &u);
        }
        let ldl2 = self.factor(&cur.values).and_then(|l| log_det(&self.symbolic, &l)).unwrap_or(f64::INFINITY);
        Modes { u, dev: cur.dev, ldl2, converged, a: cur.values, mu: cur.mu }
    }

    /// glmer's Laplace objective (the `aic()` scale): deviance + ‖u‖² + log|L|² + the saturated constant.
    fn objective(&self, modes: &Modes) -> f64 {
        modes.dev + dot(&modes.u, &modes.u) + modes.ldl2 + self.c_const
    }

    /// The Schur complement `X'WX − B'A⁻¹B` (p × p, full) from the joint system `pass` at (θ, β, u), with
    /// `A⁻¹[B g_u]` and the gradients; `None` when a factor fails.
    #[allow(clippy::type_complexity)]
    fn schur(&self, pass: &Pass, u: &[f64]) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)> {
        let (m, p) = (self.m, self.p);
        let l = self.factor(&pass.values)?;
        let grad_u: Vec<f64> = pass.grad_u.iter().zip(u).map(|(g, u)| g - u).collect();
        // Right-hand sides [B g_u], column-major m × (p + 1).
        let mut rhs = vec![0.0; m * (p + 1)];
        for r in 0..m {
            for c in 0..p {
                rhs[c * m + r] = pass.b[r * p + c];
            }
            rhs[p * m + r] = grad_u[r];
        }
        solve_in_place(&self.symbolic, &l, &mut rhs, p + 1);
        let mut s = vec![0.0; p * p];
        for a in 0..p {
            for c in 0..=a {
                let bt_ainv_b: f64 = (0..m).map(|r| pass.b[r * p + a] * rhs[c * m + r]).sum();
                s[a * p + c] = pass.c[a * p + c] - bt_ainv_b;
                s[c * p + a] = s[a * p + c];
            }
        }
        let rhs_beta: Vec<f64> = (0..p)
            .map(|a| pass.grad_beta[a] - (0..m).map(|r| pass.b[r * p + a] * rhs[p * m + r]).sum::<f64>())
            .collect();
        Some((s, rhs, rhs_beta, grad_u, pass.grad_beta.clone()))
    }

    /// Joint PIRLS over (u, β) at fixed θ (glmer's `nAGQ = 0` stage), then PIRLS in `u` at the final β: β, the
    /// modes and the Laplace objective there.
    fn joint(&self, theta: &[f64], beta0: &[f64], u0: &[f64]) -> (Vec<f64>, Modes, f64) {
        let (m, p) = (self.m, self.p);
        let lambdas = self.lambdas(theta);
        let mut beta = beta0.to_vec();
        let mut u = u0.to_vec();
        // The last pass is always at the current (β, u), so PIRLS in `u` below starts from its system.
        let mut cur = self.joint_at(&lambdas, &beta, &u);
        let mut pdev = cur.dev + dot(&u, &u);
        for _ in 0..100 {
            let Some((mut s, ainv, rhs_beta, grad_u, grad_beta)) = self.schur(&cur, &u) else {
                break;
            };
            if !cholesky(&mut s, p) {
                break;
            }
            let mut db = rhs_beta;
            chol_solve(&s, p, &mut db);
            let du: Vec<f64> =
                (0..m).map(|r| ainv[p * m + r] - (0..p).map(|c| ainv[c * m + r] * db[c]).sum::<f64>()).collect();
            let decrement = dot(&du, &grad_u) + dot(&db, &grad_beta);
            if decrement < 1e-10 {
                break;
            }
            let mut accepted = false;
            let mut t = 1.0;
            for _ in 0..30 {
                let nb: Vec<f64> = beta.iter().zip(&db).map(|(b, d)| b + t * d).collect();
                let nu: Vec<f64> = u.iter().zip(&du).map(|(a, d)| a + t * d).collect();
                let at = self.joint_at(&lambdas, &nb, &nu);
                let pd = at.dev + dot(&nu, &nu);
                if pd.is_finite() && pd <= pdev + 1e-12 * (1.0 + pdev.abs()) {
                    beta = nb;
                    u = nu;
                    cur = at;
                    pdev = pd;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                break;
            }
        }
        let modes = self.modes_from(&lambdas, &self.eta_fixed(&beta), u, Some(cur));
        let obj = self.objective(&modes);
        (beta, modes, obj)
    }
    /// The exact gradient in (θ, β) of the Laplace objective at converged modes `u` (all terms scalar or not):
    /// by implicit differentiation of the mode equation `Λ'Z'r = u` (the penalized deviance is stationary in
    /// `u`, so its own part is `−2X'r` and `−2 r'Z ∂Λ u`), plus the derivative of log|A| =
    /// `2 tr(A⁻¹Λ'Z'WZ ∂Λ) + Σ_i w'_i h_i dη_i` with `h_i = zl_i'A⁻¹zl_i` from the selected inverse of `A`
    /// (every entry a row needs lies in the factor's pattern) and the modes' response to (θ, β) through one
    /// more solve, `a = A⁻¹Λ'Z's` with `s_i = w'_i h_i`. With `ρ_i = s_i − 2r_i − wt_i zl_i'a`:
    /// `∂/∂β = X'ρ` and, for θ_t the entry (r, c) of term k's Λ_k, `∂/∂θ_t = Σ_i z_ik[r] (ρ_i u[c] + r_i a[c] +
    /// 2 wt_i v_i[c])` at the row's level of term k, where `v_i = A⁻¹zl_i`. `None` when a factor fails.
    fn gradient(&self, theta: &[f64], modes: &Modes) -> Option<Vec<f64>> {
        let (m, p) = (self.m, self.p);
        let u = &modes.u;
        let map = self.inverse_map()?;
        let lambdas = self.lambdas(theta);
        let lvalues = factor_numeric(&map.simplicial, m, &self.col_ptr, &self.row_idx, &modes.a)?;
        let SymbolicCholeskyRaw::Simplicial(sym) = map.simplicial.raw() else { return None };
        let factor = sym.factor();
        let zinv = selected_inverse(m, factor.col_ptr(), factor.row_idx(), &lvalues)?;
        let nth = self.n_theta();
        let qsum: usize = self.terms.iter().map(|t| t.q).sum();
        // Offsets of each term's zl in a row's vector, and for each product of `row_pos` the two offsets.
        let mut term_off = Vec::with_capacity(self.terms.len());
        let mut o = 0;
        for t in &self.terms {
            term_off.push(o);
            o += t.q;
        }
        let mut prod_off: Vec<(usize, usize)> = Vec::with_capacity(self.npos);
        for (k, tk) in self.terms.iter().enumerate() {
            for a in 0..tk.q {
                for c in a..tk.q {
                    prod_off.push((term_off[k] + a, term_off[k] + c));
                }
            }
            for (s, ts) in self.terms.iter().enumerate().skip(k + 1) {
                for a in 0..tk.q {
                    for c in 0..ts.q {
                        prod_off.push((term_off[k] + a, term_off[s] + c));
                    }
                }
            }
        }
        // θ_t ↔ (term, r, c) of Λ_k, in θ's order (column by column).
        let theta_index: Vec<(usize, usize, usize)> = self
            .terms
            .iter()
            .enumerate()
            .flat_map(|(k, t)| (0..t.q).flat_map(move |c| (c..t.q).map(move |r| (k, r, c))))
            .collect();
        let n_chunks = self.n.div_ceil(self.chunk);
        let rows_of = |c: usize| c * self.chunk..((c + 1) * self.chunk).min(self.n);
        // A row's weights (from μ at the modes), zl and bases.
        let scalar = self.terms.iter().all(|t| t.q == 1);
        let row = |i: usize, zl: &mut [f64], base: &mut [usize]| -> (f64, f64, f64) {
            for (k, (rt, t)) in self.random.iter().zip(&self.terms).enumerate() {
                if scalar {
                    base[k] = t.u_offset + rt.codes[i] as usize;
                    zl[k] = lambdas[k][0] * self.z[k][i];
                    continue;
                }
                base[k] = t.u_offset + rt.codes[i] as usize * t.q;
                let zi = &self.z[k][i * t.q..(i + 1) * t.q];
                let lam = &lambdas[k];
                for a in 0..t.q {
                    zl[term_off[k] + a] = (a..t.q).map(|rr| lam[rr * t.q + a] * zi[rr]).sum();
                }
            }
            let mu = modes.mu[i];
            let wt = self.w[i] * mu * (1.0 - mu);
            (wt, wt * (1.0 - 2.0 * mu), self.w[i] * (self.y[i] - mu))
        };
        // Pass 2: s_i, Λ'Z's and the 2 wt_i (∂Λ'z_i)'v_i part of the θ gradient.
        let parts: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = (0..n_chunks)
            .into_par_iter()
            .map(|ch| {
                let rows = rows_of(ch);
                let mut s_rows = Vec::with_capacity(rows.len());
                let mut lzs = vec![0.0; m];
                let mut g_theta = vec![0.0; nth];
                let (mut zl, mut base, mut v) = (vec![0.0; qsum], vec![0; self.terms.len()], vec![0.0; qsum]);
                for i in rows {
                    let (wt, wt1, _) = row(i, &mut zl, &mut base);
                    v.iter_mut().for_each(|x| *x = 0.0);
                    let lpos = &map.row_lpos[i * self.npos..(i + 1) * self.npos];
                    for (e, &(o1, o2)) in prod_off.iter().enumerate() {
                        let ainv = zinv[lpos[e] as usize];
                        v[o1] += ainv * zl[o2];
                        if o1 != o2 {
                            v[o2] += ainv * zl[o1];
                        }
                    }
                    let h: f64 = zl.iter().zip(&v).map(|(a, b)| a * b).sum();
                    let s = wt1 * h;
                    s_rows.push(s);
                    for (k, t) in self.terms.iter().enumerate() {
                        for a in 0..t.q {
                            lzs[base[k] + a] += zl[term_off[k] + a] * s;
                        }
                    }
                    for (t, &(k, r, c)) in theta_index.iter().enumerate() {
                        let zr = self.z[k][i * self.terms[k].q + r];
                        g_theta[t] += 2.0 * wt * zr * v[term_off[k] + c];
                    }
                }
                (s_rows, lzs, g_theta)
            })
            .collect();
        let mut s_all = Vec::with_capacity(self.n);
        let mut a_vec = vec![0.0; m];
        let mut grad = vec![0.0; nth + p];
        for (s_rows, lzs, g_theta) in parts {
            s_all.extend(s_rows);
            add(&mut a_vec, &lzs);
            grad[..nth].iter_mut().zip(&g_theta).for_each(|(g, v)| *g += v);
        }
        solve_in_place(&map.simplicial, &lvalues, &mut a_vec, 1);
        // Pass 3: ρ_i and the rest of the gradient.
        let parts: Vec<Vec<f64>> = (0..n_chunks)
            .into_par_iter()
            .map(|ch| {
                let mut g = vec![0.0; nth + p];
                let (mut zl, mut base) = (vec![0.0; qsum], vec![0; self.terms.len()]);
                for i in rows_of(ch) {
                    let (wt, _, r) = row(i, &mut zl, &mut base);
                    let mut za = 0.0;
                    for (k, t) in self.terms.iter().enumerate() {
                        for a in 0..t.q {
                            za += zl[term_off[k] + a] * a_vec[base[k] + a];
                        }
                    }
                    let rho = s_all[i] - 2.0 * r - wt * za;
                    for (t, &(k, rr, c)) in theta_index.iter().enumerate() {
                        let zr = self.z[k][i * self.terms[k].q + rr];
                        g[t] += zr * (rho * u[base[k] + c] + r * a_vec[base[k] + c]);
                    }
                    let (cols, vals) = self.x.row(i);
                    cols.iter().zip(vals).for_each(|(&j, x)| g[nth + j as usize] += rho * x);
                }
                g
            })
            .collect();
        for part in parts {
            grad.iter_mut().zip(&part).for_each(|(g, v)| *g += v);
        }
        Some(grad)
    }
}

impl Laplace for MultiProblem<'_> {
    type Start = Vec<f64>;
    type Modes = Modes;
    fn point(&self, x: &[f64], start: &Vec<f64>) -> (f64, Modes) {
        let nth = self.n_theta();
        let modes = self.modes(&x[..nth], &x[nth..], start);
        (self.objective(&modes), modes)
    }
    fn modes_at(&self, x: &[f64], start: &Vec<f64>) -> Modes {
        let nth = self.n_theta();
        self.modes_for_gradient(&x[..nth], &x[nth..], start)
    }
    fn gradient(&self, x: &[f64], modes: &Modes) -> Vec<f64> {
        let nth = self.n_theta();
        self.gradient(&x[..nth], modes).unwrap_or_else(|| vec![f64::NAN; x.len()])
    }
    fn start_of(&self, modes: &Modes) -> Vec<f64> {
        modes.u.clone()
    }
    /// `2(X'WX − B'A⁻¹B)`, the exact Hessian in β of the penalized deviance profiled over `u` (the logit is
    /// the canonical link, so its Fisher information is its Hessian); it leaves out log|L|²'s part, of the
    /// order of the number of random effects against the number of rows.
    fn beta_block(&self, x: &[f64], modes: &Modes) -> Option<Vec<f64>> {
        let nth = self.n_theta();
        let lambdas = self.lambdas(&x[..nth]);
        let (s, ..) = self.schur(&self.joint_at(&lambdas, &x[nth..], &modes.u), &modes.u)?;
        Some(s.iter().map(|v| 2.0 * v).collect())
    }
    fn mirror(&self, centre: &Vec<f64>, plus: &Vec<f64>) -> Option<Vec<f64>> {
        Some(centre.iter().zip(plus).map(|(c, p)| 2.0 * c - p).collect())
    }
    /// For β_j: `u − δ A⁻¹B e_j` with `B = Λ'Z'WX`, from the mode equation `Λ'Z'r(Xβ + ZΛu) = u`
    /// differentiated in β (`A du = −B dβ`), at the cost of one joint pass at `x`; none for θ.
    fn plus_starts(&self, x: &[f64], centre: &Vec<f64>, delta: f64) -> Vec<Option<Vec<f64>>> {
        let (nth, m) = (self.n_theta(), self.m);
        let lambdas = self.lambdas(&x[..nth]);
        let Some((_, ainv, ..)) = self.schur(&self.joint_at(&lambdas, &x[nth..], centre), centre) else {
            return Vec::new();
        };
        (0..x.len())
            .map(|j| {
                let col = &ainv.get((j.checked_sub(nth)?) * m..(j - nth + 1) * m)?;
                Some(centre.iter().zip(col.iter()).map(|(u, d)| u - delta * d).collect())
            })
            .collect()
    }
    fn reflect(&self, x: &mut [f64], start: &Vec<f64>) -> Option<Vec<f64>> {
        let mut flipped: Option<Vec<f64>> = None;
        for t in &self.terms {
            let q = t.q;
            let mut at = t.theta_offset;
            for c in 0..q {
                // Column c of Λ_k holds θ[at..at + q − c], its diagonal entry first.
                if x[at] < 0.0 {
                    x[at..at + q - c].iter_mut().for_each(|v| *v = -*v);
                    let u = flipped.get_or_insert_with(|| start.clone());
                    for j in 0..t.levels.len() {
                        u[t.u_offset + j * q + c] = -u[t.u_offset + j * q + c];
                    }
                }
                at += q - c;
            }
        }
        flipped
    }
}

/// The products of data row `i` in `A` (row ≤ column), in the order `pass` visits them: each term's own block
/// (a ≤ b), then each pair of terms k < s.
/// A row-major matrix's non-zero entries, row by row in column order.
#[derive(Debug)]
struct SparseRows {
    /// Row `i`'s entries are `start[i]..start[i + 1]`.
    start: Vec<usize>,
    col: Vec<u32>,
    val: Vec<f64>,
}

impl SparseRows {
    /// The non-zero entries of the row-major `dense` (rows of `p`).
    fn new(dense: &[f64], p: usize) -> SparseRows {
        let n = dense.len().checked_div(p).unwrap_or(0);
        let mut start = Vec::with_capacity(n + 1);
        start.push(0);
        let nnz = dense.iter().filter(|&&v| v != 0.0).count();
        let (mut col, mut val) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
        for xi in dense.chunks(p.max(1)).take(n) {
            for (j, &v) in xi.iter().enumerate() {
                if v != 0.0 {
                    col.push(j as u32);
                    val.push(v);
                }
            }
            start.push(col.len());
        }
        SparseRows { start, col, val }
    }

    /// Row `i`'s columns and values.
    fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let r = self.start[i]..self.start[i + 1];
        (&self.col[r.clone()], &self.val[r])
    }
}

fn row_entries(random: &[&RandomTerm], terms: &[TermInfo], i: usize, out: &mut Vec<(usize, usize)>) {
    out.clear();
    for (k, (rk, tk)) in random.iter().zip(terms).enumerate() {
        let bk = tk.u_offset + rk.codes[i] as usize * tk.q;
        for a in 0..tk.q {
            for b in a..tk.q {
                out.push((bk + a, bk + b));
            }
        }
        for (rs, ts) in random.iter().zip(terms).skip(k + 1) {
            let bs = ts.u_offset + rs.codes[i] as usize * ts.q;
            for a in 0..tk.q {
                for b in 0..ts.q {
                    let (r, c) = (bk + a, bs + b);
                    out.push((r.min(c), r.max(c)));
                }
            }
        }
    }
}

fn add(total: &mut Vec<f64>, part: &[f64]) {
    if total.is_empty() {
        total.extend_from_slice(part);
    } else {
        total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Fits a validated full-rank frame with several random-effects terms by the Laplace approximation.
pub(super) fn fit_multi(frame: &ModelFrame, opts: &GlmmOptions) -> Result<GlmmFit, MixedModelError> {
    let pr = MultiProblem::new(frame, opts)?;
    let (p, m) = (pr.p, pr.m);
    let nth = pr.n_theta();
    let th_lower = pr.lower_bounds();
    let theta_initial: Vec<f64> = th_lower.iter().map(|&l| if l == 0.0 { 1.0 } else { 0.0 }).collect();
    let mut theta = theta_initial.clone();
    // Stage 1: θ only, with β and u from joint PIRLS.
    let (b0, m0, obj0) = pr.joint(&theta, &vec![0.0; p], &vec![0.0; m]);
    if !obj0.is_finite() {
        return Err(MixedModelError::NonFiniteStart);
    }
    let mut warm = (b0, m0.u);
    let mut runs = minimize(
        |t: &[f64]| {
            let (b, modes, obj) = pr.joint(t, &warm.0, &warm.1);
            if obj.is_finite() {
                warm = (b, modes.u);
                obj
            } else {
                f64::INFINITY
            }
        },
        &mut theta,
        &th_lower,
        // Stage 1 only supplies a start for the Newton steps, so a coarse tolerance suffices.
        Schedule {
            runs: &[(0.2, 1e-2)],
            max_fun_per_parameter: MAX_FUN_PER_PARAMETER,
            restart_after_convergence: true,
        },
        OptParameters::Theta,
    );
    let (beta1, modes1, _) = pr.joint(&theta, &warm.0, &warm.1);
    // Stage 2: (θ, β) jointly, u by PIRLS: Newton steps on the exact gradient, BOBYQA if they fail.
    let mut par: Vec<f64> = theta.iter().chain(&beta1).copied().collect();
    let lower: Vec<f64> = th_lower.iter().copied().chain(std::iter::repeat_n(f64::NEG_INFINITY, p)).collect();
    let mut u_warm = modes1.u;
    let mut h_newton = None;
    match newton_stage(&pr, &mut par, &mut u_warm) {
        Ok(stage) => {
            runs.push(newton_run(&stage));
            h_newton = Some(stage.hessian);
        }
        Err((why, evaluations)) => runs.push(newton_failed(why, evaluations)),
    }
    if h_newton.is_none() {
        let schedule = Schedule {
            runs: &[(0.1, 1e-8), (1e-3, 1e-10)],
            max_fun_per_parameter: MAX_FUN_PER_PARAMETER,
            restart_after_convergence: true,
        };
        runs.extend(minimize(
            |x: &[f64]| {
                let modes = pr.modes(&x[..nth], &x[nth..], &u_warm);
                let obj = pr.objective(&modes);
                if obj.is_finite() {
                    u_warm = modes.u;
                    obj
                } else {
                    f64::INFINITY
                }
            },
            &mut par,
            &lower,
            schedule,
            OptParameters::ThetaBeta,
        ));
    }
    let (theta, beta) = (par[..nth].to_vec(), par[nth..].to_vec());
    let modes = pr.modes(&theta, &beta, &u_warm);
    let criterion = pr.objective(&modes);
    if !criterion.is_finite() {
        return Err(MixedModelError::Optimizer { reason: "the Laplace objective is not finite at the optimum".into() });
    }
    let lambdas = pr.lambdas(&theta);
    let off = pr.eta_fixed(&beta);
    // R_X: the Schur complement at the optimum (σ = 1).
    let v_rx = match pr.schur(&pr.joint_at(&lambdas, &beta, &modes.u), &modes.u) {
        Some((mut s, ..)) => {
            if cholesky(&mut s, p) {
                chol_inverse(&s, p)
            } else {
                vec![f64::NAN; p * p]
            }
        }
        None => vec![f64::NAN; p * p],
    };
    let mut hess_bad = false;
    let v = if opts.use_hessian {
        let u_hat = modes.u.clone();
        let h = match h_newton {
            // Computed by the Newton stage at the optimum.
            Some(h) => h,
            None => {
                // Central differences of the exact gradient (2k evaluations), or of the objective (2k²) if the
                // gradient cannot be computed.
                let grad_at =
                    |x: &[f64], _: usize, _: Option<&()>| (Laplace::gradient(&pr, x, &pr.point(x, &u_hat).1), ());
                let h = fd_jacobian(&grad_at, &par, 1e-4);
                if h.iter().all(|v| v.is_finite()) {
                    h
                } else {
                    fd_hessian_par(&|x: &[f64]| pr.objective(&pr.modes(&x[..nth], &x[nth..], &u_hat)), &par, 1e-4)
                }
            }
        };
        vcov_from_hessian(&h, nth, p).unwrap_or_else(|| {
            hess_bad = true;
            v_rx.clone()
        })
    } else {
        v_rx.clone()
    };
    let fixed_effects = fixed_effect_rows(&frame.x_names, &beta, &v);
    // Variance components and correlations per term (Σ_k = Λ_k Λ_k'), in lme4's order.
    let mut variance_components = Vec::new();
    let mut correlations = Vec::new();
    for (t, lam) in pr.terms.iter().zip(&lambdas) {
        let q = t.q;
        let cov = |a: usize, b: usize| (0..q).map(|k| lam[a * q + k] * lam[b * q + k]).sum::<f64>();
        for a in 0..q {
            variance_components.push(VarianceComponent {
                group: t.group.clone(),
                term: Some(t.names[a].clone()),
                variance: cov(a, a),
                std_dev: cov(a, a).sqrt(),
            });
        }
        for a in 0..q {
            for b in a + 1..q {
                correlations.push(Correlation {
                    group: t.group.clone(),
                    term1: t.names[a].clone(),
                    term2: t.names[b].clone(),
                    correlation: cov(a, b) / (cov(a, a) * cov(b, b)).sqrt(),
                });
            }
        }
    }
    // Conditional modes b = Λu and SDs from the diagonal blocks of Λ A⁻¹ Λ' at the modes.
    let b_hat = pr.lambda_u(&lambdas, &modes.u);
    let blocks: Vec<(usize, usize)> =
        pr.terms.iter().flat_map(|t| (0..t.levels.len()).map(move |j| (t.u_offset + j * t.q, t.q))).collect();
    let simplicial = symbolic_factor(m, &pr.col_ptr, &pr.row_idx, SupernodalThreshold::FORCE_SIMPLICIAL)
        .map_err(|reason| MixedModelError::Factorization { terms: "the random-effects terms".into(), reason })?;
    let inverse = factor_numeric(&simplicial, m, &pr.col_ptr, &pr.row_idx, &modes.a)
        .and_then(|l| inverse_blocks(&simplicial, &l, &blocks))
        .unwrap_or_else(|| blocks.iter().map(|&(_, q)| vec![f64::NAN; q * q]).collect());
    let mut inverse = inverse.into_iter();
    let mut ranef = Vec::with_capacity(pr.terms.len());
    for (t, lam) in pr.terms.iter().zip(&lambdas) {
        let q = t.q;
        let mut mode_b = Vec::with_capacity(t.levels.len());
        let mut cond_sd = Vec::with_capacity(t.levels.len());
        for j in 0..t.levels.len() {
            let base = t.u_offset + j * q;
            mode_b.push(b_hat[base..base + q].to_vec());
            let ainv = inverse.next().unwrap_or_default();
            cond_sd.push(
                (0..q)
                    .map(|a| {
                        (0..=a)
                            .flat_map(|c| (0..=a).map(move |d| (c, d)))
                            .map(|(c, d)| {
                                lam[a * q + c] * ainv.get(c * q + d).copied().unwrap_or(f64::NAN) * lam[a * q + d]
                            })
                            .sum::<f64>()
                            .sqrt()
                    })
                    .collect(),
            );
        }
        ranef.push(ConditionalModes {
            group: t.group.clone(),
            terms: t.names.clone(),
            levels: t.levels.clone(),
            modes: mode_b,
            cond_sd,
        });
    }
    // Diagnostics: fitted probabilities numerically 0 or 1, levels with all-0 or all-1 responses.
    let mut numerically_0_or_1 = 0;
    for i in 0..pr.n {
        let mut eta = off[i];
        for (k, (rt, t)) in pr.random.iter().zip(&pr.terms).enumerate() {
            let base = t.u_offset + rt.codes[i] as usize * t.q;
            eta +=
                pr.z[k][i * t.q..(i + 1) * t.q].iter().zip(&b_hat[base..base + t.q]).map(|(z, b)| z * b).sum::<f64>();
        }
        let mu = mu_dev(eta, pr.y[i], pr.w[i], pr.sat[i]).0;
        if !(10.0 * f64::EPSILON..=1.0 - 10.0 * f64::EPSILON).contains(&mu) {
            numerically_0_or_1 += 1;
        }
    }
    let mut separated_groups = Vec::new();
    for (rt, t) in pr.random.iter().zip(&pr.terms) {
        // Per level: (any 0 response, any 1 response).
        let mut seen = vec![(false, false); t.levels.len()];
        for (i, &c) in rt.codes.iter().enumerate() {
            let s = &mut seen[c as usize];
            s.0 |= pr.y[i] < 1.0;
            s.1 |= pr.y[i] > 0.0;
        }
        separated_groups.extend(
            seen.iter().enumerate().filter(|(_, s)| !(s.0 && s.1)).map(|(j, _)| format!("{} {}", t.group, t.levels[j])),
        );
    }
    let pirls_not_converged =
        if modes.converged { Vec::new() } else { vec!["all levels (one joint PIRLS for every term)".to_string()] };
    let singular = pr.terms.iter().zip(&lambdas).any(|(t, lam)| (0..t.q).any(|a| lam[a * t.q + a].abs() < 1e-4));
    let optimizer = OptSummary::new(theta_initial, th_lower, theta.clone(), criterion, runs);
    let k = (nth + p) as f64;
    let n = pr.n as f64;
    Ok(GlmmFit {
        link: Link::Logit,
        nagq: 1,
        glmer_log_likelihood: -criterion / 2.0,
        deviance: modes.dev,
        criterion,
        se_from_hessian: opts.use_hessian && !hess_bad,
        diagnostics: GlmmDiagnostics {
            separated_groups,
            pirls_not_converged,
            hessian_not_positive_definite: hess_bad,
            fitted_probabilities_0_or_1: numerically_0_or_1,
        },
        family: Family::Binomial,
        n_obs: pr.n,
        groups: pr.terms.iter().map(|t| (t.group.clone(), t.levels.len())).collect::<BTreeMap<_, _>>(),
        theta,
        beta,
        vcov: v,
        fixed_effects,
        variance_components,
        correlations,
        ranef,
        log_likelihood: -criterion / 2.0,
        aic: criterion + 2.0 * k,
        bic: criterion + k * n.ln(),
        converged: optimizer.converged && modes.converged,
        singular,
        optimizer,
        icc: None,
        dropped_columns: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::tests::{frame, stream};

    /// The LMM tests' nested or crossed frame with a 0/1 response drawn from its linear predictor, and
    /// optionally the school term reduced to a random intercept.
    fn binary_frame(crossed: bool, scalar: bool) -> ModelFrame {
        let mut f = frame(crossed);
        let mut u = stream(11);
        let centre = f.y.iter().sum::<f64>() / f.y.len() as f64;
        f.y = f.y.iter().map(|&y| if u() < 1.0 / (1.0 + (-2.0 * (y - centre)).exp()) { 1.0 } else { 0.0 }).collect();
        if scalar {
            let n = f.y.len();
            f.random[0].z = ndarray::Array2::ones((n, 1));
            f.random[0].names.truncate(1);
        }
        f
    }

    /// The per-row loops for scalar terms give the same bits as the general ones, in both kinds of pass.
    #[test]
    fn scalar_pass_is_the_general_pass() {
        for crossed in [false, true] {
            let frame = binary_frame(crossed, true);
            let pr = MultiProblem::new(&frame, &GlmmOptions::default()).unwrap();
            let lambdas = pr.lambdas(&vec![0.7; pr.n_theta()]);
            let off = pr.eta_fixed(&[-0.2, 0.4]);
            let u: Vec<f64> = (0..pr.m).map(|j| ((j * 37 % 11) as f64 - 5.0) / 7.0).collect();
            let b = pr.lambda_u(&lambdas, &u);
            for want in [Want::System, Want::Joint] {
                let fast = pr.pass_with(&lambdas, &off, &b, want, true);
                let general = pr.pass_with(&lambdas, &off, &b, want, false);
                assert_eq!(fast.dev.to_bits(), general.dev.to_bits());
                for (x, y) in [
                    (&fast.values, &general.values),
                    (&fast.grad_u, &general.grad_u),
                    (&fast.b, &general.b),
                    (&fast.c, &general.c),
                    (&fast.grad_beta, &general.grad_beta),
                    (&fast.mu, &general.mu),
                ] {
                    assert_eq!(x.len(), y.len());
                    assert!(
                        x.iter().zip(y.iter()).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "crossed {crossed} {want:?}"
                    );
                }
                assert_eq!(fast.mu.len(), pr.n);
            }
        }
    }

    /// X's rows keep their non-zero entries in column order, and `X β` from them is the dense product.
    #[test]
    fn sparse_rows_keep_the_non_zeros() {
        let dense = [1.0, 0.0, 2.5, 0.0, 0.0, 0.0, -1.0, 3.0, 0.0];
        let x = SparseRows::new(&dense, 3);
        assert_eq!(x.row(0), (&[0u32, 2][..], &[1.0, 2.5][..]));
        assert_eq!(x.row(1), (&[][..], &[][..]));
        assert_eq!(x.row(2), (&[0u32, 1][..], &[-1.0, 3.0][..]));
        let frame = binary_frame(false, true);
        let pr = MultiProblem::new(&frame, &GlmmOptions::default()).unwrap();
        let beta = [-0.2, 0.4];
        let eta = pr.eta_fixed(&beta);
        for (i, xi) in frame.x.rows().into_iter().enumerate() {
            let dense: f64 = xi.iter().zip(&beta).map(|(a, b)| a * b).sum();
            assert_eq!(eta[i].to_bits(), dense.to_bits());
        }
    }

    /// The analytic gradient of the Laplace objective equals central differences of the objective (PIRLS to
    /// convergence at each point) on nested and crossed models, with scalar and vector terms, away from the
    /// optimum.
    #[test]
    fn gradient_matches_central_differences() {
        for (crossed, scalar) in [(false, true), (false, false), (true, true), (true, false)] {
            let frame = binary_frame(crossed, scalar);
            let pr = MultiProblem::new(&frame, &GlmmOptions::default()).unwrap();
            let nth = pr.n_theta();
            // θ with off-diagonal entries where there are any, β away from 0.
            let theta: Vec<f64> = pr
                .lower_bounds()
                .iter()
                .enumerate()
                .map(|(t, &l)| if l == 0.0 { 0.6 + 0.1 * t as f64 } else { 0.15 })
                .collect();
            let beta = vec![-0.2, 0.4];
            let x: Vec<f64> = theta.iter().chain(&beta).copied().collect();
            let modes = pr.modes(&theta, &beta, &vec![0.0; pr.m]);
            assert!(modes.converged);
            let grad = pr.gradient(&theta, &modes).unwrap();
            let f = |y: &[f64]| pr.objective(&pr.modes(&y[..nth], &y[nth..], &modes.u));
            let h = 1e-5;
            for j in 0..x.len() {
                let (mut a, mut b) = (x.clone(), x.clone());
                a[j] += h;
                b[j] -= h;
                let fd = (f(&a) - f(&b)) / (2.0 * h);
                assert!(
                    (grad[j] - fd).abs() <= 1e-5 * (1.0 + fd.abs()),
                    "crossed {crossed} scalar {scalar} component {j}: analytic {} vs differences {fd}",
                    grad[j]
                );
            }
        }
    }

    /// The predicted start of a finite difference's first point (β_j moved by δ) is within O(δ²) of the
    /// modes there, far closer than the centre's modes, and PIRLS from it reaches the same modes and
    /// objective; θ's coordinates get no prediction.
    #[test]
    fn predicted_starts_are_second_order_close() {
        for crossed in [false, true] {
            let frame = binary_frame(crossed, true);
            let pr = MultiProblem::new(&frame, &GlmmOptions::default()).unwrap();
            let nth = pr.n_theta();
            let x: Vec<f64> = vec![0.7; nth].into_iter().chain([-0.2, 0.4]).collect();
            let centre = pr.modes(&x[..nth], &x[nth..], &vec![0.0; pr.m]);
            assert!(centre.converged);
            let delta = 1e-3;
            let starts = Laplace::plus_starts(&pr, &x, &centre.u, delta);
            assert_eq!(starts.len(), x.len());
            assert!(starts[..nth].iter().all(Option::is_none));
            for j in nth..x.len() {
                let mut y = x.clone();
                y[j] += delta;
                let exact = pr.modes(&y[..nth], &y[nth..], &centre.u);
                let predicted = starts[j].as_ref().expect("a prediction for β");
                let dist = |a: &[f64]| a.iter().zip(&exact.u).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
                let (from_centre, from_prediction) = (dist(&centre.u), dist(predicted));
                assert!(
                    from_prediction < 1e-2 * from_centre && from_centre > 1e-5,
                    "crossed {crossed}, β_{}: {from_prediction:e} from the prediction, {from_centre:e} from the centre",
                    j - nth
                );
                let again = pr.modes(&y[..nth], &y[nth..], predicted);
                assert!((pr.objective(&again) - pr.objective(&exact)).abs() < 1e-9 * pr.objective(&exact).abs());
            }
        }
    }

    /// The modes for the gradient alone are those of PIRLS with the objective, bit for bit (u, A's values,
    /// μ), from a start within rounding of the modes (the deviance-free path: a finite difference's first
    /// point from its predicted start, and the mirrored point from the mirror image of the first point's
    /// modes) and from one far away (the line-search path); only the deviance and log|L|² are left out.
    #[test]
    fn gradient_modes_equal_the_full_modes() {
        for (crossed, scalar) in [(false, true), (true, false)] {
            let frame = binary_frame(crossed, scalar);
            let pr = MultiProblem::new(&frame, &GlmmOptions::default()).unwrap();
            let nth = pr.n_theta();
            let x: Vec<f64> = vec![0.7; nth].into_iter().chain([-0.2, 0.4]).collect();
            let centre = pr.modes(&x[..nth], &x[nth..], &vec![0.0; pr.m]);
            let delta = 1e-4;
            let starts = Laplace::plus_starts(&pr, &x, &centre.u, delta);
            let mut y = x.clone();
            y[nth] += delta;
            let near = starts[nth].clone().expect("a prediction for β");
            let far = vec![0.0; pr.m];
            // The point mirrored through x, from the mirror image of the first point's modes.
            let mut z = x.clone();
            z[nth] -= delta;
            let plus = pr.modes(&y[..nth], &y[nth..], &near);
            let mirrored = Laplace::mirror(&pr, &centre.u, &plus.u).expect("a mirrored start");
            for (at, start, label) in [(&y, &near, "predicted"), (&z, &mirrored, "mirrored"), (&y, &far, "zero")] {
                let full = pr.modes(&at[..nth], &at[nth..], start);
                let lean = pr.modes_for_gradient(&at[..nth], &at[nth..], start);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&lean.u), bits(&full.u), "{label} start: u");
                assert_eq!(bits(&lean.a), bits(&full.a), "{label} start: A");
                assert_eq!(bits(&lean.mu), bits(&full.mu), "{label} start: mu");
                assert_eq!(lean.converged, full.converged);
                let (g_lean, g_full) = (pr.gradient(&at[..nth], &lean), pr.gradient(&at[..nth], &full));
                assert_eq!(bits(&g_lean.unwrap()), bits(&g_full.unwrap()), "{label} start: gradient");
                // The predicted and mirrored starts take the path without the deviance, the zero start the other.
                assert_eq!(lean.dev.is_nan(), label != "zero", "{label} start: deviance {}", lean.dev);
            }
        }
    }
}
