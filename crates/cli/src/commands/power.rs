//! `psmeval power`: the study's design simulated many times ([`psmeval_evaluation::power`]). Runs every
//! replicate here (`--jobs` threads), one shard of them (`--shard I/N`, for job arrays), merges shard files
//! (`--collect DIR`), or writes and submits a Slurm job array with a dependent collect job (`--slurm`).
//! Results, tables, figures and report are rendered in memory before the first file is written.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use psmeval_evaluation::power::{self, Design, PowerSettings, PowerShard};
use psmeval_evaluation::{Plan, PlanError, Study};
use sha2::{Digest, Sha256};

use crate::args::PowerArgs;
use crate::error::InputError;
use crate::progress::Progress;
use crate::table::{Outputs, load_table, write_text};

/// Runs `psmeval power` from its arguments.
pub fn run(a: &PowerArgs) -> Result<()> {
    if let Some(n) = a.jobs {
        if n == 0 {
            return Err(InputError::new("--jobs: give at least 1 thread").into());
        }
        // Ignore the error of a pool already built (the tests call `run` more than once per process).
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    let progress = Progress::new(a.quiet);
    if let Some(dir) = &a.collect {
        let out = a.out.clone().unwrap_or_else(|| dir.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf));
        let merged = read_shards(dir)?;
        return write_results(&out, &merged, &progress);
    }
    let (study_path, text) = study_source(a)?;
    let out = a.out.clone().unwrap_or_else(|| default_out(a));
    crate::table::check_output_dir(&out)?;
    let plan = plan(&study_path, &text)?;
    let at_study = |e: power::PowerError| InputError::new(format!("{}: {e}", study_path.display()));
    // The settings and the [simulation] table's own values are checked before any data are read (the
    // number of schools and lead schools only once the data have given theirs).
    let needs_data = !a.example && power::Design::needs_data(&plan);
    let mut settings = PowerSettings {
        replicates: a.replicates,
        effects: a.effects.clone(),
        seed: a.seed,
        design: Design::from_study(&plan),
    };
    match power::check_settings(&settings) {
        Err(power::PowerError::Setting { option, .. })
            if needs_data && (option == "simulation.leads" || option == "simulation.schools") => {}
        other => other.map_err(at_study)?,
    }
    let sha = sha256(text.as_bytes());
    if a.slurm {
        // Each array task estimates the design itself (deterministically: the same data give the same design,
        // and collect refuses shards whose designs differ), so the login node reads no data.
        return submit(a, &study_path, &text, &out);
    }
    if needs_data {
        settings.design = design_from_data(&study_path, &plan, &progress)?;
        power::check_settings(&settings).map_err(|e| {
            InputError::new(format!("{}: the design estimated from the study's data: {e}", study_path.display()))
        })?;
    }
    let (shard, shards) = a.shard.unwrap_or((0, 1));
    let units = power::shard_range(settings.replicates, shard, shards).count() * settings.effects.len();
    let step = progress.bar("simulating and analysing populations", units as u64);
    let run = power::run_shard(&plan, &sha, &settings, shard, shards, &|| step.inc(1)).map_err(at_study)?;
    step.finish();
    if a.shard.is_some() {
        let path = out.join(shard_name(shard, shards));
        write_text(&path, &(serde_json::to_string(&run)? + "\n"))?;
        progress.message(&format!("wrote {}", path.display()));
        return Ok(());
    }
    write_results(&out, &run, &progress)
}

/// The design estimated from the study's own tables (read relative to the study file) and calibrated by
/// pilot simulations ([`power::Design::from_data`]).
fn design_from_data(study_path: &Path, plan: &Plan, progress: &Progress) -> Result<Design> {
    let (schools_path, pupils_path) = super::evaluate::table_paths(study_path, &plan.study);
    let step = progress.step("loading the study's tables for its design");
    for p in [&schools_path, &pupils_path] {
        if !p.exists() {
            return Err(InputError::new(format!(
                "{}: no such file (`psmeval power` takes its design from the study's data; give the data, or set \
                 `from = \"defaults\"` in [simulation] to simulate the built-in design)",
                p.display()
            ))
            .into());
        }
    }
    let schools = load_table(&schools_path)?;
    let pupils = load_table(&pupils_path)?;
    step.finish();
    let step = progress.step("estimating the design: the study's impact model, then calibration pilots");
    let design = Design::from_data(plan, &schools, &pupils)
        .map_err(|e| super::evaluate::evaluation_error(&e, study_path, &schools_path))?;
    step.finish();
    Ok(design)
}

fn default_out(a: &PowerArgs) -> PathBuf {
    let stem = match &a.study {
        Some(s) => s.file_stem().map_or("study".into(), |s| s.to_string_lossy().to_string()),
        None => "example".into(),
    };
    PathBuf::from("out").join(format!("power-{stem}"))
}

/// The study file and its text (the example's, generated, for `--example`).
fn study_source(a: &PowerArgs) -> Result<(PathBuf, String)> {
    if a.example {
        let schools = a.schools.unwrap_or(psmeval_synth::SimConfig::default().schools);
        return Ok((PathBuf::from("example study"), crate::example::power_study_text(schools)));
    }
    let Some(path) = a.study.clone() else {
        return Err(InputError::new("give a study file, --example, or --collect DIR").into());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| InputError::new(format!("{}: cannot read the study file: {e}", path.display())))?;
    Ok((path, text))
}

fn plan(path: &Path, text: &str) -> Result<Plan> {
    let at = |e: PlanError| -> anyhow::Error {
        match e {
            PlanError::Invalid(_) => InputError::new(format!("{}:\n  {e}", path.display())).into(),
            _ => InputError::new(format!("{}: {e}", path.display())).into(),
        }
    };
    Plan::new(Study::from_toml(text).map_err(at)?).map_err(at)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn shard_name(i: usize, n: usize) -> String {
    format!("shard-{i:04}-of-{n:04}.json")
}

/// Summarizes a whole run and writes results.json, power.csv, figures and the report.
fn write_results(out: &Path, run: &PowerShard, progress: &Progress) -> Result<()> {
    let step = progress.step("rendering results, figures and report");
    let results = power::summarize(run);
    let files = psmeval_report::render_power(&results)?;
    let json = serde_json::to_string_pretty(&results)? + "\n";
    step.finish();
    let mut outputs = Outputs::new();
    outputs.add_artifacts(out, &files);
    outputs.add(out.join("results.json"), json);
    outputs.commit()?;
    progress.message(&format!("wrote {}", out.display()));
    Ok(())
}

/// Reads and merges every `shard-*.json` in `dir`; any unreadable, foreign, missing or duplicated shard is an
/// error naming it, and nothing is written.
fn read_shards(dir: &Path) -> Result<PowerShard> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InputError::new(format!("{}: cannot read the shard folder: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("shard-") && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(InputError::new(format!("{}: no shard-*.json files to collect", dir.display())).into());
    }
    let mut shards = Vec::with_capacity(paths.len());
    for p in &paths {
        let text = std::fs::read_to_string(p)
            .map_err(|e| InputError::new(format!("{}: cannot read the shard: {e}", p.display())))?;
        let shard: PowerShard = serde_json::from_str(&text)
            .map_err(|e| InputError::new(format!("{}: not a psmeval power shard: {e}", p.display())))?;
        shards.push((p.display().to_string(), shard));
    }
    power::collect(shards).map_err(|e| InputError::new(e.to_string()).into())
}

/// The batch scripts of a Slurm run: the job array (one shard per task) and the collect job.
fn batch_scripts(a: &PowerArgs, exe: &Path, study: &Path, out: &Path) -> (String, String) {
    let shards = out.join("shards");
    let logs = out.join("slurm");
    let effects: Vec<String> = a.effects.iter().map(|e| e.to_string()).collect();
    let cpus = a.jobs.unwrap_or(1);
    let mut head = String::from("#!/bin/bash\n");
    if let Some(p) = &a.partition {
        head += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = &a.time {
        head += &format!("#SBATCH --time={t}\n");
    }
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let array = format!(
        "{head}#SBATCH --job-name=psmeval-power\n#SBATCH --array=0-{last}\n#SBATCH --cpus-per-task={cpus}\n\
         #SBATCH --output={log}\n\
         # One shard of `psmeval power` per array task; the collect job merges them.\n\
         set -euo pipefail\n\
         exec {exe} power {study} --replicates {r} --effects={effects} --seed {seed} --jobs {cpus} \\\n  \
         --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --out {shards} --quiet\n",
        last = a.array - 1,
        log = q(&logs.join("power-%A_%a.log")),
        exe = q(exe),
        study = q(study),
        r = a.replicates,
        effects = effects.join(","),
        seed = a.seed,
        n = a.array,
        shards = q(&shards),
    );
    let collect = format!(
        "{head}#SBATCH --job-name=psmeval-power-collect\n#SBATCH --output={log}\n\
         # Merges the shards of the job array into results.json, power.csv, figures and report.\n\
         set -euo pipefail\n\
         exec {exe} power --collect {shards} --out {out} --quiet\n",
        log = q(&logs.join("collect-%j.log")),
        exe = q(exe),
        shards = q(&shards),
        out = q(out),
    );
    (array, collect)
}

fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Writes the batch scripts under `out/slurm/` (and the example's study file) and submits them, or prints
/// them with `--dry-run`.
fn submit(a: &PowerArgs, study_path: &Path, text: &str, out: &Path) -> Result<()> {
    if a.array == 0 {
        return Err(InputError::new("--array: give at least 1 task").into());
    }
    let exe = std::env::current_exe().context("cannot locate the psmeval executable for the batch script")?;
    let abs = |p: &Path| -> Result<PathBuf> {
        Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
    };
    let out = abs(out)?;
    let study = if a.example { out.join("study.toml") } else { abs(study_path)? };
    let (array, collect) = batch_scripts(a, &exe, &study, &out);
    if a.dry_run {
        println!(
            "# {}\n{array}\n# {}\n{collect}",
            out.join("slurm/power.sbatch").display(),
            out.join("slurm/collect.sbatch").display()
        );
        return Ok(());
    }
    let sbatch = |args: &[&str]| -> Result<String> {
        let output = Command::new("sbatch").args(args).output().map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "sbatch not found on PATH: --slurm needs Slurm's sbatch (run it on the cluster's login node, or use \
                 --dry-run to see the batch scripts)"
                    .to_string()
            } else {
                format!("cannot run sbatch: {e}")
            };
            InputError::new(why)
        })?;
        if !output.status.success() {
            anyhow::bail!("sbatch {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    if a.example {
        write_text(&study, text)?;
    }
    std::fs::create_dir_all(out.join("shards"))
        .with_context(|| format!("cannot create {}", out.join("shards").display()))?;
    let (array_path, collect_path) = (out.join("slurm/power.sbatch"), out.join("slurm/collect.sbatch"));
    write_text(&array_path, &array)?;
    write_text(&collect_path, &collect)?;
    let id = sbatch(&["--parsable", &array_path.display().to_string()])?;
    let id = id.split(';').next().unwrap_or_default().to_string();
    eprintln!("psmeval: submitted job array {id} ({} tasks)", a.array);
    let dependency = format!("--dependency=afterok:{id}");
    let collect_path = collect_path.display().to_string();
    let mut args = vec!["--parsable", &dependency];
    if a.wait {
        args.push("--wait");
    }
    args.push(&collect_path);
    let cid = sbatch(&args)?;
    eprintln!(
        "psmeval: submitted collect job {} (after {id}); results in {}",
        cid.split(';').next().unwrap_or_default(),
        out.display()
    );
    Ok(())
}
