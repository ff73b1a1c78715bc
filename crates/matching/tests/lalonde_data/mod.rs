//! Shared by the propensity and balance tests: MatchIt's `lalonde` data (tests/data/lalonde.csv, written by
//! tests/reference/propensity_balance.R) and the R reference values (tests/reference/propensity_balance.json).
#![allow(dead_code)]

use ndarray::Array2;
use serde_json::Value;

/// The lalonde columns the tests use.
pub struct Lalonde {
    pub treat: Vec<f64>,
    pub age: Vec<f64>,
    pub educ: Vec<f64>,
    pub race: Vec<String>,
    pub married: Vec<f64>,
    pub nodegree: Vec<f64>,
    pub re74: Vec<f64>,
    pub re75: Vec<f64>,
}

pub fn load() -> Lalonde {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lalonde.csv");
    let text = std::fs::read_to_string(path).expect("tests/data/lalonde.csv");
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(|s| s.trim_matches('"').to_string()).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("column {name}"));
    let (ct, ca, ce, cr, cm, cn, c4, c5) =
        (col("treat"), col("age"), col("educ"), col("race"), col("married"), col("nodegree"), col("re74"), col("re75"));
    let mut d = Lalonde {
        treat: vec![],
        age: vec![],
        educ: vec![],
        race: vec![],
        married: vec![],
        nodegree: vec![],
        re74: vec![],
        re75: vec![],
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').map(|s| s.trim_matches('"')).collect();
        let num = |j: usize| f[j].parse::<f64>().unwrap();
        d.treat.push(num(ct));
        d.age.push(num(ca));
        d.educ.push(num(ce));
        d.race.push(f[cr].to_string());
        d.married.push(num(cm));
        d.nodegree.push(num(cn));
        d.re74.push(num(c4));
        d.re75.push(num(c5));
    }
    d
}

/// A design matrix from named columns.
pub fn matrix(cols: &[(&str, Vec<f64>)]) -> (Array2<f64>, Vec<String>) {
    let n = cols[0].1.len();
    let mut x = Array2::zeros((n, cols.len()));
    for (j, (_, c)) in cols.iter().enumerate() {
        for i in 0..n {
            x[[i, j]] = c[i];
        }
    }
    (x, cols.iter().map(|(s, _)| s.to_string()).collect())
}

pub fn indicator(race: &[String], level: &str) -> Vec<f64> {
    race.iter().map(|r| f64::from(u8::from(r == level))).collect()
}

pub fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/propensity_balance.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("propensity_balance.json")).unwrap()
}

/// A JSON array of numbers (null → NaN).
pub fn nums(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        _ => panic!("not numbers: {v}"),
    }
}

pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        Value::String(s) => vec![s.clone()],
        _ => vec![],
    }
}
