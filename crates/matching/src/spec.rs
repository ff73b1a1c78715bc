//! What to match and how: [`MatchSpec`], the arguments of MatchIt's `matchit()` as a plain serializable
//! value (the `[matching]` table of a study file), and its option enums.
//!
//! Field names, defaults and the kebab-case spellings of the enums are those of the study file format:
//! `method = "optimal"`, `link = "linear-logit"`, `order = "closest"`, `discard = "both"`.

use serde::{Deserialize, Serialize};

use crate::nearest::Order;
use crate::propensity::Link;
use crate::support::Discard;

/// The matching options: propensity model (or distance column), method and its constraints.
///
/// Deserializing rejects unknown keys, so a misspelt option in a study file is an error rather than
/// silently ignored. [`MatchSpec::validate`] checks a spec against a table before anything is computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct MatchSpec {
    /// Propensity-score formula, R style: `lead ~ pct_fsm + prior_attainment + factor(region)`. Its
    /// right-hand side also gives the covariates of the balance tables.
    pub formula: String,
    /// Matching method. Default [`Method::Nearest`].
    #[serde(default)]
    pub method: Method,
    /// Propensity model link and distance, as MatchIt's `link`. Default [`DistanceLink::Logit`].
    #[serde(default)]
    pub link: DistanceLink,
    /// Use this numeric column as the distance instead of fitting a propensity model. Default none.
    #[serde(default)]
    pub distance_column: Option<String>,
    /// Controls per treated unit (k:1 matching); at least 1. Default 1.
    #[serde(default = "one")]
    pub ratio: usize,
    /// Match with replacement (a control may serve several treated units; nearest only). Default `false`.
    #[serde(default)]
    pub replace: bool,
    /// Order in which treated units are matched (MatchIt's `m.order`). Default [`Order::Largest`].
    #[serde(default)]
    pub order: Order,
    /// Caliper in standard deviations of the distance (MatchIt's `std.caliper = TRUE`); positive. Default
    /// none.
    #[serde(default)]
    pub caliper: Option<f64>,
    /// Match exactly on these variables. Default none.
    #[serde(default)]
    pub exact: Vec<String>,
    /// Match on the Mahalanobis distance of these numeric covariates within the caliper (nearest only).
    /// Default none.
    #[serde(default)]
    pub mahvars: Vec<String>,
    /// Discard units outside the common support of the distance. Default [`CommonSupport::None`].
    #[serde(default)]
    pub discard: CommonSupport,
    /// Seed for `order = "random"`. Default 1.
    #[serde(default = "one_u64")]
    pub seed: u64,
}

fn one() -> usize {
    1
}

fn one_u64() -> u64 {
    1
}

impl MatchSpec {
    /// A spec with this formula and every other option at its default (nearest-neighbour 1:1 matching on
    /// a logistic propensity score, without replacement, largest score first).
    pub fn new(formula: impl Into<String>) -> Self {
        MatchSpec {
            formula: formula.into(),
            method: Method::default(),
            link: DistanceLink::default(),
            distance_column: None,
            ratio: 1,
            replace: false,
            order: Order::default(),
            caliper: None,
            exact: Vec::new(),
            mahvars: Vec::new(),
            discard: CommonSupport::default(),
            seed: 1,
        }
    }
}

/// Matching methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Greedy nearest-neighbour matching (MatchIt's `method = "nearest"`), [`crate::nearest`].
    #[default]
    Nearest,
    /// Optimal matching: minimum total distance (optmatch's `pairmatch`, k:1), [`crate::optimal`].
    Optimal,
}

/// The propensity model's link and which of its outputs is the distance (MatchIt's `link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DistanceLink {
    /// Logistic regression; distance = score.
    #[default]
    Logit,
    /// Probit regression; distance = score.
    Probit,
    /// Logistic regression; distance = linear predictor (logit of the score).
    LinearLogit,
    /// Probit regression; distance = linear predictor.
    LinearProbit,
}

impl DistanceLink {
    /// The GLM link.
    pub fn link(self) -> Link {
        match self {
            DistanceLink::Logit | DistanceLink::LinearLogit => Link::Logit,
            DistanceLink::Probit | DistanceLink::LinearProbit => Link::Probit,
        }
    }

    /// Whether the distance is the linear predictor rather than the score.
    pub fn is_linear(self) -> bool {
        matches!(self, DistanceLink::LinearLogit | DistanceLink::LinearProbit)
    }
}

/// Common-support discarding by rule (MatchIt's `discard`); [`Discard`] also takes a per-unit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommonSupport {
    /// Keep every unit.
    #[default]
    None,
    /// Discard treated units outside the controls' range.
    Treated,
    /// Discard controls outside the treated units' range.
    Control,
    /// Both.
    Both,
}

impl From<CommonSupport> for Discard {
    fn from(c: CommonSupport) -> Self {
        match c {
            CommonSupport::None => Discard::None,
            CommonSupport::Treated => Discard::Treated,
            CommonSupport::Control => Discard::Control,
            CommonSupport::Both => Discard::Both,
        }
    }
}
