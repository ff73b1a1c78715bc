//! Design matrices: a parsed [`Formula`] applied to a [`Table`] gives a
//! [`ModelFrame`] with the response, the fixed-effects matrix `X` (R's column names and treatment
//! contrasts) and the random-effects terms (grouping factor codes and per-term model matrices).

use std::borrow::Cow;
use std::collections::HashMap;

use ndarray::Array2;
use rayon::prelude::*;
use thiserror::Error;

use crate::formula::{Formula, FormulaError, Response, TermList, Var};
use crate::table::{Column, Table, TableError, format_number};

/// One random-effects term of a mixed model, as lme4 builds it from `(expr | group)`.
///
/// For a term with `q` columns (`(1 + x | g)` has q = 2) the random effects of level `j` are a q-vector
/// `b_j ~ N(0, sigma^2 Lambda Lambda')` with `Lambda` lower triangular (unstructured covariance). An
/// uncorrelated term `(1 + x || g)` is expanded by the formula layer into separate terms `(1 | g)` and
/// `(0 + x | g)`, exactly as lme4 does, so every `RandomTerm` has an unstructured covariance.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomTerm {
    /// The grouping factor's name as written (`school_id`, or `a:b` for an interaction / nesting).
    pub group: String,
    /// Level labels, sorted as R sorts factor levels; `codes` index into this.
    pub levels: Vec<String>,
    /// For each observation (row of the frame), the index of its level in `levels`.
    pub codes: Vec<u32>,
    /// Column names of the term's model matrix, as R prints them (`(Intercept)`, `year`).
    pub names: Vec<String>,
    /// The term's model matrix: n rows × q columns (`z[[i, k]]` multiplies `b_{codes[i], k}`).
    pub z: Array2<f64>,
}

/// A fully built model frame: everything a (mixed) model needs, with R's names.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFrame {
    /// The response's name as written on the left of `~`.
    pub response_name: String,
    /// Response, one value per used row.
    pub y: Vec<f64>,
    /// Fixed-effects model matrix: n × p.
    pub x: Array2<f64>,
    /// Column names of `x` as R prints them: `(Intercept)`, `factor(year)2014`, `a:b`.
    pub x_names: Vec<String>,
    /// Random-effects terms in the order written (lme4 reorders by level count; models do that themselves).
    pub random: Vec<RandomTerm>,
    /// Indices (0-based) into the input table of the rows used.
    pub rows: Vec<usize>,
    /// How many input rows were dropped for missing values in used columns.
    pub n_dropped: usize,
}

/// X'X (p × p, row-major, symmetric) by row chunks computed in parallel and added in chunk order, so the
/// result is the same bits whatever the number of threads.
pub fn crossprod(x: &Array2<f64>) -> Vec<f64> {
    const CHUNK: usize = 32_768;
    let (n, p) = x.dim();
    let part = |start: usize| {
        let mut acc = vec![0.0; p * p];
        for i in start..(start + CHUNK).min(n) {
            let row = x.row(i);
            for a in 0..p {
                let ra = row[a];
                if ra == 0.0 {
                    continue;
                }
                for b in 0..=a {
                    acc[a * p + b] += ra * row[b];
                }
            }
        }
        acc
    };
    let parts: Vec<Vec<f64>> = (0..n.div_ceil(CHUNK)).into_par_iter().map(|c| part(c * CHUNK)).collect();
    let mut xtx = vec![0.0; p * p];
    for part in parts {
        xtx.iter_mut().zip(&part).for_each(|(t, v)| *t += v);
    }
    for a in 0..p {
        for b in 0..a {
            xtx[b * p + a] = xtx[a * p + b];
        }
    }
    xtx
}

/// The columns of X that are linear combinations of the columns kept before them, from X'X (`xtx`, p × p
/// row-major): see [`ModelFrame::aliased_columns`].
pub fn aliased_in(xtx: &[f64], p: usize) -> Vec<usize> {
    // Cholesky over the kept columns only; `l[j][k]` for kept k.
    let mut kept: Vec<usize> = Vec::new();
    let mut l = vec![0.0; p * p];
    let mut aliased = Vec::new();
    for j in 0..p {
        let orig = xtx[j * p + j];
        let mut row = vec![0.0; p];
        let mut d = orig;
        for (m, &k) in kept.iter().enumerate() {
            let mut s = xtx[j * p + k];
            for &k2 in &kept[..m] {
                s -= row[k2] * l[k * p + k2];
            }
            row[k] = s / l[k * p + k];
            d -= row[k] * row[k];
        }
        if !(orig > 0.0 && d > 1e-14 * orig) {
            aliased.push(j);
            continue;
        }
        row[j] = d.sqrt();
        l[j * p..(j + 1) * p].copy_from_slice(&row);
        kept.push(j);
    }
    aliased
}

impl ModelFrame {
    /// Fixed-effects columns that are linear combinations of the columns kept before them, scanning left to
    /// right: a column is aliased when its residual norm after projection on the kept columns is below 1e-7
    /// of its own norm (the tolerance of R's pivoting QR in lme4's rank check). lme4 drops these columns.
    pub fn aliased_columns(&self) -> Vec<usize> {
        aliased_in(&crossprod(&self.x), self.x.ncols())
    }

    /// The same frame without the fixed-effects columns `drop` (indices into `x_names`).
    pub fn without_columns(&self, drop: &[usize]) -> ModelFrame {
        let keep: Vec<usize> = (0..self.x.ncols()).filter(|j| !drop.contains(j)).collect();
        let mut x = Array2::zeros((self.x.nrows(), keep.len()));
        for (c, &j) in keep.iter().enumerate() {
            x.column_mut(c).assign(&self.x.column(j));
        }
        ModelFrame { x, x_names: keep.iter().map(|&j| self.x_names[j].clone()).collect(), ..self.clone() }
    }
}

/// A model frame could not be built.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum FrameError {
    /// The formula is malformed.
    #[error(transparent)]
    Formula(#[from] FormulaError),
    /// A column is missing or has the wrong type.
    #[error(transparent)]
    Table(#[from] TableError),
    /// Every row has a missing value in some used column.
    #[error("no complete rows for `{formula}`: all {dropped} rows have a missing value in a used column")]
    NoRows {
        /// The formula.
        formula: String,
        /// Rows dropped.
        dropped: usize,
    },
    /// The fixed-effects design would be too wide to build.
    #[error(
        "the fixed effects reach {columns} columns at term `{term}` ({rows} rows, {bytes} bytes to build): more \
         than the 20,000 columns or 16 GiB psmeval builds; a factor with this many levels belongs in a random \
         term such as (1 | {group})"
    )]
    TooWide {
        /// The term at which the limit is passed.
        term: String,
        /// Its variables as a grouping factor (`a:b`).
        group: String,
        /// Columns the design would have up to that term.
        columns: usize,
        /// Rows of the design.
        rows: usize,
        /// Memory needed to build it.
        bytes: usize,
    },
    /// An infinite value.
    #[error("column `{column}` has an infinite value in row {row}")]
    NonFinite {
        /// The column.
        column: String,
        /// 1-based data row.
        row: usize,
    },
    /// A factor with a single level cannot be coded with contrasts.
    #[error("`{variable}` has only one level (`{level}`) in the rows used; contrasts need at least two levels")]
    SingleLevel {
        /// The factor's label.
        variable: String,
        /// Its only level.
        level: String,
    },
    /// A response form the caller cannot use.
    #[error("response `{response}` is not supported here: {reason}")]
    UnsupportedResponse {
        /// The response as written.
        response: String,
        /// Why.
        reason: String,
    },
}

/// How factors are coded in a model matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// R's treatment contrasts with its marginality rule (as `model.matrix`).
    Contrasts,
    /// Every factor expanded to an indicator per level and no intercept (as MatchIt's balance tables).
    AllLevels,
}

/// A variable's values over the used rows: numbers (the table's own column when every row is used), or
/// factor codes with their level labels.
#[derive(Debug, Clone)]
enum Values<'a> {
    Numeric(Cow<'a, [f64]>),
    Factor { codes: Vec<u32>, levels: Vec<String> },
}

/// Variables evaluated on the used rows, keyed by label (`x`, `factor(x)`).
#[derive(Debug)]
struct Evaluated<'a> {
    values: HashMap<Var, Values<'a>>,
    n: usize,
}

/// Which rows of `table` have no missing value in any of `columns`; errors on infinite values.
pub fn complete_rows(table: &Table, columns: &[String]) -> Result<Vec<usize>, FrameError> {
    let cols: Vec<(&str, &Column)> =
        columns.iter().map(|c| table.column(c).map(|col| (c.as_str(), col))).collect::<Result<_, _>>()?;
    for (name, col) in &cols {
        if let Column::Numeric(v) = col
            && let Some(i) = v.iter().position(|x| x.is_infinite())
        {
            return Err(FrameError::NonFinite { column: name.to_string(), row: i + 1 });
        }
    }
    // Row-parallel; rayon's indexed collect keeps the rows in order.
    Ok((0..table.n_rows()).into_par_iter().filter(|&i| cols.iter().all(|(_, c)| !c.is_missing(i))).collect())
}

/// Factor codes and sorted level labels of a column over `rows` (numbers sort numerically, text bytewise).
pub fn factor_codes(column: &Column, rows: &[usize]) -> (Vec<u32>, Vec<String>) {
    match column {
        Column::Numeric(v) => {
            // -0.0 and 0.0 are one level (R prints both as "0"); `+ 0.0` maps -0.0 to 0.0.
            let key = |i: usize| v[i] + 0.0;
            let same = |a: f64, b: f64| a.total_cmp(&b).is_eq();
            // Data are usually grouped (pupils by school, rows by year): runs of one value are collapsed
            // before sorting, and a row with the previous row's value reuses its code.
            let mut distinct: Vec<f64> = Vec::new();
            for &i in rows {
                if distinct.last().is_none_or(|&d| !same(d, key(i))) {
                    distinct.push(key(i));
                }
            }
            distinct.sort_by(f64::total_cmp);
            distinct.dedup_by(|a, b| same(*a, *b));
            let mut last: Option<(f64, u32)> = None;
            let codes = rows
                .iter()
                .map(|&i| {
                    let k = key(i);
                    match last {
                        Some((p, c)) if same(p, k) => c,
                        _ => {
                            let c = distinct.binary_search_by(|d| d.total_cmp(&k)).unwrap_or_default() as u32;
                            last = Some((k, c));
                            c
                        }
                    }
                })
                .collect();
            (codes, distinct.into_iter().map(format_number).collect())
        }
        Column::Text(v) => {
            let mut distinct: Vec<&str> = rows.iter().filter_map(|&i| v[i].as_deref()).collect();
            distinct.sort_unstable();
            distinct.dedup();
            let index: HashMap<&str, u32> = distinct.iter().enumerate().map(|(k, s)| (*s, k as u32)).collect();
            // Rows are complete (missing rows were dropped before), so every value has a code.
            let codes =
                rows.iter().map(|&i| v[i].as_deref().and_then(|s| index.get(s)).copied().unwrap_or(0)).collect();
            (codes, distinct.into_iter().map(str::to_string).collect())
        }
    }
}

impl<'a> Evaluated<'a> {
    /// One variable per task; the first error in `vars` order is the one returned.
    fn new(table: &'a Table, vars: &[Var], rows: &[usize]) -> Result<Self, FrameError> {
        // Every row, in order (the usual case of complete data): numeric columns are used without a copy.
        let all_rows = rows.len() == table.n_rows() && rows.iter().enumerate().all(|(k, &i)| k == i);
        let evaluated: Vec<Result<Values<'a>, FrameError>> = vars
            .par_iter()
            .map(|var| {
                let column = table.column(&var.name)?;
                Ok(match column {
                    Column::Numeric(x) if !var.factor && all_rows => Values::Numeric(Cow::Borrowed(x)),
                    Column::Numeric(x) if !var.factor => Values::Numeric(rows.iter().map(|&i| x[i]).collect()),
                    _ => {
                        let (codes, levels) = factor_codes(column, rows);
                        Values::Factor { codes, levels }
                    }
                })
            })
            .collect();
        let mut values = HashMap::with_capacity(vars.len());
        for (var, v) in vars.iter().zip(evaluated) {
            values.insert(var.clone(), v?);
        }
        Ok(Evaluated { values, n: rows.len() })
    }
}

/// One factor of a term's column product: a numeric column, or a factor coded by some of its levels.
enum Piece<'a> {
    Numeric(&'a [f64]),
    Factor { codes: &'a [u32], levels: &'a [String], first: usize },
}

/// Builds the model matrix of a term list, following R's `model.matrix` rules.
fn model_matrix(terms: &TermList, ev: &Evaluated, coding: Coding) -> Result<(Array2<f64>, Vec<String>), FrameError> {
    let intercept = terms.intercept && coding == Coding::Contrasts;
    // R's TermCode: a factor in a term is coded by contrasts when the term without it is empty (and the model
    // has an intercept) or is contained in a preceding term; otherwise by indicators of every level.
    let mut full_first_factor = !intercept;
    // Each column is a product of parts (none for the intercept), filled in row by row at the end.
    let mut columns: Vec<Vec<Part>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    if intercept {
        columns.push(Vec::new());
        names.push("(Intercept)".into());
    }
    for (j, term) in terms.terms.iter().enumerate() {
        let mut pieces: Vec<(String, Piece)> = Vec::new();
        for var in &term.vars {
            match &ev.values[var] {
                Values::Numeric(x) => pieces.push((var.label(), Piece::Numeric(x.as_ref()))),
                Values::Factor { codes, levels } => {
                    let contrasts = match coding {
                        Coding::AllLevels => false,
                        Coding::Contrasts => {
                            if full_first_factor {
                                full_first_factor = false;
                                false
                            } else {
                                let rest: Vec<&Var> = term.vars.iter().filter(|v| *v != var).collect();
                                (rest.is_empty() && intercept)
                                    || (rest.is_empty() && !intercept)
                                    || terms.terms[..j].iter().any(|t| rest.iter().all(|r| t.vars.contains(r)))
                            }
                        }
                    };
                    if contrasts && levels.len() < 2 {
                        return Err(FrameError::SingleLevel {
                            variable: var.label(),
                            level: levels.first().cloned().unwrap_or_default(),
                        });
                    }
                    pieces.push((var.label(), Piece::Factor { codes, levels, first: usize::from(contrasts) }));
                }
            }
        }
        // The term's width before any column is built: a factor with 100,000 levels would otherwise ask for
        // an n x 100,000 dense matrix.
        let width = pieces.iter().fold(1usize, |w, (_, piece)| match piece {
            Piece::Numeric(_) => w,
            Piece::Factor { levels, first, .. } => w.saturating_mul(levels.len().saturating_sub(*first)),
        });
        let total = columns.len().saturating_add(width);
        let bytes = total.saturating_mul(ev.n).saturating_mul(2 * std::mem::size_of::<f64>());
        if total > MAX_COLUMNS || bytes > MAX_DESIGN_BYTES {
            let group = term.vars.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(":");
            return Err(FrameError::TooWide { term: term.label(), group, columns: total, rows: ev.n, bytes });
        }
        // Columns of the product, first piece varying fastest.
        let mut block: Vec<(String, Vec<Part>)> = vec![(String::new(), Vec::new())];
        for (label, piece) in &pieces {
            let mut next = Vec::new();
            match piece {
                Piece::Numeric(x) => {
                    for (name, parts) in &block {
                        let mut parts = parts.clone();
                        parts.push(Part::Numeric(x));
                        next.push((join(name, label), parts));
                    }
                }
                Piece::Factor { codes, levels, first } => {
                    for (k, level) in levels.iter().enumerate().skip(*first) {
                        for (name, parts) in &block {
                            let mut parts = parts.clone();
                            parts.push(Part::Level(codes, k as u32));
                            next.push((join(name, &format!("{label}{level}")), parts));
                        }
                    }
                }
            }
            block = next;
        }
        for (name, parts) in block {
            names.push(name);
            columns.push(parts);
        }
    }
    // Row-major, written once in memory order, with no column built on the way; blocks of rows in parallel
    // (each value is computed alone, so the result does not depend on the number of threads).
    let p = columns.len();
    let mut data = vec![0.0; ev.n * p];
    if p > 0 {
        const BLOCK_ROWS: usize = 8192;
        data.par_chunks_mut(BLOCK_ROWS * p).enumerate().for_each(|(b, block)| {
            for (r, row) in block.chunks_exact_mut(p).enumerate() {
                let i = b * BLOCK_ROWS + r;
                for (d, parts) in row.iter_mut().zip(&columns) {
                    *d = parts.iter().fold(1.0, |v, part| match part {
                        Part::Numeric(x) => v * x[i],
                        Part::Level(codes, k) => {
                            if codes[i] == *k {
                                v
                            } else {
                                0.0
                            }
                        }
                    });
                }
            }
        });
    }
    let x = Array2::from_shape_vec((ev.n, p), data).expect("n × p values");
    Ok((x, names))
}

/// One factor of a model-matrix column: a numeric variable, or the indicator of one level of a factor.
#[derive(Clone, Copy)]
enum Part<'a> {
    Numeric(&'a [f64]),
    Level(&'a [u32], u32),
}

/// The most columns a fixed-effects design may have.
pub const MAX_COLUMNS: usize = 20_000;
/// The most memory a fixed-effects design may take while it is built (its columns and the matrix).
pub const MAX_DESIGN_BYTES: usize = 16 << 30;

fn join(a: &str, b: &str) -> String {
    if a.is_empty() { b.to_string() } else { format!("{a}:{b}") }
}

/// Builds the model frame of `formula` on `table`: rows with a missing value in any used column are dropped
/// (and counted), factors get R's treatment contrasts, random terms their grouping codes and model matrices.
pub fn build_model_frame(formula: &Formula, table: &Table) -> Result<ModelFrame, FrameError> {
    let columns = formula.columns();
    let rows = complete_rows(table, &columns)?;
    let n_dropped = table.n_rows() - rows.len();
    if rows.is_empty() {
        return Err(FrameError::NoRows { formula: formula.text.clone(), dropped: n_dropped });
    }
    let y = match &formula.response {
        Response::Column(c) => {
            let v = table.numeric(c)?;
            rows.iter().map(|&i| v[i]).collect()
        }
        Response::Cbind(..) => binomial_counts(formula, table, &rows)?.0,
    };
    let mut vars = formula.fixed.variables();
    for r in &formula.random {
        vars.extend(r.lhs.variables());
    }
    let ev = Evaluated::new(table, &vars, &rows)?;
    // The grouping factors are coded while the fixed-effects matrix is filled; errors are reported in the
    // order of the sequential build (fixed effects first, then each random term's matrix and grouping).
    let (fixed, groups) = rayon::join(
        || model_matrix(&formula.fixed, &ev, Coding::Contrasts),
        || formula.random.par_iter().map(|spec| group_codes(table, &spec.group, &rows)).collect::<Vec<_>>(),
    );
    let (x, x_names) = fixed?;
    let mut random = Vec::with_capacity(formula.random.len());
    for (spec, group) in formula.random.iter().zip(groups) {
        let (z, names) = model_matrix(&spec.lhs, &ev, Coding::Contrasts)?;
        let (codes, levels) = group?;
        random.push(RandomTerm { group: spec.group_label(), levels, codes, names, z });
    }
    Ok(ModelFrame { response_name: formula.response.label(), y, x, x_names, random, rows, n_dropped })
}

/// For a `cbind(successes, failures)` response: the proportions `s / (s + f)` and the binomial totals
/// `s + f` (glmer's prior weights) over `rows`. Counts must be non-negative with a positive total.
pub fn binomial_counts(formula: &Formula, table: &Table, rows: &[usize]) -> Result<(Vec<f64>, Vec<f64>), FrameError> {
    let Response::Cbind(sc, fc) = &formula.response else {
        return Err(FrameError::UnsupportedResponse {
            response: formula.response.label(),
            reason: "binomial counts need a cbind(successes, failures) response".into(),
        });
    };
    let s = table.numeric(sc)?;
    let f = table.numeric(fc)?;
    let mut y = Vec::with_capacity(rows.len());
    let mut w = Vec::with_capacity(rows.len());
    for &i in rows {
        if s[i] < 0.0 || f[i] < 0.0 || s[i] + f[i] <= 0.0 {
            return Err(FrameError::UnsupportedResponse {
                response: formula.response.label(),
                reason: format!(
                    "row {} has successes {} and failures {}; counts must be non-negative with a positive total",
                    i + 1,
                    s[i],
                    f[i]
                ),
            });
        }
        y.push(s[i] / (s[i] + f[i]));
        w.push(s[i] + f[i]);
    }
    Ok((y, w))
}

/// The covariate matrix of a formula's right-hand side with every factor level as its own indicator and no
/// intercept, over the given rows: the layout MatchIt's balance tables use.
pub fn covariate_matrix(
    formula: &Formula,
    table: &Table,
    rows: &[usize],
) -> Result<(Array2<f64>, Vec<String>), FrameError> {
    let ev = Evaluated::new(table, &formula.fixed.variables(), rows)?;
    model_matrix(&formula.fixed, &ev, Coding::AllLevels)
}

/// Codes of a (possibly interacted) grouping factor over `rows`. For `a:b` the levels are the combinations
/// present, ordered as R's `interaction()` orders them (the first factor varying fastest).
pub fn group_codes(table: &Table, group: &[String], rows: &[usize]) -> Result<(Vec<u32>, Vec<String>), FrameError> {
    let parts: Vec<(Vec<u32>, Vec<String>)> =
        group.iter().map(|g| table.column(g).map(|c| factor_codes(c, rows))).collect::<Result<_, _>>()?;
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().expect("one part"));
    }
    // One integer key per row, the last part most significant (the order of the lexicographic path below),
    // when the product of the level counts fits in a u64.
    let radix: Option<u64> =
        parts.iter().try_fold(1u64, |acc, (_, levels)| acc.checked_mul((levels.len() as u64).max(1)));
    if radix.is_some() {
        let keys: Vec<u64> = (0..rows.len())
            .map(|i| parts.iter().rev().fold(0u64, |k, (c, levels)| k * (levels.len() as u64).max(1) + u64::from(c[i])))
            .collect();
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let codes = keys.iter().map(|k| distinct.binary_search(k).expect("a key of the rows") as u32).collect();
        let levels = distinct
            .iter()
            .map(|&key| {
                let mut rest = key;
                let names: Vec<&str> = parts
                    .iter()
                    .map(|(_, lv)| {
                        let n = (lv.len() as u64).max(1);
                        let name = lv[(rest % n) as usize].as_str();
                        rest /= n;
                        name
                    })
                    .collect();
                names.join(":")
            })
            .collect();
        return Ok((codes, levels));
    }
    Ok(lexicographic_codes(&parts, rows.len()))
}

/// The codes and levels of an interaction of `parts` over `n` rows, by sorting each row's vector of part
/// codes (last part first): the general path of [`group_codes`].
fn lexicographic_codes(parts: &[(Vec<u32>, Vec<String>)], n: usize) -> (Vec<u32>, Vec<String>) {
    let keys: Vec<Vec<u32>> = (0..n).map(|i| parts.iter().rev().map(|(c, _)| c[i]).collect()).collect();
    let mut distinct: Vec<&Vec<u32>> = keys.iter().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let index: HashMap<&Vec<u32>, u32> = distinct.iter().enumerate().map(|(k, key)| (*key, k as u32)).collect();
    let codes = keys.iter().map(|k| index[k]).collect();
    let levels = distinct
        .iter()
        .map(|key| {
            key.iter()
                .rev()
                .zip(parts.iter())
                .map(|(&c, (_, lv))| lv[c as usize].as_str())
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect();
    (codes, levels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formula::parse_formula;

    fn table() -> Table {
        Table::new()
            .with("y", Column::Numeric(vec![1.0, 2.0, 3.0, 4.0, 5.0, f64::NAN]))
            .unwrap()
            .with("x", Column::Numeric(vec![0.5, 1.5, 2.5, 3.5, 4.5, 5.5]))
            .unwrap()
            .with("year", Column::Numeric(vec![2014.0, 2013.0, 2015.0, 2013.0, 2014.0, 2015.0]))
            .unwrap()
            .with("g", Column::Text(["b", "a", "b", "c", "a", "c"].iter().map(|s| Some(s.to_string())).collect()))
            .unwrap()
    }

    /// A frame of several row blocks (the matrix is filled in parallel by blocks of rows, missing rows are
    /// found in parallel): every value sits in its own row, whatever block it fell in.
    #[test]
    fn large_frames_keep_rows_in_place() {
        let n = 20_001;
        let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let y: Vec<f64> = (0..n).map(|i| if i % 7 == 3 { f64::NAN } else { 2.0 * i as f64 }).collect();
        let g: Vec<Option<String>> = (0..n).map(|i| Some(["a", "b", "c"][i % 3].to_string())).collect();
        let t = Table::new()
            .with("y", Column::Numeric(y))
            .unwrap()
            .with("x", Column::Numeric(x))
            .unwrap()
            .with("g", Column::Text(g))
            .unwrap();
        let mf = build_model_frame(&parse_formula("y ~ x * g + (x | g)").unwrap(), &t).unwrap();
        assert_eq!(mf.x_names, ["(Intercept)", "x", "gb", "gc", "x:gb", "x:gc"]);
        assert_eq!(mf.n_dropped, (0..n).filter(|i| i % 7 == 3).count());
        for (r, &i) in mf.rows.iter().enumerate() {
            assert_ne!(i % 7, 3);
            let (xi, gi) = (i as f64, i % 3);
            let expected =
                [1.0, xi, f64::from(gi == 1), f64::from(gi == 2), xi * f64::from(gi == 1), xi * f64::from(gi == 2)];
            assert_eq!(mf.x.row(r).to_vec(), expected, "row {i}");
            assert_eq!(mf.y[r], 2.0 * xi);
            assert_eq!(mf.random[0].codes[r] as usize, gi);
            assert_eq!(mf.random[0].z.row(r).to_vec(), [1.0, xi]);
        }
    }

    /// The integer-key path of an interaction gives the codes and levels of the general path.
    #[test]
    fn interaction_codes_agree_with_the_general_path() {
        let t = table()
            .with("s", Column::Numeric(vec![3.0, 1.0, 3.0, 2.0, 1.0, 2.0]))
            .unwrap()
            .with("k", Column::Numeric(vec![1.0, 2.0, 2.0, 1.0, 1.0, 2.0]))
            .unwrap();
        let rows: Vec<usize> = vec![0, 1, 2, 3, 4, 5, 1, 0];
        for group in [vec!["g", "year"], vec!["s", "year", "k"], vec!["year", "g"]] {
            let group: Vec<String> = group.into_iter().map(String::from).collect();
            let fast = group_codes(&t, &group, &rows).unwrap();
            let parts: Vec<_> = group.iter().map(|g| factor_codes(t.column(g).unwrap(), &rows)).collect();
            assert_eq!(fast, lexicographic_codes(&parts, rows.len()), "{group:?}");
        }
        let (codes, levels) = group_codes(&t, &["g".to_string(), "year".to_string()], &rows).unwrap();
        assert_eq!(levels[codes[0] as usize], "b:2014");
        assert!(levels.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn treatment_contrasts_and_names() {
        let f = parse_formula("y ~ factor(year) * x + g").unwrap();
        let mf = build_model_frame(&f, &table()).unwrap();
        assert_eq!(mf.n_dropped, 1);
        assert_eq!(
            mf.x_names,
            [
                "(Intercept)",
                "factor(year)2014",
                "factor(year)2015",
                "x",
                "gb",
                "gc",
                "factor(year)2014:x",
                "factor(year)2015:x"
            ]
        );
        // row 0: year 2014, x 0.5, g b
        assert_eq!(mf.x.row(0).to_vec(), vec![1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.5, 0.0]);
    }

    #[test]
    fn no_intercept_codes_first_factor_fully() {
        let f = parse_formula("y ~ 0 + g + factor(year)").unwrap();
        let mf = build_model_frame(&f, &table()).unwrap();
        assert_eq!(mf.x_names, ["ga", "gb", "gc", "factor(year)2014", "factor(year)2015"]);
    }

    #[test]
    fn interaction_without_main_effect_uses_indicators() {
        let f = parse_formula("y ~ x:g").unwrap();
        let mf = build_model_frame(&f, &table()).unwrap();
        assert_eq!(mf.x_names, ["(Intercept)", "x:ga", "x:gb", "x:gc"]);
    }

    #[test]
    fn random_terms_and_interaction_groups() {
        let f = parse_formula("y ~ x + (1 + x | g) + (1 | g:year)").unwrap();
        let mf = build_model_frame(&f, &table()).unwrap();
        assert_eq!(mf.random[0].levels, ["a", "b", "c"]);
        assert_eq!(mf.random[0].codes, [1, 0, 1, 2, 0]);
        assert_eq!(mf.random[0].names, ["(Intercept)", "x"]);
        assert_eq!(mf.random[0].z.row(1).to_vec(), vec![1.0, 1.5]);
        // interaction(): first factor varies fastest
        assert_eq!(mf.random[1].levels, ["a:2013", "c:2013", "a:2014", "b:2014", "b:2015"]);
    }

    #[test]
    fn errors() {
        let t = table();
        let f = parse_formula("y ~ z").unwrap();
        assert!(
            matches!(build_model_frame(&f, &t), Err(FrameError::Table(TableError::MissingColumn { name, .. })) if name == "z")
        );
        let f = parse_formula("cbind(y, x) ~ 1").unwrap();
        let mf = build_model_frame(&f, &t).unwrap();
        assert!((mf.y[0] - 1.0 / 1.5).abs() < 1e-15);
        assert_eq!(binomial_counts(&f, &t, &mf.rows).unwrap().1[0], 1.5);
        let f = parse_formula("g ~ x").unwrap();
        assert!(matches!(build_model_frame(&f, &t), Err(FrameError::Table(TableError::NotNumeric { row: 1, .. }))));
        let one = t.take_rows(&[0, 4]);
        let f = parse_formula("y ~ factor(year)").unwrap();
        assert!(matches!(build_model_frame(&f, &one), Err(FrameError::SingleLevel { .. })));
    }

    #[test]
    fn all_levels_for_balance() {
        let f = parse_formula("y ~ x + g").unwrap();
        let (m, names) = covariate_matrix(&f, &table(), &[0, 1, 2]).unwrap();
        assert_eq!(names, ["x", "ga", "gb"]);
        assert_eq!(m.row(1).to_vec(), vec![1.5, 1.0, 0.0]);
    }

    #[test]
    fn aliased_columns_are_found_left_to_right_and_dropped() {
        let n = 6;
        let a = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        let mut x = Array2::zeros((n, 5));
        for i in 0..n {
            x[[i, 0]] = 1.0;
            x[[i, 1]] = a[i];
            x[[i, 2]] = 2.0 * a[i] + 1.0; // aliased on (Intercept) and a
            x[[i, 3]] = b[i];
            x[[i, 4]] = 0.0; // constant zero: aliased
        }
        let mf = ModelFrame {
            response_name: "y".into(),
            y: vec![0.0; n],
            x,
            x_names: ["(Intercept)", "a", "a2", "b", "zero"].map(String::from).to_vec(),
            random: Vec::new(),
            rows: (0..n).collect(),
            n_dropped: 0,
        };
        assert_eq!(mf.aliased_columns(), vec![2, 4]);
        let reduced = mf.without_columns(&[2, 4]);
        assert_eq!(reduced.x_names, ["(Intercept)", "a", "b"]);
        assert_eq!(reduced.x.column(2).to_vec(), b.to_vec());
        assert!(reduced.aliased_columns().is_empty());
    }

    #[test]
    fn negative_zero_is_the_level_zero() {
        let col = Column::Numeric(vec![0.0, -0.0, 1.0, -0.0]);
        let (codes, levels) = factor_codes(&col, &[0, 1, 2, 3]);
        assert_eq!(levels, ["0", "1"]);
        assert_eq!(codes, [0, 0, 1, 0]);
    }
}
