"""benchmarks/bench_train.py runs end to end at small size on CPU, and the two pipelines it compares
augment the same way (no timing thresholds: the ratios are printed, not asserted)."""

import json

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from scipy.stats import chisquare

from fggp.data import apply_augmentation, draw_augmentation

SMALL = ["--device", "cpu", "--arch", "tiny", "--images", "512", "--test-images", "256", "--batch-size", "64", "--workers", "0",
         "--warmup", "1", "--steps", "2"]
KEYS = ["device", "date", "torch", "settings", "images_per_second", "epoch_seconds", "speedup_vs_reference",
        "masked_over_dense", "prune_fraction_of_run", "projected_run_minutes", "per_epoch_extra_seconds"]


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_train")


@pytest.fixture(scope="module")
def small_run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    returned = bench.main(SMALL + ["--out-dir", str(out)])
    return out, returned


def test_small_cpu_run_writes_the_json(small_run):
    out, returned = small_run
    assert [p.name for p in out.iterdir()] == ["cpu.json"]
    res = json.loads((out / "cpu.json").read_text())
    assert res == json.loads(json.dumps(returned))
    for key in KEYS:
        assert key in res, key
    assert res["settings"]["arch"] == ["tiny"] and res["settings"]["compile"] is False
    assert set(res["images_per_second"]["tiny"]) == {"reference", "fggp", "fggp_masked"}
    assert all(v > 0 for v in res["images_per_second"]["tiny"].values())
    assert all(v > 0 for v in res["epoch_seconds"]["tiny"].values())
    assert res["speedup_vs_reference"]["tiny"] > 0
    assert res["masked_over_dense"]["tiny"] > 0
    extra = res["per_epoch_extra_seconds"]["tiny"]
    assert extra["eval_seconds"] > 0 and extra["checkpoint_seconds"] > 0
    whole_epochs = 160 * (res["epoch_seconds"]["tiny"]["fggp_masked"] + extra["eval_seconds"]
                          + extra["checkpoint_seconds"]) / 60
    assert res["projected_run_minutes"]["tiny"] >= whole_epochs  # plus compilation and pruning steps
    assert res["settings"]["trainer_runtime"]["tiny"] == {"precision": "fp32", "channels_last": False,
                                                         "compile": False, "deterministic": False}
    assert set(res["prune_fraction_of_run"]["tiny"]) == {"fggp", "gmp", "granet"}
    assert all(v > 0 for v in res["prune_fraction_of_run"]["tiny"].values())
    assert res["mask_sparsity_measured"]["tiny"] == pytest.approx(0.9, abs=1e-3)
    assert {row["verdict"] for row in res["targets"]} <= {"PASS", "MISS"}


def test_markdown_section_is_replaced_in_place(bench, small_run, tmp_path):
    _, res = small_run
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text("# Performance\n\nintro\n")
    bench.update_markdown(doc, res)
    once = doc.read_text()
    bench.update_markdown(doc, res)
    assert doc.read_text() == once
    assert once.startswith("# Performance\n\nintro\n")
    assert once.count("<!-- bench_train:cpu -->") == 1 and once.count("<!-- /bench_train:cpu -->") == 1
    assert "| tiny |" in once and "not comparable with the targets" in once
    assert [p.name for p in tmp_path.iterdir()] == ["PERFORMANCE.md"]


def test_merge_keeps_other_archs_measured_with_the_same_settings(bench, small_run, tmp_path):
    _, res = small_run
    earlier = json.loads(json.dumps(res))
    earlier["raw"] = {"other": earlier["raw"]["tiny"]}  # as if an earlier invocation had measured another arch
    (tmp_path / "cpu.json").write_text(json.dumps(earlier))
    merged = bench.main(SMALL + ["--out-dir", str(tmp_path), "--merge"])
    assert set(merged["speedup_vs_reference"]) == {"other", "tiny"}
    assert merged["images_per_second"]["other"] == res["images_per_second"]["tiny"]
    assert merged["settings"]["arch"] == ["other", "tiny"]
    with pytest.raises(SystemExit, match=r"^--merge: .* images=512"):
        bench.main([*SMALL[:4], "--images", "256", *SMALL[6:], "--out-dir", str(tmp_path), "--merge"])


@pytest.mark.parametrize("argv", [["--arch", "nope"], ["--steps", "0"], ["--epochs", "0"], ["--workers", "-1"], ["--device", "tpu"]])
def test_bad_arguments_exit_with_usage(bench, argv, tmp_path):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--arch", "tiny", "--out-dir", str(tmp_path), *argv])
    assert exc.value.code == 2


# ---- same semantics: DeviceLoader's augmentation vs torchvision's RandomCrop(padding=4, reflect) + flip

def test_drawn_offsets_are_uniform_and_flips_fair():
    """torchvision draws top and left independently and uniformly from 0..8, and flips with p = 0.5."""
    n = 90_000
    dy, dx, flip = draw_augmentation(n, torch.Generator().manual_seed(0))
    for offsets in (dy, dx):
        counts = torch.bincount(offsets, minlength=9)
        assert len(counts) == 9, "offsets outside 0..8"
        assert (counts.double() / n - 1 / 9).abs().max() < 0.005
        assert chisquare(counts.numpy()).pvalue > 1e-4
    joint = torch.bincount(dy * 9 + dx, minlength=81)
    assert chisquare(joint.numpy()).pvalue > 1e-4
    assert abs(flip.double().mean().item() - 0.5) < 0.02


def test_every_crop_and_flip_equals_torchvision():
    """All 9 x 9 x 2 (dy, dx, flip) on random uint8 images: bit-equal to pad(reflect, 4), crop, hflip."""
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
    grid = torch.cartesian_prod(torch.arange(9), torch.arange(9), torch.tensor([0, 1]))
    dy, dx, flip = grid[:, 0], grid[:, 1], grid[:, 2].bool()
    for image in images:
        ours = apply_augmentation(image.expand(len(grid), -1, -1, -1), dy, dx, flip)
        pil = Image.fromarray(image.permute(1, 2, 0).numpy())
        for out, top, left, mirror in zip(ours, dy.tolist(), dx.tolist(), flip.tolist()):
            ref_pil = TF.crop(TF.pad(pil, 4, padding_mode="reflect"), top, left, 32, 32)
            ref_tensor = TF.crop(TF.pad(image, [4], padding_mode="reflect"), top, left, 32, 32)
            if mirror:
                ref_pil, ref_tensor = TF.hflip(ref_pil), TF.hflip(ref_tensor)
            assert out.dtype == torch.uint8
            assert np.array_equal(out.permute(1, 2, 0).numpy(), np.asarray(ref_pil))
            assert torch.equal(out, ref_tensor)
