//! Glue between tables and the matching crate, shared by `psmeval match` and `psmeval evaluate`: builds the
//! propensity model's design from the formula, fits it, matches, computes balance before and after, and
//! collects everything in a plain [`MatchRun`] that outputs render.

use std::path::Path;

use anyhow::Result;
use ndarray::Array2;
use psmeval_frame::design::{complete_rows, group_codes};
use psmeval_frame::{Table, build_model_frame, covariate_matrix, parse_formula};
use psmeval_matching::balance::{BalanceRow, balance};
use psmeval_matching::matches::{Matches, Problem};
use psmeval_matching::nearest::{Caliper, NearestOptions, Order, nearest};
use psmeval_matching::optimal::{OptimalOptions, optimal};
use psmeval_matching::propensity::{Link, PropensityFit, fit_binomial_glm};
use psmeval_matching::support::Discard;
use serde::Serialize;

use crate::args::{DiscardArg, LinkArg, MatchSpec, MethodArg, OrderArg};
use crate::error::InputError;

/// Sample sizes of a matching run (schools, or whatever the units are).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleSizes {
    /// Treated units in the data.
    pub all_treated: usize,
    /// Control units in the data.
    pub all_control: usize,
    /// Treated units with at least one match.
    pub matched_treated: usize,
    /// Distinct controls matched.
    pub matched_control: usize,
    /// Treated units not discarded but left without a match.
    pub unmatched_treated: usize,
    /// Controls not discarded and not matched.
    pub unmatched_control: usize,
    /// Treated units discarded for lack of common support.
    pub discarded_treated: usize,
    /// Controls discarded.
    pub discarded_control: usize,
    /// Effective sample size of the matched treated units, (Σw)²/Σw².
    pub ess_treated: f64,
    /// Effective sample size of the matched controls.
    pub ess_control: f64,
}

/// One balance row as reports show it.
pub type BalanceRowView = BalanceRow;

/// Balance before and after matching.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalancePair {
    /// Full sample (weights 1).
    pub before: Vec<BalanceRow>,
    /// Matched sample (matching weights).
    pub after: Vec<BalanceRow>,
}

/// A unit of the matching problem with its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    /// The unit's id.
    pub id: String,
    /// Treated.
    pub treated: bool,
    /// Matching distance.
    pub distance: f64,
    /// Matching weight (0 = not matched).
    pub weight: f64,
    /// Matched set: the treated unit's id (without replacement).
    pub subclass: Option<String>,
    /// Discarded for lack of common support.
    pub discarded: bool,
}

/// Matched set by id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedSetIds {
    /// Treated unit's id.
    pub treated: String,
    /// Control ids (in MatchIt's match-matrix order).
    pub controls: Vec<String>,
}

/// Propensity model summary for reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropensitySummary {
    /// The formula.
    pub formula: String,
    /// `logit` or `probit`.
    pub link_name: String,
    /// The fit (coefficients with SEs, deviance, iterations, warnings).
    #[serde(flatten)]
    pub fit: PropensityFit,
}

/// Everything a matching run produced.
#[derive(Debug, Clone, Serialize)]
pub struct MatchRun {
    /// Sample sizes.
    pub n: SampleSizes,
    /// The propensity model, unless the distance came from a column.
    pub propensity: Option<PropensitySummary>,
    /// What the distance is.
    pub distance_label: String,
    /// Matched sets.
    pub matches: Vec<MatchedSetIds>,
    /// Treated units without a match, by id.
    pub unmatched_treated: Vec<String>,
    /// Balance before and after.
    pub balance: BalancePair,
    /// Every unit with its distance and weight.
    #[serde(skip)]
    pub units: Vec<Unit>,
    /// Diagnostics worth a reader's attention.
    pub notes: Vec<String>,
}

impl std::ops::Deref for PropensitySummary {
    type Target = PropensityFit;
    fn deref(&self) -> &PropensityFit {
        &self.fit
    }
}

fn ess(w: impl Iterator<Item = f64> + Clone) -> f64 {
    let s: f64 = w.clone().sum();
    let s2: f64 = w.map(|x| x * x).sum();
    if s2 > 0.0 { s * s / s2 } else { 0.0 }
}

/// Runs the propensity model, matching and balance for `spec` on `table` (rows = units).
pub fn run_matching(
    spec: &MatchSpec,
    table: &Table,
    treat: &[bool],
    ids: &[String],
    source: &Path,
) -> Result<MatchRun> {
    let at = |e: String| -> anyhow::Error { InputError::new(format!("{}: {e}", source.display())).into() };
    let formula = parse_formula(&spec.formula).map_err(|e| at(e.to_string()))?;
    formula.require_fixed_only().map_err(|e| at(e.to_string()))?;
    // Units with a missing value in any variable used are dropped, as MatchIt requires complete data; name them.
    let mut used = formula.columns();
    used.extend(spec.exact.iter().cloned());
    used.extend(spec.mahvars.iter().cloned());
    if let Some(c) = &spec.distance_column {
        used.push(c.clone());
    }
    let rows = complete_rows(table, &used).map_err(|e| at(e.to_string()))?;
    let mut notes = Vec::new();
    if rows.len() < table.n_rows() {
        notes.push(format!(
            "{} of {} units have a missing value in a matching variable and were left out",
            table.n_rows() - rows.len(),
            table.n_rows()
        ));
    }
    let sub = table.take_rows(&rows);
    let treat: Vec<bool> = rows.iter().map(|&i| treat[i]).collect();
    let ids: Vec<String> = rows.iter().map(|&i| ids[i].clone()).collect();
    let (link, linear) = match spec.link {
        LinkArg::Logit => (Link::Logit, false),
        LinkArg::Probit => (Link::Probit, false),
        LinkArg::LinearLogit => (Link::Logit, true),
        LinkArg::LinearProbit => (Link::Probit, true),
    };
    let (distance, propensity, distance_label) = match &spec.distance_column {
        Some(c) => (sub.numeric(c).map_err(|e| at(e.to_string()))?.to_vec(), None, format!("Distance (`{c}`)")),
        None => {
            let mf = build_model_frame(&formula, &sub).map_err(|e| at(e.to_string()))?;
            let fit = fit_binomial_glm(mf.x.view(), &mf.x_names, &mf.y, None, link)
                .map_err(|e| at(format!("propensity model `{}`: {e}", spec.formula)))?;
            let d = if linear { fit.linear_predictor.clone() } else { fit.fitted.clone() };
            let label = if linear { "Linear predictor of the propensity model" } else { "Propensity score" };
            let link_name = match link {
                Link::Logit => "logit",
                Link::Probit => "probit",
            };
            (
                d,
                Some(PropensitySummary { formula: spec.formula.clone(), link_name: link_name.into(), fit }),
                label.into(),
            )
        }
    };
    let exact_codes = if spec.exact.is_empty() {
        None
    } else {
        let all: Vec<usize> = (0..sub.n_rows()).collect();
        Some(group_codes(&sub, &spec.exact, &all).map_err(|e| at(e.to_string()))?.0)
    };
    let mahal = if spec.mahvars.is_empty() {
        None
    } else {
        let mut m = Array2::<f64>::zeros((sub.n_rows(), spec.mahvars.len()));
        for (k, c) in spec.mahvars.iter().enumerate() {
            let v = sub.numeric(c).map_err(|e| at(format!("mahvars: {e}")))?;
            m.column_mut(k).iter_mut().zip(v).for_each(|(d, s)| *d = *s);
        }
        Some(m)
    };
    let mut problem = Problem::new(&distance, &treat);
    problem.exact = exact_codes.as_deref();
    problem.mahvars = mahal.as_ref().map(|m| m.view());
    let opts = NearestOptions {
        ratio: spec.ratio,
        replace: spec.replace,
        order: match spec.order {
            OrderArg::Largest => Order::Largest,
            OrderArg::Smallest => Order::Smallest,
            OrderArg::Random => Order::Random,
            OrderArg::Data => Order::Data,
            OrderArg::Closest => Order::Closest,
        },
        caliper: spec.caliper.map(Caliper::Sd),
        discard: match spec.discard {
            DiscardArg::None => Discard::None,
            DiscardArg::Treated => Discard::Treated,
            DiscardArg::Control => Discard::Control,
            DiscardArg::Both => Discard::Both,
        },
        seed: spec.seed,
    };
    let matches: Matches = match spec.method {
        MethodArg::Nearest => nearest(&problem, &opts),
        MethodArg::Optimal => optimal(&problem, &OptimalOptions::from(&opts)),
    }
    .map_err(|e| at(format!("matching: {e}")))?;
    matches.check(&problem).map_err(|e| anyhow::anyhow!("internal error: matching invariant violated: {e}"))?;

    // Balance on the formula's covariates, every factor level shown, with the distance first (as MatchIt).
    let all: Vec<usize> = (0..sub.n_rows()).collect();
    let (cov, mut names) = covariate_matrix(&formula, &sub, &all).map_err(|e| at(e.to_string()))?;
    let mut x = Array2::<f64>::zeros((cov.nrows(), cov.ncols() + 1));
    x.column_mut(0).iter_mut().zip(&distance).for_each(|(d, s)| *d = *s);
    for (k, col) in cov.columns().into_iter().enumerate() {
        x.column_mut(k + 1).assign(&col);
    }
    names.insert(0, "distance".into());
    let before = balance(x.view(), &names, &treat, None).map_err(|e| at(format!("balance: {e}")))?;
    let after = balance(x.view(), &names, &treat, Some(&matches.weights)).map_err(|e| at(format!("balance: {e}")))?;

    let n_t = treat.iter().filter(|t| **t).count();
    let disc = |t: bool| (0..treat.len()).filter(|&i| treat[i] == t && matches.discarded[i]).count();
    let matched_control = matches.n_controls_matched(&treat);
    let n = SampleSizes {
        all_treated: n_t,
        all_control: treat.len() - n_t,
        matched_treated: matches.n_treated_matched(),
        matched_control,
        unmatched_treated: matches.unmatched_treated.len(),
        unmatched_control: treat.len() - n_t - matched_control - disc(false),
        discarded_treated: disc(true),
        discarded_control: disc(false),
        ess_treated: ess((0..treat.len()).filter(|&i| treat[i]).map(|i| matches.weights[i])),
        ess_control: ess((0..treat.len()).filter(|&i| !treat[i]).map(|i| matches.weights[i])),
    };
    let units = (0..treat.len())
        .map(|i| Unit {
            id: ids[i].clone(),
            treated: treat[i],
            distance: distance[i],
            weight: matches.weights[i],
            subclass: matches.subclass[i].map(|s| ids[matches.sets[s].treated].clone()),
            discarded: matches.discarded[i],
        })
        .collect();
    if matches.controls_short {
        notes.push(format!("fewer controls were available than {} per treated unit; some got fewer", spec.ratio));
    }
    Ok(MatchRun {
        n,
        propensity,
        distance_label,
        matches: matches
            .sets
            .iter()
            .map(|s| MatchedSetIds {
                treated: ids[s.treated].clone(),
                controls: s.controls.iter().map(|&c| ids[c].clone()).collect(),
            })
            .collect(),
        unmatched_treated: matches.unmatched_treated.iter().map(|&i| ids[i].clone()).collect(),
        balance: BalancePair { before: before.rows, after: after.rows },
        units,
        notes,
    })
}
