//! The entry point, in the spirit of MatchIt's `matchit()`: a [`MatchSpec`] and a table of units in, a
//! [`MatchResult`] out. Validate, keep complete cases, fit the distance, match, check the invariants,
//! compute balance before and after, collect sizes, units and notes.

use ndarray::Array2;
use psmeval_frame::design::{complete_rows, group_codes};
use psmeval_frame::{FrameError, Table, build_model_frame, covariate_matrix};

use crate::balance::{BalanceOptions, balance_before_after};
use crate::error::{MatchError, MethodError, SpecField};
use crate::matches::{Matches, Problem};
use crate::nearest::{Caliper, NearestOptions, nearest};
use crate::optimal::{OptimalOptions, optimal};
use crate::propensity::fit_binomial_glm;
use crate::result::{BalancePair, Id, MatchResult, MatchSampleSizes, MatchedSetIds, PropensitySummary, Unit};
use crate::spec::{MatchSpec, Method};
use crate::validate;

/// Matches the units of `table` (one row per unit) as `spec` says.
///
/// `treat[i]` is row `i`'s treatment indicator (the focal group of the ATT) and `ids[i]` its id, used to
/// name units in the result. The steps, each failing with a [`MatchError`] that names what to change:
///
/// 1. [`MatchSpec::validate`], plus one `treat` and one `ids` entry per row;
/// 2. rows with a missing value in any column used (formula, `distance_column`, `exact`, `mahvars`) are
///    left out, as MatchIt requires complete data, with a note saying how many;
/// 3. the distance: the `distance_column`, or the propensity model `formula` fitted as R's `glm`
///    ([`crate::propensity`]), its score or linear predictor as `link` says;
/// 4. [`nearest`] or [`optimal`] matching with the exact cells, Mahalanobis covariates, caliper (in SDs of
///    the distance) and discarding rule of the spec, and [`Matches::check`] on the result;
/// 5. balance ([`crate::balance`]) on the formula's covariates with every factor level, the distance first
///    (named `distance`, as MatchIt), before (weights 1) and after matching;
/// 6. sample sizes and effective sample sizes from the balance table, the units, and notes.
pub fn match_units<I: Clone + Into<Id>>(
    spec: &MatchSpec,
    table: &Table,
    treat: &[bool],
    ids: &[I],
) -> Result<MatchResult, MatchError> {
    let formula = validate::spec(spec, table, treat, ids.len())?;
    let data = |error: FrameError| MatchError::Data { error };
    let mut used = formula.columns();
    used.extend(spec.exact.iter().cloned());
    used.extend(spec.mahvars.iter().cloned());
    if let Some(c) = &spec.distance_column {
        used.push(c.clone());
    }
    let rows = complete_rows(table, &used).map_err(data)?;
    let mut notes = Vec::new();
    if rows.len() < table.n_rows() {
        notes.push(format!(
            "{} of {} units have a missing value in a matching variable and were left out",
            table.n_rows() - rows.len(),
            table.n_rows()
        ));
    }
    // Complete data (the usual case) is used as it is, without a copy.
    let owned;
    let sub = if rows.len() == table.n_rows() {
        table
    } else {
        owned = table.take_rows(&rows);
        &owned
    };
    let treat: Vec<bool> = rows.iter().map(|&i| treat[i]).collect();
    // Shared ids ([`Id`]): the units, their sets and the sets' lists hold the same one.
    let ids: Vec<Id> = rows.iter().map(|&i| ids[i].clone().into()).collect();
    let all: Vec<usize> = (0..sub.n_rows()).collect();

    let (distance, propensity, distance_label) = match &spec.distance_column {
        Some(c) => (
            sub.numeric(c).map_err(|e| validate::table_error(SpecField::DistanceColumn, e))?.to_vec(),
            None,
            format!("Distance (`{c}`)"),
        ),
        None => {
            let link = spec.link.link();
            let mf = build_model_frame(&formula, sub).map_err(data)?;
            let fit = fit_binomial_glm(mf.x.view(), &mf.x_names, &mf.y, None, link)
                .map_err(|error| MatchError::Propensity { formula: spec.formula.clone(), error })?;
            let linear = spec.link.is_linear();
            let d = if linear { fit.linear_predictor.clone() } else { fit.fitted.clone() };
            let label = if linear { "Linear predictor of the propensity model" } else { "Propensity score" };
            (d, Some(PropensitySummary { formula: spec.formula.clone(), link_name: link, fit }), label.into())
        }
    };
    let exact_codes =
        if spec.exact.is_empty() { None } else { Some(group_codes(sub, &spec.exact, &all).map_err(data)?.0) };
    let mahal = if spec.mahvars.is_empty() {
        None
    } else {
        let mut m = Array2::<f64>::zeros((sub.n_rows(), spec.mahvars.len()));
        for (k, c) in spec.mahvars.iter().enumerate() {
            let v = sub.numeric(c).map_err(|e| validate::table_error(SpecField::Mahvars, e))?;
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
        order: spec.order,
        caliper: spec.caliper.map(Caliper::Sd),
        discard: spec.discard.into(),
        seed: spec.seed,
    };
    let matches: Matches = match spec.method {
        Method::Nearest => nearest(&problem, &opts),
        Method::Optimal => optimal(&problem, &OptimalOptions::from(&opts)),
    }
    .map_err(|error| MatchError::Matching { field: field_at_fault(&error, spec), error })?;
    matches.check(&problem).map_err(|error| MatchError::Invariant { error })?;

    // Balance on the formula's covariates, every factor level shown, with the distance first (as MatchIt).
    let (cov, mut names) = covariate_matrix(&formula, sub, &all).map_err(data)?;
    let mut x = Array2::<f64>::zeros((cov.nrows(), cov.ncols() + 1));
    x.column_mut(0).iter_mut().zip(&distance).for_each(|(d, s)| *d = *s);
    for (k, col) in cov.columns().into_iter().enumerate() {
        x.column_mut(k + 1).assign(&col);
    }
    names.insert(0, "distance".into());
    let bal = |error| MatchError::Balance { error };
    let after_options = BalanceOptions { discarded: Some(&matches.discarded), ..BalanceOptions::default() };
    let (before, after) =
        balance_before_after(x.view(), &names, &treat, &matches.weights, &after_options).map_err(bal)?;

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
    Ok(MatchResult {
        n: MatchSampleSizes::from(&after.n),
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
        notes,
        units,
    })
}

/// The option a method's error points at, if any.
fn field_at_fault(error: &MethodError, spec: &MatchSpec) -> Option<SpecField> {
    match error {
        MethodError::RatioZero => Some(SpecField::Ratio),
        MethodError::InvalidCaliper { .. } => Some(SpecField::Caliper),
        MethodError::NoCommonCell => Some(SpecField::Exact),
        MethodError::NothingMatched if spec.caliper.is_some() => Some(SpecField::Caliper),
        MethodError::NothingMatched if !spec.exact.is_empty() => Some(SpecField::Exact),
        MethodError::NonFiniteDistance { .. } if spec.distance_column.is_some() => Some(SpecField::DistanceColumn),
        MethodError::Unsupported(_) | MethodError::Distance(_) => Some(SpecField::Mahvars),
        MethodError::Support(_) => Some(SpecField::Discard),
        _ => None,
    }
}
