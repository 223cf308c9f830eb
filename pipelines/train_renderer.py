"""`talkclip train-renderer`: train the PIRenderer-style neural renderer on TA-MEAD frames.

Data
----
A TA-MEAD build stores no pixels: ``clips.video_path`` points into the MEAD corpus the build
read, relative to its root (``SPK/video/...mp4`` or ``SPK/video.tar::video/...mp4``). The root
is ``--mead`` when given, else the absolute path the build recorded in ``OUT/.work/options.json``.
Frames come from the frames table (per-frame blendshapes, pose, face flag; landmarks when the
build ran with ``--landmarks``).

Face crop: ONE fixed square crop per clip (PIRenderer's convention: head motion inside the clip
stays visible as motion), from the landmarks of the clip's first frame with a face: the stored
landmarks when the build has them, else a re-track of that one decoded frame with an image-mode
FaceTracker (no other frame is tracked again). Side = ``train.crop_scale`` x the face-oval
extent, as the rig renderer crops portraits, resized to the config's ``size``.

All crops (every ``train.frame_stride``-th frame with a face) are decoded once and cached in
memory as uint8: meant for small builds. Budget: size^2 x 3 bytes per frame (196 kB at 256),
so limit large builds with ``max_clips`` / ``frame_stride``. Clips whose media cannot be read
are recorded in the summary's ``failures`` and skipped; none readable -> InputError.

Training
--------
Each sample: a clip, a source frame and a different target frame of it (uniformly among the
cached frames); motion = the target's window of 2k+1 frames (blendshapes + pose relative to
the source + the source's blendshapes, see :func:`talkclip.model.neural_renderer.motion_descriptor`).
Batches are a pure function of (seed, step). Adam; bf16 autocast on CUDA; a CSV loss log
(``OUT/renderer_log.csv``); the checkpoint (``model.safetensors`` + ``config.json`` +
``optimizer.safetensors`` + ``trainer_state.json``) is written at the end and every
``train.checkpoint_every`` steps; ``resume`` continues from it (same seed -> same batches).
The CUDA/bf16 path was not run in the session that wrote this (no GPU).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from talkclip import CheckpointError, InputError, TalkclipError, one_line

LOG_COLUMNS = ("step", "total", "l1", "ssim", "warp", "smooth", "seconds")
LOG_FILE = "renderer_log.csv"
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
SPLITS = ("train", "test", "all")


@dataclass
class ClipFrames:
    """One clip's cached data. ``keep`` indexes the full-rate sequences."""

    clip_id: str
    crops: np.ndarray     # (K, S, S, 3) uint8, the kept frames
    keep: np.ndarray      # (K,) frame indices of the crops
    bs: np.ndarray        # (T, 52) float32, frames without a face filled from the nearest earlier face
    pose: np.ndarray      # (T, 4, 4) float32, filled likewise


@dataclass
class RendererData:
    clips: list[ClipFrames]
    failures: list[tuple[str, str]] = field(default_factory=list)   # (clip_id, one-line reason)
    size: int = 0

    @property
    def frames(self) -> int:
        return sum(len(c.keep) for c in self.clips)


@dataclass
class RendererTrainSummary:
    out_dir: Path
    start_step: int
    steps: int
    clips: int
    frames: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    log_path: Path | None = None


# ---------------------------------------------------------------- data

def _read_table(data_dir: Path, name: str):
    """One table of the build (the one build reader checks the folder and the schema)."""
    from talkclip.schemas.build import open_build

    return open_build(data_dir, (name,)).read(name)


def resolve_mead_root(data_dir: Path, mead: str | Path | None) -> Path:
    """The MEAD root the build's video paths are relative to (see the module docstring)."""
    if mead is not None:
        root = Path(mead)
        if not root.is_dir():
            raise InputError(f"--mead folder not found: {root}")
        return root
    from talkclip.schemas.build import Build

    root = Build(data_dir).source_root()
    if root is None:
        raise InputError(f"{data_dir} does not record its MEAD root (.work/options.json): pass --mead DIR")
    if not root.is_dir():
        raise InputError(f"the build's MEAD root {root} is gone: pass --mead DIR")
    return root


def media_ref(video_path: str, root: Path):
    """A clips-table ``video_path`` ("path" or "archive.tar::member") -> MediaRef under ``root``."""
    from talkclip.pipelines.mead import MediaRef

    if "::" in video_path:
        archive, member = video_path.split("::", 1)
        return MediaRef(str(root / archive), member)
    return MediaRef(str(root / video_path))


def _ffill(face: np.ndarray, arr: np.ndarray) -> np.ndarray:
    """Fill rows without a face from the nearest earlier face row (the first face row before it)."""
    idx = np.where(face, np.arange(len(face)), -1)
    idx = np.maximum.accumulate(idx)
    first = int(np.argmax(face))
    idx[idx < 0] = first
    return arr[idx]


def _renderer_clips(data_dir: Path, split: str, max_clips: int, mead: str | Path | None):
    """([(clip id, video path)] of the split, the frames table, the corpus root) of a build."""
    if not data_dir.is_dir():
        raise InputError(f"data folder not found: {data_dir}")
    if split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    clips = _read_table(data_dir, "clips").to_pydict()
    root = resolve_mead_root(data_dir, mead)
    frames_tab = _read_table(data_dir, "frames")
    todo = [(cid, vp) for cid, vp, sp in zip(clips["clip_id"], clips["video_path"], clips["split"])
            if split == "all" or sp == split]
    if max_clips:
        todo = todo[:max_clips]
    if not todo:
        raise InputError(f"no clips of split {split!r} in {data_dir}")
    return todo, frames_tab, root


def load_renderer_data(data_dir: str | Path, *, size: int, crop_scale: float = 1.9, frame_stride: int = 1,
                       max_clips: int = 0, split: str = "train", mead: str | Path | None = None,
                       landmarker: str | Path | None = None,
                       progress: Callable[[int, int], None] | None = None) -> RendererData:
    """Decode and crop the frames of a TA-MEAD build's clips (see the module docstring)."""
    from talkclip.annotate.media import iter_frames
    from talkclip.model.renderer import crop_box, crop_face
    from talkclip.schemas.build import dequantise_landmarks

    data_dir = Path(data_dir)
    todo, frames_tab, root = _renderer_clips(data_dir, split, max_clips, mead)
    row_of = {cid: i for i, cid in enumerate(frames_tab.column("clip_id").to_pylist())}
    tracker = None
    out = RendererData([], [], size)
    try:
        for n, (cid, vp) in enumerate(todo):
            if progress is not None:
                progress(n, len(todo))
            if cid not in row_of:
                out.failures.append((cid, "no frames row"))
                continue
            row = frames_tab.slice(row_of[cid], 1).to_pylist()[0]
            face = np.asarray(row["face"], bool)
            if not face.any():
                out.failures.append((cid, "no frame with a face"))
                continue
            bs = np.asarray(row["blendshapes"], np.float32)                  # (T, 52)
            pose = np.asarray(row["pose"], np.float32).reshape(-1, 4, 4)     # (T, 4, 4)
            first = int(np.argmax(face))
            lm = row.get("landmarks")
            try:
                decoded = []
                for fr in iter_frames(media_ref(vp, root).open(), check_complete=False):
                    if fr.index >= len(face):
                        break
                    decoded.append(fr.rgb)
            except (TalkclipError, OSError) as e:
                out.failures.append((cid, one_line(e)))
                continue
            T = min(len(decoded), len(face))
            if T <= first:
                out.failures.append((cid, f"decoded only {len(decoded)} frames"))
                continue
            h, w = decoded[0].shape[:2]
            if lm is not None and lm[first] is not None:
                lms = dequantise_landmarks(np.asarray(lm[first])[None])[0]   # (478, 3) normalised
            else:
                if tracker is None:
                    from talkclip.annotate.tracker import FaceTracker

                    tracker = FaceTracker(landmarker, mode="image")
                res = tracker.detect(decoded[first])
                if res is None:
                    out.failures.append((cid, "re-tracking the first face frame found no face"))
                    continue
                lms = res.landmarks
            box = crop_box(lms, w, h, crop_scale)
            face = face[:T]
            keep = np.flatnonzero(face)[::frame_stride]
            crops = np.stack([crop_face(decoded[i], box, size) for i in keep])
            out.clips.append(ClipFrames(cid, crops, keep, _ffill(face, bs[:T]), _ffill(face, pose[:T])))
    finally:
        if tracker is not None:
            tracker.close()
    if progress is not None:
        progress(len(todo), len(todo))
    if not out.clips:
        why = f" (first failure: {out.failures[0][0]}: {out.failures[0][1]})" if out.failures else ""
        raise InputError(f"no usable clip in {data_dir}{why}")
    return out


def make_batch(data: RendererData, batch_size: int, window: int, seed: int, step: int):
    """(source (B, 3, S, S), motion (B, C_m, 2k+1), target (B, 3, S, S)) tensors of one step,
    a pure function of (seed, step)."""
    import torch

    from talkclip.model.neural_renderer import motion_descriptor, relative_pose6

    rng = np.random.default_rng([seed, step])
    src, tgt, mot = [], [], []
    for _ in range(batch_size):
        c = data.clips[rng.integers(len(data.clips))]
        K = len(c.keep)
        i = int(rng.integers(K))
        j = int(rng.integers(K - 1)) if K > 1 else 0
        j = j + (j >= i) if K > 1 else i                               # a different frame when possible
        si, ti = int(c.keep[i]), int(c.keep[j])
        p6 = relative_pose6(c.pose, c.pose[si])                         # (T, 6) relative to the source
        mot.append(motion_descriptor(c.bs, p6, c.bs[si], np.array([ti]), window)[0])
        src.append(c.crops[i])
        tgt.append(c.crops[j])

    def img(a):  # (B, S, S, 3) uint8 -> (B, 3, S, S) float
        return torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float().div_(255)

    return img(src), torch.from_numpy(np.stack(mot)), img(tgt)


# ---------------------------------------------------------------- training

def _save(model, opt, out: Path, step: int, seed: int, extra: dict) -> None:
    from talkclip.model.checkpoint import atomic_write, save_tensors, optimizer_tensors
    from talkclip.model.neural_renderer import save_renderer

    save_renderer(model, out)
    tensors, rest = optimizer_tensors(opt, "opt")
    save_tensors(tensors, out / OPTIM_FILE, {"kind": "optimizer"})
    state = {"step": step, "seed": seed, "optimizer": rest, **extra}
    atomic_write(out / STATE_FILE, lambda p: p.write_text(json.dumps(state, indent=1) + "\n"))


def train_renderer(data_dir: str | Path, config: str | Path | None, out: str | Path, *, steps: int | None = None,
                   device: str = "cpu", batch_size: int | None = None, seed: int = 0, resume: bool = False,
                   mead: str | Path | None = None, split: str = "train", max_clips: int | None = None,
                   frame_stride: int | None = None, threads: int | None = None,
                   landmarker: str | Path | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> RendererTrainSummary:
    """Train (or ``resume``) a neural renderer on a TA-MEAD build; returns a summary.
    ``steps``: the global step to reach (default: the config's ``train.steps``).
    ``progress(stage, done, total)`` with stage "load" then "train"."""
    import torch

    from talkclip.model.checkpoint import load_tensors, restore_optimizer
    from talkclip.model.neural_renderer import (MODEL_FILE, PIRenderNet, load_renderer,
                                                load_renderer_config)

    t_start = time.perf_counter()
    out = Path(out)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"data folder not found: {data_dir}")
    from talkclip.model.device import resolve_device

    dev = resolve_device(device)
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")

    # ---- model, config, optimizer (fresh or resumed)
    if resume:
        if not (out / STATE_FILE).is_file():
            raise CheckpointError(f"--resume: {out} holds no resumable renderer checkpoint ({STATE_FILE} missing)")
        model = load_renderer(out, dev).train()
        cfg = model.config
        if config is not None and load_renderer_config(config).to_dict() != cfg.to_dict():
            raise InputError(f"--resume: --config differs from the checkpoint's config in {out}; omit --config")
        try:
            state = json.loads((out / STATE_FILE).read_text())
            start = int(state["step"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"corrupt {STATE_FILE} in {out}: {one_line(e)}") from None
        seed = int(state.get("seed", seed))
    else:
        if (out / MODEL_FILE).is_file():
            raise InputError(f"{out} already holds a checkpoint: pass --resume to continue it or choose another --out")
        if config is None:
            raise InputError("no renderer config given (renderer-tiny, renderer-base or a .json path)")
        cfg = load_renderer_config(config)
        torch.manual_seed(seed)
        model = PIRenderNet(cfg).to(dev).train()
        start = 0
    tc = cfg.train
    steps = tc.steps if steps is None else int(steps)
    if steps < start:
        raise InputError(f"--steps {steps} is below the checkpoint's step {start}")
    bsz = int(batch_size or tc.batch_size)
    if bsz < 1:
        raise InputError(f"--batch-size must be >= 1, got {bsz}")
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(0.9, 0.999))
    if resume:
        tensors, _ = load_tensors(out / OPTIM_FILE)
        restore_optimizer(opt, "opt", tensors, state["optimizer"])

    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        data = load_renderer_data(
            data_dir, size=cfg.size, crop_scale=tc.crop_scale,
            frame_stride=int(frame_stride or tc.frame_stride), max_clips=int(tc.max_clips if max_clips is None else max_clips),
            split=split, mead=mead, landmarker=landmarker,
            progress=(lambda d, t: progress("load", d, t)) if progress else None)
        out.mkdir(parents=True, exist_ok=True)
        from talkclip.pipelines.train import CsvLog

        logger = CsvLog(out / LOG_FILE, LOG_COLUMNS, True, None, start if resume else 0)
        extra = {"clips": len(data.clips), "frames": data.frames, "split": split}
        amp = dev.type == "cuda"
        acc: dict[str, list[float]] = {}
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        t_log = time.perf_counter()
        for step in range(start, steps):
            source, motion, target = (t.to(dev, non_blocking=True)
                                      for t in make_batch(data, bsz, cfg.window, seed, step))
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                _, losses = model(source, motion, target)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            for k in LOG_COLUMNS[1:-1]:
                acc.setdefault(k, []).append(float(losses[k].detach()))
            done = step + 1
            if done % tc.log_every == 0 or done == steps:
                row = {k: float(np.mean(v)) for k, v in acc.items()}
                if not first:
                    first = dict(row)
                last = row
                now = time.perf_counter()
                logger.row({"step": done, **row, "seconds": round(now - t_log, 3)})
                t_log = now
                acc = {}
            if tc.checkpoint_every and done % tc.checkpoint_every == 0 and done != steps:
                _save(model, opt, out, done, seed, extra)
            if progress is not None:
                progress("train", done, steps)
        _save(model, opt, out, steps, seed, extra)
        logger.close()
    finally:
        torch.set_num_threads(saved_threads)
    return RendererTrainSummary(out_dir=out, start_step=start, steps=steps, clips=len(data.clips), frames=data.frames,
                                failures=data.failures, first=first, last=last,
                                seconds=time.perf_counter() - t_start, log_path=out / LOG_FILE)
