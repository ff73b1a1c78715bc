//! The penalized weighted least-squares system in (u, β) at the current modes, reduced to β: per-level
//! factors `A_g = I + Λ'Z_g'W_gZ_gΛ` and the Schur complement `X'WX − Σ B_g' A_g⁻¹ B_g` (its Cholesky factor is
//! glmer's `R_X`) with its right-hand side.

use rayon::prelude::*;

use super::problem::{Problem, logistic};
use crate::dense::{chol_solve, cholesky};

/// Per-group factors, and the Schur complement `X'WX - Σ B_g' A_g⁻¹ B_g` with its right-hand side.
#[allow(clippy::type_complexity)]
pub(super) fn schur_system(
    pr: &Problem,
    lam: &[f64],
    off: &[f64],
    u: &[Vec<f64>],
) -> (Vec<f64>, Vec<f64>, Vec<(Vec<f64>, Vec<f64>, Vec<f64>)>) {
    let (p, q) = (pr.p, pr.q);
    let parts: Vec<(Vec<f64>, Vec<f64>, (Vec<f64>, Vec<f64>, Vec<f64>))> = (0..pr.n_groups())
        .into_par_iter()
        .map(|g| {
            let mut zl = vec![0.0; q];
            let mut a = vec![0.0; q * q];
            for d in 0..q {
                a[d * q + d] = 1.0;
            }
            let mut gu: Vec<f64> = u[g].iter().map(|v| -v).collect();
            let mut b = vec![0.0; q * p];
            let mut c = vec![0.0; p * p];
            let mut gb = vec![0.0; p];
            let rows = pr.starts[g]..pr.starts[g + 1];
            for (i, &o) in rows.clone().zip(&off[rows]) {
                pr.zl(lam, i, &mut zl);
                let eta = o + zl.iter().zip(&u[g]).map(|(a, b)| a * b).sum::<f64>();
                let mu = logistic(eta);
                let wt = pr.w[i] * mu * (1.0 - mu);
                let r = pr.w[i] * (pr.y[i] - mu);
                let xi = &pr.x[i * p..(i + 1) * p];
                for cc in 0..q {
                    gu[cc] += zl[cc] * r;
                    for d in 0..q {
                        a[cc * q + d] += wt * zl[cc] * zl[d];
                    }
                    for k in 0..p {
                        b[cc * p + k] += wt * zl[cc] * xi[k];
                    }
                }
                // Lower triangle only (the Cholesky reads no more); mirrored below.
                for k in 0..p {
                    gb[k] += xi[k] * r;
                    let wx = wt * xi[k];
                    for (cm, &xm) in c[k * p..k * p + k + 1].iter_mut().zip(xi) {
                        *cm += wx * xm;
                    }
                }
            }
            let ok = cholesky(&mut a, q);
            if !ok {
                a.iter_mut().for_each(|v| *v = f64::NAN);
            }
            // Subtract B' A⁻¹ B and B' A⁻¹ g_u.
            let mut ainv_b = b.clone();
            for k in 0..p {
                let mut col: Vec<f64> = (0..q).map(|cc| b[cc * p + k]).collect();
                chol_solve(&a, q, &mut col);
                for cc in 0..q {
                    ainv_b[cc * p + k] = col[cc];
                }
            }
            for k in 0..p {
                for m in 0..=k {
                    c[k * p + m] -= (0..q).map(|cc| b[cc * p + k] * ainv_b[cc * p + m]).sum::<f64>();
                    c[m * p + k] = c[k * p + m];
                }
                gb[k] -= (0..q).map(|cc| ainv_b[cc * p + k] * gu[cc]).sum::<f64>();
            }
            (c, gb, (a, gu, b))
        })
        .collect();
    let mut schur = vec![0.0; p * p];
    let mut rhs = vec![0.0; p];
    let mut blocks = Vec::with_capacity(parts.len());
    for (c, gb, blk) in parts {
        schur.iter_mut().zip(&c).for_each(|(s, c)| *s += c);
        rhs.iter_mut().zip(&gb).for_each(|(s, c)| *s += c);
        blocks.push(blk);
    }
    (schur, rhs, blocks)
}
