//! Typed errors of mixed-model fitting: every variant says which column, row or term is at fault.

use thiserror::Error;

/// A mixed model could not be fitted.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum LmmError {
    /// The frame has no rows.
    #[error("no observations: the model frame has zero rows")]
    NoObservations,
    /// The model has no random-effects term (use a linear model instead).
    #[error("no random-effects terms in the model")]
    NoRandomTerms,
    /// Dimensions of the frame's parts disagree.
    #[error("dimension mismatch in `{what}`: expected {expected}, found {found}")]
    DimensionMismatch {
        /// Which part.
        what: String,
        /// Expected length.
        expected: usize,
        /// Found length.
        found: usize,
    },
    /// A NaN or infinite value.
    #[error("non-finite value in `{what}` at row {row}")]
    NonFinite {
        /// The column (`response`, a fixed-effects column or a random-effects column).
        what: String,
        /// 1-based row of the frame.
        row: usize,
    },
    /// A fixed-effects column is a linear combination of earlier columns.
    #[error("fixed-effects column `{column}` is aliased (linearly dependent on earlier columns): X is rank deficient")]
    RankDeficient {
        /// The aliased column.
        column: String,
    },
    /// A grouping factor has as many levels as observations (lme4's check).
    #[error(
        "grouping factor `{group}` has {levels} levels for {n_obs} observations: the number of levels of each grouping factor must be < number of observations"
    )]
    TooManyLevels {
        /// The grouping factor.
        group: String,
        /// Its level count.
        levels: usize,
        /// Observations.
        n_obs: usize,
    },
    /// Fewer observations than fixed-effects columns (REML needs n > p).
    #[error("{n_obs} observations for {p} fixed-effects columns")]
    TooFewObservations {
        /// Observations.
        n_obs: usize,
        /// Fixed-effects columns.
        p: usize,
    },
    /// Several random-effects terms with more random effects in total than the dense multi-term solver takes.
    #[error(
        "{size} random effects in several terms exceed the {max} the dense multi-term solver handles; a single term (any size) is supported"
    )]
    TooLarge {
        /// Total number of random effects.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The optimizer never found a finite objective.
    #[error("the optimizer failed: {reason}")]
    Optimizer {
        /// Why.
        reason: String,
    },
    /// Two fits cannot be compared by a likelihood-ratio test.
    #[error("likelihood-ratio test not possible: {reason}")]
    NotComparable {
        /// Why.
        reason: String,
    },
}
