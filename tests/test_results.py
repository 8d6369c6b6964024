"""The evidence document: the subject-vs-best test, kept weights per layer, the findings sentences and the
written file, checked on the hand-computed fixture of test_report (numbers derived there)."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from fggp.cli import main
from fggp.report import load_results
from fggp.results import findings, layer_kept, subject_vs_best, timing, write_results
from fggp.report import seeds_needed
from test_report import SEPARATED, WITHIN_NOISE, make_results, quad_power


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    make_results(root)
    return root, load_results(root / "runs")


def test_subject_against_the_best_other_recipe_is_paired_by_seed(sweep):
    _, df = sweep
    vs = subject_vs_best(df).set_index("target_sparsity")
    assert list(vs.index) == [0.8, 0.9, 0.95]  # the epochs=8 setup has no fggp run
    assert vs.loc[0.8, "other"] == "gmp" and vs.loc[0.8, "diff_mean_pct"] == pytest.approx(SEPARATED["diff"])
    assert vs.loc[0.8, "p_value"] == pytest.approx(SEPARATED["p"]) and vs.loc[0.8, "verdict"] == "separated"
    # fggp 93 against gmp 94 (granet's 92.5 is lower): the 0.9 column's paired test, sign reversed
    assert vs.loc[0.9, "other"] == "gmp" and vs.loc[0.9, "diff_mean_pct"] == pytest.approx(-WITHIN_NOISE["diff"])
    assert vs.loc[0.9, "p_value"] == pytest.approx(WITHIN_NOISE["p"]) and vs.loc[0.9, "verdict"] == "within noise"
    assert vs.loc[0.95, "other"] == "granet" and vs.loc[0.95, "pairs"] == 1
    assert vs.loc[0.95, "verdict"].startswith("not testable") and math.isnan(vs.loc[0.95, "diff_mean_pct"])
    assert vs.loc[0.8, "p_adjusted"] == pytest.approx(2 * SEPARATED["p"])  # BH over the two tested columns
    lines = "\n".join(findings(df, "gmp"))  # gmp behind fggp at 80%: separated, both p's named
    assert (f"the gap to gmp is separated in 1 (tiny · 80%: fggp by {SEPARATED['diff']:.2f} pp, "
            f"p = {SEPARATED['p']:.3g}, adjusted {2 * SEPARATED['p']:.3g})") in lines


def test_kept_weights_per_layer_at_the_highest_target(sweep):
    _, df = sweep
    kept = layer_kept(df)
    assert kept.attrs["target"] == 0.99
    assert list(kept.index) == ["gmp", "global_mp"]
    assert kept.loc["gmp", "features.8.weight (64 out, 18,432)"] == "36 [36, 36]"
    assert kept.loc["global_mp", "classifier.weight (10 out, 640)"] == "13 [13, 13]"
    # a run recording no layer shapes is read with its arch's (the fixture's write no layer_shapes)
    at_90 = layer_kept(df, 0.9)
    assert at_90.loc["gmp", "features.0.weight (16 out, 432)"] == "43 [43, 43]"  # 0.1 x 432 on every seed


def test_findings_say_wins_losses_noise_collapse_and_distance_to_dense(sweep):
    _, df = sweep
    text = "\n".join(findings(df))
    assert "fggp has the highest mean in 1 of 3 columns (tiny · 80%); separated from the runner-up" in text
    assert "in 1 of them." in text
    assert ("Average rank of fggp: 2.00 over 3 columns, 2 of 3 pruned recipes, tied with granet "
            "(best average rank: gmp, 1.67).") in text  # granet: ranks 3 and 1
    assert ("Where another recipe's mean is higher (2 columns), the gap to fggp is separated in 0, within noise in 1 "
            f"(tiny · 90%: gmp by 1.00 pp, {WITHIN_NOISE['seeds']} seeds would separate a 1.00 pp gap at this spread), "
            "not testable in 1 (fewer than two paired seeds).") in text
    assert "Dense reaches 96.0%; at 95% sparsity the best pruned mean is granet's 92.0% (-4.0 pp)." in text
    assert "gmp: 1 of 10 runs left a layer with fewer kept weights than outputs (classifier.weight, " \
           "features.8.weight; at 99%)." in text
    assert "global_mp:" not in text


def test_findings_open_each_setup_with_what_its_seeds_can_tell_apart(sweep):
    _, df = sweep
    lines = findings(df)
    first = [i for i, x in enumerate(lines) if x.startswith("[epochs=15, prune_end_epoch=10] ")]
    assert lines[first[0]].startswith("[epochs=15, prune_end_epoch=10] With 1 to 3 seeds per cell, the best is "
                                      "separated from the runner-up in 1 of 3 columns (tiny · 80%); within noise at "
                                      "this size in 1 (tiny · 90%: gmp − fggp = +1.00 pp, 34 seeds would separate")
    assert lines[0].startswith("[epochs=8, prune_end_epoch=8] With 1 seed per cell")


def test_timing_sums_the_runs_wall_clock(sweep):
    _, df = sweep
    view, lines = timing(df)
    assert view.loc["fggp", "runs"] == 8 and view.loc["fggp", "mean per run (s)"] == "6"
    assert lines[0].startswith(f"{(df['status'] == 'completed').sum()} completed runs, ")


def test_sittings_merge_overlapping_and_close_runs_but_not_a_night_apart():
    from fggp.results import sittings

    runs = [(0, 100), (50, 180), (185, 300),  # two at a time, then one starting 5 s after the last ended
            (86_400, 86_500), (86_450, 86_600)]  # more seeds the next day
    assert sittings(runs) == [(0, 300), (86_400, 86_600)]
    assert sittings([(10, 20)]) == [(10, 20)] and sittings([]) == []


def test_timing_counts_the_time_runs_were_going_not_the_night_between(tmp_path):
    from test_report import config, write_run

    runs = tmp_path / "runs"
    runs.mkdir()
    for seed, end in ((1, "2026-11-21T10:00:00+00:00"), (2, "2026-11-21T10:01:00+00:00"),
                      (3, "2026-11-22T09:00:00+00:00")):  # 6 s runs: 54 s apart, then one a day later
        write_run(runs, config("gmp", 0.9, seed), "completed", 0.9, finished_at=end)
    _, lines = timing(load_results(runs))
    assert lines[-1] == ("Wall clock from the first run's start to the last run's end: 1.2 minutes (runs overlap when "
                         "the sweep ran several at a time), summed over 2 sittings more than 10 minutes apart.")


def test_write_results_writes_the_document_and_its_figures(sweep, tmp_path):
    root, _ = sweep
    (tmp_path / "docs").mkdir()
    doc = write_results([root], tmp_path / "docs" / "RESULTS.md", "fggp results X --out Y")
    text = doc.read_text()
    assert text.startswith("# Results\n\nGenerated by `fggp results X --out Y`")
    assert f"![accuracy vs sparsity, {root.name}](results/{root.name}.png)" in text
    assert f"![accuracy vs remaining FLOPs, {root.name}](results/{root.name}_flops.png)" in text
    for name in (root.name, f"{root.name}_flops"):
        assert (tmp_path / "docs" / "results" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    for heading in ("### What the numbers show", "### Final test accuracy (%)", "### fggp against the best other",
                    "### Kept weights per layer at 99% sparsity", "### Layer collapse", "### Problems", "### Time",
                    "### Size and speed", "#### Size and speed, setup: epochs=15, prune_end_epoch=10"):
        assert heading in text
    assert ("| tiny · 90% | fggp | 13 KB = 0.14x dense (2 of 3 runs) | FLOPs x5.0, measured x0.80 / x3.6 / x5.0 at "
            "batch 1 / 64 / 256 (1 of 3 runs) |") in text
    # what the seeds can tell apart comes first; the paired tables carry the seeds for 80% power; no interval
    # past 100% is shown (gmp at 90%: 94 + 3 x 2.484)
    shows = text.split("### What the numbers show\n\n", 1)[1]
    assert shows.startswith("- [epochs=8, prune_end_epoch=8] With 1 seed per cell, no column's best can be tested")
    assert "| within noise | 34 |" in text.split("### fggp against the best other recipe")[1]  # subject table
    assert text.count("| verdict | seeds for 80% power |") == 4  # two setups' best vs runner-up, the subject's two
    half = 3 * 4.302652729749464 / math.sqrt(3)
    assert f"**94.0 [{94 - half:.1f}, 100.0]^ n=3**" in text and f"{94 + half:.1f}]" not in text


def test_results_cli_refuses_a_folder_without_runs_in_one_line(tmp_path, capsys):
    assert main(["results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "R.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fggp: error: sweeps: ") and "no runs/ folder" in err and "\n" not in err
    assert not (tmp_path / "R.md").exists()


@pytest.fixture
def no_aggregation(monkeypatch):
    """Any aggregation after the checks fails the test: the checks must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("aggregated before the inputs were checked")

    monkeypatch.setattr("fggp.results.results_markdown", refuse)


@pytest.mark.parametrize("case, message", [
    ("subject", r"^subject: 'fgpp' is not a recipe of these runs \(dense, fggp, gmp, granet, global_mp\)$"),
    ("twice", r"^sweeps: '.*' and '.*' are the same folder; give each sweep once$"),
    ("same_name", r"^sweeps: '.*' and '.*' are both named 'sweep\d*'; their figures would overwrite each other"),
    ("empty", r"^sweeps: '.*' holds no runs"),
    ("out_is_dir", r"^out: '.*' is a directory; give the Markdown file to write"),
    ("out_folder_missing", r"^out: folder '.*nowhere' does not exist$"),
    ("out_folder_is_file", r"^out: '.*' is a file, not a folder$"),
])
def test_write_results_refuses_bad_inputs_before_any_aggregation(sweep, tmp_path, no_aggregation, case, message):
    root, _ = sweep
    sweeps, out, subject = [root], tmp_path / "R.md", "fggp"
    if case == "subject":
        subject = "fgpp"
    elif case == "twice":
        sweeps = [root, root.parent / ".." / root.parent.name / root.name]  # the same folder, spelt otherwise
    elif case == "same_name":
        other = tmp_path / "copy" / root.name
        (other / "runs").mkdir(parents=True)
        sweeps = [root, other]
    elif case == "empty":
        (tmp_path / "bare" / "runs").mkdir(parents=True)
        sweeps = [tmp_path / "bare"]
    elif case == "out_is_dir":
        out = tmp_path
    elif case == "out_folder_missing":
        out = tmp_path / "nowhere" / "R.md"
    elif case == "out_folder_is_file":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "R.md"
    with pytest.raises(ValueError, match=message):
        write_results(sweeps, out, "fggp results", subject)
    assert not (tmp_path / "R.md").exists() and not (tmp_path / "results").exists()


def test_write_results_refuses_a_folder_it_cannot_write(sweep, tmp_path, no_aggregation, monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)  # read-only for an ordinary user; root writes anyway, so os.access answers for it too
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == locked else real(path, mode))
    try:
        with pytest.raises(ValueError, match=r"^out: folder '.*locked' is not writable$"):
            write_results([sweep[0]], locked / "R.md", "fggp results")
    finally:
        locked.chmod(0o700)


def test_the_subject_may_be_any_recipe_label_of_any_sweep(sweep, tmp_path):
    from fggp.results import check_results_inputs

    assert check_results_inputs([sweep[0]], tmp_path / "R.md", "global_mp") == tmp_path / "R.md"


def test_findings_name_other_subjects_and_say_none_when_the_subject_never_leads(sweep):
    _, df = sweep
    assert "gmp has the highest mean in 1 of 3 columns (tiny · 90%)" in "\n".join(findings(df, "gmp"))
    lines = findings(df, "global_mp")  # only in the epochs=8 setup, where gmp's 99.0 beats its 98.5
    assert any(x.endswith("global_mp has the highest mean in none of its 1 column.") for x in lines)
    assert not any(x.startswith("[epochs=15") and "global_mp has" in x for x in lines)


def test_identical_masks_need_every_seed_the_same(tmp_path):
    from fggp.results import identical_masks
    from test_report import config, write_run

    runs = tmp_path / "runs"
    runs.mkdir()
    hashes = {("gmp", 1): "a", ("gmp", 2): "b", ("global_mp", 1): "a", ("global_mp", 2): "b",
              ("fggp", 1): "a", ("fggp", 2): "c"}  # fggp matches on seed 1 only: not identical
    for (recipe, seed), h in hashes.items():
        write_run(runs, config(recipe, 0.9, seed), "completed", 0.9, mask_hash=h)
    write_run(runs, config("gmp", 0.95, 1), "completed", 0.9, mask_hash="x")  # one seed: not enough to say
    write_run(runs, config("global_mp", 0.95, 1), "completed", 0.9, mask_hash="x")
    same = identical_masks(load_results(runs))
    assert list(same["recipes"]) == ["gmp = global_mp"] and list(same["target_sparsity"]) == [0.9]
    assert list(same["seeds"]) == [2]
    lines = findings(load_results(runs))
    assert ("gmp and global_mp chose identical final masks on every seed at tiny · 90%: Global MP's per-layer floor "
            "never bound, so it pruned exactly as global magnitude pruning (gmp) does. Their rows there are one "
            "result, not two.") in lines


def test_runs_at_chance_are_counted_per_recipe_and_target(tmp_path):
    from fggp.results import at_chance
    from test_report import config, write_run

    runs = tmp_path / "runs"
    runs.mkdir()
    shapes = {"features.0.weight": [16, 3, 3, 3], "classifier.weight": [10, 64]}
    for recipe, accs in {"gmp": [0.1, 0.104, 0.106], "global_mp": [0.2, 0.1, 0.3]}.items():
        for seed, acc in enumerate(accs, start=1):
            write_run(runs, config(recipe, 0.99, seed), "completed", acc, layer_shapes=shapes)
    df = load_results(runs)
    flags = at_chance(df).set_index(["recipe", "seed"])["at_chance"]
    assert flags[("gmp", 1)] and flags[("gmp", 2)] and not flags[("gmp", 3)]  # 10.6% > 10% + 0.5 pp
    assert list(flags.loc["global_mp"]) == [False, True, False]
    assert ("At chance accuracy (at most 1/classes + 0.5 pp: the network answers one class): gmp 2 of 3 at 99%; "
            "global_mp 1 of 3 at 99%.") in findings(df)


def test_a_gap_that_passes_only_on_its_own_p_is_not_called_separated(tmp_path):
    """gmp ahead of fggp by 1.0, 1.3, 0.7 pp on seeds 1-3 in two of four columns: t = 1 / (0.3 / sqrt 3), and
    with 2 degrees of freedom p = 1 - t / sqrt(t^2 + 2) = 0.0287 < 0.05 in each, but Benjamini-Hochberg over
    the four columns makes both 4/2 x 0.0287 = 0.0574: within noise, and the findings say why."""
    from test_report import config, write_run

    runs = tmp_path / "runs"
    runs.mkdir()
    behind, mixed = [-1.0, -1.3, -0.7], [1.0, -1.0, 0.5]
    for target, diffs in {0.5: behind, 0.6: behind, 0.7: mixed, 0.8: mixed}.items():
        for seed, d in enumerate(diffs, start=1):
            write_run(runs, config("gmp", target, seed), "completed", 0.9)
            write_run(runs, config("fggp", target, seed), "completed", 0.9 + d / 100)
    df = load_results(runs)
    t = 1 / (0.3 / math.sqrt(3))
    p = 1 - t / math.sqrt(t * t + 2)
    vs = subject_vs_best(df).set_index("target_sparsity")
    assert list(vs.loc[[0.5, 0.6], "p_value"]) == pytest.approx([p, p])
    assert list(vs.loc[[0.5, 0.6], "p_adjusted"]) == pytest.approx([2 * p, 2 * p])
    assert list(vs.loc[[0.5, 0.6], "verdict"]) == ["within noise over 4 columns (p < 0.05 alone)"] * 2
    # the seeds: for 80% power at p < 0.05 on its own, and at 0.05 / 4 (any p below it passes Benjamini-Hochberg)
    alone, bound = seeds_needed(1.0, 0.3), seeds_needed(1.0, 0.3, alpha=0.05 / 4)
    assert alone == 3 and bound == 5
    for n, level in ((alone, 0.05), (bound, 0.05 / 4)):
        assert quad_power(1 / 0.3, n, level) >= 0.8 > quad_power(1 / 0.3, n - 1, level)
    item = (f"gmp by 1.00 pp, p = {p:.3g}, adjusted {2 * p:.3g}, at p < 0.05 on its own 3 seeds would separate a "
            "1.00 pp gap at this spread, after the adjustment over 4 columns up to 5 (enough at 0.05/4 whatever the "
            "other columns)")
    assert ("Where another recipe's mean is higher (2 columns), the gap to fggp is separated in 0, within noise in 2 "
            f"(tiny · 50%: {item}; tiny · 60%: {item}).") in findings(df)


def test_subject_against_every_recipe_pairs_all_the_seeds_both_ran(sweep):
    from scipy import stats

    from fggp.results import each_sentence, subject_vs_each

    _, df = sweep
    each = subject_vs_each(df).set_index(["target_sparsity", "other"])
    assert sorted(each.index) == [(0.8, "gmp"), (0.9, "gmp"), (0.9, "granet"), (0.95, "gmp"), (0.95, "granet")]
    assert each.loc[(0.8, "gmp"), "pairs"] == 3
    assert each.loc[(0.8, "gmp"), "diff_mean_pct"] == pytest.approx(SEPARATED["diff"])
    assert each.loc[(0.8, "gmp"), "p_value"] == pytest.approx(SEPARATED["p"])
    assert each.loc[(0.9, "gmp"), "diff_mean_pct"] == pytest.approx(-WITHIN_NOISE["diff"])
    assert each.loc[(0.9, "gmp"), "p_value"] == pytest.approx(WITHIN_NOISE["p"])
    # fggp ran seeds 1-2 at 95% (seed 3 failed): gmp's seed 3 is left out, and both means are over seeds 1-2
    row = each.loc[(0.95, "gmp")]
    assert row["pairs"] == 2 and row["subject_mean_pct"] == pytest.approx(89.0)
    assert row["other_mean_pct"] == pytest.approx(90.0) and row["verdict"] == "separated (same gap on every seed)"
    assert each.loc[(0.9, "granet"), "verdict"].startswith("not testable")
    tested = each["p_value"].dropna()
    assert list(each.loc[tested.index, "p_adjusted"]) == pytest.approx(
        list(stats.false_discovery_control(tested.to_numpy())))  # BH over all the comparisons, not per column
    text = each_sentence(subject_vs_each(df))
    assert text.startswith("Paired with every other recipe over the seeds both ran (3 comparisons")
    assert "fggp is behind by a separated margin in 1 (tiny · 95%: gmp by 1.00 pp over 2 seeds" in text
    assert f"ahead by a separated margin in 1 (tiny · 80%: gmp by {SEPARATED['diff']:.2f} pp over 3 seeds" in text
    assert text.endswith("and within noise in 1.")
