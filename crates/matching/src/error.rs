//! Errors: [`MatchError`] for the entry point [`crate::match_units`] (what the user must change, naming the
//! option, column or row at fault), [`MethodError`] for the matching methods, and [`SpecField`], the options
//! of a [`crate::MatchSpec`] as a study file spells them.

use std::fmt;

use psmeval_frame::{FormulaError, FrameError};
use thiserror::Error;

use crate::balance::BalanceError;
use crate::distance::DistanceError;
use crate::matches::InvariantError;
use crate::propensity::PropensityError;
use crate::support::SupportError;

/// An option of a [`crate::MatchSpec`]; displayed as the key of the `[matching]` table of a study file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpecField {
    /// `formula`.
    Formula,
    /// `method`.
    Method,
    /// `link`.
    Link,
    /// `distance_column`.
    DistanceColumn,
    /// `ratio`.
    Ratio,
    /// `replace`.
    Replace,
    /// `order`.
    Order,
    /// `caliper`.
    Caliper,
    /// `exact`.
    Exact,
    /// `mahvars`.
    Mahvars,
    /// `discard`.
    Discard,
    /// `seed`.
    Seed,
}

impl SpecField {
    /// The option's name as written in a study file (`distance_column`, `mahvars`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SpecField::Formula => "formula",
            SpecField::Method => "method",
            SpecField::Link => "link",
            SpecField::DistanceColumn => "distance_column",
            SpecField::Ratio => "ratio",
            SpecField::Replace => "replace",
            SpecField::Order => "order",
            SpecField::Caliper => "caliper",
            SpecField::Exact => "exact",
            SpecField::Mahvars => "mahvars",
            SpecField::Discard => "discard",
            SpecField::Seed => "seed",
        }
    }
}

impl fmt::Display for SpecField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`crate::match_units`] failed.
///
/// Every message includes the message of the error it wraps, so [`std::error::Error::source`] is `None`
/// (a printed chain shows each message once); match on the variant to reach the typed inner error.
/// [`MatchError::is_internal`] tells a bug in this crate from a problem with the inputs.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum MatchError {
    /// `treat` or `ids` does not have one entry per row of the table.
    #[error("`{what}` has {len} entries but the table has {rows} rows: give one per row")]
    Length {
        /// `treat` or `ids`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Rows of the table.
        rows: usize,
    },
    /// The formula does not parse, or has random-effects terms (a propensity model has fixed effects only).
    #[error("{error}")]
    Formula {
        /// The parser's error (its message quotes the formula).
        error: FormulaError,
    },
    /// An option names a column the table does not have.
    #[error("{field}: no column named `{column}` (columns are: {available}); correct the name or add the column")]
    MissingColumn {
        /// The option naming the column.
        field: SpecField,
        /// The column asked for.
        column: String,
        /// The table's columns, comma-separated.
        available: String,
    },
    /// An option needs a numeric column (`distance_column`, `mahvars`) but the column holds text.
    #[error("{field}: column `{column}` must be numeric but holds text (first text value `{value}` in row {row})")]
    NotNumeric {
        /// The option naming the column.
        field: SpecField,
        /// The column.
        column: String,
        /// 1-based row of the first text value.
        row: usize,
        /// That value.
        value: String,
    },
    /// `ratio` is 0.
    #[error("ratio must be at least 1 (controls per treated unit), not {ratio}")]
    InvalidRatio {
        /// The ratio given.
        ratio: usize,
    },
    /// `caliper` is not a positive finite number.
    #[error(
        "caliper must be a positive, finite number of standard deviations of the distance, not {caliper}; omit it for no caliper"
    )]
    InvalidCaliper {
        /// The caliper given.
        caliper: f64,
    },
    /// Two options that cannot be combined.
    #[error("{field} cannot be used with {with}: {advice}")]
    Unsupported {
        /// The option at fault.
        field: SpecField,
        /// The setting it conflicts with, as written (`method = "optimal"`).
        with: &'static str,
        /// What to change.
        advice: &'static str,
    },
    /// The data cannot be used: an infinite value, no complete rows, a factor with one level.
    #[error("{error}")]
    Data {
        /// The model-frame error (its message names the column).
        error: FrameError,
    },
    /// The propensity model could not be fitted.
    #[error("propensity model `{formula}`: {error}")]
    Propensity {
        /// The formula.
        formula: String,
        /// The fit's error (its message names the covariate or row).
        error: PropensityError,
    },
    /// The matching method failed.
    #[error("matching: {error}{}", advice(*field))]
    Matching {
        /// The option most likely at fault, if one is.
        field: Option<SpecField>,
        /// The method's error.
        error: MethodError,
    },
    /// Balance could not be computed.
    #[error("balance: {error}")]
    Balance {
        /// The balance error.
        error: BalanceError,
    },
    /// The matching result violates an invariant: a bug in this crate, not a problem with the inputs.
    #[error("internal error: matching invariant violated: {error}")]
    Invariant {
        /// The violated invariant.
        error: InvariantError,
    },
}

fn advice(field: Option<SpecField>) -> String {
    field.map_or_else(String::new, |f| format!(" (check `{f}`)"))
}

impl MatchError {
    /// Whether the error is a bug in this crate ([`MatchError::Invariant`]) rather than a problem with the
    /// spec or the data.
    pub fn is_internal(&self) -> bool {
        matches!(self, MatchError::Invariant { .. })
    }

    /// The option at fault, when the error is about one.
    pub fn field(&self) -> Option<SpecField> {
        match self {
            MatchError::Formula { .. } | MatchError::Propensity { .. } => Some(SpecField::Formula),
            MatchError::MissingColumn { field, .. }
            | MatchError::NotNumeric { field, .. }
            | MatchError::Unsupported { field, .. } => Some(*field),
            MatchError::InvalidRatio { .. } => Some(SpecField::Ratio),
            MatchError::InvalidCaliper { .. } => Some(SpecField::Caliper),
            MatchError::Matching { field, .. } => *field,
            MatchError::Length { .. }
            | MatchError::Data { .. }
            | MatchError::Balance { .. }
            | MatchError::Invariant { .. } => None,
        }
    }
}

/// Errors of the matching methods, [`crate::nearest::nearest`] and [`crate::optimal::optimal`] (also exported
/// as `nearest::MatchError`, its former name).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum MethodError {
    /// An input vector has the wrong length.
    #[error("`{what}` has {len} entries, expected {expected}")]
    Length {
        /// Which input.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The number of units.
        expected: usize,
    },
    /// No treated units.
    #[error("there are no treated units")]
    NoTreated,
    /// No control units.
    #[error("there are no control units")]
    NoControls,
    /// A distance is NaN or infinite.
    #[error("distance of unit {index} is not finite ({value})")]
    NonFiniteDistance {
        /// Unit index.
        index: usize,
        /// The value.
        value: f64,
    },
    /// `ratio` is 0.
    #[error("ratio must be at least 1")]
    RatioZero,
    /// The caliper is negative or not finite.
    #[error("caliper must be a non-negative finite number, not {value}")]
    InvalidCaliper {
        /// The caliper given.
        value: f64,
    },
    /// No exact cell contains both treated and control units (MatchIt: "no matches were found").
    #[error("no exact-matching cell contains both treated and control units")]
    NoCommonCell,
    /// No unit was matched (MatchIt: "no units were matched").
    #[error("no units were matched")]
    NothingMatched,
    /// A combination of options this implementation does not support.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// Common-support error.
    #[error(transparent)]
    Support(#[from] SupportError),
    /// Mahalanobis distance error.
    #[error(transparent)]
    Distance(#[from] DistanceError),
}
