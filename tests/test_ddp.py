"""The Pruner under DistributedDataParallel: two CPU processes (gloo) on different data prune the same weights,
mask names carry no ``module.`` prefix, and the pruner's state moves between the wrapped and the bare model."""

import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from fggp.pruning import Pruner

WORLD = 2
FGGP = dict(target_sparsity=0.8, end_step=20, prune_every=4)
RANDOM = dict(target_sparsity=0.8, initial_sparsity=0.5, end_step=12, prune_every=4)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5))


def _train(ddp, pruner, opt, steps, rank):
    gen = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
    for _ in range(steps):
        x = torch.randn(16, 12, generator=gen)
        y = torch.randint(0, 5, (16,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        pruner.before_step()
        opt.step()
        pruner.after_step()


def _worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = small_net()
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        pruner = Pruner(ddp, opt, "fggp", **FGGP, log=None)
        _train(ddp, pruner, opt, 30, rank)

        # a per-rank seed makes the random order (and the random sparse start) differ between ranks:
        # only the broadcast from rank 0 keeps their masks equal
        other = small_net()
        ddp2 = nn.parallel.DistributedDataParallel(other)
        opt2 = torch.optim.SGD(ddp2.parameters(), lr=0.1)
        random = Pruner(ddp2, opt2, "random", **RANDOM, seed=rank, log=None)
        _train(ddp2, random, opt2, 14, rank)

        torch.save({"hash": pruner.mask_hash(), "names": pruner.names, "state": pruner.state_dict(),
                    "weights": model.state_dict(), "random_hash": random.mask_hash(),
                    "random_active": random.active, "random_total": random.total},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ranks_prune_alike_and_state_loads_on_the_bare_model(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    ctx = mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two ranks did not finish within 120 s (a collective that one rank skipped?)")
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    r0, r1 = results

    assert r0["hash"] == r1["hash"]
    assert r0["names"] == r1["names"] == ["0.weight", "2.weight", "4.weight"]
    assert all(torch.equal(a, b) for a, b in zip(r0["weights"].values(), r1["weights"].values()))
    masks = r0["state"]["masks"]
    assert r0["state"]["step"] == 30
    assert sum(int(m.sum()) for m in masks.values()) == round(0.2 * sum(m.numel() for m in masks.values()))
    assert r0["random_hash"] == r1["random_hash"]
    assert r0["random_active"] == round(0.2 * r0["random_total"])

    bare = Pruner(small_net(), None, "fggp", **FGGP, log=None)
    assert bare.mask_hash() != r0["hash"]
    bare.load_state_dict(r0["state"])
    assert bare.mask_hash() == r0["hash"]
    back = Pruner(nn.DataParallel(small_net()), None, "fggp", **FGGP, log=None)  # and into a wrapped one
    back.load_state_dict(bare.state_dict())
    assert back.mask_hash() == r0["hash"]
