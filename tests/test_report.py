"""Aggregation: numbers checked against values computed by hand (means, t intervals, paired tests, ranks),
setups never ranked together, layer collapse flagged by name, n/a points kept apart from problems, the
report files written (also for an empty directory), and the two notebooks run end to end.

The fixture is written by ``make_results`` below rather than committed: the accuracies sit next to the
expected numbers they were computed from. The t quantiles and p-values are closed forms, not scipy's:
t(0.975, df=2) = 4.302652729749464, t(0.975, df=1) = 12.706204736174707, and with df = 2 the two-sided
p-value of a t statistic is 1 - |t| / sqrt(t² + 2).
"""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from fggp.report import (TABLE_LEGEND, adjust_for_columns, average_rank, check_parameters, check_runs_dir,
                         clipped_interval, collapsed_layers, comparisons, comparisons_markdown, detectable_gap,
                         format_cell, layer_collapse, load_results, noise_sentences, not_applicable, overview,
                         paired_comparison, paired_power, paper_tables, plot_accuracy_vs_flops,
                         plot_accuracy_vs_sparsity, problems, read_export, report_markdown, runs_markdown, runs_view,
                         seeds_needed, seeds_text, setup_sections, setups, size_speed, size_speed_markdown, summary,
                         subject_vs_each, t_interval, write_report)
from fggp.train import RunConfig

T2, T1 = 4.302652729749464, 12.706204736174707

# (recipe, target sparsity) -> final test accuracy of seeds 1, 2, 3, ...
ACCURACIES = {
    ("dense", 0.0): [0.95, 0.96, 0.97],
    ("fggp", 0.8): [0.90, 0.91, 0.92],
    ("gmp", 0.8): [0.88, 0.885, 0.90],
    ("fggp", 0.9): [0.92, 0.93, 0.94],
    ("gmp", 0.9): [0.91, 0.94, 0.97],
    ("granet", 0.9): [0.925],
    ("fggp", 0.95): [0.88, 0.90],
    ("gmp", 0.95): [0.89, 0.91, 0.93],
    ("granet", 0.95): [0.92],
}
# By hand, in percent: mean, sample std (ddof=1), n, half-width of the 95% t interval (t * std / sqrt n).
EXPECTED = {
    ("dense", 0.0): (96.0, 1.0, 3, T2 / math.sqrt(3)),
    ("fggp", 0.8): (91.0, 1.0, 3, T2 / math.sqrt(3)),
    ("gmp", 0.8): (88.8333333, math.sqrt(((88 - 88.8333333) ** 2 + (88.5 - 88.8333333) ** 2
                                          + (90 - 88.8333333) ** 2) / 2), 3, None),
    ("fggp", 0.9): (93.0, 1.0, 3, T2 / math.sqrt(3)),
    ("gmp", 0.9): (94.0, 3.0, 3, T2 * 3 / math.sqrt(3)),
    ("granet", 0.9): (92.5, math.nan, 1, math.nan),
    ("fggp", 0.95): (89.0, math.sqrt(2), 2, T1),  # t(df=1) * sqrt(2) / sqrt(2)
    ("gmp", 0.95): (91.0, 2.0, 3, T2 * 2 / math.sqrt(3)),
    ("granet", 0.95): (92.0, math.nan, 1, math.nan),
}
# Paired by seed, best minus runner-up:
#   0.8  fggp - gmp:   2, 2.5, 2  -> mean 13/6, sd 0.5/sqrt(3), se 1/6, t = 13, p = 1 - 13/sqrt(171)
#   0.9  gmp - fggp:  -1, 1, 3    -> mean 1, sd 2, se 2/sqrt(3), t = sqrt(3)/2, p = 1 - t/sqrt(t^2 + 2)
#   0.95 granet - gmp: one common seed -> not testable
SEPARATED = dict(diff=13 / 6, half=T2 / 6, p=1 - 13 / math.sqrt(171), sd=0.5 / math.sqrt(3))
WITHIN_NOISE = dict(diff=1.0, half=T2 * 2 / math.sqrt(3), p=1 - (math.sqrt(3) / 2) / math.sqrt(3 / 4 + 2), sd=2.0,
                    seeds=34)
# The within-noise gap is half its spread (effect size 0.5): a two-sided paired (one-sample) t test at 5% reaches
# 80% power with 34 pairs (power 0.8078; 33 pairs: 0.7954), the textbook value (Cohen 1988; G*Power gives N = 34).
# Intervals past 100%: gmp at 90% (94 + 3 x 2.484 = 101.5) and fggp at 95% (89 + 12.7 = 101.7); none below 0%.
CLIPPED = {("gmp", 0.9), ("fggp", 0.95)}
MAIN = "epochs=15"  # dense: its pruning window does not count
NA_REASON = "min_keep: the per-layer floors keep more weights than target_sparsity 0.95 allows"


def config(recipe, target, seed, epochs=15, **kw):
    return RunConfig(arch="tiny", dataset="digits", recipe=recipe, target_sparsity=target, seed=seed, epochs=epochs,
                     prune_end_epoch=min(10, epochs), progress=False, **kw)


def write_run(runs_dir: Path, c: RunConfig, status: str | None, acc: float | None = None, config_file=True, **extra):
    d = runs_dir / c.run_id
    d.mkdir(parents=True)
    if config_file:
        (d / "config.json").write_text(json.dumps(c.to_dict()))
    if status is None:  # still running: config and one epoch of metrics, no result
        (d / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": 0.5}) + "\n")
        return c
    result = {"status": status, "run_id": c.run_id, "config": c.to_dict(), **extra}
    if acc is not None:
        result.update(final_test_acc=acc, best_test_acc=acc + 0.005, final_sparsity=c.target_sparsity,
                      epochs_done=c.epochs, steps_done=c.epochs * 14, wall_seconds=6.0, prune_log=[])
        result.setdefault("layer_density", {"features.0.weight": 1 - c.target_sparsity})
    (d / "result.json").write_text(json.dumps(result))
    return c


# Tiny's prunable layers: (size, outputs). 24112 weights in all.
TINY = {"features.0.weight": (432, 16), "features.4.weight": (4608, 32), "features.8.weight": (18432, 64),
        "classifier.weight": (640, 10)}


def densities(kept: dict) -> dict:
    return {name: kept[name] / TINY[name][0] for name in TINY}


# Size and speed, optional in every run. The 15-epoch runs record FLOPs: the remaining fraction (sparse / dense)
# is FLOPS_LEFT[target] x (1 + 0.1 (seed - 2)), so over seeds 1-3 the mean is FLOPS_LEFT itself. Seeds 1 and 2
# record model_bytes: dense 96 000, sparse 1.2 x 96 000 x (1 - target) + 1000 x seed. Two runs are exported
# (EXPORTS), each in one of the two layouts export.json may take; one export.json is damaged. The 8-epoch runs
# record none of it: older runs.
DENSE_FLOPS, DENSE_BYTES = 2_000_000, 96_000
FLOPS_LEFT = {0.0: 1.0, 0.8: 0.3, 0.9: 0.2, 0.95: 0.1}
NESTED_EXPORT = {  # the layout `fggp export` writes: sizes under "bytes", the FLOP ratio under "flops"
    "files": {"model.sparse.safetensors": 9_999, "model.pt": 100_000}, "bytes": {"dense_state_dict": DENSE_BYTES},
    "flops": {"dense": DENSE_FLOPS, "sparse": 400_000, "ratio": 5.0},
    "latency": {"device": "cpu (test, 2 cores)", "threads": 2, "torch": "2.test", "batch_sizes": {
        "1": {"dense_ms": 1.0, "sparse_ms": 1.25, "speedup": 0.8}, "64": {"dense_ms": 3.6, "sparse_ms": 1.0, "speedup": 3.6},
        "256": {"dense_ms": 10.0, "sparse_ms": 2.0, "speedup": 5.0}}}}
FLAT_EXPORT = {  # the flat layout: a list of latency rows, no speedup given (dense_ms / sparse_ms)
    "files": {"model.sparse.safetensors": 15_000}, "dense_state_dict_bytes": DENSE_BYTES, "flop_ratio": 5.0,
    "latency": [{"batch": 1, "dense_ms": 1.0, "sparse_ms": 2.0}, {"batch": 64, "dense_ms": 4.0, "sparse_ms": 2.0}],
    "threads": 2, "device": "cpu (test, 2 cores)", "torch": "2.test"}
EXPORTS = {("fggp", 0.9, 1): NESTED_EXPORT, ("gmp", 0.9, 3): FLAT_EXPORT,
           ("fggp", 0.8, 1): {"files": {}, "latency": {"batch_sizes": {"1": {"speedup": "fast"}}}}}


def size_fields(recipe, target, seed) -> dict:
    left = 1.0 if recipe == "dense" else FLOPS_LEFT[target] * (1 + 0.1 * (seed - 2))
    fields = {"dense_flops": DENSE_FLOPS, "sparse_flops": round(DENSE_FLOPS * left)}
    if seed <= 2:
        fields["model_bytes"] = {"dense": DENSE_BYTES, "sparse": round(1.2 * DENSE_BYTES * (1 - target)) + 1000 * seed}
    return fields


def write_export(run_dir: Path, export: dict) -> None:
    (run_dir / "export").mkdir()
    (run_dir / "export" / "export.json").write_text(json.dumps(export))


def make_results(root: Path) -> tuple[Path, dict]:
    """The completed runs above; one failed, one diverged, one incomplete, one missing; three points the
    sweep found not applicable; and a second budget (epochs=8) with one run and its collapse twin."""
    runs = root / "runs"
    runs.mkdir(parents=True)
    points = []
    for (recipe, target), accs in ACCURACIES.items():
        for seed, acc in enumerate(accs, start=1):
            points.append(write_run(runs, config(recipe, target, seed), "completed", acc,
                                    **size_fields(recipe, target, seed)))
            if (recipe, target, seed) in EXPORTS:
                write_export(runs / points[-1].run_id, EXPORTS[recipe, target, seed])
    bad = {
        # a sweep-style failure before the run wrote config.json: result.json with its config only
        "failed": write_run(runs, config("fggp", 0.95, 3), "failed", config_file=False, error="RuntimeError: boom"),
        "diverged": write_run(runs, config("gmp", 0.95, 4), "diverged", 0.10, diverged_step=123),
        "incomplete": write_run(runs, config("fggp", 0.9, 4), None),
        "missing": config("gmp", 0.9, 5),
    }
    # epochs=8: better than every 15-epoch run, yet never ranked against them.
    # gmp keeps 36 weights in features.8 (64 outputs) and 4 in the classifier (10 classes): collapsed;
    # global_mp keeps exactly 64 and 13: at the line, not under it.
    short = {
        "gmp": write_run(runs, config("gmp", 0.99, 1, epochs=8), "completed", 0.99, prunable_weights=24112,
                         layer_density=densities({"features.0.weight": 100, "features.4.weight": 101,
                                                  "features.8.weight": 36, "classifier.weight": 4})),
        "global_mp": write_run(runs, config("global_mp", 0.99, 1, epochs=8), "completed", 0.985,
                               prunable_weights=24112,
                               layer_density=densities({"features.0.weight": 50, "features.4.weight": 114,
                                                        "features.8.weight": 64, "classifier.weight": 13})),
    }
    (runs / "scratch").mkdir()  # not a run: no config, no result, not in the sweep
    points += bad.values()
    entries = [{"run_id": c.run_id, "config": c.to_dict()} for c in points]
    entries += [{"run_id": None, "config": config("global_mp", 0.95, seed).to_dict(), "state": "not_applicable",
                 "reason": NA_REASON} for seed in (1, 2, 3)]
    (root / "sweep.json").write_text(json.dumps({"points": entries}))
    return runs, {**{status: c.run_id for status, c in bad.items()}, **{k: c.run_id for k, c in short.items()}}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    runs, ids = make_results(tmp_path_factory.mktemp("sweep"))
    return runs, load_results(runs), ids


def test_load_results_has_one_row_per_run_and_sweep_point(results):
    runs, df, ids = results
    assert len(df) == 22 + 2 + 4 + 3
    assert df["status"].value_counts().to_dict() == {"completed": 24, "failed": 1, "diverged": 1, "incomplete": 1,
                                                     "missing": 1, "not_applicable": 3}
    for status in ("failed", "diverged", "incomplete", "missing"):
        assert df.loc[df["run_id"] == ids[status], "status"].tolist() == [status]
    row = df[df["run_id"] == ids["failed"]].iloc[0]
    assert (row["recipe"], row["target_sparsity"], row["seed"], row["error"]) == ("fggp", 0.95, 3, "RuntimeError: boom")
    assert df.loc[df["run_id"] == ids["incomplete"], "epochs_done"].item() == 1
    assert set(df["variant"]) == {""}
    assert "scratch" not in set(df["run_id"])
    # epochs differ; prune_end_epoch differs too (min(10, epochs)) but is meaningless for dense
    assert set(df["setup"]) == {"epochs=15, prune_end_epoch=10", "epochs=8, prune_end_epoch=8", MAIN}
    assert df.attrs["shared_setup"][:1] == ["dataset=digits"]


def test_setups_put_dense_with_every_matching_budget(results):
    assert setups(results[1]) == ["epochs=8, prune_end_epoch=8", "epochs=15, prune_end_epoch=10"]


def test_t_interval_matches_hand_computation():
    assert t_interval([95, 96, 97]) == pytest.approx((96 - T2 / math.sqrt(3), 96 + T2 / math.sqrt(3)))
    assert t_interval([88, 90]) == pytest.approx((89 - T1, 89 + T1))
    assert t_interval([5, 5, 5]) == (5, 5)
    assert all(math.isnan(x) for x in t_interval([93.5]))


def test_summary_means_intervals_and_counts_match_hand_computation(results):
    s = summary(results[1])
    assert list(s.columns) == ["setup", "arch", "initial_sparsity", "target_sparsity", "recipe", "n", "mean_pct",
                               "std_pct", "ci95_low_pct", "ci95_high_pct", "ci95_clipped"]
    main = s[s["setup"] == "epochs=15, prune_end_epoch=10"]
    assert len(main) == len(EXPECTED)
    for (recipe, target), (mean, std, n, half) in EXPECTED.items():
        row = main[(main["recipe"] == recipe) & (main["target_sparsity"] == target)]
        assert len(row) == 1, (recipe, target)
        row = row.iloc[0]
        assert row["arch"] == "tiny" and row["initial_sparsity"] == 0.0 and row["n"] == n
        assert bool(row["ci95_clipped"]) == ((recipe, target) in CLIPPED), (recipe, target)
        assert row["mean_pct"] == pytest.approx(mean)
        if math.isnan(std):
            assert math.isnan(row["std_pct"]) and math.isnan(row["ci95_low_pct"]) and math.isnan(row["ci95_high_pct"])
            continue
        assert row["std_pct"] == pytest.approx(std)
        half = half if half is not None else T2 * std / math.sqrt(3)
        assert (row["ci95_low_pct"], row["ci95_high_pct"]) == pytest.approx((mean - half, mean + half))  # unclipped
    other = s[s["setup"] == "epochs=8, prune_end_epoch=8"].set_index("recipe")
    assert other["mean_pct"].to_dict() == pytest.approx({"gmp": 99.0, "global_mp": 98.5})  # no dense of 8 epochs


def test_paired_comparison_of_best_and_runner_up_matches_hand_computation(results):
    c = comparisons(results[1]).set_index(["setup", "target_sparsity"])
    main = "epochs=15, prune_end_epoch=10"
    sep = c.loc[(main, 0.8)]
    assert (sep["best"], sep["runner_up"], sep["pairs"], sep["verdict"]) == ("fggp", "gmp", 3, "separated")
    assert sep["diff_mean_pct"] == pytest.approx(SEPARATED["diff"])
    assert (sep["diff_ci95_low_pct"], sep["diff_ci95_high_pct"]) == pytest.approx(
        (SEPARATED["diff"] - SEPARATED["half"], SEPARATED["diff"] + SEPARATED["half"]))
    assert sep["p_value"] == pytest.approx(SEPARATED["p"])
    noise = c.loc[(main, 0.9)]
    assert (noise["best"], noise["runner_up"], noise["pairs"], noise["verdict"]) == ("gmp", "fggp", 3, "within noise")
    assert noise["diff_mean_pct"] == pytest.approx(WITHIN_NOISE["diff"])
    assert (noise["diff_ci95_low_pct"], noise["diff_ci95_high_pct"]) == pytest.approx(
        (1 - WITHIN_NOISE["half"], 1 + WITHIN_NOISE["half"]))
    assert noise["p_value"] == pytest.approx(WITHIN_NOISE["p"])
    # the spread of the paired differences, and the seeds only where the verdict is within noise
    assert (sep["diff_std_pct"], noise["diff_std_pct"]) == pytest.approx((SEPARATED["sd"], WITHIN_NOISE["sd"]))
    assert noise["seeds_needed"] == WITHIN_NOISE["seeds"] and math.isnan(sep["seeds_needed"])
    lone = c.loc[(main, 0.95)]
    assert (lone["best"], lone["runner_up"], lone["pairs"]) == ("granet", "gmp", 1)
    assert lone["verdict"] == "not testable (1 paired seed)" and math.isnan(lone["p_value"])
    assert math.isnan(lone["seeds_needed"]) and math.isnan(lone["diff_std_pct"])
    # Benjamini-Hochberg over the setup's two tested columns: the smaller p doubles, the larger stays
    assert sep["p_adjusted"] == pytest.approx(2 * SEPARATED["p"]) and math.isnan(lone["p_adjusted"])
    assert noise["p_adjusted"] == pytest.approx(WITHIN_NOISE["p"])
    short = c.loc[("epochs=8, prune_end_epoch=8", 0.99)]
    assert (short["best"], short["runner_up"], short["verdict"]) == ("gmp", "global_mp", "not testable (1 paired seed)")


def test_adjustment_is_benjamini_hochberg_per_setup_and_says_when_a_gap_passes_only_alone():
    """By hand: p = .03, .0498, .2, .6 over 4 columns -> .03*4/1 = .12, .0498*4/2 = .0996, .2*4/3, .6*4/4, then
    each the minimum of itself and the ones above it: .0996, .0996, .2667, .6. Another setup is its own family:
    0 and .03 over 2 columns -> 0, .03*2/2 = .03, still separated."""
    c = pd.DataFrame({
        "setup": ["a"] * 5 + ["b"] * 2,
        "p_value": [0.03, 0.0498, 0.2, 0.6, math.nan, 0.0, 0.03],
        "verdict": ["separated", "separated", "within noise", "within noise", "not testable (1 paired seed)",
                    "separated (same gap on every seed)", "separated"],
    })
    out = adjust_for_columns(c)
    assert out["p_adjusted"].tolist()[:4] == pytest.approx([0.0996, 0.0996, 0.8 / 3, 0.6])
    assert math.isnan(out["p_adjusted"][4]) and out["p_adjusted"][5] == 0.0 and out["p_adjusted"][6] == 0.03
    assert out["verdict"].tolist() == ["within noise over 4 columns (p < 0.05 alone)"] * 2 + c["verdict"].tolist()[2:]
    assert c["verdict"][0] == "separated" and "p_adjusted" not in c  # the input is left alone


def test_paired_comparison_pairs_by_seed_and_handles_no_spread():
    best = pd.Series([91.0, 94.0, 97.0, 50.0], index=[1, 2, 3, 9])  # seed 9 has no partner: left out
    runner = pd.Series([92.0, 93.0, 94.0], index=[1, 2, 3])
    out = paired_comparison(best, runner)
    assert out["pairs"] == 3 and out["diff_mean_pct"] == pytest.approx(1.0)
    assert out["p_value"] == pytest.approx(WITHIN_NOISE["p"])
    assert out["seeds_needed"] == WITHIN_NOISE["seeds"]  # the same differences as the fixture's 90% column
    same_gap = paired_comparison(pd.Series([90.0, 91.0]), pd.Series([89.0, 90.0]))
    assert same_gap["verdict"] == "separated (same gap on every seed)" and same_gap["diff_ci95_low_pct"] == 1.0
    # no spread: no power to estimate (the test is degenerate), said as NaN rather than a number
    assert same_gap["diff_std_pct"] == 0.0 and math.isnan(same_gap["seeds_needed"])
    assert math.isnan(same_gap["detectable_gap_pct"])
    assert paired_comparison(pd.Series([90.0, 91.0]), pd.Series([90.0, 91.0]))["verdict"] == "identical on every seed"
    unpaired = paired_comparison(pd.Series([90.0]), pd.Series([80.0], index=[2]))
    assert unpaired["verdict"] == "not testable (0 paired seeds)"



# ------------------------------------------------------------------ power: the seeds a paired test would need

def quad_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t test, computed without the noncentral t: the statistic is (Z + nc) / (X /
    sqrt(df)) with Z standard normal, X chi-distributed with df = n - 1, nc = effect sqrt(n); integrate
    P(|T| > t crit | X = x) over x."""
    df, nc = n - 1, effect * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)

    def rejected(x):
        s = crit * x / math.sqrt(df)
        return (stats.norm.sf(s - nc) + stats.norm.cdf(-s - nc)) * stats.chi.pdf(x, df)

    return integrate.quad(rejected, 0, math.inf, limit=200)[0]


@pytest.mark.parametrize("gap, sd, n", [(1.0, 2.0, 10), (0.29, 0.2, 3), (1.5, 0.5, 2), (0.3, 1.0, 25)])
def test_paired_power_matches_a_monte_carlo_of_the_t_test_itself(gap, sd, n):
    """Draw n paired differences N(gap, sd) 40 000 times and count how often scipy's own t test says p < 0.05."""
    rng = np.random.default_rng(12345)
    diffs = rng.normal(gap, sd, size=(40_000, n))
    rate = (stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05).mean()
    se = math.sqrt(rate * (1 - rate) / 40_000)
    assert paired_power(gap, sd, n) == pytest.approx(rate, abs=4 * se + 1e-3)
    assert paired_power(gap, sd, n) == pytest.approx(quad_power(gap / sd, n), abs=1e-7)
    assert paired_power(-gap, sd, n) == pytest.approx(paired_power(gap, sd, n))  # two-sided: the sign does not matter


@pytest.mark.parametrize("gap, sd, expected", [(0.5, 1.0, 34), (1.0, 1.0, 10), (1.0, 2.0, 34), (-0.29, 0.2, 6),
                                               (2.0, 1.0, 5), (0.1, 1.0, 787)])
def test_seeds_needed_is_the_smallest_n_reaching_80_percent_power(gap, sd, expected):
    """34 and 10 pairs for effect sizes 0.5 and 1 are the textbook values (G*Power: N = 34, power 0.808; N = 10,
    0.803); every case is checked against the quadrature power, independent of scipy's noncentral t."""
    assert seeds_needed(gap, sd) == expected
    assert quad_power(abs(gap) / sd, expected) >= 0.8 > quad_power(abs(gap) / sd, expected - 1)


def test_seeds_needed_far_beyond_the_cap_zero_gap_and_no_spread():
    # effect 0.01: the normal approximation ((z .975 + z .8) / 0.01)^2 = 78 489, and the t test needs about
    # z .975^2 / 2 = 1.9 pairs more
    n = seeds_needed(0.01, 1.0)
    z = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / 0.01
    assert z ** 2 < n <= z ** 2 + 3
    assert seeds_needed(0.0, 1.0) == math.inf  # equal means: no number of seeds separates them
    assert math.isnan(seeds_needed(1.0, 0.0)) and math.isnan(seeds_needed(math.nan, 1.0))
    assert [seeds_text(x) for x in (34.0, 1000.0, 1001.0, math.inf, math.nan)] == [
        "34", "1000", "> 1000", "never (equal means)", ""]


@pytest.mark.parametrize("n", [2, 3, 10])
def test_detectable_gap_is_where_the_power_reaches_80_percent(n):
    g = detectable_gap(1.0, n)
    assert quad_power(g, n) == pytest.approx(0.8, abs=1e-6)
    assert detectable_gap(2.5, n) == pytest.approx(2.5 * g)  # in units of the spread
    assert seeds_needed(1.001 * g, 1.0) == n and seeds_needed(0.999 * g, 1.0) > n
    assert math.isnan(detectable_gap(1.0, 1)) and math.isnan(detectable_gap(0.0, n))


def test_statsmodels_agrees_where_it_is_installed():
    power = pytest.importorskip("statsmodels.stats.power")
    for effect in (0.3, 0.5, 1.0):
        assert paired_power(effect, 1.0, 12) == pytest.approx(power.TTestPower().power(effect, 12, 0.05), abs=1e-6)


def test_the_paired_table_shows_the_seeds_for_80_percent_power_under_within_noise(results):
    md = comparisons_markdown(comparisons(results[1]))
    assert md.splitlines()[0].endswith("| verdict | seeds for 80% power |")
    lo, hi = 1 - WITHIN_NOISE["half"], 1 + WITHIN_NOISE["half"]
    assert (f"| tiny · 90% | gmp | fggp | 3 | +1.00 | [{lo:+.2f}, {hi:+.2f}] | {WITHIN_NOISE['p']:.3f} | "
            f"{WITHIN_NOISE['p']:.3f} | within noise | 34 |") in md
    assert "| separated |  |" in md and "| not testable (1 paired seed) |  |" in md
    assert "Seeds for 80% power" in TABLE_LEGEND and "unadjusted" in TABLE_LEGEND


def _two_seed_runs(runs: Path) -> Path:
    """Two seeds, three columns; fggp minus gmp per seed, in pp: +1.0, +2.0 (mean 1.5, sd 0.707: t = 3 with one
    degree of freedom, p = 0.205); +0.5, -0.4 (mean 0.05, sd 0.636: effect 0.079); +0.6, -0.6 (mean 0, sd 0.849)."""
    for target, diffs in {0.5: (1.0, 2.0), 0.6: (0.5, -0.4), 0.7: (0.6, -0.6)}.items():
        for seed, d in enumerate(diffs, start=1):
            write_run(runs, config("gmp", target, seed), "completed", 0.90)
            write_run(runs, config("fggp", target, seed), "completed", 0.90 + d / 100)
    return runs


def test_the_report_opens_with_what_two_seeds_can_tell_apart(tmp_path):
    df = load_results(_two_seed_runs(tmp_path / "runs"))
    c = comparisons(df).set_index("target_sparsity")
    assert list(c["verdict"]) == ["within noise"] * 3
    assert c.loc[0.5, "p_value"] == pytest.approx(1 - 2 / math.pi * math.atan(3))  # df = 1: Cauchy tails
    wide = seeds_needed(1.5, math.sqrt(0.5))
    assert quad_power(1.5 / math.sqrt(0.5), wide) >= 0.8 > quad_power(1.5 / math.sqrt(0.5), wide - 1)
    assert c.loc[0.6, "seeds_needed"] > 1000 and c.loc[0.7, "seeds_needed"] == math.inf
    g2 = detectable_gap(1.0, 2)  # in spreads; by quadrature above
    sds = {0.5: math.sqrt(0.5), 0.6: 0.9 / math.sqrt(2), 0.7: 1.2 / math.sqrt(2)}
    assert c["detectable_gap_pct"].to_dict() == pytest.approx({t: g2 * sd for t, sd in sds.items()})
    (sentence,) = noise_sentences(df)
    assert sentence == (
        "With 2 seeds per cell, no column's best is separated from its runner-up (3 columns); within noise at this "
        f"size in 3 (tiny · 50%: fggp − gmp = +1.50 pp, {wide:.0f} seeds would separate a 1.50 pp gap at this spread; "
        "tiny · 60%: fggp − gmp = +0.05 pp, more than 1000 seeds would be needed to separate a 0.05 pp gap at this "
        "spread: practically equal; tiny · 70%: fggp − gmp = +0.00 pp, equal means: no number of seeds separates "
        f"them). The smallest gap 2 seeds separate with 80% power at the observed spread is {g2 * sds[0.6]:.2f} pp "
        f"(tiny · 60%), {g2 * sds[0.7]:.2f} pp at the widest (tiny · 70%).")
    md = report_markdown(df, "runs")
    assert md.splitlines()[4] == f"- {sentence}"  # the first lines after the title and the overview
    assert f"| within noise | {wide:.0f} |" in md and "| within noise | > 1000 |" in md
    assert "| within noise | never (equal means) |" in md


def test_the_fixture_report_opens_with_its_noise_per_setup(results):
    md = report_markdown(results[1], "runs").splitlines()
    g3 = detectable_gap(1.0, 3)
    assert md[4] == ("- [epochs=8, prune_end_epoch=8] With 1 seed per cell, no column's best can be tested against a "
                     "runner-up: a paired t test needs two seeds in common.")
    assert md[5] == (
        "- [epochs=15, prune_end_epoch=10] With 1 to 3 seeds per cell, the best is separated from the runner-up in 1 "
        "of 3 columns (tiny · 80%); within noise at this size in 1 (tiny · 90%: gmp − fggp = +1.00 pp, 34 seeds "
        "would separate a 1.00 pp gap at this spread); not testable in 1 (tiny · 95%: fewer than two seeds in "
        f"common). The smallest gap 3 seeds separate with 80% power at the observed spread is "
        f"{g3 * SEPARATED['sd']:.2f} pp (tiny · 80%), {g3 * WITHIN_NOISE['sd']:.2f} pp at the widest (tiny · 90%).")



def test_no_gap_past_what_accuracies_allow_is_offered_as_detectable(tmp_path):
    """Two seeds 90 pp apart in their differences: the smallest gap two seeds could separate is past 100 pp,
    which no two accuracies can differ by; the sentence says so instead of printing it as a gap."""
    runs = tmp_path / "runs"
    for target in (0.5, 0.6):
        for seed, (fggp, gmp) in enumerate([(0.95, 0.45), (0.10, 0.50)], start=1):
            write_run(runs, config("fggp", target, seed), "completed", fggp)
            write_run(runs, config("gmp", target, seed), "completed", gmp)
    df = load_results(runs)
    c = comparisons(df)
    smallest = detectable_gap(1.0, 2) * float(c["diff_std_pct"].min())
    assert smallest > 100
    (sentence,) = noise_sentences(df)
    assert sentence.endswith(f"At the observed spread 2 seeds separate no gap two accuracies can have with 80% "
                             f"power: the smallest they could is {smallest:.0f} pp (tiny · 50%), more than the 100 pp "
                             "between 0% and 100%.")



def test_one_detectable_gap_is_said_once_when_every_column_has_the_same_spread(tmp_path):
    runs = tmp_path / "runs"
    for target in (0.5, 0.6):
        for seed, d in enumerate((1.0, 2.0), start=1):
            write_run(runs, config("gmp", target, seed), "completed", 0.90)
            write_run(runs, config("fggp", target, seed), "completed", 0.90 + d / 100)
    (sentence,) = noise_sentences(load_results(runs))
    g = detectable_gap(1.0, 2) * math.sqrt(0.5)
    assert sentence.endswith(f"The smallest gap 2 seeds separate with 80% power at the observed spread is {g:.2f} pp "
                             "(tiny · 50%).")

def _unequal_seed_runs(runs: Path) -> Path:
    """fggp with 8 seeds, gmp with 3, at 90%: on seeds 1-3 gmp is 1 pp ahead every time, but fggp's seeds 4-8
    (95%) put its own mean (93.5%) above gmp's (92%). At 80% the two share one seed only."""
    for seed, acc in enumerate([0.90, 0.91, 0.92, 0.95, 0.95, 0.95, 0.95, 0.95], start=1):
        write_run(runs, config("fggp", 0.9, seed), "completed", acc)
    for seed, acc in enumerate([0.91, 0.92, 0.93], start=1):
        write_run(runs, config("gmp", 0.9, seed), "completed", acc)
    write_run(runs, config("fggp", 0.8, 1), "completed", 0.90)
    write_run(runs, config("fggp", 0.8, 2), "completed", 0.96)
    write_run(runs, config("gmp", 0.8, 1), "completed", 0.91)
    return runs


def test_recipes_with_different_seeds_are_ranked_over_the_seeds_they_share(tmp_path):
    df = load_results(_unequal_seed_runs(tmp_path / "runs"))
    c = comparisons(df).set_index("target_sparsity")
    row = c.loc[0.9]
    assert (row["best"], row["runner_up"], row["pairs"], row["ranked_seeds"]) == ("gmp", "fggp", 3, 3)
    assert row["diff_mean_pct"] == pytest.approx(1.0) and row["verdict"] == "separated (same gap on every seed)"
    few = c.loc[0.8]  # one seed in common: too few to pair, ranked by the cells' own means (fggp 93 > gmp 91)
    assert (few["best"], few["runner_up"], few["pairs"], few["ranked_seeds"]) == ("fggp", "gmp", 1, 1)
    table = paper_tables(df)[next(iter(paper_tables(df)))]
    fggp, gmp = table.loc["fggp", "tiny · 90%"], table.loc["gmp", "tiny · 90%"]
    assert fggp.startswith("93.5 [") and fggp.endswith("n=8") and gmp.startswith("**92.0 [")  # own means shown
    ranks = average_rank(df).set_index("recipe")["average_rank"].to_dict()
    assert ranks == {"fggp": 1.5, "gmp": 1.5}  # gmp first at 90% (shared seeds), fggp first at 80% (own means)
    text = setup_sections(df)
    assert ("In tiny · 90% the recipes have different seeds: bold, ranks and best against runner-up compare their "
            "means over the 3 seeds all of the column's recipes have; a cell shows the mean over its own seeds (n). "
            "In tiny · 80% the recipes have different seeds and fewer than two in common") in text
    same = load_results(_two_seed_runs(tmp_path / "same"))
    assert comparisons(same)["ranked_seeds"].isna().all() and "different seeds" not in setup_sections(same)


def test_the_report_pairs_its_subject_with_every_recipe_over_the_seeds_each_pair_shares(tmp_path):
    """fggp has 8 seeds, gmp 3: their comparison pairs 3 seeds; the table says so, and the CSV holds the rows.
    A subject these runs lack is one line before anything is written; without fggp there is no section."""
    runs = _unequal_seed_runs(tmp_path / "runs")
    df = load_results(runs)
    each = subject_vs_each(df).set_index("target_sparsity")
    assert each.loc[0.9, "pairs"] == 3 and each.loc[0.9, "diff_mean_pct"] == pytest.approx(-1.0)
    assert each.loc[0.9, "subject_mean_pct"] == pytest.approx(91.0)  # over the seeds they share, not all 8
    md = report_markdown(df, "runs")
    assert "## fggp against every recipe, paired by seed" in md
    assert "| tiny · 90% | gmp | 3 | 91.00 | 92.00 | -1.00 |" in md
    paths = write_report(runs, tmp_path / "report")
    assert len(pd.read_csv(paths["versus.csv"])) == 2
    assert "## gmp against every recipe" in report_markdown(df, "runs", subject="gmp")
    with pytest.raises(ValueError, match=r"^subject: 'gnp' is not a recipe of these runs \(fggp, gmp\)$"):
        write_report(runs, tmp_path / "other", subject="gnp")
    assert not (tmp_path / "other").exists()
    gmp_only = tmp_path / "gmp_only"
    for seed in (1, 2):
        write_run(gmp_only, config("gmp", 0.9, seed), "completed", 0.9)
        write_run(gmp_only, config("granet", 0.9, seed), "completed", 0.91 + seed / 100)
    assert "against every recipe" not in report_markdown(load_results(gmp_only), "runs")
    assert pd.read_csv(write_report(gmp_only, tmp_path / "r2")["versus.csv"]).empty

# ---------------------------------------------------------------- no accuracy shown past 100% or below 0%

def test_an_interval_past_a_bound_is_shown_clipped_and_marked_never_the_mean():
    assert clipped_interval(76.3, 101.7) == (76.3, 100.0, True)
    assert clipped_interval(-2.5, 12.0) == (0.0, 12.0, True)
    assert clipped_interval(0.0, 100.0) == (0.0, 100.0, False)  # at a bound is not past it
    assert format_cell(5.0, -2.34, 12.34, 2) == "5.0 [0.0, 12.3]^ n=2 †"
    assert format_cell(99.5, 97.0, 102.0, 3) == "99.5 [97.0, 100.0]^ n=3"
    assert format_cell(100.0, 100.0, 100.0, 3) == "100.0 [100.0, 100.0] n=3"
    assert "^ after an interval" in TABLE_LEGEND and "clipped" in TABLE_LEGEND


def test_paper_tables_one_per_setup_with_intervals_marks_and_na(results):
    tables = paper_tables(results[1])
    assert list(tables) == ["epochs=8, prune_end_epoch=8", "epochs=15, prune_end_epoch=10"]
    main = tables["epochs=15, prune_end_epoch=10"]
    assert list(main.index) == ["dense", "fggp", "gmp", "granet", "global_mp"]
    assert list(main.columns) == ["tiny · 80%", "tiny · 90%", "tiny · 95%"]
    h = T2 / math.sqrt(3)
    assert main.loc["dense", "tiny · 90%"] == f"96.0 [{96 - h:.1f}, {96 + h:.1f}] n=3"
    assert main.loc["fggp", "tiny · 80%"] == f"**91.0 [{91 - h:.1f}, {91 + h:.1f}] n=3**"
    assert main.loc["gmp", "tiny · 90%"] == f"**94.0 [{94 - 3 * h:.1f}, 100.0]^ n=3**"  # 94 + 7.45: clipped
    assert main.loc["granet", "tiny · 90%"] == "92.5 n=1 †"
    assert main.loc["fggp", "tiny · 95%"] == f"89.0 [{89 - T1:.1f}, 100.0]^ n=2 †"  # 89 + 12.7: clipped
    assert main.loc["granet", "tiny · 95%"] == "**92.0 n=1 †**"
    assert main.loc["granet", "tiny · 80%"] == "—"
    assert main.loc["global_mp", "tiny · 95%"] == "n/a"
    assert main.loc["global_mp", "tiny · 90%"] == "—"
    short = tables["epochs=8, prune_end_epoch=8"]
    assert list(short.index) == ["gmp", "global_mp"]  # no dense run of this budget, and none borrowed
    assert short.loc["gmp", "tiny · 99%"] == "**99.0 n=1 † ‡**"  # ‡: a collapsed layer in this cell
    assert short.loc["global_mp", "tiny · 99%"] == "98.5 n=1 †"


def test_average_rank_within_each_setup_only(results):
    # 15 epochs. 0.8: fggp 1, gmp 2;  0.9: gmp 1, fggp 2, granet 3;  0.95: granet 1, gmp 2, fggp 3
    ranks = average_rank(results[1])
    main = ranks[ranks["setup"] == "epochs=15, prune_end_epoch=10"].set_index("recipe")
    assert main["average_rank"].to_dict() == pytest.approx({"gmp": 5 / 3, "fggp": 2.0, "granet": 2.0})
    assert main["columns"].to_dict() == {"gmp": 3, "fggp": 3, "granet": 2}
    assert list(main.index) == ["gmp", "fggp", "granet"]
    short = ranks[ranks["setup"] == "epochs=8, prune_end_epoch=8"].set_index("recipe")
    assert short["average_rank"].to_dict() == {"gmp": 1.0, "global_mp": 2.0}


def test_a_recipe_alone_in_its_column_is_neither_bold_nor_ranked(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, config("fggp", 0.9, 1), "completed", 0.90)
    write_run(runs, config("gmp", 0.9, 1), "completed", 0.85)
    write_run(runs, config("fggp", 0.9, 1, epochs=12), "completed", 0.95)  # alone in its budget
    df = load_results(runs)
    tables = paper_tables(df)
    lone = tables["epochs=12"]
    assert lone.loc["fggp", "tiny · 90%"] == "95.0 n=1 †"
    assert set(average_rank(df)["setup"]) == {"epochs=15"}


def test_average_rank_ties_share_the_average():
    rows = [("a", 0.9, 0.5), ("b", 0.9, 0.5), ("c", 0.9, 0.4),  # a, b tie: 1.5 each, c 3
            ("a", 0.95, 0.6), ("b", 0.95, 0.5), ("c", 0.95, 0.4),  # a 1, b 2, c 3
            ("dense", 0.0, 0.99)]  # never ranked
    df = pd.DataFrame([dict(arch="tiny", initial_sparsity=0.0, target_sparsity=t, recipe=r, status="completed",
                            final_test_acc=acc, seed=1, variant="", setup="one setup", run_id=f"{r}{t}")
                       for r, t, acc in rows])
    ranks = average_rank(df).set_index("recipe")["average_rank"]
    assert ranks.to_dict() == {"a": 1.25, "b": 1.75, "c": 3.0}


def test_collapsed_layers_against_the_line():
    kept = {"features.0.weight": 16, "features.4.weight": 31, "features.8.weight": 0, "classifier.weight": 10}
    flagged = collapsed_layers("tiny", densities(kept), 24112)
    assert [(f["layer"], f["kept"], f["outputs"]) for f in flagged] == [("features.4.weight", 31, 32),
                                                                      ("features.8.weight", 0, 64)]
    # sizes that do not add up (another num_classes, another model): only empty layers can be told
    assert [f["layer"] for f in collapsed_layers("tiny", densities(kept), 99999)] == ["features.8.weight"]
    assert [f["layer"] for f in collapsed_layers("no_such_arch", {"a": 0.0, "b": 0.001})] == ["a"]
    # shapes recorded with the result win over the rebuilt model: e.g. a 1-channel input (432 -> 144 weights)
    shapes = {"features.0.weight": [16, 1, 3, 3], "classifier.weight": [10, 64]}
    flagged = collapsed_layers("tiny", {"features.0.weight": 15 / 144, "classifier.weight": 0.5}, 784, shapes)
    assert [(f["layer"], f["kept"], f["size"], f["outputs"]) for f in flagged] == [("features.0.weight", 15, 144, 16)]


def test_layer_collapse_flags_the_run_and_the_layer_by_name(results):
    _, df, ids = results
    c = layer_collapse(df)
    assert set(c["run_id"]) == {ids["gmp"]}
    assert c.set_index("layer")[["kept", "outputs"]].to_dict("index") == {
        "features.8.weight": {"kept": 36, "outputs": 64}, "classifier.weight": {"kept": 4, "outputs": 10}}
    note = runs_view(df).set_index("id").loc[ids["gmp"].rsplit("-", 1)[1], "note"]
    assert note == "collapsed: features.8.weight, classifier.weight"
    md = report_markdown(df, "runs")
    section = md.split("## Layer collapse")[1].split("##")[0]
    assert "| classifier.weight | 4 / 10 |" in section and "| features.8.weight | 36 / 64 |" in section
    assert "global_mp" not in section


def test_not_applicable_points_are_cells_and_a_list_not_problems(results):
    _, df, _ = results
    na = not_applicable(df)
    assert len(na) == 3 and set(na["recipe"]) == {"global_mp"} and set(na["reason"]) == {NA_REASON}
    assert "not_applicable" not in set(problems(df)["status"])
    md = report_markdown(df, "runs")
    assert "## Not applicable" in md and NA_REASON in md.split("## Not applicable")[1]
    assert "3 not applicable" in overview(df)


def test_problems_lists_exactly_the_runs_that_did_not_complete(results):
    _, df, ids = results
    p = problems(df)
    assert p["status"].tolist() == ["failed", "diverged", "incomplete", "missing"]
    assert p["run_id"].tolist() == [ids[s] for s in ("failed", "diverged", "incomplete", "missing")]
    assert p.loc[0, "error"] == "RuntimeError: boom"
    assert p.loc[1, "diverged_step"] == 123


def test_runs_view_is_compact(results):
    _, df, ids = results
    view = runs_view(df)
    assert list(view.columns) == ["id", "setup", "recipe", "sparsity %", "seed", "status", "final acc %", "epochs",
                                  "note"]
    row = view.set_index("id").loc[ids["diverged"].rsplit("-", 1)[1]]
    assert (row["final acc %"], row["note"], row["sparsity %"]) == (10.0, "diverged at step 123", "95")
    dense = view[view["recipe"] == "dense"]
    assert set(dense["setup"]) == {"epochs=15, prune_end_epoch=10"}  # the budget it is compared within
    assert set(view.loc[view["status"] == "n/a", "note"]) == {NA_REASON}


def test_recipe_knobs_are_variants_and_budgets_are_setups(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, config("fggp", 0.9, 1), "completed", 0.90)
    write_run(runs, config("fggp", 0.9, 1, rate=0.3), "completed", 0.80)
    write_run(runs, config("gmp", 0.9, 1), "completed", 0.85)
    s = summary(load_results(runs)).set_index("recipe")
    assert s["n"].to_dict() == {"fggp (rate=0.3)": 1, "fggp (rate=None)": 1, "gmp": 1}
    write_run(runs, config("gmp", 0.9, 2, lr=0.01), "completed", 0.70)
    s = summary(load_results(runs))
    assert set(zip(s["setup"], s["recipe"])) == {("lr=0.1", "fggp (rate=0.3)"), ("lr=0.1", "fggp (rate=None)"),
                                                 ("lr=0.1", "gmp"), ("lr=0.01", "gmp")}


def test_a_data_field_the_run_id_omits_when_off_still_separates_setups(tmp_path):
    """A held-out validation split changes the training data: never pooled with runs that train on all."""
    runs = tmp_path / "runs"
    plain = write_run(runs, config("fggp", 0.9, 1), "completed", 0.90)
    split = config("fggp", 0.9, 1, extra={"split": "val"})
    write_run(runs, split, "completed", 0.80)
    path = runs / split.run_id / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "extra": {}, "val_size": 500}))
    df = load_results(runs).set_index("run_id")
    assert df.loc[split.run_id, "setup"] != df.loc[plain.run_id, "setup"]
    assert "val_size=500" in df.loc[split.run_id, "setup"]
    assert summary(df.reset_index())["n"].tolist() == [1, 1]


def draw(fig) -> None:
    """Draw as savefig does, on an Agg canvas: a bare Figure's own canvas draws nothing, so its constrained
    layout (legend below the axes) would never run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()


def test_accuracy_vs_sparsity_figure_has_a_panel_per_setup_and_the_legend_outside(results):
    fig = plot_accuracy_vs_sparsity(results[1])
    short, main = fig.axes
    assert main.get_title() == "tiny\nepochs=15, prune_end_epoch=10"
    lines = {c.get_label(): c.lines[0] for c in main.containers}
    assert set(lines) == {"fggp", "gmp", "granet"}
    assert [t.get_text() for t in main.get_xticklabels()] == ["80%", "90%", "95%"]
    assert list(lines["gmp"].get_xdata()) == pytest.approx([0, 1, 2])  # fggp, gmp, granet: nudged -0.11, 0, 0.11
    assert list(lines["fggp"].get_xdata()) == pytest.approx([-0.11, 0.89, 1.89])
    assert list(lines["granet"].get_xdata()) == pytest.approx([1.11, 2.11])
    assert list(lines["gmp"].get_ydata()) == pytest.approx([88.8333333, 94.0, 91.0])
    crosses = [ln for ln in short.lines if ln.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_ydata()) == pytest.approx([99.0])  # gmp's collapsed cell
    caps = [c for c in main.containers if c.get_label() == "fggp"][0].lines[1]  # 95% interval, not std
    h = T2 / math.sqrt(3)
    assert sorted(cap.get_ydata()[0] for cap in caps) == pytest.approx([91 - h, 91 + h])
    # intervals past 100% stop there, with a triangle: gmp at 90% (94 + 7.45), fggp at 95% (89 + 12.7)
    gmp_caps = sorted(y for cap in [c for c in main.containers if c.get_label() == "gmp"][0].lines[1]
                      for y in cap.get_ydata())
    assert gmp_caps == pytest.approx(sorted([88.8333333 - T2 * EXPECTED[("gmp", 0.8)][1] / math.sqrt(3),
                                             88.8333333 + T2 * EXPECTED[("gmp", 0.8)][1] / math.sqrt(3),
                                             94 - 3 * h, 100.0, 91 - 2 * h, 91 + 2 * h]))
    triangles = [(x, y) for ln in main.lines if ln.get_marker() == "^" for x, y in zip(ln.get_xdata(), ln.get_ydata())]
    assert [x for x, _ in sorted(triangles)] == pytest.approx([1.0, 1.89]) and {y for _, y in triangles} == {100.0}
    assert not [ln for ln in main.lines if ln.get_marker() == "v"]  # nothing below 0%
    assert main.get_ylim()[1] <= 100.0
    assert all(y <= 100.0 for c in main.containers for seg in c.lines[2][0].get_segments() for _, y in seg)
    # every seed's own accuracy as a dot beside its cell's mean (0.4 of a step to the right), in its colour
    dots = [ln for ln in main.lines if ln.get_marker() == "o" and ln.get_markersize() < 4]
    seen = sorted((round(x, 6), round(y, 6)) for ln in dots for x, y in zip(ln.get_xdata(), ln.get_ydata()))
    expected = [(round(targets.index(t) + 0.11 * (k - 1) + 0.044, 6), round(100 * acc, 6))
                for (recipe, t), accs in ACCURACIES.items() if recipe != "dense"
                for k in [["fggp", "gmp", "granet"].index(recipe)] for targets in [[0.8, 0.9, 0.95]] for acc in accs]
    assert seen == sorted(expected)
    gmp_dots = [ln for ln in dots if ln.get_color() == lines["gmp"].get_color()]
    assert len(gmp_dots) == 1 and sorted(gmp_dots[0].get_ydata()) == pytest.approx(
        sorted(100 * a for (r, _), accs in ACCURACIES.items() if r == "gmp" for a in accs))
    dense = [ln for ln in main.lines if ln.get_linestyle() == "--" and ln.get_color() == "k"]
    assert len(dense) == 1 and list(dense[0].get_ydata()) == pytest.approx([96.0, 96.0])
    assert not [ln for ln in short.lines if ln.get_linestyle() == "--" and ln.get_color() == "k"]
    assert main.get_legend() is None and short.get_legend() is None
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert "dense (dashed)" in labels and "small dots: each seed" in labels
    assert "triangle: interval clipped at 100% (or 0%)" in labels
    draw(fig)
    box, area = legend.get_window_extent(), main.get_window_extent()
    assert box.y1 <= area.y0  # below the axes, never over the data



def test_six_recipes_at_one_sparsity_stay_apart_in_the_figure(tmp_path):
    """Six recipes with equal means at each of four sparsities: drawn, neighbouring means at one sparsity are at
    least 12 pixels apart (at the 150 dpi of the report's png) and each recipe's seed dots sit between its mean and
    the next recipe's."""
    runs = tmp_path / "runs"
    recipes = ["fggp", "fggp_annealed", "magnitude_first", "gmp", "granet", "global_mp"]
    for recipe in recipes:
        for target in (0.9, 0.95, 0.98, 0.998):
            for seed, acc in enumerate((0.88, 0.89, 0.90), start=1):
                write_run(runs, config(recipe, target, seed), "completed", acc)
    fig = plot_accuracy_vs_sparsity(load_results(runs))
    fig.set_dpi(150)
    draw(fig)
    (ax,) = fig.axes
    means = {c.get_label(): c.lines[0].get_xdata() for c in ax.containers}
    assert list(means) == recipes
    to_px = ax.transData.transform
    for k in range(4):
        px = sorted(to_px((means[r][k], 89.0))[0] for r in recipes)
        assert min(b - a for a, b in zip(px, px[1:])) >= 12
    dots = {ln.get_color(): ln.get_xdata() for ln in ax.lines if ln.get_marker() == "o" and ln.get_markersize() < 4}
    for c in ax.containers:
        x = c.lines[0].get_xdata()
        assert all(x[k] < d < x[k] + 0.11 for k, d in zip(range(4), dots[c.lines[0].get_color()][::3]))


def test_write_report_writes_every_file(results, tmp_path):
    runs, _, ids = results
    paths = write_report(runs, tmp_path / "report")
    assert set(paths) == {"summary.csv", "table.md", "table.csv", "comparisons.csv", "versus.csv", "collapse.csv",
                          "accuracy_vs_sparsity.png", "accuracy_vs_sparsity.svg", "accuracy_vs_flops.png",
                          "accuracy_vs_flops.svg"}
    assert all(p.parent == tmp_path / "report" and p.stat().st_size > 0 for p in paths.values())
    assert sorted(q.name for q in (tmp_path / "report").iterdir()) == sorted(paths)  # no temp files left
    md = paths["table.md"].read_text()
    h = T2 / math.sqrt(3)
    assert f"| dense | 96.0 [{96 - h:.1f}, {96 + h:.1f}] n=3 | 96.0 [{96 - h:.1f}, {96 + h:.1f}] n=3 |" in md
    assert "### Setup: epochs=8, prune_end_epoch=8" in md and "### Setup: epochs=15, prune_end_epoch=10" in md
    assert "| tiny · 90% | gmp | fggp | 3 | +1.00 |" in md and "within noise" in md
    assert all(ids[s] in md for s in ("failed", "diverged", "incomplete", "missing"))  # full ids: directories
    summary_csv = pd.read_csv(paths["summary.csv"])
    assert len(summary_csv) == len(EXPECTED) + 2
    table = pd.read_csv(paths["table.csv"])
    row = table[(table["recipe"] == "gmp") & (table["target_sparsity"] == 0.9)].iloc[0]
    assert (row["mean_pct"], row["n"], row["rank"], bool(row["best"])) == (pytest.approx(94.0), 3, 1.0, True)
    assert row["ci95_low_pct"] == pytest.approx(94 - 3 * h)
    # the CSVs keep the interval as computed, past 100%, and say it is shown clipped
    assert row["ci95_high_pct"] == pytest.approx(94 + 3 * h) and row["ci95_high_pct"] > 100 and row["ci95_clipped"]
    assert table["ci95_clipped"].dtype == bool  # False, not empty, for n/a cells
    assert sorted(zip(*[table.loc[table["ci95_clipped"], c] for c in ("recipe", "target_sparsity")])) == sorted(CLIPPED)
    assert f"**94.0 [{94 - 3 * h:.1f}, 100.0]^ n=3**" in md
    clipped = summary_csv[summary_csv["ci95_clipped"]]
    assert sorted(zip(clipped["recipe"], clipped["target_sparsity"])) == sorted(CLIPPED)
    assert (clipped["ci95_high_pct"] > 100).all()
    assert table.loc[table["state"] == "not_applicable", "recipe"].tolist() == ["global_mp"]
    comp = pd.read_csv(paths["comparisons.csv"])
    assert comp.loc[comp["target_sparsity"] == 0.8, "p_value"].item() == pytest.approx(SEPARATED["p"])
    assert comp.loc[comp["target_sparsity"] == 0.9, "seeds_needed"].item() == WITHIN_NOISE["seeds"]
    assert comp["seeds_needed"].notna().sum() == 1  # only the gap within noise
    assert comp.loc[comp["target_sparsity"] == 0.9, "diff_std_pct"].item() == pytest.approx(WITHIN_NOISE["sd"])
    collapse = pd.read_csv(paths["collapse.csv"])
    assert sorted(collapse["layer"]) == ["classifier.weight", "features.8.weight"]
    for name in ("accuracy_vs_sparsity", "accuracy_vs_flops"):
        assert paths[f"{name}.png"].read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in paths[f"{name}.svg"].read_bytes()[:500]
    assert "![accuracy vs remaining FLOPs](accuracy_vs_flops.png)" in md


@pytest.mark.parametrize("make, message", [("absent", "does not exist"), ("empty", "holds no runs"),
                                           ("file", "is a file")])
def test_write_report_refuses_a_runs_dir_without_runs_before_writing(tmp_path, make, message):
    runs = tmp_path / "runs"
    if make == "empty":
        runs.mkdir()
        (runs / "scratch").mkdir()  # a folder that is not a run
    elif make == "file":
        runs.write_text("")
    with pytest.raises(ValueError, match=f"^runs_dir: '{runs}' {message}") as err:
        write_report(runs, tmp_path / "report")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "report").exists()
    if make != "file":
        with pytest.raises(ValueError, match=f"^runs_dir: .*{message}"):
            check_runs_dir(runs)


def test_write_report_refuses_a_report_dir_that_is_a_file(results, tmp_path):
    (tmp_path / "report").write_text("")
    with pytest.raises(ValueError, match="^report_dir: .* is a file"):
        write_report(results[0], tmp_path / "report")


def test_write_report_with_runs_but_none_completed(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, config("fggp", 0.9, 1), "failed", error="ValueError: bad")
    paths = write_report(runs, tmp_path / "report")
    assert all(p.is_file() for p in paths.values())
    md = paths["table.md"].read_text()
    assert "no completed runs yet" in md.lower() and "`make quick`" in md and "ValueError: bad" in md
    assert "None (no completed runs yet)." in md  # the collapse section: nothing to check yet
    assert "accuracy_vs_flops.png" not in md  # nothing to plot: not linked
    df = load_results(runs)
    assert "no completed runs yet" in overview(df).lower()
    assert "`make quick`" not in runs_markdown(df)  # the every-run view lists the failed run instead


# ------------------------------------------------------------------------------------- size and speed

def test_size_speed_per_cell_matches_hand_computation(results):
    s = size_speed(results[1]).set_index(["setup", "recipe", "target_sparsity"])
    main = "epochs=15, prune_end_epoch=10"
    fggp = s.loc[(main, "fggp", 0.9)]
    # sizes from seeds 1, 2 only: 1.2 x 96 000 x 0.1 + 1000 s = 12 520, 13 520
    assert (fggp["runs"], fggp["sized_runs"], fggp["flops_runs"], fggp["exported_runs"]) == (3, 2, 3, 1)
    assert fggp["sparse_bytes"] == pytest.approx(13_020) and fggp["dense_bytes"] == DENSE_BYTES
    assert fggp["size_ratio"] == pytest.approx(13_020 / DENSE_BYTES)
    assert fggp["flops_remaining"] == pytest.approx(0.2) and fggp["flop_ratio"] == pytest.approx(5.0)
    assert [fggp[f"speedup_batch_{b}"] for b in (1, 64, 256)] == pytest.approx([0.8, 3.6, 5.0])
    assert fggp["measured_on"] == "cpu (test, 2 cores), 2 threads, torch 2.test"
    # gmp's seed 3 has no model_bytes: its sizes come from its (flat) export, 15 000 bytes
    gmp = s.loc[(main, "gmp", 0.9)]
    assert gmp["sized_runs"] == 3 and gmp["sparse_bytes"] == pytest.approx((12_520 + 13_520 + 15_000) / 3)
    assert [gmp["speedup_batch_1"], gmp["speedup_batch_64"]] == pytest.approx([0.5, 2.0])  # dense_ms / sparse_ms
    assert math.isnan(gmp["speedup_batch_256"])
    # two seeds of fggp at 95%: remaining 0.1 x 0.9 and 0.1 x 1.0
    assert s.loc[(main, "fggp", 0.95), "flops_remaining"] == pytest.approx(0.095)
    assert s.loc[(main, "dense", 0.0), "flops_remaining"] == 1.0
    old = s.loc[("epochs=8, prune_end_epoch=8", "gmp", 0.99)]  # records none of it
    assert (old["sized_runs"], old["flops_runs"], old["exported_runs"]) == (0, 0, 0)
    assert math.isnan(old["sparse_bytes"]) and math.isnan(old["flop_ratio"])


def test_size_and_speed_are_shown_beside_each_other_and_a_dash_where_not_recorded(results):
    _, df, ids = results
    md = size_speed_markdown(df)
    assert ("| tiny · 90% | fggp | 13 KB = 0.14x dense (2 of 3 runs) | FLOPs x5.0, measured x0.80 / x3.6 / x5.0 at "
            "batch 1 / 64 / 256 (1 of 3 runs) |") in md
    assert "| tiny · 90% | gmp | 13.7 KB = 0.14x dense | FLOPs x5.0, measured x0.50 / x2.0 at batch 1 / 64 (1 of 3 runs) |" in md
    assert "| tiny · 95% | granet | 6.76 KB = 0.07x dense | FLOPs x11 |" in md
    assert "| tiny · 99% | gmp | - | - |" in md  # the 8-epoch runs: older, nothing recorded
    assert "Measured on: cpu (test, 2 cores), 2 threads, torch 2.test." in md
    assert "Unreadable export.json, its numbers left out: " in md and "(speedup is 'fast', not a number)" in md
    damaged = df[df["export_error"].notna()]
    assert len(damaged) == 1 and set(damaged["status"]) == {"completed"}  # the run itself stands


def test_read_export_refuses_a_damaged_file_and_says_none_when_absent(tmp_path):
    assert read_export(tmp_path) is None
    write_export(tmp_path, {"files": {}, "latency": [{"batch": "many", "speedup": 2.0}]})
    with pytest.raises(ValueError, match=r"^export\.json: .*: latency batch 'many' is not a whole number"):
        read_export(tmp_path)
    (tmp_path / "export" / "export.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"^export\.json: .*: not valid JSON"):
        read_export(tmp_path)


def test_runs_without_sizes_flops_or_exports_show_a_sentence_and_a_dash(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, config("fggp", 0.9, 1), "completed", 0.90)
    write_run(runs, config("gmp", 0.9, 1), "completed", 0.85)
    df = load_results(runs)
    assert size_speed_markdown(df).startswith("No run recorded its file size, FLOPs or a measured speed (- everywhere)")
    paths = write_report(runs, tmp_path / "report")
    summary_csv = pd.read_csv(paths["summary.csv"])
    assert summary_csv["sparse_bytes"].isna().all() and summary_csv["flops_remaining"].isna().all()
    assert "accuracy_vs_flops.png" not in paths["table.md"].read_text()  # no point to plot: not linked


def test_table_md_and_summary_csv_carry_size_and_speed(results, tmp_path):
    paths = write_report(results[0], tmp_path / "report")
    md = paths["table.md"].read_text()
    assert "## Size and speed" in md and "### Size and speed, setup: epochs=15, prune_end_epoch=10" in md
    assert "| tiny · 90% | fggp | 13 KB = 0.14x dense (2 of 3 runs) |" in md
    csv = pd.read_csv(paths["summary.csv"]).set_index(["setup", "recipe", "target_sparsity"])
    row = csv.loc[("epochs=15, prune_end_epoch=10", "fggp", 0.9)]
    assert (row["n"], row["sized_runs"], row["exported_runs"]) == (3, 2, 1)
    assert row["sparse_bytes"] == pytest.approx(13_020) and row["flop_ratio"] == pytest.approx(5.0)
    assert row["speedup_batch_64"] == pytest.approx(3.6) and row["mean_pct"] == pytest.approx(93.0)
    assert list(csv.columns[:6]) == ["arch", "initial_sparsity", "n", "mean_pct", "std_pct", "ci95_low_pct"]


def test_accuracy_vs_flops_figure_puts_each_cell_at_its_remaining_flops(results):
    fig = plot_accuracy_vs_flops(results[1])
    short, main = fig.axes
    assert main.get_xscale() == "log" and main.xaxis_inverted()
    lines = {c.get_label(): c.lines[0] for c in main.containers if not c.get_label().startswith("_")}
    assert set(lines) == {"fggp", "gmp", "granet"}
    # x: 100 x mean remaining FLOPs per cell, in increasing order, nudged by 0.01 decade per recipe (fggp, gmp,
    # granet: -0.01, 0, +0.01); y: the cells' mean accuracy
    assert list(lines["fggp"].get_xdata()) == pytest.approx([9.5 / 10 ** 0.015, 20.0 / 10 ** 0.015, 30.0 / 10 ** 0.015])
    assert list(lines["gmp"].get_xdata()) == pytest.approx([10.0, 20.0, 30.0])
    assert list(lines["fggp"].get_ydata()) == pytest.approx([89.0, 93.0, 91.0])
    assert list(lines["granet"].get_xdata()) == pytest.approx([9.0 * 10 ** 0.015, 18.0 * 10 ** 0.015])
    assert main.get_ylim()[1] <= 100.0 and sorted(  # the two intervals past 100% stop there, with a triangle
        y for ln in main.lines if ln.get_marker() == "^" for y in ln.get_ydata()) == [100.0, 100.0]
    dots = [ln for ln in main.lines if ln.get_marker() == "o" and ln.get_markersize() < 4]
    gmp_dots = [ln for ln in dots if ln.get_color() == lines["gmp"].get_color()]
    assert len(gmp_dots) == 1 and sorted(gmp_dots[0].get_ydata()) == pytest.approx(
        sorted(100 * a for (r, _), accs in ACCURACIES.items() if r == "gmp" for a in accs))
    assert sorted(set(gmp_dots[0].get_xdata())) == pytest.approx([x / 10 ** 0.006 for x in (10.0, 20.0, 30.0)])
    dense_point = [c for c in main.containers if c.lines[0].get_color() == "k"]
    assert len(dense_point) == 1 and list(dense_point[0].lines[0].get_xdata()) == [100.0]
    assert list(dense_point[0].lines[0].get_ydata()) == pytest.approx([96.0])
    low, high = sorted(main.get_xlim())
    assert low == pytest.approx(9.0 / 1.6) and high == pytest.approx(160.0)
    assert [t.get_text() for t in main.get_xticklabels() if low <= t.get_position()[0] <= high] \
        == ["10%", "20%", "50%", "100%"]
    assert not short.containers and "no run here recorded its FLOPs" in [t.get_text() for t in short.texts]
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert "dense (dashed)" in labels and not any(x.startswith("cross") for x in labels)  # collapse: not shown here
    draw(fig)
    assert legend.get_window_extent().y1 <= main.get_window_extent().y0


# ---------------------------------------------------------------------------------- identical masks, bold

def test_identical_masks_are_explained_under_their_table(tmp_path):
    runs = tmp_path / "runs"
    for seed, (h, acc) in enumerate([("a", 0.90), ("b", 0.92)], start=1):
        write_run(runs, config("gmp", 0.9, seed), "completed", acc, mask_hash=h)
        write_run(runs, config("global_mp", 0.9, seed), "completed", acc, mask_hash=h)
        write_run(runs, config("fggp", 0.9, seed), "completed", acc - 0.01, mask_hash=h + "x")
    md = setup_sections(load_results(runs))
    note = ("gmp and global_mp chose identical final masks on every seed at tiny · 90%: Global MP's per-layer floor "
            "never bound, so it pruned exactly as global magnitude pruning (gmp) does. Their rows there are one "
            "result, not two.")
    assert note in md and md.index("identical on every seed") < md.index(note)  # below the paired test
    assert "fggp and" not in md


def test_bold_is_said_to_need_two_pruned_recipes_as_the_tables_do():
    """A recipe alone in its column is not bold (test above); the legend and notebook 03 say so."""
    import nbformat

    assert "where at least two pruned recipes compete" in TABLE_LEGEND
    nb = nbformat.read(Path(__file__).parents[1] / "notebooks" / "03_aggregate_results.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "**Bold** is the best pruned mean of a column where at least two pruned recipes compete" in text


# ------------------------------------------------------------------------------------ notebook parameters

PARAMETERS = {"runs_dir": str, "report_dir": str}


def test_check_parameters_refuses_a_name_papermill_injected_that_the_notebook_does_not_define():
    injected = "# Parameters\nruns_dri = \"x\"\nreport_dir = \"y\"\n"
    namespace = {"In": ["", "runs_dir = 'a'\nreport_dir = 'b'", injected], "runs_dir": "a", "report_dir": "y",
                 "runs_dri": "x"}
    with pytest.raises(ValueError, match=r"^runs_dri: not a parameter of this notebook \(did you mean runs_dir\?\); "
                                         r"its parameters are report_dir, runs_dir$"):
        check_parameters(namespace, PARAMETERS)
    namespace["In"][2] = "# Parameters\nruns_dir = \"x\"\n"
    assert check_parameters(namespace, PARAMETERS) == ["runs_dir"]


def test_check_parameters_checks_types_and_ignores_variables_of_later_cells():
    by_hand = {"In": ["", "runs_dir = 3\nreport_dir = 'b'"], "runs_dir": 3, "report_dir": "b"}
    with pytest.raises(ValueError, match=r"^runs_dir: must be str, not int 3$"):
        check_parameters(by_hand, PARAMETERS)
    # run again in the same kernel: df, fig, name ... from later cells are no parameters; nothing injected
    again = {"In": ["", "runs_dir = 'a'", "# a comment\nname = 'x'"], "runs_dir": "a", "report_dir": "b",
             "name": "table.md", "df": pd.DataFrame()}
    assert check_parameters(again, PARAMETERS) == []
    numbers = {"lr": 1, "epochs": True}
    with pytest.raises(ValueError, match=r"^epochs: must be int, not bool True$"):
        check_parameters(numbers, {"lr": float, "epochs": int})  # an int is a float, a bool is no int
    assert check_parameters({"lr": 1, "epochs": 2}, {"lr": float, "epochs": int}) == []
    with pytest.raises(ValueError, match=r"^seed: the parameters cell did not define it$"):
        check_parameters({}, {"seed": int})


NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "03_aggregate_results.ipynb"


def _run_notebook(tmp_path, **parameters):
    """Notebook 03 executed as the sweep executes it (fggp.executors), into tmp_path/out.ipynb."""
    from fggp.executors import execute_notebook

    execute_notebook(NOTEBOOK, tmp_path / "out.ipynb", parameters, cwd=tmp_path)


@pytest.mark.parametrize("case", ["typo", "empty"])  # every runs_dir case: test_write_report_refuses_...
def test_notebook_03_refuses_a_misspelt_parameter_or_a_runs_dir_without_runs_in_one_line(tmp_path, case):
    from papermill.exceptions import PapermillExecutionError

    (tmp_path / "empty").mkdir()
    parameters, message = {
        "typo": ({"runs_dri": str(tmp_path), "report_dir": str(tmp_path / "r")},
                 "runs_dri: not a parameter of this notebook (did you mean runs_dir?); its parameters are "
                 "report_dir, runs_dir, subject"),
        "empty": ({"runs_dir": str(tmp_path / "empty"), "report_dir": str(tmp_path / "r")},
                  f"runs_dir: '{tmp_path / 'empty'}' holds no runs"),
    }[case]
    with pytest.raises(PapermillExecutionError) as err:
        _run_notebook(tmp_path, **parameters)
    assert err.value.ename == "ValueError" and err.value.evalue.startswith(message)
    assert "\n" not in err.value.evalue
    assert not (tmp_path / "r").exists()  # refused before any work


def test_notebook_03_refuses_a_subject_the_runs_do_not_have_in_one_line(tmp_path):
    from papermill.exceptions import PapermillExecutionError

    runs = _two_seed_runs(tmp_path / "runs")
    with pytest.raises(PapermillExecutionError) as err:
        _run_notebook(tmp_path, runs_dir=str(runs), report_dir=str(tmp_path / "r"), subject="fgp")
    assert err.value.ename == "ValueError"
    assert err.value.evalue == "subject: 'fgp' is not a recipe of these runs (fggp, gmp)"
    assert not (tmp_path / "r").exists()


def test_notebook_03_shows_the_tables_both_figures_and_size_and_speed(results, tmp_path):
    _run_notebook(tmp_path, runs_dir=str(results[0]), report_dir=str(tmp_path / "report"))
    import nbformat

    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    shown = "\n".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "| tiny · 90% | fggp | 13 KB = 0.14x dense (2 of 3 runs) |" in shown
    assert "### Setup: epochs=15, prune_end_epoch=10" in shown
    assert "| column | other | pairs | fggp (paired seeds) | other (paired seeds) |" in shown  # fggp against each
    figures = [c for c in nb.cells if c.cell_type == "code" and any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert [c.source for c in figures] == ["plot_accuracy_vs_sparsity(df)", "plot_accuracy_vs_flops(df)"]
    assert (tmp_path / "report" / "accuracy_vs_flops.png").is_file()
