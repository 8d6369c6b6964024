"""The single-layer walkthrough: scores, pruned sets, overlaps, figures, widget, and the notebook itself."""

import json
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from fggp.layer_scores import (
    LayerScores,
    checkpoint_masks,
    default_layer,
    describe,
    fggp_pool,
    jaccard,
    kernel_matrix,
    label,
    layer_view,
    overlap_table,
    pruned_sets,
    warmup,
)
from fggp.models import build_model
from fggp.pruning import select_prune
from fggp.pruning.masks import prunable_parameters
from fggp.viz import scores as viz

matplotlib.use("Agg")  # nothing above imports pyplot, so the backend is still ours to choose

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_layer_scores.ipynb"


def make_scores(shape=(6, 4, 3, 3), seed=0) -> LayerScores:
    """Scores of a made-up layer: heavy-tailed magnitudes and one exact zero in each, like real ones."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=g) * torch.rand(shape, generator=g) ** 3
    grad = torch.randn(shape, generator=g) * 1e-3 * torch.rand(shape, generator=g) ** 3
    weight.view(-1)[0] = 0.0
    grad.view(-1)[1] = 0.0
    return LayerScores("conv.weight", weight, grad, weight.abs().flatten(), grad.abs().flatten())


def collection(ax, name):
    (found,) = [c for c in ax.collections if c.get_label() == name]
    return found


# ---- kernel layout --------------------------------------------------------------------------------

def test_kernel_matrix_puts_each_kernel_in_its_tile():
    out, inp, kh, kw = 2, 3, 2, 4
    t = torch.arange(out * inp * kh * kw).reshape(out, inp, kh, kw)
    m = kernel_matrix(t)
    assert m.shape == (out * kh, inp * kw)
    for o in range(out):
        for c in range(inp):
            for i in range(kh):
                for j in range(kw):
                    assert m[o * kh + i, c * kw + j] == t[o, c, i, j]
    assert m[:kh, kw:2 * kw].tolist() == t[0, 1].tolist()  # tile (0, 1) is the kernel out 0 <- in 1


def test_kernel_matrix_keeps_linear_and_rejects_other_shapes():
    t = torch.randn(5, 7)
    assert torch.equal(kernel_matrix(t), t)
    with pytest.raises(ValueError, match="^t:"):
        kernel_matrix(torch.zeros(2, 3, 4))


# ---- overlaps -------------------------------------------------------------------------------------

def mask(n, members):
    m = torch.zeros(n, dtype=torch.bool)
    m[list(members)] = True
    return m


def test_overlap_table_is_the_jaccard_index():
    sets = {"a": mask(6, {0, 1, 2}), "b": mask(6, {1, 2, 3, 4}), "c": mask(6, {5}), "e": mask(6, set()),
            "f": mask(6, set())}
    table = overlap_table(sets)
    assert list(table.index) == list(table.columns) == ["a", "b", "c", "e", "f"]
    expected = {("a", "b"): 2 / 5, ("a", "c"): 0.0, ("b", "c"): 0.0, ("a", "e"): 0.0, ("c", "e"): 0.0,
                ("e", "f"): 1.0}
    for (x, y), value in expected.items():
        assert table.loc[x, y] == pytest.approx(value)
        assert table.loc[y, x] == pytest.approx(value)
    for name in sets:
        assert table.loc[name, name] == 1.0
    assert jaccard(mask(4, {0, 1}), mask(4, {1, 2, 3})) == pytest.approx(1 / 4)


# ---- pruned sets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sparsity, rate", [(0.1, 0.3), (0.5, 0.5), (0.9, 0.25), (0.2, 0.7)])
def test_pruned_sets_are_what_select_prune_picks(sparsity, rate):
    s = make_scores()
    k = round(sparsity * s.n)
    sets = pruned_sets(s, sparsity, rate)
    assert list(sets) == ["magnitude", "gradient", f"gradient_first({rate:g})", f"magnitude_first({rate:g})",
                          "taylor"]
    active = torch.ones(s.n, dtype=torch.bool)
    for order in ("magnitude", "gradient", "gradient_first", "magnitude_first", "taylor"):
        chosen = sets[label(order, rate)]
        assert int(chosen.sum()) == k
        assert torch.equal(chosen, select_prune(s.w_mag, s.g_mag, active, k, order, rate))


def test_labels_carry_the_rate_of_two_step_orders_only():
    assert label("gradient_first", 0.3) == "gradient_first(0.3)"
    assert label("magnitude_first", 1.0) == "magnitude_first(1)"
    assert label("taylor", 0.3) == "taylor"


def test_rate_limits_of_gradient_first():
    s = make_scores()
    at_one = pruned_sets(s, 0.3, 1.0, ["gradient_first", "gradient"])
    assert torch.equal(at_one["gradient_first(1)"], at_one["gradient"])
    # a pool of the whole layer (ceil(k / rate) >= n) leaves magnitude alone to decide
    whole = pruned_sets(s, 0.6, 0.5, ["gradient_first", "magnitude"])
    assert torch.equal(whole["gradient_first(0.5)"], whole["magnitude"])
    assert int(fggp_pool(s, 0.6, 0.5).sum()) == s.n
    pool = fggp_pool(s, 0.2, 0.4)
    k = round(0.2 * s.n)
    assert int(pool.sum()) == -(-k * 10 // 4)
    assert not (pruned_sets(s, 0.2, 0.4, ["gradient_first"])["gradient_first(0.4)"] & ~pool).any()


def test_pruned_sets_rejects_a_bad_sparsity_or_order():
    s = make_scores()
    with pytest.raises(ValueError, match="^sparsity:"):
        pruned_sets(s, 1.5, 0.5)
    with pytest.raises(ValueError, match="^order:"):
        pruned_sets(s, 0.5, 0.5, ["obd"])


# ---- warmup and layer_view ------------------------------------------------------------------------

def test_warmup_is_deterministic_and_covers_the_prunable_layers():
    threads = torch.get_num_threads()
    model_a, grads_a = warmup("tiny", "synthetic", steps=3, seed=1, batch_size=32)
    model_b, grads_b = warmup("tiny", "synthetic", steps=3, seed=1, batch_size=32)
    _, grads_c = warmup("tiny", "synthetic", steps=3, seed=2, batch_size=32)
    assert torch.get_num_threads() == threads
    names = list(prunable_parameters(model_a))
    assert list(grads_a) == names
    for name in names:
        assert grads_a[name].shape == prunable_parameters(model_a)[name].shape
        assert grads_a[name].abs().sum() > 0
        assert torch.equal(grads_a[name], grads_b[name])
    assert all(torch.equal(a, b) for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()))
    assert not torch.equal(grads_a[names[1]], grads_c[names[1]])


def test_warmup_takes_weights_from_a_run_directory(tmp_path):
    source = build_model("tiny")
    with torch.no_grad():
        source.classifier.weight.fill_(0.125)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"epoch": 1, "model": source.state_dict()}, run_dir / "checkpoint.pt")
    (run_dir / "config.json").write_text(json.dumps({"arch": "tiny", "dataset": "synthetic"}))
    for where in (run_dir, run_dir / "checkpoint.pt"):
        model, grads = warmup("tiny", "synthetic", steps=5, checkpoint=where, batch_size=32)
        assert torch.equal(model.classifier.weight, source.classifier.weight)
        assert list(grads) == list(prunable_parameters(model))
    with pytest.raises(ValueError, match="^checkpoint: .*arch 'tiny', not 'resnet20'"):
        warmup("resnet20", "synthetic", checkpoint=run_dir)
    with pytest.raises(ValueError, match="^checkpoint: no checkpoint"):
        warmup("tiny", "synthetic", checkpoint=tmp_path / "missing")


def pruned_run(tmp_path, layer="features.4.weight", keep=0.21):
    """A run directory whose checkpoint (digest and all, as a run writes it) pruned 79% of one layer."""
    from fggp.train.checkpoint import save_checkpoint

    model = build_model("tiny")
    params = prunable_parameters(model)
    masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}
    g = torch.Generator().manual_seed(0)
    masks[layer] = torch.rand(params[layer].shape, generator=g) < keep
    with torch.no_grad():
        params[layer].mul_(masks[layer])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_checkpoint(run_dir, {"epoch": 1, "model": model.state_dict(), "pruner": {"masks": masks}})
    (run_dir / "config.json").write_text(json.dumps({"arch": "tiny", "dataset": "synthetic"}))
    return run_dir, masks[layer]


def test_a_pruned_checkpoints_weights_stay_pruned(tmp_path):
    """The orders choose among the active weights only, as the pruner does: none "prunes" a weight the run
    already removed (they used to count as active, and magnitude took them first)."""
    run_dir, mask = pruned_run(tmp_path)
    model, grads = warmup("tiny", "synthetic", steps=0, checkpoint=run_dir, batch_size=32)
    masks = checkpoint_masks(run_dir)
    assert torch.equal(masks["features.4.weight"], mask)
    s = layer_view(model, grads, "features.4.weight", masks)
    assert torch.equal(s.active, mask.flatten()) and s.n_active == int(mask.sum()) < 0.3 * s.n
    assert "pruned before" in repr(s) and describe(s).loc["|w|", "active"] == s.n_active
    summary = describe(s)  # the scales of the weights that are left: the run's zeros would pull |w|'s median to 0
    assert summary.loc["|w|", "zeros"] >= s.n - s.n_active and summary.loc["|w|", "count"] == s.n
    left = s.w_mag[s.active].double()
    assert summary.loc["|w|", "median"] == pytest.approx(float(torch.quantile(left, 0.5))) and left.median() > 0
    assert summary.loc["|w|", "min"] == pytest.approx(float(s.w_mag[s.active].min()))
    histograms = viz.plot_histograms(s)  # the active weights only, as the scatter; the title counts the rest
    for ax in histograms.axes:
        assert sum(p.get_height() for p in ax.patches) == s.n_active
        assert f"{s.n - s.n_active} pruned before not shown" in ax.get_title()
    k = round(0.2 * s.n_active)
    for name, chosen in pruned_sets(s, 0.2, 0.5).items():
        assert int(chosen.sum()) == k and not (chosen & ~s.active).any(), name
    assert not (fggp_pool(s, 0.2, 0.5) & ~s.active).any()
    fig = viz.plot_scatter(s, pruned_sets(s, 0.2, 0.5), rate=0.5)
    drawn = len(collection(fig.axes[0], "kept").get_offsets()) + len(collection(fig.axes[0], "pruned").get_offsets())
    assert drawn == s.n_active
    assert f"{s.n - s.n_active} of {s.n} pruned before" in fig.axes[-1].texts[0].get_text()
    assert "pool = all" in viz.plot_scatter(s, pruned_sets(s, 0.9, 0.5), rate=0.5).axes[2].get_title()
    who = viz.plot_rate_grid(s, 0.2, [0.5]).axes[1].images[0].get_array()
    assert (torch.as_tensor(who.data) == 4).sum() == s.n - s.n_active  # drawn as "pruned before"
    assert checkpoint_masks(None) is None


def test_notebook_parameters_are_checked_by_name_and_value(tmp_path):
    from fggp.layer_scores import NOTEBOOK_PARAMETERS, check_layer_parameters, check_notebook

    good = dict(arch="tiny", dataset="digits", layer=None, warmup_steps=30, checkpoint=None, sparsity=0.2, rate=0.5,
                rates=[1.0, 0.5], seed=0, device="cpu", data_dir="../data", plugins=[])
    assert list(good) == list(NOTEBOOK_PARAMETERS)
    namespace = {**good, "In": [], "json": json, "check_notebook": check_notebook}
    check_notebook(namespace)
    with pytest.raises(ValueError, match=r"^rates_: not a parameter of this notebook \(did you mean rates\?\); "
                                         r"its parameters are arch, "):
        check_notebook({**good, "rates_": 0.3, "In": ["", "arch = 'tiny'", "# Parameters\nrates_ = 0.3\n"]})
    run_dir, _ = pruned_run(tmp_path)
    for field, value in [("arch", "alexnet"), ("dataset", "imagenet"), ("layer", "features.99"), ("sparsity", 1.5),
                         ("rate", 0), ("rates", []), ("rates", [0.5, 2]), ("warmup_steps", -1), ("seed", 0.5),
                         ("device", "tpu"), ("data_dir", 3), ("checkpoint", tmp_path / "missing"),
                         ("plugins", "x.py")]:
        with pytest.raises(ValueError, match=rf"^{field}: ") as err:
            check_layer_parameters(**{**good, field: value})
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"^checkpoint: .*arch 'tiny', not 'lenet5'"):
        check_layer_parameters(**{**good, "arch": "lenet5", "checkpoint": str(run_dir)})
    check_layer_parameters(**{**good, "layer": "features.4", "dataset": "synthetic", "checkpoint": str(run_dir)})


def tiny_with_grads():
    model = build_model("tiny")
    grads = {name: torch.full_like(p, 0.5) for name, p in prunable_parameters(model).items()}
    return model, grads


def test_layer_view_returns_the_layer_as_cpu_float_tensors():
    model, grads = tiny_with_grads()
    weight = prunable_parameters(model)["features.4.weight"]
    s = layer_view(model, grads, "features.4.weight")
    assert s.name == "features.4.weight"
    assert s.weight.shape == s.grad.shape == weight.shape == (32, 16, 3, 3)
    assert s.weight.dtype == s.grad.dtype == torch.float32 and s.weight.device.type == "cpu"
    assert torch.equal(s.weight, weight.detach())
    assert torch.equal(s.w_mag, weight.detach().abs().flatten())
    assert torch.equal(s.g_mag, torch.full((s.n,), 0.5))
    assert layer_view(model, grads, "features.4").name == "features.4.weight"
    assert layer_view(model, grads).name == default_layer(model) == "features.4.weight"
    summary = describe(s)
    assert list(summary.index) == ["|w|", "|g|"]
    assert summary.loc["|w|", "count"] == s.n and summary.loc["|g|", "zeros"] == 0
    assert summary.loc["|g|", "median"] == 0.5 and summary.loc["|w|", "max"] == pytest.approx(float(s.w_mag.max()))


def test_layer_view_names_the_unknown_layer_and_lists_the_real_ones():
    model, grads = tiny_with_grads()
    with pytest.raises(ValueError) as err:
        layer_view(model, grads, "features.99.weight")
    message = str(err.value)
    assert message.startswith("layer: 'features.99.weight'")
    for name in prunable_parameters(model):
        assert name in message


# ---- figures --------------------------------------------------------------------------------------

def test_heatmaps_show_both_magnitudes_in_kernel_layout():
    s = make_scores()
    fig = viz.plot_heatmaps(s)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # two heatmaps and their colorbars
    for ax in fig.axes[:2]:  # channel boundaries, so that "a band of rows" (the notebook's words) can be seen
        rows = sorted(line.get_ydata()[0] for line in ax.lines if line.get_ydata()[0] == line.get_ydata()[1])
        columns = sorted(line.get_xdata()[0] for line in ax.lines if line.get_xdata()[0] == line.get_xdata()[1])
        assert rows == [2.5, 5.5, 8.5, 11.5, 14.5] and columns == [2.5, 5.5, 8.5]  # 6 out x 4 in, 3 x 3 tiles
    images = [ax.images[0].get_array() for ax in fig.axes[:2]]
    assert images[0].shape == images[1].shape == (6 * 3, 4 * 3)
    assert torch.allclose(torch.as_tensor(images[0].data), kernel_matrix(s.weight.abs()))
    assert torch.allclose(torch.as_tensor(images[1].data), kernel_matrix(s.grad.abs()))


def test_histograms_have_one_panel_per_magnitude():
    fig = viz.plot_histograms(make_scores())
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert all(ax.patches for ax in fig.axes)
    assert "1 exact zeros not shown" in fig.axes[1].get_title()
    assert "pruned before" not in fig.axes[0].get_title()  # a layer without a checkpoint: every weight drawn
    assert sum(p.get_height() for p in fig.axes[0].patches) == make_scores().n - 1  # its one exact zero: log axis


def test_scatter_has_one_panel_per_order_highlighting_k_weights():
    s = make_scores()
    sets = pruned_sets(s, 0.3, 0.5)
    k = round(0.3 * s.n)
    fig = viz.plot_scatter(s, sets)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(sets) + 1  # and the key: five orders fill a 2 x 3 grid with no empty slot
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 3)
    for ax, (name, chosen) in zip(fig.axes, sets.items()):
        assert ax.get_title() == f"{name}: k = {k}"
        assert ax.get_xscale() == ax.get_yscale() == "log"
        pruned = collection(ax, "pruned").get_offsets()
        assert len(pruned) == k
        assert len(collection(ax, "kept").get_offsets()) == s.n - k
        floor = s.w_mag[s.w_mag > 0].min() / 2  # where the zero weight is drawn on the log axis
        assert sorted(pruned[:, 0].tolist()) == pytest.approx(sorted(s.w_mag[chosen].clamp_min(floor).tolist()))
        assert (pruned > 0).all()
    key = fig.axes[-1]
    assert key.get_label() == "key" and not key.axison and key.get_legend() is not None
    assert f"n = {s.n} weights" in key.texts[0].get_text()


@pytest.mark.parametrize("sparsity, rate, pool", [(0.1, 0.5, "pool = 44 of 216 (20%)"),
                                                  (0.62, 0.5, "pool = whole layer (216)"),
                                                  (0.2, 1.0, "pool = 43 of 216 (20%)")])
def test_scatter_titles_give_the_pool_and_say_when_it_is_the_whole_layer(sparsity, rate, pool):
    s = make_scores()  # n = 216
    fig = viz.plot_scatter(s, pruned_sets(s, sparsity, rate), rate=rate)
    titles = {ax.get_title().split(":")[0]: ax.get_title() for ax in fig.axes[:-1]}
    k = round(sparsity * s.n)
    assert titles[f"gradient_first({rate:g})"] == f"gradient_first({rate:g}): k = {k}\n{pool}"
    assert titles["magnitude"] == f"magnitude: k = {k}"  # one-key orders have no pool
    whole = "whole layer" in pool
    assert ("gradient_first = magnitude" in fig.axes[-1].texts[0].get_text()) == whole
    assert f"rate {rate:g}" in fig._suptitle.get_text()

def test_rate_grid_has_a_row_per_rate_with_its_jaccard_to_magnitude():
    """Rows run from the highest rate down, so 'as the rate falls' (the notebook's words) is down the page."""
    s = make_scores()
    rates = [0.1, 1.0, 0.5]
    fig = viz.plot_rate_grid(s, 0.2, rates)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * len(rates)
    k = round(0.2 * s.n)
    magnitude = pruned_sets(s, 0.2, 1.0, ["magnitude"])["magnitude"]
    jaccards = []
    for row, rate in enumerate([1.0, 0.5, 0.1]):
        scatter = fig.axes[2 * row]
        assert len(collection(scatter, "pruned").get_offsets()) == k
        fggp = pruned_sets(s, 0.2, rate, ["gradient_first"])[label("gradient_first", rate)]
        assert scatter.get_title().startswith(f"gradient_first({rate:g}): k = {k}")
        assert scatter.get_title().endswith(f"Jaccard with magnitude = {jaccard(fggp, magnitude):.2f}")
        jaccards.append(jaccard(fggp, magnitude))
    assert jaccards == sorted(jaccards) and jaccards[-1] == 1.0  # rate 0.1, last: the pool is the whole layer


def test_draw_returns_the_figure_and_table_of_the_values_given():
    s = make_scores()
    fig, table = viz.draw(s, 0.1, 0.5)
    fig2, table2 = viz.draw(s, 0.62, 0.3)
    pd.testing.assert_frame_equal(table2, overlap_table(pruned_sets(s, 0.62, 0.3)).round(3))
    assert list(table.index)[2] == "gradient_first(0.5)" and list(table2.index)[2] == "gradient_first(0.3)"
    assert not table.equals(table2)
    assert fig.axes[2].get_title() == "gradient_first(0.5): k = 22\npool = 44 of 216 (20%)"
    assert fig2.axes[2].get_title() == "gradient_first(0.3): k = 134\npool = whole layer (216)"
    assert table2.loc["gradient_first(0.3)", "magnitude"] == 1.0  # the whole layer as pool: it is magnitude
    assert len(collection(fig2.axes[0], "pruned").get_offsets()) == 134


def test_interactive_sliders_redraw_the_figure_and_table_in_place():
    import ipywidgets
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    s = make_scores()
    explorer = viz.interactive(s, sparsity=0.5, rate=0.5)
    sliders = explorer.sliders
    assert (sliders["sparsity"].min, sliders["sparsity"].max) == (0.05, 0.99)
    assert (sliders["rate"].min, sliders["rate"].max) == (0.01, 1.0)
    assert all(int(w.layout.width.removesuffix("px")) >= 400 for w in sliders.values())  # long enough to aim
    assert isinstance(explorer.controls, ipywidgets.Widget)
    InteractiveShell.instance()
    with capture_output() as shown:
        explorer._ipython_display_()
    caption, *published = shown.outputs
    assert "model not found" in caption.data["text/markdown"]  # a copy saved without widget state says why
    assert len(published) == 3  # the sliders, then the figure and the table as outputs of their own
    assert published[0].data["text/plain"] == explorer.CONTROLS_TEXT  # not the VBox(...) repr
    assert published[0].data["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.controls.model_id
    assert "image/png" in published[1].data and "text/html" in published[2].data
    ids = [o.transient["display_id"] for o in published[1:]]
    sliders["rate"].value = 0.3
    sliders["sparsity"].value = 0.2
    expected = overlap_table(pruned_sets(s, 0.2, 0.3)).round(3)
    pd.testing.assert_frame_equal(explorer.table, expected)
    assert explorer.figure.axes[2].get_title().startswith("gradient_first(0.3): k = 43")
    with capture_output() as moved:
        sliders["sparsity"].value = 0.62
    updates = moved.outputs
    assert [o.update for o in updates] == [True, True]  # replaced where they are, not appended
    assert [o.transient["display_id"] for o in updates] == ids
    assert "gradient_first(0.3)" in updates[1].data["text/plain"]
    assert explorer.figure.axes[2].get_title() == "gradient_first(0.3): k = 134\npool = whole layer (216)"


# ---- the notebook ---------------------------------------------------------------------------------

def test_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert code[0]["metadata"]["tags"] == ["parameters"]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("module, notebook", [("fggp.layer_scores", "01_layer_scores.ipynb"),
                                              ("fggp.viz.runs", "02_cifar10_run.ipynb")])
def test_notebook_parameter_lists_match_the_notebooks(module, notebook):
    """The names the parameter check accepts are the parameters cell's, in order: a new parameter cannot be
    forgotten. The other cells' variables need no list: the check reads papermill's injected cell, not the
    namespace a second Run All fills."""
    import ast
    import importlib

    mod = importlib.import_module(module)
    nb = json.loads((NOTEBOOK.parent / notebook).read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    def names(src):
        tree = ast.parse("\n".join(line for line in src.splitlines() if not line.startswith("%")))
        targets = [t for node in ast.walk(tree) if isinstance(node, ast.Assign) for t in node.targets]
        return [n.id for t in targets for n in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(n, ast.Name)]

    assigned = [names(src) for src in code]
    assert assigned[0] == list(mod.NOTEBOOK_PARAMETERS)
    assert "check_" in code[1]  # the check is in the first cell after the parameters
