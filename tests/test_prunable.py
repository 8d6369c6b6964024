"""Choosing what to prune (by module type or by name), shared and frozen parameters, transformers with AdamW,
and the pruner's summary line and warnings."""

import warnings

import pytest
import torch
from torch import nn

from fggp.pruning import LayerCollapseWarning, Pruner, PruningWarning, prunable_parameters
from fggp.pruning.safety import CollapseWatch


class Zoo(nn.Module):
    """One of each kind of layer; only its parameters matter here (no forward)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.conv1 = nn.Conv1d(8, 4, 3)
        self.conv3 = nn.Conv3d(2, 3, 1)
        self.deconv = nn.ConvTranspose2d(3, 5, 2, groups=1)
        self.attn = nn.MultiheadAttention(8, 2)
        self.attn_kv = nn.MultiheadAttention(8, 2, kdim=6, vdim=6)  # separate q/k/v projections
        self.norm = nn.LayerNorm(8)
        self.lstm = nn.LSTM(8, 4)
        self.head = nn.Linear(8, 3)


def mlp(seed=0, widths=(16, 32, 32, 10)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def train(model, pruner, optimizer, steps, in_features=16, classes=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, in_features, generator=gen)
        y = torch.randint(0, classes, (8,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.before_step()
        optimizer.step()
        pruner.after_step()


# ------------------------------------------------------------------ which parameters
def test_default_set_is_the_weights_of_linear_conv_and_attention_only():
    names = list(prunable_parameters(Zoo()))
    assert names == [
        "conv1.weight", "conv3.weight", "deconv.weight",
        "attn.in_proj_weight", "attn.out_proj.weight",
        "attn_kv.q_proj_weight", "attn_kv.k_proj_weight", "attn_kv.v_proj_weight", "attn_kv.out_proj.weight",
        "head.weight",
    ]


def test_wrappers_are_looked_through_and_outputs_follow_the_layer():
    zoo = Zoo()
    assert list(prunable_parameters(nn.DataParallel(zoo))) == list(prunable_parameters(zoo))
    pruner = Pruner(nn.DataParallel(zoo), None, "gmp", target_sparsity=0.5, end_step=1, log=None)
    rows = {r["name"]: r for r in pruner.report()}
    assert rows["head.weight"]["outputs"] == 3
    assert rows["conv1.weight"]["outputs"] == 4
    assert rows["deconv.weight"]["shape"] == (3, 5, 2, 2) and rows["deconv.weight"]["outputs"] == 5


def test_include_chooses_by_name_and_errors_name_the_field():
    zoo = Zoo()
    chosen = prunable_parameters(zoo, include=["emb.weight", "lstm.weight_ih_*"])
    assert list(chosen) == ["emb.weight", "lstm.weight_ih_l0"]
    assert chosen["emb.weight"] is zoo.emb.weight
    assert list(prunable_parameters(zoo, include="head.*")) == ["head.weight", "head.bias"]  # a str: one pattern
    assert list(prunable_parameters(zoo, ["*.bias"], include="head.*")) == ["head.weight"]
    with pytest.raises(ValueError, match=r"^include: 'nope\*' matches no parameter \(they are: emb\.weight, "):
        prunable_parameters(zoo, include=["head.weight", "nope*"])
    with pytest.raises(ValueError, match=r"^exclude: 'emb\.\*' matches no prunable parameter"):
        prunable_parameters(zoo, exclude=["emb.*"])
    with pytest.raises(ValueError, match="^model: .*include="):
        prunable_parameters(zoo, exclude=["*"])


def test_frozen_parameters_are_left_out_unless_named_and_stay_unchanged():
    model = mlp()
    model[0].weight.requires_grad_(False)
    assert "0.weight" not in prunable_parameters(model)
    assert "0.weight" in prunable_parameters(model, include=["*.weight"])
    frozen = model[0].weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    pruner = Pruner(model, opt, "fggp", target_sparsity=0.8, end_step=12, prune_every=3, log=None)
    assert pruner.names == ["2.weight", "4.weight"]
    train(model, pruner, opt, 15)
    assert torch.equal(model[0].weight, frozen)
    assert pruner.active == round(0.2 * pruner.total)


@pytest.mark.parametrize("recipe", ["fggp", "gmp_uniform"])
def test_shared_parameter_is_one_entry_and_ends_exactly_at_the_target(recipe):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(64, 64)
            self.b = nn.Linear(64, 64)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    model = Tied()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = Pruner(model, opt, recipe, target_sparsity=0.9, end_step=12, prune_every=3, log=None)
    assert pruner.names == ["a.weight"] and pruner.total == 4096
    assert pruner.model_total == 4096 + 64 + 64
    gen = torch.Generator().manual_seed(1)
    for _ in range(15):
        x = torch.randn(8, 64, generator=gen)
        opt.zero_grad()
        (model(x) - x).pow(2).mean().backward()
        pruner.before_step()
        opt.step()
        pruner.after_step()
    kept = round((1 - pruner.schedule.sparsity(pruner.step)) * pruner.total)
    assert kept == round(0.1 * 4096)
    assert int(torch.count_nonzero(pruner.masks["a.weight"])) == kept
    assert int(torch.count_nonzero(model.b.weight)) <= kept and not model.b.weight[~pruner.masks["a.weight"]].any()


class TinyTransformer(nn.Module):
    def __init__(self, vocab=40, dim=32, classes=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.emb(tokens)).mean(1))


@pytest.mark.filterwarnings("ignore::fggp.pruning.LayerCollapseWarning")  # gmp thins linear2 below 32 kept
@pytest.mark.parametrize("recipe", ["fggp", "gmp"])
def test_transformer_with_adamw_ends_exactly_at_the_target(recipe):
    torch.manual_seed(0)
    model = TinyTransformer()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    pruner = Pruner(model, opt, recipe, target_sparsity=0.8, end_step=24, prune_every=4, log=None)
    assert "encoder.layers.0.self_attn.in_proj_weight" in pruner.names
    assert "encoder.layers.1.self_attn.out_proj.weight" in pruner.names
    assert "encoder.layers.1.linear2.weight" in pruner.names and "head.weight" in pruner.names
    assert not any(n.startswith("emb") or "norm" in n or n.endswith("bias") for n in pruner.names)
    gen = torch.Generator().manual_seed(2)
    for _ in range(30):
        tokens = torch.randint(0, 40, (8, 6), generator=gen)
        y = torch.randint(0, 4, (8,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(tokens), y).backward()
        pruner.before_step()
        opt.step()
        pruner.after_step()
    zeros = sum(int((~m).sum()) for m in pruner.masks.values())
    assert zeros == round(0.8 * pruner.total)
    for n, p in pruner.params.items():
        off = ~pruner.masks[n]
        assert not p.detach()[off].any(), n
        state = opt.state[p]
        assert not state["exp_avg"][off].any() and not state["exp_avg_sq"][off].any(), n
        assert state["exp_avg_sq"][pruner.masks[n]].any(), n  # the kept weights did train


# ------------------------------------------------------------------ summary and warnings
def test_summary_states_the_counts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 200), nn.LayerNorm(200), nn.ReLU(), nn.Linear(200, 30))
    lines = []
    pruner = Pruner(model, None, "fggp", target_sparsity=0.9, end_step=10, log=lines.append)
    tensors = sum(isinstance(m, nn.Linear) for m in model.modules())
    prunable = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    total = sum(p.numel() for p in model.parameters())
    assert (tensors, prunable, total) == (2, 26_000, 26_630)
    share = prunable / total
    assert lines == [pruner.summary]
    assert pruner.summary == (f"pruner: 2 tensors, 26,000 of 26,630 model parameters ({share:.1%}); "
                              f"target 90% of them = {0.9 * share:.1%} of the model")


def test_summary_goes_to_print_by_default_and_nowhere_with_none(capsys):
    Pruner(mlp(), None, "dense", target_sparsity=0.9, end_step=10)
    assert capsys.readouterr().out.startswith("pruner: 3 tensors, ")
    Pruner(mlp(), None, "fggp", target_sparsity=0.9, end_step=10, log=None)
    assert capsys.readouterr().out == ""


def test_coverage_warning_when_most_of_the_model_is_not_prunable():
    model = nn.Sequential(nn.Embedding(1000, 64), nn.Linear(64, 4))
    with pytest.warns(PruningWarning, match=r"0\.4% of the model .*include="):
        Pruner(model, None, "gmp", target_sparsity=0.9, end_step=10, log=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PruningWarning)
        Pruner(model, None, "dense", target_sparsity=0.9, end_step=10, log=None)  # prunes nothing
        Pruner(model, None, "gmp", include=["*.weight"], target_sparsity=0.9, end_step=10, log=None)
        Pruner(mlp(), None, "gmp", target_sparsity=0.9, end_step=10, log=None)


def test_collapse_warning_names_the_emptied_layer():
    model = mlp(widths=(16, 64, 64, 10))
    with torch.no_grad():
        model[2].weight.mul_(1e-3)  # a global magnitude ranking takes this layer first
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner = Pruner(model, None, "gmp", target_sparsity=0.9, end_step=20, prune_every=2, log=None)
        for _ in range(20):
            pruner.before_step()
            pruner.after_step()
    collapse = [str(w.message) for w in caught if issubclass(w.category, LayerCollapseWarning)]
    assert int(pruner.masks["2.weight"].sum()) == 0
    assert collapse and all(m.startswith("layer 2.weight ") for m in collapse)
    assert collapse[-1] == "layer 2.weight keeps no weights: none of its 64 outputs depends on the input any more"
    assert len(collapse) <= 2  # not once per pruning step (it stays empty for most of them)
    assert all(w.filename == __file__ for w in caught if issubclass(w.category, LayerCollapseWarning))


def test_no_collapse_warning_at_a_mild_target():
    model = mlp(widths=(16, 64, 64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PruningWarning)
        pruner = Pruner(model, opt, "gmp", target_sparsity=0.5, end_step=10, prune_every=2, log=None)
        train(model, pruner, opt, 12)
    assert pruner.active == round(0.5 * pruner.total)


def test_collapse_watch_warns_below_then_empty_once_each():
    watch = CollapseWatch({"w": 10, "bias": 10}, {"w": (10, 5), "bias": (10,)})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for kept in (50, 12, 7, 3, 3, 0, 0, 5):
            watch.check({"w": kept, "bias": min(kept, 4)})
    assert [str(w.message) for w in seen] == [
        "layer w keeps 7 weights for its 10 outputs: at least 3 outputs no longer depend on the input",
        "layer w keeps no weights: none of its 10 outputs depends on the input any more",
    ]


@pytest.mark.parametrize("recipe", ["dense", "fggp"])
def test_before_step_twice_is_an_error_that_says_to_call_after_step(recipe):
    model = mlp()
    pruner = Pruner(model, None, recipe, target_sparsity=0.5, end_step=10, log=None)
    pruner.before_step()
    pruner.after_step()
    pruner.before_step()
    with pytest.raises(RuntimeError, match=r"call pruner\.after_step\(\) after optimizer\.step\(\)"):
        pruner.before_step()
