//! Balance on small inputs whose statistics are computed by hand, MatchIt's special cases (binary
//! variables, negligible differences, too-small groups, zero treated SD), other SD denominators, and every
//! error path. Tolerance 1e-12 (exact arithmetic on a handful of numbers).

use ndarray::{Array2, array};
use psmeval_matching::balance::{BalanceError, BalanceOptions, SdDenominator, balance, balance_with, ess};

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

// Treated: x = 1, 2, 3 (b = 1, 0, 1); controls: x = 2, 4, 6, 8 (b = 0, 0, 1, 0).
fn data() -> (Array2<f64>, Vec<String>, Vec<bool>) {
    let x = array![[1., 1.], [2., 0.], [3., 1.], [2., 0.], [4., 0.], [6., 1.], [8., 0.]];
    (x, names(&["x", "b"]), vec![true, true, true, false, false, false, false])
}

#[test]
fn hand_computed_full_sample() {
    let (x, n, t) = data();
    let tab = balance(x.view(), &n, &t, None).unwrap();
    let r = &tab.rows[0];
    assert!(close(r.mean_treated, 2.0) && close(r.mean_control, 5.0));
    // Treated SD = 1 (sample variance of 1, 2, 3).
    assert!(close(r.smd.unwrap(), -3.0));
    // Var ratio: 1 / var(2, 4, 6, 8) = 1 / (20/3).
    assert!(close(r.var_ratio.unwrap(), 3.0 / 20.0));
    // eCDFs at the distinct values 1, 2, 3, 4, 6, 8: F1 = 1/3, 2/3, 1, 1, 1, 1; F0 = 0, 1/4, 1/4, 1/2, 3/4, 1.
    let d = [1. / 3., 2. / 3. - 0.25, 0.75, 0.5, 0.25, 0.0];
    assert!(close(r.ecdf_mean, d.iter().sum::<f64>() / 6.0), "{}", r.ecdf_mean);
    assert!(close(r.ecdf_max, 0.75));
    assert!(!r.binary);
    // Binary: standardized by sqrt(p(1 − p)) of the treated (MatchIt does not report binary raw).
    let b = &tab.rows[1];
    assert!(b.binary && b.var_ratio.is_none());
    let (p1, p0): (f64, f64) = (2.0 / 3.0, 0.25);
    assert!(close(b.smd.unwrap(), (p1 - p0) / (p1 * (1.0 - p1)).sqrt()));
    assert!(close(b.ecdf_mean, p1 - p0) && close(b.ecdf_max, p1 - p0));
    assert_eq!((tab.n.treated.all, tab.n.control.all, tab.n.control.matched), (3, 4, 4));
    assert!(close(tab.n.treated.matched_ess, 3.0));
}

#[test]
fn weights_zero_units_still_define_ecdf_points() {
    let (x, n, t) = data();
    // Control 8 unmatched; control 2 weight 2.
    let w = [1., 1., 1., 2., 1., 1., 0.];
    let disc = [false, false, false, false, false, false, true];
    let opts = BalanceOptions { discarded: Some(&disc), ..BalanceOptions::default() };
    let tab = balance_with(x.view(), &n, &t, Some(&w), &opts).unwrap();
    let r = &tab.rows[0];
    assert!(close(r.mean_control, (4.0 + 4.0 + 6.0) / 4.0));
    // Same denominator as before matching (treated SD in the full sample = 1).
    assert!(close(r.smd.unwrap(), 2.0 - 3.5));
    // F0 at 1, 2, 3, 4, 6, 8 = 0, 1/2, 1/2, 3/4, 1, 1 (8 has weight 0 but is still a point).
    let d = [1. / 3., 2. / 3. - 0.5, 0.5, 0.25, 0.0, 0.0];
    assert!(close(r.ecdf_mean, d.iter().sum::<f64>() / 6.0));
    assert_eq!((tab.n.control.matched, tab.n.control.unmatched, tab.n.control.discarded), (3, 0, 1));
    assert!(close(tab.n.control.matched_ess, 16.0 / 6.0));
    assert!(close(ess([2.0, 1.0, 1.0].into_iter()), 16.0 / 6.0));
}

#[test]
fn negligible_difference_is_reported_raw_and_zero_sd_falls_back_to_pooled() {
    let x = array![[5., 1.], [5., 2.], [5., 3.], [5., 1.], [9., 2.], [1., 3.]];
    let t = [true, true, true, false, false, false];
    let tab = balance(x.view(), &names(&["const_t", "same_mean"]), &t, None).unwrap();
    // Means equal (5 vs 5, 2 vs 2): a difference below sqrt(eps) is reported raw (0), not standardized.
    assert_eq!(tab.rows[0].smd, Some(0.0));
    assert_eq!(tab.rows[1].smd, Some(0.0));
    // A real difference with zero treated SD: MatchIt falls back to pooled_sd(contribution =
    // "proportional"): centre within groups, weighted variance with the reliability correction.
    let x = array![[5.], [5.], [5.], [1.], [2.], [3.]];
    let tab = balance(x.view(), &names(&["c"]), &t, None).unwrap();
    let w = 1.0 / 6.0;
    let c = [0., 0., 0., -1., 0., 1.];
    let pooled = (c.iter().map(|v| w * v * v).sum::<f64>() / (1.0 - 6.0 * w * w)).sqrt();
    assert!(close(tab.rows[0].smd.unwrap(), 3.0 / pooled), "{:?}", tab.rows[0].smd);
}

#[test]
fn too_small_groups_give_na() {
    let (x, n, t) = data();
    let w = [1., 0., 0., 1., 0., 0., 0.];
    let tab = balance(x.view(), &n, &t, Some(&w)).unwrap();
    let r = &tab.rows[0];
    assert!(close(r.mean_treated, 1.0) && close(r.mean_control, 2.0));
    assert_eq!(r.smd, None);
    assert_eq!(r.var_ratio, None);
    assert!(r.ecdf_mean.is_nan() && r.ecdf_max.is_nan());
    // Binary eCDF is still the difference in proportions.
    assert!(close(tab.rows[1].ecdf_max, 1.0));
}

#[test]
fn control_and_pooled_denominators() {
    let (x, n, t) = data();
    let c = balance_with(
        x.view(),
        &n,
        &t,
        None,
        &BalanceOptions { sd_denominator: SdDenominator::Control, ..Default::default() },
    )
    .unwrap();
    assert!(close(c.rows[0].smd.unwrap(), -3.0 / (20.0_f64 / 3.0).sqrt()));
    let p = balance_with(
        x.view(),
        &n,
        &t,
        None,
        &BalanceOptions { sd_denominator: SdDenominator::Pooled, ..Default::default() },
    )
    .unwrap();
    assert!(close(p.rows[0].smd.unwrap(), -3.0 / ((1.0 + 20.0 / 3.0) / 2.0_f64).sqrt()));
    assert_eq!(p.sd_denominator, SdDenominator::Pooled);
}

#[test]
fn errors_name_what_is_wrong() {
    let (mut x, n, t) = data();
    assert!(matches!(
        balance(x.view(), &n, &t[..6], None),
        Err(BalanceError::LengthMismatch { what: "treat", expected: 7, found: 6 })
    ));
    assert!(matches!(balance(x.view(), &n[..1], &t, None), Err(BalanceError::LengthMismatch { what: "names", .. })));
    let w = [1., 1., 1., 1., -2., 1., 1.];
    assert_eq!(
        balance(x.view(), &n, &t, Some(&w)).unwrap_err(),
        BalanceError::InvalidWeight { sampling: false, row: 4, value: -2.0 }
    );
    let sw = [1., 1., f64::NAN, 1., 1., 1., 1.];
    let e = balance_with(x.view(), &n, &t, None, &BalanceOptions { sampling_weights: Some(&sw), ..Default::default() })
        .unwrap_err();
    assert!(matches!(e, BalanceError::InvalidWeight { sampling: true, row: 2, .. }));
    let w = [0., 0., 0., 1., 1., 1., 1.];
    assert_eq!(balance(x.view(), &n, &t, Some(&w)).unwrap_err(), BalanceError::EmptyGroup { treated: true });
    assert_eq!(balance(x.view(), &n, &[true; 7], None).unwrap_err(), BalanceError::EmptyGroup { treated: false });
    x[[5, 1]] = f64::NAN;
    let e = balance(x.view(), &n, &t, None).unwrap_err();
    assert!(matches!(e, BalanceError::NonFiniteCovariate { ref term, row: 5, .. } if term == "b"), "{e}");
    assert!(e.to_string().contains("`b`") && e.to_string().contains("row 5"));
}

#[test]
fn before_and_after_together_equal_the_separate_tables() {
    use psmeval_matching::balance::balance_before_after;
    // Ties, signed zeros, a binary column, zero matching weights, sampling weights and discarded units.
    let n = 400;
    let mut x = Array2::<f64>::zeros((n, 3));
    let (mut t, mut w, mut sw, mut disc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let u = ((i * 7919) % 997) as f64 / 997.0;
        x[[i, 0]] = (u * 10.0).round() / 10.0 - 0.5;
        x[[i, 1]] = if i % 5 == 0 {
            -0.0
        } else if i % 5 == 1 {
            0.0
        } else {
            (u * 4.0).round()
        };
        x[[i, 2]] = f64::from(u8::from(u > 0.4));
        t.push(i % 4 == 0);
        w.push(if i % 3 == 0 { 0.0 } else { 1.0 + (i % 5) as f64 / 4.0 });
        sw.push(0.5 + (i % 7) as f64 / 7.0);
        disc.push(i % 11 == 0 && w[i] == 0.0);
    }
    let nm = names(&["x", "z", "b"]);
    for denom in [SdDenominator::Treated, SdDenominator::Control, SdDenominator::Pooled] {
        for sampling in [None, Some(&sw[..])] {
            let opts = BalanceOptions { sd_denominator: denom, sampling_weights: sampling, discarded: Some(&disc) };
            let (before, after) = balance_before_after(x.view(), &nm, &t, &w, &opts).unwrap();
            let before_opts = BalanceOptions { discarded: None, ..opts };
            assert_eq!(before, balance_with(x.view(), &nm, &t, None, &before_opts).unwrap());
            assert_eq!(after, balance_with(x.view(), &nm, &t, Some(&w), &opts).unwrap());
        }
    }
    // The checks of the separate calls apply.
    let e = balance_before_after(x.view(), &nm, &t, &w[1..], &BalanceOptions::default()).unwrap_err();
    assert!(matches!(e, BalanceError::LengthMismatch { what: "weights", .. }), "{e:?}");
}

#[test]
fn errors_come_in_a_fixed_order_lengths_weights_covariates_groups() {
    use psmeval_matching::balance::balance_before_after;
    let (mut x, n, t) = data();
    x[[0, 0]] = f64::NAN;
    let bad_w = vec![-1.0; 7];
    let opts = BalanceOptions::default();
    // A bad weight is reported before a non-finite covariate, by both entry points.
    let e = balance_with(x.view(), &n, &t, Some(&bad_w), &opts).unwrap_err();
    assert!(matches!(e, BalanceError::InvalidWeight { sampling: false, .. }), "{e:?}");
    let e = balance_before_after(x.view(), &n, &t, &bad_w, &opts).unwrap_err();
    assert!(matches!(e, BalanceError::InvalidWeight { sampling: false, .. }), "{e:?}");
    // A non-finite covariate before an empty group.
    let zero = vec![0.0; 7];
    let e = balance_with(x.view(), &n, &t, Some(&zero), &opts).unwrap_err();
    assert!(matches!(e, BalanceError::NonFiniteCovariate { .. }), "{e:?}");
}
