//! The bounded derivative-free minimization of the profiled criterion over θ: BOBYQA (lme4's default for
//! `lmer` is NLopt's BOBYQA), with tight tolerances and a restart from the optimum, recorded as a summary.

use bobyqa::{Bobyqa, Config, Status};
use serde::Serialize;

/// What the optimizer did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptSummary {
    /// Objective evaluations over all runs.
    pub evaluations: usize,
    /// Whether the final run stopped on its convergence criterion.
    pub converged: bool,
    /// The final status, as text.
    pub status: String,
    /// Objective at the optimum.
    pub objective: f64,
}

/// Minimizes `f` over θ with lower bounds `lower` from `theta` (updated in place). Infinite values of `f` are
/// allowed (BOBYQA moderates them).
pub(crate) fn minimize(f: impl Fn(&[f64]) -> f64, theta: &mut [f64], lower: &[f64]) -> OptSummary {
    let n = theta.len();
    let upper = vec![f64::INFINITY; n];
    let mut evaluations = 0;
    let mut last = (f64::INFINITY, Status::InvalidArgs);
    // First a coarse-to-fine run from lme4's start, then a restart with a smaller radius to polish.
    for (rho_begin, rho_end) in [(0.5, 1e-9), (1e-3, 1e-11)] {
        let mut cfg = Config::new(n);
        cfg.npt = if n == 1 { 3 } else { 2 * n + 1 };
        cfg.rho_begin = rho_begin;
        cfg.rho_end = rho_end;
        cfg.max_fun = 20_000 * n.max(1);
        let mut solver = match Bobyqa::new(n, cfg) {
            Ok(s) => s,
            Err(status) => {
                last = (f64::INFINITY, status);
                break;
            }
        };
        let before = theta.to_vec();
        let out = solver.minimize(|t: &[f64]| f(t), theta, lower, &upper);
        evaluations += out.n_eval;
        if out.f.is_nan() || out.f > last.0 {
            theta.copy_from_slice(&before);
        } else {
            last = (out.f, out.status);
        }
    }
    OptSummary {
        evaluations,
        converged: matches!(last.1, Status::Converged | Status::FtolReached) && last.0.is_finite(),
        status: last.1.to_string(),
        objective: f(theta),
    }
}
