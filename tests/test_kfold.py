"""K-fold cross-validation and reloo: exact refits, serially and on a Dask LocalCluster.

The reference model is lme4's sleepstudy ``Reaction ~ Days + (Days|Subject)``; refits are kept
cheap (2 chains x 300 draws on the sufficient-statistics likelihood). The held-out
log-likelihood is checked against Normal(y | X beta + Z b, sigma) written out with numpy on a
refit's draws, the K-fold elpd against PSIS-LOO, and the Dask result against the serial one.
"""

from __future__ import annotations

import pickle
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp

import lmmformula as lf
from lmmformula.errors import DataError, FitError, ModelError
from lmmformula.fit import Fit
from lmmformula.kfold import (
    KFold,
    Reloo,
    plan_kfold,
    plan_reloo,
    refit,
    split_grouped,
    split_random,
    split_stratified,
)

FORMULA = "Reaction ~ Days + (Days|Subject)"
CHEAP = {"draws": 300, "tune": 300, "chains": 2, "progressbar": False}
SEED = 20261127
TIMEOUT = 300  # seconds for all refits of one call


# -- fold splits (no sampling) ----------------------------------------------------------------
@pytest.mark.parametrize("n, K", [(180, 5), (181, 10), (7, 7), (10, 3)])
def test_random_folds_cover_every_row_once_in_balanced_folds(n, K):
    folds = split_random(K, n, np.random.default_rng(1))
    sizes = np.bincount(folds, minlength=K + 1)[1:]
    assert sorted(set(folds)) == list(range(1, K + 1))
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n


def test_stratified_folds_spread_every_level_evenly():
    x = np.repeat(["a", "b", "c"], [10, 7, 4])
    folds = split_stratified(3, x, np.random.default_rng(2))
    table = pd.crosstab(x, folds)
    assert list(table.columns) == [1, 2, 3]
    assert (table.max(axis=1) - table.min(axis=1) <= 1).all()
    sizes = np.bincount(folds)[1:]
    assert sizes.max() - sizes.min() <= 1


def test_grouped_folds_hold_out_whole_levels():
    x = np.repeat([f"s{i}" for i in range(18)], 10)
    folds = split_grouped(4, x, np.random.default_rng(3))
    per_level = pd.Series(folds).groupby(x).nunique()
    assert (per_level == 1).all()
    levels_per_fold = pd.Series(x).groupby(folds).nunique()
    assert sorted(levels_per_fold) == [4, 4, 5, 5]
    with pytest.raises(ModelError, match="at least K levels"):
        split_grouped(19, x, np.random.default_rng(3))


def test_refit_tasks_pickle_with_their_priors(sleepstudy):
    """What crosses a process boundary is plain data: the spec (with Bambi and brms-style
    priors) and the rows, no compiled model (ProcessPoolExecutor pickles with pickle)."""
    import bambi as bmb

    for priors in (
        {"Days": bmb.Prior("Normal", mu=0, sigma=10)},
        [lf.prior("normal(0, 10)", cls="b")],
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lf.model(FORMULA, sleepstudy, priors=priors, lkj_eta=3)
        fit = Fit(model, None, sampler="nutpie", settings={"draws": 9, "tune": 8, "chains": 1})
        plan = plan_kfold(fit, K=3, random_seed=5)
        task = pickle.loads(pickle.dumps(plan.tasks[2]))
        pd.testing.assert_frame_equal(task.train, plan.tasks[2].train)
        assert task.model_spec["lkj_eta"] == 3 and task.model_spec["formula"] == FORMULA
        assert type(task.model_spec["priors"]) is type(priors)
        assert task.fit_settings == {
            "sampler": "nutpie",
            "progressbar": False,
            "draws": 9,
            "tune": 8,
            "chains": 1,
        }
        assert len(task.train) + len(task.test) == 180 and task.seed == plan.tasks[2].seed
        assert [t.seed for t in plan_kfold(fit, K=3, random_seed=5).tasks] == [
            t.seed for t in plan.tasks
        ]


# -- fits shared by the sampling tests --------------------------------------------------------
@pytest.fixture(scope="module")
def cheap_fit(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.fit(FORMULA, sleepstudy, random_seed=SEED, **CHEAP)


@pytest.fixture(scope="module")
def serial(cheap_fit):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lf.SamplingWarning)
        result = cheap_fit.kfold(K=5, random_seed=SEED, progressbar=False, timeout=TIMEOUT)
    result.wall_seconds = time.perf_counter() - start
    return result


@pytest.fixture(scope="module")
def dask_executor():
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        )
        client = distributed.Client(cluster)
    try:
        yield client.get_executor()
    finally:
        client.close()
        cluster.close()


def _sleep_loglik(post, data: pd.DataFrame) -> np.ndarray:
    """Normal(y | b0 + u0[s] + (b1 + u1[s]) * Days, sigma) per draw and row, in numpy."""
    levels = [str(v) for v in post["Subject__factor_dim"].values]
    idx = np.array([levels.index(str(s)) for s in data["Subject"]])

    def draws(name):
        return post[name].stack(s=("chain", "draw")).transpose("s", ...).values

    u0, u1 = draws("1|Subject")[:, idx], draws("Days|Subject")[:, idx]
    mu = draws("Intercept")[:, None] + u0 + (draws("Days")[:, None] + u1) * data["Days"].values
    return stats.norm.logpdf(data["Reaction"].values, mu, draws("sigma")[:, None])


def _log_mean_exp(ll):
    return logsumexp(ll, axis=0) - np.log(ll.shape[0])


# -- K-fold -----------------------------------------------------------------------------------
@pytest.mark.sampling
def test_kfold_result_and_brms_like_repr(serial, cheap_fit):
    assert isinstance(serial, KFold)
    assert serial.K == 5 and serial.fold_type == "random"
    assert sorted(np.bincount(serial.folds)[1:]) == [36] * 5
    pw = serial.pointwise
    assert len(pw) == 180 and list(pw.columns) == ["fold", "elpd_kfold", "p_kfold", "new_level"]
    assert serial.elpd_kfold == pytest.approx(pw["elpd_kfold"].sum())
    assert serial.se == pytest.approx(np.sqrt(180 * pw["elpd_kfold"].var(ddof=1)))
    assert serial.n_new_level == 0  # every subject has rows in every training set
    text = repr(serial)
    assert text.startswith("Based on 5-fold cross-validation.")
    for label in ("elpd_kfold", "p_kfold", "kfoldic", "Estimate", "SE"):
        assert label in text
    est = serial.estimates()
    assert est.loc["kfoldic", "Estimate"] == pytest.approx(-2 * serial.elpd_kfold)
    assert list(serial.refits.index) == [1, 2, 3, 4, 5]
    assert (serial.refits["train"] == 144).all()


@pytest.mark.sampling
def test_heldout_elpd_is_the_normal_likelihood_of_the_refit(serial, cheap_fit):
    """Fold 2 refitted again from the same task: its draws give the same held-out elpd when the
    likelihood is written out by hand."""
    plan = plan_kfold(cheap_fit, K=5, random_seed=SEED)
    np.testing.assert_array_equal(plan.folds, serial.folds)
    task = plan.tasks[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refitted = refit(task)
    assert refitted.model.n_obs == 144 and refitted.settings["draws"] == 300
    assert refitted.model.likelihood == cheap_fit.model.likelihood
    expected = _log_mean_exp(_sleep_loglik(refitted.posterior, task.test))
    got = serial.pointwise.loc[serial.folds == 2, "elpd_kfold"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@pytest.mark.sampling
def test_p_kfold_is_full_lpd_minus_elpd(serial, cheap_fit, sleepstudy):
    lpd = _log_mean_exp(_sleep_loglik(cheap_fit.posterior, sleepstudy))
    np.testing.assert_allclose(
        serial.pointwise["p_kfold"], lpd - serial.pointwise["elpd_kfold"], rtol=1e-7, atol=1e-9
    )
    assert serial.p_kfold == pytest.approx(lpd.sum() - serial.elpd_kfold, rel=1e-8)


@pytest.mark.sampling
def test_kfold_elpd_within_three_se_of_psis_loo(serial, cheap_fit):
    loo = cheap_fit.loo()
    assert abs(serial.elpd_kfold - loo.elpd) < 3 * loo.se
    assert abs(serial.elpd_kfold - loo.elpd) < 3 * serial.se


@pytest.mark.sampling
def test_dask_local_cluster_gives_the_serial_result(serial, cheap_fit, dask_executor):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lf.SamplingWarning)
        on_dask = cheap_fit.kfold(
            K=5, random_seed=SEED, executor=dask_executor, progressbar=False, timeout=TIMEOUT
        )
    seconds = time.perf_counter() - start
    np.testing.assert_array_equal(on_dask.folds, serial.folds)
    np.testing.assert_array_equal(
        on_dask.pointwise["elpd_kfold"].to_numpy(), serial.pointwise["elpd_kfold"].to_numpy()
    )
    assert on_dask.elpd_kfold == serial.elpd_kfold and on_dask.se == serial.se
    print(f"kfold K=5: serial {serial.wall_seconds:.1f} s, LocalCluster(2) {seconds:.1f} s")


@pytest.mark.sampling
def test_grouped_kfold_predicts_new_subjects(cheap_fit, sleepstudy, serial):
    """Whole subjects held out: every held-out row belongs to a new level, whose effects are
    drawn from the fitted subjects at each draw; the numpy oracle averages the likelihood over
    every fitted subject exactly, so the two agree up to Monte Carlo error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lf.SamplingWarning)
        grouped = cheap_fit.kfold(
            K=3, folds="grouped", group="Subject", random_seed=SEED, progressbar=False
        )
    assert grouped.fold_type == "grouped" and grouped.K == 3
    subjects = sleepstudy["Subject"].astype(str)
    assert (subjects.groupby(grouped.folds).nunique().sort_values().to_numpy() == [6, 6, 6]).all()
    assert (pd.Series(grouped.folds).groupby(subjects.to_numpy()).nunique() == 1).all()
    assert grouped.n_new_level == 180
    assert grouped.elpd_new_levels == pytest.approx(grouped.elpd_kfold)
    assert "180 of 180 held-out observations belong to levels left out" in repr(grouped)
    assert "grouped by Subject" in repr(grouped)
    # predicting new subjects is harder than predicting new days of known subjects
    assert grouped.elpd_kfold < serial.elpd_kfold

    plan = plan_kfold(cheap_fit, K=3, folds="grouped", group="Subject", random_seed=SEED)
    task = plan.tasks[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refitted = refit(task)
    post = refitted.posterior
    assert not set(task.test["Subject"].astype(str)) & set(
        map(str, post["Subject__factor_dim"].values)
    )
    ll = []  # (fitted subject, draw, row): each fitted subject's effects on the new rows
    for level in post["Subject__factor_dim"].values:
        ll.append(_sleep_loglik(post, task.test.assign(Subject=level)))
    ll = np.stack(ll)
    expected = logsumexp(ll.reshape(-1, ll.shape[-1]), axis=0) - np.log(ll.shape[0] * ll.shape[1])
    got = grouped.pointwise.loc[grouped.folds == 1, "elpd_kfold"].to_numpy()
    # population-only prediction (b = 0) is far off: the tolerance below is much tighter
    zero = post.assign({name: 0.0 * post[name] for name in ("1|Subject", "Days|Subject")})
    first = post["Subject__factor_dim"].values[0]
    without_effects = _log_mean_exp(_sleep_loglik(zero, task.test.assign(Subject=first)))
    assert np.abs(without_effects - expected).sum() > 25  # 37 measured
    assert np.abs(got - expected).sum() < 12  # Monte Carlo error: 4.8 measured
    # exactly: draw d takes the effects of fitted subject J[d] (the same J for both terms and
    # every chain), J drawn as Bambi draws it from the task's new-level seed
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    J = np.random.default_rng(task.new_level_seed).choice(ll.shape[0], size=n_draws)
    picked = ll.reshape(ll.shape[0], n_chains, n_draws, -1)[J, :, np.arange(n_draws), :]
    exact = _log_mean_exp(picked.reshape(n_chains * n_draws, -1))
    np.testing.assert_allclose(got, exact, rtol=1e-9)


@pytest.mark.sampling
def test_compare_takes_kfold_next_to_loo(serial, cheap_fit, sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = lf.compare({"psis-loo": cheap_fit, "kfold": serial})
    assert table.loc["kfold", "elpd_loo"] == pytest.approx(serial.elpd_kfold)
    assert table.loc["kfold", "se"] == pytest.approx(serial.se)
    assert table.loc["kfold", "p_loo"] == pytest.approx(serial.p_kfold)
    assert table.loc["psis-loo", "elpd_loo"] == pytest.approx(cheap_fit.loo().elpd)
    assert table.loc["kfold", "n_bad_k"] == 0
    diff = serial.pointwise["elpd_kfold"].to_numpy() - np.asarray(cheap_fit.loo().elpd_i)
    assert table["dse"].max() == pytest.approx(np.sqrt(180 * np.var(diff)), rel=1e-6)  # ArviZ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fewer = Fit(lf.model(FORMULA, sleepstudy.iloc[:150]), cheap_fit.idata, sampler="nutpie")
    with pytest.raises(FitError, match="different data: 'kfold' has 180 .* 'fewer' has 150"):
        lf.compare({"kfold": serial, "fewer": fewer})


# -- reloo ------------------------------------------------------------------------------------
@pytest.mark.sampling
def test_reloo_refits_the_worst_pareto_k_rows_exactly(cheap_fit):
    loo = cheap_fit.loo()
    k = np.asarray(loo.pareto_k).ravel()
    worst = np.sort(np.argsort(k)[-2:])
    threshold = float(np.sort(k)[-3])  # exactly the two largest are above it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lf.SamplingWarning)
        result = cheap_fit.reloo(k_threshold=threshold, random_seed=SEED, progressbar=False)
    assert isinstance(result, Reloo)
    np.testing.assert_array_equal(result.refitted, worst)
    elpd_i = np.asarray(result.loo.elpd_i).ravel()
    keep = np.setdiff1d(np.arange(180), worst)
    np.testing.assert_array_equal(elpd_i[keep], np.asarray(loo.elpd_i).ravel()[keep])
    assert (np.asarray(result.loo.pareto_k).ravel()[worst] == 0).all()
    assert result.elpd_loo == pytest.approx(elpd_i.sum())
    assert "PSIS-LOO with 2 exact refits" in repr(result)

    tasks, _, _ = plan_reloo(cheap_fit, threshold, random_seed=SEED)
    task = tasks[0]
    assert task.index == worst[0] and len(task.train) == 179
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refitted = refit(task)
    expected = _log_mean_exp(_sleep_loglik(refitted.posterior, task.test))
    assert elpd_i[worst[0]] == pytest.approx(float(expected[0]), rel=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = lf.compare({"psis": cheap_fit, "reloo": result})
    assert table.loc["reloo", "elpd_loo"] == pytest.approx(result.elpd_loo)


@pytest.mark.sampling
def test_reloo_without_bad_k_refits_nothing(cheap_fit):
    result = cheap_fit.reloo(k_threshold=1e9, progressbar=False)
    assert len(result.refitted) == 0
    assert result.elpd_loo == pytest.approx(cheap_fit.loo().elpd)


# -- refusals ---------------------------------------------------------------------------------
@pytest.mark.sampling
@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"K": 1}, ModelError, "K must be an integer from 2"),
        ({"K": 181}, ModelError, "K must be an integer from 2"),
        ({"K": 2.5}, ModelError, "K must be an integer"),
        ({"folds": "grouped"}, ModelError, "needs group="),
        ({"folds": "stratified"}, ModelError, "needs group="),
        ({"folds": "blocks"}, ModelError, "folds must be None, one of"),
        ({"folds": [1, 2, 3]}, ModelError, "one fold id per observation"),
        ({"folds": "grouped", "group": "Subjekt"}, DataError, "group must name a column"),
        ({"folds": "grouped", "group": "Subject", "K": 19}, ModelError, "at least K levels"),
        ({"executor": "dask"}, ModelError, "concurrent.futures.Executor"),
    ],
)
def test_bad_kfold_arguments_are_refused(cheap_fit, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        cheap_fit.kfold(progressbar=False, **kwargs)


@pytest.mark.sampling
def test_bad_reloo_arguments_are_refused(cheap_fit):
    with pytest.raises(ModelError, match="k_threshold must be a finite number"):
        cheap_fit.reloo(k_threshold="high")
    with pytest.raises(ModelError, match="concurrent.futures.Executor"):
        cheap_fit.reloo(executor=4)


@pytest.mark.sampling
def test_refits_that_outlast_the_timeout_are_cancelled(cheap_fit, dask_executor):
    start = time.perf_counter()
    with pytest.raises(FitError, match=r"5 of 5 refits not done after 0.5 s \(timeout\)"):
        cheap_fit.kfold(K=5, executor=dask_executor, timeout=0.5, progressbar=False)
    assert time.perf_counter() - start < 10
