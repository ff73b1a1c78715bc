//! The design `psmeval power` simulates ([`Design`]) and where each of its values came from: the study's
//! `[simulation]` table, the study's own data and fitted impact model (the default, `from = "data"`), or the
//! simulator's defaults (`from = "defaults"`). A value the `[simulation]` table gives always wins.
//!
//! From data ([`Design::from_data`]): the school table gives the number of schools and of lead schools; the
//! pupil rows of the *design outcome* (the primary outcome when it is a score, else the first score), within
//! the study's years and the outcome's filter, per school and year give the cohort size; and the study's own
//! impact model of that outcome, fitted to the data exactly as `evaluate` fits it, gives the variance
//! components: the school intercept SD, the school slope SD (with random slopes on year), the cohort SD (with
//! the cohort term) and the pupil residual SD, in pupil SD units (the analysed scale of an outcome
//! standardized within year; otherwise divided by the model's effect-size SD).
//!
//! The simulator's SDs are those of a latent score, and a model fitted to simulated data does not return them
//! as they went in: the schools' prior attainment adds between-school variance, the pupil covariates absorb
//! part of it, and banded or clamped scores shrink everything. So the SDs are *calibrated*: a pilot population
//! of the design (fixed seed [`PILOT_SEED`], no programme effect) is simulated, the same model fitted to it,
//! and each SD scaled by the ratio of the data's fitted SD to the pilot's, [`CALIBRATION_ROUNDS`] times on the
//! same pilot seed. The last pilot's fitted SDs are kept ([`DataFit::pilot`]), so the report can show how
//! closely the simulated design reproduces the data. A study with no score outcome keeps the simulator's
//! default SDs (a logistic model's variances are on another scale) and says so.

use std::collections::BTreeMap;

use psmeval_frame::{Column, Table};
use psmeval_synth::{SimConfig, simulate};
use serde::{Deserialize, Serialize};

use crate::study::{DesignFrom, Family, InferenceMethod, OutcomeSpec, Study, filter_rows};
use crate::{EvaluationError, Plan, evaluate, population_tables};

/// The seed of the calibration's pilot populations (a constant, so the design is a function of the study and
/// its data only, whatever the run's seed).
pub const PILOT_SEED: u64 = 20_161_201;

/// Rounds of calibration of the simulator's SDs against the data's fitted SDs.
pub const CALIBRATION_ROUNDS: usize = 2;

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
    /// The fitted SDs of that model, pupil SD units.
    pub fitted: Option<ComponentSds>,
    /// The same model's fitted SDs on the last calibration pilot (what the simulated design reproduces).
    pub pilot: Option<ComponentSds>,
    /// What a reader should know about the estimate.
    pub notes: Vec<String>,
}

/// The SDs of an impact model's variance components, pupil SD units (`None`: not in the model).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSds {
    /// School random intercepts.
    pub school: f64,
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
        let cohort_size = cohort_size(plan, pupils, n_schools, outcome.or(study.outcomes.first()));
        let mut fit = DataFit {
            schools: n_schools,
            leads: n_leads,
            cohort_size,
            outcome: outcome.map(|o| o.name.clone()),
            formula: None,
            fitted: None,
            pilot: None,
            notes: Vec::new(),
        };
        let set = |design: &mut Design, field: &str, apply: &dyn Fn(&mut Design)| {
            if !given(study, field) {
                apply(design);
                design.basis.sources.insert(field.to_string(), Source::Data);
            }
        };
        set(&mut design, "schools", &|d| d.schools = n_schools);
        set(&mut design, "leads", &|d| d.leads = n_leads);
        set(&mut design, "cohort_size", &|d| d.cohort_size = cohort_size);
        let Some(outcome) = outcome else {
            fit.notes.push(
                "the study has no score outcome, so the simulator's default school, slope, cohort and pupil SDs \
                 are used (a logistic model's variances are on its latent scale, not the scores')"
                    .into(),
            );
            design.basis.data_fit = Some(fit);
            return Ok(design);
        };
        let design_plan = design_plan(plan, outcome)?;
        let (formula, target) = fitted_sds(&design_plan, schools, pupils)?;
        fit.formula = Some(formula);
        fit.fitted = Some(target);
        // The fields the data set, with what the model lacks left at its source.
        let open = |f: &str| !given(study, f);
        let calibrated = |t: Option<f64>, f: &str| open(f) && t.is_some();
        let (c_school, c_slope, c_cohort, c_pupil) = (
            open("school_sd"),
            calibrated(target.slope, "slope_sd"),
            calibrated(target.cohort, "cohort_sd"),
            open("pupil_sd"),
        );
        if open("slope_sd") && target.slope.is_none() {
            fit.notes.push(format!(
                "the model has no random slope on year, so the simulated schools keep the default slope SD {}",
                design.slope_sd
            ));
        }
        if open("cohort_sd") && target.cohort.is_none() {
            fit.notes.push(format!(
                "the model has no cohort term, so the simulated cohorts keep the default cohort SD {}",
                design.cohort_sd
            ));
        }
        if c_school {
            design.school_sd = target.school;
        }
        if c_slope {
            design.slope_sd = target.slope.unwrap_or(design.slope_sd);
        }
        if c_cohort {
            design.cohort_sd = target.cohort.unwrap_or(design.cohort_sd);
        }
        if c_pupil {
            design.pupil_sd = target.pupil;
        }
        let rescale = |s: f64, t: f64, p: f64, max: f64| {
            if t == 0.0 {
                0.0
            } else if p > 0.0 && p.is_finite() {
                (s * t / p).clamp(0.0, max)
            } else {
                s
            }
        };
        let mut pilot = None;
        if c_school || c_slope || c_cohort || c_pupil {
            for round in 0..=CALIBRATION_ROUNDS {
                let p = pilot_sds(&design_plan, &design)?;
                pilot = Some(p);
                if round == CALIBRATION_ROUNDS {
                    break;
                }
                if c_school {
                    design.school_sd = rescale(design.school_sd, target.school, p.school, 2.0);
                }
                if let (true, Some(t), Some(p)) = (c_slope, target.slope, p.slope) {
                    design.slope_sd = rescale(design.slope_sd, t, p, 2.0);
                }
                if let (true, Some(t), Some(p)) = (c_cohort, target.cohort, p.cohort) {
                    design.cohort_sd = rescale(design.cohort_sd, t, p, 2.0);
                }
                if c_pupil {
                    design.pupil_sd = rescale(design.pupil_sd, target.pupil, p.pupil, 5.0).max(0.01);
                }
            }
        }
        for (field, on) in
            [("school_sd", c_school), ("slope_sd", c_slope), ("cohort_sd", c_cohort), ("pupil_sd", c_pupil)]
        {
            if on {
                design.basis.sources.insert(field.to_string(), Source::Data);
            }
        }
        fit.pilot = pilot;
        design.basis.data_fit = Some(fit);
        Ok(design)
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
        return Err(sample_error(format!("its impact model could not be fitted: {why}")));
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
        school: scale * sd(school, Some("(Intercept)")).unwrap_or(0.0),
        slope: sd(school, Some("year_c")).map(|s| scale * s),
        cohort: sd(&cohort_group, Some("(Intercept)")).map(|s| scale * s),
        pupil: scale * pupil,
    };
    if !sds.pupil.is_finite() {
        return Err(sample_error("the impact model has no residual variance".into()));
    }
    Ok((model.formula().to_string(), sds))
}

/// The design plan's fitted SDs on a pilot population of `design` (no programme effect).
fn pilot_sds(plan: &Plan, design: &Design) -> Result<ComponentSds, EvaluationError> {
    let pilot_error = |why: String| EvaluationError::Sample {
        analysis: "the design's calibration pilot".into(),
        message: format!("the simulated design cannot be run: {why}"),
    };
    let pop = simulate(&design.sim_config(0.0, PILOT_SEED)).map_err(|e| pilot_error(e.to_string()))?;
    let (schools, pupils) = population_tables(&pop).map_err(|e| pilot_error(e.to_string()))?;
    fitted_sds(plan, &schools, &pupils).map(|(_, sds)| sds).map_err(|e| pilot_error(e.to_string()))
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
        assert!(near(pilot.school, target.school, 0.03), "{pilot:?} vs {target:?}");
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
        assert!(d.basis.data_fit.unwrap().notes[0].contains("no score outcome"));
    }

    #[test]
    fn data_that_do_not_fit_the_study_are_an_error_naming_the_column() {
        let (schools, pupils) = data(&SimConfig { schools: 100, leads: 5, mean_cohort: 10.0, ..SimConfig::default() });
        let wrong = KS2.replace("column = \"maths\"", "column = \"mathematics\"");
        let e = Design::from_data(&plan("", &wrong), &schools, &pupils).unwrap_err().to_string();
        assert!(e.contains("mathematics"), "{e}");
    }
}
