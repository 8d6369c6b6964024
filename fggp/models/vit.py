"""A vision transformer small enough for 2 CPU cores: ``vit_tiny`` (patch 4, dim 64, depth 4, 4 heads, MLP x2).

It gives the pruning engine a model whose weights are mostly Linear layers in attention and MLP blocks,
where the pruning literature has since moved from CNNs. Layout as in Dosovitskiy et al. 2021: patches
embedded by a Conv2d with kernel = stride = patch, a class token, learned position embeddings, pre-norm
blocks (``x + attn(LN(x))``, ``x + MLP(LN(x))`` with GELU), a final LayerNorm and a Linear head on the
class token.

Exact parameter count (10 classes): 139,018 for 1x28x28 (7x7 patches) and 142,026 for 3x32x32 (8x8).
Per block 33,472: two LayerNorms 2*128, attention in-projection 3*64*64+192 and out-projection
64*64+64, MLP 64*128+128 and 128*64+64; four blocks 133,888. Around them: the patch embedding
C*16*64+64, the class token 64, the position embeddings (tokens+1)*64, the final LayerNorm 128 and the
head 64*classes+classes.
"""

import math

import torch
from torch import Tensor, nn

from .registry import image_shape


class Block(nn.Module):
    """Pre-norm encoder block: residual self-attention, then a residual GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mlp_ratio)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim * mlp_ratio, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32), *,
                 patch: int = 4, dim: int = 64, depth: int = 4, heads: int = 4, mlp_ratio: int = 2) -> None:
        super().__init__()
        c, h, w = input_shape
        if h % patch or w % patch:
            raise ValueError(f"input_shape: {tuple(input_shape)} has a height or width that patch {patch} "
                             "does not divide (e.g. 28x28 or 32x32)")
        self.grid = (h // patch, w // patch)
        self.patch_embed = nn.Conv2d(c, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Truncated normal (std 0.02, cut at 2 std) for tokens, positions and every projection, zero biases:
        small weights keep each residual branch near identity at the start, which transformers train best from.
        The patch embedding reads raw pixels, so it gets LeCun's scale instead (std 1/sqrt(fan_in))."""
        def trunc(t: Tensor, std: float) -> None:
            nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)

        trunc(self.cls_token, 0.02)
        trunc(self.pos_embed, 0.02)
        fan_in = self.patch_embed.weight[0].numel()
        trunc(self.patch_embed.weight, 1 / math.sqrt(fan_in))
        nn.init.zeros_(self.patch_embed.bias)
        for m in self.modules():
            if isinstance(m, nn.Linear):  # MHA's out_proj included
                trunc(m.weight, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.MultiheadAttention):
                trunc(m.in_proj_weight, 0.02)
                nn.init.zeros_(m.in_proj_bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, tokens, dim]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


RECOMMENDED = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "lr_schedule": "cosine",
               "warmup_epochs": 1, "batch_size": 128}


def vit_tiny(num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> ViT:
    return ViT(num_classes, image_shape(input_shape, "vit_tiny"))
