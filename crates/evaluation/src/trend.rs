//! Descriptive statistics for clustered data: weighted means by cell (e.g. year × group) with
//! cluster-robust standard errors and 95% confidence intervals, for attainment-trend figures.
//!
//! The mean of cell c is the ratio estimator `ȳ = Σ w y / Σ w`. Its variance treats clusters (schools) as the
//! sampling units: `V = G/(G-1) · Σ_g (Σ_{i∈g} w_i (y_i − ȳ))² / (Σ w)²` with G clusters in the cell (the
//! CR1-style linearization used by survey software), and the interval is `ȳ ± t_{G−1, 0.975} · √V`.

use serde::{Deserialize, Serialize};

use crate::float::nan_if_null;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The mean of one cell with its clustered uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMean {
    /// The cell's key (e.g. year and group), as given.
    pub cell: (i64, bool),
    /// Weighted mean.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    /// Cluster-robust standard error (NaN with a single cluster).
    #[serde(deserialize_with = "nan_if_null")]
    pub std_error: f64,
    /// Lower end of the 95% interval.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_low: f64,
    /// Upper end of the 95% interval.
    #[serde(deserialize_with = "nan_if_null")]
    pub ci_high: f64,
    /// Observations in the cell.
    pub n: usize,
    /// Clusters in the cell.
    pub clusters: usize,
}

/// Weighted cell means with cluster-robust 95% intervals, one per distinct `(key, group)` pair, sorted by key
/// then group (false first). `cluster` holds cluster codes; `weights` may be `None` for unit weights.
pub fn clustered_means(
    y: &[f64],
    key: &[i64],
    group: &[bool],
    cluster: &[u32],
    weights: Option<&[f64]>,
) -> Vec<CellMean> {
    use std::collections::BTreeMap;
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let mut cells: BTreeMap<(i64, bool), Vec<usize>> = BTreeMap::new();
    for i in 0..y.len() {
        cells.entry((key[i], group[i])).or_default().push(i);
    }
    cells
        .into_iter()
        .map(|(cell, rows)| {
            let sw: f64 = rows.iter().map(|&i| w(i)).sum();
            let mean = rows.iter().map(|&i| w(i) * y[i]).sum::<f64>() / sw;
            let mut by_cluster: BTreeMap<u32, f64> = BTreeMap::new();
            for &i in &rows {
                *by_cluster.entry(cluster[i]).or_default() += w(i) * (y[i] - mean);
            }
            let g = by_cluster.len();
            let (std_error, half) = if g > 1 {
                let gf = g as f64;
                let v = gf / (gf - 1.0) * by_cluster.values().map(|s| s * s).sum::<f64>() / (sw * sw);
                let t = StudentsT::new(0.0, 1.0, gf - 1.0).map(|d| d.inverse_cdf(0.975)).unwrap_or(f64::NAN);
                (v.sqrt(), t * v.sqrt())
            } else {
                (f64::NAN, f64::NAN)
            };
            CellMean { cell, mean, std_error, ci_low: mean - half, ci_high: mean + half, n: rows.len(), clusters: g }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computation() {
        // Two clusters in one cell: y = (1, 3 | 5), unit weights. Mean 3; residual sums per cluster -2+0 = -2, 2.
        let out = clustered_means(&[1.0, 3.0, 5.0], &[1, 1, 1], &[true; 3], &[0, 0, 1], None);
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert!((c.mean - 3.0).abs() < 1e-12);
        // V = 2/1 * (4 + 4) / 9 = 16/9
        assert!((c.std_error - (16.0f64 / 9.0).sqrt()).abs() < 1e-12);
        // t_{1, .975} = 12.7062047
        assert!((c.ci_high - (3.0 + 12.706_204_736 * 4.0 / 3.0)).abs() < 1e-6);
        assert_eq!((c.n, c.clusters), (3, 2));
    }

    #[test]
    fn cells_are_sorted_and_weighted() {
        let out = clustered_means(
            &[1.0, 2.0, 10.0, 20.0],
            &[2014, 2013, 2013, 2013],
            &[false, false, true, true],
            &[0, 1, 2, 3],
            Some(&[1.0, 1.0, 3.0, 1.0]),
        );
        let keys: Vec<(i64, bool)> = out.iter().map(|c| c.cell).collect();
        assert_eq!(keys, [(2013, false), (2013, true), (2014, false)]);
        assert!((out[1].mean - 12.5).abs() < 1e-12);
        assert!(out[2].std_error.is_nan(), "single cluster has no SE");
    }
}
