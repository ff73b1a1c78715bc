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
//!
//! Under-performing groups ([`Breakdown`]): for each level of a pupil variable (FSM, EAL, SEN, sex), and
//! optionally within each area (region, local authority: a pupil column or a school table's column), the
//! group's value-added is the mean over its pupils of `y − x'β̂`, the difference between their results and
//! the model's expectation for pupils like them nationally (school effects included, so it is what the
//! group's schools added). Its 95% interval is cluster-robust over the group's schools (CR1 for a mean,
//! `G/(G − 1)`, t with `G − 1` df; β̂ taken as known, its error being small beside the schools' at national
//! scale), and a group is flagged below (above) expectation when the interval lies wholly below (above) 0.
//! For a variable that is itself in the model (FSM), the model already expects its pupils to score lower
//! within their schools, so the group's value-added is what their schools add: near 0 when the group is
//! spread evenly over schools, negative when it is concentrated in schools that add less; within an area
//! it says whether the area's FSM pupils do as well as FSM pupils nationally. Groups with fewer than two schools get no interval and are listed
//! in [`ValueAdded::groups_omitted`].

use std::collections::HashMap;

use psmeval_frame::{RowFilter, Table, build_model_frame, parse_formula};
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
    /// The area column of the group breakdown, if any.
    #[serde(default)]
    pub by: Option<String>,
    /// Value-added of pupil groups (see the module documentation): per variable in the order asked, per
    /// level, nationally and then per area.
    #[serde(default)]
    pub groups: Vec<GroupValueAdded>,
    /// Groups left out for having pupils in fewer than two schools (`fsm = 1 in area 7`).
    #[serde(default)]
    pub groups_omitted: Vec<String>,
}

/// Which pupil groups to break value-added down by.
#[derive(Debug, Clone, Copy, Default)]
pub struct Breakdown<'a> {
    /// Pupil columns whose levels are groups (`fsm`, `eal`, `sen`, `female`).
    pub groups: &'a [String],
    /// An area column: groups within each area too, and each area's pupils as a whole.
    pub by: Option<&'a str>,
    /// The area of each school id, when `by` is a school table's column rather than a pupil column.
    pub area_of_school: Option<&'a HashMap<String, String>>,
}

/// The value-added of one pupil group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupValueAdded {
    /// The pupil variable (`all pupils` for an area's pupils as a whole).
    pub variable: String,
    /// Its level (`1`; `all`).
    pub level: String,
    /// The area, or `None` for all areas.
    pub area: Option<String>,
    /// Pupils in the group.
    pub pupils: usize,
    /// Schools they attend (clusters).
    pub schools: usize,
    /// Mean of `y − x'β̂` over the group's pupils, in the outcome's units.
    pub value_added: f64,
    /// Its cluster-robust standard error.
    pub std_error: f64,
    /// t degrees of freedom (schools − 1).
    pub df: f64,
    /// Lower end of the 95% interval.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
    /// Above, in line with or below expectation.
    pub flag: Flag,
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

/// Fits `formula` to the rows of `pupils` passing every filter and returns each school's value-added (see
/// the module documentation); `school` names the grouping column of the random intercept (default: the
/// first random term's); `families` maps a school id to its members' ids; `breakdown` names the pupil
/// groups whose value-added is estimated.
pub fn value_added(
    pupils: &Table,
    formula: &str,
    school: Option<&str>,
    filters: &[RowFilter],
    families: Option<&HashMap<String, Vec<String>>>,
    breakdown: &Breakdown<'_>,
) -> Result<ValueAdded, ValueAddedError> {
    let input = |m: String| ValueAddedError::Input(m);
    let f = parse_formula(formula).map_err(|e| input(e.to_string()))?;
    let Some(first) = f.random.first() else {
        return Err(input(format!("`{formula}` needs a random intercept for the schools, such as `(1 | school_id)`")));
    };
    let school = school.map_or_else(|| first.group.join(":"), str::to_string);
    let rows = pupils.filter_rows(filters).map_err(|e| input(e.to_string()))?;
    let subset = pupils.take_rows(&rows);
    let frame = build_model_frame(&f, &subset).map_err(|e| input(e.to_string()))?;
    let Some(t) = frame.random.iter().position(|r| r.group == school) else {
        return Err(input(format!("`{formula}` has no random-effects term for `{school}`; add `(1 | {school})`")));
    };
    if frame.random[t].names.first().map(String::as_str) != Some("(Intercept)") {
        return Err(input(format!("the `{school}` term of `{formula}` needs a random intercept (`1 + …`)")));
    }
    // The breakdown's columns are checked before the (possibly long) fit.
    for v in breakdown.groups {
        subset.column(v).map_err(|e| input(format!("group `{v}`: {e}")))?;
    }
    if let Some(by) = breakdown.by
        && (breakdown.area_of_school.is_none() || subset.has(by))
    {
        subset.column(by).map_err(|e| input(format!("area `{by}`: {e}")))?;
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
    let (groups, groups_omitted) = group_value_added(&subset, &frame, t, fit.beta(), breakdown)?;
    Ok(ValueAdded {
        formula: formula.to_string(),
        school,
        filters: filters.iter().map(ToString::to_string).collect(),
        n_pupils: frame.y.len(),
        n_filtered_out: pupils.n_rows() - rows.len(),
        n_dropped: frame.n_dropped,
        sigma: fit.sigma,
        school_sd,
        fixed_effects: fit.fixed_effects().to_vec(),
        schools,
        counts,
        by: breakdown.by.map(str::to_string),
        groups,
        groups_omitted,
    })
}

/// The value-added of the breakdown's pupil groups (see the module documentation): returns the groups and
/// the descriptions of those left out for having fewer than two schools.
fn group_value_added(
    subset: &Table,
    frame: &psmeval_frame::ModelFrame,
    term: usize,
    beta: &[f64],
    breakdown: &Breakdown<'_>,
) -> Result<(Vec<GroupValueAdded>, Vec<String>), ValueAddedError> {
    if breakdown.groups.is_empty() && breakdown.by.is_none() {
        return Ok((Vec::new(), Vec::new()));
    }
    let input = |m: String| ValueAddedError::Input(m);
    let n = frame.y.len();
    let residual: Vec<f64> =
        (0..n).map(|k| frame.y[k] - frame.x.row(k).iter().zip(beta).map(|(x, b)| x * b).sum::<f64>()).collect();
    let codes = &frame.random[term].codes;
    let levels = &frame.random[term].levels;
    let area: Option<Vec<Option<String>>> = match (breakdown.by, breakdown.area_of_school) {
        (None, _) => None,
        (Some(by), Some(map)) if !subset.has(by) => {
            Some(codes.iter().map(|&c| map.get(&levels[c as usize]).cloned()).collect())
        }
        (Some(by), _) => {
            let col = subset.column(by).map_err(|e| input(format!("area `{by}`: {e}")))?;
            Some(frame.rows.iter().map(|&i| col.text_at(i)).collect())
        }
    };
    // Cells: (variable index, level, area); variable index groups.len() is "all pupils".
    let mut cells: Vec<(usize, String, Option<String>)> = Vec::new();
    let mut index: HashMap<(usize, String, Option<String>), i64> = HashMap::new();
    let (mut r, mut key, mut cluster) = (Vec::new(), Vec::new(), Vec::new());
    let mut add = |cell: (usize, String, Option<String>), k: usize| {
        let next = index.len() as i64;
        let id = *index.entry(cell.clone()).or_insert_with(|| {
            cells.push(cell);
            next
        });
        r.push(residual[k]);
        key.push(id);
        cluster.push(codes[k]);
    };
    for (v, name) in breakdown.groups.iter().enumerate() {
        let col = subset.column(name).map_err(|e| input(format!("group `{name}`: {e}")))?;
        for (k, &row) in frame.rows.iter().enumerate() {
            let Some(level) = col.text_at(row) else { continue };
            if let Some(a) = area.as_ref().and_then(|a| a[k].clone()) {
                add((v, level.clone(), Some(a)), k);
            }
            add((v, level, None), k);
        }
    }
    if let Some(a) = &area {
        for (k, ak) in a.iter().enumerate() {
            if let Some(ak) = ak {
                add((breakdown.groups.len(), "all".into(), Some(ak.clone())), k);
            }
        }
    }
    let means = crate::trend::clustered_means(&r, &key, &vec![true; r.len()], &cluster, None);
    let mut out = Vec::new();
    let mut omitted = Vec::new();
    let name = |v: usize| breakdown.groups.get(v).cloned().unwrap_or_else(|| "all pupils".to_string());
    for m in means {
        let (v, level, area) = cells[m.cell.0 as usize].clone();
        let describe = || {
            let a = area.as_ref().map_or(String::new(), |a| format!(" in {} {a}", breakdown.by.unwrap_or_default()));
            if v == breakdown.groups.len() { format!("all pupils{a}") } else { format!("{} = {level}{a}", name(v)) }
        };
        if m.clusters < 2 {
            omitted.push(describe());
            continue;
        }
        let flag = if m.ci_low > 0.0 {
            Flag::Above
        } else if m.ci_high < 0.0 {
            Flag::Below
        } else {
            Flag::InLine
        };
        out.push((
            (v, area.is_some(), natural_key(area.as_deref().unwrap_or_default()), natural_key(&level)),
            GroupValueAdded {
                variable: name(v),
                level,
                area,
                pupils: m.n,
                schools: m.clusters,
                value_added: m.mean,
                std_error: m.std_error,
                df: m.clusters as f64 - 1.0,
                lower: m.ci_low,
                upper: m.ci_high,
                flag,
            },
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    omitted.sort();
    Ok((out.into_iter().map(|(_, g)| g).collect(), omitted))
}

/// Sorts numbers as numbers and text as text (numbers first): `2` before `10`.
fn natural_key(s: &str) -> (u8, i64, String) {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() => (0, (x * 1e6).round() as i64, String::new()),
        _ => (1, 0, s.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use psmeval_frame::Column;

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
        let va = value_added(&t, "y ~ prior + (1 | school_id)", None, &[], Some(&fams), &Breakdown::default()).unwrap();
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
            &Breakdown::default(),
        )
        .unwrap();
        assert_eq!(only.n_pupils, 300);
    }

    #[test]
    fn group_value_added_is_the_clustered_mean_residual_by_level_and_area() {
        let mut t = pupils();
        // FSM pupils are every fourth pupil; in the odd-numbered schools (area south) they score 1.5 lower.
        let n = t.n_rows();
        let fsm: Vec<f64> = (0..n).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
        let Column::Numeric(y) = t.column("y").unwrap().clone() else { unreachable!() };
        let y: Vec<f64> = (0..n).map(|i| y[i] - if i % 4 == 0 && (i / 20) % 2 == 1 { 1.5 } else { 0.0 }).collect();
        t = Table::new()
            .with("school_id", t.column("school_id").unwrap().clone())
            .unwrap()
            .with("prior", t.column("prior").unwrap().clone())
            .unwrap()
            .with("y", Column::Numeric(y.clone()))
            .unwrap()
            .with("fsm", Column::Numeric(fsm.clone()))
            .unwrap();
        let areas: HashMap<String, String> =
            (0..30).map(|j| (format!("sch{j:02}"), if j % 2 == 0 { "north" } else { "south" }.to_string())).collect();
        let groups = ["fsm".to_string()];
        let b = Breakdown { groups: &groups, by: Some("area"), area_of_school: Some(&areas) };
        let formula = "y ~ prior + fsm + (1 | school_id)";
        let va = value_added(&t, formula, None, &[], None, &b).unwrap();
        // Hand computation from the same fit: r = y - x'b, mean over the cell, CR1 over schools.
        let f = parse_formula(formula).unwrap();
        let fit = fit_lmm(&build_model_frame(&f, &t).unwrap(), &LmmOptions::default()).unwrap();
        let beta = fit.beta();
        let Column::Numeric(prior) = t.column("prior").unwrap().clone() else { unreachable!() };
        let r: Vec<f64> = (0..n).map(|i| y[i] - beta[0] - beta[1] * prior[i] - beta[2] * fsm[i]).collect();
        let cell = |keep: &dyn Fn(usize) -> bool| {
            let rows: Vec<usize> = (0..n).filter(|&i| keep(i)).collect();
            let mean = rows.iter().map(|&i| r[i]).sum::<f64>() / rows.len() as f64;
            let mut per = [0.0f64; 30];
            for &i in &rows {
                per[i / 20] += r[i] - mean;
            }
            let g = per.iter().filter(|&&v| v != 0.0).count() as f64;
            let v = g / (g - 1.0) * per.iter().map(|v| v * v).sum::<f64>() / (rows.len() as f64).powi(2);
            (mean, v.sqrt(), rows.len())
        };
        let find = |var: &str, level: &str, area: Option<&str>| {
            va.groups.iter().find(|g| g.variable == var && g.level == level && g.area.as_deref() == area).unwrap()
        };
        for (level, area, keep) in [
            ("1", None, Box::new(|i: usize| i.is_multiple_of(4)) as Box<dyn Fn(usize) -> bool>),
            ("1", Some("south"), Box::new(|i: usize| i.is_multiple_of(4) && (i / 20) % 2 == 1)),
            ("0", Some("north"), Box::new(|i: usize| !i.is_multiple_of(4) && (i / 20).is_multiple_of(2))),
        ] {
            let (mean, se, pupils) = cell(&keep);
            let g = find("fsm", level, area);
            assert!((g.value_added - mean).abs() < 1e-9 && (g.std_error - se).abs() < 1e-9, "{g:?} vs {mean} {se}");
            assert_eq!(g.pupils, pupils);
        }
        let south = find("fsm", "1", Some("south"));
        assert_eq!((south.schools, south.df, south.flag), (15, 14.0, Flag::Below), "{south:?}");
        assert_eq!(find("all pupils", "all", Some("south")).pupils, 300);
        // National rows first, then areas; levels in numeric order; 2 levels x (1 + 2 areas) + 2 areas.
        assert_eq!(va.groups.len(), 8);
        assert_eq!((va.groups[0].level.as_str(), va.groups[0].area.as_ref()), ("0", None));
        assert!(va.groups_omitted.is_empty());
        // A group column that is not there is named before fitting; a one-school cell is omitted, not failed.
        let bad = ["la".to_string()];
        let e = value_added(&t, formula, None, &[], None, &Breakdown { groups: &bad, ..b }).unwrap_err().to_string();
        assert!(e.contains("group `la`") && e.contains("no column named `la`"), "{e}");
        let lonely: HashMap<String, String> =
            (0..30).map(|j| (format!("sch{j:02}"), if j == 0 { "island" } else { "mainland" }.to_string())).collect();
        let one = value_added(&t, formula, None, &[], None, &Breakdown { area_of_school: Some(&lonely), ..b }).unwrap();
        assert!(one.groups_omitted.contains(&"fsm = 1 in area island".to_string()), "{:?}", one.groups_omitted);
    }

    /// mlmRev's Exam data and lme4 / clubSandwich's numbers on it (tests/reference/analyst_reference.R).
    pub(crate) fn exam_reference() -> (Table, serde_json::Value) {
        let r: serde_json::Value =
            serde_json::from_str(include_str!("../tests/reference/analyst_reference.json")).unwrap();
        let data = &r["data"];
        let text =
            |k: &str| Column::Text(data[k].as_array().unwrap().iter().map(|v| v.as_str().map(String::from)).collect());
        let num = |k: &str| Column::Numeric(data[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect());
        let t = Table::new()
            .with("school", text("school"))
            .unwrap()
            .with("normexam", num("normexam"))
            .unwrap()
            .with("standLRT", num("standLRT"))
            .unwrap()
            .with("girl", num("girl"))
            .unwrap()
            .with("intake", text("intake"))
            .unwrap()
            .with("type", text("type"))
            .unwrap();
        (t, r)
    }

    /// Relative difference, for values away from 0 (absolute below 1).
    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn exam_value_added_matches_lme4_and_club_sandwich() {
        // Tolerances: conditional modes, SDs and sigma 1e-6 (lme4's optimum agrees to about 1e-7); group
        // means and CR1 SEs 1e-6 (they inherit the fixed effects' agreement).
        let (t, r) = exam_reference();
        let groups = ["intake".to_string()];
        let b = Breakdown { groups: &groups, by: Some("type"), area_of_school: None };
        let va = value_added(&t, r["formula"].as_str().unwrap(), None, &[], None, &b).unwrap();
        assert!(
            close(va.sigma, r["sigma"].as_f64().unwrap(), 1e-6)
                && close(va.school_sd, r["school_sd"].as_f64().unwrap(), 1e-6)
        );
        let want = r["schools"].as_array().unwrap();
        assert_eq!(va.schools.len(), want.len());
        for w in want {
            let s = va.schools.iter().find(|s| s.id == w["id"].as_str().unwrap()).unwrap();
            assert!(close(s.value_added, w["value_added"].as_f64().unwrap(), 1e-6), "{s:?} {w}");
            assert!(close(s.cond_sd, w["cond_sd"].as_f64().unwrap(), 1e-6), "{s:?} {w}");
        }
        for w in r["groups"].as_array().unwrap() {
            let g = va
                .groups
                .iter()
                .find(|g| {
                    g.variable == "intake"
                        && g.level == w["level"].as_str().unwrap()
                        && g.area.as_deref() == w["area"].as_str()
                })
                .unwrap();
            assert!(close(g.value_added, w["value_added"].as_f64().unwrap(), 1e-6), "{g:?} {w}");
            assert!(close(g.std_error, w["std_error"].as_f64().unwrap(), 1e-6), "{g:?} {w}");
            assert_eq!(
                (g.pupils as u64, g.schools as u64),
                (w["pupils"].as_u64().unwrap(), w["schools"].as_u64().unwrap())
            );
        }
        // 3 intake bands x (all + 2 types) + 2 types as a whole.
        assert_eq!(va.groups.len(), 11);
    }

    #[test]
    fn bad_requests_are_named() {
        let t = pupils();
        let e = value_added(&t, "y ~ prior", None, &[], None, &Breakdown::default()).unwrap_err().to_string();
        assert!(e.contains("needs a random intercept"), "{e}");
        let e = value_added(&t, "y ~ prior + (1 | school_id)", Some("la"), &[], None, &Breakdown::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no random-effects term for `la`"), "{e}");
        let flt = [RowFilter { column: "year".into(), value: "2030".into() }];
        let e = value_added(&t, "y ~ prior + (1 | school_id)", None, &flt, None, &Breakdown::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("selects no rows"), "{e}");
        let flt = [RowFilter { column: "year".into(), value: "last".into() }];
        let e = value_added(&t, "y ~ prior + (1 | school_id)", None, &flt, None, &Breakdown::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("give a number"), "{e}");
        let e = value_added(&t, "y ~ prior + (0 + prior | school_id)", None, &[], None, &Breakdown::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a random intercept"), "{e}");
    }
}
