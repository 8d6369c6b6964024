"""Architectures (exact sizes, shapes, memory formats) and MAC/FLOP counting."""

import pytest
import torch
from torch import nn

from fggp.models import (MODELS, build_model, flops, get_model, layer_macs, list_models, recommended_config,
                         register_model)
from fggp.models.registry import RECOMMENDED

# Exact counts (all parameters incl. BN affine and linear bias, 10 classes) for 3x32x32 images.
PARAMS = {"vgg19": 20_035_018, "resnet50": 23_520_842, "resnet20": 272_474, "tiny": 24_346,
          "lenet300_100": 953_010, "lenet5": 657_080, "vit_tiny": 142_026}
# For 1x28x28 (Fashion-MNIST, MNIST): the convolutional nets lose two thirds of their stem's weights.
PARAMS_1x28x28 = {"vgg19": 20_035_018 - 2 * 64 * 9, "resnet50": 23_520_842 - 2 * 64 * 9,
                  "resnet20": 272_474 - 2 * 16 * 9, "tiny": 24_346 - 2 * 16 * 9,
                  "lenet300_100": 266_610, "lenet5": 431_080,
                  "vit_tiny": 142_026 - 2 * 16 * 64 - 15 * 64}  # 2 channels fewer, 49+1 tokens, not 64+1


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def vgg():
    return build_model("vgg19")


def test_registry_names():
    assert sorted(MODELS) == ["lenet300_100", "lenet5", "resnet20", "resnet50", "tiny", "vgg19", "vit_tiny"]
    assert list_models() == sorted(MODELS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_exact_param_count(name):
    assert n_params(build_model(name)) == PARAMS[name]
    assert n_params(build_model(name, input_shape=(3, 32, 32))) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(PARAMS_1x28x28))
def test_exact_param_count_for_one_channel_28x28(name):
    assert n_params(build_model(name, input_shape=(1, 28, 28))) == PARAMS_1x28x28[name]


def test_lenet_layers_as_documented():
    """LeNet-300-100: 784*300+300 + 300*100+100 + 100*10+10; LeNet-5 (Caffe's, Han et al. 2015):
    conv 5x5x1x20+20, conv 5x5x20x50+50, 800*500+500, 500*10+10."""
    assert 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == PARAMS_1x28x28["lenet300_100"]
    assert 25 * 20 + 20 + 25 * 20 * 50 + 50 + 800 * 500 + 500 + 500 * 10 + 10 == PARAMS_1x28x28["lenet5"]
    shapes = {n: tuple(p.shape) for n, p in build_model("lenet5", input_shape=(1, 28, 28)).named_parameters()}
    assert shapes == {"conv1.weight": (20, 1, 5, 5), "conv1.bias": (20,), "conv2.weight": (50, 20, 5, 5),
                      "conv2.bias": (50,), "fc1.weight": (500, 800), "fc1.bias": (500,),
                      "fc2.weight": (10, 500), "fc2.bias": (10,)}
    mlp = build_model("lenet300_100", input_shape=(1, 28, 28))
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [300, 100, 10]
    assert not any(isinstance(m, nn.ReLU) for m in list(build_model("lenet5").children())[:3])


def test_lenet5_forward_matches_its_definition():
    torch.manual_seed(0)
    model = build_model("lenet5", input_shape=(1, 28, 28)).eval()
    x = torch.randn(3, 1, 28, 28)
    F = nn.functional
    h = F.max_pool2d(F.conv2d(x, model.conv1.weight, model.conv1.bias), 2)
    h = F.max_pool2d(F.conv2d(h, model.conv2.weight, model.conv2.bias), 2)
    h = F.relu(F.linear(h.flatten(1), model.fc1.weight, model.fc1.bias))
    with torch.no_grad():
        torch.testing.assert_close(model(x), F.linear(h, model.fc2.weight, model.fc2.bias))


@pytest.mark.parametrize("shape", [(2, 28), (20,), (1, 1, 28, 28)])
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_image_models_want_three_dims(name, shape):
    with pytest.raises(ValueError, match=rf"^input_shape: .* must be three positive integers .* for {name}$"):
        build_model(name, input_shape=shape)


@pytest.mark.parametrize("shape", [(0, 28, 28), (1, 28.0, 28), "1x28x28", (), (True, 28, 28), None, (20, -1)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match=r"^input_shape: .* must be positive integers, one sample's shape"):
        build_model("tiny", input_shape=shape)


def test_lenet5_too_small_input():
    with pytest.raises(ValueError, match=r"^input_shape: \(1, 15, 28\) is too small for lenet5"):
        build_model("lenet5", input_shape=(1, 15, 28))
    assert build_model("lenet5", input_shape=(1, 16, 16)).fc1.in_features == 50


def test_param_counts_match_literature():
    assert round(PARAMS["vgg19"] / 1e6, 2) == 20.04
    assert round(PARAMS["resnet50"] / 1e6, 2) == 23.52
    assert round(PARAMS["resnet20"] / 1e6, 2) == 0.27
    assert 20_000 <= PARAMS["tiny"] <= 60_000


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_output_shape(name, num_classes, shape):
    model = build_model(name, num_classes=num_classes, input_shape=shape).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet20", "tiny", "lenet300_100", "lenet5"])
def test_channels_last_matches_contiguous(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_autocast_forward():
    model = build_model("tiny").to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 10)
    out.float().sum().backward()
    assert model.classifier.weight.grad is not None


def test_convs_use_kaiming_fan_out_init():
    torch.manual_seed(0)
    w = build_model("vgg19").features[-3].weight  # last 512->512 conv
    expected_std = (2.0 / (512 * 9)) ** 0.5
    assert w.std().item() == pytest.approx(expected_std, rel=0.02)


def test_unknown_arch_message():
    with pytest.raises(ValueError) as exc:
        build_model("foo")
    assert str(exc.value) == ("arch: 'foo' is not one of lenet300_100, lenet5, resnet20, resnet50, tiny, vgg19, "
                              "vit_tiny")
    assert build_model is get_model


def test_layer_macs_toy_model():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),  # 32x32 out
        nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2),  # 16x16 out
        nn.Flatten(),
        nn.Linear(8 * 16 * 16, 10),
    )
    assert layer_macs(model) == {
        "0.weight": 32 * 32 * 4 * 3 * 3 * 3,
        "1.weight": 16 * 16 * 8 * (4 // 2) * 3 * 3,
        "3.weight": 2048 * 10,
    }
    assert flops(model) == 2 * (110_592 + 36_864 + 20_480)


def test_layer_macs_restores_modes():
    model = build_model("tiny").train()
    model.features[1].eval()  # a mixed state must survive too
    layer_macs(model)
    assert model.training and not model.features[1].training and model.features[0].training
    model.eval()
    layer_macs(model)
    assert not any(m.training for m in model.modules())


def test_layer_macs_keys_are_conv_linear_weight_names(vgg):
    expected = {f"{name}.weight" for name, m in vgg.named_modules()
                if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert len(expected) == 17
    assert set(layer_macs(vgg)) == expected
    assert expected <= dict(vgg.named_parameters()).keys()


def test_vgg19_dense_macs(vgg):
    # 32x32: (3+64)*64*9*1024; 16x16: (64+128)*128*9*256; 8x8: (128+3*256)*256*9*64;
    # 4x4: (256+3*512)*512*9*16; 2x2: 4*512*512*9*4; linear 512*10.
    by_hand = (67 * 64 * 9 * 1024 + 192 * 128 * 9 * 256 + 896 * 256 * 9 * 64
               + 1792 * 512 * 9 * 16 + 4 * 512 * 512 * 9 * 4 + 5120)
    assert by_hand == 398_136_320
    assert sum(layer_macs(vgg).values()) == by_hand
    assert flops(vgg) == 2 * by_hand


def test_resnet20_dense_macs():
    assert sum(layer_macs(build_model("resnet20")).values()) == 40_813_184


def test_lenet_macs_at_the_datasets_input_shape():
    mlp = build_model("lenet300_100", input_shape=(1, 28, 28))
    assert layer_macs(mlp, (1, 1, 28, 28)) == {"fc1.weight": 784 * 300, "fc2.weight": 300 * 100, "fc3.weight": 1000}
    lenet5 = build_model("lenet5", input_shape=(1, 28, 28))
    assert layer_macs(lenet5, (1, 1, 28, 28)) == {
        "conv1.weight": 24 * 24 * 20 * 25,  # 28 - 4 = 24
        "conv2.weight": 8 * 8 * 50 * 20 * 25,  # 24 / 2 - 4 = 8
        "fc1.weight": 800 * 500,
        "fc2.weight": 500 * 10,
    }
    # A conv net's MACs follow the image: resnet20's feature maps 28/14/7 have 49/64 of the positions of
    # 32/16/8, its stem reads 1 channel instead of 3, and the linear head (64*10) does not change.
    stem_32, head = 32 * 32 * 16 * 3 * 9, 64 * 10
    small = layer_macs(build_model("resnet20", input_shape=(1, 28, 28)), (1, 1, 28, 28))
    assert sum(small.values()) == (40_813_184 - stem_32 - head) * 49 // 64 + 28 * 28 * 16 * 1 * 9 + head


def test_flops_scales_with_density(vgg):
    macs = layer_macs(vgg)
    dense = flops(vgg)
    assert flops(vgg, {name: 0.5 for name in macs}) == dense // 2
    assert flops(vgg, {name: None for name in macs}) == dense
    assert flops(vgg, {"classifier.weight": 0.0}) == dense - 2 * macs["classifier.weight"]
    assert flops(vgg, {name: 0.0 for name in macs}) == 0


# Layers whose CUDA backward raises under torch.use_deterministic_algorithms(True) (torch's own list);
# a run with deterministic=true must not meet one, and CI has no GPU to find out.
NO_DETERMINISTIC_CUDA_BACKWARD = (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d, nn.AvgPool3d,
                                  nn.FractionalMaxPool2d, nn.FractionalMaxPool3d, nn.ReflectionPad1d,
                                  nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d,
                                  nn.ReplicationPad2d, nn.ReplicationPad3d, nn.Upsample)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_have_a_deterministic_cuda_backward(name):
    offending = [n for n, m in build_model(name).named_modules() if isinstance(m, NO_DETERMINISTIC_CUDA_BACKWARD)]
    assert offending == []


def test_global_avg_pool_is_adaptive_avg_pool():
    from fggp.models.pool import GlobalAvgPool

    x = torch.randn(4, 8, 5, 3, requires_grad=True)
    ours = GlobalAvgPool()(x)
    reference = nn.AdaptiveAvgPool2d(1)(x).flatten(1)
    torch.testing.assert_close(ours, reference)
    (g_ours,) = torch.autograd.grad(ours.square().sum(), x)
    (g_ref,) = torch.autograd.grad(reference.square().sum(), x)
    torch.testing.assert_close(g_ours, g_ref)


# --- the registry: your own model by name ---------------------------------------------------------------

@pytest.fixture
def registered():
    """Names a test registers, removed afterwards so every other test sees the zoo's registry."""
    names: list[str] = []
    yield names
    for name in names:
        MODELS.pop(name, None)
        RECOMMENDED.pop(name, None)


class TokenClassifier(nn.Module):
    """Token ids -> mean embedding -> classes: a model whose input is not an image."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        (self.length,) = input_shape
        self.embed = nn.Embedding(100, 8)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.embed(x).mean(1))


def test_register_get_and_list(registered):
    calls = []

    def build(num_classes, input_shape):
        calls.append((num_classes, input_shape))
        return TokenClassifier(num_classes, input_shape)

    registered.append("tokens")
    assert register_model("tokens", build) is build
    assert MODELS["tokens"] is build and "tokens" in list_models() and list_models() == sorted(MODELS)
    model = get_model("tokens", num_classes=4, input_shape=[20])
    assert calls == [(4, (20,))]  # keyword arguments, the shape as a tuple
    assert model(torch.zeros(2, 20, dtype=torch.long)).shape == (2, 4)
    assert build_model("tokens", num_classes=3, input_shape=(20,)).head.out_features == 3
    assert recommended_config("tokens") == {}


def test_register_as_decorator_with_recommended(registered):
    registered.append("features.mlp-v2")
    defaults = {"optimizer": "adamw", "lr": 3e-4}

    @register_model("features.mlp-v2", recommended=defaults)
    def mlp(num_classes, input_shape):
        return nn.Sequential(nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, num_classes))

    assert callable(mlp) and MODELS["features.mlp-v2"] is mlp
    assert get_model("features.mlp-v2", 5, (64,))(torch.randn(3, 64)).shape == (3, 5)
    got = recommended_config("features.mlp-v2")
    assert got == defaults
    got["lr"] = 1.0
    defaults["lr"] = 2.0  # neither the caller's dict nor the returned copy reaches the registry
    assert recommended_config("features.mlp-v2") == {"optimizer": "adamw", "lr": 3e-4}


def test_vit_tiny_recommends_its_training_fields():
    assert recommended_config("vit_tiny") == {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05,
                                              "lr_schedule": "cosine", "warmup_epochs": 1, "batch_size": 128}
    assert recommended_config("resnet20") == {}
    with pytest.raises(ValueError, match=r"^arch: 'nope' is not one of lenet300_100, "):
        recommended_config("nope")


@pytest.mark.parametrize("name", ["tiny", "vit_tiny"])
def test_a_builtin_name_is_refused(name):
    before = MODELS[name]
    with pytest.raises(ValueError) as exc:
        register_model(name, lambda num_classes, input_shape: nn.Linear(1, 1))
    assert str(exc.value).startswith(f"arch: {name!r} is already registered")
    assert "\n" not in str(exc.value) and MODELS[name] is before


def test_a_taken_user_name_is_refused(registered):
    registered.append("mine")
    first = register_model("mine", TokenClassifier)
    with pytest.raises(ValueError, match=r"^arch: 'mine' is already registered"):
        register_model("mine", TokenClassifier)
    with pytest.raises(ValueError, match=r"^arch: 'mine' is already registered"):
        register_model("mine")  # the decorator form refuses at once, before it decorates anything
    assert MODELS["mine"] is first


@pytest.mark.parametrize("name", ["", "my model", "a/b", "résnet", None, 3, "x\n"])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match=r"^arch: .* is not a valid name \(a non-empty string of letters"):
        register_model(name, TokenClassifier)
    assert name not in MODELS


def test_a_build_that_is_not_callable_is_refused():
    with pytest.raises(ValueError, match=r"^arch: 'broken' build must be callable"):
        register_model("broken", nn.Linear(2, 2).weight)
    with pytest.raises(ValueError, match=r"^arch: 'broken' recommended must be a dict"):
        register_model("broken", TokenClassifier, recommended=[("lr", 1.0)])
    assert "broken" not in MODELS and "broken" not in RECOMMENDED


def test_a_build_that_returns_no_module_is_refused(registered):
    registered.append("not_a_module")
    register_model("not_a_module", lambda num_classes, input_shape: "a string")
    with pytest.raises(ValueError) as exc:
        get_model("not_a_module")
    assert str(exc.value) == "arch: 'not_a_module' build returned a str, not an nn.Module"


def test_registered_model_is_counted_by_flops(registered):
    registered.append("tokens")
    register_model("tokens", TokenClassifier)
    model = get_model("tokens", num_classes=4, input_shape=(20,))
    assert layer_macs(model, (1, 20)) == {"head.weight": 8 * 4}  # the embedding costs nothing, mean pools
    assert "tokens" in list_models()



def test_input_shape_may_be_a_list_or_numpy_ints():
    np = pytest.importorskip("numpy")
    shape = [np.int64(1), np.int64(28), 28]
    model = build_model("lenet300_100", input_shape=shape)
    assert model.fc1.in_features == 784
    assert build_model("vit_tiny", input_shape=torch.Size([1, 28, 28])).pos_embed.shape == (1, 50, 64)
