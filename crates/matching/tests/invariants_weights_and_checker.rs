//! Weights against MatchIt's weight functions, the invariant checker against corrupted results, and
//! determinism (same seed, any thread count: identical output).
//!
//! Reference weights: `tests/reference/nearest_scores.json`, computed by `nearest_scores.R` with MatchIt's
//! `weights.subclass(mm2subclass(mm))` (without replacement) and `weights.matrix(mm)` (with replacement) on
//! MatchIt's own ratio-3 snapshot match matrices, normalized as `matchit(normalize = TRUE)`. Our matched
//! sets equal those matrices (see `nearest_matchit_snapshots.rs`), so the weights must agree to 1e-12.

use ndarray::Array2;
use psmeval_matching::matches::{InvariantError, MatchedSet, Problem, att_weights};
use psmeval_matching::nearest::{Caliper, NearestOptions, Order, nearest};
use psmeval_matching::support::Discard;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/nearest_scores.json"))
        .expect("reference JSON");
    serde_json::from_str(&text).unwrap()
}

fn nums(v: &Value, k: &str) -> Vec<f64> {
    v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn weights_equal_matchit_weight_functions() {
    let v = reference();
    let ps = nums(&v, "ps");
    let treat: Vec<bool> = nums(&v, "treat").iter().map(|&t| t == 1.0).collect();
    let problem = Problem::new(&ps, &treat);
    for (replace, key) in [(false, "weights_ratio3_norep"), (true, "weights_ratio3_rep")] {
        let m = nearest(&problem, &NearestOptions { ratio: 3, replace, ..NearestOptions::default() }).unwrap();
        m.check(&problem).unwrap();
        let want = nums(&v, key);
        for (i, (g, w)) in m.weights.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-12, "{key}: unit {i}: {g} vs {w}");
        }
    }
}

#[test]
fn weights_by_hand() {
    // Units 0, 3 treated; 1, 2, 4 controls.
    let treat = [true, false, false, true, false];
    let with_replacement =
        [MatchedSet { treated: 0, controls: vec![1, 2] }, MatchedSet { treated: 3, controls: vec![2] }];
    // Raw: c1 = 1/2, c2 = 1/2 + 1 = 3/2; two nonzero controls summing to 2: unchanged.
    assert_eq!(att_weights(&treat, &with_replacement), vec![1.0, 0.5, 1.5, 1.0, 0.0]);
    let without = [MatchedSet { treated: 0, controls: vec![1, 2] }, MatchedSet { treated: 3, controls: vec![4] }];
    // Raw: 1/2, 1/2, 1; three controls summing to 2: scaled by 3/2.
    assert_eq!(att_weights(&treat, &without), vec![1.0, 0.75, 0.75, 1.0, 1.5]);
}

fn small_problem() -> (Vec<f64>, Vec<bool>) {
    let d = vec![0.1, 0.2, 0.35, 0.5, 0.52, 0.7, 0.71, 0.9, 0.3, 0.65];
    let treat = vec![true, false, false, true, false, true, false, false, true, false];
    (d, treat)
}

#[test]
fn checker_rejects_corrupted_results() {
    let (d, treat) = small_problem();
    let problem = Problem::new(&d, &treat);
    let good =
        nearest(&problem, &NearestOptions { caliper: Some(Caliper::Raw(0.2)), ..NearestOptions::default() }).unwrap();
    good.check(&problem).unwrap();

    let mut reused = good.clone();
    let c = reused.sets[0].controls[0];
    reused.sets[1].controls = vec![c];
    reused.weights = att_weights(&treat, &reused.sets);
    assert!(matches!(
        reused.check(&problem),
        Err(InvariantError::ControlReused { .. } | InvariantError::Subclass { .. })
    ));

    let mut wide = good.clone();
    let far = (0..d.len())
        .filter(|&i| !treat[i])
        .max_by(|&a, &b| (d[a] - d[wide.sets[0].treated]).abs().total_cmp(&(d[b] - d[wide.sets[0].treated]).abs()));
    wide.sets[0].controls = vec![far.unwrap()];
    assert!(matches!(wide.check(&problem), Err(InvariantError::Caliper { .. })));

    let mut weights = good.clone();
    weights.weights[weights.sets[0].controls[0]] *= 1.01;
    assert!(matches!(weights.check(&problem), Err(InvariantError::Weight { .. })));

    let mut silent = good.clone();
    silent.unmatched_treated.clear();
    silent.sets.pop();
    assert!(silent.check(&problem).is_err());

    let cells = [0u32, 0, 1, 0, 0, 1, 1, 0, 1, 0];
    let mut exact_problem = problem;
    exact_problem.exact = Some(&cells);
    let exact = nearest(&exact_problem, &NearestOptions::default()).unwrap();
    exact.check(&exact_problem).unwrap();
    // Swap the controls of two sets in different cells.
    let mut crossed = exact.clone();
    let t = crossed.sets[0].treated;
    let j = crossed.sets.iter().position(|s| cells[s.treated] != cells[t]).unwrap();
    let (a, b) = (crossed.sets[0].controls[0], crossed.sets[j].controls[0]);
    crossed.sets[0].controls[0] = b;
    crossed.sets[j].controls[0] = a;
    crossed.weights = att_weights(&treat, &crossed.sets);
    assert!(matches!(crossed.check(&exact_problem), Err(InvariantError::Exact { .. })));
}

#[test]
fn unmatched_treated_are_reported() {
    let (d, treat) = small_problem();
    let problem = Problem::new(&d, &treat);
    // Caliper 0.01 in raw units: only unit 3 (0.5) has a control (4, at 0.52)? no: 0.02 > 0.01; unit 5 (0.7)
    // has 6 (0.71) at 0.01: inclusive.
    let m =
        nearest(&problem, &NearestOptions { caliper: Some(Caliper::Raw(0.01 + 1e-15)), ..NearestOptions::default() })
            .unwrap();
    m.check(&problem).unwrap();
    assert_eq!(m.sets, vec![MatchedSet { treated: 5, controls: vec![6] }]);
    assert_eq!(m.unmatched_treated, vec![0, 3, 8]);
    // Discarded treated units are not "unmatched": they are reported in `discarded`.
    let m = nearest(&problem, &NearestOptions { discard: Discard::Control, ..NearestOptions::default() }).unwrap();
    m.check(&problem).unwrap();
    assert!(m.discarded[7]);
    // More controls needed than available: a diagnostic, not an error.
    let m = nearest(&problem, &NearestOptions { ratio: 3, ..NearestOptions::default() }).unwrap();
    m.check(&problem).unwrap();
    assert!(m.controls_short);
    assert_eq!(m.sets.iter().map(|s| s.controls.len()).sum::<usize>(), 6);
}

#[test]
fn same_seed_same_output_whatever_the_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 5000;
    let d: Vec<f64> = (0..n).map(|_| (rng.random::<f64>() * 100.0).floor() / 100.0).collect();
    let treat: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < 0.2).collect();
    let x = Array2::from_shape_fn((n, 3), |_| rng.random::<f64>());
    let mut problem = Problem::new(&d, &treat);
    problem.mahvars = Some(x.view());
    let run = |threads: usize, opts: &NearestOptions, p: &Problem<'_>| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| nearest(p, opts).unwrap())
    };
    let plain = Problem::new(&d, &treat);
    for opts in [
        NearestOptions { order: Order::Random, seed: 42, ratio: 2, ..NearestOptions::default() },
        NearestOptions { replace: true, ratio: 3, caliper: Some(Caliper::Sd(0.2)), ..NearestOptions::default() },
    ] {
        for p in [&plain, &problem] {
            let a = run(1, &opts, p);
            let b = run(2, &opts, p);
            a.check(p).unwrap();
            assert_eq!(a, b);
        }
    }
    let a = nearest(&plain, &NearestOptions { order: Order::Random, seed: 1, ..NearestOptions::default() }).unwrap();
    let b = nearest(&plain, &NearestOptions { order: Order::Random, seed: 2, ..NearestOptions::default() }).unwrap();
    assert_ne!(a.sets, b.sets, "different seeds should give different random orders here");
}

#[test]
fn mahalanobis_results_satisfy_invariants() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for rep in 0..30 {
        let n = 200;
        let d: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let treat: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < 0.3).collect();
        let x = Array2::from_shape_fn((n, 2), |_| (rng.random::<f64>() * 5.0).floor());
        let cells: Vec<u32> = (0..n).map(|_| rng.random_range(0..2u32)).collect();
        let mut problem = Problem::new(&d, &treat);
        problem.mahvars = Some(x.view());
        if rep % 2 == 0 {
            problem.exact = Some(&cells);
        }
        let opts = NearestOptions {
            ratio: 1 + rep % 3,
            replace: rep % 4 == 1,
            caliper: (rep % 3 == 0).then_some(Caliper::Sd(0.3)),
            order: [Order::Largest, Order::Data, Order::Smallest][rep % 3],
            ..NearestOptions::default()
        };
        let m = nearest(&problem, &opts).unwrap();
        m.check(&problem).unwrap();
    }
}
