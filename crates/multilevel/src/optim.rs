//! The bounded derivative-free minimizer of both fits, BOBYQA (lme4's default for `lmer` and glmer's second
//! stage is NLopt's or minqa's BOBYQA; here the `bobyqa` crate, a PRIMA port), run as a schedule of
//! restarts from the best point, and the record of what it did ([`OptSummary`], as MixedModels.jl's).

use bobyqa::{Bobyqa, Config, Status};
use serde::{Deserialize, Serialize};

/// The parameters a run of the optimizer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptParameters {
    /// The covariance parameters θ (the LMM's profiled criterion; the GLMM's first stage, β by PIRLS).
    Theta,
    /// θ and β jointly (the GLMM's second stage).
    ThetaBeta,
}

/// How a run searched.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptMethod {
    /// BOBYQA with trust-region radius from `rho_begin` down to `rho_end`.
    Bobyqa {
        /// Initial trust-region radius.
        rho_begin: f64,
        /// Final trust-region radius.
        rho_end: f64,
    },
    /// Newton steps on the exact gradient of the Laplace objective (the second stage of a GLMM with a scalar
    /// term; BOBYQA follows if they fail).
    Newton,
}

/// One run of the optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptRun {
    /// What it moved.
    pub parameters: OptParameters,
    /// How.
    pub method: OptMethod,
    /// Objective evaluations (for Newton steps: the trial points; the gradient passes of its
    /// finite-difference Hessians, 2k each for k parameters, are not counted here, their number is in
    /// `status`).
    pub evaluations: usize,
    /// Best objective value of the run (+∞ when nothing finite was found, or for Newton steps that did not
    /// converge; JSON writes it as `null`).
    #[serde(deserialize_with = "crate::result::inf_if_null")]
    pub objective: f64,
    /// Whether the run's point was kept (a run that makes the objective worse is undone).
    pub accepted: bool,
    /// Whether the run stopped on its convergence criterion (BOBYQA's trust region, or the Newton
    /// decrement).
    pub converged: bool,
    /// The run's final status, as text.
    pub status: String,
}

/// What the optimizer did, for either family (MixedModels.jl's `OptSummary`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OptSummary {
    /// The optimizer: `BOBYQA`, or `BOBYQA, then Newton` for a GLMM whose second stage took Newton steps.
    pub optimizer: String,
    /// θ at the start (lme4's: 1 on the diagonal of Λ, 0 below).
    pub theta_initial: Vec<f64>,
    /// Lower bounds on θ (0 on the diagonal of Λ, −∞ below; JSON writes −∞ as `null`).
    #[serde(deserialize_with = "crate::result::neg_inf_if_null")]
    pub lower_bounds: Vec<f64>,
    /// θ at the optimum.
    pub theta_final: Vec<f64>,
    /// Objective at the optimum (the profiled REML criterion or deviance; glmer's objective for a GLMM).
    #[serde(deserialize_with = "crate::result::nan_if_null")]
    pub objective: f64,
    /// Objective evaluations over all runs.
    pub evaluations: usize,
    /// Whether the last kept run stopped on its convergence criterion with a finite objective.
    pub converged: bool,
    /// The status of the last kept run, as text.
    pub status: String,
    /// Every run, in order.
    pub runs: Vec<OptRun>,
}

impl OptSummary {
    /// The record of `runs` ending at `theta_final` with objective `objective`.
    pub(crate) fn new(
        theta_initial: Vec<f64>,
        lower_bounds: Vec<f64>,
        theta_final: Vec<f64>,
        objective: f64,
        runs: Vec<OptRun>,
    ) -> OptSummary {
        let last = runs.iter().rev().find(|r| r.accepted);
        let newton = runs.iter().any(|r| r.accepted && r.method == OptMethod::Newton);
        OptSummary {
            optimizer: if newton { "BOBYQA, then Newton" } else { "BOBYQA" }.to_string(),
            theta_initial,
            lower_bounds,
            theta_final,
            objective,
            evaluations: runs.iter().map(|r| r.evaluations).sum(),
            converged: last.is_some_and(|r| r.converged) && objective.is_finite(),
            status: last.or(runs.last()).map_or_else(|| Status::InvalidArgs.to_string(), |r| r.status.clone()),
            runs,
        }
    }
}

/// A restart schedule: BOBYQA runs with these `(rho_begin, rho_end)`, each from the best point so far, with
/// at most `max_fun_per_parameter` evaluations per parameter per run; with `restart_after_convergence` false,
/// a run after one that converged is not made (a restart then only rescues a run that stopped short).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule<'a> {
    pub runs: &'a [(f64, f64)],
    pub max_fun_per_parameter: usize,
    pub restart_after_convergence: bool,
}

/// Minimizes `f` from `x` (updated in place) with lower bounds `lower` (no upper bounds) by the runs of
/// `schedule`. A run that does not improve on the best value so far is undone. Infinite values of `f` are
/// allowed (BOBYQA moderates them); a numerical failure is a bad value, not an abort.
pub(crate) fn minimize(
    mut f: impl FnMut(&[f64]) -> f64,
    x: &mut [f64],
    lower: &[f64],
    schedule: Schedule<'_>,
    parameters: OptParameters,
) -> Vec<OptRun> {
    let n = x.len();
    let upper = vec![f64::INFINITY; n];
    let mut best = f64::INFINITY;
    let mut runs = Vec::with_capacity(schedule.runs.len());
    for &(rho_begin, rho_end) in schedule.runs {
        if !schedule.restart_after_convergence
            && runs.last().is_some_and(|r: &OptRun| r.accepted && r.converged && r.objective.is_finite())
        {
            break;
        }
        let method = OptMethod::Bobyqa { rho_begin, rho_end };
        let mut cfg = Config::new(n);
        cfg.npt = if n == 1 { 3 } else { 2 * n + 1 };
        cfg.rho_begin = rho_begin;
        cfg.rho_end = rho_end;
        cfg.max_fun = schedule.max_fun_per_parameter * n.max(1);
        let mut solver = match Bobyqa::new(n, cfg) {
            Ok(s) => s,
            Err(status) => {
                runs.push(OptRun {
                    parameters,
                    method,
                    evaluations: 0,
                    objective: f64::INFINITY,
                    accepted: false,
                    converged: false,
                    status: status.to_string(),
                });
                break;
            }
        };
        let before = x.to_vec();
        let out = solver.minimize(&mut f, x, lower, &upper);
        let accepted = !(out.f.is_nan() || out.f > best);
        if accepted {
            best = out.f;
        } else {
            x.copy_from_slice(&before);
        }
        runs.push(OptRun {
            parameters,
            method,
            evaluations: out.n_eval,
            objective: out.f,
            accepted,
            converged: matches!(out.status, Status::Converged | Status::FtolReached),
            status: out.status.to_string(),
        });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A convex quadratic in two parameters with its minimum at (1, 2).
    fn bowl(x: &[f64]) -> f64 {
        (x[0] - 1.0).powi(2) + 3.0 * (x[1] - 2.0).powi(2) + 0.5 * (x[0] - 1.0) * (x[1] - 2.0)
    }

    /// Without `restart_after_convergence`, a converged run is not restarted, and a run stopped short (by its
    /// evaluation budget) is.
    #[test]
    fn restart_only_rescues_a_run_stopped_short() {
        let lower = [f64::NEG_INFINITY; 2];
        let runs: &[(f64, f64)] = &[(0.5, 1e-9), (1e-3, 1e-11)];
        let mut x = [0.0, 0.0];
        let converged = Schedule { runs, max_fun_per_parameter: 20_000, restart_after_convergence: false };
        let r = minimize(bowl, &mut x, &lower, converged, OptParameters::Theta);
        assert_eq!(r.len(), 1);
        assert!(r[0].converged);
        assert!((x[0] - 1.0).abs() < 1e-7 && (x[1] - 2.0).abs() < 1e-7, "{x:?}");
        let always = Schedule { restart_after_convergence: true, ..converged };
        assert_eq!(minimize(bowl, &mut [0.0, 0.0], &lower, always, OptParameters::Theta).len(), 2);
        // Four evaluations per parameter cannot converge: the restart runs.
        let short = Schedule { max_fun_per_parameter: 4, ..converged };
        let r = minimize(bowl, &mut [0.0, 0.0], &lower, short, OptParameters::Theta);
        assert!(!r[0].converged);
        assert_eq!(r.len(), 2);
    }
}
