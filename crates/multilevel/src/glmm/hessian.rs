//! Finite-difference second derivatives of the objective in (θ, β) for the standard errors: central
//! differences of the exact gradient (scalar Laplace), or of the objective itself as lme4's `deriv12`.

use rayon::prelude::*;

/// Symmetrized central finite-difference Jacobian of the gradient `g` at `x` with step `delta`: a Hessian
/// from 2k gradient evaluations (each column independent, so they run in parallel; the result does not
/// depend on the thread count). `g` is as in [`fd_columns`].
pub(super) fn fd_jacobian<S>(
    g: &(impl Fn(&[f64], usize, Option<&S>) -> (Vec<f64>, S) + Sync),
    x: &[f64],
    delta: f64,
) -> Vec<f64> {
    let k = x.len();
    let cols = fd_columns(g, x, delta, k);
    let mut h = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            h[i * k + j] = 0.5 * (cols[j][i] + cols[i][j]);
        }
    }
    h
}

/// The first `ncols` columns of the central finite-difference Jacobian of `g` at `x` (2 `ncols` gradient
/// evaluations, in parallel). `g(y, j, hint)` returns the gradient at `y = x ± δe_j` and a hint for the point
/// mirrored through `x` (where the conditional modes should start, say); the `x − δe_j` evaluation gets the
/// hint of the `x + δe_j` one, the `x + δe_j` evaluation none.
pub(super) fn fd_columns<S>(
    g: &(impl Fn(&[f64], usize, Option<&S>) -> (Vec<f64>, S) + Sync),
    x: &[f64],
    delta: f64,
    ncols: usize,
) -> Vec<Vec<f64>> {
    (0..ncols)
        .into_par_iter()
        .map(|j| {
            let mut v = x.to_vec();
            v[j] = x[j] + delta;
            let (ga, hint) = g(&v, j, None);
            v[j] = x[j] - delta;
            let (gs, _) = g(&v, j, Some(&hint));
            ga.iter().zip(&gs).map(|(a, s)| (a - s) / (2.0 * delta)).collect()
        })
        .collect()
}

/// Central finite-difference Hessian of `f` at `x` with step `delta` (as lme4's `deriv12`).
pub(super) fn fd_hessian(f: &mut impl FnMut(&[f64]) -> f64, x: &[f64], delta: f64) -> Vec<f64> {
    let k = x.len();
    let fx = f(x);
    let mut h = vec![0.0; k * k];
    let at = |f: &mut dyn FnMut(&[f64]) -> f64, d: &[(usize, f64)]| {
        let mut v = x.to_vec();
        for &(i, s) in d {
            v[i] += s;
        }
        f(&v)
    };
    for j in 0..k {
        let fa = at(f, &[(j, delta)]);
        let fs = at(f, &[(j, -delta)]);
        h[j * k + j] = (fa - 2.0 * fx + fs) / (delta * delta);
        for i in 0..j {
            let v = (at(f, &[(i, delta), (j, delta)])
                - at(f, &[(i, delta), (j, -delta)])
                - at(f, &[(i, -delta), (j, delta)])
                + at(f, &[(i, -delta), (j, -delta)]))
                / (4.0 * delta * delta);
            h[i * k + j] = v;
            h[j * k + i] = v;
        }
    }
    h
}

/// [`fd_hessian`] with the 2k² evaluations run in parallel (each independent of the others, so the result does
/// not depend on the thread count).
pub(super) fn fd_hessian_par(f: &(impl Fn(&[f64]) -> f64 + Sync), x: &[f64], delta: f64) -> Vec<f64> {
    let k = x.len();
    // The points: x, x ± δe_j, and x + (±δe_i) + (±δe_j) for i < j.
    let mut points: Vec<Vec<(usize, f64)>> = vec![Vec::new()];
    for j in 0..k {
        points.push(vec![(j, delta)]);
        points.push(vec![(j, -delta)]);
        for i in 0..j {
            for (si, sj) in [(delta, delta), (delta, -delta), (-delta, delta), (-delta, -delta)] {
                points.push(vec![(i, si), (j, sj)]);
            }
        }
    }
    let values: Vec<f64> = points
        .par_iter()
        .map(|d| {
            let mut v = x.to_vec();
            for &(i, s) in d {
                v[i] += s;
            }
            f(&v)
        })
        .collect();
    let fx = values[0];
    let mut h = vec![0.0; k * k];
    let mut at = 1;
    for j in 0..k {
        let (fa, fs) = (values[at], values[at + 1]);
        at += 2;
        h[j * k + j] = (fa - 2.0 * fx + fs) / (delta * delta);
        for i in 0..j {
            let v = (values[at] - values[at + 1] - values[at + 2] + values[at + 3]) / (4.0 * delta * delta);
            at += 4;
            h[i * k + j] = v;
            h[j * k + i] = v;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Each column's `x − δe_j` evaluation gets the hint of its `x + δe_j` one, the `x + δe_j` none; the
    /// Jacobian of a linear gradient is its matrix.
    #[test]
    fn minus_points_get_the_plus_points_hints() {
        let a = [[2.0, 0.5, 0.0], [0.5, 1.0, -0.25], [0.0, -0.25, 3.0]];
        let seen = Mutex::new(Vec::new());
        let x = [0.3, -0.2, 1.0];
        let g = |y: &[f64], j: usize, hint: Option<&Vec<f64>>| {
            assert!((0..3).all(|i| (i == j) != (y[i] == x[i])), "column {j} is the one moved");
            seen.lock().unwrap().push((y.to_vec(), hint.cloned()));
            let grad: Vec<f64> = a.iter().map(|r| r.iter().zip(y).map(|(a, y)| a * y).sum()).collect();
            (grad, y.to_vec())
        };
        let h = fd_jacobian(&g, &x, 1e-3);
        for i in 0..3 {
            for j in 0..3 {
                assert!((h[i * 3 + j] - a[i][j]).abs() < 1e-9);
            }
        }
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 6);
        for (y, hint) in &seen {
            let j = (0..3).find(|&j| y[j] != x[j]).unwrap();
            if y[j] > x[j] {
                assert!(hint.is_none());
            } else {
                let mut plus = x.to_vec();
                plus[j] = x[j] + 1e-3;
                assert_eq!(hint.as_ref(), Some(&plus));
            }
        }
    }
}
