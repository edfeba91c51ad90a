# lme4's precision weights on tests/conformance/data/sim_weights.csv (run by hand from the
# repository root: Rscript tests/conformance/weights_reference.R). The figures are written into
# tests/test_lme4_semantics.py with the lme4 version that made them.
suppressMessages(library(lme4))
d <- read.csv("tests/conformance/data/sim_weights.csv", stringsAsFactors = TRUE)
fits <- list(w = lmer(y ~ x + (1 | g), data = d, weights = w),
             w4 = lmer(y ~ x + (1 | g), data = d, weights = w4))
for (w in names(fits)) {
  m <- fits[[w]]
  cat(sprintf("weights=%s sigma=%.6f sd(g)=%.6f fixef=%s\n", w, sigma(m),
              attr(VarCorr(m)$g, "stddev"), paste(sprintf("%.6f", fixef(m)), collapse = ",")))
}
cat("lme4", as.character(packageVersion("lme4")), "\n")
