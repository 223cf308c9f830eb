"""Audio encoder E_a: log-mel features aligned to video frames, and the content encoder.

``audio_features`` computes an ``n_mels`` log-mel spectrogram with ``torch.stft`` (25 ms window,
10 ms hop by default) and area-averages the mel frames onto the video frame grid, so feature row
``t`` describes the audio during video frame ``t`` (``[t/fps, (t+1)/fps)``). With
``model.audio_input`` = ``"phoneme"`` or ``"mel+phoneme"`` the content encoder also (or only)
reads per-frame phone ids on the same grid (0..n_phonemes-1, 0 = silence), made by
:mod:`talkclip.annotate.phonemes` (the paper's input).

Feature scale: ``(log10(max(mel, 1e-8)) + 4) / 4`` with a fixed floor, so digital silence maps to
the constant :data:`SILENCE` (-1.0) whatever the clip (no per-utterance normalisation).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from talkclip import InputError

from .config import AudioConfig, ModelConfig
from .layers import encoder, sinusoidal_positions

SILENCE = -1.0  # feature value of digital silence


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_mels, n_fft//2+1) triangular HTK-mel filters, area-normalised (Slaney style)."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    pts = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[i] = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return torch.from_numpy(fb.astype(np.float32))


def n_video_frames(n_samples: int, sample_rate: int, fps: float) -> int:
    return int(math.floor(n_samples / sample_rate * fps + 1e-6))


def audio_features(wav: np.ndarray, fps: float, n_frames: int | None, cfg) -> torch.Tensor:
    """Log-mel features on the video frame grid.

    wav: (N,) float32 mono at ``cfg.sample_rate`` (16 kHz); int16 is accepted and scaled.
    fps: video frame rate; n_frames: rows wanted (None = as many whole frames as the audio covers;
    audio shorter than that is padded with silence, longer is cut).
    cfg: a TalkCLIPConfig or AudioConfig. Returns (T, n_mels) float32.
    """
    a: AudioConfig = getattr(cfg, "audio", cfg)
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise InputError(f"audio must be mono (N,), got shape {wav.shape}")
    if wav.dtype == np.int16:
        wav = wav.astype(np.float32) / 32768.0
    wav = np.nan_to_num(wav.astype(np.float32, copy=False))
    if not fps or fps <= 0:
        raise InputError(f"bad video frame rate {fps}")
    T = n_video_frames(len(wav), a.sample_rate, fps) if n_frames is None else int(n_frames)
    if T <= 0:
        return torch.full((0, a.n_mels), SILENCE)
    need = int(math.ceil(T / fps * a.sample_rate))          # samples spanning the T frames
    x = torch.zeros(need)
    m = min(need, len(wav))
    x[:m] = torch.from_numpy(wav[:m])
    n_mel = max(1, int(round(need / a.hop_length)))          # mel frames spanning the same time
    spec = torch.stft(x, a.n_fft, hop_length=a.hop_length, win_length=a.win_length,
                      window=torch.hann_window(a.win_length), center=True, return_complex=True)
    power = spec.abs().pow(2)                                # (F, M), M = need // hop + 1
    mel = mel_filterbank(a.sample_rate, a.n_fft, a.n_mels, a.f_min, a.f_max) @ power  # (n_mels, M)
    mel = mel[:, :n_mel]
    if mel.shape[1] < n_mel:
        mel = torch.nn.functional.pad(mel, (0, n_mel - mel.shape[1]))
    logmel = (torch.log10(mel.clamp_min(1e-8)) + 4.0) / 4.0  # (n_mels, n_mel)
    # area-average mel frames onto the T video frames
    out = torch.nn.functional.adaptive_avg_pool1d(logmel[None], T)[0]  # (n_mels, T)
    return out.T.contiguous().float()                        # (T, n_mels)


def unfold_windows(x: torch.Tensor, w: int, pad_value: float | int) -> torch.Tensor:
    """(B, T, ...) -> (B, T, 2w+1, ...): the window of 2w+1 frames centred on each frame,
    padded with ``pad_value`` beyond the ends. Vectorised (one gather, no loop over frames)."""
    B, T = x.shape[:2]
    pad = torch.full((B, w, *x.shape[2:]), pad_value, dtype=x.dtype, device=x.device)
    xp = torch.cat([pad, x, pad], dim=1)                     # (B, T+2w, ...)
    idx = torch.arange(T, device=x.device)[:, None] + torch.arange(2 * w + 1, device=x.device)[None]  # (T, 2w+1)
    return xp[:, idx]                                        # (B, T, 2w+1, ...)


class ContentEncoder(nn.Module):
    """Encodes each 2w+1-frame audio window: linear in (+ phoneme embedding) + positions + transformer."""

    def __init__(self, cfg: ModelConfig, n_mels: int):
        super().__init__()
        self.kind = cfg.audio_input
        self.K = 2 * cfg.window + 1
        self.mel_in = nn.Linear(n_mels, cfg.d_model) if "mel" in self.kind else None
        self.phone_in = nn.Embedding(cfg.n_phonemes, cfg.d_model) if "phoneme" in self.kind else None
        self.register_buffer("pe", sinusoidal_positions(self.K, cfg.d_model), persistent=False)
        self.enc = encoder(cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.ffn, cfg.dropout)

    def forward(self, mel_win: torch.Tensor | None, phone_win: torch.Tensor | None = None) -> torch.Tensor:
        # mel_win: (N, K, n_mels) float; phone_win: (N, K) long -> (N, K, d)
        parts = []
        if self.mel_in is not None:
            assert mel_win is not None, "this model reads mel features"
            parts.append(self.mel_in(mel_win))
        if self.phone_in is not None:
            if phone_win is None:
                raise InputError("this model needs phoneme ids (model.audio_input includes 'phoneme')")
            parts.append(self.phone_in(phone_win))
        x = sum(parts)
        assert x.shape[1] == self.K, f"window of {x.shape[1]} frames, expected {self.K}"
        return self.enc(x + self.pe)
