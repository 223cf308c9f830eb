"""Losses of TalkCLIP (paper section 4.2).

``ssim_1d``: SSIM along time, per blendshape channel. For each channel of (B, L, 52) sequences,
local means, variances and covariance are taken over sliding windows of ``window`` frames
(uniform weights, stride 1, no padding); the SSIM map (C1 = 0.01^2, C2 = 0.03^2 for the [0, 1]
range of blendshapes) is averaged over windows, channels and the batch. Identical sequences give
1; L_SSIM = 1 - SSIM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    # pred, target: (B, L, C); mask: (B, L) bool True = frame counts
    err = (pred - target).abs().mean(-1)                  # (B, L)
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def ssim_1d(x: torch.Tensor, y: torch.Tensor, window: int = 11, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of (B, L, C) sequences along time, per channel (see module doc)."""
    assert x.shape == y.shape and x.dim() == 3, f"ssim_1d wants equal (B, L, C), got {tuple(x.shape)}, {tuple(y.shape)}"
    assert x.shape[1] >= window, f"sequence of {x.shape[1]} frames is shorter than the SSIM window {window}"
    B, L, C = x.shape
    xt = x.transpose(1, 2).reshape(B * C, 1, L).float()
    yt = y.transpose(1, 2).reshape(B * C, 1, L).float()
    pool = lambda t: F.avg_pool1d(t, window, stride=1)   # noqa: E731  (B*C, 1, L-window+1)
    mx, my = pool(xt), pool(yt)
    vx = pool(xt * xt) - mx * mx
    vy = pool(yt * yt) - my * my
    cxy = pool(xt * yt) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean()


def rec_loss(pred: torch.Tensor, target: torch.Tensor, mu: float = 0.1, window: int = 11,
             mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_rec = mu * L1 + (1 - mu) * (1 - SSIM). Returns (L_rec, L1, 1 - SSIM)."""
    l1 = l1_loss(pred, target, mask)
    lssim = 1.0 - ssim_1d(pred, target, window)
    return mu * l1 + (1.0 - mu) * lssim, l1, lssim


def cos_loss(s_t: torch.Tensor, s_v: torch.Tensor) -> torch.Tensor:
    """L_cos = 1 - cos(s_t, s_v), mean over the batch. s_t, s_v: (B, D)."""
    return (1.0 - F.cosine_similarity(s_t, s_v, dim=-1)).mean()


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.float().mean()


def sync_loss(logits: torch.Tensor) -> torch.Tensor:
    """Generator's L_sync = -log P(sync) over all windows (BCE towards 'in sync')."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def sync_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Discriminator pre-training loss: BCE of sync logits vs 1 (in sync) / 0 (shifted)."""
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
