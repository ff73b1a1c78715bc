//! Gap closing: did the programme narrow the gap between a subgroup (FSM pupils, say) and the other pupils?
//!
//! Setting the FSM pupils' effect (a separate model of FSM pupils) beside all pupils' is not a test of the
//! gap: the two estimates share schools and pupils, and their difference has no standard error. The
//! gap-closing model fits all pupils at once with the three-way design
//! `outcome ~ factor(year) * group * fsm + covariates + random effects`. Its `factor(year)Y:group:fsm`
//! coefficients are the lead–contrast difference in the change of the FSM gap, so the same
//! difference-in-differences contrasts as the programme effect ([`crate::effects::did_contrasts`] with
//! `term = group:fsm`) estimate, per programme year and pooled, the programme's effect on subgroup pupils
//! minus its effect on the others: positive when the subgroup gained more, i.e. a disadvantage gap
//! narrowed. The model's random part, covariates (less the subgroup column, now in the design) and the
//! study's inference (CR2 by default) are those of the impact model; effect sizes divide by the all-pupils
//! analysis's SD, so they are on the scale of the headline effects.
//!
//! A gap-closing analysis is run for each subgroup defined by exactly one pupil column that holds only 0
//! and 1, filtered to 1 (`filter = { fsm = 1 }`).

use std::collections::HashMap;

use psmeval_frame::{Column, Table, parse_formula};
use serde::{Deserialize, Serialize};

use crate::effects::{Effect, JointTest};
use crate::float::nan_if_null;
use crate::impact::{EffectTerms, InferenceSummary, design_formula, fit_impact};
use crate::sample::{MatchedSchool, OutcomeRows, build_sample};
use crate::study::{Family, FilterValue, OutcomeSpec, Study, SubgroupSpec};

/// The gap-closing analysis of one outcome and one subgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapClosing {
    /// The outcome's name.
    pub outcome: String,
    /// The subgroup's name.
    pub subgroup: String,
    /// The 0/1 pupil column that defines the subgroup.
    pub variable: String,
    /// The outcome's family.
    pub family: Family,
    /// The model fitted.
    pub formula: String,
    /// Pupils analysed (all pupils of the matched schools with the outcome, covariates and the column).
    pub n_pupils: usize,
    /// Of those, pupils of the subgroup.
    pub n_subgroup_pupils: usize,
    /// Schools analysed.
    pub n_schools: usize,
    /// The SD the effect sizes divide by (the all-pupils analysis's).
    #[serde(deserialize_with = "nan_if_null")]
    pub effect_size_sd: f64,
    /// Per programme year and pooled: the programme's effect on subgroup pupils minus its effect on the
    /// other pupils (outcome units; log-odds for a binary outcome).
    pub effects: Vec<Effect>,
    /// Event study of the same difference (every year against the last pre-programme year).
    pub event_study: Vec<Effect>,
    /// The event study's reference year.
    pub event_reference: Option<i64>,
    /// Joint test that the pre-programme event-study differences are all 0.
    pub pretrend: Option<JointTest>,
    /// What the intervals account for.
    pub inference: Option<InferenceSummary>,
    /// Messages about the fit.
    pub notes: Vec<String>,
    /// Why the model was not fitted, when it was not.
    pub skipped: Option<String>,
}

/// The 0/1 pupil column of a subgroup defined by one such column equal to 1, if it is one.
pub fn subgroup_variable(subgroup: &SubgroupSpec, pupils: &Table) -> Option<String> {
    let mut filters = subgroup.filter.iter();
    let (column, value) = filters.next()?;
    if filters.next().is_some() || *value != FilterValue::Number(1.0) {
        return None;
    }
    match pupils.column(column).ok()? {
        Column::Numeric(v) => v.iter().all(|&x| x.is_nan() || x == 0.0 || x == 1.0).then(|| column.clone()),
        Column::Text(_) => None,
    }
}

/// Fits the gap-closing model of `outcome` for the subgroup column `variable` to all pupils of the matched
/// schools. `es_sd` is the all-pupils analysis's effect-size SD and `years` the study's years (those
/// present in the sample are analysed). A model
/// that cannot be fitted is returned with `skipped` set, as the impact analyses are.
pub fn gap_closing(
    study: &Study,
    pupils: &Table,
    matched: &HashMap<String, MatchedSchool>,
    outcome: &OutcomeSpec,
    subgroup: &SubgroupSpec,
    variable: &str,
    (years, es_sd): (&[i64], f64),
) -> GapClosing {
    fit_gap_closing(study, pupils, matched, (outcome, None), subgroup, variable, years).finish(es_sd)
}

/// A gap-closing analysis fitted before the all-pupils analysis's effect-size SD is known (so the two can
/// run side by side): [`GapFit::finish`] divides by it. Its effect sizes meanwhile are on the outcome's scale.
#[derive(Debug, Clone)]
pub(crate) struct GapFit {
    result: GapClosing,
    /// Whether the analysis got past the checks that come before the SD's (sample, subgroup, years): a
    /// missing SD then skips it.
    checked: bool,
}

impl GapFit {
    /// The analysis with its effect sizes in SDs of `es_sd` (the all-pupils analysis's), or skipped when there
    /// is no such SD, with nothing of the fit kept.
    pub(crate) fn finish(self, es_sd: f64) -> GapClosing {
        let mut r = self.result;
        r.effect_size_sd = es_sd;
        if !self.checked {
            return r;
        }
        if !es_sd.is_finite() {
            r.formula.clear();
            r.notes.clear();
            r.effects.clear();
            r.event_study.clear();
            (r.event_reference, r.pretrend, r.inference) = (None, None, None);
            r.skipped = Some("the all-pupils analysis of this outcome has no effect-size SD".into());
            return r;
        }
        for e in r.effects.iter_mut().chain(r.event_study.iter_mut()) {
            e.effect_size = e.estimate / es_sd;
        }
        r
    }
}

/// [`gap_closing`] without the effect-size SD (see [`GapFit`]).
pub(crate) fn fit_gap_closing(
    study: &Study,
    pupils: &Table,
    matched: &HashMap<String, MatchedSchool>,
    (outcome, shared): (&OutcomeSpec, Option<&OutcomeRows>),
    subgroup: &SubgroupSpec,
    variable: &str,
    years: &[i64],
) -> GapFit {
    // Effect sizes on the outcome's scale until `finish`.
    let es_sd = 1.0;
    let mut result = GapClosing {
        outcome: outcome.name.clone(),
        subgroup: subgroup.name.clone(),
        variable: variable.to_string(),
        family: outcome.family,
        formula: String::new(),
        n_pupils: 0,
        n_subgroup_pupils: 0,
        n_schools: 0,
        effect_size_sd: es_sd,
        effects: Vec::new(),
        event_study: Vec::new(),
        event_reference: None,
        pretrend: None,
        inference: None,
        notes: Vec::new(),
        skipped: None,
    };
    let sample = match build_sample(study, pupils, matched, outcome, None, &[variable], shared) {
        Ok(s) => s,
        Err(e) => {
            result.skipped = Some(e);
            return GapFit { result, checked: false };
        }
    };
    result.n_pupils = sample.counts.n_pupils;
    result.n_schools = sample.counts.n_schools;
    let by = sample.table.numeric(variable).unwrap_or(&[]);
    result.n_subgroup_pupils = by.iter().filter(|&&v| v == 1.0).count();
    if result.n_subgroup_pupils == 0 || result.n_subgroup_pupils == result.n_pupils {
        result.skipped = Some(format!("`{variable}` does not vary among the analysed pupils"));
        return GapFit { result, checked: false };
    }
    let present: Vec<i64> = match sample.table.numeric(&study.data.year) {
        Ok(y) => years.iter().copied().filter(|&v| y.contains(&(v as f64))).collect(),
        Err(e) => {
            result.skipped = Some(e.to_string());
            return GapFit { result, checked: false };
        }
    };
    let (text, notes) = match &study.model.formula {
        None => design_formula(study, &sample, Some(variable)),
        Some(f) => {
            let design = format!("factor({}) * group", study.data.year);
            if !f.contains(&design) {
                result.skipped =
                    Some(format!("the study's own model formula has no `{design}` term to extend with `* {variable}`"));
                return GapFit { result, checked: true };
            }
            (f.replacen(&design, &format!("{design} * {variable}"), 1), Vec::new())
        }
    };
    result.formula = text.clone();
    result.notes = notes;
    let formula = match parse_formula(&text) {
        Ok(f) => f,
        Err(e) => {
            result.skipped = Some(format!("formula `{text}`: {e}"));
            return GapFit { result, checked: true };
        }
    };
    let term = format!("group:{variable}");
    let terms = EffectTerms { years: &present, term: &term };
    match fit_impact(study, &sample, &formula, &text, outcome.family, terms, es_sd) {
        Ok(fit) => {
            result.notes.extend(fit.notes);
            result.effects = fit.effects;
            result.event_study = fit.event_study;
            result.event_reference = Some(fit.event_reference);
            result.pretrend = fit.pretrend;
            result.inference = Some(fit.inference);
        }
        Err(e) => result.skipped = Some(format!("the gap-closing model could not be fitted: {e}")),
    }
    GapFit { result, checked: true }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Period;

    fn fitted() -> GapClosing {
        GapClosing {
            outcome: "KS2 maths".into(),
            subgroup: "FSM pupils".into(),
            variable: "fsm".into(),
            family: Family::Gaussian,
            formula: "outcome ~ factor(year) * group * fsm + (1 | school_id)".into(),
            n_pupils: 100,
            n_subgroup_pupils: 30,
            n_schools: 10,
            effect_size_sd: 1.0,
            effects: vec![Effect::new(Period::Year(2015), 0.3, 0.1, 20.0, 1.0)],
            event_study: vec![Effect::new(Period::Year(2013), -0.05, 0.1, 20.0, 1.0)],
            event_reference: Some(2014),
            pretrend: None,
            inference: None,
            notes: vec!["a note".into()],
            skipped: None,
        }
    }

    /// The effect sizes of a fit made before the all-pupils SD was known are those of a fit made with it; with
    /// no SD the analysis is skipped with nothing of the fit kept; an analysis skipped before the SD's check
    /// keeps its reason.
    #[test]
    fn effect_sizes_divide_by_the_sd_given_later() {
        let done = GapFit { result: fitted(), checked: true }.finish(0.8);
        assert_eq!(done.effect_size_sd, 0.8);
        let direct = Effect::new(Period::Year(2015), 0.3, 0.1, 20.0, 0.8);
        assert_eq!(done.effects[0], direct);
        assert_eq!(done.event_study[0].effect_size, -0.05 / 0.8);
        assert!(done.skipped.is_none());

        let none = GapFit { result: fitted(), checked: true }.finish(f64::NAN);
        assert_eq!(none.skipped.as_deref(), Some("the all-pupils analysis of this outcome has no effect-size SD"));
        assert!(none.effects.is_empty() && none.event_study.is_empty() && none.formula.is_empty());
        assert!(none.notes.is_empty() && none.event_reference.is_none());

        let mut early = fitted();
        early.skipped = Some("`fsm` does not vary among the analysed pupils".into());
        let kept = GapFit { result: early.clone(), checked: false }.finish(f64::NAN);
        assert_eq!(kept.skipped, early.skipped);
        assert!(kept.effect_size_sd.is_nan());
    }
}
