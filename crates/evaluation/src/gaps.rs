//! Attainment gaps by area: in each area (region, local authority) the difference between the mean outcome
//! of pupils without and with a characteristic (FSM, EAL, SEN), with a confidence interval that allows for
//! the clustering of pupils in schools, and the counterfactual national analysts quote: if every area's gap
//! were the smallest area's, how many more pupils with the characteristic would reach the standard.
//!
//! Per area, the gap is `mean(y | group = 0) − mean(y | group = 1)`: the negated slope of the regression of
//! `y` on the 0/1 group, whose variance is the cluster-robust sandwich over the area's schools with the CR1
//! small-sample factor `G/(G − 1) · (N − 1)/(N − 2)` (Stata's `regress, vce(cluster)`), and the 95% CI uses
//! t with `G − 1` df. Gaps are also given in SD units (divided by the SD of `y` over all pupils analysed)
//! and, for a 0/1 outcome, in percentage points. The counterfactual counts, for each area whose gap exceeds
//! the smallest, the area's pupils with the characteristic times the excess gap (0/1 outcomes only).

use std::collections::{BTreeMap, HashMap};

use psmeval_frame::Table;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};
use thiserror::Error;

/// The gap in one area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AreaGap {
    /// The area.
    pub area: String,
    /// Pupils without / with the characteristic.
    pub pupils: [usize; 2],
    /// Schools (clusters).
    pub schools: usize,
    /// Mean outcome without / with the characteristic.
    pub mean: [f64; 2],
    /// The gap, `mean[0] − mean[1]`, in the outcome's units.
    pub gap: f64,
    /// Its cluster-robust standard error.
    pub std_error: f64,
    /// t degrees of freedom (schools − 1).
    pub df: f64,
    /// 95% CI.
    pub lower: f64,
    /// 95% CI.
    pub upper: f64,
    /// The gap in SD units of the outcome.
    pub gap_sd: f64,
    /// Pupils with the characteristic who would reach the standard if the area's gap were the smallest
    /// area's (0/1 outcomes).
    pub extra_pupils: Option<f64>,
}

/// Gaps in every area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gaps {
    /// The outcome column.
    pub outcome: String,
    /// The 0/1 pupil characteristic.
    pub group: String,
    /// The area column.
    pub by: String,
    /// The outcome is 0/1 (gaps are also percentage points).
    pub binary: bool,
    /// SD of the outcome over the pupils analysed.
    pub outcome_sd: f64,
    /// Pupils analysed (outcome, group and area present).
    pub n_pupils: usize,
    /// Pupils left out for a missing value.
    pub n_missing: usize,
    /// The whole table as one area.
    pub overall: AreaGap,
    /// Areas, by name.
    pub areas: Vec<AreaGap>,
    /// The area with the smallest gap.
    pub best_area: String,
    /// Sum of the areas' extra pupils (0/1 outcomes).
    pub extra_pupils: Option<f64>,
}

/// A gap analysis that cannot be run.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum GapError {
    /// A column is missing or of the wrong kind, or a value is wrong; the message names it.
    #[error("{0}")]
    Input(String),
    /// An area without pupils in one of the two groups, or with one school: no gap or no interval.
    #[error("area `{area}` of `{by}`: {reason}")]
    Area {
        /// The area.
        area: String,
        /// The area column.
        by: String,
        /// What is missing.
        reason: String,
    },
}

/// Gaps in `outcome` between pupils with `group` = 0 and 1 in each area of `by`, clustering by `school`
/// (see the module documentation). `area_of_school` supplies the area of each school when `by` is not a
/// pupil column (a school table's column).
pub fn gaps(
    pupils: &Table,
    outcome: &str,
    group: &str,
    by: &str,
    school: &str,
    area_of_school: Option<&HashMap<String, String>>,
) -> Result<Gaps, GapError> {
    let input = |m: String| GapError::Input(m);
    let y = pupils.numeric(outcome).map_err(|e| input(e.to_string()))?;
    let g = pupils.numeric(group).map_err(|e| input(e.to_string()))?;
    let s = pupils.column(school).map_err(|e| input(e.to_string()))?;
    let area_col = if pupils.has(by) || area_of_school.is_none() {
        Some(pupils.column(by).map_err(|e| input(e.to_string()))?)
    } else {
        None
    };
    let n = pupils.n_rows();
    let mut rows: Vec<(usize, String, String)> = Vec::with_capacity(n);
    let mut missing = 0usize;
    for i in 0..n {
        if let Some(v) = g.get(i).copied().filter(|v| !v.is_nan())
            && v != 0.0
            && v != 1.0
        {
            return Err(input(format!("`{group}` must be 0 or 1 but row {} holds {v}", i + 1)));
        }
        let Some(sid) = s.text_at(i) else {
            missing += 1;
            continue;
        };
        let area = match (area_col, area_of_school) {
            (Some(c), _) => c.text_at(i),
            (None, Some(map)) => map.get(&sid).cloned(),
            (None, None) => None,
        };
        match area {
            Some(a) if !y[i].is_nan() && !g[i].is_nan() => rows.push((i, sid, a)),
            _ => missing += 1,
        }
    }
    if rows.is_empty() {
        return Err(input(format!("no pupil has `{outcome}`, `{group}` and `{by}` all present")));
    }
    let binary = rows.iter().all(|(i, ..)| y[*i] == 0.0 || y[*i] == 1.0);
    let mean_all = rows.iter().map(|(i, ..)| y[*i]).sum::<f64>() / rows.len() as f64;
    let outcome_sd = (rows.iter().map(|(i, ..)| (y[*i] - mean_all).powi(2)).sum::<f64>()
        / (rows.len() as f64 - 1.0).max(1.0))
    .sqrt();
    let mut by_area: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
    for (i, sid, a) in &rows {
        by_area.entry(a.as_str()).or_default().push((*i, sid.as_str()));
    }
    let all: Vec<(usize, &str)> = rows.iter().map(|(i, sid, _)| (*i, sid.as_str())).collect();
    let mut areas = by_area.iter().map(|(a, r)| area_gap(a, r, y, g, outcome_sd, by)).collect::<Result<Vec<_>, _>>()?;
    let overall = area_gap("all areas", &all, y, g, outcome_sd, by)?;
    let best =
        areas.iter().min_by(|a, b| a.gap.total_cmp(&b.gap).then(a.area.cmp(&b.area))).map(|a| (a.area.clone(), a.gap));
    let (best_area, best_gap) = best.unwrap_or_default();
    let mut extra_total = None;
    if binary {
        let mut total = 0.0;
        for a in &mut areas {
            let extra = a.pupils[1] as f64 * (a.gap - best_gap).max(0.0);
            a.extra_pupils = Some(extra);
            total += extra;
        }
        extra_total = Some(total);
    }
    Ok(Gaps {
        outcome: outcome.to_string(),
        group: group.to_string(),
        by: by.to_string(),
        binary,
        outcome_sd,
        n_pupils: rows.len(),
        n_missing: missing,
        overall,
        areas,
        best_area,
        extra_pupils: extra_total,
    })
}

/// The gap of one area's rows `(row, school)` with its CR1 interval.
fn area_gap(area: &str, rows: &[(usize, &str)], y: &[f64], g: &[f64], sd: f64, by: &str) -> Result<AreaGap, GapError> {
    let fail = |reason: String| GapError::Area { area: area.to_string(), by: by.to_string(), reason };
    let mut count = [0usize; 2];
    let mut sum = [0.0f64; 2];
    for &(i, _) in rows {
        let k = usize::from(g[i] == 1.0);
        count[k] += 1;
        sum[k] += y[i];
    }
    if count[0] == 0 || count[1] == 0 {
        let which = if count[1] == 0 { "with" } else { "without" };
        return Err(fail(format!("no pupils {which} the characteristic, so there is no gap to estimate")));
    }
    let mean = [sum[0] / count[0] as f64, sum[1] / count[1] as f64];
    // OLS of y on [1, g]: intercept mean[0], slope mean[1] − mean[0]; residuals about the group means.
    let n = rows.len() as f64;
    let n1 = count[1] as f64;
    // (X'X)^{-1} for X = [1, g]: [[n, n1], [n1, n1]]^{-1} = 1/(n n1 − n1²) [[n1, −n1], [−n1, n]].
    let det = n * n1 - n1 * n1;
    let inv = [[n1 / det, -n1 / det], [-n1 / det, n / det]];
    // Ordered by school id, so the sums below run in one order in every process (a HashMap's order is
    // seeded per process and changed the last digits from run to run).
    let mut score: BTreeMap<&str, [f64; 2]> = BTreeMap::new();
    for &(i, sid) in rows {
        let k = usize::from(g[i] == 1.0);
        let e = y[i] - mean[k];
        let sc = score.entry(sid).or_insert([0.0; 2]);
        sc[0] += e;
        sc[1] += e * g[i];
    }
    let clusters = score.len();
    if clusters < 2 {
        return Err(fail("one school only: a gap's interval needs at least two schools".into()));
    }
    let mut meat = [[0.0f64; 2]; 2];
    for sc in score.values() {
        for a in 0..2 {
            for b in 0..2 {
                meat[a][b] += sc[a] * sc[b];
            }
        }
    }
    // Slope variance: row 1 of inv · meat · inv column 1.
    let mut v = 0.0;
    for a in 0..2 {
        for b in 0..2 {
            v += inv[1][a] * meat[a][b] * inv[b][1];
        }
    }
    let gc = clusters as f64;
    let factor = gc / (gc - 1.0) * (n - 1.0) / (n - 2.0).max(1.0);
    let se = (v * factor).sqrt();
    let df = gc - 1.0;
    let t = StudentsT::new(0.0, 1.0, df).map(|d| d.inverse_cdf(0.975)).unwrap_or(f64::NAN);
    let gap = mean[0] - mean[1];
    Ok(AreaGap {
        area: area.to_string(),
        pupils: count,
        schools: clusters,
        mean,
        gap,
        std_error: se,
        df,
        lower: gap - t * se,
        upper: gap + t * se,
        gap_sd: gap / sd,
        extra_pupils: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exam_gaps_match_club_sandwich_cr1s() {
        // lm(normexam ~ girl) per area with clubSandwich's CR1S clustered by school (analyst_reference.R):
        // gaps and SEs to 1e-9 (closed forms on both sides), schools exactly.
        let (t, r) = crate::value_added::tests::exam_reference();
        let gp = gaps(&t, "normexam", "girl", "type", "school", None).unwrap();
        for w in r["gaps"].as_array().unwrap() {
            let area = w["area"].as_str().unwrap();
            let g = if area == "all" { &gp.overall } else { gp.areas.iter().find(|a| a.area == area).unwrap() };
            assert!((g.gap - w["gap"].as_f64().unwrap()).abs() < 1e-9, "{g:?} {w}");
            assert!((g.std_error - w["std_error"].as_f64().unwrap()).abs() < 1e-9, "{g:?} {w}");
            assert_eq!(g.schools as u64, w["schools"].as_u64().unwrap());
        }
    }
    #[test]
    fn the_same_data_give_the_same_bits() {
        // Sums over schools run in one order (not a hash map's, seeded per map): repeated runs agree exactly.
        let (t, _) = crate::value_added::tests::exam_reference();
        let first = gaps(&t, "normexam", "girl", "type", "school", None).unwrap();
        for _ in 0..5 {
            let again = gaps(&t, "normexam", "girl", "type", "school", None).unwrap();
            assert_eq!(again.overall.std_error.to_bits(), first.overall.std_error.to_bits());
            for (a, b) in again.areas.iter().zip(&first.areas) {
                assert_eq!(a.std_error.to_bits(), b.std_error.to_bits(), "{}", a.area);
            }
        }
    }

    use psmeval_frame::Column;

    /// Two regions of three schools of four pupils: outcome 0/1, fsm 0/1.
    fn table() -> Table {
        let school = ["a", "a", "a", "a", "b", "b", "b", "b", "c", "c", "c", "c"];
        let y = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let fsm = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        let mut s: Vec<Option<String>> = school.iter().map(|s| Some(s.to_string())).collect();
        let mut yy = y.to_vec();
        let mut ff = fsm.to_vec();
        let mut region: Vec<Option<String>> = vec![Some("North".into()); 12];
        let london_school = ["d", "d", "d", "e", "e", "e", "f", "f"];
        let london_y = [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        let london_fsm = [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0];
        for (sc, (yv, fv)) in london_school.iter().zip(london_y.iter().zip(london_fsm.iter())) {
            s.push(Some(sc.to_string()));
            yy.push(*yv);
            ff.push(*fv);
            region.push(Some("London".into()));
        }
        Table::new()
            .with("school_id", Column::Text(s))
            .unwrap()
            .with("expected", Column::Numeric(yy))
            .unwrap()
            .with("fsm", Column::Numeric(ff))
            .unwrap()
            .with("region", Column::Text(region))
            .unwrap()
    }

    #[test]
    fn gaps_match_a_direct_calculation() {
        let t = table();
        let gp = gaps(&t, "expected", "fsm", "region", "school_id", None).unwrap();
        assert!(gp.binary);
        let north = gp.areas.iter().find(|a| a.area == "North").unwrap();
        let rows: Vec<usize> = (0..12).collect();
        let y = t.numeric("expected").unwrap();
        let f = t.numeric("fsm").unwrap();
        let m0 = rows.iter().filter(|&&i| f[i] == 0.0).map(|&i| y[i]).sum::<f64>()
            / rows.iter().filter(|&&i| f[i] == 0.0).count() as f64;
        let m1 = rows.iter().filter(|&&i| f[i] == 1.0).map(|&i| y[i]).sum::<f64>()
            / rows.iter().filter(|&&i| f[i] == 1.0).count() as f64;
        assert!((north.gap - (m0 - m1)).abs() < 1e-12);
        assert_eq!(north.schools, 3);
        assert_eq!(north.df, 2.0);
        // The CR1 variance by hand: the slope of y on fsm with school clusters.
        let n = 12.0;
        let n1 = rows.iter().filter(|&&i| f[i] == 1.0).count() as f64;
        let mut meat = [[0.0; 2]; 2];
        for sc in ["a", "b", "c"] {
            let idx: Vec<usize> =
                (0..12).filter(|&i| t.column("school_id").unwrap().text_at(i).as_deref() == Some(sc)).collect();
            let u0: f64 = idx.iter().map(|&i| y[i] - if f[i] == 1.0 { m1 } else { m0 }).sum();
            let u1: f64 = idx.iter().map(|&i| (y[i] - if f[i] == 1.0 { m1 } else { m0 }) * f[i]).sum();
            meat[0][0] += u0 * u0;
            meat[0][1] += u0 * u1;
            meat[1][1] += u1 * u1;
        }
        meat[1][0] = meat[0][1];
        let det = n * n1 - n1 * n1;
        let b = [-n1 / det, n / det];
        let v = b[0] * (meat[0][0] * b[0] + meat[0][1] * b[1]) + b[1] * (meat[1][0] * b[0] + meat[1][1] * b[1]);
        let se = (v * 3.0 / 2.0 * 11.0 / 10.0).sqrt();
        assert!((north.std_error - se).abs() < 1e-12, "{} vs {se}", north.std_error);
        let t975 = 4.302652729911275; // qt(0.975, 2)
        assert!((north.upper - (north.gap + t975 * se)).abs() < 1e-9);
        // Counterfactual: the smaller gap is the best; the other area's FSM pupils times the excess.
        let london = gp.areas.iter().find(|a| a.area == "London").unwrap();
        let (best, worst) = if north.gap < london.gap { (north, london) } else { (london, north) };
        assert_eq!(gp.best_area, best.area);
        assert!((worst.extra_pupils.unwrap() - worst.pupils[1] as f64 * (worst.gap - best.gap)).abs() < 1e-12);
        assert_eq!(best.extra_pupils, Some(0.0));
        assert_eq!(gp.overall.pupils[0] + gp.overall.pupils[1], 20);
    }

    #[test]
    fn areas_from_the_school_table_and_bad_inputs() {
        let t = table();
        let map: HashMap<String, String> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|s| (s.to_string(), if *s < "d" { "N" } else { "S" }.to_string()))
            .collect();
        let gp = gaps(&t, "expected", "fsm", "la", "school_id", Some(&map)).unwrap();
        assert_eq!(gp.areas.iter().map(|a| a.area.as_str()).collect::<Vec<_>>(), ["N", "S"]);
        let e = gaps(&t, "expected", "region", "region", "school_id", None).unwrap_err().to_string();
        assert!(e.contains("must be numeric"), "{e}");
        let bad = t.clone().with("two", Column::Numeric(vec![2.0; 20])).unwrap();
        let e = gaps(&bad, "expected", "two", "region", "school_id", None).unwrap_err().to_string();
        assert!(e.contains("`two` must be 0 or 1 but row 1 holds 2"), "{e}");
        let none = t.clone().with("none", Column::Numeric(vec![0.0; 20])).unwrap();
        let e = gaps(&none, "expected", "none", "region", "school_id", None).unwrap_err().to_string();
        assert!(e.contains("area `London` of `region`: no pupils with the characteristic"), "{e}");
    }
}
