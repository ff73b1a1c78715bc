# Sourced by the national LMM benchmarks (lmm_nested_national.sh, lmm_national_ri.sh) from the repository root
# with $work set: builds psmeval (release) and, once, writes $work/national_ks2.csv, the KS2 rows of the
# national population of `psmeval simulate` (default seed) prepared by lmm_nested_national.R. Sets $bin.
mkdir -p "$work"
cargo build --release -p psmeval
bin=target/release/psmeval
if [[ ! -f "$work/national_ks2.csv" ]]; then
  $bin simulate --out "$work/sim" > /dev/null
  Rscript benches/lmm/lmm_nested_national.R prepare "$work/sim" "$work/national_ks2.csv"
fi
