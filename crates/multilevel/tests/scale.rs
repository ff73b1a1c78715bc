//! National-scale timing: a random-intercept model (and a random intercept + slope model) with 2.8 million
//! pupils in 16,000 schools, generated here with a seeded SplitMix64 + Box–Muller. Ignored by default; run with
//! `cargo test --release -p psmeval-multilevel --test scale -- --ignored --nocapture`.
//! The check is that the known generating parameters are recovered (tolerances from their sampling error).

use std::time::Instant;

use ndarray::Array2;
use psmeval_frame::{ModelFrame, RandomTerm};
use psmeval_multilevel::{LmmOptions, MixedModel, fit_lmm};

/// SplitMix64 with Box–Muller normals: deterministic, dependency-free.
#[derive(Debug)]
struct Gen(u64);

impl Gen {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn national(slope: bool) -> ModelFrame {
    let (schools, n) = (16_000usize, 2_800_000usize);
    let mut g = Gen(20261122);
    let u0: Vec<f64> = (0..schools).map(|_| 3.0 * g.normal()).collect();
    let u1: Vec<f64> = (0..schools).map(|_| 0.5 * g.normal()).collect();
    let mut y = Vec::with_capacity(n);
    let mut x = Array2::zeros((n, 2));
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        let s = i % schools;
        let xi = g.normal();
        x[[i, 0]] = 1.0;
        x[[i, 1]] = xi;
        let re = u0[s] + if slope { u1[s] * xi } else { 0.0 };
        y.push(50.0 + 2.0 * xi + re + 10.0 * g.normal());
        codes.push(s as u32);
    }
    let (names, z) = if slope {
        (vec!["(Intercept)".to_string(), "x".to_string()], x.clone())
    } else {
        (vec!["(Intercept)".to_string()], Array2::ones((n, 1)))
    };
    let levels = (0..schools).map(|s| format!("{s:05}")).collect();
    ModelFrame {
        response_name: "y".into(),
        y,
        x,
        x_names: vec!["(Intercept)".into(), "x".into()],
        random: vec![RandomTerm { group: "school".into(), levels, codes, names, z }],
        rows: (0..n).collect(),
        n_dropped: 0,
    }
}

#[test]
#[ignore = "national scale: run in release mode"]
fn national_scale_random_intercept_and_slope() {
    for slope in [false, true] {
        let frame = national(slope);
        let t = Instant::now();
        let fit = fit_lmm(&frame, &LmmOptions::default()).unwrap();
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "slope={slope}: {:.2} s, {} evaluations, theta {:?}, sigma {:.4}, beta {:?}, df {:?}",
            secs,
            fit.optimizer().evaluations,
            fit.theta(),
            fit.sigma,
            fit.beta(),
            fit.fixed_effects().iter().map(|f| f.df).collect::<Vec<_>>()
        );
        assert!(fit.converged());
        assert!((fit.sigma - 10.0).abs() < 0.03);
        assert!((fit.beta()[1] - 2.0).abs() < 0.03);
        assert!((fit.variance_components()[0].std_dev - 3.0).abs() < 0.1);
    }
}
