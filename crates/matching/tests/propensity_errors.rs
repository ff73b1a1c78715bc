//! Every error path of the propensity fit and the warnings R would give, on small inputs whose answer is
//! known by construction.

use ndarray::{Array2, array};
use psmeval_matching::propensity::{
    GlmControl, Link, PropensityError, PropensityWarning, fit_binomial_glm, fit_binomial_glm_with,
};

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// 8 units, intercept + x, overlapping groups.
fn small() -> (Array2<f64>, Vec<String>, Vec<f64>) {
    let x = array![[1., 0.1], [1., 0.5], [1., 0.9], [1., 1.3], [1., 0.2], [1., 0.8], [1., 1.1], [1., 1.6]];
    (x, names(&["(Intercept)", "x"]), vec![0., 0., 0., 0., 1., 1., 1., 1.])
}

#[test]
fn all_treated_or_none() {
    let (x, n, _) = small();
    let e = fit_binomial_glm(x.view(), &n, &[1.0; 8], None, Link::Logit).unwrap_err();
    assert_eq!(e, PropensityError::NoVariation { all_treated: true, n: 8 });
    assert!(e.to_string().contains("all 8 units are treated"), "{e}");
    let e = fit_binomial_glm(x.view(), &n, &[0.0; 8], None, Link::Probit).unwrap_err();
    assert_eq!(e, PropensityError::NoVariation { all_treated: false, n: 8 });
    // Only units with positive weight count.
    let (_, _, y) = small();
    let w = [1., 1., 1., 1., 0., 0., 0., 0.];
    let e = fit_binomial_glm(x.view(), &n, &y, Some(&w), Link::Logit).unwrap_err();
    assert_eq!(e, PropensityError::NoVariation { all_treated: false, n: 4 });
}

#[test]
fn response_not_binary_names_the_row() {
    let (x, n, mut y) = small();
    y[5] = 2.0;
    let e = fit_binomial_glm(x.view(), &n, &y, None, Link::Logit).unwrap_err();
    assert_eq!(e, PropensityError::ResponseNotBinary { row: 5, value: 2.0 });
    assert!(e.to_string().contains("row 5"));
    y[5] = f64::NAN;
    assert!(matches!(
        fit_binomial_glm(x.view(), &n, &y, None, Link::Logit),
        Err(PropensityError::ResponseNotBinary { row: 5, .. })
    ));
}

#[test]
fn non_finite_covariate_names_term_and_row() {
    let (mut x, n, y) = small();
    x[[3, 1]] = f64::INFINITY;
    let e = fit_binomial_glm(x.view(), &n, &y, None, Link::Logit).unwrap_err();
    assert_eq!(e, PropensityError::NonFiniteCovariate { term: "x".into(), row: 3, value: f64::INFINITY });
}

#[test]
fn bad_weights_and_lengths() {
    let (x, n, y) = small();
    let mut w = vec![1.0; 8];
    w[2] = -1.0;
    assert_eq!(
        fit_binomial_glm(x.view(), &n, &y, Some(&w), Link::Logit).unwrap_err(),
        PropensityError::InvalidWeight { row: 2, value: -1.0 }
    );
    assert!(matches!(
        fit_binomial_glm(x.view(), &n, &y[..7], None, Link::Logit),
        Err(PropensityError::LengthMismatch { expected: 8, found: 7, .. })
    ));
    assert!(matches!(
        fit_binomial_glm(x.view(), &n[..1], &y, None, Link::Logit),
        Err(PropensityError::LengthMismatch { what: "names", .. })
    ));
    let empty = Array2::<f64>::zeros((8, 0));
    assert_eq!(fit_binomial_glm(empty.view(), &[], &y, None, Link::Logit).unwrap_err(), PropensityError::NoColumns);
}

#[test]
fn constant_covariate_is_named() {
    let (x0, _, y) = small();
    let mut x = Array2::zeros((8, 3));
    x.column_mut(0).assign(&x0.column(0));
    x.column_mut(1).fill(3.0);
    x.column_mut(2).assign(&x0.column(1));
    let n = names(&["(Intercept)", "region_north", "x"]);
    let e = fit_binomial_glm(x.view(), &n, &y, None, Link::Logit).unwrap_err();
    assert_eq!(e, PropensityError::ConstantCovariate { term: "region_north".into(), value: 3.0 });
    // An all-zero column (an empty factor level) too.
    x.column_mut(1).fill(0.0);
    let e = fit_binomial_glm(x.view(), &n, &y, None, Link::Logit).unwrap_err();
    assert!(matches!(e, PropensityError::ConstantCovariate { ref term, value: 0.0 } if term == "region_north"), "{e}");
}

#[test]
fn collinear_column_is_named_with_its_partners() {
    let (x0, _, y) = small();
    let z = [3., 1., 4., 1., 5., 9., 2., 6.];
    let mut x = Array2::zeros((8, 4));
    x.column_mut(0).assign(&x0.column(0));
    x.column_mut(1).assign(&x0.column(1));
    for i in 0..8 {
        x[[i, 2]] = 2.0 * x0[[i, 1]] - 0.5; // x2 = 2x - 0.5·(Intercept)
        x[[i, 3]] = z[i];
    }
    let n = names(&["(Intercept)", "x", "x_doubled", "z"]);
    let e = fit_binomial_glm(x.view(), &n, &y, None, Link::Logit).unwrap_err();
    match &e {
        PropensityError::Collinear { term, with, all_aliased } => {
            assert_eq!(term, "x_doubled");
            assert_eq!(with, &names(&["(Intercept)", "x"]));
            assert_eq!(all_aliased, &names(&["x_doubled"]));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("`x_doubled` is collinear with `(Intercept)`, `x`"), "{e}");
    // More columns than units with positive weight.
    let w = [1., 1., 0., 0., 1., 0., 0., 0.];
    assert_eq!(
        fit_binomial_glm(x.view(), &n, &y, Some(&w), Link::Logit).unwrap_err(),
        PropensityError::TooFewObservations { n: 3, p: 4 }
    );
}

#[test]
fn complete_separation_warns() {
    let x = array![[1., 0.1], [1., 0.2], [1., 0.3], [1., 0.4], [1., 0.6], [1., 0.7], [1., 0.8], [1., 0.9]];
    let y = [0., 0., 0., 0., 1., 1., 1., 1.];
    let fit = fit_binomial_glm(x.view(), &names(&["(Intercept)", "x"]), &y, None, Link::Logit).unwrap();
    assert!(
        fit.warnings
            .iter()
            .any(|w| matches!(w, PropensityWarning::FittedProbabilitiesZeroOrOne { count } if *count > 0)),
        "{:?}",
        fit.warnings
    );
    assert!(fit.warnings.iter().any(|w| w.to_string().contains("fitted probabilities numerically 0 or 1 occurred")));
    assert!(fit.fitted.iter().zip(&y).all(|(m, y)| (m - y).abs() < 1e-8));
}

#[test]
fn non_convergence_warns() {
    let (x, n, y) = small();
    let control = GlmControl { maxit: 1, ..GlmControl::default() };
    let fit = fit_binomial_glm_with(x.view(), &n, &y, None, Link::Logit, &control).unwrap();
    assert!(!fit.converged);
    assert_eq!(fit.iterations, 1);
    assert_eq!(fit.warnings, vec![PropensityWarning::NotConverged { iterations: 1 }]);
    let fit = fit_binomial_glm(x.view(), &n, &y, None, Link::Logit).unwrap();
    assert!(fit.converged && fit.warnings.is_empty(), "{:?}", fit.warnings);
}

#[test]
fn non_integer_weights_warn_like_glm() {
    let (x, n, y) = small();
    let w = [1.0, 1.5, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0];
    let fit = fit_binomial_glm(x.view(), &n, &y, Some(&w), Link::Logit).unwrap();
    assert!(fit.warnings.contains(&PropensityWarning::NonIntegerSuccesses));
}
