#!/usr/bin/env bash
# Runs psmeval's benchmarks against R on the same data, in one run, and prints a results table.
# Needs R with lme4 (Debian: r-base-core r-cran-lme4) for the anchor timings; psmeval runs regardless.
#
#   bash benches/run.sh [WORKDIR]      (default WORKDIR: out/bench)
#
# Steps: build psmeval (release); simulate the national population (default seed); let R prepare the model
# samples and time lme4 on them; time psmeval on the same CSVs; compare log-likelihoods.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-out/bench}
mkdir -p "$work"
cargo build --release -p psmeval
bin=target/release/psmeval
timed() { /usr/bin/time -f "%e s wall, %M KB peak RSS" "$@"; }

echo "== simulate (national)"
timed $bin simulate --out "$work/synthetic"

if command -v Rscript >/dev/null; then
  echo "== lme4"
  timed Rscript benches/lmm/lme4_bench.R "$work/synthetic" "$work/lmm"
else
  echo "Rscript not found: skipping the R anchors (benches/lmm/README.md lists the last measured ones)"
fi

if [ -f "$work/lmm/matched_ks2.csv" ]; then
  f='maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id)'
  fs='maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 + year_c | school_id)'
  for sample in matched national; do
    echo "== psmeval lmm, $sample, random intercept"
    timed $bin lmm --data "$work/lmm/${sample}_ks2.csv" --formula "$f" --json "$work/lmm/psmeval_${sample}_intercept.json" > /dev/null
  done
  fn='maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)'
  for sample in matched national; do
    echo "== psmeval lmm, $sample, nested cohorts"
    timed $bin lmm --data "$work/lmm/${sample}_ks2.csv" --formula "$fn" --json "$work/lmm/psmeval_${sample}_nested.json" > /dev/null
  done
  echo "== psmeval lmm, InstEval, three crossed terms"
  timed $bin lmm --data "$work/lmm/insteval.csv" --formula 'y ~ service + (1 | s) + (1 | d) + (1 | dept:service)' --json "$work/lmm/psmeval_insteval_crossed.json" > /dev/null
  echo "== psmeval lmm, national, random slope"
  timed $bin lmm --data "$work/lmm/national_ks2.csv" --formula "$fs" --json "$work/lmm/psmeval_national_slope.json" > /dev/null
  fb='expected ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id)'
  echo "== psmeval lmm --family binomial, matched, random intercept"
  timed $bin lmm --family binomial --data "$work/lmm/matched_ks2.csv" --formula "$fb" --json "$work/lmm/psmeval_matched_logistic.json" > /dev/null
  echo "== psmeval lmm --family binomial, matched, nested cohorts"
  timed $bin lmm --family binomial --data "$work/lmm/matched_ks2.csv" --formula "$fb + (1 | school_id:year)" \
    --json "$work/lmm/psmeval_matched_logistic_nested.json" > /dev/null
  echo "== log-likelihoods (lme4 vs psmeval)"
  cat "$work/lmm/lme4_results.json"
  for f in "$work"/lmm/psmeval_*.json; do
    printf '%s ' "$(basename "$f")"; grep -m1 '"log_likelihood"' "$f"
  done
fi

echo "== psmeval evaluate (national example, 6 impact models)"
timed $bin evaluate --example --out "$work/example" --quiet

if [ "${BENCH_SKIP_SCALE_TESTS:-0}" != 1 ]; then
  echo "== matching at the issue's sizes (psmeval; MatchIt anchors in benches/matching/README.md)"
  cargo test --release -p psmeval-matching --test nearest_scale -- --ignored --nocapture 2>&1 | grep -E "n=|matched"
  echo "== GLMM at the issue's size (177,000 rows, 987 schools, p = 16)"
  cargo test --release -p psmeval-multilevel --test glmm_scale -- --ignored --nocapture 2>&1 | grep -E "s,|logLik"
fi
