# Reference fits from brms for lmmformula's brms-grammar tests (issue 12).
#
# Usage (from the repository root):
#     Rscript tests/reference/brms/make_brms_refs.R            # every model
#     Rscript tests/reference/brms/make_brms_refs.R gp1d mo    # only these
#
# For each model <name> this script
#   1. simulates a data set with a fixed seed and writes it to <name>.csv (and, for grcov, the
#      known covariance matrix to grcov_K.csv), then READS THE CSV BACK and fits on what it read,
#      so a Python test reading <name>.csv sees exactly the rows brms saw;
#   2. fits brms with an explicit prior on every parameter class (rstan backend, 4 chains of
#      2000 iterations, 1000 warmup, adapt_delta 0.9, fixed seed); a fit with divergent
#      transitions is refitted with adapt_delta 0.99 (then 0.999), one with an Rhat above 1.01
#      and no divergences with twice the iterations (at most 3 attempts, each recorded);
#   3. writes <name>.json (versions, formula, family, the simulation's truth, the priors used,
#      brms' default priors for the same formula, posterior_summary with Rhat and ESS per
#      parameter, divergences, max Rhat, brms' printed summary) and <name>.stan (stancode).
# See README.md beside this file.

suppressPackageStartupMessages({
  library(brms)
  library(jsonlite)
  library(posterior)
})

# Debian's r-cran-bh ships no headers (it depends on libboost-dev instead), so rstan's
# boost_lib option is empty and stan_model() stops with "Boost not found". Point it at the
# system Boost through a private folder (adding -I/usr/include itself would break the
# C++ standard headers' #include_next).
if (!nzchar(rstan::rstan_options("boost_lib")) && dir.exists("/usr/include/boost")) {
  boost_dir <- file.path(tempdir(), "boost_include")
  dir.create(boost_dir, showWarnings = FALSE)
  if (!file.exists(file.path(boost_dir, "boost")))
    file.symlink("/usr/include/boost", file.path(boost_dir, "boost"))
  rstan::rstan_options(boost_lib = boost_dir)
}

args_all <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args_all[grepl("^--file=", args_all)])
OUT <- if (length(script)) dirname(normalizePath(script)) else getwd()
wanted <- commandArgs(trailingOnly = TRUE)

CHAINS <- 4
CORES <- 2
ITER <- 2000
WARMUP <- 1000
RHAT_MAX <- 1.01
ADAPT_DELTA <- 0.9   # first attempt; raised to 0.99, 0.999 after divergences
MAX_ATTEMPTS <- 3    # a high Rhat without divergences doubles iter and warmup instead

# ---------------------------------------------------------------------------- helpers

levels_named <- function(prefix, n) sprintf("%s%02d", prefix, seq_len(n))

write_data <- function(data, name) {
  path <- file.path(OUT, paste0(name, ".csv"))
  write.csv(data, path, row.names = FALSE)
  path
}

read_back <- function(path, character_cols = "g") {
  classes <- setNames(rep("character", length(character_cols)), character_cols)
  read.csv(path, colClasses = classes)
}

records <- function(df) {
  df <- as.data.frame(df, stringsAsFactors = FALSE)
  rownames(df) <- NULL
  df
}

summary_records <- function(fit) {
  ps <- posterior_summary(fit)
  draws <- as_draws_df(fit)
  diag <- summarise_draws(draws, rhat = posterior::rhat, ess_bulk = posterior::ess_bulk,
                          ess_tail = posterior::ess_tail)
  out <- data.frame(parameter = rownames(ps), ps, check.names = FALSE,
                    stringsAsFactors = FALSE)
  out <- merge(out, as.data.frame(diag), by.x = "parameter", by.y = "variable",
               all.x = TRUE, sort = FALSE)
  out[match(rownames(ps), out$parameter), , drop = FALSE]
}

n_divergent <- function(fit) {
  np <- nuts_params(fit)
  sum(np$Value[np$Parameter == "divergent__"])
}

n_max_treedepth <- function(fit) {
  np <- nuts_params(fit)
  max_depth <- tryCatch(fit$fit@stan_args[[1]]$control$max_treedepth,
                        error = function(e) NULL)
  if (is.null(max_depth)) max_depth <- 10
  sum(np$Value[np$Parameter == "treedepth__"] >= max_depth)
}

# Small pieces of standata() that say how brms transformed the GP covariates.
gp_standata <- function(fit) {
  sd <- standata(fit)
  keep <- grepl("gp|slambda", names(sd), ignore.case = TRUE)
  sd <- sd[keep]
  sd <- sd[vapply(sd, function(v) length(v) <= 1000, logical(1))]
  lapply(sd, function(v) if (is.matrix(v)) unname(v) else as.vector(v))
}

fit_one <- function(name, formula, data, family, prior, seed, truth, notes = NULL,
                    data2 = NULL, extra = NULL, data_file = paste0(name, ".csv")) {
  message(sprintf("[%s] %s: fitting", format(Sys.time(), "%H:%M:%S"), name))
  defaults <- get_prior(formula, data = data, family = family, data2 = data2)
  if (identical(Sys.getenv("BRMS_REFS_DRYRUN"), "1")) {  # check data, priors, Stan code only
    make_stancode(formula, data = data, family = family, prior = prior, data2 = data2)
    print(validate_prior(prior, formula, data = data, family = family, data2 = data2))
    return(invisible(NULL))
  }
  attempts <- list()
  fit <- NULL
  ad <- ADAPT_DELTA; iter <- ITER; warmup <- WARMUP
  for (k in seq_len(MAX_ATTEMPTS)) {
    t0 <- Sys.time()
    if (is.null(fit)) {
      fit <- brm(formula, data = data, family = family, prior = prior, data2 = data2,
                 chains = CHAINS, cores = CORES, iter = iter, warmup = warmup, seed = seed,
                 backend = "rstan", control = list(adapt_delta = ad), refresh = 0,
                 silent = 2)
    } else {
      fit <- update(fit, control = list(adapt_delta = ad), iter = iter, warmup = warmup,
                    seed = seed, refresh = 0, silent = 2, recompile = FALSE)
    }
    secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    r <- brms::rhat(fit)
    r <- r[names(r) != "lp__"]
    att <- list(adapt_delta = ad, iter = iter, warmup = warmup,
                divergences = n_divergent(fit), max_treedepth_hits = n_max_treedepth(fit),
                max_rhat = max(r, na.rm = TRUE),
                worst_rhat_parameter = names(r)[which.max(r)], seconds = round(secs, 1))
    message(sprintf("[%s] %s: adapt_delta %.3f, iter %d: %d divergences, max Rhat %.4f (%s)",
                    format(Sys.time(), "%H:%M:%S"), name, ad, iter, att$divergences,
                    att$max_rhat, att$worst_rhat_parameter))
    attempts[[length(attempts) + 1]] <- att
    if (att$divergences == 0 && att$max_rhat <= RHAT_MAX) break
    # divergences: smaller steps; a high Rhat alone: longer chains
    if (att$divergences > 0) ad <- 1 - (1 - ad) / 10 else {
      iter <- 2L * iter; warmup <- 2L * warmup
    }
  }
  final <- attempts[[length(attempts)]]
  fam <- family(fit)
  ref <- list(
    name = name,
    versions = list(
      R = R.version.string,
      brms = as.character(packageVersion("brms")),
      rstan = as.character(packageVersion("rstan")),
      StanHeaders = as.character(packageVersion("StanHeaders")),
      posterior = as.character(packageVersion("posterior"))
    ),
    formula = paste(capture.output(print(fit$formula)), collapse = "\n"),
    family = list(family = fam$family, link = fam$link,
                  links = as.list(unlist(fam[grepl("^link_", names(fam))]))),
    data_file = data_file,
    nrow = nrow(data),
    sampler = list(backend = "rstan", chains = CHAINS, cores = CORES, iter = final$iter,
                   warmup = final$warmup, seed = seed, adapt_delta = final$adapt_delta),
    attempts = attempts,
    divergences = final$divergences,
    max_treedepth_hits = final$max_treedepth_hits,
    max_rhat = final$max_rhat,
    truth = truth,
    notes = notes,
    prior = records(prior_summary(fit)),
    default_prior = records(defaults),
    posterior_summary = summary_records(fit),
    summary_text = capture.output(print(summary(fit), digits = 4))
  )
  if (!is.null(extra)) ref <- c(ref, extra(fit))
  write_json(ref, file.path(OUT, paste0(name, ".json")), auto_unbox = TRUE, digits = NA,
             pretty = TRUE, na = "null", null = "null")
  writeLines(stancode(fit), file.path(OUT, paste0(name, ".stan")))
  message(sprintf("[%s] %s: done (%d divergences, max Rhat %.4f)",
                  format(Sys.time(), "%H:%M:%S"), name, final$divergences, final$max_rhat))
  invisible(fit)
}

# ---------------------------------------------------------------------------- models

# 1. Distributional model with a cross-formula |ID| correlation.
make_dpar_id <- function() {
  set.seed(20261101)
  n_g <- 40; n_per <- 30
  sds <- c(0.5, 0.3); rho <- 0.7
  S <- diag(sds) %*% matrix(c(1, rho, rho, 1), 2) %*% diag(sds)
  u <- matrix(rnorm(n_g * 2), n_g) %*% chol(S)
  g <- rep(seq_len(n_g), each = n_per)
  x <- rnorm(n_g * n_per); z <- rnorm(n_g * n_per)
  sigma <- exp(-0.3 + 0.4 * z + u[g, 2])
  y <- 1 + 0.5 * x + u[g, 1] + rnorm(n_g * n_per, 0, sigma)
  path <- write_data(data.frame(y = y, x = x, z = z, g = levels_named("g", n_g)[g]), "dpar_id")
  data <- read_back(path)
  formula <- bf(y ~ x + (1 | p | g), sigma ~ z + (1 | p | g))
  prior <- c(
    prior(normal(0, 1), class = b),
    prior(normal(0, 2), class = Intercept),
    prior(normal(0, 1), class = sd),
    prior(normal(0, 1), class = b, dpar = sigma),
    prior(normal(0, 2), class = Intercept, dpar = sigma),
    prior(normal(0, 1), class = sd, dpar = sigma),
    prior(lkj(2), class = cor)
  )
  truth <- list(b_Intercept = 1, b_x = 0.5, b_sigma_Intercept = -0.3, b_sigma_z = 0.4,
                sd_g__Intercept = 0.5, sd_g__sigma_Intercept = 0.3,
                cor_g__Intercept__sigma_Intercept = 0.7,
                sample_sd_u = apply(u, 2, sd), sample_cor_u = cor(u[, 1], u[, 2]))
  fit_one("dpar_id", formula, data, gaussian(), prior, seed = 1101, truth = truth,
          notes = c("sigma has a log link: sigma = exp(b_sigma_Intercept + b_sigma_z * z + r_g[sigma_Intercept]).",
                    "Intercept priors are on brms' centred-predictor intercepts (x and z centred at their sample means); b_Intercept and b_sigma_Intercept are reported on the original scale."))
}

# 2. Gaussian process, exact and Hilbert-space approximate, same data.
# Deterministic: gp1d and gp1d_approx both (re)write the same gp1d.csv.
gp_data <- function() {
  set.seed(20261102)
  xs <- round(seq(0, 10, length.out = 30), 4)
  x <- rep(xs, each = 4)
  y <- 2 + sin(x) + rnorm(length(x), 0, 0.3)
  read.csv(write_data(data.frame(y = y, x = x, f = sin(x)), "gp1d"))
}

gp_prior <- c(
  prior(normal(0, 2), class = Intercept),
  prior(normal(0, 1), class = sdgp),
  prior(inv_gamma(5, 1), class = lscale, coef = gpx),
  prior(normal(0, 1), class = sigma)
)

gp_truth <- list(Intercept = 2, f = "sin(x)", sigma = 0.3,
                 x = "30 distinct values round(seq(0, 10, length.out = 30), 4), each repeated 4 times")

gp_notes <- c(
  "brms' gp() default scale = TRUE: the covariate is divided by the largest Euclidean distance between two observed values (here 10), so lscale and its prior are on that scale (multiply lscale by 10 for x units).",
  "Kernel: sdgp^2 * exp(-d^2 / (2 * lscale^2)) on the scaled covariate; exact form evaluated on the 30 unique x values (gr = TRUE).",
  "Column f of the CSV is the noise-free truth sin(x)."
)

gp_extra <- function(fit, c = NULL) {
  f_hat <- fitted(fit)  # posterior mean of mu at the data rows
  d <- fit$data
  # brms 2.18 .data_gp(): unique covariate values, divided by dmax (largest distance); for the
  # approximation also centred at their mean, with boundary L = brms:::choose_L(centred, c)
  ux <- unique(d$x)
  dmax <- max(ux) - min(ux)
  scaling <- list(dmax = dmax)
  if (!is.null(c)) {
    centred <- ux / dmax - mean(ux / dmax)
    scaling <- c(scaling, list(cmeans = mean(ux / dmax), c = c,
                               L = brms:::choose_L(centred, c = c),
                               choose_L = paste(deparse(brms:::choose_L), collapse = "\n")))
  }
  list(gp_scaling = scaling, standata_gp = gp_standata(fit),
       fitted_at_unique_x = records(data.frame(
         x = unique(d$x),
         Estimate = tapply(f_hat[, "Estimate"], d$x, mean)[as.character(unique(d$x))],
         Q2.5 = tapply(f_hat[, "Q2.5"], d$x, mean)[as.character(unique(d$x))],
         Q97.5 = tapply(f_hat[, "Q97.5"], d$x, mean)[as.character(unique(d$x))])))
}

make_gp1d <- function() {
  data <- gp_data()
  fit_one("gp1d", bf(y ~ gp(x)), data, gaussian(), gp_prior, seed = 1102,
          truth = gp_truth, notes = gp_notes, extra = gp_extra)
}

make_gp1d_approx <- function() {
  data <- gp_data()
  fit_one("gp1d_approx", bf(y ~ gp(x, k = 20, c = 5 / 4)), data, gaussian(), gp_prior,
          seed = 1103, truth = gp_truth,
          notes = c(gp_notes[c(1, 3)],
                    "Hilbert-space approximation with k = 20 basis functions and c = 5/4. brms 2.18.0: the unique x are divided by dmax (as for the exact form), then centred at their mean; the boundary is L = c * max(1, max - min) of that centred covariate (brms:::choose_L), here 1.25 on the scaled axis (12.5 x units): c times the full range, not the half range. Basis phi_m(x) = sin(m pi (x + L) / (2 L)) / sqrt(L), sqrt eigenvalues slambda_m = m pi / (2 L); see gp_scaling and standata_gp (Xgp_1 is the 30 x 20 basis at the unique x). Data file: gp1d.csv (the same rows as gp1d)."),
          extra = function(fit) gp_extra(fit, c = 5 / 4), data_file = "gp1d.csv")
}

# 3. Known covariance between the levels of a grouping factor.
make_grcov <- function() {
  set.seed(20261103)
  n_g <- 20; n_per <- 10
  lev <- levels_named("g", n_g)
  K <- outer(seq_len(n_g), seq_len(n_g), function(i, j) exp(-abs(i - j) / 4))
  dimnames(K) <- list(lev, lev)
  u <- as.vector(0.8 * t(chol(K)) %*% rnorm(n_g))
  g <- rep(seq_len(n_g), each = n_per)
  y <- 1 + u[g] + rnorm(n_g * n_per, 0, 0.5)
  path <- write_data(data.frame(y = y, g = lev[g]), "grcov")
  write.csv(data.frame(g = lev, K, check.names = FALSE), file.path(OUT, "grcov_K.csv"),
            row.names = FALSE)
  data <- read_back(path)
  Kback <- as.matrix(read.csv(file.path(OUT, "grcov_K.csv"), row.names = 1,
                              check.names = FALSE))
  prior <- c(
    prior(normal(0, 2), class = Intercept),
    prior(normal(0, 1), class = sd),
    prior(normal(0, 1), class = sigma)
  )
  fit_one("grcov", bf(y ~ 1 + (1 | gr(g, cov = K))), data, gaussian(), prior, seed = 1104,
          data2 = list(K = Kback),
          truth = list(b_Intercept = 1, sd_g__Intercept = 0.8, sigma = 0.5,
                       K = "K[i, j] = exp(-|i - j| / 4), i, j = 1..20 (levels g01..g20)",
                       u = u),
          notes = c("grcov_K.csv: first column g = row name (level), then one column per level.",
                    "Group effects r_g = sd_g__Intercept * t(chol(K)) %*% z (brms: Lcov = chol of K)."))
}

# 4. Monotonic effects.
mo_sim <- function(seed, group_slopes) {
  set.seed(seed)
  n_g <- 40; n_per <- 10
  simplex <- c(0.1, 0.2, 0.3, 0.4); total <- 2
  g <- rep(seq_len(n_g), each = n_per)
  x <- sample(0:4, n_g * n_per, replace = TRUE)
  mo_x <- function(b) b * c(0, cumsum(simplex))[x + 1]
  u0 <- rnorm(n_g, 0, 0.5)
  u1 <- if (group_slopes) rnorm(n_g, 0, 0.4) else rep(0, n_g)
  y <- 1 + mo_x(total + u1[g]) + u0[g] + rnorm(n_g * n_per, 0, 0.5)
  list(data = data.frame(y = y, x = x, g = levels_named("g", n_g)[g]),
       truth = list(b_Intercept = 1, total_effect = total, bsp_mox = total / 4,
                    simo_mox1 = simplex, sd_g__Intercept = 0.5, sigma = 0.5,
                    realised = list(mean_u0 = mean(u0), sd_u0 = sd(u0),
                                    mean_u1_total = if (group_slopes) mean(u1),
                                    sd_u1_total = if (group_slopes) sd(u1),
                                    cor_u0_u1 = if (group_slopes) cor(u0, u1)),
                    mo = "y = 1 + total * c(0, cumsum(simplex))[x + 1] + u0[g] + e; in brms' scaling mo(x) = bsp * D * sum_{i<=x} simo_i with D = 4, so bsp = total / 4"))
}

mo_prior <- c(
  prior(normal(0, 1), class = b),
  prior(dirichlet(1), class = simo, coef = mox1),
  prior(normal(0, 2), class = Intercept),
  prior(normal(0, 1), class = sd),
  prior(normal(0, 1), class = sigma)
)

mo_notes <- c(
  "x is an integer 0..4 (5 ordered levels, D = 4 steps).",
  "brms' monotonic term: bsp_mox * D * sum_{i=1}^{x} simo_mox1[i]; so bsp_mox is the mean change per step (truth total 2 over 4 steps: bsp_mox = 0.5) and the simplex gives the share of each step.",
  "The b-class prior normal(0, 1) applies to bsp_mox (brms puts mo coefficients in class b, shown as bsp_ in the output).")

make_mo <- function() {
  s <- mo_sim(20261104, FALSE)
  path <- write_data(s$data, "mo")
  fit_one("mo", bf(y ~ mo(x) + (1 | g)), read_back(path), gaussian(), mo_prior,
          seed = 1105, truth = s$truth, notes = mo_notes)
}

make_mo_group <- function() {
  s <- mo_sim(20261105, TRUE)
  s$truth$sd_g__mox <- 0.4 / 4
  s$truth$note <- "group slopes added to the total effect 2 with sd 0.4, i.e. sd 0.1 per step on brms' bsp scale; intercept and slope effects independent (true correlation 0)"
  path <- write_data(s$data, "mo_group")
  fit_one("mo_group", bf(y ~ mo(x) + (1 + mo(x) | g)), read_back(path), gaussian(),
          c(mo_prior, prior(lkj(2), class = cor)), seed = 1106, truth = s$truth,
          notes = c(mo_notes, "Group-level mo(x): brms uses the same simplex for the group-level slopes (r_g[mox] multiplies the same monotonic transform)."))
}

# 5. Cumulative (ordinal) models.
cum_sim <- function(seed, link) {
  set.seed(seed)
  n_g <- 30; n_per <- 15
  thresholds <- c(-1, 0.2, 1.5)
  g <- rep(seq_len(n_g), each = n_per)
  x <- rnorm(n_g * n_per)
  u <- rnorm(n_g, 0, 0.7)
  eta <- 0.8 * x + u[g]
  noise <- if (link == "logit") rlogis(length(eta)) else rnorm(length(eta))
  latent <- eta + noise
  y <- 1L + as.integer(latent > thresholds[1]) + as.integer(latent > thresholds[2]) +
    as.integer(latent > thresholds[3])
  list(data = data.frame(y = y, x = x, g = levels_named("g", n_g)[g]),
       truth = list(thresholds = thresholds, b_x = 0.8, sd_g__Intercept = 0.7,
                    realised = list(mean_u = mean(u), sd_u = sd(u)),
                    counts = as.list(table(factor(y, levels = 1:4)))))
}

cum_prior <- c(
  prior(normal(0, 2), class = Intercept),
  prior(normal(0, 1), class = b),
  prior(normal(0, 1), class = sd)
)

cum_notes <- c(
  "y is an integer 1..4; P(y <= k) = F(b_Intercept[k] - eta), eta = b_x * x + r_g (no overall intercept; disc = 1).",
  "brms centres x for sampling: the Intercept prior applies to the thresholds on the centred-x scale; the reported b_Intercept[k] are on the original x scale (they differ by b_x * mean(x)).")

make_cumulative <- function(link, seed_sim, seed_fit) {
  name <- paste0("cumulative_", link)
  s <- cum_sim(seed_sim, link)
  path <- write_data(s$data, name)
  fit_one(name, bf(y ~ x + (1 | g)), read_back(path), cumulative(link), cum_prior,
          seed = seed_fit, truth = s$truth, notes = cum_notes)
}

MODELS <- list(
  dpar_id = make_dpar_id,
  gp1d = make_gp1d,
  gp1d_approx = make_gp1d_approx,
  grcov = make_grcov,
  mo = make_mo,
  mo_group = make_mo_group,
  cumulative_logit = function() make_cumulative("logit", 20261106, 1107),
  cumulative_probit = function() make_cumulative("probit", 20261107, 1108)
)

todo <- if (length(wanted)) wanted else names(MODELS)
unknown <- setdiff(todo, names(MODELS))
if (length(unknown)) stop("unknown model(s): ", paste(unknown, collapse = ", "),
                          "; known: ", paste(names(MODELS), collapse = ", "))
failed <- character(0)
for (name in todo) {
  tryCatch(MODELS[[name]](), error = function(e) {
    message(sprintf("[%s] %s FAILED: %s", format(Sys.time(), "%H:%M:%S"), name,
                    conditionMessage(e)))
    failed <<- c(failed, name)
  })
}
if (length(failed)) stop("failed: ", paste(failed, collapse = ", "))
