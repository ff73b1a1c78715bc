//! Contextual value-added: each school's random intercept in a linear mixed model of pupils' attainment on
//! their prior attainment and characteristics, the local-authority analyst's measure of how a school's
//! pupils did compared with similar pupils elsewhere.
//!
//! The model is the user's formula (lme4 syntax) with a random intercept for the school column; a school's
//! value-added is its conditional mode (BLUP) and its 95% interval is ±1.96 conditional SDs (lme4's
//! `ranef(condVar = TRUE)`), so a school is flagged above or below expectation when its interval excludes
//! 0. With a family of similar schools for each school (`psmeval families`), a school is also set beside its
//! family: the family's mean value-added, the difference and the school's rank among itself and its
//! members. The intervals are conditional on the fitted variance components, as lme4's are.

use std::collections::HashMap;

use psmeval_frame::{Column, Table, build_model_frame, parse_formula};
use psmeval_multilevel::{FixedEffect, LmmOptions, MixedModel, fit_lmm};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where a school stands against expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The 95% interval lies above 0.
    Above,
    /// The interval contains 0.
    InLine,
    /// The interval lies below 0.
    Below,
}

impl Flag {
    /// `above`, `in line`, `below`.
    pub fn label(self) -> &'static str {
        match self {
            Flag::Above => "above",
            Flag::InLine => "in line",
            Flag::Below => "below",
        }
    }
}

/// One school's value-added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchoolValueAdded {
    /// School id (the level of the grouping factor).
    pub id: String,
    /// Pupils of the school in the model.
    pub pupils: usize,
    /// The conditional mode of the school's random intercept, in the outcome's units.
    pub value_added: f64,
    /// Its conditional SD.
    pub cond_sd: f64,
    /// Lower end of the 95% interval.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
    /// Above, in line with or below expectation.
    pub flag: Flag,
    /// Mean value-added of the school's family members present in the model.
    pub family_mean: Option<f64>,
    /// Family members present in the model.
    pub family_members: usize,
    /// `value_added - family_mean`.
    pub versus_family: Option<f64>,
    /// Rank of the school among itself and its members (1 = highest value-added).
    pub family_rank: Option<usize>,
}

/// Value-added of every school in a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueAdded {
    /// The model formula.
    pub formula: String,
    /// The school column (grouping factor of the random intercept).
    pub school: String,
    /// Row filters applied before fitting, as written (`year = 2017`).
    pub filters: Vec<String>,
    /// Pupils in the model.
    pub n_pupils: usize,
    /// Rows the filters left out.
    pub n_filtered_out: usize,
    /// Rows (after the filters) dropped for a missing value in a model variable.
    pub n_dropped: usize,
    /// Residual SD σ.
    pub sigma: f64,
    /// SD of the school intercepts.
    pub school_sd: f64,
    /// Fixed effects of the model.
    pub fixed_effects: Vec<FixedEffect>,
    /// Schools, by id as the model orders levels.
    pub schools: Vec<SchoolValueAdded>,
    /// Schools above, in line with and below expectation.
    pub counts: [usize; 3],
}

/// A value-added analysis that cannot be run.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ValueAddedError {
    /// The formula, a column or a filter is wrong.
    #[error("{0}")]
    Input(String),
    /// The model cannot be fitted.
    #[error("cannot fit the model: {0}")]
    Fit(String),
}

/// An equality filter on a column: numeric when the column is numeric.
#[derive(Debug, Clone, PartialEq)]
pub struct RowFilter {
    /// The column.
    pub column: String,
    /// The value as written.
    pub value: String,
}

/// Fits `formula` to the rows of `pupils` passing every filter and returns each school's value-added (see
/// the module documentation); `school` names the grouping column of the random intercept (default: the
/// first random term's); `families` maps a school id to its members' ids.
pub fn value_added(
    pupils: &Table,
    formula: &str,
    school: Option<&str>,
    filters: &[RowFilter],
    families: Option<&HashMap<String, Vec<String>>>,
) -> Result<ValueAdded, ValueAddedError> {
    let input = |m: String| ValueAddedError::Input(m);
    let f = parse_formula(formula).map_err(|e| input(e.to_string()))?;
    let Some(first) = f.random.first() else {
        return Err(input(format!("`{formula}` needs a random intercept for the schools, such as `(1 | school_id)`")));
    };
    let school = school.map_or_else(|| first.group.join(":"), str::to_string);
    let mut rows: Vec<usize> = (0..pupils.n_rows()).collect();
    for flt in filters {
        let col = pupils.column(&flt.column).map_err(|e| input(format!("filter `{}`: {e}", flt.column)))?;
        rows = match col {
            Column::Numeric(v) => {
                let x: f64 = flt.value.trim().parse().map_err(|_| {
                    input(format!("filter {} = {}: `{}` is numeric; give a number", flt.column, flt.value, flt.column))
                })?;
                rows.into_iter().filter(|&i| v[i] == x).collect()
            }
            Column::Text(v) => rows.into_iter().filter(|&i| v[i].as_deref() == Some(flt.value.as_str())).collect(),
        };
        if rows.is_empty() {
            return Err(input(format!("filter {} = {} selects no pupils", flt.column, flt.value)));
        }
    }
    let subset = pupils.take_rows(&rows);
    let frame = build_model_frame(&f, &subset).map_err(|e| input(e.to_string()))?;
    let Some(t) = frame.random.iter().position(|r| r.group == school) else {
        return Err(input(format!("`{formula}` has no random-effects term for `{school}`; add `(1 | {school})`")));
    };
    if frame.random[t].names.first().map(String::as_str) != Some("(Intercept)") {
        return Err(input(format!("the `{school}` term of `{formula}` needs a random intercept (`1 + …`)")));
    }
    let options = LmmOptions { satterthwaite: false, ..LmmOptions::default() };
    let fit = fit_lmm(&frame, &options).map_err(|e| ValueAddedError::Fit(e.to_string()))?;
    let modes = fit
        .ranef()
        .iter()
        .find(|m| m.group == school)
        .ok_or_else(|| ValueAddedError::Fit(format!("no conditional modes for `{school}`")))?;
    let mut pupils_per = vec![0usize; modes.levels.len()];
    let index: HashMap<&str, usize> = modes.levels.iter().enumerate().map(|(k, l)| (l.as_str(), k)).collect();
    for &c in &frame.random[t].codes {
        if let Some(&k) = frame.random[t].levels.get(c as usize).and_then(|l| index.get(l.as_str())) {
            pupils_per[k] += 1;
        }
    }
    let va: Vec<f64> = modes.modes.iter().map(|m| m[0]).collect();
    let mut schools: Vec<SchoolValueAdded> = modes
        .levels
        .iter()
        .enumerate()
        .map(|(k, id)| {
            let (v, sd) = (va[k], modes.cond_sd[k][0]);
            let (lower, upper) = (v - 1.96 * sd, v + 1.96 * sd);
            let flag = if lower > 0.0 {
                Flag::Above
            } else if upper < 0.0 {
                Flag::Below
            } else {
                Flag::InLine
            };
            SchoolValueAdded {
                id: id.clone(),
                pupils: pupils_per[k],
                value_added: v,
                cond_sd: sd,
                lower,
                upper,
                flag,
                family_mean: None,
                family_members: 0,
                versus_family: None,
                family_rank: None,
            }
        })
        .collect();
    if let Some(fams) = families {
        for s in &mut schools {
            let Some(members) = fams.get(&s.id) else { continue };
            let vals: Vec<f64> = members.iter().filter_map(|m| index.get(m.as_str()).map(|&k| va[k])).collect();
            if vals.is_empty() {
                continue;
            }
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            s.family_members = vals.len();
            s.family_mean = Some(mean);
            s.versus_family = Some(s.value_added - mean);
            s.family_rank = Some(1 + vals.iter().filter(|&&v| v > s.value_added).count());
        }
    }
    let mut counts = [0usize; 3];
    for s in &schools {
        counts[match s.flag {
            Flag::Above => 0,
            Flag::InLine => 1,
            Flag::Below => 2,
        }] += 1;
    }
    let school_sd = fit
        .variance_components()
        .iter()
        .find(|v| v.group == school && v.term.as_deref() == Some("(Intercept)"))
        .map_or(f64::NAN, |v| v.std_dev);
    Ok(ValueAdded {
        formula: formula.to_string(),
        school,
        filters: filters.iter().map(|f| format!("{} = {}", f.column, f.value)).collect(),
        n_pupils: frame.y.len(),
        n_filtered_out: pupils.n_rows() - rows.len(),
        n_dropped: frame.n_dropped,
        sigma: fit.sigma,
        school_sd,
        fixed_effects: fit.fixed_effects().to_vec(),
        schools,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pupils() -> Table {
        // 30 schools of 20 pupils; school j's true effect is (j - 14.5) / 10.
        let mut s = 11u64;
        let mut noise = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let (mut id, mut prior, mut y, mut year) = (vec![], vec![], vec![], vec![]);
        for j in 0..30 {
            for i in 0..20 {
                let p = noise() * 4.0;
                id.push(Some(format!("sch{j:02}")));
                prior.push(p);
                y.push(0.5 * p + (j as f64 - 14.5) / 10.0 + noise());
                year.push(if i % 2 == 0 { 2016.0 } else { 2017.0 });
            }
        }
        Table::new()
            .with("school_id", Column::Text(id))
            .unwrap()
            .with("prior", Column::Numeric(prior))
            .unwrap()
            .with("y", Column::Numeric(y))
            .unwrap()
            .with("year", Column::Numeric(year))
            .unwrap()
    }

    #[test]
    fn value_added_is_the_conditional_mode_with_its_interval_and_family() {
        let t = pupils();
        let fams: HashMap<String, Vec<String>> =
            [("sch00".to_string(), vec!["sch01".to_string(), "sch29".to_string()])].into_iter().collect();
        let va = value_added(&t, "y ~ prior + (1 | school_id)", None, &[], Some(&fams)).unwrap();
        assert_eq!(va.schools.len(), 30);
        assert_eq!(va.n_pupils, 600);
        // The same fit through the library directly.
        let f = parse_formula("y ~ prior + (1 | school_id)").unwrap();
        let fit = fit_lmm(&build_model_frame(&f, &t).unwrap(), &LmmOptions::default()).unwrap();
        let m = &fit.ranef()[0];
        for (k, s) in va.schools.iter().enumerate() {
            assert_eq!(s.id, m.levels[k]);
            assert!((s.value_added - m.modes[k][0]).abs() < 1e-9 && (s.cond_sd - m.cond_sd[k][0]).abs() < 1e-9);
            assert!((s.lower - (s.value_added - 1.96 * s.cond_sd)).abs() < 1e-12);
            assert_eq!(s.pupils, 20);
        }
        let first = &va.schools[0];
        assert_eq!(first.flag, Flag::Below, "the weakest school is below expectation: {first:?}");
        assert_eq!(va.schools[29].flag, Flag::Above);
        let mean = (va.schools[1].value_added + va.schools[29].value_added) / 2.0;
        assert!((first.family_mean.unwrap() - mean).abs() < 1e-12);
        assert_eq!(first.family_rank, Some(3), "lowest of the three");
        assert_eq!(va.counts.iter().sum::<usize>(), 30);
        let only = value_added(
            &t,
            "y ~ prior + (1 | school_id)",
            None,
            &[RowFilter { column: "year".into(), value: "2017".into() }],
            None,
        )
        .unwrap();
        assert_eq!(only.n_pupils, 300);
    }

    #[test]
    fn bad_requests_are_named() {
        let t = pupils();
        let e = value_added(&t, "y ~ prior", None, &[], None).unwrap_err().to_string();
        assert!(e.contains("needs a random intercept"), "{e}");
        let e = value_added(&t, "y ~ prior + (1 | school_id)", Some("la"), &[], None).unwrap_err().to_string();
        assert!(e.contains("no random-effects term for `la`"), "{e}");
        let flt = [RowFilter { column: "year".into(), value: "2030".into() }];
        let e = value_added(&t, "y ~ prior + (1 | school_id)", None, &flt, None).unwrap_err().to_string();
        assert!(e.contains("selects no pupils"), "{e}");
        let flt = [RowFilter { column: "year".into(), value: "last".into() }];
        let e = value_added(&t, "y ~ prior + (1 | school_id)", None, &flt, None).unwrap_err().to_string();
        assert!(e.contains("give a number"), "{e}");
        let e = value_added(&t, "y ~ prior + (0 + prior | school_id)", None, &[], None).unwrap_err().to_string();
        assert!(e.contains("needs a random intercept"), "{e}");
    }
}
