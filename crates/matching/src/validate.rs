//! Validation before computing: a [`MatchSpec`] against its table (options in range, columns present and of
//! the right type, formula parsed), and the inputs of a matching [`Problem`] shared by every method.

use psmeval_frame::{Formula, Table, TableError, parse_formula};

use crate::error::{MatchError, MethodError, SpecField};
use crate::matches::Problem;
use crate::nearest::Order;
use crate::spec::{MatchSpec, Method};

impl MatchSpec {
    /// Checks the spec against `table` without computing anything: the formula parses and has fixed effects
    /// only, `ratio` is at least 1, `caliper` is positive and finite, the options can be combined, and every
    /// column named by `formula`, `distance_column`, `exact` and `mahvars` exists (numeric where a number is
    /// needed). [`crate::match_units`] runs the same checks first.
    pub fn validate(&self, table: &Table) -> Result<(), MatchError> {
        options(self, table).map(|_| ())
    }
}

/// The checks of [`MatchSpec::validate`] plus one treatment indicator and one id per row; returns the
/// parsed formula.
pub(crate) fn spec(spec: &MatchSpec, table: &Table, treat: &[bool], n_ids: usize) -> Result<Formula, MatchError> {
    let formula = options(spec, table)?;
    let rows = table.n_rows();
    for (what, len) in [("treat", treat.len()), ("ids", n_ids)] {
        if len != rows {
            return Err(MatchError::Length { what, len, rows });
        }
    }
    Ok(formula)
}

fn options(spec: &MatchSpec, table: &Table) -> Result<Formula, MatchError> {
    let formula = parse_formula(&spec.formula).map_err(|error| MatchError::Formula { error })?;
    formula.require_fixed_only().map_err(|error| MatchError::Formula { error })?;
    if spec.ratio == 0 {
        return Err(MatchError::InvalidRatio { ratio: spec.ratio });
    }
    if let Some(c) = spec.caliper
        && !(c.is_finite() && c > 0.0)
    {
        return Err(MatchError::InvalidCaliper { caliper: c });
    }
    if !spec.mahvars.is_empty() {
        if spec.method == Method::Optimal {
            return Err(MatchError::Unsupported {
                field: SpecField::Mahvars,
                with: "method = \"optimal\"",
                advice: "use method = \"nearest\" for Mahalanobis matching, or drop mahvars",
            });
        }
        if spec.order == Order::Closest && !spec.replace {
            return Err(MatchError::Unsupported {
                field: SpecField::Mahvars,
                with: "order = \"closest\"",
                advice: "choose another order (largest, smallest, random or data), or drop mahvars",
            });
        }
    }
    let named = formula
        .columns()
        .into_iter()
        .map(|c| (SpecField::Formula, c))
        .chain(spec.distance_column.iter().map(|c| (SpecField::DistanceColumn, c.clone())))
        .chain(spec.exact.iter().map(|c| (SpecField::Exact, c.clone())))
        .chain(spec.mahvars.iter().map(|c| (SpecField::Mahvars, c.clone())));
    for (field, column) in named {
        table.column(&column).map_err(|e| table_error(field, e))?;
    }
    for (field, column) in spec
        .distance_column
        .iter()
        .map(|c| (SpecField::DistanceColumn, c))
        .chain(spec.mahvars.iter().map(|c| (SpecField::Mahvars, c)))
    {
        table.numeric(column).map_err(|e| table_error(field, e))?;
    }
    Ok(formula)
}

/// A table look-up error as a [`MatchError`] naming the option that asked for the column.
pub(crate) fn table_error(field: SpecField, e: TableError) -> MatchError {
    match e {
        TableError::MissingColumn { name, available } => MatchError::MissingColumn { field, column: name, available },
        TableError::NotNumeric { name, row, value } => MatchError::NotNumeric { field, column: name, row, value },
        other => MatchError::Data { error: other.into() },
    }
}

/// Checks lengths, finiteness and group sizes shared by every method.
pub(crate) fn problem(problem: &Problem<'_>) -> Result<(), MethodError> {
    let n = problem.len();
    if problem.distance.len() != n {
        return Err(MethodError::Length { what: "distance", len: problem.distance.len(), expected: n });
    }
    if let Some(ex) = problem.exact
        && ex.len() != n
    {
        return Err(MethodError::Length { what: "exact", len: ex.len(), expected: n });
    }
    if let Some(m) = problem.mahvars
        && m.nrows() != n
    {
        return Err(MethodError::Length { what: "mahvars", len: m.nrows(), expected: n });
    }
    if let Some((index, &value)) = problem.distance.iter().enumerate().find(|(_, d)| !d.is_finite()) {
        return Err(MethodError::NonFiniteDistance { index, value });
    }
    if !problem.treat.iter().any(|&t| t) {
        return Err(MethodError::NoTreated);
    }
    if problem.treat.iter().all(|&t| t) {
        return Err(MethodError::NoControls);
    }
    Ok(())
}
