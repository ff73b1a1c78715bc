# Reference families for psmeval_matching::families, by brute force in R on a school table made from
# mlmRev's Exam data (65 London schools: mean intake score `lrt`, share of girls `girls`, pupils `size`;
# `sngl` = single-sex school), written to families_reference.json with the table, so tests need no R.
#   Rscript families_reference.R            (R 4.2.2, mlmRev 1.0.8)
#
# For every school, all other schools sorted by (distance, id as text), the first k = 5 kept:
# - mahalanobis: stats::mahalanobis() on the covariance of the variables over all schools;
# - standardized: Euclidean distance of scale()d variables;
# - propensity: |difference of glm(sngl ~ lrt + girls + size, binomial)'s linear predictors| / their SD.
suppressMessages({ library(mlmRev); library(jsonlite) })
d <- Exam
s <- data.frame(id = levels(d$school))
s$lrt <- as.vector(tapply(d$standLRT, d$school, mean))
s$girls <- as.vector(tapply(d$sex == "F", d$school, mean))
s$size <- as.vector(tapply(d$standLRT, d$school, length))
s$sngl <- as.integer(as.vector(tapply(d$type == "Sngl", d$school, mean)) > 0.5)
X <- as.matrix(s[, c("lrt", "girls", "size")])
k <- 5
nearest <- function(d2) {
  lapply(seq_len(nrow(s)), function(i) {
    o <- setdiff(order(d2[i, ], s$id), i)[1:k]
    list(members = s$id[o], distance = sqrt(d2[i, o]))
  })
}
S <- cov(X)
d_mah <- t(sapply(seq_len(nrow(s)), function(i) mahalanobis(X, X[i, ], S)))
Z <- scale(X)
d_std <- as.matrix(dist(Z))^2
fit <- glm(sngl ~ lrt + girls + size, family = binomial, data = s)
lp <- predict(fit, type = "link") / sd(predict(fit, type = "link"))
d_ps <- outer(lp, lp, function(a, b) (a - b)^2)
out <- list(
  table = s, k = k, variables = c("lrt", "girls", "size"),
  mahalanobis = nearest(d_mah), standardized = nearest(d_std), propensity = nearest(d_ps),
  propensity_coefficients = unname(coef(fit)), fitted = unname(fitted(fit)),
  versions = list(R = R.version.string)
)
write_json(out, "families_reference.json", digits = NA, auto_unbox = TRUE, pretty = FALSE)
