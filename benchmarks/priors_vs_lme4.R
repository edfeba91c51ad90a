# lme4/glmer reference estimates for the standard formula of every shipped data set.
# Run from the repository root:  Rscript benchmarks/priors_vs_lme4.R
# Writes benchmarks/priors_vs_lme4_lme4.csv (dataset, formula, term, estimate, std_error),
# the oracle that tests/test_default_priors.py and docs/priors.md compare against.
# lmer fits are lme4's defaults (REML); glmer fits are Laplace ML, as a user gets them.
suppressPackageStartupMessages(library(lme4))

data_dir <- "data"
read <- function(name) {
  d <- read.csv(file.path(data_dir, paste0(name, ".csv")), stringsAsFactors = TRUE)
  d
}

rows <- list()
add <- function(dataset, formula, fit) {
  cf <- summary(fit)$coefficients
  out <- data.frame(dataset = dataset, formula = formula, term = rownames(cf),
                    estimate = cf[, 1], std_error = cf[, 2], row.names = NULL)
  vc <- as.data.frame(VarCorr(fit))
  for (i in seq_len(nrow(vc))) {
    r <- vc[i, ]
    if (r$grp == "Residual") {
      term <- "sigma"
    } else if (is.na(r$var2)) {
      term <- paste0("sd(", r$var1, "|", r$grp, ")")
    } else {
      term <- paste0("cor(", r$var1, ",", r$var2, "|", r$grp, ")")
    }
    out <- rbind(out, data.frame(dataset = dataset, formula = formula, term = term,
                                 estimate = r$sdcor, std_error = NA))
  }
  rows[[length(rows) + 1]] <<- out
}

sleep <- read("sleepstudy")
add("sleepstudy", "Reaction ~ Days + (Days|Subject)",
    lmer(Reaction ~ Days + (Days | Subject), sleep))
add("sleepstudy", "log(Reaction) ~ Days + (Days|Subject)",
    lmer(log(Reaction) ~ Days + (Days | Subject), sleep))

cbpp <- read("cbpp")
cbpp$period <- factor(cbpp$period)
add("cbpp", "cbind(incidence, size - incidence) ~ period + (1|herd)",
    glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial))

add("cbpp", "incidence ~ period + (1|herd)",
    glmer(incidence ~ period + (1 | herd), cbpp, family = poisson))

ozone <- read("beijing_ozone")
# lmer on TEMP in degrees stops short (max|grad| = 2.1, "nearly unidentifiable", sd(Intercept)
# 0.156 instead of 0.179); on TEMP / 10 it converges (max|grad| 0.009), and the TEMP rows are
# divided by 10 to put them back in degrees.
ozone$TEMP10 <- ozone$TEMP / 10
add("beijing_ozone", "log_ozone ~ TEMP + (TEMP|station)",
    lmer(log_ozone ~ TEMP10 + (TEMP10 | station), ozone))
oz <- rows[[length(rows)]]
per_degree <- oz$term %in% c("TEMP10", "sd(TEMP10|station)")
oz$estimate[per_degree] <- oz$estimate[per_degree] / 10
oz$std_error[per_degree] <- oz$std_error[per_degree] / 10
oz$term <- gsub("TEMP10", "TEMP", oz$term)
rows[[length(rows)]] <- oz

pastes <- read("pastes")
add("pastes", "strength ~ 1 + (1|batch/cask)", lmer(strength ~ 1 + (1 | batch / cask), pastes))

pen <- read("penicillin")
add("penicillin", "diameter ~ 1 + (1|plate) + (1|sample)",
    lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pen))

nwo <- read("nwo_grants")
add("nwo_grants", "awards | trials(applications) ~ 0 + gender + (1|discipline)",
    glmer(cbind(awards, applications - awards) ~ 0 + gender + (1 | discipline), nwo,
          family = binomial))

out <- do.call(rbind, rows)
out$estimate <- signif(out$estimate, 6)
out$std_error <- signif(out$std_error, 6)
write.csv(out, "benchmarks/priors_vs_lme4_lme4.csv", row.names = FALSE)
cat(sprintf("lme4 %s, R %s\n", packageVersion("lme4"), getRversion()))
print(out)
