//! Checks of a model frame and prior weights shared by both fits, run before anything is computed: the
//! parts' lengths agree, level codes are in range and every value is finite, with the column and the
//! 1-based row at fault.

use ndarray::Array2;
use psmeval_frame::ModelFrame;
use rayon::prelude::*;

use crate::error::MixedModelError;

/// The frame is non-empty, has a random-effects term, and its parts agree in size and are finite.
pub(crate) fn validate_frame(frame: &ModelFrame) -> Result<(), MixedModelError> {
    let n = frame.y.len();
    if n == 0 {
        return Err(MixedModelError::NoObservations);
    }
    if frame.random.is_empty() {
        return Err(MixedModelError::NoRandomTerms);
    }
    let dim = |what: &str, expected: usize, found: usize| {
        if expected != found {
            Err(MixedModelError::DimensionMismatch { what: what.to_string(), expected, found })
        } else {
            Ok(())
        }
    };
    dim("x rows", n, frame.x.nrows())?;
    dim("x_names", frame.x.ncols(), frame.x_names.len())?;
    if let Some(i) = frame.y.iter().position(|v| !v.is_finite()) {
        return Err(MixedModelError::NonFinite { what: frame.response_name.clone(), row: i + 1 });
    }
    if let Some((i, j)) = first_non_finite(&frame.x) {
        return Err(MixedModelError::NonFinite { what: frame.x_names[j].clone(), row: i + 1 });
    }
    for rt in &frame.random {
        if rt.levels.len() < 2 {
            return Err(MixedModelError::OneLevel { group: rt.group.clone(), levels: rt.levels.len() });
        }
        dim(&format!("codes of `{}`", rt.group), n, rt.codes.len())?;
        dim(&format!("z rows of `{}`", rt.group), n, rt.z.nrows())?;
        dim(&format!("names of `{}`", rt.group), rt.z.ncols(), rt.names.len())?;
        if let Some(i) = rt.codes.iter().position(|&c| c as usize >= rt.levels.len()) {
            return Err(MixedModelError::DimensionMismatch {
                what: format!("level code of `{}` at row {}", rt.group, i + 1),
                expected: rt.levels.len(),
                found: rt.codes[i] as usize,
            });
        }
        if let Some((i, c)) = first_non_finite(&rt.z) {
            return Err(MixedModelError::NonFinite { what: format!("{} | {}", rt.names[c], rt.group), row: i + 1 });
        }
    }
    Ok(())
}

/// The first (row, column) of `a` in row order holding a non-finite value, searched in parallel.
fn first_non_finite(a: &Array2<f64>) -> Option<(usize, usize)> {
    let p = a.ncols();
    match a.as_slice() {
        Some(s) if p > 0 => {
            const CHUNK: usize = 1 << 16;
            let c = s.par_chunks(CHUNK).position_first(|c| c.iter().any(|v| !v.is_finite()))?;
            let k = c * CHUNK + s[c * CHUNK..].iter().position(|v| !v.is_finite()).expect("in this chunk");
            Some((k / p, k % p))
        }
        _ => a.indexed_iter().find(|(_, v)| !v.is_finite()).map(|(ij, _)| ij),
    }
}

/// One prior weight per row, each positive and finite.
pub(crate) fn validate_weights(weights: &[f64], n: usize) -> Result<(), MixedModelError> {
    if weights.len() != n {
        return Err(MixedModelError::DimensionMismatch {
            what: "weights".to_string(),
            expected: n,
            found: weights.len(),
        });
    }
    match weights.iter().position(|w| !(w.is_finite() && *w > 0.0)) {
        Some(i) => Err(MixedModelError::NonPositiveWeight { row: i + 1, value: weights[i] }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parallel search finds the first non-finite value in row order, also past its first chunk and with
    /// a later one in an earlier-finishing chunk.
    #[test]
    fn first_non_finite_is_the_first_in_row_order() {
        let (n, p) = (100_000, 3);
        let mut a = Array2::<f64>::ones((n, p));
        assert_eq!(first_non_finite(&a), None);
        a[[90_000, 0]] = f64::INFINITY;
        a[[30_000, 2]] = f64::NAN;
        a[[30_001, 0]] = f64::NAN;
        assert_eq!(first_non_finite(&a), Some((30_000, 2)));
        // A matrix that is not in row-major memory order takes the general path, with the same answer.
        let t = a.t().to_owned();
        assert_eq!(first_non_finite(&t.t().to_owned()), Some((30_000, 2)));
        assert_eq!(first_non_finite(&t.reversed_axes()), Some((30_000, 2)));
    }
}
