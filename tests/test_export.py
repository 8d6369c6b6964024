"""Export of a finished run: exact round trips, honest sizes, sparse kernels that compute what the dense model
does, and one-line refusals that leave nothing half-written."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fggp import export
from fggp.export import export_run, load, plan_kernels, sparse_model
from fggp.models import MODELS, build_model
from fggp.sparse import (choose_layout, dense_bytes, fold_masks, is_nm, layout_bytes, load_sparse, model_metadata,
                         read_header, save_sparse)
from fggp.train import RunConfig, run
from fggp.train.checkpoint import CHECKPOINT, PREVIOUS, load_checkpoint

QUIET = lambda msg: None  # noqa: E731


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real 98%-sparse LeNet-300-100 run on digits (3x32x32), trained once for the module."""
    out = tmp_path_factory.mktemp("runs")
    config = RunConfig(arch="lenet300_100", dataset="digits", recipe="gmp", target_sparsity=0.98, epochs=2,
                       prune_end_epoch=1, prune_every=2, batch_size=256, progress=False)
    result = run(config, out, log=QUIET)
    assert result["status"] == "completed"
    return out / config.run_id, result


def _no_tmp(directory: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in directory.iterdir()) if directory.exists() else True


def _masked_checkpoint(run_dir):
    state = load_checkpoint(run_dir, log=QUIET)
    return state["model"], {n: m.bool() for n, m in state["pruner"]["masks"].items()}


# ------------------------------------------------------------------------------------------- round trip
def test_export_round_trips_exactly_and_is_smaller(trained, tmp_path):
    run_dir, result = trained
    out = tmp_path / "export"
    report = export_run(run_dir, out, measure=False, log=QUIET)
    weights, masks = _masked_checkpoint(run_dir)
    assert set(masks) == set(result["layer_density"])

    folded = torch.load(out / "model.pt", weights_only=True)
    assert list(folded) == list(weights)
    for name, value in weights.items():
        expected = value * masks[name] if name in masks else value
        assert torch.equal(folded[name], expected), name
        if name in masks:  # the run already kept its pruned weights at zero: folding changed nothing
            assert not value[~masks[name]].any(), name
    model = build_model("lenet300_100", num_classes=10, input_shape=(3, 32, 32))
    model.load_state_dict(folded, strict=True)
    model.eval()

    rebuilt = load(out)
    assert not rebuilt.training
    assert list(rebuilt.state_dict()) == list(folded)
    assert all(torch.equal(rebuilt.state_dict()[k], folded[k]) for k in folded)
    _, back_masks, meta = load_sparse(out / "model.sparse.safetensors")
    assert set(back_masks) == set(masks) and all(torch.equal(back_masks[k], masks[k]) for k in masks)
    assert meta["arch"] == "lenet300_100" and meta["input_shape"] == [3, 32, 32] and meta["num_classes"] == 10
    assert meta["run_id"] == result["run_id"]
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
        assert torch.allclose(load(out, sparse=True)(x), model(x), atol=1e-5, rtol=1e-4)

    on_disk = {p.name: p.stat().st_size for p in out.iterdir()}
    assert set(on_disk) >= {"model.pt", "model.sparse.safetensors", "export.json"}
    assert report == json.loads((out / "export.json").read_text())
    assert report["files"] == {k: v for k, v in on_disk.items() if k != "export.json"}
    assert report["bytes"]["checkpoint"] == (run_dir / CHECKPOINT).stat().st_size
    assert report["bytes"]["dense_state_dict"] == dense_bytes(folded) == on_disk["model.pt"]
    sparse_bytes = on_disk["model.sparse.safetensors"]
    assert sparse_bytes < 0.25 * report["bytes"]["dense_state_dict"]
    assert report["ratios"]["sparse_over_dense"] == sparse_bytes / report["bytes"]["dense_state_dict"]
    assert report["bytes"]["checkpoint"] > report["bytes"]["dense_state_dict"]  # the complaint this answers
    if report["onnx"]["written"]:
        assert report["onnx"]["bytes"] == on_disk["model.onnx"]
    else:
        assert report["onnx"]["reason"] and "model.onnx" not in on_disk
    assert _no_tmp(out)


def test_export_json_is_consistent_with_the_run(trained, tmp_path):
    run_dir, result = trained
    report = export_run(run_dir, tmp_path / "e", batch_sizes=(1, 8), repeats=2, log=QUIET)
    _, masks = _masked_checkpoint(run_dir)
    assert report["layer_order"] == result["layer_order"]
    for name, layer in report["layers"].items():
        assert layer["shape"] == result["layer_shapes"][name]
        assert layer["kept"] == round(result["layer_density"][name] * layer["size"]) == int(masks[name].sum())
        assert layer["density"] == pytest.approx(result["layer_density"][name])
        assert layer["layout"] == choose_layout(masks[name], 4)
        assert layer["nm"] == ("2:4" if is_nm(masks[name], 2, 4) else None)
        assert layer["kernel"] == "csr"
    assert report["layers"]["fc1.weight"]["layout"] == "csr"  # 0.7% dense: CSR beats a bitmask there
    assert sum(layer["kept"] for layer in report["layers"].values()) == result["kept_weights"]
    assert report["flops"]["ratio"] == result["dense_flops"] / result["sparse_flops"]
    latency = report["latency"]
    assert set(latency["batch_sizes"]) == {"1", "8"}
    for row in latency["batch_sizes"].values():
        assert row["dense_ms"] > 0 and row["sparse_ms"] > 0
        assert row["speedup"] == row["dense_ms"] / row["sparse_ms"]
        assert row["max_abs_diff"] < 1e-4
    assert latency["threads"] == torch.get_num_threads() and latency["repeats"] == 2
    assert latency["torch"] == torch.__version__ and latency["device"].startswith("cpu")


def test_failed_export_leaves_the_previous_one_intact(trained, tmp_path, monkeypatch):
    run_dir, _ = trained
    out = tmp_path / "export"
    export_run(run_dir, out, measure=False, log=QUIET)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("killed while measuring")

    monkeypatch.setattr(export, "measure_latency", broken)
    with pytest.raises(RuntimeError, match="killed while measuring"):
        export_run(run_dir, out, repeats=1, batch_sizes=(1,), log=QUIET)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _no_tmp(out)


# ------------------------------------------------------------------------------------------ refusals
def _refused(match: str, run_dir, out, **kwargs):
    with pytest.raises(ValueError, match=match) as err:
        export_run(run_dir, out, measure=False, log=QUIET, **kwargs)
    assert "\n" not in str(err.value)
    assert not Path(out).exists() or Path(out).is_file() or not any(Path(out).iterdir())
    return str(err.value)


def test_refuses_runs_that_are_not_completed(trained, tmp_path):
    run_dir, result = trained
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.json", bare / "config.json")
    assert "result.json" in _refused("^run_dir: ", bare, bare / "export")
    (bare / "result.json").write_text(json.dumps({**result, "status": "failed"}))
    assert "failed run" in _refused("^run_dir: ", bare, bare / "export")
    (bare / "result.json").write_text("{not json")
    _refused("^run_dir: .*result.json", bare, bare / "export")
    _refused("^run_dir: .*not a directory", tmp_path / "nowhere", tmp_path / "o")


def test_refuses_damaged_checkpoints(trained, tmp_path):
    run_dir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export"))
    latest = copy / CHECKPOINT
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    # the loader falls back to checkpoint.prev.pt, one epoch short of the final weights: refused all the same
    assert "not the final epoch 2" in _refused("^run_dir: .*damaged", copy, copy / "export")
    (copy / PREVIOUS).write_bytes(b"garbage")
    assert "no usable checkpoint" in _refused("^run_dir: ", copy, copy / "export")
    (copy / PREVIOUS).unlink()
    latest.unlink()
    _refused("^run_dir: .*no usable checkpoint", copy, copy / "export")
    assert _no_tmp(copy)


def test_refuses_bad_out_dir_and_options(trained, tmp_path):
    run_dir, _ = trained
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _refused("^out_dir: .*is a file", run_dir, a_file)
    assert a_file.read_text() == "x"
    _refused("^batch_sizes: ", run_dir, tmp_path / "o", batch_sizes=(0,))
    _refused("^repeats: ", run_dir, tmp_path / "o", repeats=0)
    _refused("^device: ", run_dir, tmp_path / "o", device="tpu-ish")


# ------------------------------------------------------------------------------------- sparse kernels
class _ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 6 * 6, 20), nn.ReLU(), nn.Linear(20, 5, bias=False))
        self.attn = nn.MultiheadAttention(4, 1, batch_first=True)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)))


def test_sparse_model_computes_what_the_dense_model_does():
    torch.manual_seed(0)
    model = _ConvNet().eval()
    masks = {name: torch.rand_like(p) < 0.1 for name, p in model.named_parameters()
             if name.endswith("weight") and p.dim() > 1}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])
    kernels = plan_kernels(model, masks)
    assert kernels["head.1.weight"] == kernels["head.3.weight"] == "csr"
    assert kernels["conv.weight"] == "dense (no sparse kernel for conv on cpu)"
    assert kernels["attn.in_proj_weight"].startswith("dense") and kernels["attn.out_proj.weight"].startswith("dense")
    assert plan_kernels(model, masks, "cuda")["head.1.weight"].startswith("dense (unstructured")
    sparse = sparse_model(model, masks)
    assert sparse.kernels == kernels
    assert isinstance(sparse.head[1], export.CSRLinear) and isinstance(sparse.conv, nn.Conv2d)
    assert isinstance(model.head[1], nn.Linear)  # the original is left alone
    x = torch.randn(7, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(sparse(x), model(x), atol=1e-5, rtol=1e-4)
        tokens = torch.randn(2, 5, 8 * 6 * 6)  # a Linear over tokens: leading dimensions kept
        assert torch.allclose(sparse.head[1](tokens), model.head[1](tokens), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------ the sparse file
def _hand_made():
    g = torch.Generator().manual_seed(1)
    state = {
        "wide": torch.randn(40, 500, generator=g),  # 1% kept: CSR
        "half": torch.randn(30, 20, generator=g),  # 50% kept: bitmask
        "none": torch.randn(6, 8, generator=g),  # nothing kept
        "full": torch.randn(5, 7, generator=g),  # everything kept
        "conv": torch.randn(16, 8, 3, 3, generator=g),  # 4-D, flattened to [16, 72]
        "half_bf16": torch.randn(12, 16, generator=g).bfloat16(),
        "bias": torch.randn(40, generator=g),
        "steps": torch.tensor(7),  # a 0-d int64 buffer, dense
    }
    masks = {
        "wide": torch.rand(40, 500, generator=g) < 0.01,
        "half": torch.rand(30, 20, generator=g) < 0.5,
        "none": torch.zeros(6, 8, dtype=torch.bool),
        "full": torch.ones(5, 7, dtype=torch.bool),
        "conv": torch.rand(16, 8, 3, 3, generator=g) < 0.2,
        "half_bf16": torch.rand(12, 16, generator=g) < 0.5,
    }
    return state, masks


def test_save_and_load_sparse_are_exact_in_both_layouts(tmp_path):
    state, masks = _hand_made()
    path = tmp_path / "m.sparse.safetensors"
    meta = {"arch": "x", "input_shape": [3, 8, 8], "plugin_digests": {"p.py": "abc"}, "run_id": "r1"}
    size = save_sparse(state, masks, path, meta)
    assert size == path.stat().st_size and _no_tmp(tmp_path)
    header = read_header(path)
    layouts = {n: info["layout"] for n, info in header["sparse"].items()}
    assert layouts["wide"] == "csr" and layouts["half"] == layouts["half_bf16"] == layouts["full"] == "bitmask"
    assert header["sparse"]["conv"]["shape"] == [16, 8, 3, 3] and header["sparse"]["half_bf16"]["dtype"] == "bfloat16"
    for name, mask in masks.items():
        sizes = layout_bytes(mask, state[name].element_size())
        assert sizes[layouts[name]] == min(sizes.values())

    back, back_masks, back_meta = load_sparse(path)
    assert back_meta == meta and list(back) == list(state) and set(back_masks) == set(masks)
    for name, value in state.items():
        expected = torch.where(masks[name], value, torch.zeros((), dtype=value.dtype)) if name in masks else value
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        assert torch.equal(back[name], expected), name
        if name in masks:
            assert torch.equal(back_masks[name], masks[name]), name
    assert not back["none"].any() and torch.equal(back["full"], state["full"])

    only_wide = tmp_path / "wide.safetensors"
    save_sparse({"wide": state["wide"]}, {"wide": masks["wide"]}, only_wide, {})
    assert only_wide.stat().st_size < 0.1 * dense_bytes({"wide": state["wide"]})


def test_nm_detection():
    two_four = torch.tensor([[1, 0, 1, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 0, 0]], dtype=torch.bool)
    assert is_nm(two_four, 2, 4)
    three = two_four.clone()
    three[1, 3] = three[1, 2] = True  # [0, 0, 1, 1] stays 2:4 ...
    three[1, 4:7] = True  # ... [1, 1, 1, 0] does not
    assert not is_nm(three, 2, 4)
    assert not is_nm(torch.ones(4, 6, dtype=torch.bool), 2, 4)  # 6 inputs: no whole groups of 4
    conv = torch.zeros(4, 2, 2, 2, dtype=torch.bool)
    conv[:, 0, 0, :] = True  # flattened to [4, 8]: the first two of every 4 inputs kept
    assert is_nm(conv, 2, 4) and not is_nm(conv, 1, 4)
    assert is_nm(torch.zeros(3, 8, dtype=torch.bool), 2, 4)


def test_load_sparse_refuses_damaged_and_foreign_files(tmp_path):
    from safetensors.torch import save_file

    state, masks = _hand_made()
    good = tmp_path / "good.safetensors"
    save_sparse(state, masks, good, {"arch": "x"})
    data = good.read_bytes()
    cases = {"truncated": data[: len(data) // 2], "flipped": data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:],
             "text": b"hello, not a model\n"}
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
    save_file({"w": torch.zeros(3)}, tmp_path / "foreign")
    for name in (*cases, "foreign", "missing"):
        with pytest.raises(ValueError) as err:
            load_sparse(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value), name
    with pytest.raises(ValueError, match="damaged"):
        load_sparse(tmp_path / "flipped")


def test_save_sparse_refuses_bad_masks(tmp_path):
    w = {"w": torch.randn(4, 4)}
    for masks, match in (({"w": torch.ones(4, 5, dtype=torch.bool)}, "^masks: w must be a bool"),
                         ({"w": torch.ones(4, 4)}, "^masks: w must be a bool"),
                         ({"v": torch.ones(4, 4, dtype=torch.bool)}, "^masks: v is not in state_dict")):
        with pytest.raises(ValueError, match=match):
            save_sparse(w, masks, tmp_path / "x.safetensors", {})
    with pytest.raises(ValueError, match="^metadata: "):
        save_sparse(w, {}, tmp_path / "x.safetensors", {"f": object()})
    assert not any(tmp_path.iterdir())


def test_a_file_written_the_way_the_run_hook_writes_it_loads(tmp_path):
    """save_sparse(model.state_dict(), masks, ...) with model_metadata: what a run can write at its end."""
    torch.manual_seed(3)
    model = build_model("lenet300_100", num_classes=10, input_shape=(1, 28, 28))
    masks = {n: torch.rand_like(p) < 0.05 for n, p in model.named_parameters() if n.endswith("weight")}
    folded = fold_masks(model.state_dict(), masks)  # the weights were not masked yet: folding masks them
    assert all(not folded[n][~m].any() and torch.equal(folded[n][m], model.state_dict()[n][m]) for n, m in masks.items())
    save_sparse(model.state_dict(), masks, tmp_path / "model.sparse.safetensors",
                model_metadata("lenet300_100", (1, 28, 28), 10, run_id="r"))
    rebuilt = load(tmp_path)
    assert all(torch.equal(rebuilt.state_dict()[k], folded[k]) for k in folded)
    save_sparse(model.state_dict(), masks, tmp_path / "bare.safetensors", {"run_id": "r"})
    with pytest.raises(ValueError, match="bare.safetensors: its metadata lacks 'arch'"):
        load(tmp_path / "bare.safetensors")


# ------------------------------------------------------------------------------------------- plugins
PLUGIN = '''
from torch import nn
import math
from fggp.models import register_model

def build(num_classes=10, input_shape=(3, 32, 32)):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Linear(32, num_classes))

register_model("tiny_mlp_export", build)
'''


def test_export_of_a_plugin_model_loads_in_a_fresh_state(tmp_path, isolated_plugins):
    plugin = tmp_path / "my_model.py"
    plugin.write_text(PLUGIN)
    config = RunConfig(arch="tiny_mlp_export", dataset="digits", recipe="gmp", target_sparsity=0.9, epochs=1,
                       prune_end_epoch=1, prune_every=2, batch_size=256, progress=False, plugins=(str(plugin),))
    run(config, tmp_path / "runs", log=QUIET)
    out = tmp_path / "export"
    report = export_run(tmp_path / "runs" / config.run_id, out, measure=False, log=QUIET)
    assert report["plugins"] == [str(plugin.resolve())]
    assert report["plugin_digests"][str(plugin.resolve())] not in (None, "not imported")
    expected = torch.load(out / "model.pt", weights_only=True)

    module = next(name for name in sys.modules if name.startswith("fggp_plugin_")
                  and getattr(sys.modules[name], "__file__", None) == str(plugin.resolve()))
    del sys.modules[module]
    del MODELS["tiny_mlp_export"]
    model = load(out)
    assert "tiny_mlp_export" in MODELS and module in sys.modules  # imported again, from the metadata alone
    state = model.state_dict()
    assert list(state) == list(expected) and all(torch.equal(state[k], expected[k]) for k in expected)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load(out, sparse=True)(x), model(x), atol=1e-5, rtol=1e-4)


def test_bench_export_smoke(load_benchmark, tmp_path):
    bench = load_benchmark("bench_export")
    out = tmp_path / "export_cpu.json"
    report = bench.main(["--sparsities", "0.9", "--batch-sizes", "1,4", "--repeats", "1", "--conv-arch", "tiny",
                         "--conv-sparsities", "0.9", "--conv-batch-sizes", "1", "--conv-repeats", "1",
                         "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    lenet, conv = report["rows"]
    assert lenet["arch"] == "lenet300_100" and set(lenet["latency"]) == {"1", "4"}
    assert lenet["kept"] == sum(max(1, round(n * 0.1)) for n in (784 * 300, 300 * 100, 100 * 10))
    assert lenet["flop_ratio"] == pytest.approx(1 / 0.1, rel=1e-3) and lenet["size_ratio"] < 0.25
    assert set(lenet["kernels"].values()) == {"csr"}
    assert conv["kernels"]["classifier.weight"] == "csr"
    assert all(k.startswith("dense (no sparse kernel for conv") for n, k in conv["kernels"].items() if "features" in n)


def test_cli_export_and_a_completed_run_writes_its_sparse_file(tmp_path, capsys):
    """Every completed run leaves model.sparse.safetensors (its size in result.json); `fggp export` adds the rest."""
    from fggp.cli import main
    from fggp.train import RunConfig, run

    config = RunConfig(arch="lenet300_100", dataset="digits", recipe="gmp", target_sparsity=0.95, epochs=1,
                       prune_end_epoch=1, prune_every=2, progress=False)
    result = run(config, tmp_path)
    run_dir = tmp_path / config.run_id
    sparse = run_dir / "model.sparse.safetensors"
    assert result["model_bytes"]["sparse"] == sparse.stat().st_size < 0.2 * result["model_bytes"]["dense"]
    assert main(["export", str(run_dir), "--no-measure"]) == 0
    assert {"model.pt", "model.sparse.safetensors", "export.json"} <= {p.name for p in (run_dir / "export").iterdir()}
    assert main(["export", str(tmp_path / "nothing-here")]) == 2
    assert capsys.readouterr().err.startswith("fggp: error: run_dir:")
