"""docs/own_model.md's worked example, run as written: a torchvision model and a torchvision dataset registered
by a plugin outside the package, through `fggp run`, a 2-point `fggp sweep` (notebooks 02 and 03) and the report.

Offline, torchvision's FashionMNIST reads a small archive in the genuine idx format that the test writes where
torchvision keeps its extracted files (``<data_dir>/FashionMNIST/raw``), so its download step finds the data there.
"""

import json
import sys
from pathlib import Path

import pytest
import yaml

from fggp.cli import main
from fggp.train import RunConfig

sys.path.insert(0, str(Path(__file__).parent))
from idx_fixture import write_fake_idx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples"


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_idx(root / "FashionMNIST" / "raw", n_train=300, n_test=60, gz=False)
    return root


def test_fggp_run_trains_the_plugin_model_on_the_plugin_data(tmp_path, fashion_dir, monkeypatch, capsys,
                                                               isolated_plugins):
    monkeypatch.chdir(REPO)  # the example's paths are relative to the repository root
    code = main(["run", "plugins=docs/examples/own_model.py", "arch=shufflenet_tv", "dataset=fashion_tv",
                 "recipe=fggp", "target_sparsity=0.9", "epochs=2", "prune_end_epoch=1", "prune_every=1",
                 f"data_dir={fashion_dir}", "progress=false", "--out", str(tmp_path)])
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["final_sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert result["config"]["arch"] == "shufflenet_tv" and result["layer_order"][0] == "conv1.0.weight"
    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    assert config.run_id == run_dir.name and len(config.identity()["plugin_digests"]) == 1
    assert "pruner:" in capsys.readouterr().out  # it said what it prunes


def test_example_sweep_runs_both_points_and_reports_them(tmp_path, fashion_dir, monkeypatch, isolated_plugins):
    from fggp.sweep import sweep, summarize

    monkeypatch.chdir(REPO)
    spec = yaml.safe_load((EXAMPLE / "own_model.yaml").read_text())
    # The grid as written, on the small archive: 3 steps per epoch instead of 79, so prune every step.
    spec["fixed"].update(data_dir=str(fashion_dir), prune_every=1)
    grid = tmp_path / "own_model.yaml"
    grid.write_text(yaml.safe_dump(spec))
    outcomes = sweep(grid, tmp_path / "out", jobs=2, log=lambda msg: None)
    line, ok = summarize(outcomes)
    assert ok, line
    runs = sorted((tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 2
    for run_dir in runs:
        result = json.loads((run_dir / "result.json").read_text())
        assert result["status"] == "completed" and result["epochs_done"] == 3
        assert (run_dir / "02_cifar10_run.ipynb").is_file() and (run_dir / "layer_density.png").is_file()
    table = (tmp_path / "out" / "report" / "table.md").read_text()
    assert "shufflenet_tv" in table and "fashion_tv" in table
    assert (tmp_path / "out" / "report" / "accuracy_vs_sparsity.png").is_file()
