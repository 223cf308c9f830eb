"""`talkclip-data fit-basis` on a small TA-MEAD-shaped folder built here from real tracked video."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from talkclip import InputError, LayoutError
from talkclip.annotate.media import iter_frames, probe
from talkclip.annotate.tracker import FaceTracker, track_frames
from talkclip.model.renderer import BS, Renderer, load_basis
from talkclip.pipelines.fit_basis import fit_basis
from talkclip.pipelines.shards import write_rows
from talkclip.schemas.tamead import CLIPS_SCHEMA, FRAMES_SCHEMA, LANDMARK_SCALE, ClipRow, FramesRow

from support import FACES

DATA = [sys.executable, "-c", "from talkclip.cli import data_app; data_app()"]


def _clip(clip_id, speaker, emotion, split, frames):
    return ClipRow(clip_id=clip_id, speaker=speaker, gender="man", view="front", emotion=emotion, level=1,
                   take="001", video_path="x.mp4", audio_path=None, audio_source=None, fps=25.0,
                   frames=frames, frames_with_face=frames, duration_s=frames / 25, audio_duration_s=None,
                   av_mismatch=False, au_intensity_raw=[0.0] * 12, au_intensity=[0.0] * 12,
                   au_level=[0] * 12, split=split)


@pytest.fixture(scope="module")
def mini_build(tmp_path_factory, landmarker):
    """Two real talking clips per 'speaker' (first 90 frames of each video, split in halves)."""
    out = tmp_path_factory.mktemp("tamead")
    clips, frames = [], []
    for spk, video, split in (("M001", "talking_pexels.mp4", "train"), ("M002", "single_face.mp4", "test")):
        aspect = probe(FACES / video).width / probe(FACES / video).height
        with FaceTracker(mode="video") as tr:
            track = track_frames(itertools.islice(iter_frames(FACES / video), 90), tr)
        assert abs(aspect - 16 / 9) < 0.01, "fixtures are 16:9 like MEAD"
        half = track.frames // 2
        for k, (a, b) in enumerate(((0, half), (half, track.frames))):
            cid = f"{spk}_front_{'neutral' if k == 0 else 'happy'}_level_1_00{k}"
            clips.append(_clip(cid, spk, "neutral" if k == 0 else "happy", split, b - a))
            lm = np.round(track.landmarks[a:b] * LANDMARK_SCALE).astype(np.int16).reshape(b - a, -1)
            frames.append(FramesRow(clip_id=cid, fps=25.0, timestamp_ms=track.timestamp_ms[a:b].tolist(),
                                    face=track.face[a:b].tolist(), blendshapes=track.blendshapes[a:b].tolist(),
                                    pose=track.pose[a:b].reshape(b - a, 16).tolist(), landmarks=lm.tolist()))
    write_rows(clips, CLIPS_SCHEMA, out / "clips" / "part-0.parquet")
    write_rows(frames, FRAMES_SCHEMA, out / "frames" / "part-0.parquet")
    return out


def test_fit_basis_on_tracked_frames(mini_build, tmp_path, landmarker):
    rep = fit_basis(mini_build, tmp_path / "basis.safetensors", min_frames=50)
    assert rep.speakers == 2 and rep.frames >= 150 and rep.test_frames >= 60
    assert rep.r2_train > 0.3, rep.r2_train        # the fit explains the training frames
    assert rep.r2_test is not None and np.isfinite(rep.r2_test)
    basis = load_basis(rep.out)
    assert basis.shape == (52, 468, 2) and np.isfinite(basis).all()
    # on real talking frames jawOpen opens the lips: lower inner lip moves down against the upper
    assert basis[BS["jawOpen"], 14, 1] - basis[BS["jawOpen"], 13, 1] > 0
    # the renderer accepts it
    from talkclip.annotate.media import load_image

    r = Renderer(basis=rep.out)
    st = r.prepare(load_image(FACES / "smile.jpg"), size=128)
    b = np.repeat(st.b0.numpy()[None], 2, 0)
    b[1, BS["jawOpen"]] = 0.8
    frames = r.render(st, b)
    # (two short clips make a weak basis: held-out R^2 is near 0, the motion it drives is small)
    assert frames.shape == (2, 128, 128, 3) and np.abs(frames[1].astype(int) - frames[0]).max() > 0


def test_fit_basis_bad_inputs(tmp_path, mini_build):
    with pytest.raises(LayoutError):
        fit_basis(tmp_path, tmp_path / "b.safetensors")
    with pytest.raises(InputError, match="must end in .safetensors or .npz"):
        fit_basis(mini_build, tmp_path / "b.pkl")
    with pytest.raises(InputError, match="tracked frames with landmarks"):   # too little data for the default minimum
        fit_basis(mini_build, tmp_path / "b.npz", min_frames=10_000)


def test_cli_fit_basis(mini_build, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run(DATA + ["fit-basis", str(mini_build), "--out", str(tmp_path / "b.npz")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.npz").is_file() and "rig stays the default" in r.stdout
    r = subprocess.run(DATA + ["fit-basis", str(tmp_path / "nothing")], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
