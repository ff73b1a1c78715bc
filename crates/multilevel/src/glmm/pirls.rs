//! Penalized iteratively reweighted least squares (PIRLS): the conditional modes `u` of each level at fixed
//! (θ, β) by Newton steps with step halving (a scalar fast path and the q × q general case), and glmer's
//! `nAGQ = 0` stage, joint PIRLS over (u, β) at fixed θ.

use rayon::prelude::*;

use super::problem::{Problem, lambda, mu_dev};
use super::quadrature::GhRule;
use super::schur::schur_system;
use crate::dense::{chol_solve, cholesky};

/// One evaluation of a group's penalized deviance with its Newton system.
#[derive(Debug, Clone)]
pub(super) struct GroupSystem {
    pub(super) pdev: f64,
    pub(super) dev: f64,
    pub(super) grad: Vec<f64>,
    pub(super) a: Vec<f64>,
}

/// Per-group result of the inner optimization at fixed (θ, β).
#[derive(Debug, Clone)]
pub(super) struct GroupMode {
    pub(super) u: Vec<f64>,
    /// Σ deviance residuals of the group.
    pub(super) dev: f64,
    /// log |L_g|².
    pub(super) ld: f64,
    /// The factor L_g (q × q, row-major lower triangle).
    pub(super) l: Vec<f64>,
    pub(super) converged: bool,
}

impl Problem {
    /// Penalized deviance, deviance, gradient `Σ λ z_i w_i (y_i - μ_i) - u` and `1 + Σ w_i μ_i (1 - μ_i)
    /// (λ z_i)²` of level `g` at `u`, for a scalar term (`off` holds the level's rows of X β).
    pub(super) fn scalar_system(&self, lam: f64, off: &[f64], g: usize, u: f64) -> (f64, f64, f64, f64) {
        let rows = self.starts[g]..self.starts[g + 1];
        let (z, y, w, sat) = (&self.z[rows.clone()], &self.y[rows.clone()], &self.w[rows.clone()], &self.sat[rows]);
        let (mut dev, mut grad, mut a) = (0.0, -u, 1.0);
        for r in 0..off.len() {
            let zl = lam * z[r];
            let eta = off[r] + zl * u;
            let (mu, d) = mu_dev(eta, y[r], w[r], sat[r]);
            dev += d;
            let wt = w[r] * mu * (1.0 - mu);
            grad += zl * (w[r] * (y[r] - mu));
            a += wt * zl * zl;
        }
        (dev + u * u, dev, grad, a)
    }

    /// [`Problem::group_mode`] for a scalar term without the small-matrix machinery (the same arithmetic).
    pub(super) fn scalar_mode(&self, lam: f64, off: &[f64], g: usize, start: f64) -> GroupMode {
        let mut u = start;
        let mut cur = self.scalar_system(lam, off, g, u);
        if !cur.0.is_finite() {
            u = 0.0;
            cur = self.scalar_system(lam, off, g, u);
        }
        let mut converged = false;
        for _ in 0..60 {
            let a = cur.3;
            if !(a > 0.0 && a.is_finite()) {
                break;
            }
            let l = a.sqrt();
            let step = cur.2 / l / l;
            let decrement = step * cur.2;
            let mut t = 1.0;
            let mut accepted = false;
            for _ in 0..30 {
                let trial = u + t * step;
                let ev = self.scalar_system(lam, off, g, trial);
                if ev.0.is_finite() && ev.0 <= cur.0 + 1e-12 * (1.0 + cur.0.abs()) {
                    u = trial;
                    cur = ev;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if decrement < 1e-12 || !accepted {
                converged = accepted || decrement < 1e-10;
                break;
            }
        }
        let a = cur.3;
        let ok = a > 0.0 && a.is_finite();
        let l = if ok { a.sqrt() } else { a };
        let ld = if ok { 2.0 * l.ln() } else { f64::INFINITY };
        GroupMode { u: vec![u], dev: cur.1, ld, l: vec![l], converged: converged && ok }
    }

    /// Penalized deviance of group `g` at `u` (Σ deviance residuals + ‖u‖²) and its deviance part.
    pub(super) fn group_pdev(&self, lam: &[f64], off: &[f64], g: usize, u: &[f64]) -> (f64, f64) {
        let mut zl = vec![0.0; self.q];
        let mut dev = 0.0;
        let rows = self.starts[g]..self.starts[g + 1];
        for (i, &o) in rows.clone().zip(&off[rows]) {
            self.zl(lam, i, &mut zl);
            let eta = o + zl.iter().zip(u).map(|(a, b)| a * b).sum::<f64>();
            dev += mu_dev(eta, self.y[i], self.w[i], self.sat[i]).1;
        }
        (dev + u.iter().map(|v| v * v).sum::<f64>(), dev)
    }

    /// One pass over group `g` at `u`: penalized deviance, deviance, gradient (`Λ'Z'(w(y-μ)) - u`) and the
    /// matrix `I + Λ'Z'WZΛ` (lower triangle).
    pub(super) fn group_system(&self, lam: &[f64], off: &[f64], g: usize, u: &[f64]) -> GroupSystem {
        let q = self.q;
        let mut zl = vec![0.0; q];
        let mut grad: Vec<f64> = u.iter().map(|v| -v).collect();
        let mut a = vec![0.0; q * q];
        for d in 0..q {
            a[d * q + d] = 1.0;
        }
        let mut dev = 0.0;
        let rows = self.starts[g]..self.starts[g + 1];
        for (i, &o) in rows.clone().zip(&off[rows]) {
            self.zl(lam, i, &mut zl);
            let eta = o + zl.iter().zip(u).map(|(a, b)| a * b).sum::<f64>();
            let (mu, d) = mu_dev(eta, self.y[i], self.w[i], self.sat[i]);
            dev += d;
            let wt = self.w[i] * mu * (1.0 - mu);
            let r = self.w[i] * (self.y[i] - mu);
            for c in 0..q {
                grad[c] += zl[c] * r;
                for d in 0..=c {
                    a[c * q + d] += wt * zl[c] * zl[d];
                }
            }
        }
        GroupSystem { pdev: dev + u.iter().map(|v| v * v).sum::<f64>(), dev, grad, a }
    }

    /// PIRLS for the conditional mode of group `g` at fixed (θ, β): Newton steps with step halving, one
    /// pass over the group's rows per trial point.
    pub(super) fn group_mode(&self, lam: &[f64], off: &[f64], g: usize, start: &[f64]) -> GroupMode {
        let q = self.q;
        let mut u = start.to_vec();
        let mut cur = self.group_system(lam, off, g, &u);
        if !cur.pdev.is_finite() {
            u.iter_mut().for_each(|v| *v = 0.0);
            cur = self.group_system(lam, off, g, &u);
        }
        let mut converged = false;
        for _ in 0..60 {
            let mut l = cur.a.clone();
            if !cholesky(&mut l, q) {
                break;
            }
            let mut step = cur.grad.clone();
            chol_solve(&l, q, &mut step);
            let decrement: f64 = step.iter().zip(&cur.grad).map(|(s, g)| s * g).sum();
            let mut t = 1.0;
            let mut accepted = false;
            for _ in 0..30 {
                let trial: Vec<f64> = u.iter().zip(&step).map(|(u, s)| u + t * s).collect();
                let ev = self.group_system(lam, off, g, &trial);
                if ev.pdev.is_finite() && ev.pdev <= cur.pdev + 1e-12 * (1.0 + cur.pdev.abs()) {
                    u = trial;
                    cur = ev;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if decrement < 1e-12 || !accepted {
                converged = accepted || decrement < 1e-10;
                break;
            }
        }
        let mut l = cur.a;
        let ok = cholesky(&mut l, q);
        let ld = if ok { (0..q).map(|d| 2.0 * l[d * q + d].ln()).sum() } else { f64::INFINITY };
        GroupMode { u, dev: cur.dev, ld, l, converged: converged && ok }
    }

    /// Conditional modes of every group at (θ, β), warm-started from `start`.
    pub(super) fn modes(&self, theta: &[f64], beta: &[f64], start: &[Vec<f64>]) -> Vec<GroupMode> {
        if self.q == 1 {
            return (0..self.n_groups())
                .into_par_iter()
                .map(|g| {
                    let mut off = vec![0.0; self.starts[g + 1] - self.starts[g]];
                    self.group_offset(beta, g, &mut off);
                    self.scalar_mode(theta[0], &off, g, start[g][0])
                })
                .collect();
        }
        let lam = lambda(theta, self.q);
        let off = self.eta_fixed(beta);
        (0..self.n_groups()).into_par_iter().map(|g| self.group_mode(&lam, &off, g, &start[g])).collect()
    }
}

/// Joint PIRLS over (u, β) at fixed θ (glmer's `nAGQ = 0` stage): returns β, the modes and the Laplace
/// objective. Also returns `R_X'R_X` (the Schur complement) at the end point.
pub(super) fn joint_pirls(
    pr: &Problem,
    theta: &[f64],
    beta0: &[f64],
    u0: &[Vec<f64>],
) -> (Vec<f64>, Vec<Vec<f64>>, f64) {
    let (p, q) = (pr.p, pr.q);
    let lam = lambda(theta, q);
    let mut beta = beta0.to_vec();
    let mut u: Vec<Vec<f64>> = u0.to_vec();
    let total = |beta: &[f64], u: &[Vec<f64>]| -> f64 {
        let off = pr.eta_fixed(beta);
        // Summed in group order after the parallel map, so the result does not depend on the thread count.
        let parts: Vec<f64> =
            (0..pr.n_groups()).into_par_iter().map(|g| pr.group_pdev(&lam, &off, g, &u[g]).0).collect();
        parts.iter().sum()
    };
    let mut pdev = total(&beta, &u);
    for _ in 0..100 {
        let off = pr.eta_fixed(&beta);
        let (schur, rhs, blocks) = schur_system(pr, &lam, &off, &u);
        let mut s = schur;
        if !cholesky(&mut s, p) {
            break;
        }
        let mut db = rhs;
        chol_solve(&s, p, &mut db);
        let mut dec = 0.0;
        let du: Vec<Vec<f64>> = blocks
            .iter()
            .map(|(l, gu, b)| {
                let mut v: Vec<f64> =
                    (0..q).map(|c| gu[c] - (0..p).map(|k| b[c * p + k] * db[k]).sum::<f64>()).collect();
                chol_solve(l, q, &mut v);
                dec += v.iter().zip(gu).map(|(a, b)| a * b).sum::<f64>();
                v
            })
            .collect();
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..30 {
            let nb: Vec<f64> = beta.iter().zip(&db).map(|(b, d)| b + t * d).collect();
            let nu: Vec<Vec<f64>> =
                u.iter().zip(&du).map(|(a, d)| a.iter().zip(d).map(|(a, d)| a + t * d).collect()).collect();
            let pd = total(&nb, &nu);
            if pd.is_finite() && pd <= pdev + 1e-12 * (1.0 + pdev.abs()) {
                beta = nb;
                u = nu;
                pdev = pd;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        let dec_beta: f64 = db.iter().map(|d| d * d).sum();
        if !accepted || (dec.abs() < 1e-12 && dec_beta < 1e-16) {
            break;
        }
    }
    let modes = pr.modes(theta, &beta, &u);
    let obj = pr.objective(theta, &beta, &modes, &GhRule::new(1));
    (beta, modes.into_iter().map(|m| m.u).collect(), obj)
}
