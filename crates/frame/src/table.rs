//! A minimal in-memory column store: the boundary between file formats (handled by the CLI) and models.
//!
//! Numeric columns hold `f64` with `NaN` for a missing value; text columns hold `Option<String>`.

use std::sync::Arc;

use rayon::prelude::*;

use thiserror::Error;

/// One column of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers; `NaN` marks a missing value.
    Numeric(Vec<f64>),
    /// Text (categorical) values; `None` marks a missing value.
    Text(Vec<Option<String>>),
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    /// True when the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when row `i` is missing.
    pub fn is_missing(&self, i: usize) -> bool {
        match self {
            Column::Numeric(v) => v[i].is_nan(),
            Column::Text(v) => v[i].is_none(),
        }
    }

    /// True when rows `i` and `j` hold the same value (both missing counts as the same).
    pub fn same_value(&self, i: usize, j: usize) -> bool {
        match self {
            Column::Numeric(v) => v[i].to_bits() == v[j].to_bits() || (v[i].is_nan() && v[j].is_nan()),
            Column::Text(v) => v[i] == v[j],
        }
    }

    /// The values of `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Column {
        match self {
            Column::Numeric(v) => Column::Numeric(rows.iter().map(|&i| v[i]).collect()),
            Column::Text(v) => Column::Text(rows.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    /// The runs of equal values over `rows` (ids of sorted tables repeat row after row): for each run, its first
    /// position in `rows` and the value as text ([`Column::text_at`], computed once per run, so an id column
    /// of a large table costs one string per run instead of one per row).
    pub fn text_runs(&self, rows: &[usize]) -> Vec<(usize, Option<String>)> {
        let mut out = Vec::new();
        for (k, &i) in rows.iter().enumerate() {
            if k == 0 || !self.same_value(rows[k - 1], i) {
                out.push((k, self.text_at(i)));
            }
        }
        out
    }

    /// The value in row `i` as text (numbers printed as R prints them in factor levels).
    pub fn text_at(&self, i: usize) -> Option<String> {
        match self {
            Column::Numeric(v) => {
                let x = v[i];
                if x.is_nan() { None } else { Some(format_number(x)) }
            }
            Column::Text(v) => v[i].clone(),
        }
    }
}

/// Formats a number the way R's `as.character` does for the values that occur as factor levels
/// (integers without a decimal point, other values with up to 15 significant digits).
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{:.15}", x);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// Errors raised when looking columns up in a [`Table`].
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum TableError {
    /// The named column does not exist.
    #[error("no column named `{name}` (columns are: {available})")]
    MissingColumn {
        /// The column asked for.
        name: String,
        /// The columns the table has, comma-separated.
        available: String,
    },
    /// A column was expected to be numeric but holds text.
    #[error("column `{name}` must be numeric but holds text (first text value `{value}` in row {row})")]
    NotNumeric {
        /// The column.
        name: String,
        /// 1-based data row of the first non-numeric value.
        row: usize,
        /// The offending value.
        value: String,
    },
    /// Columns of different lengths were put in one table.
    #[error("column `{name}` has {len} rows but the table has {expected}")]
    LengthMismatch {
        /// The column.
        name: String,
        /// Its length.
        len: usize,
        /// The table's row count.
        expected: usize,
    },
    /// Two columns share a name.
    #[error("column `{name}` appears twice")]
    DuplicateColumn {
        /// The repeated name.
        name: String,
    },
    /// A column that exists but cannot be used (its name is repeated in the file, its type is not one psmeval
    /// reads, its numbers are written in a locale's format). Only a command that uses it fails.
    #[error("column `{name}` cannot be used: {reason}")]
    Unusable {
        /// The column.
        name: String,
        /// Why, and what to do about it.
        reason: String,
    },
    /// A 0/1 indicator (such as a treatment) holds another value.
    #[error("column `{name}` must be 0 or 1 but row {row} holds {value}")]
    NotBinary {
        /// The column.
        name: String,
        /// 1-based data row.
        row: usize,
        /// The value as shown (`a missing value` for NaN).
        value: String,
    },
    /// An id column has a missing value.
    #[error("id column `{name}` is missing in row {row}")]
    MissingId {
        /// The column.
        name: String,
        /// 1-based data row.
        row: usize,
    },
    /// A row filter `COLUMN = VALUE` gives text for a numeric column.
    #[error("filter `{name} = {value}`: `{name}` is numeric; give a number")]
    FilterNotNumber {
        /// The column.
        name: String,
        /// The value as written.
        value: String,
    },
    /// Row filters leave no rows.
    #[error("filter `{name} = {value}` selects no rows (after the filters before it)")]
    FilterSelectsNothing {
        /// The column of the filter that emptied the selection.
        name: String,
        /// Its value.
        value: String,
    },
    /// An id column repeats a value.
    #[error("id column `{name}` repeats `{id}` (rows {first} and {second})")]
    DuplicateId {
        /// The column.
        name: String,
        /// The repeated id.
        id: String,
        /// 1-based row of its first occurrence.
        first: usize,
        /// 1-based row of the repeat.
        second: usize,
    },
}

/// An equality filter on a table's rows, `column = value` (see [`Table::filter_rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilter {
    /// The column.
    pub column: String,
    /// The value as written.
    pub value: String,
}

impl std::fmt::Display for RowFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.column, self.value)
    }
}

/// Named columns of equal length, and the names of columns that exist in the source but cannot be used
/// (looking one up is an error that says why, so a command fails only on the columns it needs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    names: Vec<String>,
    columns: Vec<Column>,
    unusable: Vec<(String, String)>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a column; fails on a duplicate name or a length that differs from the other columns.
    pub fn push(&mut self, name: impl Into<String>, column: Column) -> Result<(), TableError> {
        let name = name.into();
        if self.names.contains(&name) || self.unusable.iter().any(|(n, _)| *n == name) {
            return Err(TableError::DuplicateColumn { name });
        }
        if let Some(first) = self.columns.first()
            && first.len() != column.len()
        {
            return Err(TableError::LengthMismatch { name, len: column.len(), expected: first.len() });
        }
        self.names.push(name);
        self.columns.push(column);
        Ok(())
    }

    /// Records a column that cannot be used, with the reason given when a command asks for it. A usable
    /// column of that name is removed (two columns sharing a name are both unusable).
    pub fn push_unusable(&mut self, name: impl Into<String>, reason: impl Into<String>) {
        let name = name.into();
        if let Some(i) = self.names.iter().position(|n| *n == name) {
            self.names.remove(i);
            self.columns.remove(i);
        }
        if !self.unusable.iter().any(|(n, _)| *n == name) {
            self.unusable.push((name, reason.into()));
        }
    }

    /// Columns that cannot be used, with the reason.
    pub fn unusable(&self) -> &[(String, String)] {
        &self.unusable
    }

    /// Replaces the named column by one of the same length (a missing name or another length is an error).
    pub fn replace(&mut self, name: &str, column: Column) -> Result<(), TableError> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| TableError::MissingColumn { name: name.to_string(), available: self.names.join(", ") })?;
        if column.len() != self.columns[i].len() {
            return Err(TableError::LengthMismatch {
                name: name.to_string(),
                len: column.len(),
                expected: self.columns[i].len(),
            });
        }
        self.columns[i] = column;
        Ok(())
    }

    /// Builder form of [`Table::push`].
    pub fn with(mut self, name: impl Into<String>, column: Column) -> Result<Self, TableError> {
        self.push(name, column)?;
        Ok(self)
    }

    /// Number of rows (0 for a table without columns).
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// Names of the usable columns in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// True when a usable column of that name exists.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// The named column, or an error saying why it cannot be used or listing the available names.
    pub fn column(&self, name: &str) -> Result<&Column, TableError> {
        if let Some((_, reason)) = self.unusable.iter().find(|(n, _)| n == name) {
            return Err(TableError::Unusable { name: name.to_string(), reason: reason.clone() });
        }
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.columns[i])
            .ok_or_else(|| TableError::MissingColumn { name: name.to_string(), available: self.names.join(", ") })
    }

    /// The named column as numbers; a text column is an error naming the first text value.
    pub fn numeric(&self, name: &str) -> Result<&[f64], TableError> {
        match self.column(name)? {
            Column::Numeric(v) => Ok(v),
            Column::Text(v) => {
                // Name the first value that is not a number (a text column can hold numbers too).
                let present = || v.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (i + 1, s.clone())));
                let (row, value) = present()
                    .find(|(_, s)| s.trim().parse::<f64>().is_err())
                    .or_else(|| present().next())
                    .unwrap_or((1, String::new()));
                Err(TableError::NotNumeric { name: name.to_string(), row, value })
            }
        }
    }

    /// The named numeric column as a 0/1 indicator (no missing values), e.g. a treatment column.
    pub fn binary(&self, name: &str) -> Result<Vec<bool>, TableError> {
        self.numeric(name)?
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v == 0.0 {
                    Ok(false)
                } else if v == 1.0 {
                    Ok(true)
                } else {
                    let value = if v.is_nan() { "a missing value".to_string() } else { format!("{v}") };
                    Err(TableError::NotBinary { name: name.to_string(), row: i + 1, value })
                }
            })
            .collect()
    }

    /// The named column as ids: every value present and unique, returned as shared text (results that name
    /// a unit several times, such as a matching's units and matched sets, hold one copy of each id).
    pub fn unique_ids(&self, name: &str) -> Result<Vec<Arc<str>>, TableError> {
        let col = self.column(name)?;
        let missing = |i: usize| TableError::MissingId { name: name.to_string(), row: i + 1 };
        // Each id copied once, in parallel; the first missing one in row order is reported.
        let ids: Vec<Option<Arc<str>>> = match col {
            Column::Text(v) => v.par_iter().map(|t| t.as_deref().map(Arc::<str>::from)).collect(),
            Column::Numeric(_) => {
                (0..col.len()).into_par_iter().map(|i| col.text_at(i).map(Arc::<str>::from)).collect()
            }
        };
        if let Some(i) = ids.iter().position(Option::is_none) {
            return Err(missing(i));
        }
        let ids: Vec<Arc<str>> = ids.into_iter().flatten().collect();
        // The first repeat in row order is reported, with the row of its first occurrence. (A fixed fast hash:
        // ids are the user's own, and only whether one repeats is asked.)
        let mut seen: std::collections::HashMap<&str, usize, foldhash::fast::FixedState> =
            std::collections::HashMap::with_capacity_and_hasher(ids.len(), foldhash::fast::FixedState::default());
        let repeat = ids.iter().enumerate().find_map(|(i, id)| seen.insert(&**id, i).map(|first| (first, i)));
        match repeat {
            Some((first, i)) => Err(TableError::DuplicateId {
                name: name.to_string(),
                id: ids[i].to_string(),
                first: first + 1,
                second: i + 1,
            }),
            None => Ok(ids),
        }
    }

    /// Iterates over `(name, column)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Column)> {
        self.names.iter().map(String::as_str).zip(self.columns.iter())
    }

    /// The rows passing every equality filter, in order: a numeric column compares with the value read as a
    /// number (`year = 2017`), a text column with the value as written. A value that is not a number for a
    /// numeric column, and a filter that leaves no rows, are errors naming the filter.
    pub fn filter_rows(&self, filters: &[RowFilter]) -> Result<Vec<usize>, TableError> {
        let mut rows: Vec<usize> = (0..self.n_rows()).collect();
        for f in filters {
            let fail = || (f.column.clone(), f.value.clone());
            rows = match self.column(&f.column)? {
                Column::Numeric(v) => {
                    let x: f64 = f.value.trim().parse().map_err(|_| {
                        let (name, value) = fail();
                        TableError::FilterNotNumber { name, value }
                    })?;
                    rows.into_iter().filter(|&i| v[i] == x).collect()
                }
                Column::Text(v) => rows.into_iter().filter(|&i| v[i].as_deref() == Some(f.value.as_str())).collect(),
            };
            if rows.is_empty() {
                let (name, value) = fail();
                return Err(TableError::FilterSelectsNothing { name, value });
            }
        }
        Ok(rows)
    }

    /// A new table with only the rows in `rows` (in that order).
    pub fn take_rows(&self, rows: &[usize]) -> Table {
        let columns = self.columns.iter().map(|c| c.take(rows)).collect();
        Table { names: self.names.clone(), columns, unusable: self.unusable.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids as plain text, for comparisons.
    fn strs(ids: &[std::sync::Arc<str>]) -> Vec<&str> {
        ids.iter().map(|s| &**s).collect()
    }

    #[test]
    fn text_runs_give_each_run_of_equal_values_once() {
        let t = Column::Text(vec![Some("a".into()), Some("a".into()), None, None, Some("b".into()), Some("a".into())]);
        assert_eq!(
            t.text_runs(&[0, 1, 2, 3, 4, 5]),
            [(0, Some("a".to_string())), (2, None), (4, Some("b".to_string())), (5, Some("a".to_string()))]
        );
        // Over a selection of rows, positions are within the selection; numbers print as factor levels do.
        let n = Column::Numeric(vec![100003.0, 100003.0, 7.5, f64::NAN, 7.5]);
        assert_eq!(
            n.text_runs(&[4, 2, 0, 1, 3]),
            [(0, Some("7.5".to_string())), (2, Some("100003".to_string())), (4, None)]
        );
        assert!(n.text_runs(&[]).is_empty());
    }

    #[test]
    fn row_filters_compare_numbers_as_numbers_and_name_the_filter_at_fault() {
        let t = Table::new()
            .with("year", Column::Numeric(vec![2016.0, 2017.0, 2017.0, f64::NAN]))
            .unwrap()
            .with("ks", Column::Text(vec![Some("2".into()), Some("1".into()), Some("2".into()), Some("2".into())]))
            .unwrap();
        let f = |c: &str, v: &str| RowFilter { column: c.into(), value: v.into() };
        assert_eq!(t.filter_rows(&[]).unwrap(), [0, 1, 2, 3]);
        assert_eq!(t.filter_rows(&[f("year", " 2017.0")]).unwrap(), [1, 2]);
        assert_eq!(t.filter_rows(&[f("year", "2017"), f("ks", "2")]).unwrap(), [2]);
        let e = t.filter_rows(&[f("year", "last")]).unwrap_err().to_string();
        assert_eq!(e, "filter `year = last`: `year` is numeric; give a number");
        let e = t.filter_rows(&[f("year", "2016"), f("ks", "1")]).unwrap_err().to_string();
        assert_eq!(e, "filter `ks = 1` selects no rows (after the filters before it)");
        assert!(t.filter_rows(&[f("la", "x")]).unwrap_err().to_string().contains("no column named `la`"));
        assert_eq!(f("ks", "2").to_string(), "ks = 2");
    }

    #[test]
    fn binary_and_id_columns_name_the_row_at_fault() {
        let t = Table::new()
            .with("lead", Column::Numeric(vec![0.0, 1.0, 2.0]))
            .unwrap()
            .with("id", Column::Text(vec![Some("a".into()), Some("b".into()), Some("a".into())]))
            .unwrap()
            .with("gap", Column::Text(vec![Some("a".into()), None, Some("c".into())]))
            .unwrap();
        let e = t.binary("lead").unwrap_err();
        assert_eq!(e.to_string(), "column `lead` must be 0 or 1 but row 3 holds 2");
        let e = t.unique_ids("id").unwrap_err();
        assert_eq!(e.to_string(), "id column `id` repeats `a` (rows 1 and 3)");
        let e = t.unique_ids("gap").unwrap_err();
        assert_eq!(e.to_string(), "id column `gap` is missing in row 2");
        let mut ok = t.take_rows(&[0, 1]);
        ok.push_unusable("gap", "its name appears twice in the header");
        let e = ok.column("gap").unwrap_err();
        assert_eq!(e.to_string(), "column `gap` cannot be used: its name appears twice in the header");
        assert!(!ok.has("gap") && ok.names() == ["lead", "id"]);
        assert_eq!(ok.binary("lead").unwrap(), [false, true]);
        assert_eq!(strs(&ok.unique_ids("id").unwrap()), ["a", "b"]);
    }

    /// On a table long enough for the ids to be copied in parallel, the first missing id and the first repeat
    /// in row order are the ones reported.
    #[test]
    fn the_first_missing_or_repeated_id_in_row_order_is_reported() {
        let ids = |edit: &dyn Fn(&mut Vec<Option<String>>)| {
            let mut v: Vec<Option<String>> = (0..20_000).map(|i| Some(format!("u{i}"))).collect();
            edit(&mut v);
            Table::new().with("id", Column::Text(v)).unwrap()
        };
        let t = ids(&|v| {
            v[15_000] = None;
            v[7_000] = None;
        });
        assert_eq!(t.unique_ids("id").unwrap_err().to_string(), "id column `id` is missing in row 7001");
        let t = ids(&|v| {
            v[19_000] = Some("u1".into());
            v[5_000] = Some("u100".into());
        });
        assert_eq!(t.unique_ids("id").unwrap_err().to_string(), "id column `id` repeats `u100` (rows 101 and 5001)");
        let t = ids(&|_| {});
        assert_eq!(t.unique_ids("id").unwrap().len(), 20_000);
    }
}
