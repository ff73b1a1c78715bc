//! Why a propensity model could not be fitted ([`PropensityError`]), and the warnings R's `glm` would give
//! for a fit that is still returned ([`PropensityWarning`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Something R's `glm` would warn about; the fit is still returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PropensityWarning {
    /// `glm.fit: fitted probabilities numerically 0 or 1 occurred` — (quasi-)separation: some units are
    /// perfectly predicted and their scores are 0 or 1 to within `10·DBL_EPSILON`.
    FittedProbabilitiesZeroOrOne {
        /// Units with a fitted probability below `10·DBL_EPSILON` or above `1 − 10·DBL_EPSILON`.
        count: usize,
    },
    /// `glm.fit: algorithm did not converge` within the iteration limit.
    NotConverged {
        /// Iterations run.
        iterations: usize,
    },
    /// `step size truncated due to divergence` / `out of bounds` (step halving).
    StepHalved {
        /// Iteration at which the step was halved.
        iteration: usize,
    },
    /// `glm.fit: algorithm stopped at boundary value`.
    Boundary,
    /// `non-integer #successes in a binomial glm!` (non-integer prior weights).
    NonIntegerSuccesses,
}

impl fmt::Display for PropensityWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropensityWarning::FittedProbabilitiesZeroOrOne { count } => write!(
                f,
                "fitted probabilities numerically 0 or 1 occurred for {count} unit(s) (separation: some units are \
                 perfectly predicted by the covariates)"
            ),
            PropensityWarning::NotConverged { iterations } => {
                write!(f, "the propensity model did not converge in {iterations} iterations")
            }
            PropensityWarning::StepHalved { iteration } => {
                write!(f, "step size truncated due to divergence at iteration {iteration}")
            }
            PropensityWarning::Boundary => write!(f, "algorithm stopped at boundary value"),
            PropensityWarning::NonIntegerSuccesses => write!(f, "non-integer #successes in a binomial glm"),
        }
    }
}

/// Why a propensity model could not be fitted.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PropensityError {
    /// An input has the wrong length.
    #[error("{what} has length {found}, but the design matrix has {expected}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// The design matrix has no rows.
    #[error("the design matrix has no rows")]
    NoRows,
    /// The design matrix has no columns.
    #[error("the design matrix has no columns")]
    NoColumns,
    /// A covariate value is NaN or infinite.
    #[error("covariate `{term}` is not finite in row {row} ({value})")]
    NonFiniteCovariate {
        /// Column name.
        term: String,
        /// Row (0-based).
        row: usize,
        /// The value.
        value: f64,
    },
    /// The response is not 0 or 1.
    #[error("the treatment indicator must be 0 or 1, but row {row} has {value}")]
    ResponseNotBinary {
        /// Row (0-based).
        row: usize,
        /// The value.
        value: f64,
    },
    /// A prior weight is negative or not finite.
    #[error("prior weight in row {row} is {value}; weights must be finite and non-negative")]
    InvalidWeight {
        /// Row (0-based).
        row: usize,
        /// The value.
        value: f64,
    },
    /// Every unit (with positive weight) is treated, or none is.
    #[error("{}", if *all_treated { format!("all {n} units are treated: there are no controls") } else { format!("none of the {n} units is treated") })]
    NoVariation {
        /// True if all units are treated, false if none is.
        all_treated: bool,
        /// Units with positive weight.
        n: usize,
    },
    /// Fewer units with positive weight than coefficients.
    #[error("{n} units with positive weight for {p} coefficients")]
    TooFewObservations {
        /// Units with positive weight.
        n: usize,
        /// Columns of the design.
        p: usize,
    },
    /// A covariate is constant (or all zero), so it duplicates the intercept (R: `NA` coefficient).
    #[error("covariate `{term}` is constant ({value}) among the units used, so its coefficient is not estimable")]
    ConstantCovariate {
        /// Column name.
        term: String,
        /// Its value.
        value: f64,
    },
    /// A covariate is a linear combination of earlier columns (R: `NA` coefficient).
    #[error("covariate `{term}` is collinear with {} (glm would give it an NA coefficient)", fmt_terms(with))]
    Collinear {
        /// The aliased column (the first one `dqrdc2` moves to the end).
        term: String,
        /// The earlier columns it is (numerically) a combination of.
        with: Vec<String>,
        /// Every aliased column, in pivot order.
        all_aliased: Vec<String>,
    },
    /// `glm.fit` would stop with an error here (e.g. no valid coefficients after step halving).
    #[error("the IRLS algorithm failed at iteration {iteration}: {reason}")]
    NumericalFailure {
        /// Iteration (1-based).
        iteration: usize,
        /// R's message.
        reason: &'static str,
    },
}

fn fmt_terms(t: &[String]) -> String {
    if t.is_empty() {
        "earlier columns".into()
    } else {
        t.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
    }
}
