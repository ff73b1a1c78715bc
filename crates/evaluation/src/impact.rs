//! The impact model of an evaluation: a multilevel difference-in-differences model of one outcome in one
//! matched sample, its per-year and pooled programme effects, and the effect-size denominator.
//!
//! - Continuous outcomes: a linear mixed model (REML unless the study asks for ML) and lmerTest-style
//!   Satterthwaite tests of the DiD contrasts ([`crate::effects::did_contrasts`]).
//! - Binary outcomes: a logistic mixed model (Laplace, as glmer's default) with Wald z tests of the same
//!   contrasts on the log-odds scale.
//!
//! Effect sizes follow the study's definition. EEF's convention divides by the total SD of a model without
//! pupil covariates, `outcome ~ factor(year) * group + (1 | school)` (`(1 + year_c | school)` with random
//! slopes; also when the study gives its own formula): √(school intercept variance + σ²), the intercept
//! variance being the between-school variance at the programme start (`year_c` = 0). For logistic models
//! the total SD is that of the latent outcome of the adjusted impact model itself (McKelvey–Zavoina):
//! √(Var(covariate part of Xβ̂) + school intercept variance + π²/3), so the log-odds effect and its SD are on
//! one latent scale (dividing by an unadjusted logistic model's SD would mix two scales, since logistic
//! coefficients grow as covariates are added, and overstate binary effect sizes by about a quarter).

use std::collections::HashMap;

use psmeval_frame::{Column, Formula, Table, parse_formula};
use psmeval_multilevel::{
    ConditionalModes, Cr2, MixedModel, Permutation, Randomization, RandomizationDesign, VarianceComponent,
};
use serde::{Deserialize, Serialize};

use crate::effects::{Contrast, Effect, JointTest, did_contrasts, event_study_contrasts};
use crate::model::{Fitted, ModelOptions, fit_formula};
use crate::record::{ModelRecord, RobustRecord};
use crate::sample::Sample;
use crate::study::{ClusterBy, EffectSizeDefinition, Family, InferenceMethod, PermuteAmong, Study};

/// A school's random intercept (conditional mode) with its conditional SD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchoolEffect {
    /// School id.
    pub school: String,
    /// Conditional mode.
    pub estimate: f64,
    /// Conditional SD.
    pub cond_sd: f64,
    /// Treatment school.
    pub treated: bool,
}

/// What the intervals of an analysis account for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceSummary {
    /// `CR2`, `wild bootstrap`, `permutation`, `model` or `Wald z`.
    pub method: String,
    /// What the clusters are (`school` or `matched set`), for CR2.
    pub cluster: Option<String>,
    /// Number of clusters, for CR2.
    pub clusters: Option<usize>,
}

/// A fitted impact model: its record, the school effects and the programme effects.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpactFit {
    /// The record of the fit (coefficients, variance components, diagnostics).
    pub model: ModelRecord,
    /// School intercepts.
    pub school_effects: Vec<SchoolEffect>,
    /// Per-year and pooled effects.
    pub effects: Vec<Effect>,
    /// A binary outcome's per-year and pooled effects in percentage points (g-computation); empty otherwise.
    pub percentage_points: Vec<Effect>,
    /// Event-study estimates: every year but the reference year, relative to it.
    pub event_study: Vec<Effect>,
    /// The event study's reference year (the last pre-programme year).
    pub event_reference: i64,
    /// Joint test that the pre-programme event-study estimates are all 0 (parallel pre-trends), when there
    /// are at least two pre-programme years.
    pub pretrend: Option<JointTest>,
    /// The inference used.
    pub inference: InferenceSummary,
    /// The SD the effect sizes divide by.
    pub effect_size_sd: f64,
    /// ICC of a random-intercept model (logistic: latent scale).
    pub icc: Option<f64>,
    /// The impact model's school intercept and pupil (residual) variances, for a linear model.
    pub variances: Option<(f64, f64)>,
    /// Messages about the fit (dropped aliased columns, separation).
    pub notes: Vec<String>,
}

/// `outcome ~ factor(<year>) * group + <covariates> + (1 | <school>) + (1 | <school>:<year>)`, with
/// `(1 + year_c | <school>)` for random slopes on year (centred at the programme start) and without the cohort
/// term when the study turns it off; the same for linear and logistic models. Covariates constant in `sample`
/// (such as `fsm` in the FSM subgroup) are left out, and named in the returned notes, where lme4 would drop the
/// aliased column.
pub fn default_formula(study: &Study, sample: &Sample) -> (String, Vec<String>) {
    design_formula(study, sample, None)
}

/// [`default_formula`] with the design `factor(<year>) * group * <by>` when `by` names a 0/1 pupil column
/// (the gap-closing model; `by` is then no longer a covariate of its own).
pub fn design_formula(study: &Study, sample: &Sample, by: Option<&str>) -> (String, Vec<String>) {
    let mut f = format!("outcome ~ factor({}) * group", study.data.year);
    if let Some(v) = by {
        f.push_str(" * ");
        f.push_str(v);
    }
    let mut notes = Vec::new();
    let mut covariates = Vec::new();
    for c in study.model.covariates.iter().filter(|c| Some(c.as_str()) != by) {
        match sample.table.column(c) {
            Ok(col) if is_constant(col) => {
                notes.push(format!("covariate `{c}` is constant in this sample and was left out of the model"))
            }
            _ => covariates.push(c),
        }
    }
    for c in covariates {
        f.push_str(" + ");
        f.push_str(c);
    }
    f.push_str(&random_part(study));
    (f, notes)
}

/// The default random part, linear and logistic models alike: ` + (1 | school)` (`(1 + year_c | school)`
/// with random slopes on year) and, with `cohort_random_effect`, ` + (1 | school:year)`.
fn random_part(study: &Study) -> String {
    let slope = if study.model.random_slope_year { "1 + year_c" } else { "1" };
    let school = &study.data.school_id;
    let mut f = format!(" + ({slope} | {school})");
    if study.model.cohort_random_effect {
        f.push_str(&format!(" + (1 | {school}:{})", study.data.year));
    }
    f
}

fn is_constant(col: &Column) -> bool {
    match col {
        Column::Numeric(v) => v.windows(2).all(|w| w[0] == w[1]),
        Column::Text(v) => v.windows(2).all(|w| w[0] == w[1]),
    }
}

/// The formula of the effect-size model: the default formula without pupil covariates.
fn unconditional_formula(study: &Study) -> String {
    format!("outcome ~ factor({}) * group{}", study.data.year, random_part(study))
}

/// The variance of the standard logistic distribution, π²/3: the pupil-level variance of a logistic model on
/// the latent scale.
pub const LOGISTIC_VARIANCE: f64 = std::f64::consts::PI * std::f64::consts::PI / 3.0;

fn options(study: &Study, family: Family) -> ModelOptions {
    ModelOptions { reml: !study.model.ml, ..ModelOptions::new(family) }
}

/// The effect-size SD of a continuous outcome: total (EEF) or pupil-level SD of the model without pupil
/// covariates, with that model's (school intercept, pupil) variances. For a binary outcome the EEF SD comes
/// from the adjusted impact model (see `latent_sd`), and NaN is returned here; the residual definition gives
/// π/√3.
pub fn unconditional_sd(
    study: &Study,
    sample: &Sample,
    family: Family,
    definition: EffectSizeDefinition,
) -> Result<(f64, Option<(f64, f64)>), String> {
    if family == Family::Binomial {
        // Set from the adjusted model itself (see `latent_sd`); π/√3 for the residual definition.
        let sd = match definition {
            EffectSizeDefinition::Eef => f64::NAN,
            EffectSizeDefinition::Residual => LOGISTIC_VARIANCE.sqrt(),
        };
        return Ok((sd, None));
    }
    let formula = unconditional_formula(study);
    let parsed = parse_formula(&formula).map_err(|e| format!("formula `{formula}`: {e}"))?;
    // Only the variance components are needed: no Satterthwaite df, no Hessian.
    let opts = ModelOptions { satterthwaite: false, hessian_se: false, ..options(study, family) };
    let (fit, _) = fit_formula(&parsed, &formula, &sample.table, &sample.weights, &opts)?;
    let components = fit.variance_components();
    let between = intercept_variance(components);
    let within = match family {
        Family::Gaussian => components.iter().find(|r| r.term.is_none()).map_or(f64::NAN, |r| r.variance),
        Family::Binomial => LOGISTIC_VARIANCE,
    };
    let sd = match definition {
        EffectSizeDefinition::Eef => (between + within).sqrt(),
        EffectSizeDefinition::Residual => within.sqrt(),
    };
    if !(sd.is_finite() && sd > 0.0) {
        return Err(format!("the effect-size SD is {sd}; the outcome has no variation in this sample"));
    }
    Ok((sd, Some((between, within))))
}

/// Between-school variance of the intercepts (slopes vary with year; the intercept is the variance at the
/// programme start, where `year_c` = 0).
fn intercept_variance(components: &[VarianceComponent]) -> f64 {
    components.iter().filter(|r| r.term.as_deref() == Some("(Intercept)")).map(|r| r.variance).sum()
}

/// Which coefficients of an impact model the effects contrast: the years present in the sample and the
/// interaction the year factor multiplies (`group` for the programme effect, `group:fsm` for the change in
/// the FSM gap of the model `factor(year) * group * fsm`).
#[derive(Debug, Clone, Copy)]
pub struct EffectTerms<'a> {
    /// The years analysed.
    pub years: &'a [i64],
    /// `group` or `group:<subgroup variable>`.
    pub term: &'a str,
}

/// Fits the impact model `formula` to `sample` and evaluates the DiD contrasts of `terms`, the event study
/// and the pre-trend test, with the study's inference (CR2 by default for linear models). Percentage points
/// of a binary outcome are computed for the programme effect (`term` = `group`) only.
pub fn fit_impact(
    study: &Study,
    sample: &Sample,
    formula: &Formula,
    formula_text: &str,
    family: Family,
    terms: EffectTerms<'_>,
    es_sd: f64,
) -> Result<ImpactFit, String> {
    let (fit, frame) = fit_formula(formula, formula_text, &sample.table, &sample.weights, &options(study, family))?;
    let start = study.years.programme_start;
    let (years, term) = (terms.years, terms.term);
    let contrasts = did_contrasts(&frame.x_names, &study.data.year, term, years, start)?;
    let (event_reference, event) = event_study_contrasts(&frame.x_names, &study.data.year, term, years, start)?;
    let mut notes = fit.notes();
    let mut model = fit.record(formula_text, frame.n_dropped);
    let es_sd = if es_sd.is_nan() { latent_sd(&fit, &frame, &study.data.year)? } else { es_sd };
    let model_effect = |c: &Contrast| -> Result<Effect, String> {
        let t = fit.contrast(&c.l)?;
        Ok(Effect::new(c.period, t.estimate, t.std_error, t.df.unwrap_or(f64::INFINITY), es_sd))
    };
    let model_name = if family == Family::Binomial { "Wald z" } else { "model" };
    // CR2 for linear models unless the study asks for the model's own variance.
    let cr2 = match (family, study.inference.method) {
        (Family::Gaussian, InferenceMethod::Cr2 | InferenceMethod::Wild | InferenceMethod::Permutation) => {
            let w: Vec<f64> = frame.rows.iter().map(|&i| sample.weights[i]).collect();
            let w = (!w.iter().all(|&v| v == 1.0)).then_some(w);
            let clusters: Vec<u32> = frame.rows.iter().map(|&i| sample.clusters[i]).collect();
            match fit.cr2(&frame, w.as_deref(), &clusters) {
                Ok(c) => Some(c),
                Err(e) => {
                    notes.push(format!("CR2 could not be computed ({e}); the intervals are model-based"));
                    None
                }
            }
        }
        (Family::Binomial, InferenceMethod::Cr2 | InferenceMethod::Wild | InferenceMethod::Permutation) => {
            let Fitted::Logistic(g) = &fit else {
                return Err("a binomial outcome must be fitted by the logistic model".into());
            };
            let w: Vec<f64> = frame.rows.iter().map(|&i| sample.weights[i]).collect();
            let w = (!w.iter().all(|&v| v == 1.0)).then_some(w);
            let clusters: Vec<u32> = frame.rows.iter().map(|&i| sample.clusters[i]).collect();
            match study.inference.method {
                InferenceMethod::Wild => notes.push(
                    "the wild cluster bootstrap is implemented for linear models: this binary outcome's intervals \
                     are CR2 t intervals"
                        .into(),
                ),
                InferenceMethod::Permutation if study.inference.replacement_default => notes.push(
                    "randomization inference, the default with matching with replacement, is implemented for linear \
                     models: this binary outcome's intervals are CR2 t intervals"
                        .into(),
                ),
                InferenceMethod::Permutation => notes.push(
                    "randomization inference is implemented for linear models: this binary outcome's intervals are \
                     CR2 t intervals"
                        .into(),
                ),
                _ => {}
            }
            match Cr2::logistic(&frame, g, w.as_deref(), &clusters) {
                Ok(c) => Some(c),
                Err(e) => {
                    notes.push(format!("CR2 could not be computed ({e}); the intervals are model-based"));
                    None
                }
            }
        }
        _ => None,
    };
    let cluster_label = match study.inference.cluster {
        ClusterBy::School => "school",
        ClusterBy::MatchedSet => "matched set",
    };
    let inf = &study.inference;
    let wild = inf.method == InferenceMethod::Wild && family == Family::Gaussian;
    let randomization = match (&fit, inf.method == InferenceMethod::Permutation, &cr2) {
        (Fitted::Linear(f), true, Some(_)) if term == "group" => {
            match randomize(study, sample, formula, &frame, f, &contrasts) {
                Ok(r) => Some(r),
                Err(e) => {
                    notes.push(format!(
                        "randomization inference could not be run ({e}); the intervals are CR2 t intervals"
                    ));
                    None
                }
            }
        }
        (Fitted::Linear(_), true, Some(_)) => {
            notes.push(
                "randomization inference is run for the programme effect; these differences between subgroups have \
                 CR2 t intervals"
                    .into(),
            );
            None
        }
        (Fitted::Linear(_), true, None) => {
            notes.push(
                "randomization inference was not run, since the CR2 variance shown beside it could not be computed"
                    .into(),
            );
            None
        }
        _ => None,
    };
    // Each programme effect's randomization test; one that cannot be computed keeps its CR2 interval.
    let tests: Vec<Option<psmeval_multilevel::RandomizationTest>> = contrasts
        .iter()
        .map(|c| {
            let ri = randomization.as_ref()?;
            ri.test(c)
                .map_err(|e| {
                    let period = match c.period {
                        crate::effects::Period::Year(y) => y.to_string(),
                        crate::effects::Period::Pooled(_) => "pooled".into(),
                    };
                    notes.push(format!(
                        "the randomization test of the {period} effect could not be computed ({e}); it has a CR2 t \
                         interval"
                    ));
                })
                .ok()
        })
        .collect();
    if let Some(ri) = &randomization
        && ri.randomization.failed > 0
    {
        notes.push(format!(
            "{} of {} re-drawn assignments gave a singular design and were left out of the randomization tests",
            ri.randomization.failed, ri.randomization.draws
        ));
    }
    let robust_name = if wild {
        "wild bootstrap"
    } else if tests.iter().any(Option::is_some) {
        "permutation"
    } else {
        "CR2"
    };
    let row =
        |c: &Contrast, resampled: Option<Option<&psmeval_multilevel::RandomizationTest>>| -> Result<Effect, String> {
            let m = model_effect(c)?;
            Ok(match &cr2 {
                Some(r) => {
                    let t = r.contrast(&c.l).map_err(|e| e.to_string())?;
                    let mut e = Effect::new(c.period, t.estimate, t.std_error, t.df.unwrap_or(f64::NAN), es_sd);
                    let (low, high, p, name) = match resampled {
                        None => (e.ci_low, e.ci_high, e.p_value, "CR2"),
                        Some(Some(t)) => (t.ci_low, t.ci_high, t.p_value, "permutation"),
                        Some(None) if wild => {
                            let b = r
                                .wild_bootstrap(&c.l, inf.bootstrap_draws, inf.bootstrap_weights, inf.seed)
                                .map_err(|e| e.to_string())?;
                            (b.ci_low, b.ci_high, b.p_value, "wild bootstrap")
                        }
                        Some(None) => (e.ci_low, e.ci_high, e.p_value, "CR2"),
                    };
                    (e.ci_low, e.ci_high, e.p_value) = (low, high, p);
                    e.with_inference(name, Some(&m))
                }
                None => m.with_inference(model_name, None),
            })
        };
    // The bootstrap and the randomization are run for the programme effects; the event study keeps CR2 t
    // intervals.
    let effects =
        contrasts.iter().zip(&tests).map(|(c, t)| row(c, Some(t.as_ref()))).collect::<Result<Vec<_>, String>>()?;
    let event_study = event.iter().map(|c| row(c, None)).collect::<Result<Vec<_>, String>>()?;
    let pre: Vec<Vec<f64>> = event
        .iter()
        .filter(|c| matches!(c.period, crate::effects::Period::Year(y) if y < start))
        .map(|c| c.l.clone())
        .collect();
    let pretrend = if pre.is_empty() {
        None
    } else {
        Some(match &cr2 {
            Some(r) => match r.wald(&pre) {
                Ok(w) => Some(JointTest {
                    method: "CR2 HTZ".into(),
                    df_num: w.df_num,
                    df_den: w.df_den,
                    statistic: w.f_statistic,
                    p_value: w.p_value,
                }),
                Err(e) => {
                    notes.push(format!("the pre-trend test could not be computed: {e}"));
                    None
                }
            },
            None => match wald_chi_square(&fit, &pre) {
                Ok(t) => Some(t),
                Err(e) => {
                    notes.push(format!("the pre-trend test could not be computed: {e}"));
                    None
                }
            },
        })
        .flatten()
    };
    let inference = match &cr2 {
        Some(r) => {
            if let ModelRecord::Linear(m) = &mut model {
                m.robust = Some(RobustRecord::cr2(cluster_label, r));
            }
            InferenceSummary {
                method: robust_name.into(),
                cluster: Some(cluster_label.into()),
                clusters: Some(r.n_clusters),
            }
        }
        None => InferenceSummary { method: model_name.into(), cluster: None, clusters: None },
    };
    let percentage_points = match &fit {
        Fitted::Logistic(_) if term != "group" => Vec::new(),
        Fitted::Logistic(g) => {
            let w: Vec<f64> = frame.rows.iter().map(|&i| sample.weights[i]).collect();
            let w = (!w.iter().all(|&v| v == 1.0)).then_some(w);
            match crate::gcomp::percentage_points(
                g,
                &frame,
                &sample.table,
                &study.data.year,
                &contrasts,
                w.as_deref(),
                cr2.as_ref(),
            ) {
                Ok(pp) => pp,
                Err(e) => {
                    notes.push(format!("the percentage-point effects could not be computed: {e}"));
                    Vec::new()
                }
            }
        }
        Fitted::Linear(_) => Vec::new(),
    };
    let treated = treated_schools(&sample.table, &study.data.school_id)?;
    Ok(ImpactFit {
        percentage_points,
        effect_size_sd: es_sd,
        model,
        school_effects: school_effects(fit.ranef(), &study.data.school_id, &treated),
        effects,
        event_study,
        event_reference,
        pretrend,
        inference,
        icc: fit.icc(),
        variances: match &fit {
            Fitted::Linear(_) => {
                let c = fit.variance_components();
                c.iter().find(|r| r.term.is_none()).map(|r| (intercept_variance(c), r.variance))
            }
            Fitted::Logistic(_) => None,
        },
        notes,
    })
}

/// Randomization inference for the programme effects of a linear impact model: the GLS estimates under
/// re-drawn assignments of the treatment to schools, with the effect patterns of every contrast.
struct ProgrammeRandomization {
    randomization: Randomization,
    /// Post-programme years, in the order of their effect patterns (responses 2..).
    post: Vec<i64>,
    /// The observed per-year effects (plugged into each year's sharp null for the other years).
    per_year: Vec<f64>,
    /// The test statistic.
    statistic: psmeval_multilevel::Statistic,
}

impl ProgrammeRandomization {
    /// The test of one contrast. Pooled: the sharp null that the programme changed every programme-year
    /// result of treatment schools by τ. One year: by τ in that year and by its estimated effect in the
    /// other programme years.
    fn test(&self, c: &Contrast) -> Result<psmeval_multilevel::RandomizationTest, String> {
        let (own, fixed): (usize, Vec<(usize, f64)>) = match c.period {
            crate::effects::Period::Pooled(_) => (1, Vec::new()),
            crate::effects::Period::Year(y) => {
                let k = self.post.iter().position(|&p| p == y).ok_or_else(|| format!("{y} is not a programme year"))?;
                (2 + k, (0..self.post.len()).filter(|&j| j != k).map(|j| (2 + j, self.per_year[j])).collect())
            }
        };
        self.randomization.test(&c.l, 0, own, &fixed, self.statistic).map_err(|e| e.to_string())
    }
}

/// Builds the randomization of a linear impact model: the model frames with every school untreated and
/// treated, the outcome and the effect patterns (treatment-school pupils in all programme years, and in each),
/// re-assigned within matched sets or among all schools as the study asks.
fn randomize(
    study: &Study,
    sample: &Sample,
    formula: &Formula,
    frame: &psmeval_frame::ModelFrame,
    fit: &psmeval_multilevel::LmmFit,
    contrasts: &[Contrast],
) -> Result<ProgrammeRandomization, String> {
    let inf = &study.inference;
    let n = sample.table.n_rows();
    let with_group = |g: f64| -> Result<psmeval_frame::ModelFrame, String> {
        let mut t = sample.table.clone();
        t.replace("group", Column::Numeric(vec![g; n])).map_err(|e| e.to_string())?;
        let f = psmeval_frame::design::build_model_frame(formula, &t).map_err(|e| e.to_string())?;
        if f.rows != frame.rows {
            return Err("the design with the treatment re-assigned uses other rows".into());
        }
        Ok(f)
    };
    let (untreated, treated) = (with_group(0.0)?, with_group(1.0)?);
    let group = sample.table.numeric("group").map_err(|e| e.to_string())?;
    let years = sample.table.numeric(&study.data.year).map_err(|e| e.to_string())?;
    let start = study.years.programme_start;
    let mut post: Vec<i64> = frame.rows.iter().map(|&i| years[i] as i64).filter(|&y| y >= start).collect();
    post.sort_unstable();
    post.dedup();
    let pattern = |keep: &dyn Fn(i64) -> bool| -> Vec<f64> {
        frame.rows.iter().map(|&i| if group[i] == 1.0 && keep(years[i] as i64) { 1.0 } else { 0.0 }).collect()
    };
    let mut responses = vec![frame.y.clone(), pattern(&|y| y >= start)];
    responses.extend(post.iter().map(|&p| pattern(&|y| y == p)));
    let weights: Vec<f64> = frame.rows.iter().map(|&i| sample.weights[i]).collect();
    let weights = (!weights.iter().all(|&v| v == 1.0)).then_some(weights);
    let unit: Vec<u32> = frame.rows.iter().map(|&i| sample.units[i]).collect();
    let assigned: Vec<bool> = frame.rows.iter().map(|&i| group[i] == 1.0).collect();
    let (permutation, strata) = match inf.permute {
        PermuteAmong::MatchedSet => {
            let sets = sample.sets.as_ref().ok_or(
                "a school of the sample is in no single matched set; permute among `all` matched schools instead",
            )?;
            (Permutation::WithinStrata, Some(frame.rows.iter().map(|&i| sets[i]).collect::<Vec<u32>>()))
        }
        PermuteAmong::All => (Permutation::All, None),
    };
    let terms: Vec<String> = fit.fixed_effects().iter().map(|f| f.term.clone()).collect();
    let design = RandomizationDesign {
        untreated: &untreated,
        treated: &treated,
        terms: &terms,
        theta: fit.theta(),
        weights: weights.as_deref(),
        responses: &responses,
        unit: &unit,
        assigned: &assigned,
        strata: strata.as_deref(),
    };
    let randomization =
        Randomization::new(&design, permutation, inf.permutations, inf.seed).map_err(|e| e.to_string())?;
    let beta = fit.beta();
    // The re-assignable design must reproduce the fit: the GLS estimate under the observed assignment is β̂.
    let observed = randomization.observed_beta(0);
    let scale = beta.iter().fold(1.0f64, |a, b| a.max(b.abs()));
    if observed.len() != beta.len() || observed.iter().zip(beta).any(|(a, b)| (a - b).abs() > 1e-7 * scale) {
        return Err("the design with the treatment re-assigned does not reproduce the fitted model".into());
    }
    let per_year = post
        .iter()
        .map(|&y| {
            contrasts
                .iter()
                .find(|c| c.period == crate::effects::Period::Year(y))
                .map(|c| c.l.iter().zip(beta).map(|(a, b)| a * b).sum())
                .ok_or_else(|| format!("no contrast for the programme year {y}"))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    Ok(ProgrammeRandomization { randomization, post, per_year, statistic: inf.statistic })
}

/// The total SD of the latent outcome of a logistic impact model (McKelvey–Zavoina): √(Var(covariate part
/// of Xβ̂) + school intercept variance + π²/3). A log-odds effect divided by it is in SD units of the same
/// latent scale as the adjusted model, comparable with a score's effect divided by its total SD; dividing by
/// the SD of an unadjusted model instead would mix two latent scales (logistic coefficients grow when
/// covariates are added) and overstate binary effect sizes. The design terms (intercept, years, `group`
/// and its interactions) are left out of the variance, as the score's total SD leaves them out.
fn latent_sd(fit: &Fitted, frame: &psmeval_frame::ModelFrame, year: &str) -> Result<f64, String> {
    let (beta, names) = match fit {
        Fitted::Logistic(f) => (f.beta(), f.fixed_effects().iter().map(|e| e.term.clone()).collect::<Vec<_>>()),
        Fitted::Linear(_) => return Err("latent SD of a linear model".into()),
    };
    // Design terms: the intercept, the year factor, `group` and its interactions (exact names, so that a
    // covariate such as `age_group` stays in). Var(Xβ̂) is over pupils, unweighted: the latent outcome's spread.
    let design = |n: &str| {
        n == "(Intercept)"
            || n == "group"
            || n.starts_with("group:")
            || n.ends_with(":group")
            || n.starts_with(&format!("factor({year})"))
    };
    let cols: Vec<(usize, f64)> = names
        .iter()
        .zip(beta)
        .filter(|(n, _)| !design(n))
        .filter_map(|(n, &b)| frame.x_names.iter().position(|x| x == n).map(|c| (c, b)))
        .collect();
    let n = frame.y.len();
    let eta: Vec<f64> = (0..n).map(|i| cols.iter().map(|&(c, b)| frame.x[[i, c]] * b).sum()).collect();
    let mean = eta.iter().sum::<f64>() / n as f64;
    let var_x = eta.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0).max(1.0);
    let tau2 = intercept_variance(fit.variance_components());
    let sd = (var_x + tau2 + LOGISTIC_VARIANCE).sqrt();
    if !(sd.is_finite() && sd > 0.0) {
        return Err(format!("the latent effect-size SD is {sd}"));
    }
    Ok(sd)
}

/// The model-based Wald chi-square test of `c β = 0`, reported as F = χ²/q with p from χ²(q).
fn wald_chi_square(fit: &Fitted, c: &[Vec<f64>]) -> Result<JointTest, String> {
    let (beta, vcov) = match fit {
        Fitted::Linear(f) => (f.beta(), f.vcov()),
        Fitted::Logistic(f) => (f.beta(), f.vcov()),
    };
    let (chi2, q, p_value) = psmeval_multilevel::wald_chi_square(beta, vcov, c).map_err(|e| e.to_string())?;
    Ok(JointTest { method: "Wald chi-square".into(), df_num: q, df_den: f64::NAN, statistic: chi2 / q as f64, p_value })
}

/// The schools' random intercepts, in the model's level order.
fn school_effects(ranef: &[ConditionalModes], school: &str, treated: &HashMap<String, bool>) -> Vec<SchoolEffect> {
    ranef
        .iter()
        .filter(|t| t.group == school)
        .flat_map(|t| {
            let c = t.terms.iter().position(|n| n == "(Intercept)");
            t.levels.iter().enumerate().filter_map(move |(j, l)| {
                c.map(|c| SchoolEffect {
                    school: l.clone(),
                    estimate: t.modes[j][c],
                    cond_sd: t.cond_sd[j][c],
                    treated: treated.get(l).copied().unwrap_or(false),
                })
            })
        })
        .collect()
}

/// School id → treated, from the sample's `group` column.
fn treated_schools(table: &Table, school_id: &str) -> Result<HashMap<String, bool>, String> {
    let school = table.column(school_id).map_err(|e| e.to_string())?;
    let group = table.numeric("group").map_err(|e| e.to_string())?;
    let rows: Vec<usize> = (0..table.n_rows()).collect();
    // A school's pupils share its group; each run of its rows is one entry.
    Ok(school.text_runs(&rows).into_iter().filter_map(|(k, s)| s.map(|s| (s, group[k] == 1.0))).collect())
}
