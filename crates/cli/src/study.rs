//! The study file of `psmeval evaluate`: a TOML description of an evaluation ([`Study`], exactly as written)
//! and its validation against the data ([`Study::validate`]), which reports every problem with the field's
//! name before anything is computed.
//!
//! ```toml
//! [data]
//! schools = "schools.csv"        # relative paths are relative to the study file
//! pupils = "pupils.csv"
//! school_id = "school_id"        # id column, in both tables
//! treatment = "lead"             # 0/1 column of the school table
//! year = "year"                  # year column of the pupil table
//!
//! [matching]                     # the options of `psmeval match`, same names
//! formula = "lead ~ pct_fsm + pct_eal + pct_sen + idaci + prior_attainment + urban + factor(region)"
//! ratio = 20
//!
//! [years]
//! first = 2013
//! last = 2017
//! programme_start = 2015         # first year the programme could have had an effect
//!
//! [model]
//! covariates = ["female", "fsm", "eal", "sen", "prior"]
//! random_slope_year = false
//!
//! [[outcomes]]
//! name = "KS2 maths"
//! column = "maths"
//! filter = { key_stage = 2 }
//! standardize_within_year = true
//!
//! [[subgroups]]
//! name = "FSM pupils"
//! filter = { fsm = 1 }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use psmeval_frame::{Column, Table, parse_formula};
use serde::{Deserialize, Serialize};

use crate::args::MatchSpec;
use crate::error::InputError;

/// A study file as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    /// Optional title for the report.
    #[serde(default)]
    pub title: Option<String>,
    /// Input tables and their key columns.
    pub data: DataSpec,
    /// Propensity model and matching options.
    pub matching: MatchSpec,
    /// The years analysed.
    pub years: YearsSpec,
    /// Pupil covariates and model options.
    #[serde(default)]
    pub model: ModelSpec,
    /// Outcomes to analyse (at least one).
    pub outcomes: Vec<OutcomeSpec>,
    /// Subgroups in which every outcome is analysed again.
    #[serde(default)]
    pub subgroups: Vec<SubgroupSpec>,
    /// How effect sizes are defined.
    #[serde(default)]
    pub effect_size: EffectSizeSpec,
}

/// `[data]`: the tables.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// School table (CSV or Parquet), one row per school.
    pub schools: PathBuf,
    /// Pupil table (CSV or Parquet), one row per pupil and assessment.
    pub pupils: PathBuf,
    /// School id column, present in both tables.
    #[serde(default = "default_school_id")]
    pub school_id: String,
    /// Treatment column (0/1) of the school table.
    #[serde(default = "default_treatment")]
    pub treatment: String,
    /// Year column of the pupil table.
    #[serde(default = "default_year")]
    pub year: String,
}

fn default_school_id() -> String {
    "school_id".into()
}
fn default_treatment() -> String {
    "lead".into()
}
fn default_year() -> String {
    "year".into()
}

/// `[years]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct YearsSpec {
    /// First year analysed (as the year the academic year ends in: 2013 = 2012/13).
    pub first: i64,
    /// Last year analysed.
    pub last: i64,
    /// First year in which the programme could have had an effect.
    pub programme_start: i64,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Pupil-level covariates added to the model.
    #[serde(default)]
    pub covariates: Vec<String>,
    /// Add a random slope on (centred) year per school: `(1 + year_c | school)`.
    #[serde(default)]
    pub random_slope_year: bool,
    /// Full mixed-model formula overriding the default; must contain the terms `factor(<year>)` and `group`
    /// (the lead indicator psmeval adds), e.g. `maths_z ~ factor(year) * group + fsm + (1 | school_id)`.
    /// The response is named `outcome` in this formula.
    #[serde(default)]
    pub formula: Option<String>,
    /// Fit by maximum likelihood instead of REML.
    #[serde(default)]
    pub ml: bool,
}

/// `[[outcomes]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeSpec {
    /// Name used in tables and figures.
    pub name: String,
    /// Column of the pupil table.
    pub column: String,
    /// Equality filters on pupil columns, e.g. `{ key_stage = 2 }`.
    #[serde(default)]
    pub filter: BTreeMap<String, FilterValue>,
    /// Standardize the outcome within each year (needed across the 2016 assessment break).
    #[serde(default)]
    pub standardize_within_year: bool,
    /// `gaussian` (linear mixed model) or `binomial` (0/1 outcome).
    #[serde(default)]
    pub family: Family,
}

/// Outcome families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Continuous outcome: linear mixed model.
    #[default]
    Gaussian,
    /// 0/1 outcome: logistic mixed model.
    Binomial,
}

/// A filter value: a number or a text.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum FilterValue {
    /// Matches numeric columns.
    Number(f64),
    /// Matches text columns.
    Text(String),
}

/// `[[subgroups]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubgroupSpec {
    /// Name used in tables.
    pub name: String,
    /// Equality filters on pupil columns.
    pub filter: BTreeMap<String, FilterValue>,
}

/// `[effect_size]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EffectSizeSpec {
    /// `eef`: the adjusted difference divided by the total SD (school + pupil variance) of a model without
    /// covariates; `residual`: divided by the pupil-level residual SD of the same model.
    #[serde(default)]
    pub definition: EffectSizeDefinition,
}

/// Effect-size definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EffectSizeDefinition {
    /// EEF's convention (total SD of an unconditional model).
    #[default]
    Eef,
    /// Pupil-level residual SD of an unconditional model.
    Residual,
}

impl Study {
    /// Parses a study file's text; `path` is used in messages and to resolve relative table paths.
    pub fn parse(text: &str, path: &Path) -> Result<Study, InputError> {
        let mut study: Study = toml::from_str(text)
            .map_err(|e| InputError::new(format!("{}: {}", path.display(), e.to_string().trim())))?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [&mut study.data.schools, &mut study.data.pupils] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(study)
    }

    /// Checks everything that can be checked without the data: formulas, option ranges, names.
    pub fn check_static(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let m = &self.matching;
        match parse_formula(&m.formula) {
            Ok(f) => {
                if f.require_fixed_only().is_err() {
                    problems
                        .push("matching.formula: random-effects terms are not allowed in a propensity model".into());
                }
                if f.response.label() != self.data.treatment {
                    problems.push(format!(
                        "matching.formula: the response `{}` must be the treatment column `{}` (data.treatment)",
                        f.response.label(),
                        self.data.treatment
                    ));
                }
            }
            Err(e) => problems.push(format!("matching.formula: {e}")),
        }
        if m.ratio == 0 {
            problems.push("matching.ratio: must be at least 1".into());
        }
        if let Some(c) = m.caliper
            && !(c.is_finite() && c > 0.0)
        {
            problems.push(format!("matching.caliper: must be a positive number of SDs, not {c}"));
        }
        let y = &self.years;
        if y.first > y.last {
            problems.push(format!("years.first ({}) is after years.last ({})", y.first, y.last));
        }
        if y.programme_start <= y.first || y.programme_start > y.last {
            problems.push(format!(
                "years.programme_start ({}) must be after years.first ({}) and at most years.last ({}): at least one \
                 pre-programme and one programme year are needed",
                y.programme_start, y.first, y.last
            ));
        }
        if self.outcomes.is_empty() {
            problems.push("outcomes: at least one [[outcomes]] entry is needed".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, o) in self.outcomes.iter().enumerate() {
            if !names.insert(o.name.clone()) {
                problems.push(format!("outcomes[{i}].name: `{}` is used twice", o.name));
            }
        }
        if let Some(f) = &self.model.formula {
            match parse_formula(f) {
                Ok(parsed) => {
                    let labels: Vec<String> = parsed.fixed.terms.iter().map(|t| t.label()).collect();
                    let year = format!("factor({})", self.data.year);
                    let interaction = format!("{year}:group");
                    if !labels.contains(&interaction) {
                        problems.push(format!(
                            "model.formula: must contain the interaction `{interaction}` (write `{year} * group`)"
                        ));
                    }
                    if parsed.response.label() != "outcome" {
                        problems.push("model.formula: the response must be written `outcome`".into());
                    }
                    if parsed.random.is_empty() {
                        problems.push("model.formula: needs a random-effects term such as `(1 | school_id)`".into());
                    }
                }
                Err(e) => problems.push(format!("model.formula: {e}")),
            }
        }
        problems
    }

    /// Checks the study against the loaded tables: columns exist and have usable types, years are present.
    pub fn check_data(&self, schools: &Table, pupils: &Table) -> Vec<String> {
        let mut problems = Vec::new();
        let d = &self.data;
        let need = |t: &Table, table: &str, field: &str, col: &str, problems: &mut Vec<String>| {
            if !t.has(col) {
                problems.push(format!(
                    "{field}: column `{col}` is not in the {table} table (columns: {})",
                    t.names().join(", ")
                ));
            }
        };
        need(schools, "school", "data.school_id", &d.school_id, &mut problems);
        need(pupils, "pupil", "data.school_id", &d.school_id, &mut problems);
        need(schools, "school", "data.treatment", &d.treatment, &mut problems);
        need(pupils, "pupil", "data.year", &d.year, &mut problems);
        if let Ok(f) = parse_formula(&self.matching.formula) {
            for c in f.columns() {
                need(schools, "school", "matching.formula", &c, &mut problems);
            }
        }
        for (field, cols) in [("matching.exact", &self.matching.exact), ("matching.mahvars", &self.matching.mahvars)] {
            for c in cols {
                need(schools, "school", field, c, &mut problems);
            }
        }
        if let Some(c) = &self.matching.distance_column {
            need(schools, "school", "matching.distance_column", c, &mut problems);
        }
        for c in &self.model.covariates {
            need(pupils, "pupil", "model.covariates", c, &mut problems);
            if c == "group" || c == "outcome" {
                problems.push(format!("model.covariates: `{c}` is a name psmeval uses itself; rename the column"));
            }
        }
        for (i, o) in self.outcomes.iter().enumerate() {
            need(pupils, "pupil", &format!("outcomes[{i}].column"), &o.column, &mut problems);
            if let Ok(Column::Text(_)) = pupils.column(&o.column) {
                problems.push(format!("outcomes[{i}].column: `{}` holds text; outcomes must be numeric", o.column));
            }
            check_filter(pupils, &o.filter, &format!("outcomes[{i}].filter"), &mut problems);
        }
        for (i, s) in self.subgroups.iter().enumerate() {
            check_filter(pupils, &s.filter, &format!("subgroups[{i}].filter"), &mut problems);
        }
        if let Ok(years) = pupils.numeric(&d.year) {
            let present: std::collections::BTreeSet<i64> =
                years.iter().filter(|y| y.is_finite()).map(|&y| y as i64).collect();
            for y in self.years.first..=self.years.last {
                if !present.contains(&y) {
                    problems.push(format!(
                        "years: year {y} (between years.first and years.last) has no pupils in column `{}` (years present: {})",
                        d.year,
                        present.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        } else if pupils.has(&d.year) {
            problems.push(format!("data.year: column `{}` must be numeric", d.year));
        }
        problems
    }
}

fn check_filter(pupils: &Table, filter: &BTreeMap<String, FilterValue>, field: &str, problems: &mut Vec<String>) {
    for (col, value) in filter {
        match (pupils.column(col), value) {
            (Err(_), _) => problems.push(format!(
                "{field}: column `{col}` is not in the pupil table (columns: {})",
                pupils.names().join(", ")
            )),
            (Ok(Column::Numeric(_)), FilterValue::Text(t)) => {
                problems.push(format!("{field}: column `{col}` is numeric but the filter value `{t}` is text"))
            }
            (Ok(Column::Text(_)), FilterValue::Number(x)) => {
                problems.push(format!("{field}: column `{col}` holds text but the filter value {x} is a number"))
            }
            _ => {}
        }
    }
}

/// Rows of `table` that pass every equality filter.
pub fn filter_rows(table: &Table, filter: &BTreeMap<String, FilterValue>, rows: &[usize]) -> Vec<usize> {
    rows.iter()
        .copied()
        .filter(|&i| {
            filter.iter().all(|(col, value)| match (table.column(col), value) {
                (Ok(Column::Numeric(v)), FilterValue::Number(x)) => v[i] == *x,
                (Ok(Column::Text(v)), FilterValue::Text(t)) => v[i].as_deref() == Some(t.as_str()),
                _ => false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[data]
schools = "schools.csv"
pupils = "pupils.csv"

[matching]
formula = "lead ~ pct_fsm + factor(region)"
ratio = 20

[years]
first = 2013
last = 2017
programme_start = 2015

[model]
covariates = ["fsm"]

[[outcomes]]
name = "KS2 maths"
column = "maths"
filter = { key_stage = 2 }
standardize_within_year = true
"#;

    #[test]
    fn parses_and_resolves_paths() {
        let s = Study::parse(GOOD, Path::new("/studies/mte.toml")).unwrap();
        assert_eq!(s.data.schools, PathBuf::from("/studies/schools.csv"));
        assert_eq!(s.matching.ratio, 20);
        assert_eq!(s.matching.seed, 1);
        assert!(s.check_static().is_empty(), "{:?}", s.check_static());
    }

    #[test]
    fn unknown_fields_are_named() {
        let bad = GOOD.replace("ratio = 20", "ratoi = 20");
        let e = Study::parse(&bad, Path::new("s.toml")).unwrap_err().to_string();
        assert!(e.contains("ratoi") && e.contains("s.toml"), "{e}");
    }

    #[test]
    fn static_problems_name_fields() {
        let bad = GOOD
            .replace("lead ~ pct_fsm", "lead ~ pct_fsm +")
            .replace("ratio = 20", "ratio = 0\ncaliper = -1")
            .replace("programme_start = 2015", "programme_start = 2013");
        let s = Study::parse(&bad, Path::new("s.toml")).unwrap();
        let p = s.check_static().join("\n");
        for field in ["matching.formula", "matching.ratio", "matching.caliper", "years.programme_start"] {
            assert!(p.contains(field), "{field} missing from:\n{p}");
        }
    }

    #[test]
    fn data_problems_name_fields_and_columns() {
        let s = Study::parse(GOOD, Path::new("s.toml")).unwrap();
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
        let p = s.check_data(&schools, &pupils).join("\n");
        assert!(p.contains("matching.formula: column `region`"), "{p}");
        assert!(p.contains("model.covariates: column `fsm`"), "{p}");
        assert!(p.contains("outcomes[0].filter: column `key_stage`"), "{p}");
        assert!(p.contains("year 2015"), "{p}");
    }

    #[test]
    fn filters_select_rows() {
        let t = Table::new()
            .with("ks", Column::Numeric(vec![1.0, 2.0, 2.0]))
            .unwrap()
            .with("g", Column::Text(vec![Some("a".into()), Some("b".into()), None]))
            .unwrap();
        let f: BTreeMap<String, FilterValue> = [("ks".to_string(), FilterValue::Number(2.0))].into();
        assert_eq!(filter_rows(&t, &f, &[0, 1, 2]), [1, 2]);
        let g: BTreeMap<String, FilterValue> = [("g".to_string(), FilterValue::Text("b".into()))].into();
        assert_eq!(filter_rows(&t, &g, &[0, 1, 2]), [1]);
    }
}
