"""Notebook 01 executed headless, as a teacher hands it out: the saved copy reads without a kernel.

Papermill (with the kit's kernel settings, fggp.executors) executes the notebook once; the copy must have no
error, its drawings as plain outputs, and for every widget view in its outputs the state of that widget and of
every widget it refers to in the notebook's metadata, which JupyterLab draws from (without it JupyterLab shows
"Error displaying widget: model not found"). The text/plain fallback of the view is a sentence, not a repr.
"""

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_layer_scores.ipynb"
VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


@pytest.fixture(scope="module")
def saved_copy(tmp_path_factory):
    papermill = pytest.importorskip("papermill")
    from fggp.executors import KERNEL_ARGUMENTS, kernel_config

    folder = tmp_path_factory.mktemp("saved_copy")
    out = folder / NOTEBOOK.name
    papermill.execute_notebook(str(NOTEBOOK), str(out), parameters=dict(warmup_steps=5), kernel_name="python3",
                               cwd=str(folder), progress_bar=False, execution_timeout=180,  # never hang
                               extra_arguments=list(KERNEL_ARGUMENTS), config=kernel_config())
    return json.loads(out.read_text())


def outputs(nb):
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]


def references(state: dict) -> set:
    """The model ids a widget's state names ("IPY_MODEL_<id>", also inside lists such as a box's children)."""
    found = set()

    def walk(value):
        if isinstance(value, str) and value.startswith("IPY_MODEL_"):
            found.add(value.removeprefix("IPY_MODEL_"))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(state)
    return found


def test_saved_copy_has_no_error_and_the_drawings_as_plain_outputs(saved_copy):
    shown = outputs(saved_copy)
    assert not [o for o in shown if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in shown) == 5  # the interactive figure as a plain PNG too


def test_every_widget_view_in_the_saved_copy_has_its_state_saved(saved_copy):
    views = [o["data"][VIEW]["model_id"] for o in outputs(saved_copy) if VIEW in o.get("data", {})]
    if not views:  # no widget view at all also reads cleanly
        return
    state = saved_copy["metadata"].get("widgets", {}).get(STATE, {}).get("state", {})
    missing, seen, todo = set(), set(), list(views)
    while todo:  # the view's model, and every model it refers to (sliders, layouts, styles), recursively
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        if model not in state:
            missing.add(model)
            continue
        todo += references(state[model]["state"])
    assert not missing, f"widget models shown but not saved: {sorted(missing)}"
    sliders = {s["state"]["description"]: s["state"]["value"] for s in state.values()
               if s["model_name"] == "FloatSliderModel"}
    assert sliders == {"sparsity": 0.2, "rate": 0.5}  # drawn at the values of the drawing below them


def test_the_widget_fallback_and_caption_read_as_sentences(saved_copy):
    shown = outputs(saved_copy)
    view = next(i for i, o in enumerate(shown) if VIEW in o.get("data", {}))
    fallback = "".join(shown[view]["data"]["text/plain"])
    assert "VBox(" not in fallback and "sliders" in fallback  # untrusted or plain-text views read it
    caption = "".join(shown[view - 1]["data"]["text/markdown"])
    assert caption.startswith("Sliders for sparsity and rate") and "Save Widget State Automatically" in caption
    assert "image/png" in shown[view + 1]["data"]  # then the drawing, right under the sliders
