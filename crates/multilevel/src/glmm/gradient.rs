//! The exact gradient in (θ, β) of the Laplace objective for a scalar random term, by implicit
//! differentiation of the mode equation; used by the Newton second stage and for the Hessian behind the standard
//! errors.

use rayon::prelude::*;

use super::pirls::GroupMode;
use super::problem::{Problem, logistic};

impl Problem {
    /// Gradient in (θ, β) of the Laplace objective of a scalar term at the modes (implicit differentiation
    /// of the mode equation; the penalized deviance is stationary in `u` there). Summed in level order.
    pub(super) fn laplace_gradient(&self, theta: f64, beta: &[f64], modes: &[GroupMode]) -> Vec<f64> {
        let p = self.p;
        let parts: Vec<Vec<f64>> = (0..self.n_groups())
            .into_par_iter()
            .map(|g| {
                let rows = self.starts[g]..self.starts[g + 1];
                let mut off = vec![0.0; rows.len()];
                self.group_offset(beta, g, &mut off);
                let u = modes[g].u[0];
                let (mut sxr, mut sxw1, mut sxw) = (vec![0.0; p], vec![0.0; p], vec![0.0; p]);
                let (mut s_rz, mut s_wz2, mut s_w1zl3, mut s_w1zl2z, mut s_wzlz, mut a) =
                    (0.0, 0.0, 0.0, 0.0, 0.0, 1.0);
                for (r, i) in rows.enumerate() {
                    let z = self.z[i];
                    let zl = theta * z;
                    let mu = logistic(off[r] + zl * u);
                    let wt = self.w[i] * mu * (1.0 - mu);
                    let w1 = wt * (1.0 - 2.0 * mu);
                    let res = self.w[i] * (self.y[i] - mu);
                    let xi = &self.x[i * p..(i + 1) * p];
                    let (c1, c2) = (w1 * zl * zl, wt * zl);
                    for k in 0..p {
                        sxr[k] += res * xi[k];
                        sxw1[k] += c1 * xi[k];
                        sxw[k] += c2 * xi[k];
                    }
                    s_rz += res * z;
                    s_wz2 += wt * z * z;
                    s_w1zl3 += c1 * zl;
                    s_w1zl2z += c1 * z;
                    s_wzlz += c2 * z;
                    a += c2 * zl;
                }
                let mut out = Vec::with_capacity(p + 1);
                let du_dth = (s_rz - u * s_wzlz) / a;
                out.push(-2.0 * u * s_rz + (2.0 * theta * s_wz2 + u * s_w1zl2z + s_w1zl3 * du_dth) / a);
                for k in 0..p {
                    out.push(-2.0 * sxr[k] + (sxw1[k] - s_w1zl3 * sxw[k] / a) / a);
                }
                out
            })
            .collect();
        let mut grad = vec![0.0; p + 1];
        for part in &parts {
            grad.iter_mut().zip(part).for_each(|(s, v)| *s += v);
        }
        grad
    }
}
