//! The study schema: a TOML description of an evaluation ([`Study`], exactly as written). Validation, which
//! names the field of every problem before anything is computed, is [`crate::plan`]'s.
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
//! cohort_random_effect = true    # (1 | school_id:year) in linear and logistic models
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
use std::path::PathBuf;

use psmeval_frame::{Column, Table};
use psmeval_matching::MatchSpec;
pub use psmeval_multilevel::Family;
use serde::{Deserialize, Serialize};

use crate::plan::PlanError;

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
    /// How standard errors, confidence intervals and p values are computed.
    #[serde(default)]
    pub inference: InferenceSpec,
    /// The simulated design of `psmeval power` (ignored by `evaluate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<SimulationSpec>,
}

/// `[simulation]`: the design `psmeval power` simulates. Years come from `[years]`; the analysis is the
/// study's own (matching, model, inference). Every field is optional: by default (`from = "data"`) the
/// fields not given are estimated from the study's own data and fitted impact model (see
/// [`crate::design`]); with `from = "defaults"` they are the simulator's defaults and no data are read.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationSpec {
    /// Where the fields not given come from: `data` (default) or `defaults`.
    #[serde(default)]
    pub from: DesignFrom,
    /// Schools in each simulated population (data: the school table's; default 3,000).
    #[serde(default)]
    pub schools: Option<usize>,
    /// Lead (treated) schools among them (data: the school table's; default 47).
    #[serde(default)]
    pub leads: Option<usize>,
    /// Mean pupils per school, year and key stage (default about 35.7, England's 600,000 / 16,800).
    #[serde(default)]
    pub cohort_size: Option<f64>,
    /// SD of the school random intercepts, latent pupil SD units (default 0.30).
    #[serde(default)]
    pub school_sd: Option<f64>,
    /// SD of the school random slopes per year (default 0.04).
    #[serde(default)]
    pub slope_sd: Option<f64>,
    /// SD of school-by-year cohort shocks, latent pupil SD units (default 0.10).
    #[serde(default)]
    pub cohort_sd: Option<f64>,
    /// SD of the pupil-level residual, latent pupil SD units (default 0.72).
    #[serde(default)]
    pub pupil_sd: Option<f64>,
    /// SD of the programme effect across lead schools (default 0; never estimated).
    #[serde(default)]
    pub effect_sd: Option<f64>,
    /// Pre-trend of lead schools per pre-programme year (default 0; never estimated).
    #[serde(default)]
    pub pretrend: Option<f64>,
}

/// Where the design of `psmeval power` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DesignFrom {
    /// The study's own data and fitted impact model.
    #[default]
    Data,
    /// The simulator's defaults (no data read).
    Defaults,
}

/// `[inference]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceSpec {
    /// `cr2` (the default for matching without replacement): cluster-robust CR2 variance with Bell–McCaffrey
    /// small-sample df (linear models); `wild`: wild cluster bootstrap-t p values and test-inversion
    /// intervals (CR2 SEs in every draw); `permutation` (the default for matching with replacement, among
    /// `all` matched schools): randomization inference (treatment re-assigned among the schools of each
    /// matched set, or of all matched schools; p values and test-inversion intervals, CR2 SEs shown);
    /// `model`: the mixed model's own SEs with lmerTest's Satterthwaite df. Logistic models use Wald z tests.
    #[serde(default)]
    pub method: InferenceMethod,
    /// Whether `method` is the default psmeval chose for a design matched with replacement, because the
    /// study file names no method: set by [`Study::from_toml`] (a study file may not set it), kept in
    /// results.json so the report can say why. The design-dependent defaults are applied by
    /// [`Study::from_toml`] only: a `Study` built in code gets exactly the fields it is given.
    #[serde(default)]
    pub replacement_default: bool,
    /// The clusters of the robust variance: `school` (default) or `matched_set` (each treatment school with
    /// its matched contrast schools; needs matching without replacement).
    #[serde(default)]
    pub cluster: ClusterBy,
    /// Draws of the wild cluster bootstrap (`method = "wild"`), at least 99.
    #[serde(default = "default_draws")]
    pub bootstrap_draws: usize,
    /// Weights of the wild cluster bootstrap: `webb` (default) or `rademacher`.
    #[serde(default = "default_weights")]
    pub bootstrap_weights: psmeval_multilevel::BootstrapWeights,
    /// Re-drawn treatment assignments of the randomization inference (`method = "permutation"`), at least 99.
    #[serde(default = "default_draws")]
    pub permutations: usize,
    /// Among which schools the randomization re-assigns the treatment: `matched_set` (the default without
    /// replacement: each matched set keeps one treatment school) or `all` matched schools (the default with
    /// replacement).
    #[serde(default)]
    pub permute: PermuteAmong,
    /// The randomization test's statistic: `estimate` (default; intervals for the lead schools' realized mean
    /// effect) or `studentized` (the estimate over its cluster-robust SE by school, recomputed under every
    /// assignment; for a population-mean effect that varies across schools, at O(schools × p²) per assignment).
    #[serde(default)]
    pub statistic: psmeval_multilevel::Statistic,
    /// Seed of the bootstrap and of the randomization.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_draws() -> usize {
    999
}
fn default_weights() -> psmeval_multilevel::BootstrapWeights {
    psmeval_multilevel::BootstrapWeights::Webb
}
fn default_seed() -> u64 {
    1
}

impl Default for InferenceSpec {
    fn default() -> Self {
        InferenceSpec {
            method: InferenceMethod::default(),
            replacement_default: false,
            cluster: ClusterBy::default(),
            bootstrap_draws: default_draws(),
            bootstrap_weights: default_weights(),
            permutations: default_draws(),
            permute: PermuteAmong::default(),
            statistic: psmeval_multilevel::Statistic::default(),
            seed: default_seed(),
        }
    }
}

/// Inference methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InferenceMethod {
    /// Cluster-robust CR2 with small-sample df.
    #[default]
    Cr2,
    /// Wild cluster bootstrap-t (restricted, CR2 standard errors) with test-inversion intervals.
    Wild,
    /// Randomization inference: the treatment re-assigned among schools, p values and test-inversion
    /// intervals of the GLS estimate (variance parameters at their estimates).
    Permutation,
    /// The model's own variance.
    Model,
}

/// Among which schools the randomization inference re-assigns the treatment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PermuteAmong {
    /// Within each matched set (each set keeps its number of treatment schools).
    #[default]
    MatchedSet,
    /// Among all matched schools.
    All,
}

/// Clusters of the robust variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterBy {
    /// Schools.
    #[default]
    School,
    /// Matched sets.
    MatchedSet,
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Pupil-level covariates added to the model.
    #[serde(default)]
    pub covariates: Vec<String>,
    /// Add a random slope on (centred) year per school: `(1 + year_c | school)`.
    #[serde(default)]
    pub random_slope_year: bool,
    /// Add a random intercept per school and year (cohort), `(1 | school:year)`, to linear and logistic models
    /// (default true): a school's results move from year to year around its long-run level, and without this
    /// term the model treats a school's pupils as independent from one year to the next.
    #[serde(default = "yes")]
    pub cohort_random_effect: bool,
    /// Full mixed-model formula overriding the default; must contain the terms `factor(<year>)` and `group`
    /// (the lead indicator psmeval adds), e.g. `maths_z ~ factor(year) * group + fsm + (1 | school_id)`.
    /// The response is named `outcome` in this formula.
    #[serde(default)]
    pub formula: Option<String>,
    /// Fit by maximum likelihood instead of REML.
    #[serde(default)]
    pub ml: bool,
    /// For every subgroup defined by one 0/1 pupil column equal to 1 (`fsm = 1`), also fit the gap-closing
    /// model `factor(year) * group * fsm` to all pupils (default true; see [`crate::gap_closing`]).
    #[serde(default = "yes")]
    pub gap_closing: bool,
    /// Refit the primary outcome's all-pupils analysis under other random-effect structures, inference,
    /// years and matching (default true; see [`crate::sensitivity`]).
    #[serde(default = "yes")]
    pub sensitivity: bool,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            covariates: Vec::new(),
            random_slope_year: false,
            cohort_random_effect: true,
            formula: None,
            ml: false,
            gap_closing: true,
            sensitivity: true,
        }
    }
}

fn yes() -> bool {
    true
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
    /// The primary outcome (at most one): its all-pupils analysis is the headline's primary analysis and
    /// the others are secondary, with Holm-adjusted p values.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary: bool,
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
    /// Parses a study file's text (TOML). Table paths are kept as written; the caller resolves relative paths
    /// against the study file's folder when it reads the tables.
    ///
    /// A study matched with replacement that names no `[inference] method` gets randomization inference,
    /// and one that names no `permute` re-assigns among `all` matched schools (with replacement the matched
    /// sets overlap): in simulations of the Maths Teacher Exchange design with replacement, CR2 intervals
    /// covered 93.0% and randomization intervals 95.0% (benches/README.md). Without replacement the defaults
    /// stay CR2 and `matched_set`.
    pub fn from_toml(text: &str) -> Result<Study, PlanError> {
        let mut study: Study = toml::from_str(text).map_err(|e| PlanError::syntax(e.to_string().trim()))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| PlanError::syntax(e.to_string().trim()))?;
        let named = |key: &str| table.get("inference").and_then(|t| t.get(key)).is_some();
        if named("replacement_default") {
            return Err(PlanError::syntax(
                "inference.replacement_default is set by psmeval, not by a study file: name the `method` instead",
            ));
        }
        study.inference.replacement_default = study.matching.replace && !named("method");
        if study.inference.replacement_default {
            study.inference.method = InferenceMethod::Permutation;
        }
        if study.matching.replace && !named("permute") {
            study.inference.permute = PermuteAmong::All;
        }
        Ok(study)
    }
}

/// The stem of the file names written for a named outcome (`KS2 maths` → `ks2-maths`): ASCII letters and
/// digits lower-cased, every other run of characters one `-`. Two outcomes of a study must differ in it.
pub fn file_stem(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The rows of `rows` (of `table`) that pass every equality filter.
pub fn filter_rows(table: &Table, filter: &BTreeMap<String, FilterValue>, rows: &[usize]) -> Vec<usize> {
    let test = RowFilter::new(table, filter);
    rows.iter().copied().filter(|&i| test.matches(i)).collect()
}

/// A filter's test of single rows (each column looked up once, not once per row).
#[derive(Debug)]
pub struct RowFilter<'a> {
    tests: Vec<(Option<&'a Column>, &'a FilterValue)>,
}

impl<'a> RowFilter<'a> {
    /// The test of `filter` on `table`'s rows (a column the table lacks matches no row).
    pub fn new(table: &'a Table, filter: &'a BTreeMap<String, FilterValue>) -> RowFilter<'a> {
        RowFilter { tests: filter.iter().map(|(col, value)| (table.column(col).ok(), value)).collect() }
    }

    /// Whether row `i` has every value of the filter.
    pub fn matches(&self, i: usize) -> bool {
        self.tests.iter().all(|(column, value)| match (column, value) {
            (Some(Column::Numeric(v)), FilterValue::Number(x)) => v[i] == *x,
            (Some(Column::Text(v)), FilterValue::Text(t)) => v[i].as_deref() == Some(t.as_str()),
            _ => false,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid study file, shared with the plan's tests.
    pub(crate) const GOOD: &str = r#"
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
    fn parses_with_defaults_and_paths_as_written() {
        let s = Study::from_toml(GOOD).unwrap();
        assert_eq!(s.data.schools, PathBuf::from("schools.csv"));
        assert_eq!(s.data.school_id, "school_id");
        assert_eq!(s.matching.ratio, 20);
        assert_eq!(s.matching.seed, 1);
    }

    #[test]
    fn unknown_fields_are_named() {
        let bad = GOOD.replace("ratio = 20", "ratoi = 20");
        let e = Study::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("ratoi"), "{e}");
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
