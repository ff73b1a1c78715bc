//! A Newton polish of glmer's second stage for a Laplace fit with a scalar term: a few Newton steps from the
//! BOBYQA solution on the exact gradient, with the Hessian the standard errors need anyway.

use super::problem::Problem;
use crate::dense::{chol_solve, cholesky};

/// Newton steps on (θ, β) for a Laplace fit with a scalar term, from the BOBYQA solution `par` (updated in
/// place with the warm-start modes `u_warm`), using the analytic gradient and the Hessian `h`. Returns the
/// number of objective evaluations and the final objective, or `Err` with the number of evaluations (with
/// `par` and `u_warm` untouched) if the first step is not usable: `h` not positive definite, θ would go
/// negative, or the objective does not decrease.
pub(super) fn newton_polish(
    pr: &Problem,
    h: &[f64],
    par: &mut [f64],
    u_warm: &mut Vec<Vec<f64>>,
    eval: &mut impl FnMut(&[f64], &mut Vec<Vec<f64>>) -> f64,
) -> Result<(usize, f64), usize> {
    let k = par.len();
    let mut l = h.to_vec();
    if !cholesky(&mut l, k) {
        return Err(0);
    }
    let mut u_cur = u_warm.clone();
    let mut f_cur = eval(par, &mut u_cur);
    let mut evals = 1;
    if !f_cur.is_finite() {
        return Err(evals);
    }
    let mut x = par.to_vec();
    let mut accepted = 0;
    for _ in 0..3 {
        let modes = pr.modes(&x[..1], &x[1..], &u_cur);
        let mut step = pr.laplace_gradient(x[0], &x[1..], &modes);
        let gnorm = step.iter().map(|v| v * v).sum::<f64>().sqrt();
        if !gnorm.is_finite() {
            break;
        }
        if gnorm < 1e-9 {
            accepted += 1;
            break;
        }
        chol_solve(&l, k, &mut step);
        let trial: Vec<f64> = x.iter().zip(&step).map(|(a, s)| a - s).collect();
        if trial.iter().any(|v| !v.is_finite()) || trial[0] < 0.0 {
            break;
        }
        let mut u_trial = u_cur.clone();
        let f_trial = eval(&trial, &mut u_trial);
        evals += 1;
        if f_trial.is_nan() || f_trial > f_cur {
            break;
        }
        let decrease = f_cur - f_trial;
        x = trial;
        u_cur = u_trial;
        f_cur = f_trial;
        accepted += 1;
        if decrease < 1e-10 {
            break;
        }
    }
    if accepted == 0 {
        return Err(evals);
    }
    par.copy_from_slice(&x);
    *u_warm = u_cur;
    Ok((evals, f_cur))
}
