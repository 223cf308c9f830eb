"""SyncNet (Chung & Zisserman 2016, "Out of time: automated lip sync in the wild") for scoring
lip sync: the network, its MFCC front end, the offset search and the confidence.

Written for talkclip from the description of the public ``joonson/syncnet_python`` release
(SyncNetModel.py / SyncNetInstance.py), so that the released ``syncnet_v2.model`` weights can be
used once converted to safetensors. **Those weights could not be obtained while this was
written**: the layer shapes and key names follow the release, the tests run a random-init net,
and the numbers this module gives with the real weights were never compared with
syncnet_python's own output. Treat them as unverified until someone does that comparison.

Inputs (as syncnet_python feeds them)
-------------------------------------
- audio: MFCC of 16 kHz int16-scaled speech (see :func:`mfcc`), 13 coefficients x 20 steps
  (0.2 s at 100 steps/s) per window: ``(N, 1, 13, 20)``.
- video: 5 consecutive 25 fps frames of a 224 x 224 face crop, **BGR** channel order (OpenCV's),
  raw 0..255 values (no normalisation): ``(N, 3, 5, 224, 224)`` float.
- video window ``v`` (frames v..v+4) pairs with MFCC steps ``4v .. 4v+19`` (4 MFCC steps per
  video frame at 25 fps).
Both towers end in 512 features, then two fully connected layers give a 1024-d embedding.

Weights file (``--syncnet PATH.safetensors``)
---------------------------------------------
Only safetensors is read (never pickle). Convert the released ``syncnet_v2.model`` yourself,
keeping its state-dict key names, e.g. in an environment where you trust that file::

    sd = torch.load("syncnet_v2.model", map_location="cpu", weights_only=True)
    safetensors.torch.save_file({k: v.float().contiguous() for k, v in sd.items()}, "syncnet_v2.safetensors")

Expected keys (``<tower>.<index>.<param>``; indices are positions in each ``nn.Sequential``,
ReLU / pooling positions hold no parameters). Every BatchNorm has ``weight``, ``bias``,
``running_mean``, ``running_var`` of shape (C,) and optionally ``num_batches_tracked`` (unused
at inference, so it may be absent, as in files saved by old PyTorch versions):

=================  =====  ==============================  ==========================
key prefix         kind   weight shape                    notes
=================  =====  ==============================  ==========================
netcnnaud.0        conv   (64, 1, 3, 3)                   + bias (64,); BN at .1
netcnnaud.4        conv   (192, 64, 3, 3)                 BN at .5
netcnnaud.8        conv   (384, 192, 3, 3)                BN at .9
netcnnaud.11       conv   (256, 384, 3, 3)                BN at .12
netcnnaud.14       conv   (256, 256, 3, 3)                BN at .15
netcnnaud.18       conv   (512, 256, 5, 4)                BN at .19
netfcaud.0         fc     (512, 512)                      BatchNorm1d at .1
netfcaud.3         fc     (1024, 512)                     embedding size = rows
netcnnlip.0        conv3d (96, 3, 5, 7, 7)                BN3d at .1
netcnnlip.4        conv3d (256, 96, 1, 5, 5)              BN3d at .5
netcnnlip.8        conv3d (256, 256, 1, 3, 3)             BN3d at .9
netcnnlip.11       conv3d (256, 256, 1, 3, 3)             BN3d at .12
netcnnlip.14       conv3d (256, 256, 1, 3, 3)             BN3d at .15
netcnnlip.18       conv3d (512, 256, 1, 6, 6)             BN3d at .19
netfclip.0 / .3    fc     (512, 512) / (1024, 512)        BatchNorm1d at .1
=================  =====  ==============================  ==========================

Every conv and fc layer has a bias. :func:`expected_keys` lists all names and shapes.

Offset and confidence (as SyncNetInstance.evaluate computes them)
-----------------------------------------------------------------
For each video window i and each shift c in 0..2*vshift, the Euclidean distance between the
video embedding i and the audio embedding ``i + c - vshift`` (an all-zero vector where that
index falls outside the clip). Averaging over windows gives one mean distance per shift;
``offset = vshift - argmin``, ``confidence = median - min`` of those means (median = the
middle value; 31 shifts for vshift 15), ``min_dist`` = the minimum. A positive offset means
the audio leads: the audio that matches video frame i sits at i - offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from talkclip import CheckpointError, InputError

SAMPLE_RATE = 16_000
VIDEO_FPS = 25.0
CROP_SIZE = 224
WINDOW_FRAMES = 5           # video frames per window
MFCC_STEPS = 20             # MFCC steps per window (0.2 s)
MFCC_PER_FRAME = 4          # MFCC steps per video frame (100 / 25)
EMBED_DIM = 1024


# ---------------------------------------------------------------- network

def _bn_relu(kind: str, ch: int) -> list[nn.Module]:
    norm = {"1d": nn.BatchNorm1d, "2d": nn.BatchNorm2d, "3d": nn.BatchNorm3d}[kind]
    return [norm(ch), nn.ReLU()]


def _audio_tower() -> nn.Sequential:
    """(N, 1, 13, 20) MFCC window -> (N, 512, 1, 1). Indices match syncnet_python's netcnnaud."""
    layers: list[nn.Module] = []
    layers += [nn.Conv2d(1, 64, 3, padding=1), *_bn_relu("2d", 64), nn.MaxPool2d(1, 1)]          # 0-3: 13x20
    layers += [nn.Conv2d(64, 192, 3, padding=1), *_bn_relu("2d", 192),
               nn.MaxPool2d(3, stride=(1, 2))]                                                 # 4-7: 11x9
    layers += [nn.Conv2d(192, 384, 3, padding=1), *_bn_relu("2d", 384)]                        # 8-10
    layers += [nn.Conv2d(384, 256, 3, padding=1), *_bn_relu("2d", 256)]                        # 11-13
    layers += [nn.Conv2d(256, 256, 3, padding=1), *_bn_relu("2d", 256), nn.MaxPool2d(3, 2)]    # 14-17: 5x4
    layers += [nn.Conv2d(256, 512, (5, 4)), *_bn_relu("2d", 512)]                              # 18-20: 1x1
    return nn.Sequential(*layers)


def _lip_tower() -> nn.Sequential:
    """(N, 3, 5, 224, 224) BGR clip -> (N, 512, 1, 1, 1). Indices match syncnet_python's netcnnlip."""
    layers: list[nn.Module] = []
    layers += [nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), *_bn_relu("3d", 96),
               nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2))]                                       # 0-3: 1x54x54
    layers += [nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), *_bn_relu("3d", 256),
               nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))]                    # 4-7: 13x13
    for _ in range(3):                                                                         # 8-16
        layers += [nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu("3d", 256)]
    layers += [nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2))]                                       # 17: 6x6
    layers += [nn.Conv3d(256, 512, (1, 6, 6)), *_bn_relu("3d", 512)]                           # 18-20: 1x1
    return nn.Sequential(*layers)


def _head(dim: int) -> nn.Sequential:
    """(N, 512) -> (N, dim)."""
    return nn.Sequential(nn.Linear(512, 512), *_bn_relu("1d", 512), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """Two-tower audio/lip embedding net; submodule names and Sequential indices follow
    syncnet_python's ``S`` so its state dict keys load unchanged (see module docstring)."""

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.netcnnaud = _audio_tower()
        self.netfcaud = _head(embed_dim)
        self.netcnnlip = _lip_tower()
        self.netfclip = _head(embed_dim)

    def embed_audio(self, mfcc_windows: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) -> (N, embed_dim)."""
        assert mfcc_windows.shape[1:] == (1, 13, MFCC_STEPS), f"audio windows must be (N, 1, 13, 20), got {tuple(mfcc_windows.shape)}"
        return self.netfcaud(self.netcnnaud(mfcc_windows).flatten(1))

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR 0..255 -> (N, embed_dim)."""
        assert clips.shape[1:] == (3, WINDOW_FRAMES, CROP_SIZE, CROP_SIZE), \
            f"video clips must be (N, 3, 5, 224, 224), got {tuple(clips.shape)}"
        return self.netfclip(self.netcnnlip(clips).flatten(1))

    def forward(self, mfcc_windows: torch.Tensor, clips: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict]:
        """Embeddings of paired windows: ({"audio": (N, D), "video": (N, D), "dist": (N,)}, {} losses)."""
        a, v = self.embed_audio(mfcc_windows), self.embed_video(clips)
        return {"audio": a, "video": v, "dist": pair_distance(v, a)}, {}


def expected_keys(embed_dim: int = EMBED_DIM) -> dict[str, tuple[int, ...]]:
    """Every state-dict key a SyncNet weights file must hold -> its shape (num_batches_tracked
    entries excluded: they are optional)."""
    return {k: tuple(v.shape) for k, v in SyncNet(embed_dim).state_dict().items()
            if not k.endswith("num_batches_tracked")}


def _describe(path: Path, head: bytes) -> str | None:
    """A reason why ``head`` (the first bytes of the file) is not safetensors, or None."""
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (a torch.save checkpoint?)"
    if head[:1] == b"\x80" or path.suffix.lower() in (".model", ".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"):
        return "a pickle/torch checkpoint"
    return None


def load_syncnet(path: str | Path, device: str = "cpu") -> SyncNet:
    """Load SyncNet weights from a safetensors file with syncnet_python's key names.

    Raises CheckpointError (one line) for a missing file, a non-safetensors file, or the first
    missing / unexpected key or wrong shape.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such SyncNet weights file: {path}")
    hint = ("SyncNet weights must be a safetensors conversion of syncnet_v2.model with the original "
            "key names (see talkclip.model.syncnet)")
    with open(path, "rb") as f:
        head = f.read(16)
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    except Exception:
        what = _describe(path, head) or "not a readable safetensors file"
        raise CheckpointError(f"{path} is {what}: {hint}") from None
    fc = tensors.get("netfcaud.3.weight")
    dim = int(fc.shape[0]) if fc is not None and fc.ndim == 2 else EMBED_DIM
    want = expected_keys(dim)
    for k, shape in want.items():
        if k not in tensors:
            raise CheckpointError(f"{path}: missing key {k} (shape {shape}): {hint}")
        if tuple(tensors[k].shape) != shape:
            raise CheckpointError(f"{path}: key {k} has shape {tuple(tensors[k].shape)}, expected {shape}")
    for k in tensors:
        if k not in want and not k.endswith("num_batches_tracked"):
            raise CheckpointError(f"{path}: unexpected key {k}: {hint}")
    bad = [k for k, t in tensors.items() if k in want and not t.is_floating_point()]
    if bad:
        raise CheckpointError(f"{path}: key {bad[0]} is not a floating point tensor")
    model = SyncNet(dim)
    state = model.state_dict()      # absent num_batches_tracked entries keep their initial 0
    state.update({k: t.to(state[k].dtype) for k, t in tensors.items()})
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# ---------------------------------------------------------------- MFCC

def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_filters: int = 26, nfft: int = 512, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_filters, nfft // 2 + 1) triangular filters on FFT bins, edges at bins
    floor((nfft + 1) * f / sr) of mel-equally spaced frequencies 0..sr/2 (python_speech_features)."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_filters + 2)
    edges = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate).astype(np.int64)
    bins = np.arange(nfft // 2 + 1)
    fb = np.zeros((n_filters, len(bins)))
    for j in range(n_filters):
        lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
        up = (bins >= lo) & (bins < mid)
        down = (bins >= mid) & (bins < hi)
        if mid > lo:
            fb[j, up] = (bins[up] - lo) / (mid - lo)
        if hi > mid:
            fb[j, down] = (hi - bins[down]) / (hi - mid)
    return fb


def _dct_ortho(n: int, k: int) -> np.ndarray:
    """(k, n) orthonormal DCT-II rows."""
    idx = np.arange(n)
    m = np.sqrt(2.0 / n) * np.cos(np.pi * np.arange(k)[:, None] * (2 * idx[None, :] + 1) / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m


def mfcc(signal: np.ndarray, sample_rate: int = SAMPLE_RATE, *, n_ceps: int = 13, n_filters: int = 26,
         nfft: int = 512, win_s: float = 0.025, step_s: float = 0.010, preemph: float = 0.97,
         lifter: int = 22) -> np.ndarray:
    """MFCC as ``python_speech_features.mfcc(signal, sample_rate)`` computes it with its defaults:
    (N,) samples -> (F, n_ceps) float64, F = 1 + ceil((N - win) / step) (1 when N <= win).

    Pre-emphasis, rectangular frames zero-padded at the end, power spectrum |rfft|^2 / nfft,
    26 mel filters, log, orthonormal DCT-II, sinusoidal lifter, and coefficient 0 replaced by
    the log frame energy. Zero energies become float64 eps before the log. syncnet_python
    feeds int16-scaled samples (-32768..32767), which only changes coefficient 0.
    """
    x = np.asarray(signal, np.float64).reshape(-1)
    if x.size == 0:
        raise InputError("empty audio: no MFCC")
    win, step = int(round(win_s * sample_rate)), int(round(step_s * sample_rate))
    assert win <= nfft, f"window {win} samples is longer than nfft {nfft}"
    x = np.concatenate([x[:1], x[1:] - preemph * x[:-1]])
    n_frames = 1 if len(x) <= win else 1 + int(np.ceil((len(x) - win) / step))
    x = np.pad(x, (0, (n_frames - 1) * step + win - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::step][:n_frames]    # (F, win)
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft                           # (F, nfft/2+1)
    eps = np.finfo(np.float64).eps
    energy = power.sum(1)
    energy[energy == 0] = eps
    bands = power @ mel_filterbank(n_filters, nfft, sample_rate).T                  # (F, n_filters)
    bands[bands == 0] = eps
    ceps = np.log(bands) @ _dct_ortho(n_filters, n_ceps).T                         # (F, n_ceps)
    ceps *= 1 + (lifter / 2.0) * np.sin(np.pi * np.arange(n_ceps) / lifter)
    ceps[:, 0] = np.log(energy)
    return ceps


def int16_scale(wav: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1] -> float64 values of the int16 samples ffmpeg's pcm_s16le would write."""
    return np.clip(np.round(np.asarray(wav, np.float64) * 32768.0), -32768, 32767)


# ---------------------------------------------------------------- offsets and confidence

def pair_distance(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Euclidean distance along the last dim, with torch's pairwise_distance eps: ||a - b + eps||."""
    return torch.linalg.vector_norm(a - b + eps, dim=-1)


def offset_distances(video_emb: torch.Tensor, audio_emb: torch.Tensor, vshift: int = 15) -> torch.Tensor:
    """(N, D) video and (N, D) audio embeddings -> (N, 2 * vshift + 1) distances, column c =
    video i against audio i + c - vshift (zeros outside 0..N-1, as syncnet_python pads)."""
    assert video_emb.shape == audio_emb.shape and video_emb.ndim == 2, \
        f"need equal (N, D) embeddings, got {tuple(video_emb.shape)} {tuple(audio_emb.shape)}"
    n = video_emb.shape[0]
    padded = torch.nn.functional.pad(audio_emb, (0, 0, vshift, vshift))               # (N + 2v, D)
    idx = torch.arange(n)[:, None] + torch.arange(2 * vshift + 1)[None, :]            # (N, 2v+1)
    return pair_distance(video_emb[:, None, :], padded[idx])


@dataclass
class SyncResult:
    offset: int               # frames at 25 fps; > 0: audio leads the video
    confidence: float         # median - min of the mean distance per shift
    min_dist: float           # the minimum mean distance
    mean_dists: np.ndarray    # (2 * vshift + 1,) mean distance per shift, shift = vshift - index
    windows: int              # 5-frame windows compared


def offset_confidence(dists: torch.Tensor | np.ndarray) -> SyncResult:
    """(N, 2 * vshift + 1) distances -> offset, confidence, min distance (see module docstring)."""
    d = torch.as_tensor(dists, dtype=torch.float64)
    assert d.ndim == 2 and d.shape[1] % 2 == 1 and d.shape[0] > 0, f"need (N, 2v+1) distances, got {tuple(d.shape)}"
    vshift = d.shape[1] // 2
    mean = d.mean(0)                                                                  # (2v+1,)
    low, idx = torch.min(mean, 0)
    median = torch.sort(mean).values[(len(mean) - 1) // 2]                            # lower median, as torch.median
    return SyncResult(int(vshift - idx), float(median - low), float(low), mean.numpy(), int(d.shape[0]))


@torch.inference_mode()
def sync_score(model: SyncNet, crops: np.ndarray, audio: np.ndarray, *, vshift: int = 15,
               batch_size: int = 20, device: str = "cpu") -> SyncResult:
    """SyncNet offset and confidence of one clip.

    crops: (T, 224, 224, 3) uint8 BGR face crops at 25 fps; audio: (N,) float in [-1, 1] at
    16 kHz, starting with the first frame. As syncnet_python: T' = min(T, N // 640) frames
    are used and windows start at 0 .. T' - 6.
    """
    assert crops.ndim == 4 and crops.shape[1:] == (CROP_SIZE, CROP_SIZE, 3), f"crops must be (T, 224, 224, 3), got {crops.shape}"
    feats = torch.from_numpy(mfcc(int16_scale(audio)).T.astype(np.float32))         # (13, F)
    usable = min(len(crops), len(audio) // (SAMPLE_RATE // int(VIDEO_FPS)))
    n_win = usable - WINDOW_FRAMES
    if n_win < 1:
        raise InputError(f"too short for SyncNet: {usable} usable frames at 25 fps (needs >= {WINDOW_FRAMES + 1})")
    model = model.to(device).eval()
    v_emb, a_emb = [], []
    for s in range(0, n_win, batch_size):
        starts = range(s, min(n_win, s + batch_size))
        clip = np.stack([crops[i:i + WINDOW_FRAMES] for i in starts])                 # (B, 5, H, W, 3)
        clip_t = torch.from_numpy(clip).to(device).permute(0, 4, 1, 2, 3).float()    # (B, 3, 5, H, W)
        v_emb.append(model.embed_video(clip_t).cpu())
        aud = torch.stack([feats[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_STEPS] for i in starts])
        a_emb.append(model.embed_audio(aud[:, None].to(device)).cpu())               # (B, D)
    dists = offset_distances(torch.cat(v_emb), torch.cat(a_emb), vshift)
    return offset_confidence(dists)
