//! Difference-in-differences contrasts of the impact model `outcome ~ factor(year) * group + …`.
//!
//! The interaction coefficient `factor(year)Y:group` is the change in the lead–contrast gap between year Y and
//! the reference (first) year. Evaluations report the change relative to the whole pre-programme period, so
//! each post-programme year's effect is the contrast
//! `L_Y = e[Y:group] − mean_{P pre-programme} e[P:group]` (the reference year's coefficient is 0), and the
//! pooled effect is the mean of the post-programme `L_Y`. Estimates, standard errors and Satterthwaite
//! degrees of freedom of these contrasts come from the fitted model; this module only builds the `L` vectors
//! and turns the model's answers into report rows.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::float::nan_if_null;

/// Which effect a row reports: one year (a number in JSON) or the pooled effect (the string `"pooled"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Period {
    /// One post-programme year.
    Year(i64),
    /// All post-programme years together.
    Pooled(Pooled),
}

/// The tag of the pooled effect, written `"pooled"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pooled {
    /// The only value.
    #[serde(rename = "pooled")]
    Pooled,
}

impl Period {
    /// The pooled period.
    pub const POOLED: Period = Period::Pooled(Pooled::Pooled);

    /// True for the pooled effect.
    pub fn is_pooled(&self) -> bool {
        matches!(self, Period::Pooled(_))
    }
}

/// A contrast to evaluate: its period and coefficient weights (aligned with the fixed effects).
#[derive(Debug, Clone, PartialEq)]
pub struct Contrast {
    /// The period reported.
    pub period: Period,
    /// Weights on the fixed effects.
    pub l: Vec<f64>,
}

/// One effect row of a report. Non-finite numbers are written as `null` in JSON (infinite df of a Wald z
/// test, a df that could not be computed) and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// `2016` or `"pooled"`.
    pub year: Period,
    /// Change in the lead–contrast gap relative to the pre-programme period, in outcome units.
    #[serde(deserialize_with = "nan_if_null")]
    pub estimate: f64,
    /// Standard error.
    #[serde(deserialize_with = "nan_if_null")]
    pub std_error: f64,
    /// Satterthwaite degrees of freedom (infinite for Wald z tests).
    #[serde(deserialize_with = "nan_if_null")]
    pub df: f64,
    /// Lower 95% limit.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_low: f64,
    /// Upper 95% limit.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_high: f64,
    /// Two-sided p value.
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
    /// Estimate divided by the effect-size SD.
    #[serde(deserialize_with = "nan_if_null")]
    pub effect_size: f64,
    /// How the SE, df, CI and p value above were computed: `CR2` (cluster-robust, Bell–McCaffrey df),
    /// `model` (the linear model's own SE, Satterthwaite df) or `Wald z` (a logistic model's own SE).
    #[serde(default)]
    pub inference: String,
    /// The model's own SE, df, CI and p value, when the row's inference is another (CR2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_based: Option<ModelBased>,
}

/// The model-based test of an effect, kept beside the default (robust) one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelBased {
    /// Standard error.
    #[serde(deserialize_with = "nan_if_null")]
    pub std_error: f64,
    /// Satterthwaite df (`null` for Wald z).
    #[serde(deserialize_with = "nan_if_null")]
    pub df: f64,
    /// Lower 95% limit.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_low: f64,
    /// Upper 95% limit.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_high: f64,
    /// Two-sided p value.
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
}

/// A joint test of several constraints (the pre-programme trend test).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointTest {
    /// `CR2 HTZ` (cluster-robust Hotelling T² approximation) or `Wald chi-square` (model-based).
    pub method: String,
    /// Number of constraints.
    pub df_num: usize,
    /// Denominator df (`null` for a chi-square test).
    #[serde(deserialize_with = "nan_if_null")]
    pub df_den: f64,
    /// F statistic (chi-square / q for the model-based test).
    #[serde(deserialize_with = "nan_if_null")]
    pub statistic: f64,
    /// p value.
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
}

impl Effect {
    /// An effect row from an estimate, its SE and df (t-based interval; normal when df is infinite or NaN).
    pub fn new(year: Period, estimate: f64, std_error: f64, df: f64, es_sd: f64) -> Effect {
        let t_stat = estimate / std_error;
        let (q, p) = if !t_stat.is_finite() {
            // No test is possible (a zero or undefined SE); statrs would panic on a NaN argument.
            let q = if df.is_finite() && df > 0.0 {
                StudentsT::new(0.0, 1.0, df).map(|t| t.inverse_cdf(0.975)).unwrap_or(f64::NAN)
            } else {
                1.959_963_984_540_054
            };
            (q, f64::NAN)
        } else if df.is_finite() && df > 0.0 {
            let t = StudentsT::new(0.0, 1.0, df).expect("positive df");
            (t.inverse_cdf(0.975), 2.0 * t.cdf(-(estimate / std_error).abs()))
        } else {
            let z = statrs::distribution::Normal::standard();
            (z.inverse_cdf(0.975), 2.0 * z.cdf(-(estimate / std_error).abs()))
        };
        Effect {
            year,
            estimate,
            std_error,
            df,
            ci_low: estimate - q * std_error,
            ci_high: estimate + q * std_error,
            p_value: p,
            effect_size: estimate / es_sd,
            inference: String::new(),
            model_based: None,
        }
    }

    /// This row with its inference named, and the model-based test kept beside it.
    pub fn with_inference(mut self, inference: &str, model_based: Option<&Effect>) -> Effect {
        self.inference = inference.to_string();
        self.model_based = model_based.map(|m| ModelBased {
            std_error: m.std_error,
            df: m.df,
            ci_low: m.ci_low,
            ci_high: m.ci_high,
            p_value: m.p_value,
        });
        self
    }
}

/// Event-study contrasts: for every year other than the reference year (the last pre-programme year), the
/// change in the lead–contrast gap since the reference year, `e[Y:group] − e[R:group]`. The pre-programme
/// rows are the pre-trend: with parallel paths they are 0. Returns the reference year and the contrasts.
/// `term` is the interaction the year factor multiplies: `group`, or `group:fsm` for the change in a
/// subgroup's gap (see [`did_contrasts`]).
pub fn event_study_contrasts(
    names: &[String],
    year_var: &str,
    term: &str,
    years: &[i64],
    programme_start: i64,
) -> Result<(i64, Vec<Contrast>), String> {
    let name = |y: i64| format!("factor({year_var}){y}:{term}");
    let index = |y: i64| names.iter().position(|n| *n == name(y));
    let first = *years.first().ok_or("no years")?;
    let reference = years.iter().copied().filter(|&y| y < programme_start).max().ok_or("no pre-programme year")?;
    // The gap of year y relative to the first year, as a vector on the coefficients.
    let gap = |y: i64| -> Result<Vec<f64>, String> {
        let mut l = vec![0.0; names.len()];
        match index(y) {
            Some(k) => l[k] = 1.0,
            None if y == first => {}
            None => return Err(format!("the model has no coefficient `{}`", name(y))),
        }
        Ok(l)
    };
    let base = gap(reference)?;
    let mut out = Vec::new();
    for &y in years.iter().filter(|&&y| y != reference) {
        let l: Vec<f64> = gap(y)?.iter().zip(&base).map(|(a, b)| a - b).collect();
        out.push(Contrast { period: Period::Year(y), l });
    }
    Ok((reference, out))
}

/// The per-year and pooled contrasts for a model with fixed-effect names `names`, where the interaction
/// terms are named `factor(<year_var>)<Y>:<term>` and `years` are the years analysed. With `term` =
/// `group` these are the programme effects; with `group:fsm` (the model `factor(year) * group * fsm`) the
/// same contrasts of the three-way terms are the difference between the programme's effect on FSM pupils
/// and on the others: the change in the FSM gap the programme brought about.
pub fn did_contrasts(
    names: &[String],
    year_var: &str,
    term: &str,
    years: &[i64],
    programme_start: i64,
) -> Result<Vec<Contrast>, String> {
    let name = |y: i64| format!("factor({year_var}){y}:{term}");
    let index = |y: i64| names.iter().position(|n| *n == name(y));
    let reference = *years.first().ok_or("no years")?;
    let pre: Vec<i64> = years.iter().copied().filter(|&y| y < programme_start).collect();
    let post: Vec<i64> = years.iter().copied().filter(|&y| y >= programme_start).collect();
    if pre.is_empty() || post.is_empty() {
        return Err("need at least one pre-programme and one programme year".into());
    }
    let mut base = vec![0.0; names.len()];
    for &y in &pre {
        // The reference year's gap is absorbed by `group` in `factor(year) * group`; a formula without a
        // `group` main effect (`factor(year) + factor(year):group`) codes it as a coefficient of its own.
        match index(y) {
            Some(k) => base[k] -= 1.0 / pre.len() as f64,
            None if y == reference => {}
            None => return Err(format!("the model has no coefficient `{}`", name(y))),
        }
    }
    let mut out = Vec::new();
    let mut pooled = vec![0.0; names.len()];
    for &y in &post {
        let k = index(y).ok_or_else(|| format!("the model has no coefficient `{}`", name(y)))?;
        let mut l = base.clone();
        l[k] += 1.0;
        for (p, v) in pooled.iter_mut().zip(&l) {
            *p += v / post.len() as f64;
        }
        out.push(Contrast { period: Period::Year(y), l });
    }
    out.push(Contrast { period: Period::POOLED, l: pooled });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["(Intercept)", "factor(year)2014", "factor(year)2015", "factor(year)2016", "group", "fsm"]
            .iter()
            .map(|s| s.to_string())
            .chain(["factor(year)2014:group", "factor(year)2015:group", "factor(year)2016:group"].map(String::from))
            .collect()
    }

    #[test]
    fn contrasts_compare_with_the_pre_period_mean() {
        let c = did_contrasts(&names(), "year", "group", &[2013, 2014, 2015, 2016], 2015).unwrap();
        assert_eq!(c.len(), 3);
        // 2015: e[2015:group] − (0 + e[2014:group]) / 2
        assert_eq!(c[0].period, Period::Year(2015));
        assert_eq!(c[0].l, vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.5, 1.0, 0.0]);
        assert_eq!(c[2].period, Period::POOLED);
        assert_eq!(c[2].l, vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.5, 0.5, 0.5]);
        assert!(did_contrasts(&names(), "yr", "group", &[2013, 2014, 2015], 2015).is_err());
        // Without a `group` main effect every year has an interaction coefficient, the reference year too.
        let cell: Vec<String> = ["(Intercept)", "factor(year)2014", "factor(year)2015"]
            .into_iter()
            .chain(["factor(year)2013:group", "factor(year)2014:group", "factor(year)2015:group"])
            .map(String::from)
            .collect();
        let c = did_contrasts(&cell, "year", "group", &[2013, 2014, 2015], 2015).unwrap();
        assert_eq!(c[0].l, vec![0.0, 0.0, 0.0, -0.5, -0.5, 1.0]);
        // The three-way terms of `factor(year) * group * fsm`: the same weights on `…:group:fsm`.
        let triple: Vec<String> = ["(Intercept)", "factor(year)2014:group", "factor(year)2015:group"]
            .into_iter()
            .chain(["factor(year)2014:group:fsm", "factor(year)2015:group:fsm"])
            .map(String::from)
            .collect();
        let c = did_contrasts(&triple, "year", "group:fsm", &[2013, 2014, 2015], 2015).unwrap();
        assert_eq!(c[0].l, vec![0.0, 0.0, 0.0, -0.5, 1.0]);
        let (reference, e) = event_study_contrasts(&triple, "year", "group:fsm", &[2013, 2014, 2015], 2015).unwrap();
        assert_eq!((reference, e[0].l.clone()), (2014, vec![0.0, 0.0, 0.0, -1.0, 0.0]));
        let err = did_contrasts(&triple, "year", "group:eal", &[2013, 2014, 2015], 2015).unwrap_err();
        assert!(err.contains("factor(year)2014:group:eal"), "{err}");
    }

    #[test]
    fn effect_rows() {
        let e = Effect::new(Period::Year(2016), 0.2, 0.1, 30.0, 2.0);
        // t_{30, .975} = 2.042272456
        assert!((e.ci_high - (0.2 + 0.204_227_245_6)).abs() < 1e-8);
        assert!((e.effect_size - 0.1).abs() < 1e-15);
        assert!((e.p_value - 0.054_645).abs() < 1e-4, "{}", e.p_value);
        let z = Effect::new(Period::POOLED, 0.2, 0.1, f64::INFINITY, 1.0);
        assert!((z.p_value - 0.045_500_26).abs() < 1e-6);
        assert_eq!(serde_json::to_string(&z.year).unwrap(), "\"pooled\"");
        // JSON round trip: the infinite df is written as null and read back as NaN.
        let back: Effect = serde_json::from_str(&serde_json::to_string(&z).unwrap()).unwrap();
        assert_eq!(back.year, Period::POOLED);
        assert!(back.df.is_nan() && back.estimate == 0.2);
        let y: Period = serde_json::from_str("2016").unwrap();
        assert_eq!(y, Period::Year(2016));
    }
}
