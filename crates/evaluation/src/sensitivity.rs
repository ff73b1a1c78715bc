//! Sensitivity analyses of the primary outcome: its pooled all-pupils effect refitted under the choices a
//! reviewer asks about, beside the main analysis.
//!
//! - Random-effect structure: the cohort term `(1 | school:year)` removed (or added, if the study has none)
//!   and a random slope on year added (or removed). Not for a study's own formula, which fixes the structure.
//! - Inference: the model-based (lme4 / glmer) test beside the design-based (CR2) one, or CR2 when the
//!   study asked for the model's own. The model-based numbers come from the main fit; nothing is refitted.
//! - The programme years before the 2016 assessment change only (2014/15 alone when the programme starts in
//!   2015): the years analysed end in 2015.
//! - A matched sample with a caliper of 0.2 SD of the matching distance (MatchIt's `std.caliper`), matched
//!   again with the study's other matching options.
//!
//! Each row is the study's own analysis with one choice changed (the effect-size SD is recomputed in the
//! changed sample), so rows differ from the main one by that choice alone.

use std::collections::HashMap;

use psmeval_frame::Table;
use psmeval_matching::match_units;
use serde::{Deserialize, Serialize};

use crate::evaluation::{OutcomeResult, analyse, matched_schools};
use crate::float::nan_if_null;
use crate::plan::Plan;
use crate::sample::{MatchedSchool, OutcomeRows};
use crate::study::{Family, OutcomeSpec};

/// The sensitivity analyses of one outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensitivity {
    /// The outcome (its all-pupils analysis).
    pub outcome: String,
    /// The main analysis first, then one row per changed choice.
    pub rows: Vec<SensitivityRow>,
}

/// The pooled effect of one variant of the analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensitivityRow {
    /// Short name (table row, figure label).
    pub analysis: String,
    /// What was changed, in a sentence fragment.
    pub detail: String,
    /// Pooled effect (outcome units; log-odds for a binary outcome).
    #[serde(deserialize_with = "nan_if_null")]
    pub estimate: f64,
    /// Its standard error.
    #[serde(deserialize_with = "nan_if_null")]
    pub std_error: f64,
    /// Lower 95% limit.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_low: f64,
    /// Upper 95% limit.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_high: f64,
    /// Two-sided p value.
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
    /// Effect size.
    #[serde(deserialize_with = "nan_if_null")]
    pub effect_size: f64,
    /// The inference of the row (`CR2`, `model`, `Wald z`, `wild bootstrap`).
    pub inference: String,
    /// Pupils analysed.
    pub n_pupils: usize,
    /// Schools analysed.
    pub n_schools: usize,
    /// Why the variant has no estimate, when it has none.
    pub skipped: Option<String>,
}

impl SensitivityRow {
    fn empty(analysis: &str, detail: String) -> SensitivityRow {
        SensitivityRow {
            analysis: analysis.into(),
            detail,
            estimate: f64::NAN,
            std_error: f64::NAN,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            p_value: f64::NAN,
            effect_size: f64::NAN,
            inference: String::new(),
            n_pupils: 0,
            n_schools: 0,
            skipped: None,
        }
    }

    fn skipped(analysis: &str, detail: String, why: impl Into<String>) -> SensitivityRow {
        SensitivityRow { skipped: Some(why.into()), ..SensitivityRow::empty(analysis, detail) }
    }

    /// The row of an analysis's pooled effect.
    fn from_result(analysis: &str, detail: String, r: &OutcomeResult) -> SensitivityRow {
        let mut row = SensitivityRow::empty(analysis, detail);
        row.n_pupils = r.n_pupils;
        row.n_schools = r.n_schools;
        match (r.effects.iter().find(|e| e.year.is_pooled()), &r.skipped) {
            (Some(e), _) => {
                row.estimate = e.estimate;
                row.std_error = e.std_error;
                row.ci_low = e.ci_low;
                row.ci_high = e.ci_high;
                row.p_value = e.p_value;
                row.effect_size = e.effect_size;
                row.inference = e.inference.clone();
            }
            (None, Some(why)) => row.skipped = Some(why.clone()),
            (None, None) => row.skipped = Some("no pooled effect".into()),
        }
        row
    }
}

/// The refitted variants of the sensitivity table, in its order (after the main analysis and the inference
/// row, [`inference_row`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    Cohort,
    Slope,
    Pre2016,
    Caliper,
}

/// The refitted variants: none needs the main analysis's result, so they can run beside it.
pub(crate) const REFITS: [Variant; 4] = [Variant::Cohort, Variant::Slope, Variant::Pre2016, Variant::Caliper];

/// The last year before the 2016 change of the KS1 and KS2 assessments in England.
const LAST_OLD_REGIME: i64 = 2015;

/// The caliper of the caliper variant, in SDs of the matching distance.
const CALIPER: f64 = 0.2;

/// The sensitivity table of `main` from its other rows (the inference row, then the refits in [`REFITS`]'
/// order): the main analysis's row first.
pub(crate) fn assemble(main: &OutcomeResult, variants: Vec<SensitivityRow>) -> Sensitivity {
    let mut rows = vec![SensitivityRow::from_result("Main analysis", "as reported above".into(), main)];
    rows.extend(variants);
    Sensitivity { outcome: main.name.clone(), rows }
}

/// The analysis of `outcome` (all pupils) refitted under `p` in the matched schools `m`, as a row.
fn refit(
    name: &str,
    detail: String,
    p: &Plan,
    pupils: &Table,
    m: &HashMap<String, MatchedSchool>,
    outcome: &OutcomeSpec,
    shared: Option<&OutcomeRows>,
) -> SensitivityRow {
    match analyse(p, pupils, m, outcome, None, shared) {
        Ok(r) => SensitivityRow::from_result(name, detail, &r),
        Err(e) => SensitivityRow::skipped(name, detail, e.to_string()),
    }
}

/// The inference row of the sensitivity analyses of `main` (the all-pupils analysis of `outcome`): its
/// model-based test beside the design-based one, or CR2 refitted when the main analysis is model-based.
pub(crate) fn inference_row(
    plan: &Plan,
    pupils: &Table,
    matched: &HashMap<String, MatchedSchool>,
    outcome: &OutcomeSpec,
    main: &OutcomeResult,
    shared: Option<&OutcomeRows>,
) -> SensitivityRow {
    let pooled = main.effects.iter().find(|e| e.year.is_pooled());
    match pooled.and_then(|e| e.model_based.as_ref()) {
        Some(m) => {
            let mut row = SensitivityRow::from_result(
                "Model-based SEs",
                format!(
                    "the {} model's own standard errors instead of the design-based ones",
                    if main.family == Family::Binomial { "logistic (glmer)" } else { "mixed (lme4)" }
                ),
                main,
            );
            row.std_error = m.std_error;
            row.ci_low = m.ci_low;
            row.ci_high = m.ci_high;
            row.p_value = m.p_value;
            row.inference = if main.family == Family::Binomial { "Wald z" } else { "model" }.into();
            row
        }
        None => {
            let mut p = plan.clone();
            p.study.inference.method = crate::study::InferenceMethod::Cr2;
            let by = match plan.study.inference.cluster {
                crate::study::ClusterBy::School => "school",
                crate::study::ClusterBy::MatchedSet => "matched set",
            };
            refit(
                "CR2 SEs",
                format!("cluster-robust CR2 standard errors by {by} instead of the model's own"),
                &p,
                pupils,
                matched,
                outcome,
                shared,
            )
        }
    }
}

/// One refitted variant's row of the sensitivity analyses of `outcome` (all pupils).
pub(crate) fn variant_row(
    plan: &Plan,
    schools: &Table,
    pupils: &Table,
    matched: &HashMap<String, MatchedSchool>,
    outcome: &OutcomeSpec,
    v: Variant,
    shared: Option<&OutcomeRows>,
) -> SensitivityRow {
    let study = &plan.study;
    let mut p = plan.clone();
    match v {
        Variant::Cohort | Variant::Slope if study.model.formula.is_some() => SensitivityRow::skipped(
            if matches!(v, Variant::Cohort) { "Cohort term" } else { "Random slope" },
            "another random-effect structure".into(),
            "the study gives its own model formula, which fixes the random effects",
        ),
        Variant::Cohort => {
            let has = study.model.cohort_random_effect;
            p.study.model.cohort_random_effect = !has;
            let (name, detail) = if has {
                ("No cohort term", "without the cohort (school × year) random intercept")
            } else {
                ("With cohort term", "with a cohort (school × year) random intercept")
            };
            refit(name, detail.into(), &p, pupils, matched, outcome, shared)
        }
        Variant::Slope => {
            let has = study.model.random_slope_year;
            p.study.model.random_slope_year = !has;
            let (name, detail) = if has {
                ("No random slope", "without the schools' random slopes on year")
            } else {
                ("Random slope on year", "with a random slope on year per school")
            };
            refit(name, detail.into(), &p, pupils, matched, outcome, shared)
        }
        Variant::Pre2016 => {
            let y = &study.years;
            let name = "Before 2016 only";
            if !(y.last > LAST_OLD_REGIME && y.programme_start <= LAST_OLD_REGIME) {
                return SensitivityRow::skipped(
                    name,
                    "programme years before the 2016 assessment change".into(),
                    "the study has no programme year before 2016, or none after it",
                );
            }
            p.study.years.last = LAST_OLD_REGIME;
            let detail = if y.programme_start == LAST_OLD_REGIME {
                "2014/15 alone: the only programme year before the 2016 assessment change".to_string()
            } else {
                "the programme years before the 2016 assessment change only".to_string()
            };
            refit(name, detail, &p, pupils, matched, outcome, shared)
        }
        Variant::Caliper => {
            let name = "Caliper 0.2 SD";
            p.study.matching.caliper = Some(CALIPER);
            let detail = "matched again with a caliper of 0.2 SD of the matching distance".to_string();
            let rematch = schools.binary(&study.data.treatment).map_err(|e| e.to_string()).and_then(|treat| {
                let ids = schools.unique_ids(&study.data.school_id).map_err(|e| e.to_string())?;
                match_units(&p.study.matching, schools, &treat, &ids).map_err(|e| e.to_string())
            });
            match rematch {
                Ok(m) => {
                    let dropped = m.unmatched_treated.len();
                    let detail = format!(
                        "{detail} ({} treatment school{} left without a match)",
                        dropped,
                        if dropped == 1 { "" } else { "s" }
                    );
                    refit(name, detail, &p, pupils, &matched_schools(&m), outcome, shared)
                }
                Err(e) => SensitivityRow::skipped(name, detail, format!("matching failed: {e}")),
            }
        }
    }
}
