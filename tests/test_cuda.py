"""The CUDA paths: same batches, same selections and same masks as on CPU; deterministic runs resume exactly.

CI has no GPU, so here every test is skipped; `benchmarks/gpu_session.sh` runs this file on a lent GPU
before it benchmarks (docs/PERFORMANCE.md, "Running it on a GPU").
"""

import json

import pytest
import torch

from fggp.data import DeviceLoader, apply_augmentation, draw_augmentation, load_dataset
from fggp.models import build_model
from fggp.pruning import Pruner, select_prune
from fggp.pruning.selection import ORDERS
from fggp.train import RunConfig, run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def test_loader_batches_equal_the_cpu_loader():
    data = load_dataset("synthetic", "unused")
    kwargs = dict(batch_size=100, train=True, mean=data.mean, std=data.std, seed=3)
    cpu = DeviceLoader(data.train, device="cpu", **kwargs)
    gpu = DeviceLoader(data.train, device=CUDA, **kwargs)
    for (xc, yc), (xg, yg) in zip(cpu.iter_epoch(2), gpu.iter_epoch(2)):
        assert xg.device.type == "cuda"
        assert torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-6)  # same pixels; normalizing may round apart


def test_augmentation_gather_equals_cpu():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    draws = draw_augmentation(64, g)
    assert torch.equal(apply_augmentation(images, *draws), apply_augmentation(images.to(CUDA), *draws).cpu())


@pytest.mark.parametrize("order", ORDERS)
def test_select_prune_equals_cpu(order):
    g = torch.Generator().manual_seed(1)
    n = 50_000
    weight = torch.randint(0, 200, (n,), generator=g).float()  # ties on purpose: they go to the lower index
    grad = torch.randint(0, 200, (n,), generator=g).float()
    active = torch.rand(n, generator=g) < 0.7
    k = int(active.sum()) // 3
    cpu = select_prune(weight, grad, active, k, order, 0.4, torch.Generator().manual_seed(5))
    gpu = select_prune(weight.to(CUDA), grad.to(CUDA), active.to(CUDA), k, order, 0.4, torch.Generator().manual_seed(5))
    assert torch.equal(cpu, gpu.cpu())


@pytest.mark.parametrize("recipe", ["fggp", "gmp", "granet", "global_mp"])
def test_pruner_masks_equal_cpu(recipe):
    def pruned(device):
        torch.manual_seed(0)
        model = build_model("resnet20").to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        # lr 0: the weights stay as built, so no fused multiply-add can round them apart between devices
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        gen = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen).to(device)
        optimizer.step()
        pruner = Pruner(model, optimizer, recipe, target_sparsity=0.9, initial_sparsity=0.5, end_step=2,
                        prune_every=1, total_steps=4)
        for _ in range(2):
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=gen).to(device)
            pruner.before_step()
            optimizer.step()
            pruner.after_step()
        return pruner

    cpu, gpu = pruned(torch.device("cpu")), pruned(CUDA)
    assert gpu.sparsity == cpu.sparsity
    assert gpu.mask_hash() == cpu.mask_hash()


QUICK = dict(arch="tiny", dataset="synthetic", epochs=3, prune_end_epoch=2, prune_every=5, lr=0.05, progress=False,
             recipe="fggp", target_sparsity=0.9, initial_sparsity=0.5, device="cuda")


def test_deterministic_run_resumes_exactly(tmp_path, monkeypatch):
    config = RunConfig(**QUICK, deterministic=True)
    whole = run(config, tmp_path / "whole")
    assert whole["runtime"] == {"precision": "bf16", "channels_last": True, "compile": False, "deterministic": True}
    original = Pruner.after_step

    def after_step(self):
        original(self)
        if self.step == 23:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Pruner, "after_step", after_step)
        with pytest.raises(KeyboardInterrupt):
            run(config, tmp_path / "cut")
    resumed = run(config, tmp_path / "cut")
    drop = ("wall_seconds", "finished_at", "history", "metrics_sha256", "digest")  # history: per-epoch seconds
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}


def test_compiled_bf16_run_learns(tmp_path):
    result = run(RunConfig(**{**QUICK, "epochs": 6, "prune_end_epoch": 4}, compile=True), tmp_path)
    assert result["status"] == "completed" and result["runtime"]["compile"] is True
    assert result["final_sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert result["final_test_acc"] >= 0.4  # about 0.6 on CPU in fp32 and bf16; chance is 0.1


def test_bench_train_runs_on_cuda(tmp_path, load_benchmark):
    bench = load_benchmark("bench_train")
    res = bench.main(["--device", "cuda", "--arch", "tiny", "--images", "2048", "--warmup", "2", "--steps", "3",
                      "--workers", "2", "--out-dir", str(tmp_path)])
    written = json.loads((tmp_path / f"{res['device_slug']}.json").read_text())
    assert written["settings"]["autocast"] == "bf16" and written["settings"]["compile"] is True
    assert written["speedup_vs_reference"]["tiny"] > 0 and written["masked_over_dense"]["tiny"] > 0
