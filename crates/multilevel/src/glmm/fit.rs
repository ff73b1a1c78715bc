//! The two-stage fit of a binomial GLMM as glmer's: stage 1 optimizes θ with β from joint PIRLS, stage 2
//! (θ, β) jointly (by Newton steps for a scalar Laplace fit, else BOBYQA), then standard errors, variance
//! components, conditional modes and diagnostics are assembled into a [`GlmmFit`].

use std::collections::BTreeMap;

use psmeval_frame::ModelFrame;

use super::hessian::{fd_hessian, fd_jacobian};
use super::multi::fit_multi;
use super::newton::{NewtonFailure, NewtonStage, newton_stage};
use super::pirls::joint_pirls;
use super::problem::{lambda, mu_dev, problem, validate};
use super::quadrature::GhRule;
use super::schur::schur_system;
use super::{GlmmDiagnostics, GlmmFit, GlmmOptions, Link};
use crate::dense::{chol_inverse, cholesky};
use crate::error::MixedModelError;
use crate::model::{Family, p_value_z};
use crate::optim::{OptMethod, OptParameters, OptRun, OptSummary, Schedule, minimize};
use crate::result::{ConditionalModes, Correlation, FixedEffect, VarianceComponent};

/// Maximum BOBYQA evaluations per parameter per run.
const MAX_FUN_PER_PARAMETER: usize = 10_000;

/// Fits a binomial GLMM (logit link) as glmer does: one random-effects term (Laplace or adaptive quadrature),
/// or several, nested or crossed (Laplace). Fixed-effects columns that
/// are linear combinations of earlier columns are dropped first, as glmer does, and named in
/// [`MixedModel::dropped_columns`](crate::MixedModel::dropped_columns).
pub fn fit_glmm(frame: &ModelFrame, opts: &GlmmOptions) -> Result<GlmmFit, MixedModelError> {
    validate(frame, opts)?;
    let aliased = frame.aliased_columns();
    if aliased.is_empty() || aliased.len() == frame.x.ncols() {
        return fit_full_rank(frame, opts);
    }
    let mut fit = fit_full_rank(&frame.without_columns(&aliased), opts)?;
    fit.dropped_columns = aliased.iter().map(|&j| frame.x_names[j].clone()).collect();
    Ok(fit)
}

/// The optimizer's record of a Newton second stage that converged.
pub(super) fn newton_run(stage: &NewtonStage) -> OptRun {
    OptRun {
        parameters: OptParameters::ThetaBeta,
        method: OptMethod::Newton,
        evaluations: stage.evaluations,
        objective: stage.objective,
        accepted: true,
        converged: true,
        status: format!(
            "Newton decrement {:.1e} {} after {} step{} ({} Hessian{})",
            stage.decrement,
            if stage.stalled { "when no step lowered the objective any more" } else { "below tolerance" },
            stage.steps,
            if stage.steps == 1 { "" } else { "s" },
            stage.hessians,
            if stage.hessians == 1 { "" } else { "s" }
        ),
    }
}

/// The optimizer's record of a Newton second stage that gave up (BOBYQA follows).
pub(super) fn newton_failed(why: NewtonFailure, evaluations: usize) -> OptRun {
    OptRun {
        parameters: OptParameters::ThetaBeta,
        method: OptMethod::Newton,
        evaluations,
        objective: f64::INFINITY,
        accepted: false,
        converged: false,
        status: format!("Newton steps given up ({}); BOBYQA used instead", why.describe()),
    }
}

/// The covariance of β̂ (p × p, row-major) from the Hessian `h` of the objective (−2 log L) in (θ, β) (k × k,
/// θ's `nth` entries first): the β block of (h/2)⁻¹; `None` when h/2 is not positive definite.
pub(super) fn vcov_from_hessian(h: &[f64], nth: usize, p: usize) -> Option<Vec<f64>> {
    let kk = nth + p;
    let mut hh: Vec<f64> = h.iter().map(|v| v / 2.0).collect();
    if !cholesky(&mut hh, kk) {
        return None;
    }
    let inv = chol_inverse(&hh, kk);
    Some((0..p).flat_map(|a| (0..p).map(move |b| (a, b))).map(|(a, b)| inv[(nth + a) * kk + nth + b]).collect())
}

/// The Wald z table of fixed effects `names` with estimates `beta` and covariance `v` (p × p, row-major).
pub(super) fn fixed_effect_rows(names: &[String], beta: &[f64], v: &[f64]) -> Vec<FixedEffect> {
    let p = beta.len();
    (0..p)
        .map(|a| {
            let se = v[a * p + a].sqrt();
            let zv = beta[a] / se;
            FixedEffect {
                term: names[a].clone(),
                estimate: beta[a],
                std_error: se,
                statistic: zv,
                df: None,
                p_value: p_value_z(zv),
            }
        })
        .collect()
}

/// The fit of a validated frame; X must have full column rank (else [`MixedModelError::RankDeficient`]).
fn fit_full_rank(frame: &ModelFrame, opts: &GlmmOptions) -> Result<GlmmFit, MixedModelError> {
    if frame.random.len() > 1 {
        return fit_multi(frame, opts);
    }
    let (pr, _order) = problem(frame, opts)?;
    let (p, q) = (pr.p, pr.q);
    let nth = q * (q + 1) / 2;
    let term = &frame.random[0];
    let rule = GhRule::new(opts.nagq.max(1));
    let theta_initial: Vec<f64> = (0..q).flat_map(|j| (j..q).map(move |i| if i == j { 1.0 } else { 0.0 })).collect();
    let mut theta = theta_initial.clone();
    let th_lower: Vec<f64> =
        (0..q).flat_map(|j| (j..q).map(move |i| if i == j { 0.0 } else { f64::NEG_INFINITY })).collect();
    let zero_u = vec![vec![0.0; q]; pr.n_groups()];
    // Stage 1: θ only, with β and u from joint PIRLS.
    let (b0, u0, obj0) = joint_pirls(&pr, &theta, &vec![0.0; p], &zero_u);
    if !obj0.is_finite() {
        return Err(MixedModelError::NonFiniteStart);
    }
    let mut warm = (b0, u0);
    let mut runs = minimize(
        |t: &[f64]| {
            let (b, u, obj) = joint_pirls(&pr, t, &warm.0, &warm.1);
            if obj.is_finite() {
                warm = (b, u);
                obj
            } else {
                f64::INFINITY
            }
        },
        &mut theta,
        &th_lower,
        // Stage 1 only supplies a start for stage 2, so a coarse tolerance suffices.
        Schedule {
            runs: &[(0.2, 1e-2)],
            max_fun_per_parameter: MAX_FUN_PER_PARAMETER,
            restart_after_convergence: true,
        },
        OptParameters::Theta,
    );
    let (beta1, u1, _) = joint_pirls(&pr, &theta, &warm.0, &warm.1);
    // Stage 2: (θ, β) jointly, u by PIRLS.
    let mut par: Vec<f64> = theta.iter().chain(&beta1).copied().collect();
    let lower: Vec<f64> = th_lower.iter().copied().chain(std::iter::repeat_n(f64::NEG_INFINITY, p)).collect();
    let mut u_warm = u1;
    let eval = |x: &[f64], u_warm: &mut Vec<Vec<f64>>| -> f64 {
        let modes = pr.modes(&x[..nth], &x[nth..], u_warm);
        let obj = pr.objective(&x[..nth], &x[nth..], &modes, &rule);
        if obj.is_finite() {
            *u_warm = modes.into_iter().map(|m| m.u).collect();
            obj
        } else {
            f64::INFINITY
        }
    };
    let laplace_scalar = q == 1 && rule.z.len() <= 1;
    // Laplace with a scalar term: Newton steps on the exact gradient from the first stage's solution, which
    // end at the optimum BOBYQA approaches (to its tolerance) with the Hessian the standard errors need;
    // BOBYQA if they fail. Otherwise (vector terms, quadrature) glmer's BOBYQA.
    let mut h_newton = None;
    if laplace_scalar {
        match newton_stage(&pr, &mut par, &mut u_warm) {
            Ok(stage) => {
                runs.push(newton_run(&stage));
                h_newton = Some(stage.hessian);
            }
            Err((why, evaluations)) => runs.push(newton_failed(why, evaluations)),
        }
    }
    if h_newton.is_none() {
        let schedule = Schedule {
            runs: &[(0.1, 1e-8), (1e-3, 1e-10)],
            max_fun_per_parameter: MAX_FUN_PER_PARAMETER,
            restart_after_convergence: true,
        };
        runs.extend(minimize(|x: &[f64]| eval(x, &mut u_warm), &mut par, &lower, schedule, OptParameters::ThetaBeta));
    }
    let (theta, beta) = (par[..nth].to_vec(), par[nth..].to_vec());
    let modes = pr.modes(&theta, &beta, &u_warm);
    let criterion = pr.objective(&theta, &beta, &modes, &rule);
    let laplace_c = if rule.z.len() <= 1 { 0.0 } else { pr.c_const };
    let neg2ll = criterion + laplace_c;
    let k = (nth + p) as f64;
    let n = pr.n as f64;
    // Standard errors: R_X, and the finite-difference Hessian of the objective in (θ, β).
    let lam = lambda(&theta, q);
    let off = pr.eta_fixed(&beta);
    let u_hat: Vec<Vec<f64>> = modes.iter().map(|m| m.u.clone()).collect();
    let (mut rx, _, _) = schur_system(&pr, &lam, &off, &u_hat);
    let rx_ok = cholesky(&mut rx, p);
    let v_rx = if rx_ok { chol_inverse(&rx, p) } else { vec![f64::NAN; p * p] };
    let mut hess_bad = false;
    let v = if opts.use_hessian {
        let h = if let Some(h) = h_newton {
            // Computed by the Newton stage at the optimum.
            h
        } else if laplace_scalar {
            // Central differences of the analytic gradient: 2k evaluations instead of deriv12's 2k²; the
            // same second derivatives to O(δ²).
            let grad_at = |x: &[f64], _: usize, _: Option<&()>| {
                let modes = pr.modes(&x[..1], &x[1..], &u_hat);
                (pr.laplace_gradient(x[0], &x[1..], &modes), ())
            };
            fd_jacobian(&grad_at, &par, 1e-4)
        } else {
            let mut u_h = u_hat.clone();
            fd_hessian(&mut |x: &[f64]| eval(x, &mut u_h), &par, 1e-4)
        };
        vcov_from_hessian(&h, nth, p).unwrap_or_else(|| {
            hess_bad = true;
            v_rx.clone()
        })
    } else {
        v_rx.clone()
    };
    let fixed_effects = fixed_effect_rows(&frame.x_names, &beta, &v);
    // Variance components: Σ = Λ Λ'.
    let cov = |a: usize, b: usize| (0..q).map(|m| lam[a * q + m] * lam[b * q + m]).sum::<f64>();
    let variance_components: Vec<VarianceComponent> = (0..q)
        .map(|a| VarianceComponent {
            group: term.group.clone(),
            term: Some(term.names[a].clone()),
            variance: cov(a, a),
            std_dev: cov(a, a).sqrt(),
        })
        .collect();
    let mut correlations = Vec::new();
    for a in 0..q {
        for b in a + 1..q {
            correlations.push(Correlation {
                group: term.group.clone(),
                term1: term.names[a].clone(),
                term2: term.names[b].clone(),
                correlation: cov(a, b) / (cov(a, a) * cov(b, b)).sqrt(),
            });
        }
    }
    let (mode_b, cond_sd): (Vec<Vec<f64>>, Vec<Vec<f64>>) = modes
        .iter()
        .map(|m| {
            let modes_b: Vec<f64> = (0..q).map(|a| (0..q).map(|c| lam[a * q + c] * m.u[c]).sum()).collect();
            let ainv = chol_inverse(&m.l, q);
            let cond_sd = (0..q)
                .map(|a| {
                    (0..q)
                        .flat_map(|c| (0..q).map(move |d| (c, d)))
                        .map(|(c, d)| lam[a * q + c] * ainv[c * q + d] * lam[a * q + d])
                        .sum::<f64>()
                        .sqrt()
                })
                .collect();
            (modes_b, cond_sd)
        })
        .unzip();
    let ranef = vec![ConditionalModes {
        group: term.group.clone(),
        terms: term.names.clone(),
        levels: term.levels.clone(),
        modes: mode_b,
        cond_sd,
    }];
    // glm's warning "fitted probabilities numerically 0 or 1 occurred": separation by a covariate shows as
    // fitted probabilities within 10 ε of 0 or 1 (with the conditional modes).
    let mut zl = vec![0.0; q];
    let mut numerically_0_or_1 = 0;
    for (g, m) in modes.iter().enumerate() {
        let rows = pr.starts[g]..pr.starts[g + 1];
        for (i, &o) in rows.clone().zip(&off[rows]) {
            pr.zl(&lam, i, &mut zl);
            let eta = o + zl.iter().zip(&m.u).map(|(a, b)| a * b).sum::<f64>();
            let mu = mu_dev(eta, pr.y[i], pr.w[i], pr.sat[i]).0;
            if !(10.0 * f64::EPSILON..=1.0 - 10.0 * f64::EPSILON).contains(&mu) {
                numerically_0_or_1 += 1;
            }
        }
    }
    let separated_groups = (0..pr.n_groups())
        .filter(|&g| {
            let ys = &pr.y[pr.starts[g]..pr.starts[g + 1]];
            ys.iter().all(|&y| y == 0.0) || ys.iter().all(|&y| y == 1.0)
        })
        .map(|g| term.levels[g].clone())
        .collect();
    let pirls_not_converged =
        modes.iter().enumerate().filter(|(_, m)| !m.converged).map(|(g, _)| term.levels[g].clone()).collect();
    let singular = (0..q).any(|a| lam[a * q + a].abs() < 1e-4);
    let optimizer = OptSummary::new(theta_initial, th_lower, theta.clone(), criterion, runs);
    // The latent-scale ICC of a random intercept: the logistic residual has variance π²/3.
    let icc = (q == 1 && term.names[0] == "(Intercept)").then(|| {
        let tau2 = variance_components[0].variance;
        tau2 / (tau2 + std::f64::consts::PI.powi(2) / 3.0)
    });
    Ok(GlmmFit {
        link: Link::Logit,
        nagq: opts.nagq.max(1),
        glmer_log_likelihood: -criterion / 2.0,
        deviance: modes.iter().map(|m| m.dev).sum(),
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
        groups: BTreeMap::from([(term.group.clone(), term.levels.len())]),
        theta,
        beta,
        vcov: v,
        fixed_effects,
        variance_components,
        correlations,
        ranef,
        log_likelihood: -neg2ll / 2.0,
        aic: neg2ll + 2.0 * k,
        bic: neg2ll + k * n.ln(),
        converged: optimizer.converged,
        singular,
        optimizer,
        icc,
        dropped_columns: Vec::new(),
    })
}
