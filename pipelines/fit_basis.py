"""`talkclip-data fit-basis`: a linear blendshape -> landmark-offset basis for the renderer.

From a TA-MEAD build made with ``--landmarks``: every tracked frame's 468 mesh points are
pose-normalised (the rotation of MediaPipe's facial transformation matrix is undone around the
face centre, then the points are expressed in the renderer's face frame: origin between the
eyes, x along the eye axis, unit = inter-ocular distance). Per speaker, the mean points and
mean blendshapes (over the speaker's neutral clips when there are any, else all the speaker's
frames) are subtracted. A ridge least-squares fit maps the 52 blendshape offsets to the
936 point offsets: ``offsets ~ (b - b_speaker) @ W`` with W (52, 468 x 2), stored as
``basis`` (52, 468, 2) float32 in a safetensors (or .npz) file that
``talkclip generate --basis FILE`` loads in place of the hand-built rig.

R^2 is reported on the frames of held-out speakers (the build's ``test`` split; when there are
none, the last fifth of the clips). The reference measurements found such a basis worse than the
hand-built rig until it is fitted on many speakers, so the rig stays the default.

Landmark x and z are normalised by the video width and y by its height; the build stores no
frame size, so ``aspect`` (width / height, MEAD: 16/9) restores square units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkclip import InputError
from talkclip.schemas import NUM_BLENDSHAPES
from talkclip.schemas.build import dequantise_landmarks, open_build
from talkclip.schemas.files import atomic_write, check_output_file

NUM_MESH = 468


@dataclass
class FitBasisReport:
    out: Path
    frames: int
    speakers: int
    r2_train: float
    r2_test: float | None
    test_frames: int


def normalise_points(landmarks: np.ndarray, pose: np.ndarray, aspect: float) -> np.ndarray:
    """(F, 478, 3) normalised landmarks + (F, 4, 4) poses -> (F, 468, 2) face-frame points."""
    from talkclip.model.renderer import FaceFrame

    p = landmarks[:, :NUM_MESH].astype(np.float64) * np.array([aspect, 1.0, aspect])   # (F, 468, 3)
    R = pose[:, :3, :3].astype(np.float64)
    R = R / np.linalg.norm(R, axis=1, keepdims=True).clip(1e-9)
    flip = np.diag([1.0, -1.0, -1.0])                               # metric y-up -> image y-down
    R = flip @ R @ flip
    c = p.mean(1, keepdims=True)
    unrot = np.einsum("fnj,fjk->fnk", p - c, R) + c                # R^T applied to each point
    out = np.empty((p.shape[0], NUM_MESH, 2))
    for i in range(p.shape[0]):
        fr = FaceFrame.from_points(unrot[i, :, :2])
        out[i] = fr.to_face(unrot[i, :, :2])
    return out.astype(np.float32)


def _read_build(data_dir: Path):
    """(clip id -> clips row, frames table) of a build with the frames fit-basis needs."""
    build = open_build(data_dir, ("clips", "frames"))
    clips = build.read("clips", ["clip_id", "speaker", "emotion", "split"]).to_pylist()
    frames = build.read("frames", ["clip_id", "face", "blendshapes", "pose", "landmarks"])
    return {c["clip_id"]: c for c in clips}, frames


def fit_basis(data_dir: str | Path, out: str | Path = "basis.safetensors", *, aspect: float = 16 / 9,
              ridge: float = 1e-3, min_frames: int = 60) -> FitBasisReport:
    """Fit the basis on a TA-MEAD build and write it to ``out`` (see module docstring)."""
    data_dir = Path(data_dir)
    out = check_output_file(out, "--out", (".safetensors", ".npz"))
    if not (0.1 < aspect < 10):
        raise InputError(f"--aspect must be a width/height ratio, got {aspect}")
    clips, frames = _read_build(data_dir)
    per_clip = []
    for row in frames.to_pylist():
        if row["landmarks"] is None:
            continue
        face = np.asarray(row["face"], bool)
        lm = dequantise_landmarks(row["landmarks"])                      # (T, 478, 3)
        bs = np.asarray(row["blendshapes"], np.float32).reshape(-1, NUM_BLENDSHAPES)
        pose = np.asarray(row["pose"], np.float32).reshape(-1, 4, 4)
        if not face.any():
            continue
        info = clips.get(row["clip_id"], {"speaker": "?", "emotion": "", "split": "train"})
        per_clip.append((info, normalise_points(lm[face], pose[face], aspect), bs[face]))
    n_frames = sum(len(c[2]) for c in per_clip)
    if n_frames < min_frames:
        raise InputError(f"{data_dir} holds {n_frames} tracked frames with landmarks; need >= {min_frames} "
                         "(build with --landmarks)")
    # per-speaker neutral reference
    speakers = sorted({c[0]["speaker"] for c in per_clip})
    ref = {}
    for spk in speakers:
        mine = [c for c in per_clip if c[0]["speaker"] == spk]
        neutral = [c for c in mine if c[0].get("emotion") == "neutral"] or mine
        ref[spk] = (np.concatenate([c[1] for c in neutral]).mean(0), np.concatenate([c[2] for c in neutral]).mean(0))
    test_ids = {i for i, c in enumerate(per_clip) if c[0].get("split") == "test"}
    if not test_ids or len(test_ids) == len(per_clip):
        k = max(1, len(per_clip) // 5) if len(per_clip) > 1 else 0
        test_ids = set(range(len(per_clip) - k, len(per_clip)))

    def stack(ids):
        X = [c[2] - ref[c[0]["speaker"]][1] for i, c in enumerate(per_clip) if i in ids]
        Y = [(c[1] - ref[c[0]["speaker"]][0]).reshape(len(c[1]), -1) for i, c in enumerate(per_clip) if i in ids]
        return (np.concatenate(X).astype(np.float64), np.concatenate(Y).astype(np.float64)) if X else (None, None)

    train_ids = set(range(len(per_clip))) - test_ids
    Xtr, Ytr = stack(train_ids)
    A = Xtr.T @ Xtr + ridge * len(Xtr) * np.eye(NUM_BLENDSHAPES)
    W = np.linalg.solve(A, Xtr.T @ Ytr)                                 # (52, 936)

    def r2(X, Y):
        res = ((Y - X @ W) ** 2).sum()
        tot = ((Y - Y.mean(0)) ** 2).sum()
        return float(1 - res / max(tot, 1e-12))

    Xte, Yte = stack(test_ids)
    basis = W.reshape(NUM_BLENDSHAPES, NUM_MESH, 2).astype(np.float32)
    meta = {"frames": str(n_frames), "speakers": str(len(speakers)), "aspect": f"{aspect:.6f}",
            "ridge": f"{ridge:g}", "r2_train": f"{r2(Xtr, Ytr):.4f}",
            "r2_test": f"{r2(Xte, Yte):.4f}" if Xte is not None else "nan",
            "units": "face frame: IOD units per unit blendshape"}
    _save_basis(out, basis, meta)
    return FitBasisReport(out=out, frames=n_frames, speakers=len(speakers), r2_train=r2(Xtr, Ytr),
                          r2_test=r2(Xte, Yte) if Xte is not None else None,
                          test_frames=0 if Xte is None else len(Xte))


def _save_basis(out: Path, basis: np.ndarray, meta: dict[str, str]) -> None:
    """Write the (52, 468, 2) basis atomically as .npz or .safetensors (with ``meta``)."""
    def write(tmp: Path) -> None:
        if out.suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, basis=basis)
        else:
            from safetensors.numpy import save

            tmp.write_bytes(save({"basis": basis}, metadata=meta))

    atomic_write(out, write)
