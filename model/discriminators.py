"""Discriminators: a temporal PatchGAN over blendshape sequences and a lip-sync discriminator.

- :class:`TemporalDiscriminator` (D_tem): 1-D convolutions over time on (B, L, 52) sequences,
  one logit per temporal patch, trained jointly with the generator by the hinge GAN loss.
- :class:`SyncDiscriminator` (D_sync): embeds a window of mouth/jaw blendshapes and the matching
  window of audio features; logit = scale * cos(embeddings) + bias, i.e. the probability that the
  two are in sync. Pre-trained with BCE on in-sync vs time-shifted pairs (``talkclip train-sync``)
  and frozen while the generator trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkclip.schemas import BLENDSHAPE_NAMES, NUM_BLENDSHAPES

from .config import ModelConfig

# Channels that move with speech: jaw, mouth, cheek puff (28 of the 52).
MOUTH_CHANNELS: tuple[int, ...] = tuple(i for i, n in enumerate(BLENDSHAPE_NAMES)
                                        if n.startswith(("jaw", "mouth")) or n == "cheekPuff")


class Discriminator(nn.Module):
    """Base: a discriminator can be frozen (no grads, eval mode) as a whole."""

    def freeze(self) -> "Discriminator":
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()
        return self

    def unfreeze(self) -> "Discriminator":
        for p in self.parameters():
            p.requires_grad_(True)
        self.train()
        return self


class TemporalDiscriminator(Discriminator):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.tem_disc_channels
        self.net = nn.Sequential(
            nn.Conv1d(NUM_BLENDSHAPES, c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv1d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv1d(2 * c, 2 * c, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv1d(2 * c, 1, 3, 1, 1),
        )

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        # seq: (B, L, 52) -> (B, L // 4) patch logits
        return self.net(seq.transpose(1, 2)).squeeze(1)


class SyncDiscriminator(Discriminator):
    def __init__(self, cfg: ModelConfig, n_mels: int):
        super().__init__()
        self.K = cfg.sync_window
        d, c = cfg.sync_dim, cfg.sync_dim
        self.register_buffer("channels", torch.tensor(MOUTH_CHANNELS, dtype=torch.long), persistent=False)
        nch = len(MOUTH_CHANNELS)

        def tower(cin: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv1d(cin, c, 3, 1, 1), nn.LeakyReLU(0.2),
                nn.Conv1d(c, c, 3, 1, 1), nn.LeakyReLU(0.2),
                nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(c, d))

        self.motion = tower(nch)
        self.audio = tower(n_mels)
        self.scale = nn.Parameter(torch.tensor(5.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, bs_win: torch.Tensor, audio_win: torch.Tensor) -> torch.Tensor:
        # bs_win: (N, K, 52) blendshapes; audio_win: (N, K, n_mels) -> (N,) sync logits
        assert bs_win.shape[1] == audio_win.shape[1], "motion and audio windows differ in length"
        m = self.motion(bs_win[..., self.channels].transpose(1, 2))   # (N, d)
        a = self.audio(audio_win.transpose(1, 2))                     # (N, d)
        return self.scale * F.cosine_similarity(m, a, dim=-1) + self.bias

    def sequence_logits(self, seq: torch.Tensor, audio: torch.Tensor, stride: int | None = None) -> torch.Tensor:
        """Logits for windows of K frames slid over aligned (B, L, 52) and (B, L, n_mels) -> (B, n_win)."""
        B, L, _ = seq.shape
        K = self.K
        stride = stride or max(1, K // 2)
        starts = torch.arange(0, L - K + 1, stride, device=seq.device)              # (n,)
        idx = starts[:, None] + torch.arange(K, device=seq.device)[None]            # (n, K)
        s = seq[:, idx]                                                              # (B, n, K, 52)
        a = audio[:, idx]                                                            # (B, n, K, n_mels)
        n = idx.shape[0]
        return self(s.reshape(B * n, K, -1), a.reshape(B * n, K, -1)).view(B, n)


__all__ = ["Discriminator", "TemporalDiscriminator", "SyncDiscriminator", "MOUTH_CHANNELS"]
