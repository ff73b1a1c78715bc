//! Generalized linear mixed models for binary and binomial-count outcomes, fitted as lme4's `glmer` fits
//! them: the Laplace approximation (`nAGQ = 1`) or adaptive Gauss–Hermite quadrature (`nAGQ > 1`, one scalar
//! term) to the marginal likelihood, evaluated by penalized iteratively reweighted least squares (PIRLS) on
//! the spherical random effects `u` (`b = Λ u`, `u ~ N(0, I)`), and glmer's two-stage optimization: first θ
//! alone with β updated inside PIRLS (glmer's `nAGQ = 0` stage), then (θ, β) jointly with BOBYQA.
//!
//! One grouping factor with a scalar or vector term is supported: the penalized system is block diagonal
//! (one q × q block per level), so a PIRLS evaluation costs O(n·q² + groups·q³). Several grouping factors
//! give [`GlmmError::NotYetSupported`].
//!
//! Likelihood scales. [`GlmmFit::log_likelihood`] is always the full marginal log-likelihood,
//! `log ∫ Π_i Binomial(m_i y_i; m_i, μ_i(u)) φ(u) du`, including the binomial coefficients. glmer's Laplace
//! objective is on that scale (`aic()` + ‖u‖² + log|L|²), but glmer's `nAGQ > 1` objective replaces the
//! family's `aic()` by the sum of deviance residuals, dropping the constant
//! `C = -2 Σ_i [log choose(m_i, m_i y_i) + m_i (y_i log y_i + (1 - y_i) log(1 - y_i))]` (zero for 0/1 data);
//! glmer's `logLik()` is minus half its objective. [`GlmmFit::criterion`] holds glmer's objective value and
//! [`GlmmFit::glmer_log_likelihood`] glmer's `logLik()`, so both conventions are available.
//!
//! The BOBYQA wrapper here duplicates a few lines of the linear model's `optim.rs` on purpose (that API was
//! not final when this was written); the two can be unified later.

use std::collections::BTreeMap;

use bobyqa::{Bobyqa, Config, Status};
use psmeval_frame::ModelFrame;
use rayon::prelude::*;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::gamma::ln_gamma;
use thiserror::Error;

use crate::dense::{chol_inverse, chol_solve, cholesky};
/// A correlation between two columns of a random term (the same type as the linear models').
pub use crate::fit::Correlation;

/// The response distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Binomial proportions with the totals as prior weights (Bernoulli when the weights are 1).
    Binomial,
}

/// The link function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// `log(μ / (1 - μ))`.
    Logit,
}

/// Options of [`fit_glmm`].
#[derive(Debug, Clone, PartialEq)]
pub struct GlmmOptions {
    /// Quadrature points: 1 is the Laplace approximation (default); more needs one scalar random term.
    pub nagq: usize,
    /// Prior weights (binomial totals for proportions); `None` means all 1 (Bernoulli).
    pub weights: Option<Vec<f64>>,
    /// Whether fixed-effect standard errors come from the finite-difference Hessian of the objective in
    /// (θ, β), as glmer's default `vcov(use.hessian = TRUE)` (default `true`), or from `R_X` (`false`).
    pub use_hessian: bool,
}

impl Default for GlmmOptions {
    fn default() -> Self {
        GlmmOptions { nagq: 1, weights: None, use_hessian: true }
    }
}

/// A generalized linear mixed model could not be fitted.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum GlmmError {
    /// The frame has no rows.
    #[error("no observations")]
    NoObservations,
    /// A Bernoulli response (no weights) outside {0, 1}.
    #[error("row {row}: response {value} is not 0 or 1 (give binomial totals as weights for proportions)")]
    ResponseNotBinary {
        /// 0-based row of the frame.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A proportion outside [0, 1].
    #[error("row {row}: proportion {value} is outside [0, 1]")]
    ProportionOutOfRange {
        /// 0-based row of the frame.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A prior weight that is not positive and finite.
    #[error("row {row}: weight {value} is not positive")]
    NonPositiveWeight {
        /// 0-based row of the frame.
        row: usize,
        /// The value.
        value: f64,
    },
    /// The weights do not match the rows.
    #[error("{weights} weights for {rows} rows")]
    WeightLength {
        /// Number of weights.
        weights: usize,
        /// Number of rows.
        rows: usize,
    },
    /// A model shape this module does not fit yet.
    #[error("not yet supported: {what}")]
    NotYetSupported {
        /// What.
        what: String,
    },
    /// The response is all 0 or all 1: every fixed effect runs off (complete separation).
    #[error("complete separation: every response is {value}")]
    CompleteSeparation {
        /// The common value.
        value: f64,
    },
    /// The fixed-effects matrix is rank deficient.
    #[error("fixed-effects matrix is rank deficient at column `{column}`")]
    RankDeficient {
        /// The first dependent column.
        column: String,
    },
    /// The objective could not be evaluated at the start.
    #[error("the deviance is not finite at the starting values")]
    NonFiniteStart,
}

/// One fixed effect with its Wald z test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixedEffect {
    /// Column name as R prints it.
    pub term: String,
    /// Estimate on the link scale.
    pub estimate: f64,
    /// Standard error.
    pub std_error: f64,
    /// `estimate / std_error`.
    pub z_value: f64,
    /// Two-sided normal p-value.
    pub p_value: f64,
    /// `exp(estimate)`: the odds ratio for the logit link.
    pub odds_ratio: f64,
}

/// One variance component (`σ² = 1` for the binomial family, so Λ Λ' is the covariance of `b`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RandomEffect {
    /// Grouping factor.
    pub group: String,
    /// Term column name.
    pub term: String,
    /// Variance.
    pub variance: f64,
    /// Standard deviation.
    pub std_dev: f64,
}

/// Conditional modes of one level of the grouping factor (glmer's `ranef(condVar = TRUE)`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionalMode {
    /// Level label.
    pub level: String,
    /// Conditional modes `b`, one per term column.
    pub modes: Vec<f64>,
    /// Conditional standard deviations (square roots of the diagonal of `Λ (L L')⁻¹ Λ'`).
    pub cond_sd: Vec<f64>,
}

/// Conditional modes of a random term.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RanefTerm {
    /// Grouping factor.
    pub group: String,
    /// Term column names.
    pub terms: Vec<String>,
    /// One entry per level.
    pub levels: Vec<ConditionalMode>,
}

/// Diagnostics of a fit: never errors, reported alongside the estimates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GlmmDiagnostics {
    /// Levels whose responses are all 0 or all 1 (perfectly separated groups): their conditional modes sit
    /// far in the tail and are held only by the random-effects prior.
    pub separated_groups: Vec<String>,
    /// Levels whose PIRLS did not converge at the optimum.
    pub pirls_not_converged: Vec<String>,
    /// The optimizer's final status.
    pub optimizer_status: String,
    /// Whether the finite-difference Hessian was not positive definite (SEs then come from `R_X`).
    pub hessian_not_positive_definite: bool,
    /// Observations whose fitted probability is within 10 ε of 0 or 1 (glm's "fitted probabilities
    /// numerically 0 or 1 occurred"): a sign of separation by a covariate; its coefficient and SE are then
    /// unreliable.
    pub fitted_probabilities_0_or_1: usize,
}

/// A fitted generalized linear mixed model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GlmmFit {
    /// Observations.
    pub n_obs: usize,
    /// Grouping factor name → number of levels.
    pub groups: BTreeMap<String, usize>,
    /// Family.
    pub family: Family,
    /// Link.
    pub link: Link,
    /// Quadrature points (1 = Laplace).
    pub nagq: usize,
    /// Full marginal log-likelihood (see the module docs for its relation to glmer's).
    pub log_likelihood: f64,
    /// glmer's `logLik()`: equal to `log_likelihood` for Laplace, `log_likelihood + C/2` for `nAGQ > 1`.
    pub glmer_log_likelihood: f64,
    /// glmer's `deviance()`: the sum of squared deviance residuals at the conditional modes.
    pub deviance: f64,
    /// The objective glmer minimizes, at the optimum (`-2 glmer_log_likelihood`).
    pub criterion: f64,
    /// `-2 log_likelihood + 2 k` (k = θ length + β length).
    pub aic: f64,
    /// `-2 log_likelihood + k log n`.
    pub bic: f64,
    /// Fixed effects.
    pub fixed_effects: Vec<FixedEffect>,
    /// Whether `std_error` comes from the finite-difference Hessian (else from `R_X`).
    pub se_from_hessian: bool,
    /// Covariance of β̂ (p × p, row-major) from the same source as `std_error`, for Wald tests of contrasts.
    pub vcov: Vec<f64>,
    /// Variance components.
    pub random_effects: Vec<RandomEffect>,
    /// Correlations of a vector term.
    pub correlations: Vec<Correlation>,
    /// Relative covariance factor parameters (lower triangle of Λ by columns).
    pub theta: Vec<f64>,
    /// Fixed-effect estimates.
    pub beta: Vec<f64>,
    /// Whether the optimizer converged.
    pub converged: bool,
    /// Whether a diagonal element of Λ is (nearly) zero.
    pub singular: bool,
    /// Objective evaluations over both stages.
    pub iterations: usize,
    /// Conditional modes and SDs.
    pub ranef: Vec<RanefTerm>,
    /// Diagnostics.
    pub diagnostics: GlmmDiagnostics,
    /// Fixed-effects columns dropped because they were aliased (rank-deficient X).
    pub dropped_columns: Vec<String>,
}

/// Data laid out by group: rows of level `g` are `starts[g]..starts[g + 1]`.
#[derive(Debug)]
struct Problem {
    n: usize,
    p: usize,
    q: usize,
    /// n × p, row-major, sorted by group.
    x: Vec<f64>,
    /// The same X blocked by group, each block column-major (the rows of level `g` and column `k` are
    /// `xg[starts[g] * p + k * n_g..][..n_g]`), so `X β` of one level is a few contiguous vector updates.
    xg: Vec<f64>,
    /// n × q, row-major, sorted by group.
    z: Vec<f64>,
    y: Vec<f64>,
    w: Vec<f64>,
    /// `y log y + (1 - y) log(1 - y)` per row (0 for 0/1 responses).
    sat: Vec<f64>,
    starts: Vec<usize>,
    /// −2 × the saturated log-likelihood (with binomial coefficients): glmer's `aic()` minus deviance.
    c_const: f64,
}

/// One evaluation of a group's penalized deviance with its Newton system.
#[derive(Debug, Clone)]
struct GroupSystem {
    pdev: f64,
    dev: f64,
    grad: Vec<f64>,
    a: Vec<f64>,
}

/// Per-group result of the inner optimization at fixed (θ, β).
#[derive(Debug, Clone)]
struct GroupMode {
    u: Vec<f64>,
    /// Σ deviance residuals of the group.
    dev: f64,
    /// log |L_g|².
    ld: f64,
    /// The factor L_g (q × q, row-major lower triangle).
    l: Vec<f64>,
    converged: bool,
}

fn logistic(eta: f64) -> f64 {
    if eta >= 0.0 {
        1.0 / (1.0 + (-eta).exp())
    } else {
        let e = eta.exp();
        e / (1.0 + e)
    }
}

/// μ and the deviance residual `2 w [sat - y η + log(1 + e^η)]` from η with one `exp` and one `ln`
/// (`ln(1 + e)` with `e = exp(-|η|) ≤ 1` is exact to ~1e-16 absolute, all a deviance needs, and a plain `ln`
/// costs about half of `ln_1p`, the largest cost of a fit).
fn mu_dev(eta: f64, y: f64, w: f64, sat: f64) -> (f64, f64) {
    let e = (-eta.abs()).exp();
    let mu = if eta >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
    let softplus = eta.max(0.0) + (1.0 + e).ln();
    (mu, 2.0 * w * (sat - y * eta + softplus))
}

/// Λ (q × q, row-major lower triangular) from θ (lower triangle by columns).
fn lambda(theta: &[f64], q: usize) -> Vec<f64> {
    let mut lam = vec![0.0; q * q];
    let mut t = 0;
    for j in 0..q {
        for i in j..q {
            lam[i * q + j] = theta[t];
            t += 1;
        }
    }
    lam
}

impl Problem {
    /// `Λ' z_i` for row `i`.
    fn zl(&self, lam: &[f64], i: usize, out: &mut [f64]) {
        let q = self.q;
        for (a, o) in out.iter_mut().enumerate() {
            *o = (0..q).map(|r| lam[r * q + a] * self.z[i * q + r]).sum();
        }
    }

    /// `X β` for the rows of level `g` into `out` (length n_g), summed over columns in order.
    fn group_offset(&self, beta: &[f64], g: usize, out: &mut [f64]) {
        let (lo, len) = (self.starts[g], self.starts[g + 1] - self.starts[g]);
        out.iter_mut().for_each(|o| *o = 0.0);
        let block = &self.xg[lo * self.p..(lo + len) * self.p];
        for (col, &b) in block.chunks_exact(len.max(1)).zip(beta) {
            out.iter_mut().zip(col).for_each(|(o, &x)| *o += x * b);
        }
    }

    /// `X β` for all rows (in parallel over levels; each row's sum in column order whatever the threads).
    fn eta_fixed(&self, beta: &[f64]) -> Vec<f64> {
        let mut off = vec![0.0; self.n];
        let mut parts = Vec::with_capacity(self.n_groups());
        let mut rest = off.as_mut_slice();
        for g in 0..self.n_groups() {
            let (head, tail) = rest.split_at_mut(self.starts[g + 1] - self.starts[g]);
            parts.push((g, head));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(g, out)| self.group_offset(beta, g, out));
        off
    }

    /// Penalized deviance, deviance, gradient `Σ λ z_i w_i (y_i - μ_i) - u` and `1 + Σ w_i μ_i (1 - μ_i)
    /// (λ z_i)²` of level `g` at `u`, for a scalar term (`off` holds the level's rows of X β).
    fn scalar_system(&self, lam: f64, off: &[f64], g: usize, u: f64) -> (f64, f64, f64, f64) {
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
    fn scalar_mode(&self, lam: f64, off: &[f64], g: usize, start: f64) -> GroupMode {
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

    /// Gradient in (θ, β) of the Laplace objective of a scalar term at the modes (implicit differentiation
    /// of the mode equation; the penalized deviance is stationary in `u` there). Summed in level order.
    fn laplace_gradient(&self, theta: f64, beta: &[f64], modes: &[GroupMode]) -> Vec<f64> {
        let p = self.p;
        let parts: Vec<Vec<f64>> = (0..self.n_groups())
            .into_par_iter()
            .map(|g| {
                let rows = self.starts[g]..self.starts[g + 1];
                let mut off = vec![0.0; rows.len()];
                self.group_offset(beta, g, &mut off);
                let u = modes[g].u[0];
                let (mut sxr, mut sxw1, mut sxw) = (vec![0.0; p], vec![0.0; p], vec![0.0; p]);
                let (mut s_rz, mut s_wz2, mut s_w1zl3, mut s_w1zl2z, mut s_wzlz, mut a) =
                    (0.0, 0.0, 0.0, 0.0, 0.0, 1.0);
                for (r, i) in rows.enumerate() {
                    let z = self.z[i];
                    let zl = theta * z;
                    let mu = logistic(off[r] + zl * u);
                    let wt = self.w[i] * mu * (1.0 - mu);
                    let w1 = wt * (1.0 - 2.0 * mu);
                    let res = self.w[i] * (self.y[i] - mu);
                    let xi = &self.x[i * p..(i + 1) * p];
                    let (c1, c2) = (w1 * zl * zl, wt * zl);
                    for k in 0..p {
                        sxr[k] += res * xi[k];
                        sxw1[k] += c1 * xi[k];
                        sxw[k] += c2 * xi[k];
                    }
                    s_rz += res * z;
                    s_wz2 += wt * z * z;
                    s_w1zl3 += c1 * zl;
                    s_w1zl2z += c1 * z;
                    s_wzlz += c2 * z;
                    a += c2 * zl;
                }
                let mut out = Vec::with_capacity(p + 1);
                let du_dth = (s_rz - u * s_wzlz) / a;
                out.push(-2.0 * u * s_rz + (2.0 * theta * s_wz2 + u * s_w1zl2z + s_w1zl3 * du_dth) / a);
                for k in 0..p {
                    out.push(-2.0 * sxr[k] + (sxw1[k] - s_w1zl3 * sxw[k] / a) / a);
                }
                out
            })
            .collect();
        let mut grad = vec![0.0; p + 1];
        for part in &parts {
            grad.iter_mut().zip(part).for_each(|(s, v)| *s += v);
        }
        grad
    }

    /// Penalized deviance of group `g` at `u` (Σ deviance residuals + ‖u‖²) and its deviance part.
    fn group_pdev(&self, lam: &[f64], off: &[f64], g: usize, u: &[f64]) -> (f64, f64) {
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
    fn group_system(&self, lam: &[f64], off: &[f64], g: usize, u: &[f64]) -> GroupSystem {
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
    fn group_mode(&self, lam: &[f64], off: &[f64], g: usize, start: &[f64]) -> GroupMode {
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

    fn n_groups(&self) -> usize {
        self.starts.len() - 1
    }

    /// Conditional modes of every group at (θ, β), warm-started from `start`.
    fn modes(&self, theta: &[f64], beta: &[f64], start: &[Vec<f64>]) -> Vec<GroupMode> {
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

    /// glmer's objective at (θ, β) given the modes: Laplace (`aic` form) or AGQ (deviance-residual form).
    fn objective(&self, theta: &[f64], beta: &[f64], modes: &[GroupMode], rule: &GhRule) -> f64 {
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

/// A Gauss–Hermite rule for the standard normal density: nodes `z` and weights `w` summing to 1.
#[derive(Debug, Clone)]
struct GhRule {
    z: Vec<f64>,
    w: Vec<f64>,
}

impl GhRule {
    /// Golub–Welsch on the probabilists' Hermite recurrence (Jacobi matrix with off-diagonal √k).
    fn new(k: usize) -> GhRule {
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

/// Joint PIRLS over (u, β) at fixed θ (glmer's `nAGQ = 0` stage): returns β, the modes and the Laplace
/// objective. Also returns `R_X'R_X` (the Schur complement) at the end point.
fn joint_pirls(pr: &Problem, theta: &[f64], beta0: &[f64], u0: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>, f64) {
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

/// Per-group factors, and the Schur complement `X'WX - Σ B_g' A_g⁻¹ B_g` with its right-hand side.
#[allow(clippy::type_complexity)]
fn schur_system(
    pr: &Problem,
    lam: &[f64],
    off: &[f64],
    u: &[Vec<f64>],
) -> (Vec<f64>, Vec<f64>, Vec<(Vec<f64>, Vec<f64>, Vec<f64>)>) {
    let (p, q) = (pr.p, pr.q);
    let parts: Vec<(Vec<f64>, Vec<f64>, (Vec<f64>, Vec<f64>, Vec<f64>))> = (0..pr.n_groups())
        .into_par_iter()
        .map(|g| {
            let mut zl = vec![0.0; q];
            let mut a = vec![0.0; q * q];
            for d in 0..q {
                a[d * q + d] = 1.0;
            }
            let mut gu: Vec<f64> = u[g].iter().map(|v| -v).collect();
            let mut b = vec![0.0; q * p];
            let mut c = vec![0.0; p * p];
            let mut gb = vec![0.0; p];
            let rows = pr.starts[g]..pr.starts[g + 1];
            for (i, &o) in rows.clone().zip(&off[rows]) {
                pr.zl(lam, i, &mut zl);
                let eta = o + zl.iter().zip(&u[g]).map(|(a, b)| a * b).sum::<f64>();
                let mu = logistic(eta);
                let wt = pr.w[i] * mu * (1.0 - mu);
                let r = pr.w[i] * (pr.y[i] - mu);
                let xi = &pr.x[i * p..(i + 1) * p];
                for cc in 0..q {
                    gu[cc] += zl[cc] * r;
                    for d in 0..q {
                        a[cc * q + d] += wt * zl[cc] * zl[d];
                    }
                    for k in 0..p {
                        b[cc * p + k] += wt * zl[cc] * xi[k];
                    }
                }
                // Lower triangle only (the Cholesky reads no more); mirrored below.
                for k in 0..p {
                    gb[k] += xi[k] * r;
                    let wx = wt * xi[k];
                    for (cm, &xm) in c[k * p..k * p + k + 1].iter_mut().zip(xi) {
                        *cm += wx * xm;
                    }
                }
            }
            let ok = cholesky(&mut a, q);
            if !ok {
                a.iter_mut().for_each(|v| *v = f64::NAN);
            }
            // Subtract B' A⁻¹ B and B' A⁻¹ g_u.
            let mut ainv_b = b.clone();
            for k in 0..p {
                let mut col: Vec<f64> = (0..q).map(|cc| b[cc * p + k]).collect();
                chol_solve(&a, q, &mut col);
                for cc in 0..q {
                    ainv_b[cc * p + k] = col[cc];
                }
            }
            for k in 0..p {
                for m in 0..=k {
                    c[k * p + m] -= (0..q).map(|cc| b[cc * p + k] * ainv_b[cc * p + m]).sum::<f64>();
                    c[m * p + k] = c[k * p + m];
                }
                gb[k] -= (0..q).map(|cc| ainv_b[cc * p + k] * gu[cc]).sum::<f64>();
            }
            (c, gb, (a, gu, b))
        })
        .collect();
    let mut schur = vec![0.0; p * p];
    let mut rhs = vec![0.0; p];
    let mut blocks = Vec::with_capacity(parts.len());
    for (c, gb, blk) in parts {
        schur.iter_mut().zip(&c).for_each(|(s, c)| *s += c);
        rhs.iter_mut().zip(&gb).for_each(|(s, c)| *s += c);
        blocks.push(blk);
    }
    (schur, rhs, blocks)
}

/// BOBYQA from `x` (updated in place) with lower bounds; returns (evaluations, status).
fn bobyqa_min(mut f: impl FnMut(&[f64]) -> f64, x: &mut [f64], lower: &[f64], runs: &[(f64, f64)]) -> (usize, Status) {
    let n = x.len();
    let upper = vec![f64::INFINITY; n];
    let mut evals = 0;
    let mut status = Status::InvalidArgs;
    let mut best = f64::INFINITY;
    for &(rb, re) in runs {
        let mut cfg = Config::new(n);
        cfg.npt = if n == 1 { 3 } else { 2 * n + 1 };
        cfg.rho_begin = rb;
        cfg.rho_end = re;
        cfg.max_fun = 10_000 * n;
        let Ok(mut solver) = Bobyqa::new(n, cfg) else { break };
        let before = x.to_vec();
        let out = solver.minimize(&mut f, x, lower, &upper);
        evals += out.n_eval;
        if out.f.is_nan() || out.f > best {
            x.copy_from_slice(&before);
        } else {
            best = out.f;
            status = out.status;
        }
    }
    (evals, status)
}

/// Newton steps on (θ, β) for a Laplace fit with a scalar term, from the BOBYQA solution `par` (updated in
/// place with the warm-start modes `u_warm`), using the analytic gradient and the Hessian `h`. Returns the
/// number of objective evaluations, or `None` (with `par` and `u_warm` untouched) if the first step is not
/// usable: `h` not positive definite, θ would go negative, or the objective does not decrease.
fn newton_polish(
    pr: &Problem,
    h: &[f64],
    par: &mut [f64],
    u_warm: &mut Vec<Vec<f64>>,
    eval: &mut impl FnMut(&[f64], &mut Vec<Vec<f64>>) -> f64,
) -> Option<usize> {
    let k = par.len();
    let mut l = h.to_vec();
    if !cholesky(&mut l, k) {
        return None;
    }
    let mut u_cur = u_warm.clone();
    let mut f_cur = eval(par, &mut u_cur);
    let mut evals = 1;
    if !f_cur.is_finite() {
        return None;
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
        return None;
    }
    par.copy_from_slice(&x);
    *u_warm = u_cur;
    Some(evals)
}

/// Symmetrized central finite-difference Jacobian of the gradient `g` at `x` with step `delta`: a Hessian
/// from 2k gradient evaluations (each column independent, so they run in parallel; the result does not
/// depend on the thread count).
fn fd_jacobian(g: &(impl Fn(&[f64]) -> Vec<f64> + Sync), x: &[f64], delta: f64) -> Vec<f64> {
    let k = x.len();
    let cols: Vec<Vec<f64>> = (0..k)
        .into_par_iter()
        .map(|j| {
            let mut v = x.to_vec();
            v[j] = x[j] + delta;
            let ga = g(&v);
            v[j] = x[j] - delta;
            let gs = g(&v);
            ga.iter().zip(&gs).map(|(a, s)| (a - s) / (2.0 * delta)).collect()
        })
        .collect();
    let mut h = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            h[i * k + j] = 0.5 * (cols[j][i] + cols[i][j]);
        }
    }
    h
}

/// Central finite-difference Hessian of `f` at `x` with step `delta` (as lme4's `deriv12`).
fn fd_hessian(f: &mut impl FnMut(&[f64]) -> f64, x: &[f64], delta: f64) -> Vec<f64> {
    let k = x.len();
    let fx = f(x);
    let mut h = vec![0.0; k * k];
    let at = |f: &mut dyn FnMut(&[f64]) -> f64, d: &[(usize, f64)]| {
        let mut v = x.to_vec();
        for &(i, s) in d {
            v[i] += s;
        }
        f(&v)
    };
    for j in 0..k {
        let fa = at(f, &[(j, delta)]);
        let fs = at(f, &[(j, -delta)]);
        h[j * k + j] = (fa - 2.0 * fx + fs) / (delta * delta);
        for i in 0..j {
            let v = (at(f, &[(i, delta), (j, delta)])
                - at(f, &[(i, delta), (j, -delta)])
                - at(f, &[(i, -delta), (j, delta)])
                + at(f, &[(i, -delta), (j, -delta)]))
                / (4.0 * delta * delta);
            h[i * k + j] = v;
            h[j * k + i] = v;
        }
    }
    h
}

/// Validates the frame and lays out the data by group.
fn problem(frame: &ModelFrame, opts: &GlmmOptions) -> Result<(Problem, Vec<usize>), GlmmError> {
    let n = frame.y.len();
    if n == 0 {
        return Err(GlmmError::NoObservations);
    }
    match frame.random.len() {
        1 => {}
        0 => return Err(GlmmError::NotYetSupported { what: "a GLMM needs a random-effects term".into() }),
        k => return Err(GlmmError::NotYetSupported { what: format!("{k} random-effects terms (one is supported)") }),
    }
    let w = match &opts.weights {
        Some(w) if w.len() != n => return Err(GlmmError::WeightLength { weights: w.len(), rows: n }),
        Some(w) => w.clone(),
        None => vec![1.0; n],
    };
    for (i, (&y, &wi)) in frame.y.iter().zip(&w).enumerate() {
        if !(wi > 0.0 && wi.is_finite()) {
            return Err(GlmmError::NonPositiveWeight { row: i, value: wi });
        }
        if opts.weights.is_none() && y != 0.0 && y != 1.0 {
            return Err(GlmmError::ResponseNotBinary { row: i, value: y });
        }
        if !(0.0..=1.0).contains(&y) {
            return Err(GlmmError::ProportionOutOfRange { row: i, value: y });
        }
    }
    if frame.y.iter().all(|&y| y == 0.0) || frame.y.iter().all(|&y| y == 1.0) {
        return Err(GlmmError::CompleteSeparation { value: frame.y[0] });
    }
    let term = &frame.random[0];
    if opts.nagq > 1 && term.z.ncols() != 1 {
        return Err(GlmmError::NotYetSupported { what: "adaptive quadrature with a vector random term".into() });
    }
    let (p, q) = (frame.x.ncols(), term.z.ncols());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| term.codes[i]);
    let n_levels = term.levels.len();
    let mut starts = vec![0usize; n_levels + 1];
    for &c in &term.codes {
        starts[c as usize + 1] += 1;
    }
    for g in 0..n_levels {
        starts[g + 1] += starts[g];
    }
    let x: Vec<f64> = order.iter().flat_map(|&i| frame.x.row(i).to_vec()).collect();
    let z: Vec<f64> = order.iter().flat_map(|&i| term.z.row(i).to_vec()).collect();
    let y: Vec<f64> = order.iter().map(|&i| frame.y[i]).collect();
    let w: Vec<f64> = order.iter().map(|&i| w[i]).collect();
    let sat: Vec<f64> = y
        .iter()
        .map(|&y| if y > 0.0 { y * y.ln() } else { 0.0 } + if y < 1.0 { (1.0 - y) * (1.0 - y).ln() } else { 0.0 })
        .collect();
    let c_const = -2.0
        * y.iter()
            .zip(&w)
            .map(|(&y, &m)| {
                let s = (m * y).round();
                let mr = m.round();
                let lchoose = ln_gamma(mr + 1.0) - ln_gamma(s + 1.0) - ln_gamma(mr - s + 1.0);
                let sat =
                    if y > 0.0 { y * y.ln() } else { 0.0 } + if y < 1.0 { (1.0 - y) * (1.0 - y).ln() } else { 0.0 };
                lchoose + m * sat
            })
            .sum::<f64>();
    // Rank check on X'X.
    let mut xtx = vec![0.0; p * p];
    for i in 0..n {
        for a in 0..p {
            for b in 0..p {
                xtx[a * p + b] += x[i * p + a] * x[i * p + b];
            }
        }
    }
    let scale: Vec<f64> = (0..p).map(|a| xtx[a * p + a].sqrt().max(1e-300)).collect();
    for a in 0..p {
        for b in 0..p {
            xtx[a * p + b] /= scale[a] * scale[b];
        }
    }
    for j in 0..p {
        let mut sub: Vec<f64> =
            (0..=j).flat_map(|a| (0..=j).map(move |b| (a, b))).map(|(a, b)| xtx[a * p + b]).collect();
        if !cholesky(&mut sub, j + 1) || sub[j * (j + 1) + j].powi(2) < 1e-10 {
            return Err(GlmmError::RankDeficient { column: frame.x_names[j].clone() });
        }
    }
    let mut xg = vec![0.0; n * p];
    for g in 0..n_levels {
        let (lo, len) = (starts[g], starts[g + 1] - starts[g]);
        for r in 0..len {
            for k in 0..p {
                xg[lo * p + k * len + r] = x[(lo + r) * p + k];
            }
        }
    }
    Ok((Problem { n, p, q, x, xg, z, y, w, sat, starts, c_const }, order))
}

/// Fits a binomial GLMM (logit link) with one random-effects term, as glmer does. Fixed-effects columns that
/// are linear combinations of earlier columns are dropped first, as glmer does, and named in `dropped_columns`.
pub fn fit_glmm(frame: &ModelFrame, opts: &GlmmOptions) -> Result<GlmmFit, GlmmError> {
    let aliased = if frame.x.iter().all(|v| v.is_finite()) { frame.aliased_columns() } else { Vec::new() };
    if aliased.is_empty() || aliased.len() == frame.x.ncols() {
        return fit_full_rank(frame, opts);
    }
    let mut fit = fit_full_rank(&frame.without_columns(&aliased), opts)?;
    fit.dropped_columns = aliased.iter().map(|&j| frame.x_names[j].clone()).collect();
    Ok(fit)
}

fn fit_full_rank(frame: &ModelFrame, opts: &GlmmOptions) -> Result<GlmmFit, GlmmError> {
    let (pr, _order) = problem(frame, opts)?;
    let (p, q) = (pr.p, pr.q);
    let nth = q * (q + 1) / 2;
    let term = &frame.random[0];
    let rule = GhRule::new(opts.nagq.max(1));
    let mut theta: Vec<f64> = (0..q).flat_map(|j| (j..q).map(move |i| if i == j { 1.0 } else { 0.0 })).collect();
    let th_lower: Vec<f64> =
        (0..q).flat_map(|j| (j..q).map(move |i| if i == j { 0.0 } else { f64::NEG_INFINITY })).collect();
    let zero_u = vec![vec![0.0; q]; pr.n_groups()];
    // Stage 1: θ only, with β and u from joint PIRLS.
    let (b0, u0, obj0) = joint_pirls(&pr, &theta, &vec![0.0; p], &zero_u);
    if !obj0.is_finite() {
        return Err(GlmmError::NonFiniteStart);
    }
    let mut warm = (b0, u0);
    let (ev1, _) = bobyqa_min(
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
        &[(0.2, 1e-2)],
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
    // Laplace with a scalar term: polish with Newton steps on the analytic gradient instead of a second
    // BOBYQA run; the gradient-based Hessian they use is the one the standard errors need.
    let runs: &[(f64, f64)] = if laplace_scalar { &[(0.1, 1e-8)] } else { &[(0.1, 1e-8), (1e-3, 1e-10)] };
    let (mut ev2, mut status) = bobyqa_min(|x: &[f64]| eval(x, &mut u_warm), &mut par, &lower, runs);
    let mut h_polish = None;
    if laplace_scalar {
        let u_start = u_warm.clone();
        let grad_at = |x: &[f64]| {
            let modes = pr.modes(&x[..1], &x[1..], &u_start);
            pr.laplace_gradient(x[0], &x[1..], &modes)
        };
        let h = fd_jacobian(&grad_at, &par, 1e-4);
        match newton_polish(&pr, &h, &mut par, &mut u_warm, &mut |x: &[f64], u: &mut Vec<Vec<f64>>| eval(x, u)) {
            Some(evals) => {
                ev2 += evals;
                h_polish = Some(h);
            }
            None => {
                let (ev, st) = bobyqa_min(|x: &[f64]| eval(x, &mut u_warm), &mut par, &lower, &[(1e-3, 1e-10)]);
                ev2 += ev;
                status = st;
            }
        }
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
        let h = if let Some(h) = h_polish {
            // Already computed for the Newton polish (at its start, a step of order 1e-8 away).
            h
        } else if laplace_scalar {
            // Central differences of the analytic gradient: 2k evaluations instead of deriv12's 2k²; the
            // same second derivatives to O(δ²).
            let grad_at = |x: &[f64]| {
                let modes = pr.modes(&x[..1], &x[1..], &u_hat);
                pr.laplace_gradient(x[0], &x[1..], &modes)
            };
            fd_jacobian(&grad_at, &par, 1e-4)
        } else {
            let mut u_h = u_hat.clone();
            fd_hessian(&mut |x: &[f64]| eval(x, &mut u_h), &par, 1e-4)
        };
        let kk = nth + p;
        let mut hh: Vec<f64> = h.iter().map(|v| v / 2.0).collect();
        if cholesky(&mut hh, kk) {
            let inv = chol_inverse(&hh, kk);
            (0..p).flat_map(|a| (0..p).map(move |b| (a, b))).map(|(a, b)| inv[(nth + a) * kk + nth + b]).collect()
        } else {
            hess_bad = true;
            v_rx.clone()
        }
    } else {
        v_rx.clone()
    };
    let normal = Normal::new(0.0, 1.0).expect("standard normal");
    let fixed_effects = (0..p)
        .map(|a| {
            let se = v[a * p + a].sqrt();
            let zv = beta[a] / se;
            FixedEffect {
                term: frame.x_names[a].clone(),
                estimate: beta[a],
                std_error: se,
                z_value: zv,
                p_value: 2.0 * normal.cdf(-zv.abs()),
                odds_ratio: beta[a].exp(),
            }
        })
        .collect();
    // Variance components: Σ = Λ Λ'.
    let cov = |a: usize, b: usize| (0..q).map(|m| lam[a * q + m] * lam[b * q + m]).sum::<f64>();
    let random_effects = (0..q)
        .map(|a| RandomEffect {
            group: term.group.clone(),
            term: term.names[a].clone(),
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
    let levels = modes
        .iter()
        .enumerate()
        .map(|(g, m)| {
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
            ConditionalMode { level: term.levels[g].clone(), modes: modes_b, cond_sd }
        })
        .collect();
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
    let converged = matches!(status, Status::Converged | Status::FtolReached) && criterion.is_finite();
    let singular = (0..q).any(|a| lam[a * q + a].abs() < 1e-4);
    Ok(GlmmFit {
        n_obs: pr.n,
        groups: BTreeMap::from([(term.group.clone(), term.levels.len())]),
        family: Family::Binomial,
        link: Link::Logit,
        nagq: opts.nagq.max(1),
        log_likelihood: -neg2ll / 2.0,
        glmer_log_likelihood: -criterion / 2.0,
        deviance: modes.iter().map(|m| m.dev).sum(),
        criterion,
        aic: neg2ll + 2.0 * k,
        bic: neg2ll + k * n.ln(),
        fixed_effects,
        se_from_hessian: opts.use_hessian && !hess_bad,
        vcov: v,
        random_effects,
        correlations,
        theta,
        beta,
        converged,
        singular,
        iterations: ev1 + ev2,
        ranef: vec![RanefTerm { group: term.group.clone(), terms: term.names.clone(), levels }],
        diagnostics: GlmmDiagnostics {
            separated_groups,
            pirls_not_converged,
            optimizer_status: status.to_string(),
            hessian_not_positive_definite: hess_bad,
            fitted_probabilities_0_or_1: numerically_0_or_1,
        },
        dropped_columns: Vec::new(),
    })
}
