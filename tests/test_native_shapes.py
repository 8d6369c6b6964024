"""A run builds its model and counts its FLOPs for the dataset's own image shape (here 1x28x28 idx data)."""

import dataclasses

from fggp.data import IDX_SOURCES
from fggp.train import RunConfig, run

try:
    from .idx_fixture import write_fake_idx
except ImportError:
    from idx_fixture import write_fake_idx


def test_lenet5_run_on_fashion_mnist_shaped_data(tmp_path, monkeypatch):
    sha, *_ = write_fake_idx(tmp_path / "data" / "FashionMNIST" / "raw", n_train=60, n_test=20)
    source = dataclasses.replace(IDX_SOURCES["fashion_mnist"], sha256=sha, package_dir=None)
    monkeypatch.setitem(IDX_SOURCES, "fashion_mnist", source)
    config = RunConfig(arch="lenet5", dataset="fashion_mnist", recipe="gmp", target_sparsity=0.5, epochs=1,
                       prune_end_epoch=1, prune_every=1, batch_size=20, lr=0.01, data_dir=str(tmp_path / "data"),
                       download=False, progress=False, val_size=20)
    result = run(config, tmp_path / "runs")
    assert result["status"] == "completed"
    assert result["prunable_weights"] == 20 * 25 + 50 * 20 * 25 + 800 * 500 + 500 * 10  # conv1 reads 1 channel
    macs = 24 * 24 * 20 * 25 + 8 * 8 * 50 * 20 * 25 + 800 * 500 + 500 * 10  # at 28x28, not 32x32
    assert result["dense_flops"] == 2 * macs
    expected_sparse = 2 * sum(macs_l * result["layer_density"][name] for name, macs_l in {
        "conv1.weight": 24 * 24 * 20 * 25, "conv2.weight": 8 * 8 * 50 * 20 * 25,
        "fc1.weight": 800 * 500, "fc2.weight": 500 * 10}.items())
    assert result["sparse_flops"] == round(expected_sparse)
    assert result["best_val_epoch"] == 1
