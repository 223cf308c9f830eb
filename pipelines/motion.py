"""Speech -> blendshape curves, incrementally: the one motion path of ``talkclip generate``.

:class:`MotionStream` turns audio samples (any chunking) into the final (T, 52) curves that
``generate`` renders: log-mel features on the video frame grid -> ``model.generate`` (with the
neutral-style mix of ``intensity``) -> the silence gate -> temporal smoothing. Every stage reads
a bounded window of its input (the decoder ``w`` frames each side, the gate 3 frames, the
smoothing ``ceil(3 sigma)``), so each is run by a :class:`Windowed` stage: rows are emitted once
their right-hand context has arrived, computed by the same whole-array function on a window
that starts ``context`` rows earlier, and the rows next to a window's cut are thrown away.
Pushing the whole audio at once with ``final=True`` therefore runs each function on the whole
array: that *is* the offline result, and any other chunking reproduces it (to float rounding).

Exactness of the features: a window of audio starts and ends on a multiple of ``period`` video
frames, where both the samples and the 10 ms mel hops per ``period`` frames are whole numbers
(1 frame at 25 fps, 3 at 30 fps with 16 kHz audio). The offline features pool ``n_mel`` mel
frames onto T video frames; that grid equals the streamed one when T is a multiple of
``period`` (always at 25 fps; at 30 fps otherwise a pooling edge may move by one 10 ms mel frame).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

import numpy as np

from talkclip import InputError
from talkclip.schemas import BLENDSHAPE_NAMES, NUM_BLENDSHAPES

SILENCE_DBFS = -45.0
MOUTH_OPENING = ("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
                 "mouthUpperUpRight", "mouthFunnel", "mouthStretchLeft", "mouthStretchRight")
GATE_SIGMA = 1.0      # frames: the gate's soft edges


# ---------------------------------------------------------------- whole-array curve functions

def smooth_curves(bs: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time of (T, C) curves, edges reflected; sigma in frames."""
    if sigma <= 0 or bs.shape[0] < 2:
        return bs
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(bs, ((r, r), (0, 0)), mode="reflect" if bs.shape[0] > r else "edge")
    out = np.stack([np.convolve(pad[:, c], k, mode="valid") for c in range(bs.shape[1])], 1)
    return out.astype(bs.dtype)


def frame_rms_dbfs(wav: np.ndarray, sample_rate: int, fps: float, n_frames: int, first: int = 0,
                   offset: int = 0) -> np.ndarray:
    """(n_frames,) RMS level in dBFS of the audio under video frames first .. first+n_frames-1;
    ``wav`` holds the samples from absolute index ``offset`` on."""
    hop = sample_rate / fps
    out = np.full(n_frames, -120.0, dtype=np.float32)
    for j in range(n_frames):
        i = first + j
        seg = wav[max(0, int(i * hop) - offset):max(0, int((i + 1) * hop) - offset)]
        if len(seg):
            out[j] = 20 * np.log10(max(float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))), 1e-6))
    return out


def silence_gate(bs: np.ndarray, dbfs: np.ndarray, threshold: float = SILENCE_DBFS) -> tuple[np.ndarray, int]:
    """Close the mouth on silent frames: (T, 52) -> (T, 52), number of silent frames."""
    silent = (dbfs < threshold).astype(np.float32)
    # soften the edges over ~2 frames so the mouth does not snap shut
    w = np.clip(smooth_curves(silent[:, None], GATE_SIGMA)[:, 0] * 1.5, 0, 1) * silent.clip(0.5, 1)
    out = bs.copy()
    idx = [BLENDSHAPE_NAMES.index(n) for n in MOUTH_OPENING]
    out[:, idx] *= (1 - w)[:, None]
    return out, int(silent.sum())


def mix_intensity(styled: np.ndarray, neutral: np.ndarray | None, intensity: float) -> np.ndarray:
    """``neutral + intensity * (styled - neutral)`` clipped to [0, 1] (styled as is at intensity 1)."""
    if neutral is None:
        return styled
    return np.clip(neutral + intensity * (styled - neutral), 0.0, 1.0)


# ---------------------------------------------------------------- incremental machinery

class Windowed:
    """Runs ``fn(window, start, stop) -> rows [start, stop) of window`` over a growing sequence.

    ``fn`` must be a function of the whole array whose row t depends on rows t - context ..
    t + context only (edges handled however ``fn`` likes: at the sequence's true ends the window
    ends there too). ``push(rows, final)`` returns the rows that are now final, in order."""

    def __init__(self, fn: Callable[[np.ndarray, int, int], np.ndarray], context: int):
        self.fn, self.context = fn, int(context)
        self.buf: np.ndarray | None = None   # rows base .. base + len(buf)
        self.base = 0
        self.done = 0                        # rows emitted so far

    def push(self, rows: np.ndarray, final: bool = False) -> np.ndarray | None:
        self.buf = rows if self.buf is None else np.concatenate([self.buf, rows], 0)
        total = self.base + len(self.buf)
        stop = total if final else total - self.context
        if stop <= self.done:
            return None
        lo = max(0, self.done - self.context)
        out = self.fn(self.buf[lo - self.base:], self.done - lo, stop - lo)
        self.done = stop
        keep = max(0, self.done - self.context)
        self.buf, self.base = self.buf[keep - self.base:], keep
        return out


def alignment_period(sample_rate: int, hop: int, fps: float) -> int:
    """Smallest number of video frames spanning whole samples and whole mel hops."""
    f = Fraction(fps).limit_denominator(1001)
    per_frame, hops = Fraction(sample_rate) / f, Fraction(sample_rate, hop) / f
    p = math.lcm(per_frame.denominator, hops.denominator)
    if p > 600:
        raise InputError(f"frame rate {fps:g} does not fit the audio grid ({sample_rate} Hz, hop {hop})")
    return p


class MotionStream:
    """Audio samples at the model's rate in, final blendshape rows out (see the module docstring).

    ``decode(features (n, n_mels) tensor) -> (n, 52)`` runs the model (``model.generate`` with the
    style, mixed with the neutral style by ``intensity``); ``w`` its context in frames.
    ``phone_ids`` (T,): per-frame phone ids of the whole utterance, for models that read
    phonemes; they travel as one extra last feature column, which ``decode`` splits off."""

    def __init__(self, decode: Callable, audio_cfg, fps: float, w: int, smooth: float,
                 phone_ids: np.ndarray | None = None):
        from talkclip.model.audio import audio_features

        self.cfg, self.fps, self.sr = audio_cfg, float(fps), int(audio_cfg.sample_rate)
        self.period = alignment_period(self.sr, int(audio_cfg.hop_length), self.fps)
        self.step = round(self.period * self.sr / self.fps)                      # samples per period
        need = audio_cfg.n_fft // 2 + audio_cfg.hop_length
        self.margin = self.period * math.ceil(need / self.step)                 # frames, aligned
        self.features = audio_features
        self.phone_ids = phone_ids
        self.width = audio_cfg.n_mels + (phone_ids is not None)   # feature columns (+ phone id)
        self.wav = np.zeros(0, np.float32)
        self.wav0 = 0                    # absolute index of wav[0]
        self.n_samples = 0
        self.n_feat = 0                  # feature rows produced
        self.dbfs = np.zeros(0, np.float32)   # dBFS of frames decoded later (feature rows not yet out of the decoder)
        self.silent = 0
        self.decoder = Windowed(lambda f, a, b: decode(f)[a:b], w)
        r = int(np.ceil(3 * smooth)) if smooth > 0 else 0
        self.post = Windowed(self._post_fn(smooth), int(np.ceil(3 * GATE_SIGMA)) + r)

    @staticmethod
    def _post_fn(smooth: float) -> Callable:
        def post(rows: np.ndarray, a: int, b: int) -> np.ndarray:   # rows (n, 52 + 1): curves, dBFS
            gated, _ = silence_gate(rows[:, :NUM_BLENDSHAPES], rows[:, NUM_BLENDSHAPES])
            return np.clip(smooth_curves(gated, smooth), 0.0, 1.0)[a:b]
        return post

    def n_frames(self) -> int:
        """Frames of the whole audio once it has ended: round(seconds x fps), at least 1."""
        return max(1, int(round(self.n_samples / self.sr * self.fps)))

    def push(self, samples: np.ndarray, final: bool = False) -> np.ndarray:
        """Append mono float32 samples; returns the curves (n, 52) that became final (all the
        rest when ``final``)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.wav = np.concatenate([self.wav, samples])
        self.n_samples += len(samples)
        if final:
            stop = self.n_frames()
        else:   # whole periods whose right margin has arrived
            stop = (self.n_samples // self.step) * self.period - self.margin
        feats = np.zeros((0, self.width), np.float32)
        if stop > self.n_feat:
            feats = self._features(stop, final)
        return self._decode(feats, final)

    def _features(self, stop: int, final: bool) -> np.ndarray:
        """Feature rows n_feat .. stop-1 (n_mels columns) and their frames' dBFS."""
        a0 = max(0, self.n_feat - self.margin)                       # window start, aligned
        s0, s1 = a0 * self.step // self.period, (stop + self.margin) * self.step // self.period
        seg = self.wav[s0 - self.wav0:] if final else self.wav[s0 - self.wav0:s1 - self.wav0]
        n = stop - a0 if final else stop + self.margin - a0
        feats = self.features(seg, self.fps, n, self.cfg)[self.n_feat - a0:stop - a0].numpy()  # (m, n_mels)
        if self.phone_ids is not None:   # (m, n_mels + 1): the phone id of each row, silence past the ids
            ids = np.zeros(len(feats), np.float32)
            known = self.phone_ids[self.n_feat:self.n_feat + len(feats)]
            ids[:len(known)] = known
            feats = np.concatenate([feats, ids[:, None]], 1)
        dbfs = frame_rms_dbfs(self.wav, self.sr, self.fps, stop - self.n_feat, first=self.n_feat, offset=self.wav0)
        self.dbfs = np.concatenate([self.dbfs, dbfs])
        self.n_feat = stop
        keep = max(0, stop - self.margin) * self.step // self.period
        self.wav, self.wav0 = self.wav[keep - self.wav0:], keep
        return feats

    def _decode(self, feats: np.ndarray, final: bool) -> np.ndarray:
        """Decoder, then the gate and smoothing, on the rows that became final."""
        curves = self.decoder.push(feats, final)
        rows = np.zeros((0, NUM_BLENDSHAPES + 1), np.float32)
        if curves is not None and len(curves):
            n = len(curves)
            rows = np.concatenate([np.asarray(curves, np.float32), self.dbfs[:n, None]], 1)
            self.dbfs = self.dbfs[n:]
            self.silent += int((rows[:, NUM_BLENDSHAPES] < SILENCE_DBFS).sum())
        out = self.post.push(rows, final)
        return np.zeros((0, NUM_BLENDSHAPES), np.float32) if out is None else out.astype(np.float32)
