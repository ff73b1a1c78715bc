# Reference inputs and expected outputs for the MatchIt parity tests (tests/nearest_matchit_snapshots.rs).
#
# Usage (from the workspace root):
#   Rscript crates/matching/tests/reference/nearest_scores.R <path to MatchIt's tests/testthat/_snaps/nearest_snapshots.md>
#
# 1. Propensity scores: the same glm MatchIt fits by default (distance = "glm", link = "logit") for the
#    snapshot formula treat ~ age + educ + race + married + nodegree + re74 + re75 on MatchIt's lalonde data.
#    Debian's glm is sound; only Debian's MatchIt 4.5.1 nearest-neighbour code is broken (MatchIt #163),
#    so the matched sets below come from MatchIt's own snapshots (ngreifer/MatchIt, 4.7.2.9000; the
#    nearest-neighbour C++ is byte-identical to the 4.7.2 release), never from this R installation.
# 2. Expected match matrices: every section of the snapshot file, as JSON (column-major, NA -> null).
args <- commandArgs(trailingOnly = TRUE)
stopifnot(length(args) == 1L)
data("lalonde", package = "MatchIt")
csv <- "crates/matching/tests/data/lalonde.csv"
if (!file.exists(csv)) write.csv(lalonde, csv, row.names = TRUE)

fit <- glm(treat ~ age + educ + race + married + nodegree + re74 + re75, data = lalonde,
           family = binomial(link = "logit"))
ps <- unname(fitted(fit))

lines <- readLines(args[[1]])
heads <- grep("^# ", lines)
ends <- c(heads[-1] - 1L, length(lines))
snaps <- lapply(seq_along(heads), function(i) {
  body <- paste(lines[(heads[i] + 1L):ends[i]], collapse = "\n")
  j <- jsonlite::fromJSON(body, simplifyVector = FALSE)
  dim <- unlist(j$attributes$dim$value)
  rn <- unlist(j$attributes$dimnames$value[[1]]$value)
  val <- lapply(j$value, function(v) if (is.null(v)) NA_character_ else v)
  list(title = sub("^# ", "", lines[heads[i]]), nrow = dim[1], ncol = dim[2], rownames = rn,
       value = unlist(val))
})

# 3. Reference weights: MatchIt 4.5.1's weight functions (weights.subclass, weights.matrix; renamed
#    get_weights_from_subclass and get_weights_from_mm in 4.7 with the same rule, and apart from the
#    C++ port, and not part of the broken nearest-neighbour code) applied to two snapshot match matrices,
#    then normalized as matchit(normalize = TRUE) does (nonzero weights of each group average 1).
mm_of <- function(title) {
  s <- snaps[[which(vapply(snaps, `[[`, "", "title") == title)]]
  m <- matrix(s$value, nrow = s$nrow, ncol = s$ncol, dimnames = list(s$rownames, NULL))
  m
}
treat <- setNames(lalonde$treat, rownames(lalonde))
normalize <- function(w) {
  for (g in 0:1) {
    i <- which(w > 0 & treat == g)
    w[i] <- length(i) * w[i] / sum(w[i])
  }
  w
}
mm_norep <- mm_of("ratio=3, replace=FALSE (pool depletion)")
w_norep <- normalize(MatchIt:::weights.subclass(MatchIt:::mm2subclass(mm_norep, treat), treat, "ATT"))
mm_rep <- mm_of("ratio=3, replace=TRUE (no pool depletion)")
w_rep <- normalize(MatchIt:::weights.matrix(mm_rep, treat))

out <- list(
  weights_ratio3_norep = unname(w_norep),
  weights_ratio3_rep = unname(w_rep),
  source = "MatchIt tests/testthat/_snaps/nearest_snapshots.md (ngreifer/MatchIt e352e52); scores: R glm",
  rownames = rownames(lalonde),
  treat = lalonde$treat,
  race = as.character(lalonde$race),
  age = lalonde$age, educ = lalonde$educ, re74 = lalonde$re74, re75 = lalonde$re75,
  married = lalonde$married,
  ps = ps,
  snapshots = snaps
)
writeLines(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE, na = "null", pretty = FALSE),
           "crates/matching/tests/reference/nearest_scores.json")
cat("wrote", length(snaps), "snapshots\n")
