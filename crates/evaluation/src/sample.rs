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

/// The rows of one outcome over the whole pupil table (every school, in the study's years, through the
/// outcome's filter) and the within-year standardization they give: what every sample of the outcome shares,
/// so an evaluation scans the national table once per outcome rather than once per model.
#[derive(Debug, Clone)]
pub struct OutcomeRows {
    outcome: OutcomeSpec,
    years: (i64, i64),
    /// The table's year column and number of rows (rows of another table are never used).
    table: (String, usize),
    rows: Vec<u32>,
    standardization: BTreeMap<i64, (f64, f64)>,
}

impl OutcomeRows {
    /// The rows of `outcome` in `pupils` for the years of `study`.
    pub fn new(study: &Study, pupils: &Table, outcome: &OutcomeSpec) -> Result<OutcomeRows, String> {
        let years = pupils.numeric(&study.data.year).map_err(|e| e.to_string())?;
        let y_all = pupils.numeric(&outcome.column).map_err(|e| e.to_string())?;
        if u32::try_from(pupils.n_rows()).is_err() {
            return Err(format!("the pupil table has {} rows; at most {} are supported", pupils.n_rows(), u32::MAX));
        }
        let (first, last) = (study.years.first as f64, study.years.last as f64);
        let filter = RowFilter::new(pupils, &outcome.filter);
        let rows: Vec<u32> = (0..pupils.n_rows())
            .filter(|&i| years[i] >= first && years[i] <= last && filter.matches(i))
            .map(|i| i as u32)
            .collect();
        let standardization = if outcome.standardize_within_year {
            standardization(&outcome.column, years, y_all, rows.iter().map(|&i| i as usize))?
        } else {
            BTreeMap::new()
        };
        Ok(OutcomeRows {
            outcome: outcome.clone(),
            years: (study.years.first, study.years.last),
            table: (study.data.year.clone(), pupils.n_rows()),
            rows,
            standardization,
        })
    }

    /// Whether these are the rows of `outcome` in `pupils` for the years of `study`.
    pub fn is_for(&self, study: &Study, pupils: &Table, outcome: &OutcomeSpec) -> bool {
        self.years == (study.years.first, study.years.last)
            && self.outcome == *outcome
            && self.table.0 == study.data.year
            && self.table.1 == pupils.n_rows()
    }
}

/// Builds the analysis sample of `outcome` in `subgroup` (or all pupils) from the matched schools. `extra`
/// names pupil columns the model needs beyond the study's covariates (the subgroup variable of a
/// gap-closing model): they are kept in the sample, and pupils missing them are dropped like those missing
/// a covariate. `shared`: the outcome's rows when already found (used when they are for this outcome and
/// these years).
pub fn build_sample(
    study: &Study,
    pupils: &Table,
    matched: &HashMap<String, MatchedSchool>,
    outcome: &OutcomeSpec,
    subgroup: Option<&SubgroupSpec>,
    extra: &[&str],
    shared: Option<&OutcomeRows>,
) -> Result<Sample, String> {
    let own;
    let outcome_rows = match shared.filter(|r| r.is_for(study, pupils, outcome)) {
        Some(r) => r,
        None => {
            own = OutcomeRows::new(study, pupils, outcome)?;
            &own
        }
    };
    let d = &study.data;
    let years = pupils.numeric(&d.year).map_err(|e| e.to_string())?;
    let y_all = pupils.numeric(&outcome.column).map_err(|e| e.to_string())?;
    let school = pupils.column(&d.school_id).map_err(|e| e.to_string())?;
    let standardization = outcome_rows.standardization.clone();
    // Of the outcome's rows the eligible ones (in the subgroup), tested row by row: a national table has
    // millions of rows, the matched schools' are a few per cent of them.
    let subgroup_filter = subgroup.map(|s| RowFilter::new(pupils, &s.filter));
    let mut eligible_rows = 0;
    let mut in_matched: Vec<(usize, MatchedSchool)> = Vec::new();
    // The school's match, looked up once per run of rows of one school (ids repeat row after row in a
    // sorted table, and formatting a number is the costly part): the last eligible row and its match.
    let mut last_school: Option<(usize, Option<MatchedSchool>)> = None;
    for i in outcome_rows.rows.iter().map(|&i| i as usize) {
        if subgroup_filter.as_ref().is_some_and(|f| !f.matches(i)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::tests::GOOD;

    /// 6 schools × 7 years (2012–2018, the study's 2013–2017 among them) × 2 key stages × 4 pupils, with a
    /// missing score (school s2, 2014, both key stages) and FSM pupils.
    fn pupils() -> Table {
        let (mut school, mut year, mut ks, mut maths, mut fsm) = (vec![], vec![], vec![], vec![], vec![]);
        for s in 0..6 {
            for y in 2012..=2018 {
                for k in [1.0, 2.0] {
                    for p in 0..4 {
                        school.push(Some(format!("s{s}")));
                        year.push(f64::from(y));
                        ks.push(k);
                        let v = f64::from(s * 7 + y - 2012) * 0.3 + f64::from(p) - k;
                        maths.push(if s == 2 && y == 2014 && p == 0 { f64::NAN } else { v });
                        fsm.push(f64::from(u8::from(p % 3 == 0)));
                    }
                }
            }
        }
        let mut t = Table::new();
        t.push("school_id", Column::Text(school)).unwrap();
        t.push("year", Column::Numeric(year)).unwrap();
        t.push("key_stage", Column::Numeric(ks)).unwrap();
        t.push("maths", Column::Numeric(maths)).unwrap();
        t.push("fsm", Column::Numeric(fsm)).unwrap();
        t
    }

    /// A sample built from an outcome's shared rows is the sample built from scratch, for all pupils and a
    /// subgroup; rows found for other years are not used.
    #[test]
    fn shared_outcome_rows_give_the_same_sample() {
        let study = Study::from_toml(GOOD).unwrap();
        let pupils = pupils();
        let matched: HashMap<String, MatchedSchool> = [(1, true), (2, false), (4, false)]
            .into_iter()
            .map(|(s, treated)| (format!("s{s}"), MatchedSchool { treated, weight: 0.5 + f64::from(s), set: Some(0) }))
            .collect();
        let outcome = &study.outcomes[0];
        let fsm = SubgroupSpec {
            name: "FSM pupils".into(),
            filter: [("fsm".to_string(), crate::study::FilterValue::Number(1.0))].into_iter().collect(),
        };
        let rows = OutcomeRows::new(&study, &pupils, outcome).unwrap();
        assert!(rows.is_for(&study, &pupils, outcome));
        let mut fewer = Table::new();
        for (name, column) in pupils.iter() {
            fewer.push(name, column.take(&[0, 1, 2])).unwrap();
        }
        assert!(!rows.is_for(&study, &fewer, outcome), "rows of another table");
        let three = build_sample(&study, &fewer, &matched, outcome, None, &[], Some(&rows));
        assert_eq!(three.unwrap().counts.eligible_rows, 0, "found again in the smaller table: no key stage 2 rows");
        assert_eq!(rows.rows.len(), 6 * 5 * 4, "key stage 2 in 2013-2017");
        let mut other = study.clone();
        other.years.last = 2016;
        assert!(!rows.is_for(&other, &pupils, outcome));
        for (s, subgroup) in [(&study, None), (&study, Some(&fsm)), (&other, None)] {
            let a = build_sample(s, &pupils, &matched, outcome, subgroup, &[], Some(&rows)).unwrap();
            let b = build_sample(s, &pupils, &matched, outcome, subgroup, &[], None).unwrap();
            assert_eq!(a.counts, b.counts);
            assert_eq!(a.standardization, b.standardization);
            assert_eq!((&a.weights, &a.clusters, &a.units, &a.sets), (&b.weights, &b.clusters, &b.units, &b.sets));
            let cols = |t: &Table| t.iter().map(|(n, c)| (n.to_string(), c.clone())).collect::<Vec<_>>();
            assert_eq!(cols(&a.table), cols(&b.table));
        }
        let last = build_sample(&other, &pupils, &matched, outcome, None, &[], Some(&rows)).unwrap();
        assert!(last.counts.by_year.iter().all(|c| c.year <= 2016), "the other years' own rows were used");
        assert_eq!(last.counts.eligible_rows, 6 * 4 * 4);
        let all = build_sample(&study, &pupils, &matched, outcome, None, &[], Some(&rows)).unwrap();
        assert_eq!(all.counts.dropped_missing, 1, "school s2's missing score in 2014");
        assert_eq!(all.counts.matched_school_rows, 3 * 5 * 4);
    }
}
