//! National-scale behaviour of the propensity fit: results identical whatever the number of threads,
//! estimates consistent with the simulating model, and (ignored by default) a 10-million-row timing.

use ndarray::Array2;
use psmeval_matching::propensity::{Link, PropensityFit, fit_binomial_glm};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// n units, intercept + (p − 1) covariates (normal-ish, one binary, one skewed), logit model.
fn simulate(n: usize, p: usize, seed: u64) -> (Array2<f64>, Vec<String>, Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let beta: Vec<f64> = (0..p)
        .map(|j| if j == 0 { -1.0 } else { 0.5 / (j as f64).sqrt() * if j % 2 == 0 { -1.0 } else { 1.0 } })
        .collect();
    let mut x = Array2::zeros((n, p));
    let mut y = vec![0.0; n];
    for i in 0..n {
        x[[i, 0]] = 1.0;
        for j in 1..p {
            let u: f64 = (0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0;
            x[[i, j]] = match j {
                1 => f64::from(u8::from(u > 0.0)),
                2 => u.exp(),
                _ => u,
            };
        }
        let eta: f64 = (0..p).map(|j| x[[i, j]] * beta[j]).sum();
        y[i] = f64::from(u8::from(rng.random::<f64>() < 1.0 / (1.0 + (-eta).exp())));
    }
    let names = std::iter::once("(Intercept)".to_string()).chain((1..p).map(|j| format!("x{j}"))).collect();
    (x, names, y, beta)
}

fn fit_with_threads(t: usize, x: &Array2<f64>, names: &[String], y: &[f64]) -> PropensityFit {
    rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .build()
        .unwrap()
        .install(|| fit_binomial_glm(x.view(), names, y, None, Link::Logit).unwrap())
}

#[test]
fn identical_results_whatever_the_thread_count() {
    let (x, names, y, _) = simulate(50_000, 15, 7);
    let one = fit_with_threads(1, &x, &names, &y);
    let two = fit_with_threads(2, &x, &names, &y);
    let four = fit_with_threads(4, &x, &names, &y);
    assert!(one.converged);
    // Bit-identical, not merely close.
    assert_eq!(one, two);
    assert_eq!(one, four);
}

#[test]
fn estimates_are_consistent_with_the_simulating_model() {
    let (x, names, y, beta) = simulate(100_000, 8, 11);
    let fit = fit_binomial_glm(x.view(), &names, &y, None, Link::Logit).unwrap();
    assert!(fit.converged && fit.warnings.is_empty(), "{:?}", fit.warnings);
    for (j, c) in fit.coefficients.iter().enumerate() {
        let truth = beta[j];
        assert!(
            (c.estimate - truth).abs() < 5.0 * c.std_error,
            "{}: {} vs {truth} (se {})",
            c.term,
            c.estimate,
            c.std_error
        );
    }
}

/// `cargo test --release -p psmeval-matching --test propensity_scale -- --ignored --nocapture`
#[test]
#[ignore = "10 million rows: about 1.3 GB and tens of seconds"]
fn ten_million_rows() {
    let (x, names, y, _) = simulate(10_000_000, 15, 3);
    let t = std::time::Instant::now();
    let fit = fit_binomial_glm(x.view(), &names, &y, None, Link::Logit).unwrap();
    eprintln!("10,000,000 × 15: {} iterations in {:.1} s", fit.iterations, t.elapsed().as_secs_f64());
    assert!(fit.converged);
}
