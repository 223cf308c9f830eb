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
Batches are a pure function of (seed, step). Adam on the shared training loop
(:mod:`talkclip.pipelines.solver`): bf16 autocast on CUDA; a CSV loss log
(``OUT/renderer_log.csv``); the checkpoint (``model.safetensors`` + ``config.json`` +
``optimizer.safetensors`` + ``trainer_state.json``, written by the same
:func:`talkclip.model.checkpoint.save_checkpoint` as TalkCLIP's) at the end and every
``train.checkpoint_every`` steps; ``resume`` continues from it exactly (same seed -> same
batches, RNG and optimizer states restored). The CUDA/bf16 path was not run (no GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from talkclip import InputError, TalkclipError, one_line
from talkclip.model.neural_renderer import KIND

from .solver import SPLITS, Solver, TrainOptions, TrainSummary

LOG_COLUMNS = ("step", "total", "l1", "ssim", "warp", "smooth", "seconds")


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

class RendererSolver(Solver):
    """The neural renderer on the shared loop: Adam, L1 + SSIM + warp + flow smoothness."""

    kind, what, log_columns = KIND, "train-renderer", LOG_COLUMNS
    config_hint = "renderer-tiny, renderer-base"

    def load_config(self, config):
        from talkclip.model.neural_renderer import RendererConfig, load_renderer_config

        return config if isinstance(config, RendererConfig) else load_renderer_config(config)

    def read_config(self, out: Path):
        from talkclip.model.checkpoint import read_checkpoint_config
        from talkclip.model.neural_renderer import config_from_dict

        return read_checkpoint_config(out, config_from_dict, "renderer checkpoint")

    def default_steps(self) -> int:
        return self.cfg.train.steps

    def check_inputs(self) -> None:
        if not self.o.data_dir.is_dir():
            raise InputError(f"data folder not found: {self.o.data_dir}")
        resolve_mead_root(self.o.data_dir, self.o.mead)

    def load_data(self) -> None:
        o, tc = self.o, self.cfg.train
        self.data = load_renderer_data(
            o.data_dir, size=self.cfg.size, crop_scale=tc.crop_scale,
            frame_stride=int(o.frame_stride or tc.frame_stride),
            max_clips=int(tc.max_clips if o.max_clips is None else o.max_clips), split=o.split, mead=o.mead,
            landmarker=o.landmarker, progress=lambda d, t: self.bar.update("loading clips", d, t))

    def build_model(self):
        from talkclip.model.neural_renderer import PIRenderNet

        return PIRenderNet(self.cfg)

    def load_model(self):
        from talkclip.model.neural_renderer import load_renderer

        return load_renderer(self.o.out)

    def make_optimizers(self) -> dict:
        import torch

        return {"opt": torch.optim.Adam(self.model.parameters(), lr=self.cfg.train.lr, betas=(0.9, 0.999))}

    def state(self) -> dict:
        return {"clips": len(self.data.clips), "frames": self.data.frames, "split": self.o.split}

    def batches(self, start: int, stop: int):
        bsz = int(self.o.batch_size or self.cfg.train.batch_size)
        for step in range(start, stop):
            yield make_batch(self.data, bsz, self.cfg.window, self.seed, step)

    def run_step(self, step: int, batch) -> tuple[dict[str, float], dict]:
        source, motion, target = (t.to(self.dev, non_blocking=True) for t in batch)
        with self.autocast():
            _, losses = self.model(source, motion, target)
        self.optimize(losses["total"], self.optimizers["opt"])
        return {k: float(losses[k].detach()) for k in LOG_COLUMNS[1:-1]}, {}

    def info(self, last: dict[str, float]) -> str:
        return f"L1 {last.get('l1', float('nan')):.4f}"

    def summary_extra(self) -> dict:
        return {"frames": self.data.frames, "failures": list(self.data.failures)}


def train_renderer(data_dir: str | Path, config, out: str | Path, **options) -> TrainSummary:
    """Train (or ``resume``) a neural renderer on a TA-MEAD build; returns a summary.
    ``options``: the fields of :class:`TrainOptions` (steps: the global step to reach, default the
    config's ``train.steps``; device, batch_size, seed, resume, mead, split, max_clips,
    frame_stride, threads, landmarker, log_every, checkpoint_every, progress)."""
    return RendererSolver(TrainOptions(data_dir=data_dir, config=config, out=out, **options)).run()
