//! Command-line arguments (clap derive). Each subcommand's options are documented here; `psmeval <command>
//! --help` prints them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use psmeval_frame::RowFilter;

use crate::table::Format;

/// Propensity-score matched, multilevel evaluations of school programmes.
///
/// psmeval matches treatment schools to contrast schools on propensity scores (with MatchIt's rules), fits
/// multilevel models of pupils in schools (with lme4's numbers), and writes the tables and figures of an
/// evaluation report.
#[derive(Debug, Parser)]
#[command(name = "psmeval", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// psmeval's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a synthetic England-like primary-school population (schools, pupils, truth.json).
    Simulate(SimulateArgs),
    /// Fit a propensity score, match treatment units to controls (MatchIt's rules) and report balance.
    Match(MatchArgs),
    /// Fit a linear or logistic mixed model (lme4 formula syntax) and print an lme4-like summary.
    Lmm(LmmArgs),
    /// Run a whole evaluation from a study file (or the built-in example) and write its report.
    Evaluate(EvaluateArgs),
    /// Rebuild an evaluation's report (tables, figures, report.md, report.html) from its results.json.
    Report(ReportArgs),
    /// Simulate the study's design many times: power curves, MDES, bias and coverage (on all cores, in
    /// shards, or as a Slurm job array).
    Power(PowerArgs),
    /// Every school's family of the k most similar schools on intake variables (standardized or Mahalanobis
    /// distance, optionally within a grouping such as region).
    Families(FamiliesArgs),
    /// Each school's contextual value-added (its random intercept in a pupil-level mixed model) with a 95%
    /// interval, flagged above / in line / below expectation, and compared with its family of schools.
    #[command(name = "value-added")]
    ValueAdded(ValueAddedArgs),
    /// The attainment gap between pupils with and without a characteristic (FSM, EAL, SEN) in each area,
    /// with school-clustered intervals, and how many more pupils would reach the standard at the best
    /// area's gap.
    Gaps(GapsArgs),
}

/// Options of `psmeval gaps`.
#[derive(Debug, Args)]
pub struct GapsArgs {
    /// Pupil table (CSV or Parquet).
    #[arg(long, value_name = "FILE", required_unless_present = "example", conflicts_with = "example")]
    pub pupils: Option<PathBuf>,
    /// School table, for an area column that is a school's (joined on --school).
    #[arg(long, value_name = "FILE", conflicts_with = "example")]
    pub schools: Option<PathBuf>,
    /// Use the built-in synthetic population (national scale): KS2 pupils in the last year, the expected
    /// standard, FSM, by region.
    #[arg(long)]
    pub example: bool,
    /// The outcome column (0/1 for the counterfactual, or a score).
    #[arg(long, value_name = "COLUMN", default_value = "expected")]
    pub outcome: String,
    /// The 0/1 pupil characteristic.
    #[arg(long, value_name = "COLUMN", default_value = "fsm")]
    pub group: String,
    /// The area column (in the pupil table, or the school table).
    #[arg(long, value_name = "COLUMN", default_value = "region")]
    pub by: String,
    /// The school id column (clusters; the join to the school table).
    #[arg(long, value_name = "COLUMN", default_value = "school_id")]
    pub school: String,
    /// Only pupils with COLUMN equal to VALUE (repeatable), e.g. `--where year=2017 --where key_stage=2`.
    #[arg(long = "where", value_name = "COLUMN=VALUE", value_parser = parse_filter)]
    pub filters: Vec<RowFilter>,
    /// Output directory (default: out/gaps).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `psmeval value-added`.
#[derive(Debug, Args)]
pub struct ValueAddedArgs {
    /// Pupil table (CSV or Parquet), one row per pupil.
    #[arg(long, value_name = "FILE", required_unless_present = "example", conflicts_with = "example")]
    pub pupils: Option<PathBuf>,
    /// Use the built-in synthetic population (national scale): KS2 maths in 2017 on prior attainment, FSM,
    /// EAL, SEN and sex.
    #[arg(long)]
    pub example: bool,
    /// The model in lme4 syntax with a random intercept for the schools (default with --example:
    /// `maths ~ prior + fsm + eal + sen + female + (1 | school_id)`).
    #[arg(long, required_unless_present = "example")]
    pub formula: Option<String>,
    /// The school column of the random intercept (default: the first random term's grouping factor).
    #[arg(long, value_name = "COLUMN")]
    pub school: Option<String>,
    /// Only pupils with COLUMN equal to VALUE (repeatable), e.g. `--where year=2017 --where key_stage=2`.
    #[arg(long = "where", value_name = "COLUMN=VALUE", value_parser = parse_filter)]
    pub filters: Vec<RowFilter>,
    /// Pupil columns whose groups' value-added is estimated (comma-separated), e.g. `fsm,eal,sen,female`
    /// (default with --example: those four).
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// An area column (pupil column, or a column of --schools): the groups within each area too, and each
    /// area's pupils as a whole (default with --example: region).
    #[arg(long, value_name = "COLUMN")]
    pub by: Option<String>,
    /// School table (CSV or Parquet) holding the --by column, keyed by the school column of the model.
    #[arg(long, value_name = "FILE", conflicts_with = "example")]
    pub schools: Option<PathBuf>,
    /// The families.csv of `psmeval families` (columns school_id, member_id): compare each school with its
    /// family.
    #[arg(long, value_name = "FILE")]
    pub family_file: Option<PathBuf>,
    /// The school highlighted in the figure and described in the report (default: the first school).
    #[arg(long, value_name = "ID")]
    pub highlight: Option<String>,
    /// Output directory (default: out/value-added).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `COLUMN=VALUE`.
fn parse_filter(s: &str) -> Result<RowFilter, String> {
    match s.split_once('=') {
        Some((c, v)) if !c.trim().is_empty() => {
            Ok(RowFilter { column: c.trim().to_string(), value: v.trim().to_string() })
        }
        _ => Err(format!("`{s}` is not COLUMN=VALUE")),
    }
}

/// Options of `psmeval families`.
#[derive(Debug, Args)]
pub struct FamiliesArgs {
    /// School table (CSV or Parquet), one row per school.
    #[arg(long, value_name = "FILE", required_unless_present = "example", conflicts_with = "example")]
    pub schools: Option<PathBuf>,
    /// Use the schools of the built-in synthetic population (national scale, 16,800 schools).
    #[arg(long)]
    pub example: bool,
    /// The id column.
    #[arg(long, value_name = "COLUMN", default_value = "school_id")]
    pub id: String,
    /// Intake variables (comma-separated, numeric).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "VARS",
        default_values_t = ["pct_fsm", "pct_eal", "pct_sen", "idaci", "prior_attainment"].map(String::from)
    )]
    pub vars: Vec<String>,
    /// Members per family.
    #[arg(long, default_value_t = 11, value_parser = bounded::<1, 1000>)]
    pub k: usize,
    /// Distance between schools.
    #[arg(long, value_enum, default_value_t = MetricArg::Mahalanobis)]
    pub metric: MetricArg,
    /// Form families only among schools with the same value of this column (e.g. region).
    #[arg(long, value_name = "COLUMN")]
    pub within: Option<String>,
    /// The 0/1 column of the propensity model (`--metric propensity`), e.g. `lead`.
    #[arg(long, value_name = "COLUMN")]
    pub treat: Option<String>,
    /// The school whose family the report shows (default: the first school).
    #[arg(long, value_name = "ID")]
    pub school: Option<String>,
    /// Output directory (default: out/families).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No message on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Distances of `psmeval families`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricArg {
    /// Mahalanobis on the covariance of the variables over all schools.
    Mahalanobis,
    /// Euclidean on the variables standardized by their SDs.
    Standardized,
    /// Difference of linear propensity scores of the --treat column (logistic regression on the variables).
    Propensity,
}

/// Options of `psmeval power`.
#[derive(Debug, Args)]
pub struct PowerArgs {
    /// The study file (TOML) whose matching and analysis are simulated; its `[simulation]` table sets the
    /// design (schools, lead schools, cohort size and variance).
    #[arg(value_name = "STUDY", required_unless_present_any = ["example", "collect"])]
    pub study: Option<PathBuf>,
    /// Use the built-in example study (national scale unless --schools is given).
    #[arg(long, conflicts_with_all = ["study", "collect"])]
    pub example: bool,
    /// With --example: schools per simulated population (default: national scale, 16,800).
    #[arg(long, value_name = "N", requires = "example", value_parser = bounded::<1, MAX_SCHOOLS>)]
    pub schools: Option<usize>,
    /// Replicates (simulated populations) per effect.
    #[arg(long, value_name = "R", default_value_t = 200, value_parser = bounded_u64::<1, 1_000_000>)]
    pub replicates: u64,
    /// Simulated programme effects, latent pupil SD units, comma-separated.
    #[arg(
        long,
        value_name = "E,E,…",
        value_delimiter = ',',
        allow_negative_numbers = true,
        default_values_t = [0.0, 0.05, 0.10, 0.15, 0.20]
    )]
    pub effects: Vec<f64>,
    /// Master seed: replicate r's population is seeded from (seed, r), so results do not depend on --jobs or
    /// on how the run is sharded.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N", value_parser = bounded::<1, 1024>)]
    pub jobs: Option<usize>,
    /// Output directory (default: out/power-STUDY, or out/power-example with --example). With
    /// --shard the shard file is written here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run only shard I of N (0-based), writing `shard-I-of-N.json` to --out (for job arrays; merge with
    /// --collect).
    #[arg(long, value_name = "I/N", value_parser = parse_shard, conflicts_with = "collect")]
    pub shard: Option<(usize, usize)>,
    /// Merge the shard files in DIR into the results and report (written to --out, default DIR's parent).
    #[arg(long, value_name = "DIR")]
    pub collect: Option<PathBuf>,
    /// Submit the run to Slurm as a job array (one shard per task) followed by a collect job.
    #[arg(long, conflicts_with_all = ["shard", "collect"])]
    pub slurm: bool,
    /// With --slurm: array tasks (shards).
    #[arg(long, value_name = "N", default_value_t = 4, requires = "slurm", value_parser = bounded::<1, 10_000>)]
    pub array: usize,
    /// With --slurm: the partition.
    #[arg(long, value_name = "P", requires = "slurm")]
    pub partition: Option<String>,
    /// With --slurm: time limit per task (Slurm's format, e.g. 01:00:00).
    #[arg(long, value_name = "T", requires = "slurm")]
    pub time: Option<String>,
    /// With --slurm: print the batch scripts instead of submitting them.
    #[arg(long, requires = "slurm")]
    pub dry_run: bool,
    /// With --slurm: wait until the collect job has finished (sbatch --wait).
    #[arg(long, requires = "slurm")]
    pub wait: bool,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Parses `I/N` with `I < N`.
/// The most schools a simulated population may have (England has about 16,800 primary schools).
pub const MAX_SCHOOLS: usize = 1_000_000;
/// The most controls per treated unit (`--ratio`).
pub const MAX_RATIO: usize = psmeval_evaluation::plan::MAX_RATIO;

/// An integer option in `LO..=HI`.
fn bounded<const LO: usize, const HI: usize>(s: &str) -> Result<usize, String> {
    let v: usize = s.trim().parse().map_err(|_| format!("`{s}` is not a whole number"))?;
    if (LO..=HI).contains(&v) { Ok(v) } else { Err(format!("{v} is outside {LO}..={HI}")) }
}

/// [`bounded`] for `u64` options.
fn bounded_u64<const LO: u64, const HI: u64>(s: &str) -> Result<u64, String> {
    let v: u64 = s.trim().parse().map_err(|_| format!("`{s}` is not a whole number"))?;
    if (LO..=HI).contains(&v) { Ok(v) } else { Err(format!("{v} is outside {LO}..={HI}")) }
}

/// An academic year between 1900 and 2200.
fn year(s: &str) -> Result<i32, String> {
    let v: i32 = s.trim().parse().map_err(|_| format!("`{s}` is not a year"))?;
    if (1900..=2200).contains(&v) { Ok(v) } else { Err(format!("{v} is not a year between 1900 and 2200")) }
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("`{s}` is not of the form I/N (e.g. 0/4)"))?;
    let i: usize = i.trim().parse().map_err(|_| format!("`{i}` in `{s}` is not a shard index"))?;
    let n: usize = n.trim().parse().map_err(|_| format!("`{n}` in `{s}` is not a number of shards"))?;
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: the index must be below the number of shards (0..{n})"));
    }
    Ok((i, n))
}

/// Options of `psmeval simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Directory to write `schools.<ext>`, `pupils.<ext>` and `truth.json` into (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A named size: `national` (16,800 schools) or `small` (1,000 schools, for tests and quick looks).
    #[arg(long, value_enum, default_value_t = Preset::National)]
    pub preset: Preset,
    /// Number of schools (overrides the preset).
    #[arg(long, value_name = "N", value_parser = bounded::<1, MAX_SCHOOLS>)]
    pub schools: Option<usize>,
    /// Number of lead (treated) schools.
    #[arg(long, value_name = "K", default_value_t = 47, value_parser = bounded::<1, MAX_SCHOOLS>)]
    pub leads: usize,
    /// First academic year, as the year it ends in (2013 = 2012/13).
    #[arg(long, default_value_t = 2013, value_parser = year, allow_negative_numbers = true)]
    pub first_year: i32,
    /// Last academic year (2017 = 2016/17).
    #[arg(long, default_value_t = 2017, value_parser = year, allow_negative_numbers = true)]
    pub last_year: i32,
    /// First year in which the programme affects lead-school pupils.
    #[arg(long, default_value_t = 2015, value_parser = year, allow_negative_numbers = true)]
    pub programme_start: i32,
    /// True programme effect in pupil-level SD units.
    #[arg(long, value_name = "D", default_value_t = 0.10, allow_negative_numbers = true)]
    pub effect: f64,
    /// SD of school-by-year cohort shocks (latent SD; one shock per school, year and key stage).
    #[arg(long, value_name = "SD", default_value_t = 0.10, allow_negative_numbers = true)]
    pub cohort_sd: f64,
    /// Pre-programme trend of the lead schools (latent SD per year, reaching 0 in the last pre year).
    #[arg(long, value_name = "SD", default_value_t = 0.0, allow_negative_numbers = true)]
    pub pretrend: f64,
    /// SD of the programme effect across lead schools (latent SD).
    #[arg(long, value_name = "SD", default_value_t = 0.0, allow_negative_numbers = true)]
    pub effect_sd: f64,
    /// SD of the school random intercepts (latent SD).
    #[arg(long, value_name = "SD", default_value_t = 0.30, allow_negative_numbers = true)]
    pub school_sd: f64,
    /// SD of the school random slopes per year (latent SD).
    #[arg(long, value_name = "SD", default_value_t = 0.04, allow_negative_numbers = true)]
    pub slope_sd: f64,
    /// SD of the pupil-level residual (latent SD).
    #[arg(long, value_name = "SD", default_value_t = 0.72, allow_negative_numbers = true)]
    pub pupil_sd: f64,
    /// Random seed; the same arguments and seed give byte-identical files.
    #[arg(long, value_name = "S", default_value_t = 20_130_901)]
    pub seed: u64,
    /// Output format of the tables.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
}

/// Population sizes for `simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// About 16,800 schools and 600,000 pupils per year group.
    National,
    /// 1,000 schools.
    Small,
}

/// Matching options of `psmeval match`: the options of the `[matching]` table of a study file, with the same
/// names ([`psmeval_matching::MatchSpec`]).
#[derive(Debug, Clone, PartialEq, Args)]
pub struct MatchOptions {
    /// Propensity-score formula, R style: `lead ~ pct_fsm + prior_attainment + factor(region)`.
    #[arg(long)]
    pub formula: String,
    /// Matching method.
    #[arg(long, value_enum, default_value_t = MethodArg::Nearest)]
    pub method: MethodArg,
    /// Propensity model link and distance, as MatchIt's `link`: `logit`/`probit` match on the score,
    /// `linear-logit`/`linear-probit` on the linear predictor.
    #[arg(long, value_enum, default_value_t = LinkArg::Logit)]
    pub link: LinkArg,
    /// Use this column as the distance instead of fitting a propensity model.
    #[arg(long, value_name = "COLUMN")]
    pub distance_column: Option<String>,
    /// Controls per treated unit (k:1 matching).
    #[arg(long, default_value_t = 1, value_parser = bounded::<1, MAX_RATIO>)]
    pub ratio: usize,
    /// Match with replacement (a control may serve several treated units).
    #[arg(long)]
    pub replace: bool,
    /// Order in which treated units are matched (MatchIt's `m.order`).
    #[arg(long, value_enum, default_value_t = OrderArg::Largest)]
    pub order: OrderArg,
    /// Caliper in standard deviations of the distance (MatchIt's `std.caliper = TRUE`).
    #[arg(long, value_name = "SD", allow_negative_numbers = true)]
    pub caliper: Option<f64>,
    /// Match exactly on these variables (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "VARS")]
    pub exact: Vec<String>,
    /// Match on the Mahalanobis distance of these covariates within the propensity caliper (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "VARS")]
    pub mahvars: Vec<String>,
    /// Discard units outside the common support of the distance.
    #[arg(long, value_enum, default_value_t = DiscardArg::None)]
    pub discard: DiscardArg,
    /// Seed for `--order random`.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Matching methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MethodArg {
    /// Greedy nearest-neighbour matching (MatchIt's `method = "nearest"`).
    #[default]
    Nearest,
    /// Optimal matching: minimum total distance (optmatch's `pairmatch`, k:1).
    Optimal,
}

/// Propensity links and distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LinkArg {
    /// Logistic regression; distance = score.
    #[default]
    Logit,
    /// Probit regression; distance = score.
    Probit,
    /// Logistic regression; distance = linear predictor (logit of the score).
    LinearLogit,
    /// Probit regression; distance = linear predictor.
    LinearProbit,
}

/// Matching orders (MatchIt's `m.order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OrderArg {
    /// Highest distance first.
    #[default]
    Largest,
    /// Lowest distance first.
    Smallest,
    /// Random order (seeded).
    Random,
    /// Data order.
    Data,
    /// Closest pairs first.
    Closest,
}

/// Common-support discarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DiscardArg {
    /// Keep every unit.
    #[default]
    None,
    /// Discard treated units outside the controls' range.
    Treated,
    /// Discard controls outside the treated units' range.
    Control,
    /// Both.
    Both,
}

impl MatchOptions {
    /// The library's specification of these options.
    pub fn spec(&self) -> psmeval_matching::MatchSpec {
        use psmeval_matching::{CommonSupport, DistanceLink, Method, Order};
        psmeval_matching::MatchSpec {
            formula: self.formula.clone(),
            method: match self.method {
                MethodArg::Nearest => Method::Nearest,
                MethodArg::Optimal => Method::Optimal,
            },
            link: match self.link {
                LinkArg::Logit => DistanceLink::Logit,
                LinkArg::Probit => DistanceLink::Probit,
                LinkArg::LinearLogit => DistanceLink::LinearLogit,
                LinkArg::LinearProbit => DistanceLink::LinearProbit,
            },
            distance_column: self.distance_column.clone(),
            ratio: self.ratio,
            replace: self.replace,
            order: match self.order {
                OrderArg::Largest => Order::Largest,
                OrderArg::Smallest => Order::Smallest,
                OrderArg::Random => Order::Random,
                OrderArg::Data => Order::Data,
                OrderArg::Closest => Order::Closest,
            },
            caliper: self.caliper,
            exact: self.exact.clone(),
            mahvars: self.mahvars.clone(),
            discard: match self.discard {
                DiscardArg::None => CommonSupport::None,
                DiscardArg::Treated => CommonSupport::Treated,
                DiscardArg::Control => CommonSupport::Control,
                DiscardArg::Both => CommonSupport::Both,
            },
            seed: self.seed,
        }
    }
}

/// Options of `psmeval match`.
#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Unit table (CSV or Parquet), one row per unit (school).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Id column of the unit table (values must be unique).
    #[arg(long, value_name = "COLUMN")]
    pub id: String,
    /// The matching options.
    #[command(flatten)]
    pub spec: MatchOptions,
    /// Matched units: id, treated, distance, weight, subclass (CSV or Parquet by extension).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Summary as JSON: sample sizes, propensity model, matched sets, unmatched treated units, balance.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Love plot (SVG or PNG by extension).
    #[arg(long, value_name = "FILE")]
    pub love_plot: Option<PathBuf>,
    /// Distance distributions before and after matching (SVG or PNG by extension).
    #[arg(long, value_name = "FILE")]
    pub score_plot: Option<PathBuf>,
}

/// Options of `psmeval evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The study file (TOML); see data/example-study.toml and the README.
    #[arg(value_name = "STUDY", required_unless_present = "example")]
    pub study: Option<PathBuf>,
    /// Simulate the built-in example (national scale unless --schools is given), write its study file and
    /// data under --out, and evaluate it.
    #[arg(long, conflicts_with = "study")]
    pub example: bool,
    /// Output directory (default: out/STUDY, STUDY being the study file name without its extension, or out/example with --example).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With --example: number of schools to simulate (default: national scale, 16,800).
    #[arg(long, value_name = "N", requires = "example", value_parser = bounded::<1, MAX_SCHOOLS>)]
    pub schools: Option<usize>,
    /// With --example: the true programme effect in pupil SD units.
    #[arg(long, value_name = "D", default_value_t = 0.10, allow_negative_numbers = true, requires = "example")]
    pub effect: f64,
    /// With --example: the simulation seed.
    #[arg(long, value_name = "S", default_value_t = 20_130_901, requires = "example")]
    pub seed: u64,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `psmeval lmm`.
#[derive(Debug, Args)]
pub struct LmmArgs {
    /// Data table (CSV or Parquet), one row per observation (pupil).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Model formula in lme4 syntax, e.g. `maths ~ factor(year) * lead + fsm + (1 | school_id)`.
    #[arg(long)]
    pub formula: String,
    /// Fit by maximum likelihood instead of REML.
    #[arg(long)]
    pub ml: bool,
    /// Response family: `gaussian` (linear mixed model) or `binomial` (logistic mixed model, 0/1 or
    /// cbind(successes, failures) responses).
    #[arg(long, value_enum, default_value_t = FamilyArg::Gaussian)]
    pub family: FamilyArg,
    /// Adaptive Gauss–Hermite quadrature points for binomial models (1 = Laplace, as glmer's nAGQ).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = bounded::<1, 25>)]
    pub nagq: usize,
    /// Prior weights column: lme4's `weights` for linear models (residual variance σ²/w); for binomial models
    /// the number of trials when the response is a proportion in [0, 1].
    #[arg(long, value_name = "COLUMN")]
    pub weights: Option<String>,
    /// Variance of the fixed effects for tests: `model` (lme4's, with the df `--ddf` chooses) or `cr2`
    /// (cluster-robust bias-reduced linearization with Bell–McCaffrey df, as clubSandwich's
    /// `coef_test(fit, vcov = "CR2", test = "Satterthwaite")`; linear models), printed beside the model's.
    #[arg(long, value_enum, default_value_t = VcovArg::Model)]
    pub vcov: VcovArg,
    /// With `--vcov cr2`: the cluster column (default: the grouping factor with the fewest levels). Clusters
    /// must contain whole levels of every grouping factor.
    #[arg(long, value_name = "COLUMN", requires = "vcov")]
    pub cluster: Option<String>,
    /// Denominator df of the fixed effects' t tests (linear models): `satterthwaite` (the default, as
    /// lmerTest's `summary`) or `lme4` (estimates, SEs and t values only, as lme4's own `summary` and
    /// lmerTest's `ddf = "lme4"`: no df or p values, and none of the extra fits the df need).
    #[arg(long, value_enum, value_name = "METHOD")]
    pub ddf: Option<DdfArg>,
    /// Write the fit as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write conditional modes (BLUPs) with conditional SDs per group level as CSV.
    #[arg(long, value_name = "FILE")]
    pub ranef: Option<PathBuf>,
    /// No progress output on stderr (steps and their times).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Fixed-effects variance of `psmeval lmm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VcovArg {
    /// The model's own (lme4).
    Model,
    /// Cluster-robust CR2 with small-sample df.
    Cr2,
}

/// Denominator df of `psmeval lmm`'s t tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DdfArg {
    /// Satterthwaite's approximation (lmerTest).
    Satterthwaite,
    /// None, t values only (lme4).
    Lme4,
}

/// Response families of `psmeval lmm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FamilyArg {
    /// Linear mixed model.
    Gaussian,
    /// Logistic mixed model.
    Binomial,
}

/// Options of `psmeval report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The `results.json` written by `psmeval evaluate`.
    #[arg(value_name = "RESULTS.json")]
    pub results: PathBuf,
    /// Output directory (default: the folder of RESULTS.json).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No message on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}
