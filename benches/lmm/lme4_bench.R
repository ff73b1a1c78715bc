# Anchor timings for psmeval's linear mixed models: lme4 (+ lmerTest not needed for timing) on the
# synthetic national population written by `psmeval simulate --out DIR`.
#
# Usage: Rscript benches/lmm/lme4_bench.R DIR OUTDIR
#   DIR     holds pupils.csv and schools.csv from `psmeval simulate` (default seed, national preset)
#   OUTDIR  receives the prepared model data (matched_ks2.csv, national_ks2.csv) that psmeval fits too,
#           and lme4_results.json with lme4's times and log-likelihoods.
#
# Samples (KS2 pupils, all five years, maths standardized within year):
#   matched:  the 47 lead schools and the first 940 other schools by school_id (987 schools, ~177,000 rows)
#   national: every school (~16,800 schools, ~3.0 million rows)
# Models: maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id)
#         and the same with (1 + year_c | school_id) on the national sample; the nested cohort model
#         ... + (1 | school_id) + (1 | school_id:year) on both samples (issue 10);
#         expected ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id) with glmer
#         (binomial, Laplace) on the matched sample, and the same with the cohort term
#         + (1 | school_id) + (1 | school_id:year) (skip both with BENCH_SKIP_GLMER=1: they take minutes;
#         BENCH_ONLY_GLMER_NESTED=1 times the nested logistic model alone);
#         InstEval's crossed model y ~ service + (1 | s) + (1 | d) + (1 | dept:service) (written to
#         OUTDIR/insteval.csv for psmeval).
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args) >= 1) args[1] else "out/synthetic"
outdir <- if (length(args) >= 2) args[2] else "out/bench-lmm"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

pupils <- read.csv(file.path(dir, "pupils.csv"))
schools <- read.csv(file.path(dir, "schools.csv"))
ks2 <- pupils[pupils$key_stage == 2, ]
ks2$maths_z <- ave(ks2$maths, ks2$year, FUN = function(v) (v - mean(v)) / sd(v))
ks2$lead <- schools$lead[match(ks2$school_id, schools$school_id)]
ks2$year_c <- ks2$year - 2015
cols <- c("school_id", "year", "year_c", "lead", "female", "fsm", "eal", "sen", "prior", "maths_z", "expected")
ks2 <- ks2[, cols]

leads <- schools$school_id[schools$lead == 1]
others <- head(sort(schools$school_id[schools$lead == 0]), 20 * length(leads))
matched <- ks2[ks2$school_id %in% c(leads, others), ]
write.csv(matched, file.path(outdir, "matched_ks2.csv"), row.names = FALSE)
write.csv(ks2, file.path(outdir, "national_ks2.csv"), row.names = FALSE)

f_int <- maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id)
f_nested <- maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)
f_slope <- maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 + year_c | school_id)

time_fit <- function(name, formula, data, logistic = FALSE) {
  gc(reset = TRUE)
  t <- system.time(m <- if (logistic) glmer(formula, data = data, family = binomial)
                        else lmer(formula, data = data, REML = TRUE))[["elapsed"]]
  mem <- sum(gc()[, 6])  # max used (Mb) since reset, Ncells + Vcells
  cat(sprintf("%-24s n=%8d schools=%6d  %8.2f s  logLik %.10f  max R heap %.0f MB\n",
              name, nrow(data), length(unique(data$school_id)), t, as.numeric(logLik(m)), mem))
  sprintf('{"model": "%s", "n_obs": %d, "n_schools": %d, "seconds": %.3f, "log_likelihood": %.15g, "r_heap_mb": %.0f}',
          name, nrow(data), length(unique(data$school_id)), t, as.numeric(logLik(m)), mem)
}

f_bin <- expected ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id)
f_bin_nested <- expected ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)
if (Sys.getenv("BENCH_ONLY_GLMER_NESTED") == "1") {
  rows <- time_fit("matched_logistic_nested", f_bin_nested, matched, TRUE)
  writeLines(c("[", rows, "]"), file.path(outdir, "lme4_results.json"))
  quit(save = "no")
}
rows <- c(
  time_fit("matched_intercept", f_int, matched),
  time_fit("national_intercept", f_int, ks2),
  time_fit("national_slope", f_slope, ks2),
  time_fit("matched_nested", f_nested, matched),
  time_fit("national_nested", f_nested, ks2)
)
ie <- data.frame(s = InstEval$s, d = InstEval$d, dept = InstEval$dept, service = InstEval$service, y = InstEval$y)
write.csv(ie, file.path(outdir, "insteval.csv"), row.names = FALSE)
rows <- c(rows, time_fit("insteval_crossed", y ~ service + (1 | s) + (1 | d) + (1 | dept:service), ie))
if (Sys.getenv("BENCH_SKIP_GLMER") != "1") {
  rows <- c(rows, time_fit("matched_logistic", f_bin, matched, TRUE),
            time_fit("matched_logistic_nested", f_bin_nested, matched, TRUE))
}
writeLines(c("[", paste(rows, collapse = ",\n"), "]"), file.path(outdir, "lme4_results.json"))
cat(R.version.string, " lme4", as.character(packageVersion("lme4")), "\n")
