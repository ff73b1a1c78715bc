//! Optimal matching: exhaustive search on tiny problems and comparison with greedy matching.
//!
//! - Tiny problems (≤ 3 treated, ≤ 6 controls, seeded, with ties, calipers and exact cells): the number of
//!   pairs must equal the maximum possible and the total distance the minimum among maximum matchings,
//!   found by enumerating every assignment; tolerance 1e-12 on the total.
//! - Larger problems: with no caliper and enough controls both methods match `ratio · n₁` pairs, and the
//!   optimal total is never larger than the greedy one (tolerance 1e-9); with a caliper optimal matching
//!   never matches fewer pairs than greedy.
//!
//! Every result passes `Matches::check`.

use psmeval_matching::matches::Problem;
use psmeval_matching::nearest::{Caliper, MatchError, NearestOptions, Order, nearest};
use psmeval_matching::optimal::{OptimalOptions, optimal};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// (max pairs, min total among max) by enumerating each control's treated unit (or none).
fn exhaustive(d: &[f64], treat: &[bool], exact: Option<&[u32]>, width: Option<f64>, ratio: usize) -> (usize, f64) {
    let t: Vec<usize> = (0..d.len()).filter(|&i| treat[i]).collect();
    let c: Vec<usize> = (0..d.len()).filter(|&i| !treat[i]).collect();
    let base = t.len() + 1;
    let total = base.pow(c.len() as u32);
    let mut best = (0usize, 0.0f64);
    'outer: for code in 0..total {
        let mut x = code;
        let mut load = vec![0usize; t.len()];
        let (mut pairs, mut cost) = (0usize, 0.0);
        for &cj in &c {
            let a = x % base;
            x /= base;
            if a == 0 {
                continue;
            }
            let ti = t[a - 1];
            let diff = (d[ti] - d[cj]).abs();
            if width.is_some_and(|w| diff > w) || exact.is_some_and(|e| e[ti] != e[cj]) {
                continue 'outer;
            }
            load[a - 1] += 1;
            if load[a - 1] > ratio {
                continue 'outer;
            }
            pairs += 1;
            cost += diff;
        }
        if pairs > best.0 || (pairs == best.0 && cost < best.1) {
            best = (pairs, cost);
        }
    }
    best
}

fn pairs(m: &psmeval_matching::matches::Matches) -> usize {
    m.sets.iter().map(|s| s.controls.len()).sum()
}

#[test]
fn optimal_equals_exhaustive_search_on_tiny_problems() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut checked = 0;
    for rep in 0..400 {
        let nt = 1 + rep % 3;
        let nc = 2 + rep % 5;
        let mut treat = vec![true; nt];
        treat.extend(vec![false; nc]);
        let d: Vec<f64> = (0..nt + nc).map(|_| (rng.random::<f64>() * 6.0).floor() / 6.0).collect();
        let exact: Option<Vec<u32>> = (rep % 4 == 1).then(|| (0..nt + nc).map(|_| rng.random_range(0..2u32)).collect());
        let caliper = [None, Some(1.0 / 6.0), Some(0.4)][rep % 3];
        for ratio in [1, 2] {
            let mut problem = Problem::new(&d, &treat);
            problem.exact = exact.as_deref();
            let opts = OptimalOptions { ratio, caliper: caliper.map(Caliper::Raw), ..OptimalOptions::default() };
            let want = exhaustive(&d, &treat, exact.as_deref(), caliper, ratio);
            match optimal(&problem, &opts) {
                Ok(m) => {
                    m.check(&problem).unwrap();
                    assert_eq!(pairs(&m), want.0, "rep {rep} ratio {ratio}");
                    assert!(
                        (m.total_distance(&d) - want.1).abs() <= 1e-12,
                        "rep {rep}: {} vs {}",
                        m.total_distance(&d),
                        want.1
                    );
                    checked += 1;
                }
                Err(MatchError::NothingMatched) | Err(MatchError::NoCommonCell) => assert_eq!(want.0, 0, "rep {rep}"),
                Err(e) => panic!("rep {rep}: {e}"),
            }
        }
    }
    assert!(checked > 600, "{checked}");
}

#[test]
fn optimal_is_never_worse_than_greedy() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for rep in 0..40 {
        let n = [30, 80, 200][rep % 3];
        let d: Vec<f64> = (0..n).map(|_| (rng.random::<f64>() * 50.0).floor() / 50.0).collect();
        let treat: Vec<bool> = (0..n).map(|i| i % 5 == 0 || (i % 7 == 0 && rng.random::<f64>() < 0.5)).collect();
        let n1 = treat.iter().filter(|&&t| t).count();
        let n0 = n - n1;
        let problem = Problem::new(&d, &treat);
        for ratio in [1, 2, 3] {
            for order in [Order::Largest, Order::Smallest, Order::Closest, Order::Data] {
                let g = nearest(&problem, &NearestOptions { ratio, order, ..NearestOptions::default() }).unwrap();
                let o = optimal(&problem, &OptimalOptions { ratio, ..OptimalOptions::default() }).unwrap();
                o.check(&problem).unwrap();
                g.check(&problem).unwrap();
                if n0 >= ratio * n1 {
                    assert_eq!(pairs(&g), ratio * n1);
                    assert_eq!(pairs(&o), ratio * n1);
                    assert!(o.total_distance(&d) <= g.total_distance(&d) + 1e-9, "rep {rep} ratio {ratio} {order:?}");
                }
                let cal = Some(Caliper::Sd(0.1));
                let g = nearest(&problem, &NearestOptions { ratio, order, caliper: cal, ..NearestOptions::default() });
                let o = optimal(&problem, &OptimalOptions { ratio, caliper: cal, ..OptimalOptions::default() });
                if let (Ok(g), Ok(o)) = (g, o) {
                    o.check(&problem).unwrap();
                    assert!(pairs(&o) >= pairs(&g), "rep {rep} ratio {ratio} {order:?}");
                }
            }
        }
    }
}
