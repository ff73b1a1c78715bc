# Anchor timings for psmeval's nearest-neighbour matcher: MatchIt's matchit(method = "nearest") on the
# same kind of synthetic problem as crates/matching/tests/nearest_scale.rs (propensity scores given as a
# vector, so only the matching is timed): logit ~ N(shift, 1) for treated units, N(0, 1) for controls.
# R's RNG differs from psmeval's, so the samples are alike in distribution, not identical.
#
# Usage: Rscript benches/matching/matchit_bench.R [SIZES]   (SIZES: comma-separated labels, default "300k")
#   300k: n = 300,000, ~60,000 treated, ratio 3, no replacement
#   1m:   n = 1,000,000, ~200,000 treated, ratio 3, no replacement
#   10m:  n = 10,000,000 skewed, ~1,000,000 treated, 1:1, no replacement
#
# CAUTION: Debian's r-cran-matchit is 4.5.1, whose nearest-neighbour matching is broken on some systems
# (MatchIt issue #163, fixed in 4.5.4) and predates the 4.6.0 speed-ups, so timings from it are not
# MatchIt 4.7's. The issue's MatchIt 4.7 anchors: ~29 s (300k, ratio 3), 481 s (1e6, ratio 3),
# 389 s (1e7 skewed, 1:1).
suppressPackageStartupMessages(library(MatchIt))
args <- commandArgs(trailingOnly = TRUE)
sizes <- if (length(args) >= 1) strsplit(args[1], ",")[[1]] else "300k"
specs <- list(
  "300k" = list(n = 300000, share = 0.2, shift = 1.0, ratio = 3),
  "1m" = list(n = 1000000, share = 0.2, shift = 1.0, ratio = 3),
  "10m" = list(n = 10000000, share = 0.1, shift = 1.5, ratio = 1)
)
cat(sprintf("MatchIt %s\n", packageVersion("MatchIt")))
for (s in sizes) {
  p <- specs[[s]]
  set.seed(7)
  treat <- rbinom(p$n, 1, p$share)
  ps <- plogis(rnorm(p$n) + p$shift * treat)
  df <- data.frame(treat = treat, x = ps)
  t0 <- proc.time()[["elapsed"]]
  m <- matchit(treat ~ x, data = df, method = "nearest", distance = ps, ratio = p$ratio, replace = FALSE)
  el <- proc.time()[["elapsed"]] - t0
  cat(sprintf("%s: n = %d, treated = %d, ratio %d: %.1f s; matched treated %d\n",
              s, p$n, sum(treat), p$ratio, el, sum(!is.na(m$match.matrix[, 1]))))
}
