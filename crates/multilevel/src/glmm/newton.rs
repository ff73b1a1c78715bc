//! glmer's second stage for a Laplace fit by Newton's method: (θ, β) jointly from the first stage's solution,
//! on the exact gradient of the objective with a Hessian from central differences of that gradient. It
//! reaches the optimum that BOBYQA approaches to its tolerance in a few steps (each a pass of PIRLS over the
//! data) where BOBYQA needs hundreds of objective evaluations, and ends with the Hessian at the optimum, the
//! one the standard errors need. The stage is generic over [`Laplace`]: one scalar term (`Problem`) or several
//! terms (`multi`).

use super::hessian::{fd_columns, fd_jacobian};
use super::pirls::GroupMode;
use super::problem::Problem;
use super::quadrature::GhRule;
use crate::dense::{chol_solve, cholesky};

/// What the Newton stage needs of a Laplace objective in `x` = (θ, β).
pub(super) trait Laplace: Sync {
    /// Where PIRLS starts (the conditional modes of a nearby point).
    type Start: Sync;
    /// The conditional modes at a point.
    type Modes;
    /// The objective at `x` with its modes, PIRLS from `start`.
    fn point(&self, x: &[f64], start: &Self::Start) -> (f64, Self::Modes);
    /// The modes at `x` for [`Laplace::gradient`] only, PIRLS from `start`, a prediction of them (within
    /// rounding of their Newton step): those of [`Laplace::point`], where an objective may leave out what only
    /// the objective needs.
    fn modes_at(&self, x: &[f64], start: &Self::Start) -> Self::Modes {
        self.point(x, start).1
    }
    /// The exact gradient at `x` given its modes (non-finite entries when it cannot be computed).
    fn gradient(&self, x: &[f64], modes: &Self::Modes) -> Vec<f64>;
    /// The start that the modes give.
    fn start_of(&self, modes: &Self::Modes) -> Self::Start;
    /// Reflects the columns of Λ whose diagonal entry is negative in `x` (the objective is unchanged when a
    /// column of Λ and the matching components of `u` change sign together), returning the start with those
    /// signs changed, or `None` when nothing was reflected.
    fn reflect(&self, x: &mut [f64], start: &Self::Start) -> Option<Self::Start>;
    /// Where PIRLS should start at the mirror image through `x` of a nearby point `x + δ` whose modes gave
    /// `plus`, when the modes at `x` gave `centre` (a central difference's second point): `2 centre − plus`
    /// is within O(δ²) of the modes there, so PIRLS needs a step fewer. `None`: start from `centre`.
    fn mirror(&self, _centre: &Self::Start, _plus: &Self::Start) -> Option<Self::Start> {
        None
    }
    /// Where PIRLS should start at `x + δe_j`, for each coordinate `j` of `x`, when the modes at `x` gave
    /// `centre`: the modes' first-order prediction, within O(δ²) of the modes there, so PIRLS needs a step
    /// fewer (as at the mirrored point). `None` for a coordinate (or an empty vector): start from `centre`.
    fn plus_starts(&self, _x: &[f64], _centre: &Self::Start, _delta: f64) -> Vec<Option<Self::Start>> {
        Vec::new()
    }
    /// The Hessian's fixed-effects block (the last `p` coordinates of `x`, p × p) without finite differences,
    /// when the objective has a cheap approximation of it. The first Hessian then takes only θ's columns by
    /// differences (2 nθ gradients instead of 2k), which is what Newton's steps need; the Hessian that ends
    /// the stage, and gives the standard errors, is always the full one.
    fn beta_block(&self, _x: &[f64], _modes: &Self::Modes) -> Option<Vec<f64>> {
        None
    }
}

impl Laplace for Problem {
    type Start = Vec<Vec<f64>>;
    type Modes = Vec<GroupMode>;
    fn point(&self, x: &[f64], start: &Vec<Vec<f64>>) -> (f64, Vec<GroupMode>) {
        let modes = self.modes(&x[..1], &x[1..], start);
        (self.objective(&x[..1], &x[1..], &modes, &GhRule::new(1)), modes)
    }
    fn gradient(&self, x: &[f64], modes: &Vec<GroupMode>) -> Vec<f64> {
        self.laplace_gradient(x[0], &x[1..], modes)
    }
    fn start_of(&self, modes: &Vec<GroupMode>) -> Vec<Vec<f64>> {
        modes.iter().map(|m| m.u.clone()).collect()
    }
    fn reflect(&self, x: &mut [f64], start: &Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
        // The objective depends on θ only through θ² (b = θu with u standard normal).
        (x[0] < 0.0).then(|| {
            x[0] = x[0].abs();
            start.iter().map(|u| vec![-u[0]]).collect()
        })
    }
}

/// Most Newton steps before the stage is given up (to BOBYQA).
const MAX_STEPS: usize = 50;
/// Converged when the Newton decrement `g'H⁻¹g` (about twice the distance to the optimum in objective) is
/// below this with a Hessian computed at the current point. The gradient is exact, so the decrement can be
/// driven below what the objective itself resolves (a sum of 10⁵ terms or more, good to about 10⁻⁹).
const DECREMENT_TOL: f64 = 1e-10;
/// A step that no longer lowers the objective (the objective cannot resolve the improvement) ends the stage
/// as converged if the decrement, with a Hessian computed at the current point, is below this.
const STALL_TOL: f64 = 1e-5;
/// Step of the central differences of the gradient.
const FD_STEP: f64 = 1e-4;

/// The outcome of [`newton_stage`].
#[derive(Debug)]
pub(super) struct NewtonStage {
    /// Objective evaluations (trial points of the line searches, and the start).
    pub(super) evaluations: usize,
    /// Hessians computed (each 2k gradient evaluations for k parameters; a first one from
    /// [`Laplace::beta_block`] 2 nθ).
    pub(super) hessians: usize,
    /// Steps taken.
    pub(super) steps: usize,
    /// The objective at the optimum.
    pub(super) objective: f64,
    /// The Hessian of the objective at the optimum (k × k, row-major).
    pub(super) hessian: Vec<f64>,
    /// The Newton decrement `g'H⁻¹g` at the optimum.
    pub(super) decrement: f64,
    /// Whether the stage ended because no step lowered the objective any more (with the decrement below
    /// [`STALL_TOL`]) rather than with the decrement below [`DECREMENT_TOL`].
    pub(super) stalled: bool,
}

/// Why the Newton stage gave up (BOBYQA then takes over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NewtonFailure {
    /// The objective was not finite at the first stage's solution.
    NonFiniteStart,
    /// A Hessian was not positive definite (or not finite).
    HessianNotPositiveDefinite,
    /// The gradient was not finite.
    NonFiniteGradient,
    /// No step lowered the objective while the decrement was still above [`STALL_TOL`].
    NoDescent,
    /// [`MAX_STEPS`] steps without convergence.
    TooManySteps,
}

impl NewtonFailure {
    /// The reason, as text for the optimizer's record.
    pub(super) fn describe(self) -> &'static str {
        match self {
            NewtonFailure::NonFiniteStart => "the objective was not finite at the first stage's solution",
            NewtonFailure::HessianNotPositiveDefinite => "a Hessian was not positive definite",
            NewtonFailure::NonFiniteGradient => "the gradient was not finite",
            NewtonFailure::NoDescent => "no step lowered the objective",
            NewtonFailure::TooManySteps => "too many steps",
        }
    }
}

/// Minimizes the Laplace objective in `par` = (θ, β) by Newton steps with step halving, from `par` (updated
/// in place, with the conditional modes' start in `u_warm`). The first Hessian is [`Laplace::beta_block`]'s
/// approximation where there is one. The Hessian is refreshed when a step had to be halved or failed, or the
/// decrement fell by less than a factor of 10, and always at the end, so convergence is judged with the full
/// Hessian of the final point. A zero variance (θ = 0) is reached as any other stationary
/// point: the objective is even in θ. Returns `Err` with the reason and the number of objective evaluations
/// (and `par`, `u_warm` untouched) when the objective is not finite at the start, a Hessian is not positive
/// definite, or the steps do not converge.
pub(super) fn newton_stage<L: Laplace>(
    pr: &L,
    par: &mut [f64],
    u_warm: &mut L::Start,
) -> Result<NewtonStage, (NewtonFailure, usize)> {
    let k = par.len();
    let starts = |modes: &L::Modes| pr.start_of(modes);
    let point = |x: &[f64], start: &L::Start| pr.point(x, start);
    // The gradient at a point near one whose modes gave `start`, with the hint for its mirror image. PIRLS
    // starts from the prediction `first` (a central difference's first point) or from the hint of the first
    // point (its second): within rounding of the modes' step, so the modes for the gradient alone are asked
    // for ([`Laplace::modes_at`]). Without either it starts from `start`, and PIRLS with the objective runs.
    let grad_near = |start: &L::Start, first: Option<&L::Start>, y: &[f64], hint: Option<&Option<L::Start>>| {
        let modes = match hint.map_or(first, Option::as_ref) {
            Some(predicted) => pr.modes_at(y, predicted),
            None => pr.point(y, start).1,
        };
        let mirrored = if hint.is_none() { pr.mirror(start, &pr.start_of(&modes)) } else { None };
        (pr.gradient(y, &modes), mirrored)
    };
    let hessian_at = |x: &[f64], start: &L::Start| -> Option<(Vec<f64>, Vec<f64>)> {
        let predicted = pr.plus_starts(x, start, FD_STEP);
        let first = |j: usize| predicted.get(j).and_then(Option::as_ref);
        let h = fd_jacobian(
            &|y: &[f64], j: usize, hint: Option<&Option<L::Start>>| grad_near(start, first(j), y, hint),
            x,
            FD_STEP,
        );
        let mut l = h.clone();
        (h.iter().all(|v| v.is_finite()) && cholesky(&mut l, k)).then_some((h, l))
    };
    // θ's columns by differences, the β block from the objective (`None` without one, or when the result is
    // not positive definite).
    let rough_at = |x: &[f64], modes: &L::Modes| -> Option<(Vec<f64>, Vec<f64>)> {
        let bb = pr.beta_block(x, modes)?;
        let p = bb.len().isqrt();
        if p * p != bb.len() || p > k {
            return None;
        }
        let nth = k - p;
        let start = starts(modes);
        let grad = |y: &[f64], _: usize, hint: Option<&Option<L::Start>>| grad_near(&start, None, y, hint);
        let cols = fd_columns(&grad, x, FD_STEP, nth);
        let mut h = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                h[i * k + j] = match (i < nth, j < nth) {
                    (true, true) => 0.5 * (cols[j][i] + cols[i][j]),
                    (false, true) => cols[j][i],
                    (true, false) => cols[i][j],
                    (false, false) => bb[(i - nth) * p + (j - nth)],
                };
            }
        }
        let mut l = h.clone();
        (h.iter().all(|v| v.is_finite()) && cholesky(&mut l, k)).then_some((h, l))
    };
    let mut x = par.to_vec();
    let (mut f, mut modes) = point(&x, u_warm);
    let mut evaluations = 1;
    if !f.is_finite() {
        return Err((NewtonFailure::NonFiniteStart, evaluations));
    }
    let (h, l, fresh) = match rough_at(&x, &modes) {
        Some((h, l)) => (h, l, false),
        None => match hessian_at(&x, u_warm) {
            Some((h, l)) => (h, l, true),
            None => return Err((NewtonFailure::HessianNotPositiveDefinite, evaluations)),
        },
    };
    // A rough Hessian is never `fresh`: the stage cannot end with it.
    let mut cur = Curvature { h, l, computed: 1, fresh, previous: f64::INFINITY };
    let mut steps = 0;
    // Set when the loop ends: `Ok(stalled)` converged, `Err` why not.
    let mut outcome = Err(NewtonFailure::TooManySteps);
    let mut decrement = f64::INFINITY;
    while steps < MAX_STEPS {
        let grad = pr.gradient(&x, &modes);
        if grad.iter().any(|v| !v.is_finite()) {
            outcome = Err(NewtonFailure::NonFiniteGradient);
            break;
        }
        let mut step = grad.clone();
        chol_solve(&cur.l, k, &mut step);
        decrement = step.iter().zip(&grad).map(|(s, g)| s * g).sum();
        let refresh = |x: &[f64], modes: &L::Modes| hessian_at(x, &starts(modes));
        if decrement < DECREMENT_TOL || (!cur.fresh && decrement > 0.1 * cur.previous) {
            if cur.fresh && decrement < DECREMENT_TOL {
                outcome = Ok(false);
                break;
            }
            if let Err(why) = cur.renew(refresh(&x, &modes)) {
                outcome = Err(why);
                break;
            }
            continue;
        }
        cur.previous = decrement;
        let start = starts(&modes);
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..20 {
            let mut trial: Vec<f64> = x.iter().zip(&step).map(|(a, s)| a - t * s).collect();
            // A step past θ = 0 is reflected, with the modes' signs.
            let flipped = pr.reflect(&mut trial, &start);
            if trial.iter().all(|v| v.is_finite()) {
                let (f_trial, m_trial) = point(&trial, flipped.as_ref().unwrap_or(&start));
                evaluations += 1;
                if f_trial.is_finite() && f_trial <= f + 1e-12 * (1.0 + f.abs()) {
                    accepted = Some((trial, f_trial, m_trial));
                    break;
                }
            }
            t *= 0.5;
        }
        let Some((trial, f_trial, m_trial)) = accepted else {
            if cur.fresh {
                outcome = if decrement < STALL_TOL { Ok(true) } else { Err(NewtonFailure::NoDescent) };
                break;
            }
            // The Hessian is from an earlier point: try again with the one here.
            if let Err(why) = cur.renew(refresh(&x, &modes)) {
                outcome = Err(why);
                break;
            }
            continue;
        };
        x = trial;
        f = f_trial;
        modes = m_trial;
        steps += 1;
        cur.fresh = false;
        if t < 1.0
            && let Err(why) = cur.renew(refresh(&x, &modes))
        {
            outcome = Err(why);
            break;
        }
    }
    let stalled = outcome.map_err(|why| (why, evaluations))?;
    par.copy_from_slice(&x);
    *u_warm = starts(&modes);
    Ok(NewtonStage { evaluations, hessians: cur.computed, steps, objective: f, hessian: cur.h, decrement, stalled })
}

/// The Hessian in use with its Cholesky factor, how many were computed, whether this one was computed at
/// the current point, and the decrement of the last step taken with it.
struct Curvature {
    h: Vec<f64>,
    l: Vec<f64>,
    computed: usize,
    fresh: bool,
    previous: f64,
}

impl Curvature {
    /// Takes a Hessian just computed at the current point (`None`: not positive definite).
    fn renew(&mut self, hl: Option<(Vec<f64>, Vec<f64>)>) -> Result<(), NewtonFailure> {
        let (h, l) = hl.ok_or(NewtonFailure::HessianNotPositiveDefinite)?;
        *self = Curvature { h, l, computed: self.computed + 1, fresh: true, previous: f64::INFINITY };
        Ok(())
    }
}
