//! Reference-value tests of logistic GLMMs with several random-effects terms against lme4's glmer (Laplace):
//! two nested designs (pupils in schools in authorities, Chem97, real data; pupils in school-years in schools,
//! simulated as the evaluation's design, also with a random slope on year in the school term) and one crossed
//! design (pupils by primary and secondary school, simulated), and lme4's cbpp with binomial totals and an
//! observation-level term for overdispersion. Data and expected values were written by
//! `tests/reference/glmer_multiterm_reference.R` (run from `crates/multilevel`); CI needs no R.
//!
//! Tolerances, as the single-term glmer tests (`glmm_reference.rs`) and for the same reasons: glmer's
//! log-likelihood, objective, AIC and BIC 5e-6 relative (glmer evaluates log|L|² with the weights of its
//! penultimate PIRLS iterate, we at the converged modes); the deviance at the modes 1e-4 relative (one part
//! of the objective, which moves at first order with the parameters: 1.1e-5 on cbpp's 56 rows); fixed
//! effects 1e-5 (scaled by max(1, |β|)); θ,
//! variances and correlations 1e-4; conditional modes within 1e-3 conditional SDs and conditional SDs 1e-4;
//! standard errors from the finite-difference Hessian (step 1e-4, both programs) 1e-3 relative, from `R_X`
//! 1e-4.
//!
//! The reference fits run glmer with `tolPwrss = 1e-11`. With its default 1e-7, glmer's PIRLS stops early and
//! evaluates log|L|² with the weights of the penultimate iterate, which moves its optimum: against the tight
//! fits (measured on these data) logLik by up to 3.0e-6 relative, β by 3.8e-4, θ by 6.6e-4 and Hessian SEs by
//! 4.6e-3 (Chem97 and the crossed design; 1e-4 or less on the cohort designs). psmeval's PIRLS runs to
//! convergence, so it agrees with the tight fits to the tolerances above and with the default ones within
//! those measured gaps, which `check_default` asserts (logLik 5e-6, β and θ 1e-3, SEs 1e-2).

use psmeval_frame::{binomial_counts, build_model_frame, parse_formula};
use psmeval_multilevel::{GlmmFit, GlmmOptions, MixedModel, MixedModelError, fit_glmm};
use serde_json::Value;

mod common;
use common::{WORST, close, close_rel, nums, read_table};

const LL_TOL: f64 = 1e-6;

fn reference(key: &str) -> Value {
    let path = format!("{}/tests/reference/glmer_multiterm_reference.json", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("reference json")).expect("json");
    v[key].clone()
}

fn fit(data: &str, formula: &str, use_hessian: bool) -> GlmmFit {
    let table = read_table(data);
    let f = parse_formula(formula).unwrap();
    let frame = build_model_frame(&f, &table).unwrap();
    // Binomial totals as prior weights for a `cbind(successes, failures)` response.
    let weights = formula.starts_with("cbind").then(|| binomial_counts(&f, &table, &frame.rows).unwrap().1);
    let opts = GlmmOptions { use_hessian, weights, ..GlmmOptions::default() };
    let fit = fit_glmm(&frame, &opts).unwrap_or_else(|e| panic!("{data}: {e}"));
    assert!(fit.converged(), "{data}: {:?} {:?}", fit.diagnostics, fit.optimizer());
    fit
}

/// Compares a fit with glmer's at the tolerances of the module comment; `se_key` is `se_hessian` or `se_rx`.
fn check(key: &str, fit: &GlmmFit, se_key: &str) {
    let r = reference(key);
    let tag = |s: &str| format!("{key} {s}");
    close_rel(&tag("logLik"), fit.glmer_log_likelihood, r["logLik"].as_f64().unwrap(), LL_TOL);
    close_rel(&tag("criterion"), fit.criterion, r["devfun_value"].as_f64().unwrap(), LL_TOL);
    close_rel(&tag("AIC"), fit.aic(), r["AIC"].as_f64().unwrap(), LL_TOL);
    close_rel(&tag("BIC"), fit.bic(), r["BIC"].as_f64().unwrap(), LL_TOL);
    close_rel(&tag("deviance"), fit.deviance, r["deviance"].as_f64().unwrap(), 1e-4);
    assert_eq!(fit.singular(), r["singular"].as_bool().unwrap(), "{key} singular");
    let theta = nums(&r["theta"]);
    assert_eq!(fit.theta().len(), theta.len());
    for (k, (g, w)) in fit.theta().iter().zip(&theta).enumerate() {
        close(&tag(&format!("theta[{k}]")), *g, *w, 1e-4);
    }
    let names: Vec<String> = r["beta_names"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().into()).collect();
    let (beta, se) = (nums(&r["beta"]), nums(&r[se_key]));
    let se_tol = if se_key == "se_hessian" { 1e-3 } else { 1e-4 };
    assert_eq!(fit.fixed_effects().len(), names.len());
    for (j, fe) in fit.fixed_effects().iter().enumerate() {
        assert_eq!(fe.term, names[j], "{key} column names");
        close(&tag(&format!("beta {}", fe.term)), fe.estimate, beta[j], 1e-5);
        close_rel(&tag(&format!("SE {}", fe.term)), fe.std_error, se[j], se_tol);
    }
    let vc: Vec<&Value> = r["varcomp"].as_array().unwrap().iter().collect();
    let variances: Vec<&Value> = vc.iter().copied().filter(|v| v["var2"].is_null()).collect();
    assert_eq!(variances.len(), fit.variance_components().len(), "{key} number of variance components");
    for (got, want) in fit.variance_components().iter().zip(&variances) {
        assert_eq!(got.group, want["group"].as_str().unwrap(), "{key} group order");
        assert_eq!(got.term.as_deref(), want["var1"].as_str(), "{key} term");
        close(&tag(&format!("variance {}", got.group)), got.variance, want["vcov"].as_f64().unwrap(), 1e-4);
    }
    let cors: Vec<&Value> = vc.iter().copied().filter(|v| !v["var2"].is_null()).collect();
    assert_eq!(cors.len(), fit.correlations().len());
    for (got, want) in fit.correlations().iter().zip(&cors) {
        close(&tag("correlation"), got.correlation, want["sdcor"].as_f64().unwrap(), 1e-4);
    }
    let mut seen = 0;
    for want in r["ranef"].as_array().unwrap() {
        let group = want["group"].as_str().unwrap();
        let got = fit.ranef().iter().find(|t| t.group == group).unwrap_or_else(|| panic!("{key}: no term {group}"));
        let values = want["values"].as_array().unwrap();
        let sds = want["cond_sd"].as_array().unwrap();
        for (li, level) in want["levels"].as_array().unwrap().iter().enumerate() {
            let level = level.as_str().unwrap();
            let j = got.levels.iter().position(|l| l == level).unwrap_or_else(|| panic!("{key}: level {level}"));
            let (want_v, want_sd) = (nums(&values[li]), nums(&sds[li]));
            for c in 0..want_v.len() {
                let err = (got.modes[j][c] - want_v[c]).abs() / want_sd[c].max(1e-8);
                assert!(err < 1e-3, "{key} ranef {group} {level}[{c}]: {} vs {}", got.modes[j][c], want_v[c]);
                close(&tag(&format!("condSD {group} {level}")), got.cond_sd[j][c], want_sd[c], 1e-4);
            }
            seen += 1;
        }
    }
    assert!(seen > 0);
    WORST.with(|w| eprintln!("{key}: worst errors against glmer: {:#?}", w.borrow()));
}

/// The fit against glmer with its default PIRLS tolerance (`<key>_default`), within the measured gap.
fn check_default(key: &str, fit: &GlmmFit) {
    let r = reference(&format!("{key}_default"));
    let tag = |s: &str| format!("{key}_default {s}");
    close_rel(&tag("logLik"), fit.glmer_log_likelihood, r["logLik"].as_f64().unwrap(), 5e-6);
    for (k, (g, w)) in fit.theta().iter().zip(&nums(&r["theta"])).enumerate() {
        close(&tag(&format!("theta[{k}]")), *g, *w, 1e-3);
    }
    let (beta, se) = (nums(&r["beta"]), nums(&r["se_hessian"]));
    for (j, fe) in fit.fixed_effects().iter().enumerate() {
        close(&tag(&format!("beta {}", fe.term)), fe.estimate, beta[j], 1e-3);
        if fit.se_from_hessian {
            close_rel(&tag(&format!("SE {}", fe.term)), fe.std_error, se[j], 1e-2);
        }
    }
}

#[test]
fn nested_pass_in_schools_in_authorities_chem97() {
    let formula = "pass ~ gcsecnt + (1 | lea) + (1 | lea:school)";
    let f = fit("chem97_pass", formula, true);
    assert_eq!(f.groups().len(), 2);
    assert_eq!(f.icc(), None);
    check("chem97_pass", &f, "se_hessian");
    check_default("chem97_pass", &f);
    check("chem97_pass", &fit("chem97_pass", formula, false), "se_rx");
}

#[test]
fn nested_cohorts_school_and_school_by_year() {
    let f = fit("cohorts_bin", "y ~ post * treated + prior + (1 | school) + (1 | school:year)", true);
    check("cohorts_bin", &f, "se_hessian");
    check_default("cohorts_bin", &f);
}

#[test]
fn nested_cohorts_with_a_random_slope_on_year() {
    let f = fit("cohorts_bin", "y ~ post * treated + prior + (1 + yr | school) + (1 | school:year)", true);
    check("cohorts_bin_slope", &f, "se_hessian");
    check_default("cohorts_bin_slope", &f);
}

#[test]
fn crossed_primary_by_secondary() {
    let f = fit("feeder_bin", "y ~ x + (1 | primary) + (1 | secondary)", true);
    check("feeder_bin", &f, "se_hessian");
    check_default("feeder_bin", &f);
}

/// Binomial totals as weights and an observation-level term for overdispersion (one level per row), nested in
/// herds: lme4's cbpp example.
#[test]
fn binomial_totals_with_an_observation_level_term_cbpp() {
    let f = fit("cbpp_obs", "cbind(incidence, failures) ~ period + (1 | herd) + (1 | obs)", true);
    check("cbpp_obs", &f, "se_hessian");
    check_default("cbpp_obs", &f);
}

/// A nested binary model fitted with its terms written in the other order gives the same fit (lme4's term
/// order is by number of levels); adaptive quadrature with several terms is refused by name, as glmer refuses
/// it; a term over a constant column is named.
#[test]
fn term_order_and_quadrature_with_several_terms() {
    let table = read_table("cohorts_bin");
    let a = build_model_frame(&parse_formula("y ~ prior + (1 | school) + (1 | school:year)").unwrap(), &table).unwrap();
    let b = build_model_frame(&parse_formula("y ~ prior + (1 | school:year) + (1 | school)").unwrap(), &table).unwrap();
    let opts = GlmmOptions { use_hessian: false, ..GlmmOptions::default() };
    let (fa, fb) = (fit_glmm(&a, &opts).unwrap(), fit_glmm(&b, &opts).unwrap());
    assert_eq!(fa.ranef()[0].group, "school:year");
    assert_eq!(fa.criterion, fb.criterion);
    assert_eq!(fa.beta(), fb.beta());
    let err = fit_glmm(&a, &GlmmOptions { nagq: 5, ..GlmmOptions::default() }).unwrap_err();
    assert!(matches!(err, MixedModelError::NotYetSupported { .. }), "{err}");
    assert!(err.to_string().contains("nagq = 1"), "{err}");
    // A nested term over a constant column: one level, named.
    let mut table = table;
    let n = table.n_rows();
    table.push("nation", psmeval_frame::Column::Text(vec![Some("England".into()); n])).unwrap();
    let c = build_model_frame(&parse_formula("y ~ prior + (1 | school) + (1 | nation)").unwrap(), &table).unwrap();
    assert_eq!(fit_glmm(&c, &opts).unwrap_err(), MixedModelError::OneLevel { group: "nation".into(), levels: 1 });
}

/// The second stage of a multi-term fit takes Newton steps on the exact gradient (after BOBYQA in θ), and the
/// fit is the same to the bit on one thread as on several (row sums run over fixed chunks added in order).
#[test]
fn newton_stage_and_the_same_bits_on_any_number_of_threads() {
    let table = read_table("cohorts_bin");
    let formula = "y ~ post * treated + prior + (1 | school) + (1 | school:year)";
    let frame = build_model_frame(&parse_formula(formula).unwrap(), &table).unwrap();
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| fit_glmm(&frame, &GlmmOptions::default()).unwrap())
    };
    let (one, two) = (on(1), on(2));
    let opt = one.optimizer();
    assert_eq!(opt.optimizer, "BOBYQA, then Newton", "{opt:?}");
    assert!(opt.runs.last().is_some_and(|r| r.converged && r.objective == one.criterion), "{opt:?}");
    assert!(one.se_from_hessian && !one.diagnostics.hessian_not_positive_definite);
    assert_eq!(one.criterion.to_bits(), two.criterion.to_bits());
    for (a, b) in one.fixed_effects().iter().zip(two.fixed_effects()) {
        assert_eq!((a.estimate.to_bits(), a.std_error.to_bits()), (b.estimate.to_bits(), b.std_error.to_bits()));
    }
    assert_eq!(one.ranef(), two.ranef());
}

/// Responses with less variation between schools and between cohorts than chance (every third pupil of each
/// school-year is 1): both variances are estimated at zero, the fit converges and says it is singular, and its
/// fixed effects are the plain logistic regression's (Fisher scoring here).
#[test]
fn zero_variances_give_a_singular_fit_and_the_logistic_regression() {
    let table = read_table("cohorts_bin");
    let formula = "y ~ prior + (1 | school) + (1 | school:year)";
    let mut frame = build_model_frame(&parse_formula(formula).unwrap(), &table).unwrap();
    // Rows are in school-year order, 12 pupils each.
    frame.y.iter_mut().enumerate().for_each(|(i, y)| *y = if i % 3 == 0 { 1.0 } else { 0.0 });
    let f = fit_glmm(&frame, &GlmmOptions::default()).unwrap();
    assert!(f.singular() && f.converged(), "{:?}", f.optimizer());
    assert!(f.theta().iter().all(|t| t.abs() < 1e-3), "{:?}", f.theta());
    let (n, p) = frame.x.dim();
    let mut beta = vec![0.0; p];
    for _ in 0..30 {
        let (mut info, mut score) = ([0.0; 4], [0.0; 2]);
        for i in 0..n {
            let x = [frame.x[[i, 0]], frame.x[[i, 1]]];
            let mu = 1.0 / (1.0 + (-(x[0] * beta[0] + x[1] * beta[1])).exp());
            for a in 0..2 {
                score[a] += x[a] * (frame.y[i] - mu);
                for b in 0..2 {
                    info[a * 2 + b] += mu * (1.0 - mu) * x[a] * x[b];
                }
            }
        }
        let det = info[0] * info[3] - info[1] * info[2];
        beta[0] += (info[3] * score[0] - info[1] * score[1]) / det;
        beta[1] += (info[0] * score[1] - info[2] * score[0]) / det;
    }
    for (fe, b) in f.fixed_effects().iter().zip(&beta) {
        close(&format!("beta {}", fe.term), fe.estimate, *b, 1e-6);
    }
}
