"""Facial animation decoder E_d: style-conditioned transformer over each audio window.

For every frame, the 2w+1 content tokens of its audio window (plus the style code added to every
token) attend to themselves and, through cross-attention, to ``style_tokens`` memory tokens made
from the style code. The centre token is mapped to the 52 blendshapes (sigmoid, in [0, 1]).
A whole sequence is processed at once: windows are unfolded and flattened into the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from talkclip.schemas import NUM_BLENDSHAPES

from .config import ModelConfig


class StyleDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.n_tok = cfg.style_tokens
        self.style_add = nn.Linear(cfg.style_dim, d)
        self.style_mem = nn.Linear(cfg.style_dim, d * cfg.style_tokens)
        layer = nn.TransformerDecoderLayer(d, cfg.n_heads, cfg.ffn, cfg.dropout, batch_first=True)
        self.dec = nn.TransformerDecoder(layer, cfg.n_layers)
        self.head = nn.Linear(d, NUM_BLENDSHAPES)
        self.centre = cfg.window

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # content: (N, K, d) encoded windows; style: (N, style_dim) -> (N, 52) in [0, 1]
        N, K, d = content.shape
        assert style.shape[0] == N, f"style batch {style.shape[0]} != windows {N}"
        tgt = content + self.style_add(style)[:, None]               # (N, K, d)
        mem = self.style_mem(style).view(N, self.n_tok, d)           # (N, n_tok, d)
        if self.training or self.dec.norm is not None or self.dec.layers[-1].norm_first:
            h = self.dec(tgt, mem)[:, self.centre]                   # (N, d)
        else:
            h = self._centre_of_last_layer(tgt, mem)                 # (N, d)
        with torch.autocast(h.device.type, enabled=False):          # the curves in fp32 under any autocast
            return torch.sigmoid(self.head(h.float()))               # (N, 52)

    def _centre_of_last_layer(self, tgt: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        """Inference: every layer but the last on all K tokens, the last on the centre token only
        (the head reads nothing else, and there the other tokens serve only as keys and values:
        the same result, with a fifth of the last layer's work). tgt (N, K, d), mem (N, n_tok, d)
        -> (N, d). The post-norm nn.TransformerDecoderLayer written out, dropout off."""
        *first, last = self.dec.layers
        for layer in first:
            tgt = layer(tgt, mem)                                    # (N, K, d)
        q = tgt[:, self.centre:self.centre + 1]                      # (N, 1, d)
        x = last.norm1(q + last.self_attn(q, tgt, tgt, need_weights=False)[0])
        x = last.norm2(x + last.multihead_attn(x, mem, mem, need_weights=False)[0])
        x = last.norm3(x + last.linear2(last.activation(last.linear1(x))))
        return x[:, 0]
