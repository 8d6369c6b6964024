"""benchmarks/bench_prune.py runs end to end at small size and writes its JSON (no timing thresholds)."""

import json

import pytest

from fggp.pruning import RECIPES


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_prune")


@pytest.mark.parametrize("recipes", [None, "fggp,gmp_uniform,global_mp_oneshot"])
def test_tiny_run_writes_one_entry_per_recipe(bench, tmp_path, recipes, capsys):
    out = tmp_path / "x.json"
    argv = ["--arch", "tiny", "--repeats", "1", "--json", str(out)]
    requested = [n for n, r in RECIPES.items() if r.prunes] if recipes is None else recipes.split(",")
    bench.main(argv + ([] if recipes is None else ["--recipes", recipes]))

    res = json.loads(out.read_text())
    assert list(res["recipes"]) == requested
    for entry in res["recipes"].values():
        assert entry["seconds"] > 0 and entry["ratio"] > 0
    assert res["kthvalue"]["seconds"] > 0 and res["prunable_weights"] > 0
    assert list(tmp_path.iterdir()) == [out]
    printed = capsys.readouterr().out
    assert "kthvalue (baseline)" in printed
    assert ("target: fggp at most 3x kthvalue" in printed) == ("fggp" in requested)


@pytest.mark.parametrize("argv", [["--recipes", "dense"], ["--recipes", "nope"], ["--repeats", "0"]])
def test_bad_arguments_exit_with_usage(bench, argv):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--arch", "tiny", *argv])
    assert exc.value.code == 2
