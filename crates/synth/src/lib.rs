//! Synthetic England-like primary-school populations with a known programme effect.
//!
//! Real National Pupil Database extracts are not public, so every psmeval test, benchmark and example runs on
//! a population generated here. [`simulate`] draws:
//! - **schools** with region, local authority, urbanity, roll, Ever-6 FSM/EAL/SEN shares, IDACI deprivation,
//!   prior attainment and Ofsted grade, and `lead` schools drawn by a logistic *selection model* on those
//!   covariates (so naive lead-vs-rest comparisons are biased, as in a real programme);
//! - **pupils**, one row per pupil and assessment (KS1 and KS2, each year), whose latent maths attainment
//!   carries school random intercepts and random slopes on year, pupil covariate effects, and the programme
//!   effect `D` for lead-school pupils from the first post-programme year on;
//! - observed **scores** that mirror the 2016 assessment break: before 2016 KS2 maths is a mark out of 100 and
//!   KS1 a points score (levels W…3 as 3, 9, 13, 15, 17, 21); from 2016 KS2 is a scaled score 80–120 and KS1 a
//!   teacher-assessment band (1 = below, 2 = working towards, 3 = expected, 4 = greater depth).
//!
//! The latent score is on a scale whose total pupil-level SD is about 1 (the empirical value is returned in
//! [`Truth::latent_total_sd`]), so `D` is in pupil-level SD units.
//!
//! Determinism: every school draws from its own ChaCha8 stream derived from `(seed, school index)`, and rows
//! are concatenated in school order, so the output is identical whatever the number of threads.
//!
//! ```
//! use psmeval_synth::{SimConfig, simulate};
//!
//! let cfg = SimConfig { schools: 100, leads: 5, effect: 0.2, ..SimConfig::small() };
//! let pop = simulate(&cfg).unwrap();
//! assert_eq!(pop.schools.school_id.len(), 100);
//! assert_eq!(pop.schools.lead.iter().sum::<i64>(), 5);
//! assert_eq!(pop.truth.config.cohort_sd, 0.10);
//! // The same configuration gives the same population.
//! assert_eq!(simulate(&cfg).unwrap().pupils.maths, pop.pupils.maths);
//! ```

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, LogNormal, Poisson, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;
use thiserror::Error;

/// The nine English regions, in the order of their codes 1–9.
pub const REGIONS: [&str; 9] = [
    "North East",
    "North West",
    "Yorkshire and the Humber",
    "East Midlands",
    "West Midlands",
    "East of England",
    "London",
    "South East",
    "South West",
];

/// Share of primary schools in each region (sums to 1).
const REGION_SHARE: [f64; 9] = [0.05, 0.145, 0.105, 0.095, 0.11, 0.125, 0.11, 0.155, 0.105];
/// Local authorities per region (150 in all, as in England).
const REGION_LAS: [u32; 9] = [12, 23, 15, 9, 14, 11, 33, 19, 14];

/// Parameters of a simulation. [`SimConfig::default`] is the national scale.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    /// Number of schools (national: 16,800).
    pub schools: usize,
    /// Number of lead (treated) schools (the Maths Teacher Exchange had 47).
    pub leads: usize,
    /// First year, as the calendar year an academic year ends in (2013 = 2012/13).
    pub first_year: i32,
    /// Last year (2017 = 2016/17).
    pub last_year: i32,
    /// First year in which lead-school pupils carry the effect (2015 = 2014/15).
    pub programme_start: i32,
    /// True programme effect in pupil-level SD units.
    pub effect: f64,
    /// Mean pupils per year group per school; national: about 600,000 / 16,800.
    pub mean_cohort: f64,
    /// SD of the school-by-year cohort shocks on the latent score (0.10 by default). Each school, year and key
    /// stage draws its own shock: the KS1 and KS2 pupils of a school-year are different children taught by
    /// different teachers.
    pub cohort_sd: f64,
    /// Pre-trend of the lead schools: latent SD per year by which their pupils differ before the programme,
    /// growing towards the programme start (`pretrend × (year − programme_start + 1)` before it, 0 after).
    pub pretrend: f64,
    /// SD of the programme effect across lead schools (each lead school's effect is `effect + effect_sd · z`).
    pub effect_sd: f64,
    /// SD of the school random intercepts on the latent score (0.30 by default; the school-level prior
    /// attainment adds between-school variation on top, see [`Truth::school_prior_coefficient`]).
    pub school_sd: f64,
    /// SD of the school random slopes per year (0.04 by default).
    pub slope_sd: f64,
    /// SD of the pupil-level residual of the latent score (0.72 by default; the pupil covariates add to the
    /// pupil-level variation).
    pub pupil_sd: f64,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            schools: 16_800,
            leads: 47,
            first_year: 2013,
            last_year: 2017,
            programme_start: 2015,
            effect: 0.10,
            mean_cohort: 600_000.0 / 16_800.0,
            cohort_sd: 0.10,
            pretrend: 0.0,
            effect_sd: 0.0,
            school_sd: 0.30,
            slope_sd: 0.04,
            pupil_sd: 0.72,
            seed: 20_130_901,
        }
    }
}

impl SimConfig {
    /// The small preset used by tests and quick examples: 1,000 schools, 47 leads.
    pub fn small() -> Self {
        SimConfig { schools: 1_000, ..Self::default() }
    }
}

/// Invalid simulation parameters.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum SimError {
    /// A parameter is out of range.
    #[error("{name} = {value} is out of range: {reason}")]
    OutOfRange {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
        /// The allowed range.
        reason: &'static str,
    },
}

/// The generating parameters, written to `truth.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truth {
    /// The configuration simulated.
    pub config: SimConfig,
    /// SD of school random intercepts (latent scale).
    pub school_intercept_sd: f64,
    /// SD of school random slopes per year (latent scale).
    pub school_slope_sd: f64,
    /// Correlation of school intercepts and slopes.
    pub intercept_slope_correlation: f64,
    /// Pupil-level residual SD (latent scale).
    pub residual_sd: f64,
    /// Pupil covariate effects on the latent scale.
    pub pupil_coefficients: PupilCoefficients,
    /// Effect of the school's mean prior attainment (standardized) on the latent score.
    pub school_prior_coefficient: f64,
    /// Latent intercept (for a boy without FSM/EAL/SEN, prior 0, in an average school in 2015).
    pub intercept: f64,
    /// Common linear trend per year (years centred at 2015).
    pub year_trend: f64,
    /// Key stage 2 shift relative to key stage 1.
    pub ks2_shift: f64,
    /// Selection model: logit P(lead) = intercept + Σ coef·covariate (standardized covariates).
    pub selection: SelectionModel,
    /// Empirical SD of the latent score over all generated pupils (without the programme effect).
    pub latent_total_sd: f64,
    /// How observed scores are derived from the latent score.
    pub score_scales: Vec<ScoreScale>,
    /// Rows generated.
    pub n_pupil_rows: usize,
}

/// Pupil-level coefficients of the latent score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PupilCoefficients {
    /// Girls vs boys.
    pub female: f64,
    /// Eligible for free school meals.
    pub fsm: f64,
    /// English as an additional language.
    pub eal: f64,
    /// Special educational needs.
    pub sen: f64,
    /// Standardized prior attainment.
    pub prior: f64,
}

/// The lead-school selection model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectionModel {
    /// Intercept before calibration to the lead count.
    pub intercept: f64,
    /// `(covariate description, coefficient)` pairs.
    pub coefficients: Vec<(String, f64)>,
    /// How leads are drawn.
    pub method: String,
}

/// Observed score definition for one key stage and period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreScale {
    /// 1 or 2.
    pub key_stage: u8,
    /// First and last year of the regime.
    pub years: (i32, i32),
    /// What the score is.
    pub description: String,
    /// What "expected standard" means.
    pub expected_standard: String,
}

/// The school table, one entry per school (struct of columns).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schools {
    /// School identifier (URN-like, 6 digits).
    pub school_id: Vec<i64>,
    /// Local authority code.
    pub la: Vec<i64>,
    /// Region code 1–9 (see [`REGIONS`]).
    pub region: Vec<i64>,
    /// 1 = urban.
    pub urban: Vec<i64>,
    /// Number on roll.
    pub n_pupils: Vec<i64>,
    /// Ever-6 FSM share, percent.
    pub pct_fsm: Vec<f64>,
    /// EAL share, percent.
    pub pct_eal: Vec<f64>,
    /// SEN share, percent.
    pub pct_sen: Vec<f64>,
    /// Income Deprivation Affecting Children Index, 0–1.
    pub idaci: Vec<f64>,
    /// School mean prior attainment before the programme (standardized).
    pub prior_attainment: Vec<f64>,
    /// Ofsted grade 1 (outstanding) – 4 (inadequate).
    pub ofsted: Vec<i64>,
    /// 1 = lead school.
    pub lead: Vec<i64>,
}

/// The pupil table, one entry per pupil and assessment (struct of columns).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pupils {
    /// Unique row identifier.
    pub pupil_id: Vec<i64>,
    /// School attended.
    pub school_id: Vec<i64>,
    /// Year the academic year ends in.
    pub year: Vec<i64>,
    /// 1 or 2.
    pub key_stage: Vec<i64>,
    /// 1 = girl.
    pub female: Vec<i64>,
    /// 1 = eligible for free school meals.
    pub fsm: Vec<i64>,
    /// 1 = English as an additional language.
    pub eal: Vec<i64>,
    /// 1 = special educational needs.
    pub sen: Vec<i64>,
    /// Standardized earlier attainment.
    pub prior: Vec<f64>,
    /// Observed maths outcome on the scale of its key stage and year.
    pub maths: Vec<f64>,
    /// 1 = reached the expected standard.
    pub expected: Vec<i64>,
    /// The maths outcome the pupil would have had without the programme: equal to `maths` except for
    /// lead-school pupils in programme years (the potential outcome a simulation's true effect is measured
    /// with; not written to files).
    pub maths_untreated: Vec<f64>,
    /// The expected-standard flag without the programme (see `maths_untreated`).
    pub expected_untreated: Vec<i64>,
}

impl Pupils {
    /// Empty columns with room for `n` rows each.
    pub fn with_capacity(n: usize) -> Pupils {
        let f = || Vec::with_capacity(n);
        Pupils {
            pupil_id: Vec::new(),
            school_id: f(),
            year: f(),
            key_stage: f(),
            female: f(),
            fsm: f(),
            eal: f(),
            sen: f(),
            prior: Vec::with_capacity(n),
            maths: Vec::with_capacity(n),
            expected: f(),
            maths_untreated: Vec::with_capacity(n),
            expected_untreated: f(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.pupil_id.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.pupil_id.is_empty()
    }
}

/// A simulated population.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    /// One row per school.
    pub schools: Schools,
    /// One row per pupil and assessment.
    pub pupils: Pupils,
    /// Every generating parameter.
    pub truth: Truth,
}

// Generating parameters (latent scale, total SD ≈ 1).
const U01_COR: f64 = -0.2;
const COEF: PupilCoefficients = PupilCoefficients { female: -0.05, fsm: -0.25, eal: -0.05, sen: -0.55, prior: 0.45 };
const SCHOOL_PRIOR: f64 = 0.20;
const TREND: f64 = 0.02;
/// Centres the latent score near 0 in the first years.
const LATENT_INTERCEPT: f64 = 0.35;
const KS2_SHIFT: f64 = 0.0;
const SEL: [(&str, f64); 5] = [
    ("prior_attainment (standardized)", 0.8),
    ("pct_fsm (standardized)", 0.3),
    ("urban", 0.6),
    ("ofsted <= 2 (good or outstanding)", 1.2),
    ("log(n_pupils) (standardized)", 0.5),
];

/// A SplitMix64 step: turns `(seed, index)` into independent, reproducible stream seeds.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn stream(seed: u64, purpose: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(splitmix(splitmix(seed ^ purpose.wrapping_mul(0xA24B_AED4_963E_E407)) ^ index))
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn standardize(v: &[f64]) -> Vec<f64> {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    v.iter().map(|x| if sd > 0.0 { (x - mean) / sd } else { 0.0 }).collect()
}

/// Latent school-level quantities not written to the school table.
#[derive(Debug, Clone, Copy)]
struct SchoolLatent {
    u0: f64,
    u1: f64,
    prior_z: f64,
}

/// The most schools a population may have.
pub const MAX_SCHOOLS: usize = 1_000_000;

/// Checks every parameter of `cfg` (what [`simulate`] checks first).
pub fn validate(cfg: &SimConfig) -> Result<(), SimError> {
    let bad = |name, value: String, reason| Err(SimError::OutOfRange { name, value, reason });
    if cfg.schools < 20 {
        return bad("schools", cfg.schools.to_string(), "at least 20 schools are needed");
    }
    if cfg.schools > MAX_SCHOOLS {
        return bad("schools", cfg.schools.to_string(), "at most 1,000,000 schools");
    }
    if cfg.leads == 0 || cfg.leads.saturating_mul(2) > cfg.schools {
        return bad("leads", cfg.leads.to_string(), "must be at least 1 and at most half the schools");
    }
    if cfg.last_year < cfg.first_year || i64::from(cfg.last_year) - i64::from(cfg.first_year) > 30 {
        return bad("last_year", cfg.last_year.to_string(), "must be between first_year and first_year + 30");
    }
    if !(cfg.first_year..=cfg.last_year).contains(&cfg.programme_start) {
        return bad("programme_start", cfg.programme_start.to_string(), "must lie within first_year..=last_year");
    }
    if !cfg.effect.is_finite() || cfg.effect.abs() > 5.0 {
        return bad("effect", format!("{:?}", cfg.effect), "must be finite and within ±5 SD");
    }
    for (name, v) in [
        ("cohort_sd", cfg.cohort_sd),
        ("effect_sd", cfg.effect_sd),
        ("school_sd", cfg.school_sd),
        ("slope_sd", cfg.slope_sd),
    ] {
        if !(v.is_finite() && (0.0..=2.0).contains(&v)) {
            return bad(name, format!("{v:?}"), "must be between 0 and 2 latent SD");
        }
    }
    if !(cfg.pupil_sd.is_finite() && (0.01..=5.0).contains(&cfg.pupil_sd)) {
        return bad("pupil_sd", format!("{:?}", cfg.pupil_sd), "must be between 0.01 and 5 latent SD");
    }
    if !(cfg.pretrend.is_finite() && cfg.pretrend.abs() <= 1.0) {
        return bad("pretrend", format!("{:?}", cfg.pretrend), "must be finite and within ±1 SD per year");
    }
    if !(cfg.mean_cohort.is_finite() && (1.0..=500.0).contains(&cfg.mean_cohort)) {
        return bad("mean_cohort", format!("{:?}", cfg.mean_cohort), "must be between 1 and 500 pupils");
    }
    Ok(())
}

/// Generates a population from `cfg`.
pub fn simulate(cfg: &SimConfig) -> Result<Population, SimError> {
    validate(cfg)?;
    let (schools, latent) = simulate_schools(cfg);
    let (pupils, latent_sd) = simulate_pupils(cfg, &schools, &latent);
    let truth = Truth {
        config: cfg.clone(),
        school_intercept_sd: cfg.school_sd,
        school_slope_sd: cfg.slope_sd,
        intercept_slope_correlation: U01_COR,
        residual_sd: cfg.pupil_sd,
        pupil_coefficients: COEF,
        school_prior_coefficient: SCHOOL_PRIOR,
        intercept: LATENT_INTERCEPT,
        year_trend: TREND,
        ks2_shift: KS2_SHIFT,
        selection: SelectionModel {
            intercept: 0.0,
            coefficients: SEL.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            method: "exactly `leads` schools drawn without replacement with probability proportional to \
                     logistic(linear predictor) (Efraimidis–Spirakis keys)"
                .into(),
        },
        latent_total_sd: latent_sd,
        score_scales: score_scales(cfg),
        n_pupil_rows: pupils.len(),
    };
    Ok(Population { schools, pupils, truth })
}

fn score_scales(cfg: &SimConfig) -> Vec<ScoreScale> {
    let pre = (cfg.first_year, cfg.last_year.min(2015));
    let post = (cfg.first_year.max(2016), cfg.last_year);
    let mut out = Vec::new();
    if pre.0 <= pre.1 {
        out.push(ScoreScale {
            key_stage: 1,
            years: pre,
            description: "points score from levels W/1/2C/2B/2A/3 = 3/9/13/15/17/21, cut-points -2.0/-1.2/-0.5/0.1/0.8 on the latent score".into(),
            expected_standard: "level 2C or above (points >= 13)".into(),
        });
        out.push(ScoreScale {
            key_stage: 2,
            years: pre,
            description: "mark out of 100: round(62 + 17 * latent), clamped to 0..=100".into(),
            expected_standard: "level 4 or above (mark >= 45)".into(),
        });
    }
    if post.0 <= post.1 {
        out.push(ScoreScale {
            key_stage: 1,
            years: post,
            description: "teacher assessment band 1 (below) / 2 (working towards) / 3 (expected) / 4 (greater depth), cut-points -1.4/-0.6/0.9".into(),
            expected_standard: "band 3 or above".into(),
        });
        out.push(ScoreScale {
            key_stage: 2,
            years: post,
            description: "scaled score round(103 + 6.5 * latent), clamped to 80..=120".into(),
            expected_standard: "scaled score >= 100".into(),
        });
    }
    out
}

fn simulate_schools(cfg: &SimConfig) -> (Schools, Vec<SchoolLatent>) {
    let n = cfg.schools;
    // School draws are cheap: generate them serially per school stream, so order never depends on threads.
    let mut s = Schools::default();
    let mut latent = Vec::with_capacity(n);
    let mut la_offset = [0u32; 9];
    let mut acc = 0;
    for r in 0..9 {
        la_offset[r] = acc;
        acc += REGION_LAS[r];
    }
    let u_cor_rest = (1.0 - U01_COR * U01_COR).sqrt();
    for i in 0..n {
        let mut rng = stream(cfg.seed, 1, i as u64);
        let u: f64 = rng.random();
        let mut region = 8;
        let mut cum = 0.0;
        for (r, share) in REGION_SHARE.iter().enumerate() {
            cum += share;
            if u < cum {
                region = r;
                break;
            }
        }
        let la = 200 + la_offset[region] + rng.random_range(0..REGION_LAS[region]);
        let urban_p = match region {
            6 => 0.99,
            0 | 1 | 4 => 0.75,
            8 | 5 => 0.5,
            _ => 0.62,
        };
        let urban = rng.random_bool(urban_p);
        let deprivation =
            normal(&mut rng) + if urban { 0.35 } else { -0.35 } + if region == 0 || region == 6 { 0.3 } else { 0.0 };
        let fsm = 100.0 * logistic(-1.25 + 0.75 * deprivation + 0.25 * normal(&mut rng));
        let eal_mean = if region == 6 {
            0.0
        } else if urban {
            -1.6
        } else {
            -3.0
        };
        let eal = 100.0 * logistic(eal_mean + 0.9 * normal(&mut rng) + 0.3 * deprivation);
        let sen = 100.0 * Beta::new(6.0, 34.0).expect("valid beta").sample(&mut rng);
        let idaci = logistic(-1.5 + 0.7 * deprivation + 0.2 * normal(&mut rng)).clamp(0.0, 1.0);
        let roll_median = if urban { 260.0 } else { 150.0 };
        let roll: f64 = LogNormal::new(f64::ln(roll_median), 0.45).expect("valid lognormal").sample(&mut rng);
        let n_pupils = (roll.round() as i64).clamp(21, 900);
        let prior_z = -0.45 * deprivation + 0.85 * normal(&mut rng);
        let ofsted_latent = 0.6 * prior_z + normal(&mut rng);
        let ofsted = if ofsted_latent > 1.0 {
            1
        } else if ofsted_latent > -1.45 {
            2
        } else if ofsted_latent > -2.1 {
            3
        } else {
            4
        };
        let z0 = normal(&mut rng);
        let z1 = normal(&mut rng);
        latent.push(SchoolLatent {
            u0: cfg.school_sd * z0,
            u1: cfg.slope_sd * (U01_COR * z0 + u_cor_rest * z1),
            prior_z,
        });
        s.school_id.push(100_000 + (i as i64) * 7 + 3);
        s.la.push(la as i64);
        s.region.push(region as i64 + 1);
        s.urban.push(i64::from(urban));
        s.n_pupils.push(n_pupils);
        s.pct_fsm.push(round_to(fsm, 1));
        s.pct_eal.push(round_to(eal, 1));
        s.pct_sen.push(round_to(sen, 1));
        s.idaci.push(round_to(idaci, 3));
        s.prior_attainment.push(round_to(100.0 + 5.0 * prior_z, 2));
        s.ofsted.push(ofsted);
    }
    // Selection: exactly `leads` schools, weighted sampling without replacement (Efraimidis–Spirakis).
    let prior = standardize(&s.prior_attainment);
    let fsm = standardize(&s.pct_fsm);
    let log_roll = standardize(&s.n_pupils.iter().map(|&r| (r as f64).ln()).collect::<Vec<_>>());
    let mut keys: Vec<(f64, usize)> = (0..n)
        .map(|i| {
            let eta = -4.0
                + SEL[0].1 * prior[i]
                + SEL[1].1 * fsm[i]
                + SEL[2].1 * s.urban[i] as f64
                + SEL[3].1 * f64::from(s.ofsted[i] <= 2)
                + SEL[4].1 * log_roll[i];
            let mut rng = stream(cfg.seed, 2, i as u64);
            let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            (u.ln() / logistic(eta), i)
        })
        .collect();
    keys.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    s.lead = vec![0; n];
    for &(_, i) in keys.iter().take(cfg.leads) {
        s.lead[i] = 1;
    }
    (s, latent)
}

fn round_to(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// One school's pupil rows plus its latent sums (for the empirical latent SD).
#[derive(Debug, Default)]
struct SchoolPupils {
    rows: Pupils,
    sum: f64,
    sum_sq: f64,
}

fn simulate_pupils(cfg: &SimConfig, schools: &Schools, latent: &[SchoolLatent]) -> (Pupils, f64) {
    let roll_mean = schools.n_pupils.iter().sum::<i64>() as f64 / schools.n_pupils.len() as f64;
    let cohort_scale = cfg.mean_cohort / roll_mean;
    let per_school: Vec<SchoolPupils> = (0..schools.school_id.len())
        .into_par_iter()
        .map(|j| {
            let mut rng = stream(cfg.seed, 3, j as u64);
            let lat = latent[j];
            let lead = schools.lead[j] == 1;
            let (p_fsm, p_eal, p_sen) =
                (schools.pct_fsm[j] / 100.0, schools.pct_eal[j] / 100.0, schools.pct_sen[j] / 100.0);
            let lambda = (schools.n_pupils[j] as f64 * cohort_scale).max(0.5);
            // Room for the expected rows and some (capacity only: the draws do not depend on it).
            let cohorts = 2 * (cfg.last_year - cfg.first_year + 1) as usize;
            let mut out = SchoolPupils {
                rows: Pupils::with_capacity(cohorts * (lambda * 1.2 + 8.0) as usize),
                ..Default::default()
            };
            let poisson = Poisson::new(lambda).expect("positive rate");
            // Cohort shocks and the school's own programme effect come from streams of their own, so that the
            // other draws do not depend on them.
            let mut cohort_rng = stream(cfg.seed, 4, j as u64);
            let school_effect = cfg.effect + cfg.effect_sd * normal(&mut stream(cfg.seed, 5, j as u64));
            for year in cfg.first_year..=cfg.last_year {
                let t = f64::from(year - 2015);
                let pre = if lead && year < cfg.programme_start {
                    cfg.pretrend * f64::from(year - cfg.programme_start + 1)
                } else {
                    0.0
                };
                for ks in [1u8, 2] {
                    let cohort = cfg.cohort_sd * normal(&mut cohort_rng);
                    let size = poisson.sample(&mut rng) as usize;
                    for _ in 0..size {
                        let female = rng.random_bool(0.49);
                        let fsm = rng.random_bool(p_fsm);
                        let eal = rng.random_bool(p_eal);
                        let sen = rng.random_bool(p_sen);
                        let prior =
                            0.35 * lat.prior_z - 0.3 * f64::from(fsm) - 0.1 * f64::from(eal) - 0.6 * f64::from(sen)
                                + 0.9 * normal(&mut rng);
                        let base = LATENT_INTERCEPT
                            + lat.u0
                            + lat.u1 * t
                            + TREND * t
                            + if ks == 2 { KS2_SHIFT } else { 0.0 }
                            + SCHOOL_PRIOR * lat.prior_z
                            + COEF.female * f64::from(female)
                            + COEF.fsm * f64::from(fsm)
                            + COEF.eal * f64::from(eal)
                            + COEF.sen * f64::from(sen)
                            + COEF.prior * prior
                            + cohort
                            + pre
                            + cfg.pupil_sd * normal(&mut rng);
                        out.sum += base;
                        out.sum_sq += base * base;
                        let effect = if lead && year >= cfg.programme_start { school_effect } else { 0.0 };
                        let (maths, expected) = observe(ks, year, base + effect);
                        let (maths0, expected0) =
                            if effect == 0.0 { (maths, expected) } else { observe(ks, year, base) };
                        let r = &mut out.rows;
                        r.school_id.push(schools.school_id[j]);
                        r.year.push(i64::from(year));
                        r.key_stage.push(i64::from(ks));
                        r.female.push(i64::from(female));
                        r.fsm.push(i64::from(fsm));
                        r.eal.push(i64::from(eal));
                        r.sen.push(i64::from(sen));
                        r.prior.push(round_to(prior, 3));
                        r.maths.push(maths);
                        r.expected.push(i64::from(expected));
                        r.maths_untreated.push(maths0);
                        r.expected_untreated.push(i64::from(expected0));
                    }
                }
            }
            out
        })
        .collect();
    let total: usize = per_school.iter().map(|s| s.rows.school_id.len()).sum();
    // The schools' rows in school order, each column gathered on its own (in parallel: millions of rows).
    let mut p = Pupils::default();
    rayon::scope(|scope| {
        let parts = &per_school;
        macro_rules! gather {
            ($($f:ident),*) => { $(
                let column = &mut p.$f;
                scope.spawn(move |_| {
                    column.reserve_exact(total);
                    for part in parts {
                        column.extend_from_slice(&part.rows.$f);
                    }
                });
            )* };
        }
        gather!(
            school_id,
            year,
            key_stage,
            female,
            fsm,
            eal,
            sen,
            prior,
            maths,
            expected,
            maths_untreated,
            expected_untreated
        );
    });
    let (sum, sum_sq) = per_school.iter().fold((0.0, 0.0), |(a, b), s| (a + s.sum, b + s.sum_sq));
    drop(per_school);
    p.pupil_id = (1..=total as i64).map(|k| 10_000_000 + k).collect();
    let n = total as f64;
    let sd = if total > 1 { ((sum_sq - sum * sum / n) / (n - 1.0)).max(0.0).sqrt() } else { f64::NAN };
    (p, sd)
}

/// Observed maths score and expected-standard flag for a latent score, by key stage and assessment regime.
fn observe(ks: u8, year: i32, latent: f64) -> (f64, bool) {
    match (ks, year >= 2016) {
        (1, false) => {
            let cuts = [-2.0, -1.2, -0.5, 0.1, 0.8];
            let points = [3.0, 9.0, 13.0, 15.0, 17.0, 21.0];
            let band = cuts.iter().filter(|&&c| latent >= c).count();
            (points[band], points[band] >= 13.0)
        }
        (1, true) => {
            let cuts = [-1.4, -0.6, 0.9];
            let band = 1 + cuts.iter().filter(|&&c| latent >= c).count();
            (band as f64, band >= 3)
        }
        (_, false) => {
            let mark = (62.0 + 17.0 * latent).round().clamp(0.0, 100.0);
            (mark, mark >= 45.0)
        }
        (_, true) => {
            let scaled = (103.0 + 6.5 * latent).round().clamp(80.0, 120.0);
            (scaled, scaled >= 100.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Population {
        simulate(&SimConfig { schools: 400, leads: 30, ..SimConfig::default() }).unwrap()
    }

    #[test]
    fn deterministic_whatever_the_thread_count() {
        let a = small();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let b = pool.install(small);
        assert_eq!(a, b);
        let c = simulate(&SimConfig { schools: 400, leads: 30, seed: 7, ..SimConfig::default() }).unwrap();
        assert_ne!(a.pupils.maths, c.pupils.maths);
    }

    #[test]
    fn population_is_plausible() {
        let p = simulate(&SimConfig::small()).unwrap();
        let s = &p.schools;
        assert_eq!(s.lead.iter().sum::<i64>(), 47);
        let mean_fsm = s.pct_fsm.iter().sum::<f64>() / s.pct_fsm.len() as f64;
        assert!((15.0..35.0).contains(&mean_fsm), "mean FSM {mean_fsm}");
        let regions: std::collections::BTreeSet<i64> = s.region.iter().copied().collect();
        assert_eq!(regions.len(), 9);
        // about 36 pupils per year group per key stage per school
        let per = p.pupils.len() as f64 / (1000.0 * 5.0 * 2.0);
        assert!((30.0..42.0).contains(&per), "cohort {per}");
        // pupil FSM share follows school shares
        let pupil_fsm = p.pupils.fsm.iter().sum::<i64>() as f64 / p.pupils.len() as f64;
        assert!((0.12..0.35).contains(&pupil_fsm));
        assert!((p.truth.latent_total_sd - 1.0).abs() < 0.15, "latent sd {}", p.truth.latent_total_sd);
    }

    #[test]
    fn selection_bias_is_present() {
        let p = simulate(&SimConfig::small()).unwrap();
        let s = &p.schools;
        let mean = |lead: i64| {
            let v: Vec<f64> = (0..s.lead.len()).filter(|&i| s.lead[i] == lead).map(|i| s.prior_attainment[i]).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        // lead schools have higher prior attainment by a clear margin (SD of prior_attainment is about 5)
        assert!(mean(1) - mean(0) > 1.5, "lead {} vs rest {}", mean(1), mean(0));
    }

    #[test]
    fn effect_is_recoverable_by_a_simple_difference_in_differences() {
        // KS2 scaled scores (2016, 2017) minus KS2 marks-based scores before: compare lead vs non-lead changes
        // in within-year standardized scores. Selection is on levels, not trends, so DiD recovers D roughly.
        let cfg = SimConfig { schools: 2000, leads: 200, effect: 0.3, ..SimConfig::default() };
        let p = simulate(&cfg).unwrap();
        let lead_of: std::collections::HashMap<i64, i64> =
            p.schools.school_id.iter().copied().zip(p.schools.lead.iter().copied()).collect();
        let pu = &p.pupils;
        let mut stats: std::collections::BTreeMap<i64, (f64, f64)> = Default::default();
        for i in 0..pu.len() {
            if pu.key_stage[i] == 2 {
                let e = stats.entry(pu.year[i]).or_default();
                e.0 += pu.maths[i];
                e.1 += pu.maths[i] * pu.maths[i];
            }
        }
        let counts: std::collections::BTreeMap<i64, f64> =
            pu.year.iter().zip(&pu.key_stage).filter(|(_, k)| **k == 2).fold(Default::default(), |mut m, (y, _)| {
                *m.entry(*y).or_default() += 1.0;
                m
            });
        let mut acc = [[0.0f64; 2]; 2];
        let mut n = [[0.0f64; 2]; 2];
        for i in 0..pu.len() {
            if pu.key_stage[i] != 2 {
                continue;
            }
            let (s, ss) = stats[&pu.year[i]];
            let c = counts[&pu.year[i]];
            let mean = s / c;
            let sd = (ss / c - mean * mean).sqrt();
            let z = (pu.maths[i] - mean) / sd;
            let post = usize::from(pu.year[i] >= 2015);
            let lead = lead_of[&pu.school_id[i]] as usize;
            acc[lead][post] += z;
            n[lead][post] += 1.0;
        }
        let m = |l: usize, t: usize| acc[l][t] / n[l][t];
        let did = (m(1, 1) - m(1, 0)) - (m(0, 1) - m(0, 0));
        assert!((did - 0.3).abs() < 0.08, "DiD {did}");
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(simulate(&SimConfig { schools: 5, ..SimConfig::default() }).is_err());
        assert!(simulate(&SimConfig { leads: 0, ..SimConfig::small() }).is_err());
        assert!(simulate(&SimConfig { programme_start: 2030, ..SimConfig::small() }).is_err());
        assert!(simulate(&SimConfig { effect: f64::NAN, ..SimConfig::small() }).is_err());
        let span = SimConfig { first_year: -2_000_000_000, last_year: 2_000_000_000, ..SimConfig::small() };
        assert!(matches!(validate(&span), Err(SimError::OutOfRange { name: "last_year", .. })), "no overflow");
        assert!(validate(&SimConfig { leads: usize::MAX, ..SimConfig::small() }).is_err());
        assert!(validate(&SimConfig { schools: usize::MAX, ..SimConfig::small() }).is_err());
    }
}
