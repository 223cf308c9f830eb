"""Video-to-speaking-style (V2SS) encoder E_v (StyleTalk's): blendshapes -> style code s_v.

Linear 52 -> d, sinusoidal positions, transformer encoder over up to ``style_frames`` frames with
a key padding mask, then self-attention pooling (Linear-Mish-Linear -> 1 score per frame, softmax
over the valid frames) and a linear map to ``style_dim``. Used only in training (and for
``--style-video`` at inference).
"""

from __future__ import annotations

import torch
from torch import nn

from talkclip.schemas import NUM_BLENDSHAPES

from .config import ModelConfig
from .layers import encoder, sinusoidal_positions


class AttentionPool(nn.Module):
    """Self-attention pooling: per-frame score, masked softmax over time, weighted mean."""

    def __init__(self, d: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(d, d), nn.Mish(), nn.Linear(d, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, d); mask: (B, T) bool, True = valid
        s = self.score(x).squeeze(-1)                       # (B, T)
        s = s.masked_fill(~mask, float("-inf"))
        a = torch.softmax(s, dim=1)                         # (B, T), zero at padding
        return torch.einsum("bt,btd->bd", a, x)             # (B, d)


class VideoStyleEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.max_frames = cfg.style_frames
        self.inp = nn.Linear(NUM_BLENDSHAPES, cfg.d_model)
        self.register_buffer("pe", sinusoidal_positions(cfg.style_frames, cfg.d_model), persistent=False)
        self.enc = encoder(cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.ffn, cfg.dropout)
        self.pool = AttentionPool(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.style_dim)

    def forward(self, blendshapes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # blendshapes: (B, T, 52); mask: (B, T) bool True = valid -> (B, style_dim)
        B, T, C = blendshapes.shape
        assert C == NUM_BLENDSHAPES, f"expected {NUM_BLENDSHAPES} blendshape channels, got {C}"
        assert T <= self.max_frames, f"style clip has {T} frames; the encoder reads at most {self.max_frames}"
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=blendshapes.device)
        assert mask.shape == (B, T), f"mask shape {tuple(mask.shape)} != {(B, T)}"
        assert bool(mask.any(dim=1).all()), "every style clip needs at least one valid frame"
        x = self.inp(blendshapes) + self.pe[:T]             # (B, T, d)
        x = self.enc(x, src_key_padding_mask=~mask)         # (B, T, d)
        return self.out(self.pool(x, mask))                 # (B, style_dim)
