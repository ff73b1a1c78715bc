# Reference values for psmeval's analyst commands (value-added, pupil-group value-added, gaps by area) on
# mlmRev's Exam data (4,059 pupils in 65 London schools; Goldstein et al. 1993), written to
# analyst_reference.json next to this script together with the data, so the Rust tests need no R.
#   Rscript analyst_reference.R            (R 4.2.2, lme4 1.1.31, clubSandwich 0.5.8, mlmRev 1.0.8)
#
# - value-added: lmer(normexam ~ standLRT + girl + (1 | school), REML); each school's conditional mode and
#   conditional SD (ranef(condVar = TRUE)).
# - group value-added: r = normexam - X %*% fixef(fit); per level of `intake` (the pupil's intake band), nationally and within
#   `type` (Mxd / Sngl), the mean of r with clubSandwich's CR1 SE clustered by school (intercept-only lm),
#   df = schools - 1.
# - gaps: normexam gap between boys and girls (girl = 0 minus girl = 1) within each `schgend`-free area
#   `type`, lm(normexam ~ girl) with clubSandwich's CR1S (Stata's factor) clustered by school, df = schools - 1.
suppressMessages({ library(mlmRev); library(lme4); library(clubSandwich); library(jsonlite) })
d <- Exam
d$girl <- as.integer(d$sex == "F")
d$school <- as.character(d$school)
fit <- lmer(normexam ~ standLRT + girl + (1 | school), data = d, REML = TRUE)
re <- ranef(fit, condVar = TRUE)$school
cv <- attr(re, "postVar")[1, 1, ]
schools <- data.frame(id = rownames(re), value_added = re[, 1], cond_sd = sqrt(cv))
X <- model.matrix(fit)
r <- d$normexam - as.vector(X %*% fixef(fit))
cell <- function(rows) {
  dd <- data.frame(r = r[rows], school = d$school[rows])
  m <- lm(r ~ 1, data = dd)
  v <- vcovCR(m, cluster = dd$school, type = "CR1")
  list(value_added = unname(coef(m)[1]), std_error = sqrt(v[1, 1]), pupils = length(rows),
       schools = length(unique(dd$school)))
}
groups <- list()
for (lv in levels(d$intake)) {
  groups[[length(groups) + 1]] <- c(list(level = lv, area = NA), cell(which(d$intake == lv)))
  for (ty in levels(d$type)) {
    rows <- which(d$intake == lv & d$type == ty)
    groups[[length(groups) + 1]] <- c(list(level = lv, area = ty), cell(rows))
  }
}
gaps <- list()
for (ty in c(levels(d$type), "all")) {
  rows <- if (ty == "all") seq_len(nrow(d)) else which(d$type == ty)
  dd <- d[rows, ]
  m <- lm(normexam ~ girl, data = dd)
  v <- vcovCR(m, cluster = dd$school, type = "CR1S")
  gaps[[length(gaps) + 1]] <- list(area = ty, gap = -unname(coef(m)["girl"]), std_error = sqrt(v[2, 2]),
                                    schools = length(unique(dd$school)))
}
out <- list(
  data = list(school = d$school, normexam = d$normexam, standLRT = d$standLRT, girl = d$girl,
              intake = as.character(d$intake), type = as.character(d$type)),
  formula = "normexam ~ standLRT + girl + (1 | school)",
  sigma = sigma(fit), school_sd = attr(VarCorr(fit)$school, "stddev")[[1]],
  schools = schools, groups = groups, gaps = gaps,
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  clubSandwich = as.character(packageVersion("clubSandwich")))
)
write_json(out, "analyst_reference.json", digits = NA, auto_unbox = TRUE, na = "null", pretty = FALSE)
