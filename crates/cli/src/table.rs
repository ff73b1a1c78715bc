//! Reading and writing tables: CSV and Parquet through polars, chosen by file extension.
//!
//! Every command loads its inputs through [`load_table`], which turns a polars `DataFrame` into psmeval's
//! column store ([`psmeval_frame::Table`]) and reports problems by file, column and row: a missing file, an
//! empty table, text in a column that is otherwise numeric. Checks that depend on the command (a 0/1
//! treatment, unique ids) are the `require_*` functions. Outputs go through [`write_dataframe`], which writes
//! to a temporary file and renames it, so an interrupted run never leaves a half-written file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use polars::prelude::{
    CsvParseOptions, CsvReadOptions, CsvWriter, DataFrame, DataType, NullValues, ParquetReader, ParquetWriter,
    SerReader, SerWriter,
};
use psmeval_frame::{Column, Table};

use crate::error::InputError;

/// A table file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format a path's extension names.
    pub fn from_path(path: &Path) -> Result<Format, InputError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("parquet") | Some("pq") => Ok(Format::Parquet),
            _ => Err(InputError::new(format!("{}: unknown table format; use a .csv or .parquet file", path.display()))),
        }
    }

    /// The usual extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// Strings read as missing values in CSV files (besides an empty field).
const NULL_MARKERS: [&str; 5] = ["", "NA", "NaN", ".", "N/A"];

/// Loads a CSV or Parquet table. Integer, float and boolean columns become numeric; text columns stay text
/// unless most of their values are numbers, which is reported as text in a numeric column.
pub fn load_table(path: &Path) -> Result<Table> {
    let format = Format::from_path(path)?;
    if !path.exists() {
        return Err(InputError::new(format!("{}: no such file", path.display())).into());
    }
    let df = match format {
        Format::Csv => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(None)
            .with_parse_options(
                CsvParseOptions::default()
                    .with_null_values(Some(NullValues::AllColumns(NULL_MARKERS.iter().map(|s| (*s).into()).collect()))),
            )
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish()),
        Format::Parquet => {
            let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
            ParquetReader::new(file).finish()
        }
    }
    .map_err(|e| InputError::new(format!("{}: cannot read table: {e}", path.display())))?;
    dataframe_to_table(&df, path)
}

/// Converts a polars frame to a [`Table`], naming `source` in errors.
pub fn dataframe_to_table(df: &DataFrame, source: &Path) -> Result<Table> {
    if df.height() == 0 {
        return Err(InputError::new(format!("{}: the table has no data rows", source.display())).into());
    }
    let mut table = Table::new();
    for col in df.columns() {
        let name = col.name().to_string();
        let series = col.as_materialized_series();
        let column = match series.dtype() {
            DataType::String => {
                let ca = series.str().expect("string column");
                let values: Vec<Option<String>> = ca.iter().map(|v| v.map(|s| s.trim().to_string())).collect();
                check_text_in_numeric(&values, &name, source)?;
                Column::Text(values)
            }
            DataType::Boolean => {
                let ca = series.bool().expect("boolean column");
                Column::Numeric(ca.iter().map(|v| v.map_or(f64::NAN, f64::from)).collect())
            }
            dt if dt.is_primitive_numeric() => {
                let cast = series
                    .cast(&DataType::Float64)
                    .map_err(|e| InputError::new(format!("{}: column `{name}`: {e}", source.display())))?;
                let ca = cast.f64().expect("float column");
                Column::Numeric(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            }
            DataType::Categorical(..) | DataType::Enum(..) => {
                let cast = series
                    .cast(&DataType::String)
                    .map_err(|e| InputError::new(format!("{}: column `{name}`: {e}", source.display())))?;
                let ca = cast.str().expect("string column");
                Column::Text(ca.iter().map(|v| v.map(str::to_string)).collect())
            }
            other => {
                return Err(InputError::new(format!(
                    "{}: column `{name}` has type {other}, which psmeval cannot use (numbers or text only)",
                    source.display()
                ))
                .into());
            }
        };
        table.push(name, column).map_err(|e| InputError::new(format!("{}: {e}", source.display())))?;
    }
    Ok(table)
}

/// A text column in which most values are numbers is a numeric column with stray text: report the first
/// value that is not a number, by data row (1-based) and file line.
fn check_text_in_numeric(values: &[Option<String>], name: &str, source: &Path) -> Result<(), InputError> {
    let present: Vec<(usize, &str)> =
        values.iter().enumerate().filter_map(|(i, v)| v.as_deref().map(|s| (i, s))).collect();
    if present.is_empty() {
        return Ok(());
    }
    let numeric = present.iter().filter(|(_, s)| s.parse::<f64>().is_ok()).count();
    if numeric * 2 > present.len() {
        let (row, value) = present.iter().find(|(_, s)| s.parse::<f64>().is_err()).expect("some text");
        return Err(InputError::new(format!(
            "{}: column `{name}` is numeric but row {} (line {} of the file) holds the text `{value}`",
            source.display(),
            row + 1,
            row + 2
        )));
    }
    Ok(())
}

/// The 0/1 column `column` of `table` (read from `source`), e.g. a treatment indicator.
pub fn require_binary(table: &Table, column: &str, source: &Path) -> Result<Vec<bool>> {
    table.binary(column).map_err(|e| InputError::new(format!("{}: {e}", source.display())).into())
}

/// The id column `column` of `table` (read from `source`): every value present and unique.
pub fn require_unique_ids(table: &Table, column: &str, source: &Path) -> Result<Vec<String>> {
    table.unique_ids(column).map_err(|e| InputError::new(format!("{}: {e}", source.display())).into())
}

/// Writes bytes to `path` atomically: a temporary file in the same directory, then a rename.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".psmeval-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    write(tmp.as_file_mut()).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file_mut().flush()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot move the output into place at {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Writes text to `path` atomically.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |f| Ok(f.write_all(text.as_bytes())?))
}

/// Writes rendered files under `dir` (each atomically), creating folders as needed.
pub fn write_artifacts(dir: &Path, files: &[psmeval_report::Artifact]) -> Result<()> {
    for f in files {
        let path = dir.join(&f.path);
        write_atomic(&path, |out| Ok(out.write_all(&f.bytes)?))?;
    }
    Ok(())
}

/// Writes a frame as CSV or Parquet (by `format`) atomically.
pub fn write_dataframe(path: &Path, df: &mut DataFrame, format: Format) -> Result<()> {
    write_atomic(path, |f| {
        match format {
            Format::Csv => CsvWriter::new(f).include_header(true).finish(df)?,
            Format::Parquet => {
                ParquetWriter::new(f).finish(df)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn message(r: Result<impl std::fmt::Debug>) -> String {
        let e = r.unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2, "input errors exit with 2: {e}");
        format!("{e:#}")
    }

    #[test]
    fn loads_numbers_text_and_missing_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), "t.csv", "id,x,g\n1,1.5,a\n2,NA,b\n3,,\n");
        let t = load_table(&p).unwrap();
        assert_eq!(t.numeric("x").unwrap()[0], 1.5);
        assert!(t.numeric("x").unwrap()[1].is_nan() && t.numeric("x").unwrap()[2].is_nan());
        assert!(t.column("g").unwrap().is_missing(2));
    }

    #[test]
    fn parquet_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = load_table(&csv(dir.path(), "t.csv", "id,x,g\n1,1.5,a\n2,2.5,b\n")).unwrap();
        let mut df = DataFrame::new_infer_height(vec![
            polars::prelude::Column::new("id".into(), &[1i64, 2]),
            polars::prelude::Column::new("x".into(), &[1.5f64, 2.5]),
            polars::prelude::Column::new("g".into(), &["a", "b"]),
        ])
        .unwrap();
        let p = dir.path().join("t.parquet");
        write_dataframe(&p, &mut df, Format::Parquet).unwrap();
        assert_eq!(load_table(&p).unwrap(), src);
    }

    #[test]
    fn missing_file_and_unknown_extension() {
        let dir = tempfile::tempdir().unwrap();
        let m = message(load_table(&dir.path().join("nope.csv")));
        assert!(m.contains("nope.csv") && m.contains("no such file"), "{m}");
        let m = message(load_table(&csv(dir.path(), "t.txt", "a\n1\n")));
        assert!(m.contains("t.txt") && m.contains(".csv or .parquet"), "{m}");
    }

    #[test]
    fn empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let m = message(load_table(&csv(dir.path(), "e.csv", "id,x\n")));
        assert!(m.contains("e.csv") && m.contains("no data rows"), "{m}");
    }

    #[test]
    fn text_in_numeric_column_names_column_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let m = message(load_table(&csv(dir.path(), "t.csv", "id,x\n1,1.5\n2,2.5\n3,abc\n4,4\n")));
        assert!(m.contains("`x`") && m.contains("row 3") && m.contains("line 4") && m.contains("abc"), "{m}");
    }

    #[test]
    fn missing_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), "t.csv", "id,x\n1,0\n2,1\n");
        let t = load_table(&p).unwrap();
        let m = message(require_binary(&t, "lead", &p));
        assert!(m.contains("t.csv") && m.contains("`lead`") && m.contains("id, x"), "{m}");
    }

    #[test]
    fn treatment_must_be_zero_or_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), "t.csv", "id,lead\n1,0\n2,1\n3,2\n");
        let t = load_table(&p).unwrap();
        let m = message(require_binary(&t, "lead", &p));
        assert!(m.contains("`lead`") && m.contains("row 3") && m.contains("holds 2"), "{m}");
        let p = csv(dir.path(), "u.csv", "id,lead\n1,0\n2,\n");
        let m = message(require_binary(&load_table(&p).unwrap(), "lead", &p));
        assert!(m.contains("row 2") && m.contains("missing"), "{m}");
        let p = csv(dir.path(), "v.csv", "id,lead\n1,yes\n2,no\n");
        let m = message(require_binary(&load_table(&p).unwrap(), "lead", &p));
        assert!(m.contains("`lead`") && m.contains("yes"), "{m}");
        let p = csv(dir.path(), "w.csv", "id,lead\n1,0\n2,1\n");
        assert_eq!(require_binary(&load_table(&p).unwrap(), "lead", &p).unwrap(), [false, true]);
    }

    #[test]
    fn duplicate_ids_are_reported_with_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), "t.csv", "id,x\n7,1\n8,2\n7,3\n");
        let m = message(require_unique_ids(&load_table(&p).unwrap(), "id", &p));
        assert!(m.contains("`id`") && m.contains("`7`") && m.contains("rows 1 and 3"), "{m}");
    }

    #[test]
    fn atomic_write_leaves_no_partial_file_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        let r = write_atomic(&p, |f| {
            f.write_all(b"partial")?;
            anyhow::bail!("interrupted")
        });
        assert!(r.is_err());
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temporary file removed");
        write_text(&p, "done").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "done");
    }
}
