//! Cluster-robust CR2 inference against R's clubSandwich 0.5.8 (`vcovCR(type = "CR2")`, `coef_test(test =
//! "Satterthwaite")`, `Wald_test(test = "HTZ")`) on lmer fits of shipped data sets. Expected values were written
//! by `tests/reference/cr2_reference.R` (run from `crates/multilevel`); the maths is in the module docs of
//! `psmeval_multilevel::robust`.
//!
//! Two levels of check:
//! - at lme4's own estimates (β̂, θ̂ from the JSON), psmeval's CR2 reproduces clubSandwich's numbers: vcov and
//!   SEs 1e-8 relative, Satterthwaite and HTZ df 1e-8, statistics and p values 1e-7 — this tests the CR2
//!   algorithm itself;
//! - with psmeval's own fits, SEs agree to 1e-6 relative and df to 1e-3 (the tolerances), which also
//!   covers the optimizer's distance from lme4's optimum.
//!
//! The weighted model has no clubSandwich value (clubSandwich refuses weighted lmer fits); its reference is
//! the extension with Θ_j = Z̃_jZ̃_j' + diag(1/w) computed densely by the R script, which equals clubSandwich's
//! `lme` method with `varFixed(~1/w)`.

use psmeval_frame::{Column, ModelFrame, Table, build_model_frame, parse_formula};
use psmeval_multilevel::{Cr2, LmmOptions, MixedModel, fit_lmm};
use serde_json::Value;

fn table(file: &str) -> Table {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(|s| s.trim_matches('"').to_string()).collect();
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(|s| s.to_string()).collect()).collect();
    let mut t = Table::new();
    for (k, h) in header.iter().enumerate() {
        let quoted = rows.iter().any(|r| r[k].starts_with('"'));
        let col = if quoted {
            Column::Text(rows.iter().map(|r| Some(r[k].trim_matches('"').to_string())).collect())
        } else {
            Column::Numeric(rows.iter().map(|r| r[k].parse().unwrap()).collect())
        };
        t.push(h.clone(), col).unwrap();
    }
    t
}

fn reference() -> Value {
    let path = format!("{}/tests/reference/cr2_reference.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(1e-12);
    assert!(err <= rel, "{what}: got {got}, clubSandwich {want}, relative error {err:e} > {rel:e}");
}

/// The model's frame, weights and cluster codes.
fn setup(m: &Value) -> (ModelFrame, Option<Vec<f64>>, Vec<u32>) {
    let data = table(m["data_file"].as_str().unwrap());
    let f = parse_formula(m["formula"].as_str().unwrap()).unwrap();
    let frame = build_model_frame(&f, &data).unwrap();
    let weights = m["weights"].as_str().map(|w| {
        let w = data.numeric(w).unwrap();
        frame.rows.iter().map(|&i| w[i]).collect()
    });
    let cluster = data.column(m["cluster"].as_str().unwrap()).unwrap();
    let labels: Vec<String> = frame.rows.iter().map(|&i| cluster.text_at(i).unwrap()).collect();
    let mut levels = labels.clone();
    levels.sort();
    levels.dedup();
    let codes = labels.iter().map(|l| levels.binary_search(l).unwrap() as u32).collect();
    (frame, weights, codes)
}

fn check(m: &Value, cr2: &Cr2, rel_se: f64, rel_df: f64, rel_p: f64) {
    let id = m["id"].as_str().unwrap();
    assert_eq!(cr2.n_clusters, m["n_clusters"].as_u64().unwrap() as usize, "{id}: clusters");
    let p = cr2.beta.len();
    let want_vcov: Vec<Vec<f64>> = m["vcov_cr2"].as_array().unwrap().iter().map(nums).collect();
    let fe = cr2.fixed_effects();
    for (k, f) in fe.iter().enumerate() {
        let term = &f.term;
        close(&format!("{id} {term} SE"), f.std_error, m["se_cr2"][k].as_f64().unwrap(), rel_se);
        close(&format!("{id} {term} df"), f.df.unwrap(), m["df_satt"][k].as_f64().unwrap(), rel_df);
        close(&format!("{id} {term} p"), f.p_value, m["p_satt"][k].as_f64().unwrap(), rel_p);
        for j in 0..p {
            let want = want_vcov[k][j];
            let scale = (want_vcov[k][k] * want_vcov[j][j]).sqrt();
            let err = (cr2.vcov[k * p + j] - want).abs() / scale;
            assert!(err <= rel_se, "{id} vcov[{k},{j}]: {} vs {want} ({err:e})", cr2.vcov[k * p + j]);
        }
    }
    for c in m["contrasts"].as_array().into_iter().flatten() {
        let name = format!("{id} contrast {}", c["name"].as_str().unwrap());
        let t = cr2.contrast(&nums(&c["L"])).unwrap();
        close(&format!("{name} SE"), t.std_error, c["se"].as_f64().unwrap(), rel_se);
        close(&format!("{name} df"), t.df.unwrap(), c["df"].as_f64().unwrap(), rel_df);
        if let Some(p) = c["p_val"].as_f64() {
            close(&format!("{name} p"), t.p_value, p, rel_p);
        }
    }
    for w in m["wald_htz"].as_array().into_iter().flatten() {
        let name = format!("{id} Wald {}", w["name"].as_str().unwrap());
        let c: Vec<Vec<f64>> = w["constraints"].as_array().unwrap().iter().map(nums).collect();
        let t = cr2.wald(&c).unwrap();
        assert_eq!(t.df_num, w["df_num"].as_u64().unwrap() as usize, "{name}");
        close(&format!("{name} Q"), t.q_statistic, w["Q"].as_f64().unwrap(), rel_se * 2.0);
        close(&format!("{name} F"), t.f_statistic, w["Fstat"].as_f64().unwrap(), rel_se * 2.0);
        close(&format!("{name} df"), t.df_den, w["df_den"].as_f64().unwrap(), rel_df);
        close(&format!("{name} p"), t.p_value, w["p_val"].as_f64().unwrap(), rel_p);
    }
}

#[test]
fn cr2_at_lme4_estimates_reproduces_club_sandwich() {
    let r = reference();
    for m in r["models"].as_array().unwrap() {
        let (frame, weights, cluster) = setup(m);
        let terms: Vec<String> =
            m["coef_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
        let cr2 = Cr2::at(&frame, &terms, &nums(&m["beta"]), &nums(&m["theta"]), weights.as_deref(), &cluster)
            .unwrap_or_else(|e| panic!("{}: {e}", m["id"]));
        check(m, &cr2, 1e-8, 1e-8, 1e-7);
    }
}

#[test]
fn cr2_of_psmeval_fits_matches_club_sandwich() {
    let r = reference();
    for m in r["models"].as_array().unwrap() {
        let (frame, weights, cluster) = setup(m);
        let opts = LmmOptions { reml: m["reml"].as_bool().unwrap(), weights: weights.clone(), ..LmmOptions::default() };
        let fit = fit_lmm(&frame, &opts).unwrap();
        let cr2 = Cr2::new(&frame, &fit, weights.as_deref(), &cluster).unwrap();
        let id = m["id"].as_str().unwrap();
        // The singular `schools` fit (θ = 0) sits on the boundary, where our optimum and lme4's agree only
        // to the optimizer's tolerance in θ.
        let rel = if id == "schools" { 1e-4 } else { 1e-6 };
        check(m, &cr2, rel, 1e-3, 1e-3);
        let _ = fit.log_likelihood();
    }
}

#[test]
fn clusters_must_hold_whole_groups() {
    let r = reference();
    let m = r["models"].as_array().unwrap().iter().find(|m| m["id"] == "nested_set").unwrap();
    let (frame, _, _) = setup(m);
    let fit = fit_lmm(&frame, &LmmOptions::default()).unwrap();
    // Clustering by pupil splits every school: refused, naming the grouping factor.
    let by_row: Vec<u32> = (0..frame.y.len() as u32).collect();
    let e = Cr2::new(&frame, &fit, None, &by_row).unwrap_err().to_string();
    assert!(e.contains("`school`"), "{e}");
    let one = vec![0u32; frame.y.len()];
    assert!(Cr2::new(&frame, &fit, None, &one).unwrap_err().to_string().contains("at least 2"));
}

/// One wild-bootstrap draw computed from the stored per-cluster quantities equals the brute-force draw: the
/// restricted bootstrap sample built row by row, refitted by GLS with θ fixed, and its CR2 t statistic.
#[test]
fn wild_bootstrap_draws_equal_brute_force_refits() {
    let r = reference();
    for id in ["did", "nested_set", "sleep_rs_weighted"] {
        let m = r["models"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap();
        let (frame, weights, cluster) = setup(m);
        let terms: Vec<String> =
            m["coef_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
        let theta = nums(&m["theta"]);
        let beta = nums(&m["beta"]);
        let cr2 = Cr2::at(&frame, &terms, &beta, &theta, weights.as_deref(), &cluster).unwrap();
        let p = beta.len();
        let mut l = vec![0.0; p];
        l[p - 1] = 1.0;
        let c = 0.3 * beta[p - 1];
        let n_clusters = cr2.n_clusters;
        let w: Vec<f64> = (0..n_clusters).map(|j| if (j * 7 + 3) % 5 < 2 { -1.0 } else { 1.0 }).collect();
        let fast = cr2.bootstrap_t(&l, c, &w);
        // Brute force. GLS with θ fixed: a Cr2 at β = 0 has h_j = X_j'Θ_j⁻¹y_j, so M Σ h_j is the GLS estimate.
        let gls = |y: &[f64]| -> Vec<f64> {
            let mut f = frame.clone();
            f.y = y.to_vec();
            let at0 = Cr2::at(&f, &terms, &vec![0.0; p], &theta, weights.as_deref(), &cluster).unwrap();
            at0.gls_estimate()
        };
        let beta_hat = gls(&frame.y);
        for k in 0..p {
            assert!(
                (beta_hat[k] - beta[k]).abs() < 1e-6 * beta[k].abs().max(1.0),
                "{id}: GLS at lme4's θ gives lme4's β"
            );
        }
        let x_cols: Vec<usize> = terms.iter().map(|t| frame.x_names.iter().position(|n| n == t).unwrap()).collect();
        // β̃ = argmin GLS subject to L'β = c: β̂ − M L (L'ML)⁻¹(L'β̂ − c); M L from the bread.
        let ml = cr2.bread_times(&l);
        let lml: f64 = l.iter().zip(&ml).map(|(a, b)| a * b).sum();
        let est: f64 = l.iter().zip(&beta_hat).map(|(a, b)| a * b).sum();
        let beta_r: Vec<f64> = beta_hat.iter().zip(&ml).map(|(b, m)| b - m * (est - c) / lml).collect();
        let fitted_r: Vec<f64> = (0..frame.y.len())
            .map(|i| x_cols.iter().zip(&beta_r).map(|(&col, b)| frame.x[[i, col]] * b).sum())
            .collect();
        let mut codes: Vec<u32> = cluster.clone();
        codes.sort_unstable();
        codes.dedup();
        let y_star: Vec<f64> = (0..frame.y.len())
            .map(|i| fitted_r[i] + w[codes.binary_search(&cluster[i]).unwrap()] * (frame.y[i] - fitted_r[i]))
            .collect();
        let beta_star = gls(&y_star);
        let mut f = frame.clone();
        f.y = y_star;
        let star = Cr2::at(&f, &terms, &beta_star, &theta, weights.as_deref(), &cluster).unwrap();
        let t = star.contrast(&l).unwrap();
        let brute = (t.estimate - c) / t.std_error;
        assert!((fast - brute).abs() < 1e-8 * brute.abs().max(1.0), "{id}: fast draw {fast} vs brute force {brute}");
    }
}

#[test]
fn wild_bootstrap_is_deterministic_and_brackets_the_estimate() {
    let r = reference();
    let m = r["models"].as_array().unwrap().iter().find(|m| m["id"] == "did").unwrap();
    let (frame, _, cluster) = setup(m);
    let fit = fit_lmm(&frame, &LmmOptions::default()).unwrap();
    let cr2 = Cr2::new(&frame, &fit, None, &cluster).unwrap();
    let mut l = vec![0.0; cr2.beta.len()];
    l[6] = 1.0; // factor(period)2:g
    let a = cr2.wild_bootstrap(&l, 999, psmeval_multilevel::BootstrapWeights::Webb, 42).unwrap();
    let b = cr2.wild_bootstrap(&l, 999, psmeval_multilevel::BootstrapWeights::Webb, 42).unwrap();
    assert_eq!(a, b);
    let est = cr2.beta[6];
    assert!(a.ci_low < est && est < a.ci_high, "{a:?}");
    assert!((0.0..=1.0).contains(&a.p_value));
    // The bootstrap p value is close to the CR2 t test's (about 0.13 here) and the interval contains 0.
    assert!(a.p_value > 0.03 && a.p_value < 0.4 && a.ci_low < 0.0, "{a:?}");
    assert!(cr2.wild_bootstrap(&l, 50, psmeval_multilevel::BootstrapWeights::Rademacher, 1).is_err());
}
