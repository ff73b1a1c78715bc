//! The typed error of mixed-model fitting and of the questions asked of a fit, for both families: every
//! variant says which argument, column, row (1-based) or term is at fault.
//!
//! One enum serves linear and logistic models because most failures are shared (an empty frame, a
//! mismatched length, a non-finite value, a bad weight, an aliased design) and because the
//! [`MixedModel`](crate::MixedModel) contract (`contrast`) needs a single error type for one code path.

use thiserror::Error;

/// A mixed model could not be fitted, or a question asked of a fit has no answer.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum MixedModelError {
    /// The frame has no rows.
    #[error("no observations: the model frame has zero rows")]
    NoObservations,
    /// The model has no random-effects term (use a (generalized) linear model instead).
    #[error("no random-effects terms in the model")]
    NoRandomTerms,
    /// Lengths of the frame's parts, the weights or a contrast disagree.
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
        /// The column (the response, a fixed-effects column or a random-effects column).
        what: String,
        /// 1-based row of the frame.
        row: usize,
    },
    /// A prior weight that is not positive and finite.
    #[error("row {row}: weight {value} is not positive and finite")]
    NonPositiveWeight {
        /// 1-based row of the frame.
        row: usize,
        /// The weight.
        value: f64,
    },
    /// A Bernoulli response (GLMM without weights) outside {0, 1}.
    #[error("row {row}: response {value} is not 0 or 1 (give binomial totals as weights for proportions)")]
    ResponseNotBinary {
        /// 1-based row of the frame.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A binomial proportion (GLMM with weights) outside [0, 1].
    #[error("row {row}: proportion {value} is outside [0, 1]")]
    ProportionOutOfRange {
        /// 1-based row of the frame.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A binomial response that is all 0 or all 1: every fixed effect runs off (complete separation).
    #[error("complete separation: every response is {value}")]
    CompleteSeparation {
        /// The common value.
        value: f64,
    },
    /// X is rank deficient at this column after aliased columns were dropped: every column was aliased, or
    /// (GLMM) a column is numerically dependent on earlier ones.
    #[error("fixed-effects column `{column}` is aliased (linearly dependent on earlier columns): X is rank deficient")]
    RankDeficient {
        /// The aliased column.
        column: String,
    },
    /// A grouping factor has as many levels as observations (lme4's check for `lmer`).
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
    /// A grouping factor with fewer than two levels (lme4: "grouping factors must have > 1 sampled level"):
    /// a variance between one group cannot be estimated.
    #[error(
        "the grouping factor `{group}` has {levels} level(s) in the data used; a random effect needs at least 2 (is the column constant, or did a filter keep one group?)"
    )]
    OneLevel {
        /// The grouping factor.
        group: String,
        /// Its number of levels.
        levels: usize,
    },
    /// Fewer observations than fixed-effects columns (REML needs n > p).
    #[error("{n_obs} observations for {p} fixed-effects columns")]
    TooFewObservations {
        /// Observations.
        n_obs: usize,
        /// Fixed-effects columns.
        p: usize,
    },
    /// The Cholesky factor of a model with several random-effects terms would need more memory than allowed
    /// (its fill-in after the ordering: crossed terms with many levels each).
    #[error(
        "the random-effects terms {terms} ({size} random effects) need a Cholesky factor of {bytes} bytes, more than the {max} bytes allowed; fewer levels or fewer crossed terms are needed"
    )]
    TooLarge {
        /// The terms, as written (`(1 | a) + (1 | b)`).
        terms: String,
        /// Total number of random effects.
        size: usize,
        /// Bytes the factor needs.
        bytes: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The sparse factorization could not be set up.
    #[error("the random-effects terms {terms}: {reason}")]
    Factorization {
        /// The terms, as written.
        terms: String,
        /// What failed.
        reason: String,
    },
    /// An option outside the range the method allows (such as more than 25 quadrature points, glmer's limit).
    #[error("option `{option}` = {value}: {reason}")]
    InvalidOption {
        /// The option.
        option: String,
        /// Its value as given.
        value: String,
        /// The allowed range.
        reason: String,
    },
    /// A model shape not fitted yet (a GLMM with several grouping factors, or adaptive quadrature with a vector
    /// term).
    #[error("not yet supported: {what}")]
    NotYetSupported {
        /// What.
        what: String,
    },
    /// The GLMM objective could not be evaluated at the starting values.
    #[error("the deviance is not finite at the starting values")]
    NonFiniteStart,
    /// The optimizer never found a finite objective.
    #[error("the optimizer failed: {reason}")]
    Optimizer {
        /// Why.
        reason: String,
    },
    /// A random-effects term asked for (in a prediction frame) is not in the fit.
    #[error("no random-effects term `{group}` with these columns in the fit")]
    UnknownTerm {
        /// The grouping factor.
        group: String,
    },
    /// Two fits cannot be compared by a likelihood-ratio test.
    #[error("likelihood-ratio test not possible: {reason}")]
    NotComparable {
        /// Why.
        reason: String,
    },
    /// Cluster-robust inference is not possible for this fit and clustering.
    #[error("cluster-robust inference: {reason}")]
    Robust {
        /// Why.
        reason: String,
    },
}
