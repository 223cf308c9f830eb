"""Small shared building blocks: sinusoidal positions and a transformer-encoder factory."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(n: int, d: int, device=None) -> torch.Tensor:
    """(n, d) fixed sin/cos position table (Vaswani et al.)."""
    pos = torch.arange(n, dtype=torch.float32, device=device)[:, None]          # (n, 1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


def encoder(d_model: int, n_heads: int, n_layers: int, ffn: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model, n_heads, ffn, dropout, batch_first=True)
    # enable_nested_tensor=False keeps padded outputs defined (no fast-path zeros) and training == eval maths
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
