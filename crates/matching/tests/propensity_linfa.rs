//! Cross-check of the glm-exact IRLS fit against linfa-logistic's unpenalised maximum likelihood.
//!
//! linfa-logistic minimises the logistic loss with L-BFGS until the summed gradient is below its
//! `gradient_tolerance`; its coefficients are therefore the MLE only to within about
//! `λmax((X'WX)⁻¹) · tolerance ≤ trace(Cov) · tolerance`. The covariates are standardized (so L-BFGS
//! converges in reasonable time), the tolerance is 1e-6, and the test asserts that bound (×10 for the
//! change in curvature, and never looser than 1e-4 absolute) on the coefficients. Its "positive"
//! class is the more frequent label (controls in lalonde), so its coefficients are negated.

mod lalonde_data;

use lalonde_data::{indicator, load, matrix};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use psmeval_matching::propensity::{Link, fit_binomial_glm};

#[test]
fn unpenalised_linfa_agrees_with_irls() {
    let d = load();
    let (raw, _) = matrix(&[
        ("age", d.age.clone()),
        ("educ", d.educ.clone()),
        ("racehispan", indicator(&d.race, "hispan")),
        ("racewhite", indicator(&d.race, "white")),
        ("married", d.married.clone()),
        ("nodegree", d.nodegree.clone()),
        ("re74", d.re74.clone()),
        ("re75", d.re75.clone()),
    ]);
    let (n, k) = raw.dim();
    let mut z = raw.clone();
    for mut c in z.columns_mut() {
        let m = c.mean().unwrap();
        let sd = c.std(1.0);
        c.mapv_inplace(|v| (v - m) / sd);
    }
    let mut x = Array2::ones((n, k + 1));
    for j in 0..k {
        x.column_mut(j + 1).assign(&z.column(j));
    }
    let names: Vec<String> =
        std::iter::once("(Intercept)".to_string()).chain((0..k).map(|j| format!("z{j}"))).collect();
    let irls = fit_binomial_glm(x.view(), &names, &d.treat, None, Link::Logit).unwrap();

    let y: Array1<usize> = d.treat.iter().map(|&t| t as usize).collect();
    let data = Dataset::new(z, y);
    let fitted =
        LogisticRegression::default().alpha(0.0).gradient_tolerance(1e-6).max_iterations(10_000).fit(&data).unwrap();
    // Orientation: params refer to P(pos.class).
    let sign = if fitted.labels().pos.class == 1 { 1.0 } else { -1.0 };
    let mut worst = (sign * fitted.intercept() - irls.coefficients[0].estimate).abs();
    for j in 0..k {
        worst = worst.max((sign * fitted.params()[j] - irls.coefficients[j + 1].estimate).abs());
    }
    // ‖δβ‖ ≤ λmax((X'WX)⁻¹)·‖g‖ ≤ trace(Cov)·tolerance; ×10 for the curvature change along the way.
    let bound = 10.0 * irls.coefficients.iter().map(|c| c.std_error * c.std_error).sum::<f64>() * 1e-6;
    eprintln!("linfa-logistic (alpha = 0) vs IRLS: max abs coefficient difference {worst:.2e} (bound {bound:.1e})");
    assert!(worst < bound.min(1e-4), "max abs coefficient difference {worst:e}, bound {bound:e}");

    // The default (alpha = 1) is a ridge fit and visibly different: a reason not to use it as is.
    let ridge = LogisticRegression::default().fit(&data).unwrap();
    let diff = (0..k).map(|j| (sign * ridge.params()[j] - irls.coefficients[j + 1].estimate).abs()).fold(0.0, f64::max);
    assert!(diff > 1e-4, "the penalised default should differ from the MLE (difference {diff:e})");
}
