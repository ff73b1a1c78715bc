//! Scale: the sizes of the issue's MatchIt timings, on skewed synthetic scores (treated units crowd the top
//! of the score range, so controls there are used up and MatchIt's position-by-position walk degrades).
//!
//! The default test runs a 200,000-unit skewed problem in every order (a quadratic matcher would not finish
//! in test time). The `#[ignore]`d benchmark runs the issue's sizes and prints timings; run it in release:
//! `cargo test --release -p psmeval-matching --test nearest_scale -- --ignored --nocapture`.
//! Results are recorded in `benches/matching/README.md`.

use std::time::Instant;

use psmeval_matching::matches::Problem;
use psmeval_matching::nearest::{NearestOptions, Order, nearest};
use psmeval_matching::optimal::{OptimalOptions, optimal};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Propensity scores: logit ~ N(shift, 1) for treated units, N(0, 1) for controls (Box–Muller).
fn skewed(n: usize, treated_share: f64, shift: f64, seed: u64) -> (Vec<f64>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut d = Vec::with_capacity(n);
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let treated = rng.random::<f64>() < treated_share;
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let eta = z + if treated { shift } else { 0.0 };
        d.push(1.0 / (1.0 + (-eta).exp()));
        t.push(treated);
    }
    (d, t)
}

#[test]
fn skewed_200k_every_order() {
    let (d, t) = skewed(200_000, 0.2, 1.5, 1);
    let problem = Problem::new(&d, &t);
    for order in [Order::Largest, Order::Smallest, Order::Data, Order::Random, Order::Closest] {
        for ratio in [1, 3] {
            let m = nearest(&problem, &NearestOptions { ratio, order, ..NearestOptions::default() }).unwrap();
            m.check(&problem).unwrap();
            assert!(m.unmatched_treated.is_empty());
        }
    }
    let m = nearest(&problem, &NearestOptions { ratio: 3, replace: true, ..NearestOptions::default() }).unwrap();
    m.check(&problem).unwrap();
}

fn time<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    println!("{label}: {:.2} s", start.elapsed().as_secs_f64());
    out
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn bench_issue_sizes() {
    println!("threads: {}", rayon::current_num_threads());
    for (n, share, shift, ratio, replace, label) in [
        (300_000usize, 0.2, 1.0, 3usize, false, "n=300,000 (≈60,000 treated) ratio 3, no replacement"),
        (1_000_000, 0.2, 1.0, 3, false, "n=1,000,000 (≈200,000 treated) ratio 3, no replacement"),
        (10_000_000, 0.1, 1.5, 1, false, "n=10,000,000 skewed (≈1,000,000 treated) 1:1, no replacement"),
        (10_000_000, 0.1, 1.5, 1, true, "n=10,000,000 skewed 1:1, with replacement"),
    ] {
        let (d, t) = skewed(n, share, shift, 7);
        let problem = Problem::new(&d, &t);
        for order in [Order::Largest, Order::Closest] {
            if replace && order == Order::Closest {
                continue;
            }
            let m = time(&format!("{label}, m.order {order:?}"), || {
                nearest(&problem, &NearestOptions { ratio, replace, order, ..NearestOptions::default() }).unwrap()
            });
            println!(
                "    matched treated {}, controls {}, unmatched {}",
                m.n_treated_matched(),
                m.n_controls_matched(&t),
                m.unmatched_treated.len()
            );
        }
    }
    for n in [4_000usize, 20_000] {
        let (d, t) = skewed(n, 0.2, 1.0, 9);
        let problem = Problem::new(&d, &t);
        time(&format!("optimal pair matching, n={n} (20% treated)"), || {
            optimal(&problem, &OptimalOptions::pair()).unwrap()
        });
    }
}
