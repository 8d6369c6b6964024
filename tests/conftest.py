"""Shared test plumbing: the resilience suite's counts, printed at the end of the run, and the benchmark
scripts loaded as modules."""

import collections
import importlib.util
from pathlib import Path

import pytest

_COUNTS = collections.Counter()


@pytest.fixture
def resilience():
    """Tests add to it: faults_injected / faults_survived, bad_inputs_tried / bad_inputs_rejected."""
    return _COUNTS


class _WorkerCounts:
    """Under pytest-xdist (``make test`` runs two workers) each worker counts its own cases; the counts travel
    to the controller, which prints their sum."""

    @pytest.hookimpl
    def pytest_testnodedown(self, node, error):
        _COUNTS.update(getattr(node, "workeroutput", {}).get("resilience", {}))


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_WorkerCounts(), "fggp-resilience-counts")


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a worker: hand the counts over
        workeroutput["resilience"] = dict(_COUNTS)


def pytest_terminal_summary(terminalreporter):
    if _COUNTS:
        c = _COUNTS
        terminalreporter.write_line(
            f"resilience: faults injected {c['faults_injected']}, survived {c['faults_survived']}; "
            f"bad inputs tried {c['bad_inputs_tried']}, rejected cleanly {c['bad_inputs_rejected']}"
        )


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark(name)``: ``benchmarks/<name>.py`` as a module (the scripts are not in the package)."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def isolated_plugins():
    """Whatever a plugin registers during the test (models, datasets, orders, recipes) is gone afterwards, and
    the plugin module with it, so a later test imports it afresh and the registries look as the package made them."""
    import sys

    from fggp.data import DATASETS, SHAPES
    from fggp.data import registry as data_registry
    from fggp.models import MODELS
    from fggp.models import registry as model_registry
    from fggp.pruning import ORDERS, RECIPES
    from fggp.train import config as train_config

    stores = [MODELS, model_registry.RECOMMENDED, DATASETS, SHAPES, data_registry._REGISTERED, ORDERS, RECIPES,
              train_config.PLUGIN_DIGESTS]
    before = [dict(s) for s in stores]
    modules = set(sys.modules)
    yield
    for store, saved in zip(stores, before):
        store.clear()
        store.update(saved)
    for name in set(sys.modules) - modules:
        if name.startswith("fggp_plugin_"):
            del sys.modules[name]
    train_config.layer_shapes.cache_clear()
