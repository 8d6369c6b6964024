"""register_dataset: user datasets (features, token ids, torchvision PIL images) loaded, checked and batched
as the built-ins are; images normalized and augmented, everything else passed through unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.datasets import FakeData

from fggp.data import (
    DATASETS,
    SHAPES,
    DeviceLoader,
    Split,
    apply_augmentation,
    dataset_info,
    draw_augmentation,
    list_datasets,
    load_dataset,
    register_dataset,
    unregister_dataset,
    with_validation,
)
from fggp.data import registry

BUILTINS = ["cifar10", "digits", "fashion_mnist", "mnist", "synthetic"]


@pytest.fixture(autouse=True)
def clean_registry():
    """Whatever a test registers is gone afterwards: DATASETS, SHAPES and the registry's own record."""
    saved = dict(DATASETS), dict(SHAPES), dict(registry._REGISTERED)
    yield
    for table, before in zip((DATASETS, SHAPES, registry._REGISTERED), saved):
        table.clear()
        table.update(before)


def _digits_flat():
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = raw.data.astype(np.float32)  # [1797, 64], values 0..16
    y = raw.target
    return (x[:1500], y[:1500]), (torch.from_numpy(x[1500:]), torch.from_numpy(y[1500:]))


def _batches(loader, epoch):
    return [(x.clone(), y.clone()) for x, y in loader.iter_epoch(epoch)]


def _image_order(n, batch_size, seed, epoch):
    """The sample order the loader gives an image split of ``n`` samples: labels 0..n-1 trace it."""
    images = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    images[::2] = 255  # not constant, as a real image split
    split = Split(images, torch.arange(n))
    loader = DeviceLoader(split, batch_size, train=True, mean=(0.5,) * 3, std=(0.5,) * 3, seed=seed)
    return torch.cat([y for _, y in loader.iter_epoch(epoch)])


# ---- tensor pairs: features and token ids --------------------------------------------------------

def test_float_features_pass_through_unnormalized_in_the_image_order(tmp_path):
    (x_train, y_train), (x_test, y_test) = _digits_flat()
    seen = []

    def load(data_dir):
        seen.append(data_dir)
        return (x_train, y_train), (x_test, y_test)

    register_dataset("digits_flat", load, input_shape=(64,), num_classes=10)
    assert SHAPES["digits_flat"] == (64,)
    assert list_datasets() == sorted(BUILTINS + ["digits_flat"])
    assert dataset_info("digits_flat") == {"input_shape": (64,), "num_classes": 10, "augment": False,
                                           "builtin": False}
    ds = load_dataset("digits_flat", tmp_path, download=False)
    assert seen == [tmp_path]
    assert ds.name == "digits_flat" and ds.num_classes == 10 and ds.shape == (64,)
    assert not ds.is_image and ds.mean is None and ds.std is None and ds.augment is False
    assert ds.train.images.dtype == torch.float32 and ds.train.labels.dtype == torch.int64
    assert torch.equal(ds.train.images, torch.from_numpy(x_train)) and torch.equal(ds.test.images, x_test)
    assert ds.train.labels.tolist() == y_train.tolist()

    loader = DeviceLoader(ds.train, 128, train=True, mean=ds.mean, std=ds.std, seed=4, augment=ds.augment)
    batches = _batches(loader, 2)
    order = _image_order(1500, 128, seed=4, epoch=2)
    assert not torch.equal(order, torch.arange(1500))
    assert torch.equal(torch.cat([y for _, y in batches]), ds.train.labels[order])
    x = torch.cat([x for x, _ in batches])
    assert x.dtype == torch.float32 and torch.equal(x, ds.train.images[order])  # not normalized: 0..16
    assert x.max() == 16
    test = torch.cat([x for x, _ in DeviceLoader(ds.test, 100, train=False).iter_epoch(0)])
    assert torch.equal(test, ds.test.images)


def test_token_ids_stay_int64_and_unchanged():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 30000, (300, 20), generator=g)
    labels = torch.randint(0, 4, (300,), generator=g)
    register_dataset("tokens", lambda d: ((tokens[:240], labels[:240]), (tokens[240:], labels[240:])),
                     input_shape=[20], num_classes=4)
    ds = load_dataset("tokens")
    assert SHAPES["tokens"] == (20,) and ds.shape == (20,) and not ds.is_image
    loader = DeviceLoader(ds.train, 64, train=True, seed=1, channels_last=True)
    assert not loader.augment and not loader.channels_last
    order = _image_order(240, 64, seed=1, epoch=0)
    batches = _batches(loader, 0)
    assert [len(y) for _, y in batches] == [64, 64, 64, 48]
    assert all(x.dtype == torch.int64 for x, _ in batches)
    assert torch.equal(torch.cat([x for x, _ in batches]), tokens[:240][order])
    assert torch.equal(torch.cat([y for _, y in batches]), labels[:240][order])
    with pytest.raises(ValueError, match=r"^augment: the inputs torch.int64 \[240, 20\] are not uint8 images"):
        DeviceLoader(ds.train, 64, train=True, augment=True)
    with pytest.raises(ValueError, match=r"^mean: "):
        DeviceLoader(ds.train, 64, train=True, mean=(0.5,), std=(0.5,))


# ---- torchvision datasets of PIL images ----------------------------------------------------------

def _fake(size, image_size, offset=0):
    return FakeData(size=size, image_size=image_size, num_classes=10, transform=None, random_offset=offset)


def test_torchvision_pil_images_are_materialized_normalized_and_augmented():
    train, test = _fake(64, (1, 28, 28)), _fake(24, (1, 28, 28), offset=1000)
    assert train[0][0].mode == "L"  # FakeData's image_size is (C, H, W) and it yields PIL images
    register_dataset("fake", lambda d: (train, test), input_shape=(1, 28, 28), num_classes=10, augment=True)
    ds = load_dataset("fake")
    assert ds.is_image and ds.augment and ds.shape == (1, 28, 28) == SHAPES["fake"]
    for split, source in ((ds.train, train), (ds.test, test)):
        assert split.images.dtype == torch.uint8 and split.images.shape == (len(source), 1, 28, 28)
        for i in (0, 5, len(source) - 1):
            img, label = source[i]
            assert torch.equal(split.images[i, 0], torch.tensor(np.asarray(img)))
            assert split.labels[i].item() == label
        assert split.labels.tolist() == [source[i][1] for i in range(len(source))]
    assert not torch.equal(ds.train.images[:24], ds.test.images)
    pixels = ds.train.images.double() / 255
    assert ds.mean == pytest.approx((pixels.mean().item(),), abs=1e-12)
    assert ds.std == pytest.approx((pixels.std().item(),), abs=1e-12)

    def by_hand(images):
        return (images.float() / 255 - ds.mean[0]) / ds.std[0]

    plain = DeviceLoader(ds.test, 10, train=False, mean=ds.mean, std=ds.std, channels_last=False)
    x = torch.cat([x for x, _ in plain.iter_epoch(0)])
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, by_hand(ds.test.images), rtol=0, atol=1e-5)

    loader = DeviceLoader(ds.train, 16, train=True, mean=ds.mean, std=ds.std, seed=7, augment=ds.augment)
    g = loader.generator(3)
    order = torch.randperm(64, generator=g)
    dy, dx, flip = draw_augmentation(64, g)
    expected = apply_augmentation(ds.train.images[order], dy, dx, flip)
    assert not torch.equal(expected, ds.train.images[order])
    x = torch.cat([x for x, _ in loader.iter_epoch(3)])
    assert x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x, by_hand(expected), rtol=0, atol=1e-5)
    off = DeviceLoader(ds.train, 16, train=True, mean=ds.mean, std=ds.std, seed=7, augment=False)
    torch.testing.assert_close(torch.cat([x for x, _ in off.iter_epoch(3)]), by_hand(ds.train.images[order]),
                               rtol=0, atol=1e-5)


def test_rgb_pil_images_become_channels_first():
    train, test = _fake(12, (3, 10, 14)), _fake(4, (3, 10, 14), offset=50)
    register_dataset("fake_rgb", lambda d: (train, test), input_shape=(3, 10, 14), num_classes=10)
    ds = load_dataset("fake_rgb")
    assert ds.train.images.shape == (12, 3, 10, 14) and len(ds.mean) == 3
    img = np.asarray(train[3][0])
    assert img.shape == (10, 14, 3)
    assert torch.equal(ds.train.images[3], torch.tensor(img).permute(2, 0, 1))


def test_a_list_of_numpy_items_and_a_pil_mode_it_cannot_take():
    rows = [(np.full((5,), i, dtype=np.float32), np.int64(i % 3)) for i in range(9)]
    register_dataset("rows", lambda d: (rows, rows[:3]), input_shape=(5,), num_classes=3)
    ds = load_dataset("rows")
    assert ds.train.images.dtype == torch.float32 and ds.train.images[:, 0].tolist() == list(range(9))
    assert ds.train.labels.tolist() == [i % 3 for i in range(9)]
    palette = FakeData(size=4, image_size=(3, 8, 8), transform=lambda im: im.convert("P"))
    register_dataset("palette", lambda d: (palette, palette), input_shape=(3, 8, 8), num_classes=10)
    with pytest.raises(ValueError, match=r"^inputs: dataset 'palette' train item 0 is a PIL image of mode 'P'"):
        load_dataset("palette")


# ---- refusals ------------------------------------------------------------------------------------

def _pair(n=20, shape=(4,), classes=3):
    return torch.zeros(n, *shape), torch.arange(n) % classes


def _one_line(err):
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_names_are_taken(name):
    with pytest.raises(ValueError, match=rf"^dataset: '{name}' is already registered \(a built-in\)") as err:
        register_dataset(name, lambda d: None, input_shape=(4,), num_classes=3)
    _one_line(err)
    assert dataset_info(name)["builtin"] is True


def test_a_registered_name_is_taken_until_unregistered():
    register_dataset("mine", lambda d: (_pair(), _pair()), input_shape=(4,), num_classes=3)
    with pytest.raises(ValueError, match=r"^dataset: 'mine' is already registered \(registered before"):
        register_dataset("mine", lambda d: (_pair(), _pair()), input_shape=(4,), num_classes=3)
    unregister_dataset("mine")
    assert "mine" not in DATASETS and "mine" not in SHAPES and "mine" not in list_datasets()
    with pytest.raises(ValueError, match=r"^dataset: 'cifar10' is not a registered dataset"):
        unregister_dataset("cifar10")
    register_dataset("mine", lambda d: (_pair(), _pair()), input_shape=(4,), num_classes=3)


@pytest.mark.parametrize("field, kwargs", [
    ("name", dict(name="my data")),
    ("name", dict(name="a=b")),
    ("name", dict(name="")),
    ("name", dict(name=3)),
    ("load", dict(load="not callable")),
    ("input_shape", dict(input_shape=(4, 0))),
    ("input_shape", dict(input_shape=())),
    ("input_shape", dict(input_shape=4)),
    ("input_shape", dict(input_shape=(4.0,))),
    ("num_classes", dict(num_classes=1)),
    ("num_classes", dict(num_classes=2.5)),
    ("num_classes", dict(num_classes=True)),
    ("augment", dict(augment="yes")),
])
def test_bad_registration_fields(field, kwargs):
    args = dict(name="ok", load=lambda d: None, input_shape=(4,), num_classes=3) | kwargs
    with pytest.raises(ValueError, match=rf"^{field}: ") as err:
        register_dataset(args.pop("name"), args.pop("load"), **args)
    _one_line(err)
    assert "ok" not in DATASETS and "ok" not in SHAPES


@pytest.mark.parametrize("returned, match", [
    (lambda: (_pair(shape=(5,)), _pair()), r"^input_shape: dataset 'bad' train inputs have shape \(5,\) per sample "
                                           r"\(all \[20, 5\]\), registered as \(4,\)$"),
    (lambda: (_pair(), [(torch.zeros(4), 0), (torch.zeros(3), 1)]),
     r"^input_shape: dataset 'bad' test item 1 has shape \(3,\), registered as \(4,\)$"),
    (lambda: (_pair(classes=4), _pair()), r"^labels: dataset 'bad' train label 3 \(sample 3\) is outside \[0, 3\)"),
    (lambda: (_pair(), (torch.zeros(2, 4), torch.tensor([0, -1]))), r"^labels: dataset 'bad' test label -1"),
    (lambda: (_pair(), [(torch.zeros(4), 1.0)]), r"^labels: dataset 'bad' test item 0 has label 1.0"),
    (lambda: ((torch.zeros(20, 4), torch.zeros(20)), _pair()),
     r"^labels: dataset 'bad' train labels are torch.float32 \[20\]; expected integers \[N\]$"),
    (lambda: ((torch.zeros(3, 4), torch.arange(2)), _pair()), r"^labels: dataset 'bad' train has 3 inputs but 2"),
    (lambda: _pair(), r"^load: dataset 'bad' returned one split"),
    (lambda: (_pair(),), r"^load: dataset 'bad' returned a tuple of 1; it must return a pair \(train, test\)$"),
    (lambda: None, r"^load: dataset 'bad' returned NoneType"),
    (lambda: (_pair(), (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))), r"^test: dataset 'bad' test is empty"),
    (lambda: ([], _pair()), r"^train: dataset 'bad' train is empty"),
    (lambda: (_pair(), (torch.zeros(20, 4, dtype=torch.float64), torch.arange(20) % 3)),
     r"^inputs: dataset 'bad' has torch.float32 train inputs but torch.float64 test inputs"),
    (lambda: (_pair(), 5), r"^test: dataset 'bad' test is a int"),
])
def test_bad_data_is_refused_at_load_in_one_line(returned, match):
    register_dataset("bad", lambda d: returned(), input_shape=(4,), num_classes=3)
    with pytest.raises(ValueError, match=match) as err:
        load_dataset("bad")
    _one_line(err)


def test_augment_is_refused_where_crop_and_flip_cannot_apply():
    register_dataset("feat_aug", lambda d: (_pair(), _pair()), input_shape=(4,), num_classes=3, augment=True)
    with pytest.raises(ValueError, match=r"^augment: dataset 'feat_aug' has torch.float32 inputs"):
        load_dataset("feat_aug")
    small = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8), torch.arange(10) % 3
    register_dataset("tiny_aug", lambda d: (small, small), input_shape=(1, 4, 4), num_classes=3, augment=True)
    with pytest.raises(ValueError, match=r"^augment: dataset 'tiny_aug' has images of \(1, 4, 4\), too small"):
        load_dataset("tiny_aug")
    constant = torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.arange(10) % 3
    register_dataset("flat", lambda d: (constant, constant), input_shape=(1, 8, 8), num_classes=3)
    with pytest.raises(ValueError, match=r"^inputs: dataset 'flat' has a constant channel"):
        load_dataset("flat")


def test_unknown_name_lists_the_registered_ones():
    register_dataset("zeta", lambda d: (_pair(), _pair()), input_shape=(4,), num_classes=3)
    with pytest.raises(ValueError, match=r"^dataset: 'foo' is not one of cifar10, fashion_mnist, mnist, digits, "
                                         r"synthetic, zeta$"):
        load_dataset("foo")
    with pytest.raises(ValueError, match=r"^dataset: 'foo' is not one of "):
        dataset_info("foo")


# ---- validation split on other inputs ------------------------------------------------------------

def test_with_validation_on_token_ids():
    tokens = torch.randint(0, 1000, (300, 12), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = torch.arange(300)  # row i carries i, so a split traces back to the originals
    labels = torch.arange(300) % 10
    register_dataset("tok_val", lambda d: ((tokens, labels), (tokens[:20], labels[:20])), input_shape=(12,),
                     num_classes=10)
    ds = load_dataset("tok_val")
    held = with_validation(ds, 50)
    train, val = held.train.images[:, 0].tolist(), held.val.images[:, 0].tolist()
    assert len(val) == 50 and set(train).isdisjoint(val) and sorted(train + val) == list(range(300))
    assert torch.equal(held.val.images, tokens[held.val.images[:, 0]])
    assert held.val.labels.tolist() == [i % 10 for i in val]
    assert torch.bincount(held.val.labels).tolist() == [5] * 10
    assert held.val.images.dtype == torch.int64 and held.mean is None
    assert val == with_validation(ds, 50).val.images[:, 0].tolist()


# ---- Split and the built-ins' description --------------------------------------------------------

def test_split_takes_any_inputs_with_int64_labels_of_their_length():
    for inputs in (torch.zeros(6, 64), torch.zeros(6, 20, dtype=torch.int64), torch.rand(6, 3, 8, 8)):
        split = Split(inputs, torch.arange(6))
        assert len(split) == 6 and not split.is_image
    assert Split(torch.zeros(6, 1, 8, 8, dtype=torch.uint8), torch.arange(6)).is_image
    with pytest.raises(ValueError, match=r"^labels: expected int64 \[6\], got torch.int64 \[5\]$"):
        Split(torch.zeros(6, 64), torch.arange(5))
    with pytest.raises(ValueError, match=r"^labels: expected int64 \[6\], got torch.float32 \[6\]$"):
        Split(torch.zeros(6, 64), torch.zeros(6))
    with pytest.raises(ValueError, match=r"^images: expected a tensor of inputs \[N, \.\.\.\], got a numpy array float64 \[6, 64\]$"):
        Split(np.zeros((6, 64)), torch.arange(6))


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_builtin_info_matches_the_loaded_dataset(name):
    ds, info = load_dataset(name), dataset_info(name)
    assert info == {"input_shape": ds.shape, "num_classes": ds.num_classes, "augment": ds.augment, "builtin": True}
    assert ds.is_image
