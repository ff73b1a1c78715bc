//! Satterthwaite degrees of freedom for fixed-effect contrasts as lmerTest computes them (`contest1D`):
//! varpar = (θ, σ); the deviance as a function of varpar (lmerTest's `devfun_vp`), its Hessian H at the
//! optimum and A = 2 H⁻¹; for a contrast L, df = 2 (L'CL)² / (g'Ag) with g = ∂(L'C(varpar)L)/∂varpar and
//! C = σ² (R_X'R_X)⁻¹. Derivatives use central differences with Richardson extrapolation (as numDeriv).
//! σ enters both in closed form, so only the points' θ need a factorization: the differences' points are
//! listed first, and each distinct θ is evaluated once, in parallel (the results do not depend on the thread
//! count: each point's value is the same computation whichever thread runs it).

// Index loops mirror the matrix formulas (row-major `a[i * n + j]`).
#![allow(clippy::needless_range_loop)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::dense::{chol_inverse, inverse};
use crate::pls::{Pls, PlsEval};

/// Deviance (ML) or REML criterion at σ from the evaluation `e` at θ.
fn deviance_vp(pls: &Pls, e: &PlsEval, sigma: f64, reml: bool) -> f64 {
    let s2 = sigma * sigma;
    let log2pis2 = (2.0 * std::f64::consts::PI * s2).ln();
    let mut dev = e.ldl2 + e.pwrss / s2 + pls.n as f64 * log2pis2;
    if reml {
        dev += e.ldrx2 - pls.p as f64 * log2pis2;
    }
    dev
}

/// cov(β) = σ² (R_X'R_X)⁻¹ at σ from the evaluation `e` at θ (p×p, row-major).
fn vcov_vp(pls: &Pls, e: &PlsEval, sigma: f64) -> Vec<f64> {
    let s2 = sigma * sigma;
    chol_inverse(&e.lx, pls.p).into_iter().map(|v| v * s2).collect()
}

/// numDeriv's initial step: `|d x| + eps` where `|x| < zero.tol` (eps = 1e-4, zero.tol = sqrt(ε/7e-7)).
/// numDeriv uses d = 1e-4 for gradients and Jacobians and d = 0.1 for Hessians.
fn step(x: f64, d: f64) -> f64 {
    let zero_tol = (f64::EPSILON / 7e-7).sqrt();
    (d * x).abs() + if x.abs() < zero_tol { 1e-4 } else { 0.0 }
}

/// Richardson extrapolation of a sequence of estimates with error in powers of h² and halving steps.
fn richardson(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let levels = a.len();
    for k in 1..levels {
        let f = 4f64.powi(k as i32);
        for i in 0..levels - k {
            let next: Vec<f64> =
                a[i + 1].iter().zip(&a[i]).map(|(fine, coarse)| (f * fine - coarse) / (f - 1.0)).collect();
            a[i] = next;
        }
    }
    a.swap_remove(0)
}

const LEVELS: usize = 4;

/// Jacobian of a vector function by Richardson-extrapolated central differences (numDeriv's default, r = 4).
fn jacobian(f: &dyn Fn(&[f64]) -> Vec<f64>, x: &[f64]) -> Vec<Vec<f64>> {
    (0..x.len())
        .map(|j| {
            let mut h = step(x[j], 1e-4);
            let mut est = Vec::with_capacity(LEVELS);
            for _ in 0..LEVELS {
                let mut xp = x.to_vec();
                let mut xm = x.to_vec();
                xp[j] += h;
                xm[j] -= h;
                let (fp, fm) = (f(&xp), f(&xm));
                est.push(fp.iter().zip(&fm).map(|(a, b)| (a - b) / (2.0 * h)).collect());
                h /= 2.0;
            }
            richardson(est)
        })
        .collect()
}

/// Hessian of a scalar function as numDeriv's `genD` computes it (d = 0.1, r = 4 Richardson levels): diagonal
/// second differences first, then off-diagonal terms from steps along e_i + e_j corrected by the diagonal.
fn hessian(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let k = x.len();
    let f0 = f(x);
    let h0: Vec<f64> = x.iter().map(|&v| step(v, 0.1)).collect();
    let shifted = |i: usize, j: Option<usize>, scale: f64, sign: f64| {
        let mut y = x.to_vec();
        y[i] += sign * h0[i] * scale;
        if let Some(j) = j {
            y[j] += sign * h0[j] * scale;
        }
        f(&y)
    };
    let mut hess = vec![0.0; k * k];
    for i in 0..k {
        let est = (0..LEVELS)
            .map(|l| {
                let s = 0.5f64.powi(l as i32);
                let h = h0[i] * s;
                vec![(shifted(i, None, s, 1.0) - 2.0 * f0 + shifted(i, None, s, -1.0)) / (h * h)]
            })
            .collect();
        hess[i * k + i] = richardson(est)[0];
    }
    for i in 0..k {
        for j in 0..i {
            let est = (0..LEVELS)
                .map(|l| {
                    let s = 0.5f64.powi(l as i32);
                    let (hi, hj) = (h0[i] * s, h0[j] * s);
                    let num = shifted(i, Some(j), s, 1.0) - 2.0 * f0 + shifted(i, Some(j), s, -1.0)
                        - hess[i * k + i] * hi * hi
                        - hess[j * k + j] * hj * hj;
                    vec![num / (2.0 * hi * hj)]
                })
                .collect();
            let v = richardson(est)[0];
            hess[i * k + j] = v;
            hess[j * k + i] = v;
        }
    }
    hess
}

/// What Satterthwaite's approximation needs at the optimum, computed once per fit: A = 2 H⁻¹ (the asymptotic
/// covariance of varpar) and the Jacobian of C = cov(β̂) with respect to varpar. Any contrast's df then costs
/// O(k p²) without touching the data again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SatterthwaiteParts {
    /// Number of variance parameters (θ and σ).
    k: usize,
    /// Number of fixed effects.
    p: usize,
    /// A = 2 H⁻¹ (k × k, row-major).
    a: Vec<f64>,
    /// ∂C/∂varpar_r for each r (p × p, row-major).
    jac: Vec<Vec<f64>>,
}

impl SatterthwaiteParts {
    /// Satterthwaite df of the contrast L'β given C = cov(β̂): 2 (L'CL)² / (g'Ag), g_r = L' ∂C/∂varpar_r L.
    pub(crate) fn df(&self, l: &[f64], c: &[f64]) -> f64 {
        let (k, p) = (self.k, self.p);
        let quad = |m: &[f64]| {
            let mut s = 0.0;
            for i in 0..p {
                if l[i] == 0.0 {
                    continue;
                }
                for j in 0..p {
                    s += l[i] * m[i * p + j] * l[j];
                }
            }
            s
        };
        let g: Vec<f64> = self.jac.iter().map(|d| quad(d)).collect();
        let mut gag = 0.0;
        for r in 0..k {
            for s in 0..k {
                gag += g[r] * self.a[r * k + s] * g[s];
            }
        }
        let v = quad(c);
        2.0 * v * v / gag
    }
}

/// The Satterthwaite ingredients at (θ, σ); `None` where the Hessian cannot be inverted or C not computed.
pub(crate) fn satterthwaite_parts(pls: &Pls, theta: &[f64], sigma: f64, reml: bool) -> Option<SatterthwaiteParts> {
    let p = pls.p;
    let mut varpar = theta.to_vec();
    varpar.push(sigma);
    let k = varpar.len();
    let key = |vp: &[f64]| -> Vec<u64> { vp[..k - 1].iter().map(|v| v.to_bits()).collect() };
    // The θ of every point the differences visit (the points do not depend on the values).
    let points: RefCell<BTreeMap<Vec<u64>, Vec<f64>>> = RefCell::new(BTreeMap::new());
    let record = |vp: &[f64]| {
        points.borrow_mut().insert(key(vp), vp[..k - 1].to_vec());
    };
    hessian(
        &|vp| {
            record(vp);
            0.0
        },
        &varpar,
    );
    jacobian(
        &|vp| {
            record(vp);
            vec![0.0; p * p]
        },
        &varpar,
    );
    let evals: BTreeMap<Vec<u64>, Option<PlsEval>> =
        points.into_inner().into_par_iter().map(|(key, theta)| (key, pls.eval(&theta))).collect();
    let at = |vp: &[f64]| evals.get(&key(vp)).and_then(Option::as_ref);
    let h = hessian(&|vp| at(vp).map_or(f64::INFINITY, |e| deviance_vp(pls, e, vp[k - 1], reml)), &varpar);
    let hinv = inverse(&h, k)?;
    let a: Vec<f64> = hinv.iter().map(|v| 2.0 * v).collect();
    at(&varpar)?;
    let jac = jacobian(&|vp| at(vp).map_or_else(|| vec![f64::NAN; p * p], |e| vcov_vp(pls, e, vp[k - 1])), &varpar);
    Some(SatterthwaiteParts { k, p, a, jac })
}
