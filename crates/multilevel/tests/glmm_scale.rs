//! Speed of the Laplace fit at national scale: a random-intercept logistic model of 177,000 pupils in 987
//! schools (glmer took 394 s on this kind of machine). Release mode only:
//! `cargo test --release -p psmeval-multilevel --test glmm_scale -- --ignored --nocapture`.

use std::time::Instant;

use ndarray::Array2;
use psmeval_frame::{ModelFrame, RandomTerm};
use psmeval_multilevel::{GlmmOptions, MixedModel, fit_glmm};

/// A seeded linear congruential generator (test data only; no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

#[test]
#[ignore]
fn national_scale_random_intercept_logistic() {
    let (schools, n) = (987usize, 177_000usize);
    let mut rng = Lcg(20261122);
    let effects: Vec<f64> = (0..schools).map(|_| 0.5 * rng.normal()).collect();
    // 16 columns as in the national model (factor(year) * group + 5 covariates); GLMM_SCALE_P overrides.
    let p: usize = std::env::var("GLMM_SCALE_P").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let mut x = Array2::zeros((n, p));
    let mut y = Vec::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        let s = i * schools / n;
        x[[i, 0]] = 1.0;
        for k in 1..p.min(5) {
            x[[i, k]] = f64::from(rng.uniform() < 0.3);
        }
        for k in 5..p {
            x[[i, k]] = if k < 8 { rng.normal() } else { f64::from(rng.uniform() < 0.2) * x[[i, k % 4 + 1]] };
        }
        let slopes = [0.0, 0.3, -0.4, 0.1, -0.2, 0.8, -0.3, 0.1];
        let mut eta = -0.2 + effects[s];
        for k in 1..p {
            eta += if k < 8 { slopes[k] } else { 0.05 * (k as f64 - 12.0) } * x[[i, k]];
        }
        y.push(f64::from(rng.uniform() < 1.0 / (1.0 + (-eta).exp())));
        codes.push(s as u32);
    }
    let frame = ModelFrame {
        response_name: "y".into(),
        y,
        x,
        x_names: (0..p).map(|k| if k == 0 { "(Intercept)".into() } else { format!("x{k}") }).collect(),
        random: vec![RandomTerm {
            group: "school".into(),
            levels: (0..schools).map(|s| format!("s{s:04}")).collect(),
            codes,
            names: vec!["(Intercept)".into()],
            z: Array2::ones((n, 1)),
        }],
        rows: (0..n).collect(),
        n_dropped: 0,
    };
    let start = Instant::now();
    let no_hessian = fit_glmm(&frame, &GlmmOptions { use_hessian: false, ..GlmmOptions::default() }).unwrap();
    eprintln!(
        "without the Hessian (R_X SEs): {:.2} s, logLik {:.6}",
        start.elapsed().as_secs_f64(),
        no_hessian.log_likelihood()
    );
    let start = Instant::now();
    let fit = fit_glmm(&frame, &GlmmOptions::default()).unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "n = {n}, schools = {schools}: {secs:.2} s, {} evaluations, logLik {:.6}, theta {:.6}",
        fit.optimizer().evaluations,
        fit.log_likelihood(),
        fit.theta()[0]
    );
    assert!(fit.converged());
    assert!((fit.theta()[0] - 0.5).abs() < 0.1);
    assert!(secs < 3.94, "must be at least 100x faster than glmer's 394 s");
}
