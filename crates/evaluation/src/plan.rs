//! Validation of a study before anything is computed: a [`Study`] becomes a [`Plan`] (formulas parsed once,
//! options in range) and the plan is checked against the loaded tables (columns exist with usable types,
//! years present). Every problem is collected, each naming the study-file field at fault, so a user fixes
//! them all in one pass; a study with any problem computes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use psmeval_frame::{Column, Formula, FormulaError, Table, TableError, parse_formula};
use thiserror::Error;

use crate::study::{ClusterBy, Family, FilterValue, InferenceMethod, PermuteAmong, RowFilter, Study, file_stem};

/// The most contrast schools per lead school a study may ask for.
pub const MAX_RATIO: usize = 10_000;
/// The longest span of years a study may cover.
pub const MAX_YEARS: i64 = 100;
/// The academic years a study may name.
pub const YEAR_RANGE: std::ops::RangeInclusive<i64> = 1900..=2200;
/// The most bootstrap or randomization draws a study may ask for.
pub const MAX_DRAWS: usize = 1_000_000;

/// One problem of a study: the field at fault and a sentence that starts with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The study-file field, e.g. `matching.ratio` or `outcomes[1].column`.
    pub field: String,
    /// What is wrong, starting with the field's name.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A study that cannot be run: its TOML does not parse, or one or more fields are wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The text is not a valid study file (TOML syntax, an unknown field, a value of the wrong type).
    #[error("{0}")]
    Syntax(String),
    /// Fields with invalid values; every problem found is listed.
    #[error("{}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<Problem>),
}

impl PlanError {
    pub(crate) fn syntax(message: impl Into<String>) -> PlanError {
        PlanError::Syntax(message.into())
    }
}

/// A study whose fields have been checked, with its formulas parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The study as written.
    pub study: Study,
    /// The propensity model's formula.
    pub matching_formula: Formula,
    /// The user's impact-model formula (`[model] formula`), when given.
    pub model_formula: Option<Formula>,
}

/// Collects problems, each as a sentence that starts with its field.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, field: &str, message: String) {
        self.0.push(Problem { field: field.to_string(), message });
    }

    fn into_result(self) -> Result<(), PlanError> {
        if self.0.is_empty() { Ok(()) } else { Err(PlanError::Invalid(self.0)) }
    }
}

impl Plan {
    /// Checks everything that can be checked without the data: formulas, option ranges, names.
    pub fn new(study: Study) -> Result<Plan, PlanError> {
        let mut problems = Problems::default();
        let m = &study.matching;
        let matching_formula = parse_formula(&m.formula);
        match &matching_formula {
            Ok(f) => {
                if f.require_fixed_only().is_err() {
                    problems.push(
                        "matching.formula",
                        "matching.formula: random-effects terms are not allowed in a propensity model".into(),
                    );
                }
                if f.response.label() != study.data.treatment {
                    problems.push(
                        "matching.formula",
                        format!(
                            "matching.formula: the response `{}` must be the treatment column `{}` (data.treatment)",
                            f.response.label(),
                            study.data.treatment
                        ),
                    );
                }
            }
            Err(e) => problems.push("matching.formula", format!("matching.formula: {e}")),
        }
        if m.ratio == 0 {
            problems.push("matching.ratio", "matching.ratio: must be at least 1".into());
        } else if m.ratio > MAX_RATIO {
            problems.push(
                "matching.ratio",
                format!("matching.ratio: {} is more than {MAX_RATIO} contrast schools per lead school", m.ratio),
            );
        }
        if let Some(c) = m.caliper
            && !(c.is_finite() && c > 0.0)
        {
            problems.push("matching.caliper", format!("matching.caliper: must be a positive number of SDs, not {c}"));
        }
        let y = &study.years;
        if y.first > y.last {
            problems.push("years.first", format!("years.first ({}) is after years.last ({})", y.first, y.last));
        } else if !(YEAR_RANGE.contains(&y.first) && YEAR_RANGE.contains(&y.last)) {
            problems.push("years.first", format!("years: {} to {} is outside the years 1900 to 2200", y.first, y.last));
        } else if y.last.checked_sub(y.first).is_none_or(|span| span >= MAX_YEARS) {
            problems.push("years.last", format!("years: {} to {} spans more than {MAX_YEARS} years", y.first, y.last));
        }
        if y.programme_start <= y.first || y.programme_start > y.last {
            problems.push(
                "years.programme_start",
                format!(
                    "years.programme_start ({}) must be after years.first ({}) and at most years.last ({}): at least \
                     one pre-programme and one programme year are needed",
                    y.programme_start, y.first, y.last
                ),
            );
        }
        if study.outcomes.is_empty() {
            problems.push("outcomes", "outcomes: at least one [[outcomes]] entry is needed".into());
        }
        let mut names = BTreeSet::new();
        let mut stems: BTreeMap<String, &str> = BTreeMap::new();
        for (i, o) in study.outcomes.iter().enumerate() {
            let field = format!("outcomes[{i}].name");
            if !names.insert(o.name.clone()) {
                problems.push(&field, format!("{field}: `{}` is used twice", o.name));
                continue;
            }
            let stem = file_stem(&o.name);
            if stem.is_empty() {
                problems.push(&field, format!("{field}: `{}` needs at least one letter or digit", o.name));
            } else if let Some(other) = stems.insert(stem.clone(), &o.name) {
                problems.push(
                    &field,
                    format!(
                        "{field}: `{}` and `{other}` would write the same figure files (`{stem}`); give names that \
                         differ in more than case or punctuation",
                        o.name
                    ),
                );
            }
        }
        let primaries: Vec<&str> = study.outcomes.iter().filter(|o| o.primary).map(|o| o.name.as_str()).collect();
        if primaries.len() > 1 {
            problems.push(
                "outcomes",
                format!(
                    "outcomes: {} are all marked primary = true; one outcome is the primary one",
                    primaries.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if study.inference.cluster == ClusterBy::MatchedSet && m.replace {
            problems.push(
                "inference.cluster",
                "inference.cluster: `matched_set` needs matching without replacement (with replacement a contrast \
                 school can be in several matched sets); cluster by `school` instead"
                    .into(),
            );
        }
        if study.inference.method == InferenceMethod::Permutation {
            let n = study.inference.permutations;
            if !(99..=MAX_DRAWS).contains(&n) {
                problems.push(
                    "inference.permutations",
                    format!("inference.permutations: {n} re-drawn assignments; give between 99 and {MAX_DRAWS}"),
                );
            }
            if study.inference.permute == PermuteAmong::MatchedSet && m.replace {
                problems.push(
                    "inference.permute",
                    "inference.permute: `matched_set` needs matching without replacement (with replacement a \
                     contrast school can be in several matched sets); permute among `all` matched schools instead"
                        .into(),
                );
            }
        }
        if study.inference.bootstrap_draws > MAX_DRAWS {
            problems.push(
                "inference.bootstrap_draws",
                format!(
                    "inference.bootstrap_draws: {} draws are more than the {MAX_DRAWS} psmeval runs",
                    study.inference.bootstrap_draws
                ),
            );
        }
        if study.inference.bootstrap_draws < 99 {
            problems.push(
                "inference.bootstrap_draws",
                format!(
                    "inference.bootstrap_draws: {} draws are too few for a bootstrap p value; give at least 99",
                    study.inference.bootstrap_draws
                ),
            );
        }
        let model_formula: Option<Result<Formula, FormulaError>> = study.model.formula.as_deref().map(parse_formula);
        match &model_formula {
            Some(Ok(parsed)) => {
                let labels: Vec<String> = parsed.fixed.terms.iter().map(|t| t.label()).collect();
                let year = format!("factor({})", study.data.year);
                let interaction = format!("{year}:group");
                if !labels.contains(&interaction) {
                    problems.push(
                        "model.formula",
                        format!("model.formula: must contain the interaction `{interaction}` (write `{year} * group`)"),
                    );
                }
                if parsed.response.label() != "outcome" {
                    problems.push("model.formula", "model.formula: the response must be written `outcome`".into());
                }
                if parsed.random.is_empty() {
                    problems.push(
                        "model.formula",
                        "model.formula: needs a random-effects term such as `(1 | school_id)`".into(),
                    );
                }
            }
            Some(Err(e)) => problems.push("model.formula", format!("model.formula: {e}")),
            None => {}
        }
        problems.into_result()?;
        Ok(Plan {
            matching_formula: matching_formula.expect("checked above"),
            model_formula: model_formula.map(|f| f.expect("checked above")),
            study,
        })
    }

    /// Checks the plan against the loaded tables: columns exist and have usable types, years are present.
    pub fn check_data(&self, schools: &Table, pupils: &Table) -> Result<(), PlanError> {
        let study = &self.study;
        let mut problems = Problems::default();
        let d = &study.data;
        let need = |t: &Table, table: &str, field: &str, col: &str, problems: &mut Problems| match t.column(col) {
            Ok(_) => {}
            Err(TableError::MissingColumn { available, .. }) => problems
                .push(field, format!("{field}: column `{col}` is not in the {table} table (columns: {available})")),
            Err(e) => problems.push(field, format!("{field}: {table} table: {e}")),
        };
        need(schools, "school", "data.school_id", &d.school_id, &mut problems);
        need(pupils, "pupil", "data.school_id", &d.school_id, &mut problems);
        need(schools, "school", "data.treatment", &d.treatment, &mut problems);
        need(pupils, "pupil", "data.year", &d.year, &mut problems);
        for c in self.matching_formula.columns() {
            need(schools, "school", "matching.formula", &c, &mut problems);
        }
        for (field, cols) in [("matching.exact", &study.matching.exact), ("matching.mahvars", &study.matching.mahvars)]
        {
            for c in cols {
                need(schools, "school", field, c, &mut problems);
            }
        }
        if let Some(c) = &study.matching.distance_column {
            need(schools, "school", "matching.distance_column", c, &mut problems);
        }
        for c in &study.model.covariates {
            need(pupils, "pupil", "model.covariates", c, &mut problems);
            if c == "group" || c == "outcome" {
                problems.push(
                    "model.covariates",
                    format!("model.covariates: `{c}` is a name psmeval uses itself; rename the column"),
                );
            }
        }
        if let Some(f) = &self.model_formula {
            // `outcome`, `group` and `year_c` are the columns psmeval builds itself; every other name must be
            // a pupil column.
            for c in f.columns() {
                if !["outcome", "group", "year_c"].contains(&c.as_str()) {
                    need(pupils, "pupil", "model.formula", &c, &mut problems);
                }
            }
        }
        // The rows a filter selects are visited in order without a list of them (the national pupil table has 6
        // million rows).
        let n_pupils = pupils.n_rows();
        for (i, o) in study.outcomes.iter().enumerate() {
            let field = format!("outcomes[{i}].column");
            need(pupils, "pupil", &field, &o.column, &mut problems);
            let filter_ok = check_filter(pupils, &o.filter, &format!("outcomes[{i}].filter"), &mut problems);
            let test = &RowFilter::new(pupils, &o.filter);
            let rows = || (0..n_pupils).filter(move |&r| test.matches(r));
            let no_rows = rows().next().is_none();
            if filter_ok && no_rows {
                let field = format!("outcomes[{i}].filter");
                problems.push(&field, format!("{field}: selects no pupils ({})", describe_filter(&o.filter)));
            }
            match pupils.column(&o.column) {
                Ok(Column::Text(_)) => {
                    problems.push(&field, format!("{field}: `{}` holds text; outcomes must be numeric", o.column))
                }
                Ok(Column::Numeric(v)) if filter_ok => {
                    let present = || rows().map(|r| (r, v[r])).filter(|(_, x)| !x.is_nan());
                    if present().next().is_none() && !no_rows {
                        problems.push(
                            &field,
                            format!("{field}: `{}` is missing for every pupil the filter selects", o.column),
                        );
                    }
                    if o.family == Family::Binomial
                        && let Some((r, x)) = present().find(|(_, x)| *x != 0.0 && *x != 1.0)
                    {
                        problems.push(
                            &field,
                            format!(
                                "{field}: family = \"binomial\" needs a 0/1 outcome but `{}` holds {x} (row {}); use \
                                 family = \"gaussian\" for a score",
                                o.column,
                                r + 1
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
        for (i, s) in study.subgroups.iter().enumerate() {
            let field = format!("subgroups[{i}].filter");
            if check_filter(pupils, &s.filter, &field, &mut problems) && {
                let test = RowFilter::new(pupils, &s.filter);
                !(0..n_pupils).any(|r| test.matches(r))
            } {
                problems.push(&field, format!("{field}: selects no pupils ({})", describe_filter(&s.filter)));
            }
        }
        if let Ok(years) = pupils.numeric(&d.year) {
            // Years repeat row after row: each run is looked up once.
            let mut present: BTreeSet<i64> = BTreeSet::new();
            let mut last = f64::NAN;
            for &y in years {
                if y.is_finite() && y != last {
                    present.insert(y as i64);
                    last = y;
                }
            }
            for y in study.years.first..=study.years.last {
                if !present.contains(&y) {
                    problems.push(
                        "years",
                        format!(
                            "years: year {y} (between years.first and years.last) has no pupils in column `{}` \
                             (years present: {})",
                            d.year,
                            present.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
        } else if pupils.has(&d.year) {
            problems.push("data.year", format!("data.year: column `{}` must be numeric", d.year));
        }
        problems.into_result()
    }

    /// The years analysed, first to last.
    pub fn years(&self) -> Vec<i64> {
        (self.study.years.first..=self.study.years.last).collect()
    }
}

/// Checks a filter's columns and value types; true when it can be applied.
fn check_filter(pupils: &Table, filter: &BTreeMap<String, FilterValue>, field: &str, problems: &mut Problems) -> bool {
    let before = problems.0.len();
    for (col, value) in filter {
        match (pupils.column(col), value) {
            (Err(TableError::MissingColumn { available, .. }), _) => problems
                .push(field, format!("{field}: column `{col}` is not in the pupil table (columns: {available})")),
            (Err(e), _) => problems.push(field, format!("{field}: pupil table: {e}")),
            (Ok(Column::Numeric(_)), FilterValue::Text(t)) => {
                problems.push(field, format!("{field}: column `{col}` is numeric but the filter value `{t}` is text"))
            }
            (Ok(Column::Text(_)), FilterValue::Number(x)) => {
                problems.push(field, format!("{field}: column `{col}` holds text but the filter value {x} is a number"))
            }
            _ => {}
        }
    }
    problems.0.len() == before
}

/// `key_stage = 2, region = "London"`.
fn describe_filter(filter: &BTreeMap<String, FilterValue>) -> String {
    filter
        .iter()
        .map(|(c, v)| match v {
            FilterValue::Number(x) => format!("{c} = {x}"),
            FilterValue::Text(t) => format!("{c} = \"{t}\""),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::tests::GOOD;

    fn plan(text: &str) -> Result<Plan, PlanError> {
        Plan::new(Study::from_toml(text).unwrap())
    }

    #[test]
    fn a_good_study_plans() {
        let p = plan(GOOD).unwrap();
        assert_eq!(p.matching_formula.response.label(), "lead");
        assert_eq!(p.years(), [2013, 2014, 2015, 2016, 2017]);
    }

    #[test]
    fn static_problems_name_fields() {
        let bad = GOOD
            .replace("lead ~ pct_fsm", "lead ~ pct_fsm +")
            .replace("ratio = 20", "ratio = 0\ncaliper = -1")
            .replace("programme_start = 2015", "programme_start = 2013");
        let Err(PlanError::Invalid(problems)) = plan(&bad) else { panic!("not refused") };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["matching.formula", "matching.ratio", "matching.caliper", "years.programme_start"]);
        assert!(problems.iter().all(|p| p.message.starts_with(&p.field)));
    }

    #[test]
    fn limits_and_file_names_are_checked_before_computing() {
        let bad = GOOD
            .replace("ratio = 20", "ratio = 9223372036854775807")
            .replace("first = 2013", "first = -9223372036854775808")
            .replace("last = 2017", "last = 9223372036854775807");
        let e = plan(&bad).unwrap_err().to_string();
        assert!(e.contains("matching.ratio: 9223372036854775807 is more than 10000"), "{e}");
        assert!(e.contains("outside the years 1900 to 2200"), "{e}");
        let e = plan(&GOOD.replace("first = 2013", "first = 1913")).unwrap_err().to_string();
        assert!(e.contains("spans more than 100 years"), "{e}");
        let twice = format!("{GOOD}\n[[outcomes]]\nname = \"ks2  MATHS!\"\ncolumn = \"maths\"\n");
        let e = plan(&twice).unwrap_err().to_string();
        assert!(e.contains("would write the same figure files (`ks2-maths`)"), "{e}");
        assert_eq!(file_stem("KS2 maths (FSM)"), "ks2-maths-fsm");
        let two = format!(
            "{}\n[[outcomes]]\nname = \"KS1 maths\"\ncolumn = \"maths\"\nprimary = true\n",
            GOOD.replace("name = \"KS2 maths\"", "name = \"KS2 maths\"\nprimary = true")
        );
        let e = plan(&two).unwrap_err().to_string();
        assert!(e.contains("`KS2 maths`, `KS1 maths` are all marked primary = true"), "{e}");
    }

    #[test]
    fn data_problems_name_fields_and_columns() {
        let p = plan(GOOD).unwrap();
        let schools = Table::new()
            .with("school_id", Column::Numeric(vec![1.0, 2.0]))
            .unwrap()
            .with("lead", Column::Numeric(vec![0.0, 1.0]))
            .unwrap()
            .with("pct_fsm", Column::Numeric(vec![1.0, 2.0]))
            .unwrap();
        let pupils = Table::new()
            .with("school_id", Column::Numeric(vec![1.0, 2.0]))
            .unwrap()
            .with("year", Column::Numeric(vec![2013.0, 2014.0]))
            .unwrap()
            .with("maths", Column::Numeric(vec![1.0, 2.0]))
            .unwrap();
        let e = p.check_data(&schools, &pupils).unwrap_err().to_string();
        assert!(e.contains("matching.formula: column `region`"), "{e}");
        assert!(e.contains("model.covariates: column `fsm`"), "{e}");
        assert!(e.contains("outcomes[0].filter: column `key_stage`"), "{e}");
        assert!(e.contains("year 2015"), "{e}");
    }
}
