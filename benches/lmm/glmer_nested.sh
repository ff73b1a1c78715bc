#!/usr/bin/env bash
# Side-by-side timing of the nested logistic GLMM of issue 10, psmeval against glmer, in one run: a 1,000-school
# population (`psmeval simulate --schools 1000 --seed 7`: 178,194 KS2 pupils in 1,000 schools and 5,000
# school-years, the size of the matched sample), the model
#   expected ~ factor(year) + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)
# fitted by `psmeval lmm --family binomial` three times and by glmer (lme4 defaults) once.
#   bash benches/lmm/glmer_nested.sh [WORKDIR]      (default out/bench-glmer-nested; needs R with lme4)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-out/bench-glmer-nested}
mkdir -p "$work"
cargo build --release -p psmeval
bin=target/release/psmeval
$bin simulate --schools 1000 --seed 7 --out "$work/sim" > /dev/null
awk -F, 'NR == 1 || $4 == 2' "$work/sim/pupils.csv" > "$work/ks2.csv"
formula='expected ~ factor(year) + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)'
for run in 1 2 3; do
  /usr/bin/time -f "psmeval run $run: %e s wall (incl. CSV), %M KB peak RSS" \
    $bin lmm --family binomial --data "$work/ks2.csv" --formula "$formula" --json "$work/psmeval.json" 2>&1 \
    | grep -E "fitting the model done|wall"
done
grep -m1 '"glmer_log_likelihood"' "$work/psmeval.json"
Rscript benches/lmm/glmer_nested.R "$work/ks2.csv" "$work/glmer.json"
