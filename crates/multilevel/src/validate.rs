//! Checks of a model frame and prior weights shared by both fits, run before anything is computed: the
//! parts' lengths agree, level codes are in range and every value is finite, with the column and the
//! 1-based row at fault.

use psmeval_frame::ModelFrame;

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
    // One pass in memory order (the first row with a non-finite value, and its first such column).
    if let Some(((i, j), _)) = frame.x.indexed_iter().find(|(_, v)| !v.is_finite()) {
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
        if let Some(((i, c), _)) = rt.z.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(MixedModelError::NonFinite { what: format!("{} | {}", rt.names[c], rt.group), row: i + 1 });
        }
    }
    Ok(())
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
