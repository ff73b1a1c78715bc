//! The design `psmeval power` simulates ([`Design`]) and where each of its values came from: the study's
//! `[simulation]` table, the study's own data and fitted impact model (the default, `from = "data"`), or the
//! simulator's defaults (`from = "defaults"`). A value the `[simulation]` table gives always wins.
//!
//! From data ([`Design::from_data`]): the school table gives the number of schools and of lead schools; the
//! pupil rows of the *design outcome* (the primary outcome when it is a score, else the first score), within
//! the study's years and the outcome's filter, per school and year give the cohort size; and the study's own
//! impact model of that outcome, fitted to the data exactly as `evaluate` fits it, gives the variance
//! components: the school intercept SD, the school slope SD (with random slopes on year), the cohort SD (with
//! the cohort term) and the pupil residual SD, on the analysed scale (pupil SD units for an outcome
//! standardized within year; otherwise divided by the model's effect-size SD).
//!
//! The simulator's SDs are those of a latent score, and a model fitted to simulated data does not return them
//! as they went in: the schools' prior attainment adds between-school variance, the pupil covariates absorb
//! part of it, and banded or clamped scores shrink everything. So the SDs are *calibrated*: a pilot population
//! of the design (fixed seed [`PILOT_SEED`], no programme effect) is simulated, the same model fitted to it,
//! and each SD scaled by the ratio of the data's fitted SD to the pilot's, on the same pilot seed, until every
//! pilot SD is within [`CALIBRATION_TOL`] of the data's (at most [`CALIBRATION_ROUNDS`] rounds; a note says
//! when it is not). The last pilot's fitted SDs are kept ([`DataFit::pilot`]), so the report can show how
//! closely the simulated design reproduces the data, with the pilot's latent total SD (the unit of the
//! simulated effects). A study with no score outcome keeps the simulator's default SDs (a logistic model's
//! variances are on another scale) and says so; so does a model without one of the terms.

use std::collections::BTreeMap;

use psmeval_frame::{Column, Table};
use psmeval_synth::{SimConfig, simulate};
use serde::{Deserialize, Serialize};

use crate::study::{DesignFrom, Family, InferenceMethod, OutcomeSpec, Study, filter_rows};
use crate::{EvaluationError, Plan, evaluate, population_tables};

/// The seed of the calibration's pilot populations (a constant, so the design is a function of the study and
/// its data only, whatever the run's seed).
pub const PILOT_SEED: u64 = 20_161_201;

/// The most calibration rounds (pilot refits after the first pilot).
pub const CALIBRATION_ROUNDS: usize = 6;

/// Calibration stops when every calibrated SD of the pilot is within this relative distance of the data's.
pub const CALIBRATION_TOL: f64 = 0.005;

/// An absolute distance that also counts as within (a singular fit's zero SD, which a pilot with SD 0 may
/// estimate at a few 1e-5 rather than exactly 0).
const SD_FLOOR: f64 = 1e-4;

/// The simulated design: the population each replicate draws (years from the study's `[years]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Design {
    /// Schools per population.
    pub schools: usize,
    /// Lead (treated) schools.
    pub leads: usize,
    /// First year simulated.
    pub first_year: i64,
    /// Last year simulated.
    pub last_year: i64,
    /// First programme year.
    pub programme_start: i64,
    /// Mean pupils per school, year and key stage.
    pub cohort_size: f64,
    /// SD of the school random intercepts, latent SD units.
    pub school_sd: f64,
    /// SD of the school random slopes per year, latent SD units.
    pub slope_sd: f64,
    /// SD of cohort (school × year × key stage) shocks, latent SD units.
    pub cohort_sd: f64,
    /// SD of the pupil-level residual, latent SD units.
    pub pupil_sd: f64,
    /// SD of the programme effect across lead schools.
    pub effect_sd: f64,
    /// Pre-trend of lead schools per pre-programme year.
    pub pretrend: f64,
    /// Where the values came from.
    pub basis: DesignBasis,
}

/// Where a value of the design came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The study's `[simulation]` table.
    Study,
    /// Estimated from the study's data (and calibrated, for the SDs).
    Data,
    /// The simulator's default.
    Default,
}

/// How the design was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesignBasis {
    /// `data` or `defaults`, as the study asked.
    pub from: DesignFrom,
    /// The source of each field (`schools`, `leads`, `cohort_size`, `school_sd`, `slope_sd`, `cohort_sd`,
    /// `pupil_sd`, `effect_sd`, `pretrend`).
    pub sources: BTreeMap<String, Source>,
    /// The fit of the study's data, when the design was estimated from it.
    pub data_fit: Option<DataFit>,
}

/// The study's data as the design reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFit {
    /// Schools in the school table.
    pub schools: usize,
    /// Lead schools among them.
    pub leads: usize,
    /// Mean pupil rows of the design outcome per school and year.
    pub cohort_size: f64,
    /// The design outcome (`None` when the study has no score outcome).
    pub outcome: Option<String>,
    /// Its impact model's formula.
    pub formula: Option<String>,
    /// The fitted SDs of that model on the analysed scale.
    pub fitted: Option<ComponentSds>,
    /// The same model's fitted SDs on the last calibration pilot (what the simulated design reproduces).
    pub pilot: Option<ComponentSds>,
    /// Calibration rounds run after the first pilot.
    pub calibration_rounds: usize,
    /// The total SD of the last pilot's latent score (the unit of the simulated effects; about 1 with the
    /// simulator's default SDs).
    pub latent_total_sd: Option<f64>,
    /// What a reader should know about the estimate.
    pub notes: Vec<String>,
}

/// The SDs of an impact model's variance components on the analysed scale (an outcome standardized within
/// year: pupil SD units; otherwise divided by the model's effect-size SD), `None` where the model lacks the term.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSds {
    /// School random intercepts.
    pub school: Option<f64>,
    /// School random slopes on year.
    pub slope: Option<f64>,
    /// Cohort (school × year) intercepts.
    pub cohort: Option<f64>,
    /// Pupil residual.
    pub pupil: f64,
}

const FIELDS: [&str; 9] =
    ["schools", "leads", "cohort_size", "school_sd", "slope_sd", "cohort_sd", "pupil_sd", "effect_sd", "pretrend"];

/// The fields `from = "data"` estimates.
const ESTIMATED: [&str; 7] = ["schools", "leads", "cohort_size", "school_sd", "slope_sd", "cohort_sd", "pupil_sd"];

fn given(study: &Study, field: &str) -> bool {
    let Some(s) = &study.simulation else { return false };
    match field {
        "schools" => s.schools.is_some(),
        "leads" => s.leads.is_some(),
        "cohort_size" => s.cohort_size.is_some(),
        "school_sd" => s.school_sd.is_some(),
        "slope_sd" => s.slope_sd.is_some(),
        "cohort_sd" => s.cohort_sd.is_some(),
        "pupil_sd" => s.pupil_sd.is_some(),
        "effect_sd" => s.effect_sd.is_some(),
        "pretrend" => s.pretrend.is_some(),
        _ => false,
    }
}

impl Design {
    /// True when the design is to be estimated from the study's data: `from = "data"` (the default) and the
    /// `[simulation]` table leaves at least one of the estimated fields open.
    pub fn needs_data(plan: &Plan) -> bool {
        let from = plan.study.simulation.as_ref().map(|s| s.from).unwrap_or_default();
        from == DesignFrom::Data && ESTIMATED.iter().any(|f| !given(&plan.study, f))
    }

    /// The design from the study's `[simulation]` table and the simulator's defaults (3,000 schools, 47 of them
    /// lead schools, England's mean cohort and the simulator's SDs), without reading data.
    pub fn from_study(plan: &Plan) -> Design {
        let s = plan.study.simulation.clone().unwrap_or_default();
        let d = SimConfig::default();
        let y = &plan.study.years;
        let sources = FIELDS
            .iter()
            .map(|f| (f.to_string(), if given(&plan.study, f) { Source::Study } else { Source::Default }))
            .collect();
        Design {
            schools: s.schools.unwrap_or(3_000),
            leads: s.leads.unwrap_or(d.leads),
            first_year: y.first,
            last_year: y.last,
            programme_start: y.programme_start,
            cohort_size: s.cohort_size.unwrap_or(d.mean_cohort),
            school_sd: s.school_sd.unwrap_or(d.school_sd),
            slope_sd: s.slope_sd.unwrap_or(d.slope_sd),
            cohort_sd: s.cohort_sd.unwrap_or(d.cohort_sd),
            pupil_sd: s.pupil_sd.unwrap_or(d.pupil_sd),
            effect_sd: s.effect_sd.unwrap_or(d.effect_sd),
            pretrend: s.pretrend.unwrap_or(d.pretrend),
            basis: DesignBasis { from: s.from, sources, data_fit: None },
        }
    }

    /// The design estimated from the study's school and pupil tables and calibrated by pilot simulations (see
    /// the module documentation); the `[simulation]` table's values win. Errors are the evaluation's, for the
    /// data's fit, or a simulation error naming the pilot.
    pub fn from_data(plan: &Plan, schools: &Table, pupils: &Table) -> Result<Design, EvaluationError> {
        let study = &plan.study;
        let mut design = Design::from_study(plan);
        design.basis.from = DesignFrom::Data;
        plan.check_data(schools, pupils)?;
        let treat = schools.binary(&study.data.treatment).map_err(EvaluationError::Schools)?;
        let n_schools = schools.n_rows();
        let n_leads = treat.iter().filter(|&&t| t).count();
        let outcome = design_outcome(study);
        let counted = outcome.or(study.outcomes.iter().find(|o| o.primary)).or(study.outcomes.first());
        let cohort_size = cohort_size(plan, pupils, n_schools, counted);
        let mut fit = DataFit {
            schools: n_schools,
            leads: n_leads,
            cohort_size,
            outcome: outcome.map(|o| o.name.clone()),
            formula: None,
            fitted: None,
            pilot: None,
            calibration_rounds: 0,
            latent_total_sd: None,
            notes: Vec::new(),
        };
        let open = |f: &str| !given(study, f);
        let from_data = |design: &mut Design, field: &str| {
            design.basis.sources.insert(field.to_string(), Source::Data);
        };
        if open("schools") {
            design.schools = n_schools;
            from_data(&mut design, "schools");
        }
        if open("leads") {
            design.leads = n_leads;
            from_data(&mut design, "leads");
        }
        if open("cohort_size") {
            design.cohort_size = cohort_size;
            from_data(&mut design, "cohort_size");
            if let (None, Some(o)) = (outcome, counted) {
                fit.notes.push(format!("the cohort size counts the pupil rows of `{}`", o.name));
            }
        }
        let sd_fields = ["school_sd", "slope_sd", "cohort_sd", "pupil_sd"];
        if !sd_fields.iter().any(|f| open(f)) {
            design.basis.data_fit = Some(fit);
            return Ok(design);
        }
        let Some(outcome) = outcome else {
            fit.notes.push(
                "the study has no score outcome, so the SDs not set in [simulation] are the simulator's defaults \
                 (a logistic model's variances are on its latent scale, not the scores')"
                    .into(),
            );
            design.basis.data_fit = Some(fit);
            return Ok(design);
        };
        let design_plan = design_plan(plan, outcome)?;
        let (formula, target) = fitted_sds(&design_plan, schools, pupils)?;
        fit.formula = Some(formula);
        fit.fitted = Some(target);
        // An SD is estimated when the study leaves it open and the model has its term.
        let terms = [
            ("school_sd", target.school, "no school random intercept"),
            ("slope_sd", target.slope, "no random slope on year"),
            ("cohort_sd", target.cohort, "no cohort term"),
            ("pupil_sd", Some(target.pupil), ""),
        ];
        let mut estimated = [false; 4];
        for (k, (field, value, lacks)) in terms.iter().enumerate() {
            match value {
                Some(v) if open(field) => {
                    *design.sd_mut(field) = *v;
                    estimated[k] = true;
                }
                None if open(field) => fit.notes.push(format!(
                    "the model has {lacks}, so the simulated design keeps the default {field} {}",
                    design.sd(field)
                )),
                _ => {}
            }
        }
        if estimated.iter().any(|&e| e) {
            let pilot_targets = |p: &ComponentSds| [p.school, p.slope, p.cohort, Some(p.pupil)];
            let targets = pilot_targets(&target);
            let mut last = None;
            for round in 0..=CALIBRATION_ROUNDS {
                let (p, latent_sd) = pilot_sds(&design_plan, &design)?;
                last = Some((p, latent_sd));
                let within = pilot_targets(&p)
                    .into_iter()
                    .zip(targets)
                    .zip(estimated)
                    .all(|((got, t), on)| !on || reached(t, got));
                fit.calibration_rounds = round;
                if within {
                    break;
                }
                if round == CALIBRATION_ROUNDS {
                    fit.notes.push(format!(
                        "after {CALIBRATION_ROUNDS} calibration rounds the pilot's SDs are not all within {}% of \
                         the data's",
                        100.0 * CALIBRATION_TOL
                    ));
                    break;
                }
                for (k, got) in pilot_targets(&p).into_iter().enumerate() {
                    let (field, (t, got)) = (terms[k].0, (targets[k], got));
                    if let (true, Some(t), Some(got)) = (estimated[k], t, got) {
                        let sd = design.sd(field);
                        *design.sd_mut(field) = calibrate(sd, t, got, field == "pupil_sd");
                    }
                }
            }
            if let Some((p, latent_sd)) = last {
                fit.pilot = Some(p);
                fit.latent_total_sd = Some(latent_sd);
            }
        }
        for (k, &on) in estimated.iter().enumerate() {
            if on {
                from_data(&mut design, terms[k].0);
            }
        }
        design.basis.data_fit = Some(fit);
        Ok(design)
    }

    fn sd(&self, field: &str) -> f64 {
        match field {
            "school_sd" => self.school_sd,
            "slope_sd" => self.slope_sd,
            "cohort_sd" => self.cohort_sd,
            _ => self.pupil_sd,
        }
    }

    fn sd_mut(&mut self, field: &str) -> &mut f64 {
        match field {
            "school_sd" => &mut self.school_sd,
            "slope_sd" => &mut self.slope_sd,
            "cohort_sd" => &mut self.cohort_sd,
            _ => &mut self.pupil_sd,
        }
    }

    /// The simulator's configuration of one unit.
    pub fn sim_config(&self, effect: f64, seed: u64) -> SimConfig {
        SimConfig {
            schools: self.schools,
            leads: self.leads,
            first_year: self.first_year as i32,
            last_year: self.last_year as i32,
            programme_start: self.programme_start as i32,
            effect,
            mean_cohort: self.cohort_size,
            cohort_sd: self.cohort_sd,
            pretrend: self.pretrend,
            effect_sd: self.effect_sd,
            school_sd: self.school_sd,
            slope_sd: self.slope_sd,
            pupil_sd: self.pupil_sd,
            seed,
        }
    }
}

/// One calibration step: the simulator's SD `sd` scaled by the data's fitted SD `target` over the pilot's
/// `pilot`, within the simulator's range (a zero target gives 0; a pilot without variance leaves `sd`).
fn calibrate(sd: f64, target: f64, pilot: f64, pupil: bool) -> f64 {
    let (min, max) = if pupil { (0.01, 5.0) } else { (0.0, 2.0) };
    if target == 0.0 && !pupil {
        0.0
    } else if pilot > 0.0 && pilot.is_finite() {
        (sd * target / pilot).clamp(min, max)
    } else {
        sd
    }
}

/// Whether a pilot SD `got` is within [`CALIBRATION_TOL`] (or [`SD_FLOOR`]) of the data's `target`.
fn reached(target: Option<f64>, got: Option<f64>) -> bool {
    matches!((target, got), (Some(t), Some(g)) if (g - t).abs() <= (CALIBRATION_TOL * t.abs()).max(SD_FLOOR))
}

/// The outcome whose model sets the SDs: the primary outcome when it is a score, else the first score.
fn design_outcome(study: &Study) -> Option<&OutcomeSpec> {
    let score = |o: &&OutcomeSpec| o.family == Family::Gaussian;
    study.outcomes.iter().filter(score).find(|o| o.primary).or_else(|| study.outcomes.iter().find(score))
}

/// Mean pupil rows of `outcome` (its filter, the study's years, a value of its column) per school and year.
fn cohort_size(plan: &Plan, pupils: &Table, n_schools: usize, outcome: Option<&OutcomeSpec>) -> f64 {
    let years = plan.years();
    let all: Vec<usize> = match pupils.column(&plan.study.data.year) {
        Ok(Column::Numeric(y)) => {
            (0..pupils.n_rows()).filter(|&i| y[i].is_finite() && years.contains(&(y[i] as i64))).collect()
        }
        _ => Vec::new(),
    };
    let rows = match outcome {
        Some(o) => {
            let kept = filter_rows(pupils, &o.filter, &all);
            match pupils.column(&o.column) {
                Ok(Column::Numeric(v)) => kept.into_iter().filter(|&i| v[i].is_finite()).count(),
                _ => kept.len(),
            }
        }
        None => all.len(),
    };
    rows as f64 / (n_schools.max(1) * years.len().max(1)) as f64
}

/// The study reduced to the design outcome's impact model: all pupils, no subgroups, gap-closing or
/// sensitivity models, model-based inference (the variance components do not depend on the inference).
fn design_plan(plan: &Plan, outcome: &OutcomeSpec) -> Result<Plan, EvaluationError> {
    let mut study = plan.study.clone();
    study.outcomes = vec![OutcomeSpec { primary: true, ..outcome.clone() }];
    study.subgroups.clear();
    study.model.gap_closing = false;
    study.model.sensitivity = false;
    study.inference.method = InferenceMethod::Model;
    study.inference.replacement_default = false;
    Ok(Plan::new(study)?)
}

/// The formula and the SDs of the design plan's impact model fitted to the tables.
fn fitted_sds(plan: &Plan, schools: &Table, pupils: &Table) -> Result<(String, ComponentSds), EvaluationError> {
    let ev = evaluate(plan, schools, pupils, Vec::new(), String::new(), &|_| {})?;
    let name = &plan.study.outcomes[0].name;
    let sample_error = |message: String| EvaluationError::Sample { analysis: format!("outcome `{name}`"), message };
    let res = ev.outcomes.first().ok_or_else(|| sample_error("no analysis".into()))?;
    if let Some(why) = &res.skipped {
        return Err(sample_error(format!("the design cannot be estimated from the data: {why}")));
    }
    let model = res.model.as_ref().ok_or_else(|| sample_error("no fitted impact model".into()))?;
    let vc = model.variance_components();
    let school = &plan.study.data.school_id;
    let cohort_group = format!("{school}:{}", plan.study.data.year);
    let sd = |group: &str, term: Option<&str>| {
        vc.iter().find(|v| v.group == group && v.term.as_deref() == term).map(|v| v.std_dev)
    };
    let scale = if res.standardized || !res.effect_size_sd.is_finite() || res.effect_size_sd <= 0.0 {
        1.0
    } else {
        1.0 / res.effect_size_sd
    };
    let pupil = vc.iter().find(|v| v.term.is_none()).map_or(f64::NAN, |v| v.std_dev);
    let sds = ComponentSds {
        school: sd(school, Some("(Intercept)")).map(|s| scale * s),
        slope: sd(school, Some("year_c")).map(|s| scale * s),
        cohort: sd(&cohort_group, Some("(Intercept)")).map(|s| scale * s),
        pupil: scale * pupil,
    };
    if !sds.pupil.is_finite() {
        return Err(sample_error("the impact model has no residual variance".into()));
    }
    Ok((model.formula().to_string(), sds))
}

/// The design plan's fitted SDs on a pilot population of `design` (no programme effect) and the pilot's
/// latent total SD.
fn pilot_sds(plan: &Plan, design: &Design) -> Result<(ComponentSds, f64), EvaluationError> {
    let pilot_error = |why: String| EvaluationError::Sample {
        analysis: "the design's calibration pilot".into(),
        message: format!("a population of the estimated design: {why}"),
    };
    let pop = simulate(&design.sim_config(0.0, PILOT_SEED)).map_err(|e| pilot_error(e.to_string()))?;
    let (schools, pupils) = population_tables(&pop).map_err(|e| pilot_error(e.to_string()))?;
    let (_, sds) = fitted_sds(plan, &schools, &pupils)
        .map_err(|e| if e.is_input_error() { pilot_error(e.to_string()) } else { e })?;
    Ok((sds, pop.truth.latent_total_sd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A study of KS2 maths (standardized, the default random part) with matching 1:3 and an optional
    /// `[simulation]` table.
    fn plan(simulation: &str, outcomes: &str) -> Plan {
        let text = format!(
            r#"
            [data]
            schools = "schools.csv"
            pupils = "pupils.csv"
            [matching]
            formula = "lead ~ pct_fsm + prior_attainment + urban"
            ratio = 3
            [years]
            first = 2013
            last = 2017
            programme_start = 2015
            [model]
            covariates = ["female", "fsm", "sen", "prior"]
            {outcomes}
            {simulation}
            "#
        );
        Plan::new(Study::from_toml(&text).unwrap()).unwrap()
    }

    const KS2: &str = r#"
        [[outcomes]]
        name = "KS2 maths"
        column = "maths"
        filter = { key_stage = 2 }
        standardize_within_year = true
    "#;

    fn data(cfg: &SimConfig) -> (Table, Table) {
        population_tables(&simulate(cfg).unwrap()).unwrap()
    }

    /// The round trip: data simulated with known, non-default SDs give back a design with those SDs (within
    /// the sampling error of 80 matched schools), and the calibrated design's pilot reproduces the data's fit.
    #[test]
    fn the_design_recovers_the_variance_components_of_its_data() {
        let truth = SimConfig {
            schools: 400,
            leads: 20,
            mean_cohort: 25.0,
            school_sd: 0.5,
            cohort_sd: 0.2,
            pupil_sd: 0.6,
            seed: 31,
            ..SimConfig::default()
        };
        let (schools, pupils) = data(&truth);
        let plan = plan("", KS2);
        assert!(Design::needs_data(&plan));
        let d = Design::from_data(&plan, &schools, &pupils).unwrap();
        assert_eq!((d.schools, d.leads), (400, 20));
        assert!((d.cohort_size - 25.0).abs() < 1.0, "{}", d.cohort_size);
        let near = |x: f64, t: f64, tol: f64| (x / t - 1.0).abs() < tol;
        assert!(near(d.school_sd, 0.5, 0.25), "school SD {}", d.school_sd);
        assert!(near(d.cohort_sd, 0.2, 0.25), "cohort SD {}", d.cohort_sd);
        assert!(near(d.pupil_sd, 0.6, 0.05), "pupil SD {}", d.pupil_sd);
        assert_eq!(d.slope_sd, SimConfig::default().slope_sd, "no random slope in the model");
        let fit = d.basis.data_fit.as_ref().unwrap();
        let (target, pilot) = (fit.fitted.unwrap(), fit.pilot.unwrap());
        assert!(near(pilot.school.unwrap(), target.school.unwrap(), 0.03), "{pilot:?} vs {target:?}");
        assert!(near(pilot.cohort.unwrap(), target.cohort.unwrap(), 0.03), "{pilot:?} vs {target:?}");
        assert!(near(pilot.pupil, target.pupil, 0.01), "{pilot:?} vs {target:?}");
        for f in ["schools", "leads", "cohort_size", "school_sd", "cohort_sd", "pupil_sd"] {
            assert_eq!(d.basis.sources[f], Source::Data, "{f}");
        }
        for f in ["slope_sd", "effect_sd", "pretrend"] {
            assert_eq!(d.basis.sources[f], Source::Default, "{f}");
        }
        assert!(fit.notes.iter().any(|n| n.contains("no random slope")));
        // The same study and data give the same design (the pilots' seed is fixed).
        assert_eq!(Design::from_data(&plan, &schools, &pupils).unwrap(), d);
    }

    /// Random slopes and a score that is not standardized (the SDs divided by the effect-size SD): the slope SD
    /// is estimated and calibrated too.
    #[test]
    fn random_slopes_and_raw_scores_are_calibrated_too() {
        let truth = SimConfig {
            schools: 400,
            leads: 20,
            mean_cohort: 25.0,
            slope_sd: 0.08,
            first_year: 2016,
            last_year: 2020,
            programme_start: 2018,
            seed: 5,
            ..SimConfig::default()
        };
        let (schools, pupils) = data(&truth);
        let raw = KS2.replace("standardize_within_year = true", "standardize_within_year = false");
        let mut study = plan("", &raw).study;
        study.model.random_slope_year = true;
        study.years.first = 2016;
        study.years.last = 2020;
        study.years.programme_start = 2018;
        let plan = Plan::new(study).unwrap();
        let d = Design::from_data(&plan, &schools, &pupils).unwrap();
        assert_eq!(d.basis.sources["slope_sd"], Source::Data);
        let fit = d.basis.data_fit.as_ref().unwrap();
        let (target, pilot) = (fit.fitted.unwrap(), fit.pilot.unwrap());
        let near = |x: f64, t: f64, tol: f64| (x / t - 1.0).abs() < tol;
        assert!(target.pupil < 1.0, "raw scores are rescaled by the effect-size SD: {target:?}");
        assert!(near(pilot.slope.unwrap(), target.slope.unwrap(), 0.05), "{pilot:?} vs {target:?}");
        assert!(near(pilot.school.unwrap(), target.school.unwrap(), 0.03), "{pilot:?} vs {target:?}");
        assert!(near(d.slope_sd, 0.08, 0.5), "slope SD {}", d.slope_sd);
        assert!(near(d.pupil_sd, 0.72, 0.05), "pupil SD {}", d.pupil_sd);
        assert!(fit.latent_total_sd.is_some_and(|s| (0.8..1.2).contains(&s)), "{:?}", fit.latent_total_sd);
    }

    /// A model without a school intercept (the study's own formula) leaves the school SD at its default.
    #[test]
    fn a_term_the_model_lacks_keeps_its_default() {
        let (schools, pupils) = data(&SimConfig { schools: 200, leads: 10, mean_cohort: 15.0, ..SimConfig::default() });
        let mut study = plan("", KS2).study;
        study.model.formula = Some("outcome ~ factor(year) * group + fsm + prior + (1 | school_id:year)".into());
        let d = Design::from_data(&Plan::new(study).unwrap(), &schools, &pupils).unwrap();
        assert_eq!(d.school_sd, SimConfig::default().school_sd);
        assert_eq!(d.basis.sources["school_sd"], Source::Default);
        assert_eq!(d.basis.sources["cohort_sd"], Source::Data);
        let notes = &d.basis.data_fit.unwrap().notes;
        assert!(notes.iter().any(|n| n.contains("no school random intercept")), "{notes:?}");
    }

    /// A calibration step scales by data over pilot; a zero target (a singular fit) gives 0 and counts as
    /// reached by a pilot SD within the floor.
    #[test]
    fn calibration_steps_and_the_zero_target() {
        assert!((calibrate(0.3, 0.33, 0.30, false) - 0.33).abs() < 1e-12);
        assert_eq!(calibrate(0.1, 0.0, 0.02, false), 0.0);
        assert_eq!(calibrate(0.1, 0.2, 0.0, false), 0.1, "a pilot without variance leaves the SD");
        assert_eq!(calibrate(1.9, 3.0, 1.0, false), 2.0, "within the simulator's range");
        assert!(reached(Some(0.30), Some(0.3014)) && !reached(Some(0.30), Some(0.302)));
        assert!(reached(Some(0.0), Some(3e-5)) && !reached(Some(0.0), Some(0.01)));
        assert!(!reached(None, Some(0.3)));
    }

    #[test]
    fn the_simulation_table_wins_and_defaults_read_no_data() {
        let (schools, pupils) = data(&SimConfig { schools: 200, leads: 10, mean_cohort: 15.0, ..SimConfig::default() });
        let plan_given = plan("[simulation]\nschools = 300\npupil_sd = 0.9", KS2);
        let d = Design::from_data(&plan_given, &schools, &pupils).unwrap();
        assert_eq!((d.schools, d.leads, d.pupil_sd), (300, 10, 0.9));
        assert_eq!(d.basis.sources["schools"], Source::Study);
        assert_eq!(d.basis.sources["pupil_sd"], Source::Study);
        assert_eq!(d.basis.sources["school_sd"], Source::Data);
        let all = "[simulation]\nschools = 300\nleads = 10\ncohort_size = 20\nschool_sd = 0.3\nslope_sd = 0\n\
                   cohort_sd = 0.1\npupil_sd = 0.7";
        assert!(!Design::needs_data(&plan(all, KS2)));
        let defaults = plan("[simulation]\nfrom = \"defaults\"", KS2);
        assert!(!Design::needs_data(&defaults));
        let d = Design::from_study(&defaults);
        assert_eq!((d.schools, d.school_sd, d.basis.from), (3_000, 0.30, DesignFrom::Defaults));
        assert!(d.basis.sources.values().all(|s| *s == Source::Default));
    }

    #[test]
    fn a_study_without_a_score_keeps_the_default_sds_and_says_so() {
        let (schools, pupils) = data(&SimConfig { schools: 200, leads: 10, mean_cohort: 15.0, ..SimConfig::default() });
        let binary = r#"
            [[outcomes]]
            name = "KS2 expected standard"
            column = "expected"
            family = "binomial"
            filter = { key_stage = 2 }
        "#;
        let d = Design::from_data(&plan("", binary), &schools, &pupils).unwrap();
        let defaults = SimConfig::default();
        assert_eq!((d.school_sd, d.cohort_sd, d.pupil_sd), (defaults.school_sd, defaults.cohort_sd, defaults.pupil_sd));
        assert_eq!(d.basis.sources["schools"], Source::Data);
        assert_eq!(d.basis.sources["school_sd"], Source::Default);
        assert!(d.basis.data_fit.unwrap().notes.iter().any(|n| n.contains("no score outcome")));
    }

    #[test]
    fn data_that_do_not_fit_the_study_are_an_error_naming_the_column() {
        let (schools, pupils) = data(&SimConfig { schools: 100, leads: 5, mean_cohort: 10.0, ..SimConfig::default() });
        let wrong = KS2.replace("column = \"maths\"", "column = \"mathematics\"");
        let e = Design::from_data(&plan("", &wrong), &schools, &pupils).unwrap_err().to_string();
        assert!(e.contains("mathematics"), "{e}");
    }
}
