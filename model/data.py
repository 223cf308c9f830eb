"""TA-MEAD reader for training: clips + frames + audio parquet folders -> L-frame samples.

Reads a ``build-ta-mead`` output directory directly (``OUT/clips``, ``OUT/frames``,
``OUT/audio``; see :mod:`talkclip.schemas.tamead`), keeps one split, and holds every kept clip
in memory: blendshapes (T, 52), face mask (T,), captions, and audio features (T, n_mels)
computed once per clip (optionally cached as .npy files under ``cache_dir``).

Decisions (documented behaviour):
- Clips shorter than ``model.seq_len`` frames, clips without captions, clips without any
  tracked face, clips flagged ``av_mismatch`` (their audio does not line up with the video) and
  clips without a frames row or an audio row are skipped; the counts, one per reason, are
  reported in ``TAMEADData.skipped`` (and printed by ``talkclip train``).
- Configs whose ``model.audio_input`` reads phonemes also read the build's phoneme track
  (``OUT/phonemes``, written by ``--phonemes``): each clip gets its (T,) phone ids and each
  window its (L + 2w,) ids (silence beyond the clip); a clip without a track row is skipped
  (``no_phonemes``), a build without the table is refused with a one-line LayoutError.
- Frames without a face are filled by linear interpolation between tracked neighbours (edge
  frames repeat the nearest tracked frame); ``frame_mask`` marks them so L1 ignores them (the
  1-D SSIM runs on the filled sequence).
- Sampling is a pure function of (seed, sample index): sample ``i`` picks its clip, window
  start, caption variant and style crop with ``numpy.random.default_rng([seed, i])``. A resumed
  run, any number of DataLoader workers, and every DDP rank therefore see exactly the samples
  an uninterrupted single-process run would.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from talkclip import InputError, LayoutError
from talkclip.schemas import NUM_BLENDSHAPES
from talkclip.schemas.build import Build, open_build
from talkclip.schemas.files import atomic_write

from .audio import SILENCE, audio_features
from .config import TalkCLIPConfig

TABLE_DIRS = ("clips", "frames", "audio")


def check_layout(data_dir: str | Path) -> Build:
    """The build in ``data_dir`` with its clips, frames and audio tables, or the one
    "not a TA-MEAD build" LayoutError (:func:`talkclip.schemas.build.open_build`)."""
    return open_build(data_dir, TABLE_DIRS)


def fill_missing(bs: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames without a face: (T, 52) -> (T, 52)."""
    if face.all():
        return bs
    t = np.arange(len(bs))
    good = np.flatnonzero(face)
    out = np.empty_like(bs)
    for c in range(bs.shape[1]):
        out[:, c] = np.interp(t, good, bs[good, c])
    return out


@dataclass
class Clip:
    clip_id: str
    fps: float
    captions: list[str]
    blendshapes: np.ndarray   # (T, 52) float32, missing faces interpolated
    face: np.ndarray          # (T,) bool
    audio: np.ndarray         # (T, n_mels) float32 aligned to frames
    phonemes: np.ndarray | None = None  # (T,) int64 phone ids (configs that read phonemes)


@dataclass
class TAMEADData:
    clips: list[Clip]
    skipped: dict[str, int] = field(default_factory=dict)
    split: str = "train"


def _feature_key(cfg: TalkCLIPConfig, fps: float, n: int, n_samples: int) -> str:
    blob = json.dumps([cfg.audio.__dict__, round(float(fps), 4), n, n_samples], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


SKIP_REASONS = ("split", "too_short", "no_captions", "no_face", "av_mismatch", "no_frames", "no_audio", "no_phonemes")


def _select(build: Build, cfg: TalkCLIPConfig, split: str | None, limit: int | None,
            skipped: dict[str, int]) -> dict[str, dict]:
    """clip id -> clips row of the clips worth reading; counts the others in ``skipped``."""
    rows = build.read("clips", ["clip_id", "split", "fps", "frames", "frames_with_face", "av_mismatch",
                                "captions"]).to_pylist()
    meta = {}
    for r in rows:
        if split is not None and r["split"] != split:
            skipped["split"] += 1
        elif not r["captions"]:
            skipped["no_captions"] += 1
        elif r["av_mismatch"]:
            skipped["av_mismatch"] += 1
        elif not r["frames_with_face"]:
            skipped["no_face"] += 1
        elif (r["frames"] or 0) < cfg.model.seq_len:
            skipped["too_short"] += 1
        else:
            meta[r["clip_id"]] = r
    return dict(list(meta.items())[:limit]) if limit is not None else meta


def _read_frames(build: Build, meta: dict[str, dict]) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """clip id -> (blendshapes (T, 52), face (T,), fps) for the clips in ``meta``."""
    frames: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for batch in build.batches("frames", ["clip_id", "fps", "face", "blendshapes"], 64):
        ids = batch.column("clip_id").to_pylist()
        want = [i for i, c in enumerate(ids) if c in meta]
        if not want:
            continue
        fps = batch.column("fps").to_pylist()
        bs_col, face_col = batch.column("blendshapes"), batch.column("face")
        for i in want:
            bs = np.asarray(bs_col[i].values.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
            bs = bs.reshape(-1, NUM_BLENDSHAPES)                                   # (T, 52)
            face = np.asarray(face_col[i].values.to_numpy(zero_copy_only=False), dtype=bool)  # (T,)
            if len(face) != len(bs):
                raise LayoutError(f"frames of {ids[i]}: {len(face)} face flags vs {len(bs)} blendshape rows")
            frames[ids[i]] = (bs, face, float(fps[i] or meta[ids[i]]["fps"]))
    return frames


def _read_phonemes(build: Build, cfg: TalkCLIPConfig, frames: dict) -> dict[str, np.ndarray] | None:
    """clip id -> (T,) int64 phone ids of the clips in ``frames`` (id -> (blendshapes (T, 52), ...))
    from the build's phoneme track, when the config reads phonemes (None when it does not)."""
    if "phoneme" not in cfg.model.audio_input:
        return None
    if not build.files("phonemes"):
        raise LayoutError(f"{build.root} has no phoneme track (phonemes/*.parquet) but model.audio_input is "
                          f"{cfg.model.audio_input!r}: rebuild with --phonemes, or use a 'mel' config")
    out: dict[str, np.ndarray] = {}
    for batch in build.batches("phonemes", ["clip_id", "frame_ids"], 64):
        col = batch.column("frame_ids")
        for i, cid in enumerate(batch.column("clip_id").to_pylist()):
            if cid not in frames or col[i].values is None:
                continue
            ids = np.asarray(col[i].values.to_numpy(zero_copy_only=False), dtype=np.int64)   # (T,)
            if len(ids) != len(frames[cid][0]):
                raise LayoutError(f"phoneme track of {cid}: {len(ids)} frame ids vs {len(frames[cid][0])} frames")
            out[cid] = ids
    return out


def _features(cid: str, samples: np.ndarray, fps: float, n_frames: int, cfg: TalkCLIPConfig,
              cache: Path | None) -> np.ndarray:
    """(T, n_mels) audio features of one clip, from the .npy cache when it holds them."""
    path = cache / f"{cid}.{_feature_key(cfg, fps, n_frames, len(samples))}.npy" if cache else None
    if path is not None and path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pass
    feats = audio_features(samples.astype(np.int16), fps, n_frames, cfg).numpy()
    if path is not None:   # ranks and workers may race: the atomic write keeps the file whole
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.save(f, feats)

        atomic_write(path, save)
    return feats


def load_tamead(data_dir: str | Path, cfg: TalkCLIPConfig, *, split: str | None = "train",
                cache_dir: str | Path | None = None, limit: int | None = None) -> TAMEADData:
    """Read the clips of ``split`` (None = all) with their frames and audio features."""
    build = check_layout(data_dir)
    skipped = {k: 0 for k in SKIP_REASONS}
    meta = _select(build, cfg, split, limit, skipped)
    frames = _read_frames(build, meta)
    skipped["no_frames"] = len(meta) - len(frames)   # kept clips without a frames row
    phones = _read_phonemes(build, cfg, frames)
    cache = Path(cache_dir) if cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    out: list[Clip] = []
    for batch in build.batches("audio", ["clip_id", "sample_rate", "samples"], 16):
        for i, cid in enumerate(batch.column("clip_id").to_pylist()):
            if cid not in frames or cid not in meta:
                continue
            bs, face, fps = frames.pop(cid)
            if not face.any() or len(bs) < cfg.model.seq_len:
                skipped["no_face" if not face.any() else "too_short"] += 1
                continue
            sr = batch.column("sample_rate")[i].as_py()
            if sr != cfg.audio.sample_rate:
                raise LayoutError(f"audio of {cid} is {sr} Hz; the model config expects {cfg.audio.sample_rate} Hz")
            samples = batch.column("samples")[i].values.to_numpy(zero_copy_only=False)
            feats = _features(cid, samples, fps, len(bs), cfg, cache)
            if phones is not None and cid not in phones:
                skipped["no_phonemes"] += 1
                continue
            out.append(Clip(cid, fps, list(meta[cid]["captions"]), fill_missing(bs, face), face,
                            feats.astype(np.float32), None if phones is None else phones[cid]))
    skipped["no_audio"] = len(frames)   # clips with a frames row but no audio row
    out.sort(key=lambda c: c.clip_id)
    if not out:
        raise InputError(f"no usable clips in {data_dir} (split {split}): skipped {skipped}")
    return TAMEADData(out, skipped, split or "all")


class TAMEADWindows(torch.utils.data.Dataset):
    """Sample ``i`` -> one L-frame training window (a pure function of (seed, i))."""

    def __init__(self, data: TAMEADData, cfg: TalkCLIPConfig, seed: int = 0):
        self.clips = data.clips
        self.cfg = cfg
        self.seed = int(seed)
        self.L = cfg.model.seq_len
        self.w = cfg.model.window
        self.S = min(cfg.model.style_frames, max(len(c.blendshapes) for c in self.clips))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, int(i)])
        c = self.clips[int(rng.integers(len(self.clips)))]
        T = len(c.blendshapes)
        s = int(rng.integers(0, T - self.L + 1))
        w, L, S = self.w, self.L, self.S
        # audio with w context frames each side, silence beyond the clip: (L + 2w, n_mels)
        audio = np.full((L + 2 * w, c.audio.shape[1]), SILENCE, dtype=np.float32)
        lo, hi = max(0, s - w), min(T, s + L + w)
        audio[lo - (s - w): hi - (s - w)] = c.audio[lo:hi]
        # style reference: a random crop of up to S frames of the same clip, padded + masked
        n = min(S, T)
        s0 = int(rng.integers(0, T - n + 1))
        style = np.zeros((S, NUM_BLENDSHAPES), dtype=np.float32)
        style[:n] = c.blendshapes[s0:s0 + n]
        smask = np.zeros(S, dtype=bool)
        smask[:n] = c.face[s0:s0 + n]
        if not smask.any():
            smask[:n] = True  # interpolated frames stand in when the crop has no tracked face
        caption = c.captions[int(rng.integers(len(c.captions)))]
        item = {
            "blendshapes": torch.from_numpy(np.array(c.blendshapes[s:s + L])),  # (L, 52)
            "frame_mask": torch.from_numpy(c.face[s:s + L].copy()),                        # (L,)
            "audio": torch.from_numpy(audio),                                              # (L+2w, F)
            "style_bs": torch.from_numpy(style),                                           # (S, 52)
            "style_mask": torch.from_numpy(smask),                                         # (S,)
            "captions": caption,
        }
        if c.phonemes is not None:   # phone ids with w context frames each side, silence (0) beyond
            ph = np.zeros(L + 2 * w, dtype=np.int64)
            ph[lo - (s - w): hi - (s - w)] = c.phonemes[lo:hi]
            item["phonemes"] = torch.from_numpy(ph)                                        # (L+2w,)
        return item


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler: step k (from ``start``) -> sample ids of this rank's share of global batch k."""

    def __init__(self, batch_size: int, start_step: int, stop_step: int, rank: int = 0, world: int = 1):
        self.B, self.start, self.stop, self.rank, self.world = batch_size, start_step, stop_step, rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.start, self.stop):
            base = (k * self.world + self.rank) * self.B
            yield list(range(base, base + self.B))


def make_loader(dataset: TAMEADWindows, batch_size: int, start_step: int, stop_step: int, *,
                workers: int = 0, rank: int = 0, world: int = 1) -> torch.utils.data.DataLoader:
    # A private generator: creating the loader's iterator must not draw from the global torch RNG
    # (it would shift dropout masks after a resume). Sampling itself is seeded per sample.
    gen = torch.Generator().manual_seed(dataset.seed * 1_000_003 + start_step)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=StepBatches(batch_size, start_step, stop_step, rank, world), generator=gen,
        num_workers=workers, persistent_workers=False, pin_memory=False,
        prefetch_factor=4 if workers > 0 else None)
