//! The headline table of an evaluation, first in its report: one row per outcome and subgroup with the
//! pooled programme effect as an effect size and its 95% CI, pupils and schools per group, the EEF's
//! months of additional progress, the p value (Holm-adjusted for the secondary analyses) and the design's
//! analytic MDES.
//!
//! The primary analysis is the all-pupils analysis of the outcome marked `primary = true`; every other row
//! is secondary, and the secondary p values are adjusted together by Holm's step-down method (each
//! family-wise at 5%). Months' progress uses the EEF Teaching and Learning Toolkit's conversion
//! (Education Endowment Foundation, "About the Toolkits: attainment", months' progress table): the effect
//! size rounded to two decimals, 0 months up to 0.01, then 1 month from 0.02, 2 from 0.10, 3 from 0.19,
//! 4 from 0.27, 5 from 0.36, 6 from 0.45, 7 from 0.53, 8 from 0.62, 9 from 0.70, 10 from 0.79, 11 from
//! 0.88 and 12 from 0.96, negative effects mirrored. (EEF project reports use a slightly different
//! table; the report says which one this is.)

use serde::{Deserialize, Serialize};

use crate::effects::Period;
use crate::evaluation::OutcomeResult;
use crate::float::nan_if_null;
use crate::study::Study;

/// One row of the headline table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadlineRow {
    /// The outcome's name.
    pub outcome: String,
    /// The subgroup, `None` for all pupils.
    pub subgroup: Option<String>,
    /// The primary analysis.
    pub primary: bool,
    /// Pupils analysed in lead / contrast schools (all years).
    pub pupils: [usize; 2],
    /// Lead / contrast schools analysed.
    pub schools: [usize; 2],
    /// The pooled effect in outcome units (log-odds for a binary outcome).
    #[serde(deserialize_with = "nan_if_null")]
    pub estimate: f64,
    /// The pooled effect as an effect size.
    #[serde(deserialize_with = "nan_if_null")]
    pub effect_size: f64,
    /// Its 95% CI.
    #[serde(deserialize_with = "nan_if_null")]
    pub effect_size_low: f64,
    /// Its 95% CI.
    #[serde(deserialize_with = "nan_if_null")]
    pub effect_size_high: f64,
    /// EEF months of additional progress of the effect size.
    pub months: Option<i32>,
    /// The pooled effect's p value.
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
    /// Holm-adjusted p value among the secondary analyses (`None` for the primary one).
    pub p_holm: Option<f64>,
    /// The analytic MDES (effect-size units), when it could be computed.
    pub mdes: Option<f64>,
    /// How the CI and p value were computed (`CR2`, `model`, `Wald z`, …).
    pub inference: String,
}

/// EEF months of additional progress for an effect size (see the module documentation).
pub fn eef_months(effect_size: f64) -> Option<i32> {
    if !effect_size.is_finite() {
        return None;
    }
    const FROM: [f64; 12] = [0.02, 0.10, 0.19, 0.27, 0.36, 0.45, 0.53, 0.62, 0.70, 0.79, 0.88, 0.96];
    let es = (effect_size.abs() * 100.0).round() / 100.0;
    let months = FROM.iter().filter(|&&f| es >= f - 1e-9).count() as i32;
    Some(if effect_size < 0.0 { -months } else { months })
}

/// Holm's step-down adjustment of p values (NaN stays NaN and is not counted).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_finite()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// The headline rows of an evaluation's outcome analyses (skipped analyses are left out).
pub fn headline(study: &Study, outcomes: &[OutcomeResult]) -> Vec<HeadlineRow> {
    let primary_outcome = study.outcomes.iter().find(|o| o.primary).map(|o| o.name.as_str());
    let mut rows: Vec<HeadlineRow> = outcomes
        .iter()
        .filter(|o| o.skipped.is_none())
        .filter_map(|o| {
            let pooled = o.effects.iter().find(|e| matches!(e.year, Period::Pooled(_)))?;
            let sd = o.effect_size_sd;
            let es = |x: f64| if sd.is_finite() && sd > 0.0 { x / sd } else { f64::NAN };
            let pupils = o.trend.iter().fold([0usize; 2], |mut acc, c| {
                acc[usize::from(!c.cell.1)] += c.n;
                acc
            });
            let treated = o.counts.n_treated_schools;
            Some(HeadlineRow {
                outcome: o.name.clone(),
                subgroup: o.subgroup.clone(),
                primary: o.subgroup.is_none() && primary_outcome == Some(o.name.as_str()),
                pupils,
                schools: [treated, o.counts.n_schools.saturating_sub(treated)],
                estimate: pooled.estimate,
                effect_size: pooled.effect_size,
                effect_size_low: es(pooled.ci_low),
                effect_size_high: es(pooled.ci_high),
                months: eef_months(pooled.effect_size),
                p_value: pooled.p_value,
                p_holm: None,
                mdes: o.analytic_mdes.as_ref().map(|m| m.mdes).filter(|m| m.is_finite()),
                inference: pooled.inference.clone(),
            })
        })
        .collect();
    let secondary: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].primary).collect();
    let adjusted = holm(&secondary.iter().map(|&i| rows[i].p_value).collect::<Vec<_>>());
    for (k, &i) in secondary.iter().enumerate() {
        rows[i].p_holm = Some(adjusted[k]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_follow_the_eef_table() {
        let cases = [
            (0.0, 0),
            (0.01, 0),
            (0.014, 0),
            (0.016, 1),
            (0.09, 1),
            (0.10, 2),
            (0.18, 2),
            (0.19, 3),
            (0.26, 3),
            (0.27, 4),
            (0.44, 5),
            (0.45, 6),
            (0.61, 7),
            (0.62, 8),
            (0.78, 9),
            (0.79, 10),
            (0.95, 11),
            (0.96, 12),
            (1.4, 12),
            (-0.12, -2),
        ];
        for (es, months) in cases {
            assert_eq!(eef_months(es), Some(months), "effect size {es}");
        }
        assert_eq!(eef_months(f64::NAN), None);
    }

    #[test]
    fn holm_matches_r_p_adjust() {
        // p.adjust(c(0.01, 0.04, 0.03, 0.005, 0.5), "holm") = 0.04 0.09 0.09 0.025 0.5
        let adj = holm(&[0.01, 0.04, 0.03, 0.005, 0.5]);
        let want = [0.04, 0.09, 0.09, 0.025, 0.5];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        let with_nan = holm(&[0.02, f64::NAN, 0.01]);
        assert!((with_nan[0] - 0.02).abs() < 1e-12 && with_nan[1].is_nan() && (with_nan[2] - 0.02).abs() < 1e-12);
    }
}
