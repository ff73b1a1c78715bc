//! The programme effect of a logistic impact model in percentage points, by g-computation: the treatment
//! schools' pupils of each programme year predicted from the fitted model as they are (μ₁ = expit(η)) and
//! without the programme (μ₀ = expit(η − L_Yβ̂), L_Y the year's difference-in-differences contrast, so the
//! lead–contrast gap stays at its pre-programme level), with η = Xβ̂ + Zb̂ each pupil's conditional linear
//! predictor (their own school's effect included). The year's effect is the (prior-weighted) mean of μ₁ − μ₀,
//! the pooled effect the mean over programme years, as for the log-odds contrasts.
//!
//! Standard errors by the delta method, holding b̂ fixed: the gradient with respect to β is
//! g = mean[μ₁(1 − μ₁)x − μ₀(1 − μ₀)(x − L_Y)], and Var = g′Vg with V the model's covariance (Wald z) or,
//! by default, the CR2 covariance of the logistic model's working linear model ([`Cr2::logistic`]), whose
//! Bell–McCaffrey df for the combination g give the t interval. Everything is ×100 (percentage points).

use psmeval_frame::{ModelFrame, Table};
use psmeval_multilevel::{Cr2, GlmmFit, MixedModel};

use crate::effects::{Contrast, Effect, Period};

/// Per programme year and pooled, the percentage-point effect with the robust (when `cr2` is given) or the
/// model-based delta-method interval, the model-based one kept beside a robust one.
pub fn percentage_points(
    fit: &GlmmFit,
    frame: &ModelFrame,
    table: &Table,
    year: &str,
    contrasts: &[Contrast],
    weights: Option<&[f64]>,
    cr2: Option<&Cr2>,
) -> Result<Vec<Effect>, String> {
    let eta = fit.linear_predictor(frame).map_err(|e| e.to_string())?;
    let cols: Vec<usize> = fit
        .fixed_effects()
        .iter()
        .map(|f| frame.x_names.iter().position(|n| *n == f.term).ok_or_else(|| format!("no column `{}`", f.term)))
        .collect::<Result<_, _>>()?;
    let group = table.numeric("group").map_err(|e| e.to_string())?;
    let years = table.numeric(year).map_err(|e| e.to_string())?;
    let beta = fit.beta();
    let p = beta.len();
    let expit = |x: f64| 1.0 / (1.0 + (-x).exp());
    let mut per_year: Vec<(Period, f64, Vec<f64>)> = Vec::new();
    for c in contrasts {
        let Period::Year(y) = c.period else { continue };
        if c.l.len() != p {
            return Err(format!("the contrast of {y} has {} weights for {p} coefficients", c.l.len()));
        }
        let shift: f64 = c.l.iter().zip(beta).map(|(a, b)| a * b).sum();
        let (mut total, mut estimate, mut grad) = (0.0, 0.0, vec![0.0; p]);
        for (k, &i) in frame.rows.iter().enumerate() {
            if group[i] != 1.0 || years[i] as i64 != y {
                continue;
            }
            let w = weights.map_or(1.0, |w| w[k]);
            let (m1, m0) = (expit(eta[k]), expit(eta[k] - shift));
            let (d1, d0) = (m1 * (1.0 - m1), m0 * (1.0 - m0));
            estimate += w * (m1 - m0);
            for (j, g) in grad.iter_mut().enumerate() {
                let x = frame.x[[k, cols[j]]];
                *g += w * (d1 * x - d0 * (x - c.l[j]));
            }
            total += w;
        }
        if total > 0.0 {
            grad.iter_mut().for_each(|g| *g /= total);
            per_year.push((c.period, estimate / total, grad));
        }
    }
    if per_year.is_empty() {
        return Ok(Vec::new());
    }
    let k = per_year.len() as f64;
    let pooled_est = per_year.iter().map(|r| r.1).sum::<f64>() / k;
    let pooled_grad: Vec<f64> = (0..p).map(|j| per_year.iter().map(|r| r.2[j]).sum::<f64>() / k).collect();
    per_year.push((Period::POOLED, pooled_est, pooled_grad));
    let vcov = fit.vcov();
    per_year
        .into_iter()
        .map(|(period, est, g)| {
            let var: f64 = (0..p).map(|a| (0..p).map(|b| g[a] * vcov[a * p + b] * g[b]).sum::<f64>()).sum();
            let model = Effect::new(period, 100.0 * est, 100.0 * var.max(0.0).sqrt(), f64::INFINITY, f64::NAN);
            Ok(match cr2 {
                Some(r) => {
                    let t = r.contrast(&g).map_err(|e| e.to_string())?;
                    Effect::new(period, 100.0 * est, 100.0 * t.std_error, t.df.unwrap_or(f64::NAN), f64::NAN)
                        .with_inference("CR2", Some(&model))
                }
                None => model.with_inference("Wald z", None),
            })
        })
        .collect()
}
