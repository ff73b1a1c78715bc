//! Analysis samples of an evaluation: the pupils of matched schools for one outcome and subgroup, as a
//! [`Table`] with the columns the impact model uses (`outcome`, the year, `group`, the school id, covariates,
//! `year_c`), plus counts for the sample-flow table.
//!
//! Standardization within year uses the whole pupil table (all schools, after the outcome's filter) as the
//! reference, as national standardization does, so lead, contrast and subgroup samples share one scale.

use std::collections::{BTreeMap, HashMap};

use psmeval_frame::{Column, Table};
use serde::{Deserialize, Serialize};

use crate::study::{ClusterBy, OutcomeSpec, RowFilter, Study, SubgroupSpec};

/// A matched school: its group, matching weight and matched set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchedSchool {
    /// True for a treatment (lead) school.
    pub treated: bool,
    /// Matching weight (1 for treated units).
    pub weight: f64,
    /// Index of its matched set (without replacement), if any.
    pub set: Option<u32>,
}

/// Counts of one analysis sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleCounts {
    /// Pupil rows in the years analysed that pass the outcome's and subgroup's filters (all schools).
    pub eligible_rows: usize,
    /// Of those, rows in matched schools.
    pub matched_school_rows: usize,
    /// Rows dropped for a missing outcome or covariate.
    pub dropped_missing: usize,
    /// Rows analysed.
    pub n_pupils: usize,
    /// Schools with at least one analysed pupil.
    pub n_schools: usize,
    /// Of those, treatment schools.
    pub n_treated_schools: usize,
    /// The same flow by year and group (missing data: does dropout differ between lead and contrast?).
    #[serde(default)]
    pub by_year: Vec<YearCounts>,
}

/// Pupils of one year and group in matched schools: all of them, those with the outcome recorded, those
/// analysed (outcome and every covariate recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YearCounts {
    /// The year.
    pub year: i64,
    /// Treatment (lead) schools' pupils.
    pub treated: bool,
    /// Pupil rows in matched schools.
    pub pupils: usize,
    /// Of those, with the outcome recorded.
    pub with_outcome: usize,
    /// Of those, analysed.
    pub analysed: usize,
}

/// One outcome × subgroup sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The model table.
    pub table: Table,
    /// Matching weight per row.
    pub weights: Vec<f64>,
    /// Counts for the sample-flow table.
    pub counts: SampleCounts,
    /// Reference mean and SD per year used for standardization (empty when not standardized).
    pub standardization: BTreeMap<i64, (f64, f64)>,
    /// Cluster of each row for robust inference (school or matched set, as the study asks), coded 0..
    pub clusters: Vec<u32>,
    /// School of each row, coded 0.. (the unit of randomization inference).
    pub units: Vec<u32>,
    /// Matched set of each row, when every school of the sample lies in one set (matching without replacement).
    pub sets: Option<Vec<u32>>,
}

/// The national reference of within-year standardization: mean and SD of `y` per year over `rows` (every
/// school, after the outcome's filter), ignoring missing values. `column` names the outcome in errors.
pub fn standardization(
    column: &str,
    years: &[f64],
    y: &[f64],
    rows: impl IntoIterator<Item = usize>,
) -> Result<BTreeMap<i64, (f64, f64)>, String> {
    let mut acc: BTreeMap<i64, (f64, f64, f64)> = BTreeMap::new();
    for i in rows {
        if y[i].is_finite() {
            let e = acc.entry(years[i] as i64).or_default();
            e.0 += 1.0;
            e.1 += y[i];
            e.2 += y[i] * y[i];
        }
    }
    let mut out = BTreeMap::new();
    for (year, (n, s, ss)) in acc {
        let mean = s / n;
        let var = (ss - n * mean * mean) / (n - 1.0);
        if !(n > 1.0 && var > 0.0) {
            return Err(format!(
                "cannot standardize `{column}` within year {year}: {} has no variation",
                if n > 1.0 { "the outcome" } else { "a single pupil" }
            ));
        }
        out.insert(year, (mean, var.sqrt()));
    }
    Ok(out)
}

/// Builds the analysis sample of `outcome` in `subgroup` (or all pupils) from the matched schools. `extra`
/// names pupil columns the model needs beyond the study's covariates (the subgroup variable of a
/// gap-closing model): they are kept in the sample, and pupils missing them are dropped like those missing
/// a covariate.
pub fn build_sample(
    study: &Study,
    pupils: &Table,
    matched: &HashMap<String, MatchedSchool>,
    outcome: &OutcomeSpec,
    subgroup: Option<&SubgroupSpec>,
    extra: &[&str],
) -> Result<Sample, String> {
    let d = &study.data;
    let years = pupils.numeric(&d.year).map_err(|e| e.to_string())?;
    let y_all = pupils.numeric(&outcome.column).map_err(|e| e.to_string())?;
    let school = pupils.column(&d.school_id).map_err(|e| e.to_string())?;
    // The outcome's rows (of the study's years, through its filter) and of those the eligible ones (in the
    // subgroup), tested row by row: a national table has millions of rows, the matched schools' are a few
    // per cent of them.
    let (first, last) = (study.years.first as f64, study.years.last as f64);
    let outcome_filter = RowFilter::new(pupils, &outcome.filter);
    let is_outcome_row = |i: usize| years[i] >= first && years[i] <= last && outcome_filter.matches(i);
    let subgroup_filter = subgroup.map(|s| RowFilter::new(pupils, &s.filter));
    let standardization = if outcome.standardize_within_year {
        standardization(&outcome.column, years, y_all, (0..pupils.n_rows()).filter(|&i| is_outcome_row(i)))?
    } else {
        BTreeMap::new()
    };
    let mut eligible_rows = 0;
    let mut in_matched: Vec<(usize, MatchedSchool)> = Vec::new();
    // The school's match, looked up once per run of rows of one school (ids repeat row after row in a
    // sorted table, and formatting a number is the costly part): the last eligible row and its match.
    let mut last_school: Option<(usize, Option<MatchedSchool>)> = None;
    for i in 0..pupils.n_rows() {
        if !is_outcome_row(i) || subgroup_filter.as_ref().is_some_and(|f| !f.matches(i)) {
            continue;
        }
        eligible_rows += 1;
        let m = match last_school {
            Some((j, m)) if school.same_value(j, i) => m,
            _ => school.text_at(i).and_then(|id| matched.get(&id).copied()),
        };
        last_school = Some((i, m));
        if let Some(m) = m {
            in_matched.push((i, m));
        }
    }
    let matched_school_rows = in_matched.len();
    let kept = |name: &str| study.model.covariates.iter().any(|c| c == name) || extra.contains(&name);
    let covs: Vec<&Column> = study
        .model
        .covariates
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .map(|c| pupils.column(c))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let complete_row = |i: usize| y_all[i].is_finite() && covs.iter().all(|c| !c.is_missing(i));
    // One pass: the complete rows, and the flow by year and group.
    let mut flow: BTreeMap<(i64, bool), YearCounts> = BTreeMap::new();
    let mut complete: Vec<(usize, MatchedSchool)> = Vec::with_capacity(in_matched.len());
    for (i, m) in in_matched {
        let year = years[i] as i64;
        let c = flow.entry((year, m.treated)).or_insert(YearCounts {
            year,
            treated: m.treated,
            pupils: 0,
            with_outcome: 0,
            analysed: 0,
        });
        let ok = complete_row(i);
        c.pupils += 1;
        c.with_outcome += usize::from(y_all[i].is_finite());
        c.analysed += usize::from(ok);
        if ok {
            complete.push((i, m));
        }
    }
    let dropped_missing = matched_school_rows - complete.len();
    let idx: Vec<usize> = complete.iter().map(|(i, _)| *i).collect();
    let outcome_values: Vec<f64> = idx
        .iter()
        .map(|&i| match standardization.get(&(years[i] as i64)) {
            Some((m, s)) => (y_all[i] - m) / s,
            None => y_all[i],
        })
        .collect();
    let centre = study.years.programme_start as f64;
    let mut table = Table::new();
    let push = |t: &mut Table, name: &str, c: Column| t.push(name, c).map_err(|e| e.to_string());
    push(&mut table, "outcome", Column::Numeric(outcome_values))?;
    push(&mut table, &d.year, Column::Numeric(idx.iter().map(|&i| years[i]).collect()))?;
    push(&mut table, "year_c", Column::Numeric(idx.iter().map(|&i| years[i] - centre).collect()))?;
    push(&mut table, "group", Column::Numeric(complete.iter().map(|(_, m)| f64::from(u8::from(m.treated))).collect()))?;
    for (name, col) in pupils.iter() {
        if name == d.school_id || kept(name) {
            push(&mut table, name, col.take(&idx))?;
        }
    }
    let weights: Vec<f64> = complete.iter().map(|(_, m)| m.weight).collect();
    let mut schools: HashMap<String, bool> = HashMap::new();
    let school_col = table.column(&d.school_id).map_err(|e| e.to_string())?;
    let all: Vec<usize> = (0..complete.len()).collect();
    for (k, id) in school_col.text_runs(&all) {
        schools.insert(id.unwrap_or_default(), complete[k].1.treated);
    }
    let units = psmeval_frame::design::factor_codes(school_col, &all).0;
    let sets: Option<Vec<u32>> = complete.iter().map(|(_, m)| m.set).collect();
    let clusters: Vec<u32> = match study.inference.cluster {
        ClusterBy::School => units.clone(),
        ClusterBy::MatchedSet => complete
            .iter()
            .map(|(i, m)| {
                m.set.ok_or_else(|| {
                    format!(
                        "school `{}` is in no single matched set, so it cannot be clustered by matched set",
                        school.text_at(*i).unwrap_or_default()
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let counts = SampleCounts {
        eligible_rows,
        matched_school_rows,
        dropped_missing,
        n_pupils: idx.len(),
        n_schools: schools.len(),
        n_treated_schools: schools.values().filter(|t| **t).count(),
        by_year: flow.into_values().collect(),
    };
    Ok(Sample { table, weights, counts, standardization, clusters, units, sets })
}
