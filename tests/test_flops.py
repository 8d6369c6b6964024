"""MACs and FLOPs of any classifier, against counts written out by hand."""

import pytest
import torch
from torch import nn

from fggp.models import build_model, flops, layer_macs


def test_linear_over_a_sequence_counts_every_token():
    model = nn.Linear(64, 128)
    assert layer_macs(model, (1, 20, 64)) == {"weight": 20 * 64 * 128}
    assert 20 * 64 * 128 == 163_840
    assert layer_macs(model, (4, 20, 64)) == {"weight": 163_840}  # the batch never enters
    assert layer_macs(model, (1, 3, 5, 64)) == {"weight": 3 * 5 * 64 * 128}


def test_conv1d_conv3d_conv_transpose2d():
    model = nn.Sequential(nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2))
    # (15 + 2 - 3) // 2 + 1 = 8 output positions, each 6 outputs of (4 / 2) * 3 inputs
    assert layer_macs(model, (1, 4, 15)) == {"0.weight": 8 * 6 * 2 * 3}
    model = nn.Conv3d(2, 4, 3)
    # output 3 x 4 x 5 = 60 positions
    assert layer_macs(model, (1, 2, 5, 6, 7)) == {"weight": 3 * 4 * 5 * 4 * 2 * 27}
    model = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    # every one of the 5 x 5 input positions of each of 4 channels scatters a 3x3 kernel to 6 / 2 outputs
    assert layer_macs(model, (2, 4, 5, 5)) == {"weight": 25 * 4 * 3 * 9}
    model = nn.Sequential(nn.ConvTranspose1d(2, 3, 4, stride=3), nn.Conv1d(3, 5, 2, dilation=2))
    # ConvTranspose1d: 7 inputs -> (7 - 1) * 3 + 4 = 22 outputs; Conv1d: 22 - 2 = 20 outputs
    assert layer_macs(model, (1, 2, 7)) == {"0.weight": 7 * 2 * 3 * 4, "1.weight": 20 * 5 * 3 * 2}


class SequenceClassifier(nn.Module):
    """Token ids -> embedding -> 2 post-norm encoder layers (batch_first) -> mean -> linear head."""

    def __init__(self, mask: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 64)
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=mask)
        self.head = nn.Linear(64, 5)
        self.mask = mask

    def forward(self, ids):
        padding = (ids == 0) if self.mask else None
        padding = None if padding is None else padding.logical_and(torch.arange(ids.shape[1]) > 0)
        return self.head(self.encoder(self.embed(ids), src_key_padding_mask=padding).mean(1))


# L = S = 20 tokens, E = 64, feed-forward 128, head 64 -> 5.
SEQUENCE_MACS = {}
for i in range(2):
    SEQUENCE_MACS |= {
        f"encoder.layers.{i}.self_attn.in_proj_weight": 20 * 64 * 64 * 3,  # q, k, v
        f"encoder.layers.{i}.self_attn.out_proj.weight": 20 * 64 * 64,
        f"encoder.layers.{i}.self_attn.attention": 2 * 20 * 20 * 64,  # QK^T and AV
        f"encoder.layers.{i}.linear1.weight": 20 * 64 * 128,
        f"encoder.layers.{i}.linear2.weight": 20 * 128 * 64,
    }
SEQUENCE_MACS["head.weight"] = 64 * 5


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_sequence_model_from_token_ids(mode):
    model = SequenceClassifier()
    model.train(mode == "train")
    assert layer_macs(model, (1, 20)) == SEQUENCE_MACS  # long zeros: the model starts with an embedding
    ids = torch.randint(1, 100, (1, 20))
    assert layer_macs(model, (1, 20), example=ids) == SEQUENCE_MACS
    assert layer_macs(model, (1, 20), example=ids[0]) == SEQUENCE_MACS  # one sample without its batch dim
    assert layer_macs(model, (1, 20), example=ids.repeat(3, 1)) == SEQUENCE_MACS
    total = 2 * (2 * (4 * 20 * 64 * 64 + 2 * 20 * 20 * 64 + 2 * 20 * 64 * 128) + 320)
    assert sum(SEQUENCE_MACS.values()) * 2 == total == 2_826_880
    assert flops(model, input_size=(1, 20)) == total
    assert model.training == (mode == "train")


def test_the_fused_fast_path_is_not_taken_and_is_restored():
    """In eval mode without grad, PyTorch runs an encoder layer in one fused kernel that calls none of its
    modules (and a padded batch as a nested tensor); the count must still see every one of them."""
    model = SequenceClassifier(mask=True).eval()
    before = torch.backends.mha.get_fastpath_enabled()
    with torch.no_grad():
        ids = torch.randint(1, 100, (1, 20))
        ids[0, 15:] = 0  # padding, which would send the fast path to nested tensors
        assert layer_macs(model, (1, 20), example=ids) == SEQUENCE_MACS
    assert torch.backends.mha.get_fastpath_enabled() == before
    assert all(not m._forward_hooks for m in model.modules())
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        layer_macs(model, (1, 20))
        assert torch.backends.mha.get_fastpath_enabled() is False
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def test_ids_detected_when_the_embedding_is_not_registered_first():
    class HeadFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(16, 3)
            self.embed = nn.Embedding(50, 16)

        def forward(self, ids):
            return self.head(self.embed(ids).mean(1))

    assert layer_macs(HeadFirst(), (1, 12)) == {"head.weight": 16 * 3}


class CrossAttention(nn.Module):
    """Queries of the input ([N, L, E], as a loader batches) attend to a fixed memory of S = 7 positions with
    other key and value widths; a sequence-first attention gets them transposed."""

    def __init__(self, batch_first: bool = True, **kwargs) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 4, kdim=16, vdim=24, batch_first=batch_first, **kwargs)
        self.batch_first = batch_first
        self.register_buffer("key", torch.randn(7, 16))
        self.register_buffer("value", torch.randn(7, 24))

    def forward(self, q):
        k, v = self.key.expand(q.shape[0], -1, -1), self.value.expand(q.shape[0], -1, -1)
        if not self.batch_first:
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        return self.attn(query=q, key=k, value=v, need_weights=False)[0]  # keywords, as masks often are


def test_attention_with_other_key_and_value_widths():
    # L = 5 queries of E = 32, S = 7 keys of kdim 16 and values of vdim 24: separate projection weights
    expected = {"attn.q_proj_weight": 5 * 32 * 32, "attn.k_proj_weight": 7 * 16 * 32,
                "attn.v_proj_weight": 7 * 24 * 32, "attn.out_proj.weight": 5 * 32 * 32,
                "attn.attention": 2 * 5 * 7 * 32}
    assert layer_macs(CrossAttention(), (1, 5, 32)) == expected
    assert layer_macs(CrossAttention(), (3, 5, 32)) == expected
    assert layer_macs(CrossAttention(batch_first=False), (1, 5, 32)) == expected  # [L, N, E] inside
    assert layer_macs(CrossAttention(batch_first=False), (1, 5, 32), example=torch.randn(2, 5, 32)) == expected
    # a learned bias key and a zero key make 9 keys to attend to; the projections still see 7
    extra = layer_macs(CrossAttention(add_bias_kv=True, add_zero_attn=True), (1, 5, 32))
    assert extra == expected | {"attn.attention": 2 * 5 * 9 * 32}


def test_densities_scale_only_weight_keys():
    model = SequenceClassifier()
    attention = sum(n for k, n in SEQUENCE_MACS.items() if k.endswith(".attention"))
    dense = flops(model, input_size=(1, 20))
    everything = {k: 0.0 for k in SEQUENCE_MACS}  # "encoder.layers.0.self_attn.attention" too: ignored
    assert flops(model, everything, input_size=(1, 20)) == 2 * attention == 2 * 2 * 51_200
    half = {k: 0.5 for k in SEQUENCE_MACS if not k.endswith(".attention")}
    assert flops(model, half, input_size=(1, 20)) == round(2 * attention + (dense - 2 * attention) / 2)
    assert flops(model, {"head.weight": None, "not.a.layer": 0.0}, input_size=(1, 20)) == dense


def test_vit_tiny_total_by_formula():
    """ViT: T = tokens + class token, E = 64, MLP 128, depth 4: per block 4*T*E^2 (q, k, v, out)
    + 2*T^2*E (attention) + 2*T*E*128 (MLP); the patch conv (T-1)*E*C*16, the head E*10."""
    def total(c, t):
        return 2 * ((t - 1) * 64 * c * 16 + 4 * (4 * t * 64 * 64 + 2 * t * t * 64 + 2 * t * 64 * 128) + 64 * 10)

    small = build_model("vit_tiny", input_shape=(1, 28, 28))
    assert flops(small, input_size=(1, 1, 28, 28)) == total(1, 50) == 15_768_832
    assert flops(build_model("vit_tiny"), input_size=(1, 3, 32, 32)) == total(3, 65)
    macs = layer_macs(small, (1, 1, 28, 28))
    weights = dict(small.named_parameters())
    assert {k for k in macs if k not in weights} == {f"blocks.{i}.attn.attention" for i in range(4)}
    assert flops(small, {k: 0.0 for k in weights}, input_size=(1, 1, 28, 28)) == 2 * 4 * 2 * 50 * 50 * 64


def test_module_called_twice_is_counted_twice_and_shared_weights_are_scaled():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.out = nn.Linear(8, 2)
            self.tied = nn.Linear(8, 2)
            self.tied.weight = self.out.weight  # one parameter, two names

        def forward(self, x):
            return self.out(self.fc(self.fc(x))) + self.tied(x)

    model = Twice()
    assert layer_macs(model, (1, 8)) == {"fc.weight": 2 * 64, "out.weight": 16, "tied.weight": 16}
    assert flops(model, {"tied.weight": 0.0}, input_size=(1, 8)) == 2 * (128 + 16)


def test_float_example_takes_the_models_dtype_and_modes_are_restored():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 26 * 26, 3)).double()
    model.train()
    model[1].eval()
    example = torch.rand(1, 28, 28)  # float32, no batch dimension
    macs = layer_macs(model, (1, 1, 28, 28), example=example)
    assert macs == {"0.weight": 26 * 26 * 2 * 9, "3.weight": 2 * 26 * 26 * 3}
    assert model.training and not model[1].training and model[0].training
    assert model[1].num_batches_tracked == 0  # counted in eval mode: BatchNorm statistics untouched
