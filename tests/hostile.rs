//! The hostile-input corpus (`tests/hostile/cases.txt`): malformed files, formulas, options and study files,
//! each run through the psmeval binary. Every case must finish within a time limit (no hang), must not panic
//! or abort, must exit with the code given (2 when the user's input is at fault, 0 when the input is valid
//! after all) and must say what is wrong in the words given; a failed run must leave no output behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest time one case may take (debug build, busy 2-core machine); a hang is a failure.
const LIMIT: Duration = Duration::from_secs(120);

struct Case {
    name: String,
    args: Vec<String>,
    exit: i32,
    stderr: Vec<String>,
    stdout: Vec<String>,
}

/// Splits a command line on blanks, keeping double-quoted parts together (no escapes).
fn split_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn cases(text: &str) -> Vec<Case> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let lines: Vec<&str> = block.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
        if lines.is_empty() {
            continue;
        }
        let mut case = Case { name: String::new(), args: vec![], exit: -1, stderr: vec![], stdout: vec![] };
        for l in lines {
            let (key, value) = l.split_once(": ").unwrap_or_else(|| panic!("bad line in cases.txt: {l}"));
            match key {
                "name" => case.name = value.to_string(),
                "args" => case.args = split_args(value),
                "exit" => case.exit = value.parse().unwrap(),
                "stderr" => case.stderr.push(value.to_string()),
                "stdout" => case.stdout.push(value.to_string()),
                other => panic!("unknown key `{other}` in cases.txt"),
            }
        }
        assert!(!case.name.is_empty() && !case.args.is_empty() && case.exit >= 0, "incomplete case: {block}");
        out.push(case);
    }
    out
}

fn psmeval(args: &[String]) -> (Option<i32>, String, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_psmeval"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psmeval runs");
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut se, &mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (t_out.join().unwrap(), t_err.join().unwrap());
    match status {
        Some(s) => (s.code(), stdout, stderr, start.elapsed()),
        None => (Some(-999), stdout, stderr, start.elapsed()),
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn every_hostile_input_gets_a_clear_error_and_no_panic_hang_or_partial_output() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hostile").canonicalize().unwrap();
    let cases = cases(&std::fs::read_to_string(corpus.join("cases.txt")).unwrap());
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let (code, _, err, _) = psmeval(&[
        "simulate".into(),
        "--preset".into(),
        "small".into(),
        "--schools".into(),
        "120".into(),
        "--leads".into(),
        "10".into(),
        "--out".into(),
        data.display().to_string(),
    ]);
    assert_eq!(code, Some(0), "simulate: {err}");
    let corpus_before: Vec<(PathBuf, Vec<u8>)> =
        files_under(&corpus).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    let mut failures = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let out = work.path().join(format!("out-{k}"));
        std::fs::create_dir_all(&out).unwrap();
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                let mut a = a
                    .replace("{corpus}", &corpus.display().to_string())
                    .replace("{out}", &out.display().to_string())
                    .replace("{data}", &data.display().to_string());
                if let Some(name) = a.strip_prefix("{study:").and_then(|s| s.strip_suffix('}')) {
                    let text = std::fs::read_to_string(corpus.join(name)).unwrap();
                    let path = out.join(name);
                    std::fs::write(&path, text.replace("{data}", &data.display().to_string())).unwrap();
                    a = path.display().to_string();
                }
                a
            })
            .collect();
        let (code, stdout, stderr, took) = psmeval(&args);
        let mut problems = Vec::new();
        if code == Some(-999) {
            problems.push(format!("did not finish within {LIMIT:?}"));
        }
        if stderr.contains("panicked") || code == Some(101) || code.is_none() {
            problems.push(format!("panicked or was killed by a signal (exit {code:?})"));
        }
        if code != Some(case.exit) {
            problems.push(format!("exit {code:?}, expected {}", case.exit));
        }
        for want in &case.stderr {
            if !stderr.contains(want.as_str()) {
                problems.push(format!("stderr lacks `{want}`"));
            }
        }
        for want in &case.stdout {
            if !stdout.contains(want.as_str()) {
                problems.push(format!("stdout lacks `{want}`"));
            }
        }
        if case.exit != 0 {
            let left: Vec<PathBuf> =
                files_under(&out).into_iter().filter(|p| p.extension().is_none_or(|e| e != "toml")).collect();
            if !left.is_empty() {
                problems.push(format!("a failed run left outputs: {left:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case `{}` ({took:.1?}): {}\n    stderr: {}\n    stdout: {}",
                case.name,
                problems.join("; "),
                stderr.trim().chars().take(600).collect::<String>(),
                stdout.trim().chars().take(300).collect::<String>()
            ));
        }
    }
    for (p, bytes) in corpus_before {
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "{} was changed by a run", p.display());
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
