"""vit_tiny: its exact size, its shapes, its initialization, and that it learns on a 2-core CPU."""

import pytest
import torch
from torch import nn

from fggp.models import build_model, layer_macs
from fggp.pruning.masks import prunable_parameters


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def by_hand(channels: int, tokens: int, classes: int = 10) -> int:
    """The docstring's count: blocks of LN, attention (in 3*64*64+192, out 64*64+64), LN, MLP 64->128->64."""
    block = 2 * 128 + (3 * 64 * 64 + 3 * 64) + (64 * 64 + 64) + (64 * 128 + 128) + (128 * 64 + 64)
    assert block == 33_472
    return channels * 16 * 64 + 64 + 64 + (tokens + 1) * 64 + 4 * block + 128 + 64 * classes + classes


def test_exact_parameter_count():
    assert n_params(build_model("vit_tiny", input_shape=(1, 28, 28))) == by_hand(1, 49) == 139_018
    assert n_params(build_model("vit_tiny", input_shape=(3, 32, 32))) == by_hand(3, 64) == 142_026
    assert n_params(build_model("vit_tiny", num_classes=100)) == by_hand(3, 64, 100)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (2, 16, 12)])
def test_forward_shape(shape):
    model = build_model("vit_tiny", input_shape=shape)
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_layout():
    model = build_model("vit_tiny", input_shape=(1, 28, 28))
    conv = model.patch_embed
    assert (conv.kernel_size, conv.stride, conv.out_channels) == ((4, 4), (4, 4), 64)
    assert model.cls_token.shape == (1, 1, 64) and model.pos_embed.shape == (1, 50, 64)
    assert len(model.blocks) == 4
    attn = model.blocks[0].attn
    assert isinstance(attn, nn.MultiheadAttention) and attn.batch_first and attn.num_heads == 4
    assert isinstance(model.blocks[0].act, nn.GELU) and model.blocks[0].fc1.out_features == 128
    assert isinstance(model.norm, nn.LayerNorm) and model.head.in_features == 64
    # The pruning engine sees the patch conv and every Linear, MHA's out_proj included.
    assert {"patch_embed.weight", "blocks.0.fc1.weight", "blocks.3.attn.out_proj.weight",
            "head.weight"} <= set(prunable_parameters(model))


def test_pre_norm_residual_blocks():
    """A block is x + attn(LN1(x)), then + fc2(GELU(fc1(LN2(.)))): checked against the layers called by hand."""
    torch.manual_seed(0)
    block = build_model("vit_tiny").blocks[0].eval()
    x = torch.randn(2, 9, 64)
    h = block.norm1(x)
    y = x + block.attn(h, h, h, need_weights=False)[0]
    y = y + block.fc2(nn.functional.gelu(block.fc1(block.norm2(y))))
    with torch.no_grad():
        torch.testing.assert_close(block(x), y)


def test_initialization():
    torch.manual_seed(0)
    model = build_model("vit_tiny")
    for t in (model.pos_embed, model.blocks[1].fc1.weight, model.blocks[2].attn.in_proj_weight,
              model.blocks[3].attn.out_proj.weight, model.head.weight):
        assert t.abs().max().item() <= 0.04 + 1e-7  # truncated at 2 std
        assert t.std().item() == pytest.approx(0.0177, rel=0.25)  # 0.02 * 0.88, the truncated normal's std
    assert model.blocks[0].fc1.bias.abs().sum() == 0 and model.blocks[0].attn.in_proj_bias.abs().sum() == 0


@pytest.mark.parametrize("shape", [(1, 30, 28), (3, 32, 34), (1, 2, 2)])
def test_patch_must_divide_the_image(shape):
    with pytest.raises(ValueError) as exc:
        build_model("vit_tiny", input_shape=shape)
    assert str(exc.value).startswith(f"input_shape: {shape} has a height or width that patch 4 does not divide")
    assert "\n" not in str(exc.value)


def test_macs_per_image():
    """Token T=50 at 28x28: patch 49*64*16, per block qkv 3*T*64*64, out T*64*64, attention 2*T*T*64,
    MLP 2*T*64*128; head 64*10."""
    macs = layer_macs(build_model("vit_tiny", input_shape=(1, 28, 28)), (1, 1, 28, 28))
    assert macs["blocks.2.attn.attention"] == 2 * 50 * 50 * 64
    assert sum(macs.values()) == 49 * 64 * 16 + 4 * (4 * 50 * 64 * 64 + 2 * 50 * 50 * 64 + 2 * 50 * 64 * 128) + 640


def fashion_shaped(n: int, generator: torch.Generator, templates: torch.Tensor):
    """uint8-like 1x28x28 images: a class's coarse 7x7 layout, upsampled, plus pixel noise, then normalized."""
    y = (torch.arange(n) % 10)[torch.randperm(n, generator=generator)]
    img = nn.functional.interpolate(templates[y], size=28, mode="nearest")
    img = (img * 200 + torch.rand(n, 1, 28, 28, generator=generator) * 55).round().clamp(0, 255)
    return (img / 255 - 0.5) / 0.3, y


def test_learns_above_chance():
    g = torch.Generator().manual_seed(0)
    templates = torch.rand(10, 1, 7, 7, generator=g)
    x_train, y_train = fashion_shaped(400, g, templates)
    x_test, y_test = fashion_shaped(200, g, templates)
    torch.manual_seed(0)
    model = build_model("vit_tiny", input_shape=(1, 28, 28))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(4):
        model.train()
        for i in range(0, len(x_train), 32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[i:i + 32]), y_train[i:i + 32]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.3  # chance is 0.1
