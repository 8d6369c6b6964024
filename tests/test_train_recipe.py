"""Training-recipe choices (AdamW, cosine, warm-up), pruning by parameter name in a run, and run identity:
old run ids stay valid, plugin code is part of the id."""

import math

import pytest
import torch

from fggp.train import RunConfig, lr_at, run
from fggp.train.run import build_optimizer
from test_train import _interrupt_at  # tests/ is on the path: pytest prepends each test file's folder

QUICK = dict(arch="tiny", dataset="synthetic", epochs=3, prune_end_epoch=2, prune_every=5, lr=0.05,
             batch_size=128, progress=False, deterministic=True)


def test_run_ids_made_before_the_new_fields_are_unchanged():
    """Computed with the code of e716d32, before optimizer, lr_schedule, include, ... existed."""
    assert RunConfig().run_id == "vgg19-cifar10-fggp-s0.9-i0-seed18-d322c7cadb"
    assert RunConfig(arch="lenet300_100", dataset="fashion_mnist", recipe="gmp", target_sparsity=0.98, epochs=20,
                     prune_end_epoch=10, val_size=5000, seed=3).run_id == "lenet300_100-fashion_mnist-gmp-s0.98-i0-seed3-7d05f6a530"
    assert RunConfig(arch="tiny", dataset="digits", recipe="granet", target_sparsity=0.9, bn_recalibrate=10,
                     extra={"a": 1}).run_id == "tiny-digits-granet-s0.9-i0-seed18-acdeac8c65"


def test_each_new_field_changes_the_run_id():
    base = RunConfig(**QUICK)
    ids = {base.run_id}
    for change in (dict(optimizer="adamw"), dict(optimizer="adamw", betas=(0.9, 0.95)), dict(optimizer="adamw", eps=1e-6),
                   dict(lr_schedule="cosine"), dict(warmup_epochs=1), dict(exclude=("classifier.weight",)),
                   dict(include=("features.*.weight",))):
        ids.add(RunConfig(**{**QUICK, **change}).run_id)
    assert len(ids) == 8


@pytest.mark.parametrize("kwargs, field", [
    (dict(optimizer="adam"), "optimizer"),
    (dict(lr_schedule="linear"), "lr_schedule"),
    (dict(betas=(0.9, 0.95)), "betas"),  # sgd does not read them
    (dict(optimizer="adamw", betas=(0.9,)), "betas"),
    (dict(optimizer="adamw", betas=(0.9, 1.0)), "betas"),
    (dict(optimizer="adamw", eps=0.0), "eps"),
    (dict(eps=1e-6), "eps"),
    (dict(warmup_epochs=4), "warmup_epochs"),
    (dict(warmup_epochs=-1), "warmup_epochs"),
    (dict(include="features.*"), "include"),
    (dict(include=("nothing.matches",)), "include"),
    (dict(exclude=("nothing.matches",)), "exclude"),
])
def test_bad_recipe_fields_are_one_line_errors(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        RunConfig(**{**QUICK, **kwargs})


def test_from_strings_reads_the_new_fields():
    c = RunConfig.from_strings(["arch=tiny", "dataset=synthetic", "optimizer=adamw", "betas=0.9,0.95", "eps=1e-6",
                                "lr_schedule=cosine", "warmup_epochs=2", "include=features.*.weight,classifier.weight",
                                "exclude=features.0.weight"])
    assert (c.optimizer, c.betas, c.eps, c.lr_schedule, c.warmup_epochs) == ("adamw", (0.9, 0.95), 1e-6, "cosine", 2)
    assert c.include == ("features.*.weight", "classifier.weight") and c.exclude == ("features.0.weight",)


def test_step_schedule_is_unchanged_and_cosine_hits_its_endpoints():
    step = RunConfig(epochs=160, prune_end_epoch=80)
    assert [lr_at(step, e) for e in (0, 79, 80, 120)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert lr_at(step, 80, 300, 391) == lr_at(step, 80)  # no warm-up: constant within an epoch
    c = RunConfig(epochs=10, prune_end_epoch=5, lr=1e-3, optimizer="adamw", lr_schedule="cosine", warmup_epochs=2)
    spe = 50
    lrs = [lr_at(c, s // spe, s % spe, spe) for s in range(10 * spe)]
    assert lrs[0] == pytest.approx(1e-3 / 100)  # linear warm-up from lr / (warm-up steps)
    assert lrs[99] == pytest.approx(1e-3)  # the last warm-up step reaches lr
    assert lrs[100] == pytest.approx(1e-3)  # cosine starts at lr ...
    assert lrs[300] == pytest.approx(0.5e-3)  # ... is half way at the middle of its span (steps 100-499) ...
    assert lrs[-1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 399 / 400)))  # ... and ends near 0
    assert all(a > b for a, b in zip(lrs[100:], lrs[101:]))
    w = RunConfig(epochs=4, prune_end_epoch=2, warmup_epochs=1)  # warm-up before the step schedule
    assert lr_at(w, 0, 4, 10) == pytest.approx(0.1 * 5 / 10) and lr_at(w, 1, 0, 10) == pytest.approx(0.1)


def test_adamw_is_built_with_its_fields():
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(RunConfig(optimizer="adamw", lr=2e-3, betas=(0.8, 0.9), eps=1e-7, weight_decay=0.05), model)
    assert isinstance(opt, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (2e-3, (0.8, 0.9), 1e-7, 0.05)
    sgd = build_optimizer(RunConfig(), model)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]


def test_adamw_cosine_run_prunes_to_target_and_resumes_exactly(tmp_path, monkeypatch):
    """AdamW's moments are zero at pruned weights after every step, and a run killed mid-epoch (mid warm-up
    lr ramp) resumes to the same bits."""
    config = RunConfig(**{**QUICK, "epochs": 3, "prune_end_epoch": 2, "lr": 2e-3}, recipe="fggp", target_sparsity=0.8,
                       optimizer="adamw", weight_decay=0.05, lr_schedule="cosine", warmup_epochs=1)
    whole = run(config, tmp_path / "whole")
    with monkeypatch.context() as m:
        _interrupt_at(m, 21)
        with pytest.raises(KeyboardInterrupt):
            run(config, tmp_path / "cut")
    resumed = run(config, tmp_path / "cut")
    assert resumed["final_sparsity"] == whole["final_sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert resumed["mask_hash"] == whole["mask_hash"] and resumed["final_test_acc"] == whole["final_test_acc"]
    state = torch.load(tmp_path / "whole" / config.run_id / "checkpoint.pt", weights_only=True)
    opt = state["optimizer"]["state"]
    names = [n for n, _ in __import__("fggp").models.build_model("tiny").named_parameters()]
    checked = 0
    for index, name in enumerate(names):
        if name in state["pruner"]["masks"]:
            pruned = ~state["pruner"]["masks"][name]
            assert not state["model"][name][pruned].any()
            for moment in ("exp_avg", "exp_avg_sq"):
                assert not opt[index][moment][pruned].any(), (name, moment)
            checked += 1
    assert checked == 4
    b = torch.load(tmp_path / "cut" / config.run_id / "checkpoint.pt", weights_only=True)
    for key, value in state["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_include_and_exclude_reach_the_pruner(tmp_path):
    config = RunConfig(**{**QUICK, "epochs": 1, "prune_end_epoch": 1}, recipe="gmp", target_sparsity=0.5,
                       exclude=("classifier.weight",))
    result = run(config, tmp_path)
    assert set(result["layer_density"]) == {"features.0.weight", "features.4.weight", "features.8.weight"}
    assert result["layer_order"] == ["features.0.weight", "features.4.weight", "features.8.weight"]


PLUGIN = '''
from torch import nn
from fggp.models import register_model

register_model("{name}", lambda num_classes, input_shape: nn.Sequential(
    nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], {width}), nn.ReLU(),
    nn.Linear({width}, num_classes)))
'''


def test_plugin_source_is_part_of_the_run_id(tmp_path, isolated_plugins):
    """The same code in two places is the same run; an edit is a new run, never "already completed"."""
    import sys

    from fggp.models import MODELS

    same = PLUGIN.format(name="mlp_plugin_same", width=16)
    sources = {"a": same, "b": same, "c": same.replace("), nn.ReLU()", "), nn.Tanh()")}
    ids = []
    for folder, source in sources.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mine.py").write_text(source)
        config = RunConfig(**QUICK, plugins=(str(tmp_path / folder / "mine.py"),))
        ids.append(config.run_id)
        assert len(config.identity()["plugin_digests"]) == 1 and "plugins" not in config.identity()
        MODELS.pop("mlp_plugin_same")  # as a new process would start: the next file registers the name again
        for name in [m for m in sys.modules if m.startswith("fggp_plugin_")]:
            del sys.modules[name]
    assert ids[0] == ids[1] != ids[2]


def test_failing_plugin_is_one_line_naming_plugins_and_its_line(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("x = 1\nraise RuntimeError('no GPU here')\n")
    with pytest.raises(ValueError, match=r"^plugins: '.*broken.py' failed to import \(RuntimeError: no GPU here, line 2\)$"):
        RunConfig(**QUICK, plugins=(str(bad),))
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    with pytest.raises(ValueError, match=r"^plugins: '.*syntax.py' failed to import \(SyntaxError: .*line 1\)$"):
        RunConfig(**QUICK, plugins=(str(syntax),))


def test_a_2_4_run_ends_with_every_group_at_2_of_4_and_its_export_says_so(tmp_path):
    from fggp.export import export_run
    from fggp.pruning import group_counts

    config = RunConfig(arch="lenet300_100", dataset="digits", recipe="fggp", pattern="2:4", target_sparsity=0.5,
                       epochs=2, prune_end_epoch=1, prune_every=2, lr=0.05, progress=False)
    result = run(config, tmp_path)
    assert result["status"] == "completed" and result["final_sparsity"] == 0.5
    masks = torch.load(tmp_path / config.run_id / "checkpoint.pt", weights_only=True)["pruner"]["masks"]
    for name, mask in masks.items():
        counts = mask.reshape(mask.shape[0], -1).reshape(mask.shape[0], -1, 4).sum(-1)
        assert (counts == 2).all(), name
    info = export_run(tmp_path / config.run_id, measure=False, log=lambda msg: None)
    assert {layer["nm"] for layer in info["layers"].values()} == {"2:4"}


def test_pattern_fields_are_checked_before_any_data():
    from fggp.pruning import Infeasible

    with pytest.raises(ValueError, match=r"^target_sparsity: 0.9 is not 0.5, where pattern '2:4' ends \(1 - N/M\)"):
        RunConfig(**QUICK, recipe="fggp", pattern="2:4")
    with pytest.raises(ValueError, match="^pattern: '2:4' groups 4 consecutive weights of a row, but layer features.0"):
        RunConfig(**QUICK, recipe="fggp", pattern="2:4", target_sparsity=0.5)  # tiny's first conv: rows of 27
    with pytest.raises(Infeasible, match="^pattern: .*regrow.*recipe granet"):  # a sweep lists it as not applicable
        RunConfig(**{**QUICK, "arch": "lenet300_100"}, recipe="granet", pattern="2:4", target_sparsity=0.5)
    assert RunConfig(**QUICK, recipe="dense", pattern="2:4").pattern is None  # dense is one run whatever is asked
