#!/usr/bin/env bash
# The analyst commands (families, value-added with pupil groups, gaps) against R on the same national CSV
# files, in one run:   bash benches/analyst/run.sh [WORKDIR]   (default WORKDIR: out/bench-analyst)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-out/bench-analyst}
mkdir -p "$work"
cargo build --release -p psmeval
bin=target/release/psmeval
timed() { /usr/bin/time -f "%e s wall, %M KB peak RSS" "$@"; }
[ -f "$work/data/pupils.csv" ] || $bin simulate --out "$work/data" > /dev/null
last=$(python3 -c "import json;print(json.load(open('$work/data/truth.json'))['config']['last_year'])")
echo "== psmeval families, k = 20, Mahalanobis"
timed $bin families --schools "$work/data/schools.csv" --k 20 --out "$work/families"
echo "== psmeval value-added, groups by region"
timed $bin value-added --pupils "$work/data/pupils.csv" --schools "$work/data/schools.csv" \
  --where year=$last --where key_stage=2 --formula "maths ~ prior + fsm + eal + sen + female + (1 | school_id)" \
  --groups fsm,eal,sen,female --by region --out "$work/value-added"
echo "== psmeval gaps, FSM gap in the expected standard by region"
timed $bin gaps --pupils "$work/data/pupils.csv" --schools "$work/data/schools.csv" \
  --where year=$last --where key_stage=2 --outcome expected --group fsm --by region --out "$work/gaps"
if command -v Rscript >/dev/null; then
  echo "== R (data.table, FNN, lme4, clubSandwich)"
  timed Rscript benches/analyst/analyst_bench.R "$work/data/schools.csv" "$work/data/pupils.csv" "$work/r.json"
fi
