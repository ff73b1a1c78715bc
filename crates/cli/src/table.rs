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
    CsvParseOptions, CsvReadOptions, CsvWriter, DataFrame, DataType, Field, NullValues, ParquetReader, ParquetWriter,
    Schema, SerReader, SerWriter,
};
use psmeval_frame::{Column, Table};
use rayon::prelude::*;

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

/// Integers at or beyond 2^53 in magnitude are not all exactly representable as `f64`; columns holding them
/// are kept as exact text (they are ids: two distinct ids must never become one number).
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Loads a CSV or Parquet table. Integer, float, decimal and boolean columns become numeric; text columns
/// whose values are all numbers become numeric (quoted numbers, as in R); other text columns stay text, with
/// a warning on standard error when most of their values are numbers. Columns that cannot be used (a repeated
/// header name, numbers written with thousands separators or decimal commas, nested types) are recorded as
/// unusable: a command fails on them only if it uses them. A file that is not UTF-8, or that polars cannot
/// read (even by panicking), is an error naming the file.
pub fn load_table(path: &Path) -> Result<Table> {
    let (table, warnings) = load_table_with_warnings(path)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(table)
}

/// [`load_table`] reading only `columns`: the other columns of the file are neither parsed nor converted.
/// When a named column is not in the file, or its name is repeated in the header, the whole file is read, so
/// the error a command then gives (listing the columns the file has) is the same as with [`load_table`].
pub fn load_columns(path: &Path, columns: &[String]) -> Result<Table> {
    let (table, warnings) = load_with(path, Some(columns))?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(table)
}

/// [`load_table`] returning the warnings instead of printing them.
pub fn load_table_with_warnings(path: &Path) -> Result<(Table, Vec<String>)> {
    load_with(path, None)
}

fn load_with(path: &Path, columns: Option<&[String]>) -> Result<(Table, Vec<String>)> {
    let format = Format::from_path(path)?;
    if !path.exists() {
        return Err(InputError::new(format!("{}: no such file", path.display())).into());
    }
    if path.is_dir() {
        return Err(InputError::new(format!("{}: is a directory, not a table file", path.display())).into());
    }
    let header = match format {
        Format::Csv => Some(csv_header(path)?),
        Format::Parquet => None,
    };
    let select = columns.and_then(|c| projection(path, format, header.as_deref(), c));
    let loaded = without_panics(|| {
        let df = read_dataframe(path, format, select.as_deref())?;
        dataframe_to_table(&df, path, header.as_ref())
    })
    .unwrap_or_else(|| {
        Err(InputError::new(format!("{}: cannot read table: the file is damaged or not a valid table", path.display()))
            .into())
    });
    loaded.map_err(|e| match format {
        Format::Csv => not_utf8(path).map_or(e, anyhow::Error::from),
        Format::Parquet => e,
    })
}

/// The columns of the file to read for a command that uses `wanted`, in file order; `None` (read everything)
/// when one of them is not in the file or is named twice in its header.
fn projection(path: &Path, format: Format, header: Option<&[String]>, wanted: &[String]) -> Option<Vec<String>> {
    let names: Vec<String> = match (format, header) {
        (Format::Csv, Some(h)) => h.to_vec(),
        _ => {
            let file = File::open(path).ok()?;
            let schema = without_panics(|| ParquetReader::new(file).schema().ok())??;
            schema.iter_names().map(|n| n.to_string()).collect()
        }
    };
    let once = |w: &String| names.iter().filter(|n| *n == w).count() == 1;
    if !wanted.iter().all(once) {
        return None;
    }
    Some(names.into_iter().filter(|n| wanted.contains(n)).collect())
}

fn read_dataframe(path: &Path, format: Format, select: Option<&[String]>) -> Result<DataFrame> {
    if format == Format::Parquet {
        if let Some(cols) = select {
            let open = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
            let some = without_panics(|| ParquetReader::new(open).with_columns(Some(cols.to_vec())).finish());
            if let Some(Ok(df)) = some {
                return Ok(df);
            }
        }
        // Read column by column where a column cannot be read, so it is named.
        return read_parquet(path);
    }
    // polars infers a column's type from its values; when a later value does not fit the type inferred
    // (an integer beyond i64), read that column as text and let the conversion decide.
    let mut text_columns: Vec<String> = Vec::new();
    let projected = |options: CsvReadOptions| match select {
        Some(cols) => options.with_columns(Some(cols.iter().map(|c| c.as_str().into()).collect())),
        None => options,
    };
    loop {
        let options = if text_columns.is_empty() { csv_options(None) } else { csv_text_options(&text_columns) };
        match projected(options).try_into_reader_with_file_path(Some(path.to_path_buf())).and_then(|r| r.finish()) {
            Ok(df) => return Ok(df),
            Err(e) => {
                let message = e.to_string();
                let column = message
                    .split_once("at column '")
                    .and_then(|(_, rest)| rest.split_once('\''))
                    .map(|(c, _)| c.to_string())
                    .filter(|c| message.contains("could not parse") && !text_columns.contains(c));
                match column {
                    Some(c) => text_columns.push(c),
                    None => return Err(InputError::new(format!("{}: cannot read table: {e}", path.display())).into()),
                }
            }
        }
    }
}

/// Reads a Parquet file; when the whole file cannot be read, reads it column by column, so a column of a type
/// psmeval's polars build does not read (dates, times, decimals, lists) is named, and is an error only for a
/// command that uses it (a column whose reading panics inside polars included).
fn read_parquet(path: &Path) -> Result<DataFrame> {
    let open = || File::open(path).with_context(|| format!("{}: cannot open", path.display()));
    let whole = without_panics(|| ParquetReader::new(open()?).finish().map_err(anyhow::Error::from));
    if let Some(Ok(df)) = whole {
        return Ok(df);
    }
    let damaged = |e: String| InputError::new(format!("{}: cannot read table: {e}", path.display()));
    let schema = without_panics(|| ParquetReader::new(open()?).schema().map_err(anyhow::Error::from))
        .unwrap_or_else(|| Err(anyhow::anyhow!("the file is damaged or not a Parquet file")))
        .map_err(|e| damaged(e.to_string()))?;
    let mut columns = Vec::new();
    let mut unreadable = Vec::new();
    for (i, (name, field)) in schema.iter().enumerate() {
        let one = without_panics(|| {
            ParquetReader::new(open()?).with_projection(Some(vec![i])).finish().map_err(anyhow::Error::from)
        });
        match one {
            Some(Ok(df)) if df.width() == 1 => columns.push(df.columns()[0].clone()),
            _ => unreadable.push((name.to_string(), format!("{:?}", field.dtype()))),
        }
    }
    if columns.is_empty() {
        return Err(damaged("no column of the file can be read".into()).into());
    }
    let mut df = DataFrame::new_infer_height(columns).map_err(|e| damaged(e.to_string()))?;
    // Unreadable columns travel as all-null placeholders named with a marker the conversion recognizes.
    let height = df.height();
    for (name, dtype) in unreadable {
        let marker = format!("{UNREADABLE}{dtype}{UNREADABLE}{name}");
        let placeholder = polars::prelude::Column::full_null(marker.as_str().into(), height, &DataType::Null);
        df.with_column(placeholder).map_err(|e| damaged(e.to_string()))?;
    }
    Ok(df)
}

/// Marks a placeholder for a Parquet column that cannot be read (see [`read_parquet`]).
const UNREADABLE: &str = "\u{1}psmeval-unreadable\u{1}";

/// CSV options reading `text_columns` as text (all other columns inferred).
fn csv_text_options(text_columns: &[String]) -> CsvReadOptions {
    let schema: Schema = text_columns.iter().map(|c| Field::new(c.as_str().into(), DataType::String)).collect();
    csv_options(None).with_schema_overwrite(Some(std::sync::Arc::new(schema)))
}

fn csv_options(text_columns: Option<Vec<String>>) -> CsvReadOptions {
    let nulls = NullValues::AllColumns(NULL_MARKERS.iter().map(|s| (*s).into()).collect());
    let options = CsvReadOptions::default()
        .with_has_header(true)
        // Types are inferred from the first rows (a whole-file inference pass took 6 of 7 s on a 266 MB
        // file); a later value that does not fit makes `read_dataframe` read that column again as text.
        .with_infer_schema_length(Some(10_000))
        .with_parse_options(CsvParseOptions::default().with_null_values(Some(nulls)));
    match text_columns {
        None => options,
        Some(cols) => {
            let schema: Schema = cols.iter().map(|c| Field::new(c.as_str().into(), DataType::String)).collect();
            options
                .with_schema_overwrite(Some(std::sync::Arc::new(schema)))
                .with_columns(Some(cols.iter().map(|c| c.as_str().into()).collect()))
        }
    }
}

/// Runs `f`, turning a panic inside it (polars panics on some damaged files) into `None`, without printing
/// the panic message.
fn without_panics<T>(f: impl FnOnce() -> T) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    std::panic::set_hook(hook);
    out
}

/// The column names of a CSV file's header line, as written (polars renames repeated names).
fn csv_header(path: &Path) -> Result<Vec<String>> {
    use std::io::{BufRead, BufReader};
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut line = Vec::new();
    BufReader::new(file).read_until(b'\n', &mut line).with_context(|| format!("{}: cannot read", path.display()))?;
    let text = std::str::from_utf8(&line).map_err(|e| {
        InputError::new(format!(
            "{}: line 1 is not UTF-8 text (byte {}); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
            path.display(),
            e.valid_up_to() + 1
        ))
    })?;
    let text = text.trim_end_matches(['\n', '\r']);
    let mut names = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => names.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    names.push(field);
    Ok(names)
}

/// When a CSV file holds bytes that are not UTF-8, an error naming the first such line.
fn not_utf8(path: &Path) -> Option<InputError> {
    let bytes = std::fs::read(path).ok()?;
    let bad = std::str::from_utf8(&bytes).err()?.valid_up_to();
    let line = bytes[..bad].iter().filter(|&&b| b == b'\n').count() + 1;
    Some(InputError::new(format!(
        "{}: line {line} is not UTF-8 text (byte {} of the file); save the file as UTF-8 (e.g. `iconv -f latin1 -t \
         utf-8`)",
        path.display(),
        bad + 1
    )))
}

/// Converts a polars frame to a [`Table`], naming `source` in errors; `header` is a CSV file's header as
/// written (to find repeated names). Returns the table and warnings for the user.
pub fn dataframe_to_table(df: &DataFrame, source: &Path, header: Option<&Vec<String>>) -> Result<(Table, Vec<String>)> {
    if df.height() == 0 {
        return Err(InputError::new(format!("{}: the table has no data rows", source.display())).into());
    }
    let mut table = Table::new();
    let mut warnings = Vec::new();
    // Repeated header names: polars calls the repeats `name_duplicated_0`, ...; all of them are unusable.
    let mut repeated: Vec<(String, Vec<usize>)> = Vec::new();
    if let Some(header) = header {
        for (i, name) in header.iter().enumerate() {
            match repeated.iter_mut().find(|(n, _)| n == name) {
                Some((_, at)) => at.push(i + 1),
                None => repeated.push((name.clone(), vec![i + 1])),
            }
        }
        repeated.retain(|(_, at)| at.len() > 1);
    }
    let is_repeat = |name: &str| {
        repeated.iter().any(|(n, at)| name == n || (1..at.len()).any(|k| name == format!("{n}_duplicated_{}", k - 1)))
    };
    // Columns convert independently, in parallel; they are added to the table in file order.
    let kept: Vec<&polars::prelude::Column> = df.columns().iter().filter(|c| !is_repeat(c.name())).collect();
    let converted: Vec<Result<(String, Converted)>> = kept
        .par_iter()
        .map(|col| {
            let name = col.name().to_string();
            convert_column(col, &name, source, header.is_some()).map(|c| (name, c))
        })
        .collect();
    let mut reread = Vec::new();
    for c in converted {
        let (name, converted) = c?;
        match converted {
            Converted::Column(c) => {
                table.push(name, c).map_err(|e| InputError::new(format!("{}: {e}", source.display())))?
            }
            Converted::Warn(c, w) => {
                warnings.push(w);
                table.push(name, c).map_err(|e| InputError::new(format!("{}: {e}", source.display())))?
            }
            Converted::Unusable(reason) => table.push_unusable(name, reason),
            Converted::Reread => {
                table.push_unusable(name.clone(), "being read again");
                reread.push(name);
            }
            Converted::Placeholder(original, dtype) => table.push_unusable(
                original,
                format!(
                    "its Parquet type ({dtype}) is not one psmeval reads; store it as numbers or text \
                     (dates as text or as a year number)"
                ),
            ),
        }
    }
    if !reread.is_empty() {
        let df = csv_options(Some(reread.clone()))
            .try_into_reader_with_file_path(Some(source.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(|e| InputError::new(format!("{}: cannot read table: {e}", source.display())))?;
        let mut exact = Table::new();
        for name in &reread {
            let series = df.column(name).map_err(|e| column_error(source, name, e))?.as_materialized_series();
            let ca = series.str().map_err(|e| column_error(source, name, e))?;
            let c = match text_column(ca.iter(), name, source) {
                Converted::Column(c) | Converted::Warn(c, _) => c,
                _ => Column::Text(ca.iter().map(|v| v.map(|s| s.trim().to_string())).collect()),
            };
            exact.push(name.clone(), c).map_err(|e| InputError::new(format!("{}: {e}", source.display())))?;
        }
        table = replace_columns(table, exact);
    }
    for (name, at) in repeated {
        let at: Vec<String> = at.iter().map(usize::to_string).collect();
        table.push_unusable(
            name,
            format!("the header names it {} times (columns {}); rename the copies", at.len(), at.join(", ")),
        );
    }
    Ok((table, warnings))
}

/// Converts one polars column (named `name`, from `source`; `csv` for a CSV file) to psmeval's column.
fn convert_column(col: &polars::prelude::Column, name: &str, source: &Path, csv: bool) -> Result<Converted> {
    let name = name.to_string();
    if let Some((dtype, original)) = name.strip_prefix(UNREADABLE).and_then(|r| r.split_once(UNREADABLE)) {
        return Ok(Converted::Placeholder(original.to_string(), dtype.to_string()));
    }
    let series = col.as_materialized_series();
    let unusable = |reason: String| Converted::Unusable(reason);
    let converted = match series.dtype() {
        DataType::String => {
            let ca = series.str().map_err(|e| column_error(source, &name, e))?;
            text_column(ca.iter(), &name, source)
        }
        DataType::Boolean => {
            let ca = series.bool().map_err(|e| column_error(source, &name, e))?;
            Converted::Column(Column::Numeric(ca.iter().map(|v| v.map_or(f64::NAN, f64::from)).collect()))
        }
        DataType::Null => Converted::Column(Column::Numeric(vec![f64::NAN; series.len()])),
        dt if dt.is_integer() => {
            // CSV integers (i64) convert in one pass; other integer types by a cast first.
            let v = match series.i64() {
                Ok(ca) => int64_values(ca),
                Err(_) => {
                    let f = series.cast(&DataType::Float64).map_err(|e| column_error(source, &name, e))?;
                    float_values(f.f64().map_err(|e| column_error(source, &name, e))?)
                }
            };
            if v.iter().any(|v| v.abs() >= EXACT_INTEGER_LIMIT) {
                let t = series.cast(&DataType::String).map_err(|e| column_error(source, &name, e))?;
                let t = t.str().map_err(|e| column_error(source, &name, e))?;
                Converted::Column(Column::Text(t.iter().map(|v| v.map(str::to_string)).collect()))
            } else {
                Converted::Column(Column::Numeric(v))
            }
        }
        dt if dt.is_float() || dt.is_decimal() => {
            let f = series.cast(&DataType::Float64).map_err(|e| column_error(source, &name, e))?;
            let v = float_values(f.f64().map_err(|e| column_error(source, &name, e))?);
            if csv && v.iter().any(|v| v.fract() == 0.0 && v.abs() >= EXACT_INTEGER_LIMIT) {
                // A CSV column of integers too long for i64 that polars read as floats: read its text again.
                Converted::Reread
            } else {
                Converted::Column(Column::Numeric(v))
            }
        }
        DataType::Categorical(..) | DataType::Enum(..) | DataType::Date | DataType::Datetime(..) | DataType::Time => {
            let t = series.cast(&DataType::String).map_err(|e| column_error(source, &name, e))?;
            let t = t.str().map_err(|e| column_error(source, &name, e))?;
            Converted::Column(Column::Text(t.iter().map(|v| v.map(str::to_string)).collect()))
        }
        other => unusable(format!("it has type {other}; psmeval uses numbers and text")),
    };
    Ok(converted)
}

/// Puts the columns of `exact` in place of the same-named unusable entries of `table` (after its other
/// columns).
fn replace_columns(table: Table, exact: Table) -> Table {
    let mut out = Table::new();
    for (name, column) in table.iter() {
        let _ = out.push(name, column.clone());
    }
    for (name, column) in exact.iter() {
        let _ = out.push(name, column.clone());
    }
    for (name, reason) in table.unusable() {
        if !exact.has(name) {
            out.push_unusable(name.clone(), reason.clone());
        }
    }
    out
}

enum Converted {
    Column(Column),
    Warn(Column, String),
    Unusable(String),
    /// A CSV column to read again as text.
    Reread,
    /// A Parquet column psmeval cannot read: its original name and type.
    Placeholder(String, String),
}

fn column_error(source: &Path, name: &str, e: impl std::fmt::Display) -> InputError {
    InputError::new(format!("{}: column `{name}`: {e}", source.display()))
}

/// Numbers with missing values as NaN and -0 as 0 (one factor level, as R prints it).
fn numeric(values: impl Iterator<Item = Option<f64>>) -> Column {
    Column::Numeric(values.map(|v| v.map_or(f64::NAN, |x| x + 0.0)).collect())
}

/// The values of a float column as [`numeric`] gives them, copied once, chunk by chunk: a chunk without
/// missing values is copied as a slice (the common case, and the one the compiler vectorizes).
fn float_values(f: &polars::prelude::Float64Chunked) -> Vec<f64> {
    let mut out = Vec::with_capacity(f.len());
    for chunk in f.downcast_iter() {
        match chunk.validity().filter(|v| v.unset_bits() > 0) {
            None => out.extend(chunk.values().iter().map(|x| x + 0.0)),
            Some(valid) => {
                out.extend(chunk.values().iter().zip(valid.iter()).map(|(x, ok)| if ok { x + 0.0 } else { f64::NAN }))
            }
        }
    }
    out
}

/// The values of an integer column as numbers (exact below 2^53 in magnitude), missing values as NaN.
fn int64_values(ca: &polars::prelude::Int64Chunked) -> Vec<f64> {
    let mut out = Vec::with_capacity(ca.len());
    for chunk in ca.downcast_iter() {
        match chunk.validity().filter(|v| v.unset_bits() > 0) {
            None => out.extend(chunk.values().iter().map(|&x| x as f64)),
            Some(valid) => {
                out.extend(chunk.values().iter().zip(valid.iter()).map(|(&x, ok)| if ok { x as f64 } else { f64::NAN }))
            }
        }
    }
    out
}

/// How a text value reads as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// A plain number (`12`, `-1.5e3`, `Inf`).
    Number,
    /// A number written in a locale's format: thousands separators (`1,059`) or a decimal comma (`3,5`).
    Formatted,
    /// Text.
    Text,
}

fn reading(s: &str) -> Reading {
    if s.parse::<f64>().is_ok() {
        return Reading::Number;
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) if digits(f) => (i, Some(f)),
        Some(_) => return Reading::Text,
        None => (body, None),
    };
    let groups: Vec<&str> = int.split(',').collect();
    let thousands = groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && digits(groups[0])
        && groups[1..].iter().all(|g| g.len() == 3 && digits(g));
    let decimal_comma = frac.is_none() && groups.len() == 2 && digits(groups[0]) && digits(groups[1]);
    if thousands || decimal_comma { Reading::Formatted } else { Reading::Text }
}

/// A text column: numbers when every value is a number (unless they are integers too long to be exact);
/// unusable when its numbers are written in a locale's format; text otherwise, with a warning when most
/// values are numbers.
fn text_column<'a>(values: impl Iterator<Item = Option<&'a str>>, name: &str, source: &Path) -> Converted {
    let values: Vec<Option<String>> = values.map(|v| v.map(|s| s.trim().to_string())).collect();
    let present = || values.iter().enumerate().filter_map(|(i, v)| v.as_deref().map(|s| (i, s)));
    let (mut numbers, mut formatted, mut first_text, mut first_formatted) = (0usize, 0usize, None, None);
    for (i, s) in present() {
        match reading(s) {
            Reading::Number => numbers += 1,
            Reading::Formatted => {
                formatted += 1;
                first_formatted.get_or_insert((i, s));
            }
            Reading::Text => {
                first_text.get_or_insert((i, s));
            }
        }
    }
    if numbers + formatted == 0 && first_text.is_none() {
        return Converted::Column(Column::Text(values));
    }
    let Some((row, value)) = first_text else {
        if let Some((row, value)) = first_formatted {
            return Converted::Unusable(format!(
                "it holds numbers written with a thousands separator or a decimal comma (row {}: `{value}`); psmeval \
                 does not guess the locale: save the column as plain numbers (1059, 3.5)",
                row + 1
            ));
        }
        let parsed: Vec<f64> =
            values.iter().map(|v| v.as_deref().map_or(f64::NAN, |s| s.parse().unwrap_or(f64::NAN))).collect();
        // Ids written as digits stay text when a float would change them: integers at or beyond 2^53, or
        // written with leading zeros (`00123` is not `123`).
        let digits = |s: &str| {
            let b = s.strip_prefix(['-', '+']).unwrap_or(s);
            !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit())
        };
        let all_integers = values.iter().flatten().all(|s| digits(s));
        let long = values.iter().flatten().any(|s| s.parse::<f64>().is_ok_and(|x| x.abs() >= EXACT_INTEGER_LIMIT));
        let leading_zero = values.iter().flatten().any(|s| {
            let b = s.strip_prefix(['-', '+']).unwrap_or(s);
            b.len() > 1 && b.starts_with('0')
        });
        if all_integers && (long || leading_zero) {
            return Converted::Column(Column::Text(values));
        }
        return Converted::Column(numeric(parsed.into_iter().map(Some)));
    };
    if numbers * 2 > present().count() {
        let warning = format!(
            "{}: column `{name}` is mostly numbers but row {} (line {} of the file) holds the text `{value}`, so it \
             is read as text (a factor in a formula, as R's read.csv does)",
            source.display(),
            row + 1,
            row + 2
        );
        return Converted::Warn(Column::Text(values), warning);
    }
    Converted::Column(Column::Text(values))
}

/// The 0/1 column `column` of `table` (read from `source`), e.g. a treatment indicator.
pub fn require_binary(table: &Table, column: &str, source: &Path) -> Result<Vec<bool>> {
    table.binary(column).map_err(|e| InputError::new(format!("{}: {e}", source.display())).into())
}

/// The id column `column` of `table` (read from `source`): every value present and unique.
pub fn require_unique_ids(table: &Table, column: &str, source: &Path) -> Result<Vec<std::sync::Arc<str>>> {
    table.unique_ids(column).map_err(|e| InputError::new(format!("{}: {e}", source.display())).into())
}

/// Prefix of psmeval's temporary files; the process id follows, so a later run can remove the files of a
/// process that was killed before it could (`kill -9`) without touching those of a run still going.
const TEMP_PREFIX: &str = ".psmeval-";

/// How long a temporary file must be untouched before a later run may remove it.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes temporary files left in `dir` by psmeval processes that no longer run (Linux: `/proc/PID`).
fn remove_stale_temporaries(dir: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        // A process on another node of a shared file system (Slurm array tasks writing one folder) is not in
        // this node's /proc: only files untouched for STALE_AFTER are taken as abandoned.
        let old =
            entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_AFTER));
        if old && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn temporary_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    remove_stale_temporaries(dir);
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes bytes to `path` atomically: a temporary file in the same directory, then a rename.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let mut tmp = temporary_in(&parent_dir(path))?;
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

/// A frame as CSV or Parquet bytes.
pub fn dataframe_bytes(df: &mut DataFrame, format: Format) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    match format {
        Format::Csv => CsvWriter::new(&mut bytes).include_header(true).finish(df)?,
        Format::Parquet => {
            ParquetWriter::new(&mut bytes).finish(df)?;
        }
    }
    Ok(bytes)
}

/// Writes a frame as CSV or Parquet (by `format`) atomically.
pub fn write_dataframe(path: &Path, df: &mut DataFrame, format: Format) -> Result<()> {
    let bytes = dataframe_bytes(df, format)?;
    write_atomic(path, |f| Ok(f.write_all(&bytes)?))
}

/// Absolute form of a path (resolving symbolic links when it exists), for comparing outputs with inputs.
fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| match (parent_dir(path).canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    })
}

/// Checks, before anything is computed, that `path` can be an output file: not an input, not a directory.
pub fn check_output_file(path: &Path, inputs: &[&Path]) -> Result<()> {
    if path.is_dir() {
        return Err(
            InputError::new(format!("{}: is a directory; give a file name for this output", path.display())).into()
        );
    }
    let out = absolute(path);
    if let Some(input) = inputs.iter().find(|i| absolute(i) == out) {
        return Err(InputError::new(format!(
            "{}: is an input of this command ({}); choose another output file",
            path.display(),
            input.display()
        ))
        .into());
    }
    Ok(())
}

/// Checks, before anything is computed, that `dir` can be an output directory: a directory or not there yet.
pub fn check_output_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(InputError::new(format!(
            "{}: exists and is not a directory; give a directory for the outputs (--out)",
            dir.display()
        ))
        .into());
    }
    Ok(())
}

/// A command's output files, written together: each is rendered in memory first, then written to a
/// temporary file beside its destination, and only when every one has been written are they moved into
/// place. A failure while writing (a full disk, a folder that cannot be created) leaves none of the new
/// files and no temporary files; inputs are never overwritten.
#[derive(Debug, Default)]
pub struct Outputs {
    files: Vec<(PathBuf, Vec<u8>)>,
    inputs: Vec<PathBuf>,
}

impl Outputs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks a file as an input of the command: committing an output to that path is refused.
    pub fn protect(&mut self, input: &Path) {
        self.inputs.push(absolute(input));
    }

    /// Adds a file.
    pub fn add(&mut self, path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) {
        self.files.push((path.into(), bytes.into()));
    }

    /// The bytes of the file added at `path`, if one was.
    pub fn bytes(&self, path: &Path) -> Option<&[u8]> {
        self.files.iter().find(|(p, _)| p == path).map(|(_, b)| b.as_slice())
    }

    /// Adds rendered files under `dir`.
    pub fn add_artifacts(&mut self, dir: &Path, files: &[psmeval_report::Artifact]) {
        for f in files {
            self.add(dir.join(&f.path), f.bytes.clone());
        }
    }

    /// Writes every file (see the type's documentation). Destinations are checked before the first rename;
    /// a rename that still fails (the file system changed meanwhile) leaves the files renamed before it and
    /// removes the other temporary files.
    pub fn commit(self) -> Result<()> {
        let mut seen: Vec<(String, &Path)> = Vec::new();
        for (path, _) in &self.files {
            let out = absolute(path);
            if self.inputs.contains(&out) {
                return Err(InputError::new(format!(
                    "{}: is an input of this command; choose another output",
                    path.display()
                ))
                .into());
            }
            // Case-insensitive file systems would make two of them one file.
            let key = out.to_string_lossy().to_lowercase();
            if let Some((_, other)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(anyhow::anyhow!(
                    "the outputs {} and {} differ only in case and would overwrite each other",
                    other.display(),
                    path.display()
                ));
            }
            seen.push((key, path));
        }
        if let Some((path, _)) = self.files.iter().find(|(p, _)| p.is_dir()) {
            return Err(anyhow::anyhow!("cannot write {}: a directory is in the way", path.display()));
        }
        let mut staged = Vec::with_capacity(self.files.len());
        for (path, bytes) in &self.files {
            let mut tmp = temporary_in(&parent_dir(path))?;
            tmp.as_file_mut()
                .write_all(bytes)
                .and_then(|()| tmp.as_file_mut().flush())
                .with_context(|| format!("cannot write {}", path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
            }
            staged.push((tmp, path));
        }
        for (tmp, path) in staged {
            tmp.persist(path)
                .map_err(|e| anyhow::anyhow!("cannot move the output into place at {}: {}", path.display(), e.error))?;
        }
        Ok(())
    }
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

    /// Ids as plain text, for comparisons.
    fn strs(ids: &[std::sync::Arc<str>]) -> Vec<&str> {
        ids.iter().map(|s| &**s).collect()
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
    fn values_past_the_type_inference_window_are_read_exactly() {
        // The schema is inferred from the first 10,000 rows; a later value that does not fit the inferred type
        // makes the column be read again as text and converted: a float in an integer column stays a number,
        // a word makes the column text (with a warning), a missing value stays missing.
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("id,n,w,m\n");
        for i in 0..10_050 {
            text.push_str(&format!("{i},{i},{i},{i}\n"));
        }
        text.push_str("10050,2.5,high,NA\n");
        let (t, warnings) = load_table_with_warnings(&csv(dir.path(), "late.csv", &text)).unwrap();
        assert_eq!(t.n_rows(), 10_051);
        let n = t.numeric("n").unwrap();
        assert_eq!((n[0], n[10_049], n[10_050]), (0.0, 10_049.0, 2.5));
        assert_eq!(t.column("w").unwrap().text_at(10_050).as_deref(), Some("high"));
        assert!(warnings.iter().any(|w| w.contains("`w`") && w.contains("high")), "{warnings:?}");
        assert!(t.numeric("m").unwrap()[10_050].is_nan() && t.numeric("m").unwrap()[7] == 7.0);
        assert_eq!(t.numeric("id").unwrap()[10_050], 10_050.0);
    }

    #[test]
    fn integer_values_keep_missing_values() {
        let ca = polars::prelude::Int64Chunked::from_iter([Some(-3), None, Some(1 << 52)]);
        let v = int64_values(&ca);
        assert!(v[0] == -3.0 && v[1].is_nan() && v[2] == 4_503_599_627_370_496.0);
        let mut two = polars::prelude::Int64Chunked::from_vec("x".into(), vec![1, 2]);
        two.append(&polars::prelude::Int64Chunked::from_iter([None, Some(4)])).unwrap();
        let v = int64_values(&two);
        assert!(v[..2] == [1.0, 2.0] && v[2].is_nan() && v[3] == 4.0, "chunks in order: {v:?}");
    }

    #[test]
    fn float_values_keep_missing_values_and_fold_negative_zero() {
        let ca = polars::prelude::Float64Chunked::from_iter([Some(-0.0), None, Some(1.5)]);
        let v = float_values(&ca);
        assert!(v[0] == 0.0 && v[0].is_sign_positive() && v[1].is_nan() && v[2] == 1.5);
        let dense = polars::prelude::Float64Chunked::from_vec("x".into(), vec![2.0, -0.0]);
        assert!(float_values(&dense)[1].is_sign_positive());
    }

    /// Writes the table `id,x,g / 1,1.5,a / 2,2.5,b` as `dir/t.parquet`.
    fn small_parquet(dir: &Path) -> PathBuf {
        let mut df = DataFrame::new_infer_height(vec![
            polars::prelude::Column::new("id".into(), &[1i64, 2]),
            polars::prelude::Column::new("x".into(), &[1.5f64, 2.5]),
            polars::prelude::Column::new("g".into(), &["a", "b"]),
        ])
        .unwrap();
        let p = dir.join("t.parquet");
        write_dataframe(&p, &mut df, Format::Parquet).unwrap();
        p
    }

    #[test]
    fn parquet_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = load_table(&csv(dir.path(), "t.csv", "id,x,g\n1,1.5,a\n2,2.5,b\n")).unwrap();
        assert_eq!(load_table(&small_parquet(dir.path())).unwrap(), src);
    }

    /// A command reads only the columns it uses, from CSV and Parquet alike; a column it names that the file
    /// lacks (or names twice) means the whole file is read, so the error lists every column.
    #[test]
    fn only_the_columns_used_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), "t.csv", "id,livch,x,g,id2\n1,0,1.5,a,1\n2,3+,2.5,b,2\n3,1,0.5,a,3\n4,2,0.5,c,4\n");
        let names = |t: &Table| t.names().to_vec();
        let want = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (t, warnings) = load_with(&p, Some(&want(&["g", "id"]))).unwrap();
        assert_eq!(names(&t), ["id", "g"], "file order");
        assert!(warnings.is_empty(), "no warning about a column not read: {warnings:?}");
        let pick = |t: &Table, c: &[&str]| {
            c.iter().fold(Table::new(), |out, n| out.with(*n, t.column(n).unwrap().clone()).unwrap())
        };
        assert_eq!(t, pick(&load_table(&p).unwrap(), &["id", "g"]));
        let (t, warnings) = load_with(&p, Some(&want(&["id", "nope"]))).unwrap();
        assert_eq!(names(&t), ["id", "livch", "x", "g", "id2"]);
        assert_eq!(warnings.len(), 1, "the whole file was read");
        let e = t.column("nope").unwrap_err().to_string();
        assert!(e.contains("livch") && e.contains("id2"), "{e}");

        let q = small_parquet(dir.path());
        let t = load_columns(&q, &want(&["g", "x"])).unwrap();
        assert_eq!(names(&t), ["x", "g"]);
        assert_eq!(t, pick(&load_table(&q).unwrap(), &["x", "g"]));
        assert_eq!(names(&load_columns(&q, &want(&["g", "y"])).unwrap()), ["id", "x", "g"]);

        let p = csv(dir.path(), "r.csv", "id,x,x\n1,2,3\n");
        let t = load_columns(&p, &want(&["id", "x"])).unwrap();
        assert!(t.column("x").unwrap_err().to_string().contains("2 times"), "a repeated name is still named");
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
    fn mostly_numeric_text_is_text_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), "t.csv", "id,livch\n1,0\n2,1\n3,3+\n4,2\n");
        let (t, warnings) = load_table_with_warnings(&p).unwrap();
        assert!(matches!(t.column("livch").unwrap(), Column::Text(_)));
        assert_eq!(warnings.len(), 1);
        let w = &warnings[0];
        assert!(w.contains("`livch`") && w.contains("row 3") && w.contains("line 4") && w.contains("`3+`"), "{w}");
        let e = t.numeric("livch").unwrap_err().to_string();
        assert!(e.contains("`3+`") && e.contains("row 3"), "the first value that is not a number: {e}");
    }

    #[test]
    fn quoted_numbers_blanks_and_infinities_are_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), "t.csv", "id,x,y,z\n\"1\",1 ,Inf,-0\n\"2\",2,3,0\n");
        let (t, warnings) = load_table_with_warnings(&p).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(t.numeric("id").unwrap(), [1.0, 2.0]);
        assert_eq!(t.numeric("x").unwrap(), [1.0, 2.0]);
        assert_eq!(t.numeric("y").unwrap()[0], f64::INFINITY);
        assert!(t.numeric("z").unwrap()[0].is_sign_positive(), "-0 is read as 0");
    }

    #[test]
    fn numbers_in_a_locale_format_are_refused_when_used() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(
            dir.path(),
            "t.csv",
            "id,pupils,share,name\n1,\"1,059\",\"3,5\",a\n2,\"12,345,678\",\"4,25\",b\n3,87,1,c\n",
        );
        let (t, _) = load_table_with_warnings(&p).unwrap();
        for col in ["pupils", "share"] {
            let e = t.numeric(col).unwrap_err().to_string();
            assert!(e.contains(&format!("`{col}`")) && e.contains("thousands separator or a decimal comma"), "{e}");
        }
        assert!(t.column("pupils").unwrap_err().to_string().contains("row 1: `1,059`"));
        assert_eq!(t.numeric("id").unwrap(), [1.0, 2.0, 3.0], "other columns load");
        assert!(matches!(t.column("name").unwrap(), Column::Text(_)));
        assert_eq!(reading("1,059.25"), Reading::Formatted);
        assert_eq!(reading("-1,059"), Reading::Formatted);
        assert_eq!(reading("1,05,9"), Reading::Text);
        assert_eq!(reading("a,b"), Reading::Text);
    }

    #[test]
    fn long_integer_ids_stay_exact() {
        let dir = tempfile::tempdir().unwrap();
        // 2^53 + 1 and 2^53 + 3 are one float apart from 2^53; the 20-digit ids are beyond i64.
        let p = csv(
            dir.path(),
            "t.csv",
            "id,big,x\n9007199254740993,12345678901234567891,1\n9007199254740995,12345678901234567892,2\n",
        );
        let (t, _) = load_table_with_warnings(&p).unwrap();
        assert_eq!(strs(&t.unique_ids("id").unwrap()), ["9007199254740993", "9007199254740995"]);
        assert_eq!(strs(&t.unique_ids("big").unwrap()), ["12345678901234567891", "12345678901234567892"]);
        assert_eq!(t.numeric("x").unwrap(), [1.0, 2.0]);
        let q = csv(dir.path(), "q.csv", "id\n\"9007199254740993\"\n\"9007199254740995\"\n");
        assert_eq!(strs(&load_table(&q).unwrap().unique_ids("id").unwrap()), ["9007199254740993", "9007199254740995"]);
        // A float column with one large whole number stays numeric.
        let r = csv(dir.path(), "r.csv", "x\n1.5\n10000000000000000\n");
        assert_eq!(load_table(&r).unwrap().numeric("x").unwrap(), [1.5, 1e16]);
        // Text ids with leading zeros (a Parquet string column) stay text: `00123` is not `123`.
        let codes = [Some("00123"), Some("123")];
        let Converted::Column(c) = text_column(codes.into_iter(), "code", &r) else { panic!("converted") };
        assert_eq!(c, Column::Text(vec![Some("00123".into()), Some("123".into())]));
        let plain = [Some("7"), Some("123")];
        let Converted::Column(c) = text_column(plain.into_iter(), "code", &r) else { panic!("converted") };
        assert_eq!(c, Column::Numeric(vec![7.0, 123.0]));
    }

    #[test]
    fn repeated_header_names_are_unusable_but_do_not_stop_other_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), "t.csv", "id,x,x,y\n1,2,3,4\n2,5,6,7\n");
        let t = load_table(&p).unwrap();
        let e = t.numeric("x").unwrap_err().to_string();
        assert!(e.contains("`x`") && e.contains("2 times (columns 2, 3)"), "{e}");
        assert_eq!(t.numeric("y").unwrap(), [4.0, 7.0]);
        assert_eq!(t.names(), ["id", "y"]);
    }

    #[test]
    fn latin1_and_damaged_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.csv");
        std::fs::write(&p, b"id,r\xe9gion\n1,a\n").unwrap();
        let m = message(load_table(&p));
        assert!(m.contains("l.csv") && m.contains("line 1 is not UTF-8"), "{m}");
        let p = dir.path().join("m.csv");
        std::fs::write(&p, b"id,region\n1,a\n2,M\xe9diterran\xe9e\n").unwrap();
        let m = message(load_table(&p));
        assert!(m.contains("m.csv") && m.contains("not UTF-8"), "{m}");
        let p = dir.path().join("d.parquet");
        std::fs::write(&p, b"PAR1 this is not a parquet file PAR1").unwrap();
        let m = message(load_table(&p));
        assert!(m.contains("d.parquet") && m.contains("cannot read table"), "{m}");
        let m = message(load_table(dir.path()));
        assert!(m.contains("unknown table format") || m.contains("directory"), "{m}");
    }

    #[test]
    fn csv_and_parquet_give_the_same_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), "t.csv", "id,x,g,n\n1,1.5,a,2\n2,NA,b,\n3,-0.0,,4\n");
        let from_csv = load_table(&p).unwrap();
        let mut df = csv_options(None).try_into_reader_with_file_path(Some(p.clone())).unwrap().finish().unwrap();
        let q = dir.path().join("t.parquet");
        write_dataframe(&q, &mut df, Format::Parquet).unwrap();
        let from_parquet = load_table(&q).unwrap();
        assert_eq!(from_csv.names(), from_parquet.names());
        for name in from_csv.names() {
            let (a, b) = (from_csv.column(name).unwrap(), from_parquet.column(name).unwrap());
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "column {name}");
        }
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
    fn an_output_set_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "a file where a folder is needed").unwrap();
        let mut set = Outputs::new();
        set.add(dir.path().join("results.json"), "{}");
        set.add(blocker.join("figures/a.svg"), "<svg/>");
        assert!(set.commit().is_err());
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names, ["blocker"], "no output and no temporary file left");

        let input = dir.path().join("pupils.csv");
        std::fs::write(&input, "id\n1\n").unwrap();
        let mut set = Outputs::new();
        set.protect(&input);
        set.add(dir.path().join("./pupils.csv"), "overwritten");
        assert!(format!("{:#}", set.commit().unwrap_err()).contains("is an input"));
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "id\n1\n");

        let mut set = Outputs::new();
        set.add(dir.path().join("Figure.svg"), "a");
        set.add(dir.path().join("figure.svg"), "b");
        assert!(format!("{:#}", set.commit().unwrap_err()).contains("differ only in case"));

        let mut set = Outputs::new();
        set.add(dir.path().join("a.txt"), "a");
        set.add(dir.path().join("sub/b.txt"), "b");
        set.commit().unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/b.txt")).unwrap(), "b");
    }

    #[test]
    fn temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max on Linux is at most 2^22, so this process cannot exist; the second file is this process's,
        // the third that of a dead process but written a moment ago (perhaps by another node).
        let stale = dir.path().join(format!("{TEMP_PREFIX}999999999-abc"));
        let live = dir.path().join(format!("{TEMP_PREFIX}{}-abc", std::process::id()));
        let recent = dir.path().join(format!("{TEMP_PREFIX}999999998-abc"));
        for p in [&stale, &live, &recent] {
            std::fs::write(p, "left").unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for p in [&stale, &live] {
            File::options().write(true).open(p).unwrap().set_modified(two_hours_ago).unwrap();
        }
        write_text(&dir.path().join("out.txt"), "done").unwrap();
        assert_eq!(stale.exists(), !cfg!(target_os = "linux"));
        assert!(live.exists() && recent.exists());
    }

    #[test]
    fn output_paths_are_checked_before_computing() {
        let dir = tempfile::tempdir().unwrap();
        let input = csv(dir.path(), "in.csv", "id\n1\n");
        assert!(message(check_output_file(&input, &[input.as_path()])).contains("is an input"));
        assert!(message(check_output_file(dir.path(), &[input.as_path()])).contains("is a directory"));
        assert!(message(check_output_dir(&input)).contains("not a directory"));
        check_output_file(&dir.path().join("new.csv"), &[input.as_path()]).unwrap();
        check_output_dir(&dir.path().join("new")).unwrap();
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
