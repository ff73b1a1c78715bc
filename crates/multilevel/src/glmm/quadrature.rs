//! glmer's objective at (θ, β) given the conditional modes: the Laplace approximation (`nAGQ = 1`, on the
//! full-likelihood `aic()` scale), or adaptive Gauss–Hermite quadrature (`nAGQ > 1`, one scalar term, glmer's
//! deviance-residual scale) with its rule from Golub–Welsch.

use rayon::prelude::*;

use super::pirls::GroupMode;
use super::problem::{Problem, lambda};

/// A Gauss–Hermite rule for the standard normal density: nodes `z` and weights `w` summing to 1.
#[derive(Debug, Clone)]
pub(super) struct GhRule {
    pub(super) z: Vec<f64>,
    pub(super) w: Vec<f64>,
}

impl GhRule {
    /// Golub–Welsch on the probabilists' Hermite recurrence (Jacobi matrix with off-diagonal √k).
    pub(super) fn new(k: usize) -> GhRule {
        if k <= 1 {
            return GhRule { z: vec![0.0], w: vec![1.0] };
        }
        let mut jac = faer::Mat::<f64>::zeros(k, k);
        for i in 1..k {
            let b = (i as f64).sqrt();
            jac[(i, i - 1)] = b;
            jac[(i - 1, i)] = b;
        }
        let eig = jac.self_adjoint_eigen(faer::Side::Lower).expect("symmetric tridiagonal eigenproblem");
        let vals = eig.S();
        let vecs = eig.U();
        let mut pairs: Vec<(f64, f64)> = (0..k).map(|i| (vals[i], vecs[(0, i)] * vecs[(0, i)])).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        GhRule { z: pairs.iter().map(|p| p.0).collect(), w: pairs.iter().map(|p| p.1).collect() }
    }
}

impl Problem {
    /// glmer's objective at (θ, β) given the modes: Laplace (`aic` form) or AGQ (deviance-residual form).
    pub(super) fn objective(&self, theta: &[f64], beta: &[f64], modes: &[GroupMode], rule: &GhRule) -> f64 {
        if rule.z.len() <= 1 {
            let s: f64 = modes.iter().map(|m| m.dev + m.u.iter().map(|v| v * v).sum::<f64>() + m.ld).sum();
            return s + self.c_const;
        }
        let lam = lambda(theta, 1);
        let off = self.eta_fixed(beta);
        modes
            .par_iter()
            .enumerate()
            .map(|(g, m)| {
                let devc = m.dev + m.u[0] * m.u[0];
                let sd = 1.0 / m.l[0];
                let mut mult = 0.0;
                for k in 0..rule.z.len() {
                    let uk = [m.u[0] + rule.z[k] * sd];
                    let (dk, _) = self.group_pdev(&lam, &off, g, &uk);
                    mult += rule.w[k] * (-0.5 * (dk - devc) + 0.5 * rule.z[k] * rule.z[k]).exp();
                }
                devc + m.ld - 2.0 * mult.ln()
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum() // summed in group order: the same bits whatever the thread count
    }
}
