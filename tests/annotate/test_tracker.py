"""Decoding and face tracking on the real fixture media."""

from __future__ import annotations

import numpy as np
import pytest

from talkclip import InputError, MediaError, NoFaceError
from talkclip.annotate.media import iter_frames, load_audio, load_image, probe
from talkclip.annotate.tracker import FaceTracker, track_media
from talkclip.schemas import BLENDSHAPE_NAMES

from support import FACES, SPEECH


def test_video_frames_have_increasing_timestamps(fixtures):
    frames = list(iter_frames(FACES / "single_face.mp4"))
    info = probe(FACES / "single_face.mp4")
    assert abs(len(frames) - info.frames) <= 1
    ts = [f.timestamp_ms for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert frames[0].rgb.shape == (360, 640, 3)


def test_image_modes_are_converted_to_rgb(tmp_path, fixtures):
    from PIL import Image

    src = Image.open(FACES / "smile.jpg")
    for mode in ("L", "RGBA", "P"):
        p = tmp_path / f"smile_{mode}.png"
        src.convert(mode).save(p)
        rgb = load_image(p)
        assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    # a grayscale image still shows a face
    tr = track_media(tmp_path / "smile_L.png")
    assert tr.frames == 1 and tr.frames_with_face == 1


def test_track_photo_blendshapes_are_named_and_plausible(landmarker, fixtures):
    tr = track_media(FACES / "surprise.jpg")
    assert tr.blendshapes.shape == (1, 52) and tr.landmarks.shape == (1, 478, 3)
    bs = dict(zip(BLENDSHAPE_NAMES, tr.blendshapes[0]))
    assert bs["jawOpen"] > 0.3 and bs["browInnerUp"] > 0.3
    happy = dict(zip(BLENDSHAPE_NAMES, track_media(FACES / "happy.jpg").blendshapes[0]))
    assert happy["mouthSmileLeft"] > 0.5 and happy["mouthSmileRight"] > 0.5
    assert np.allclose(tr.pose[0][3], [0, 0, 0, 1], atol=1e-4)


def test_no_face_video_raises(landmarker, fixtures):
    with pytest.raises(NoFaceError):
        track_media(FACES / "no_face.mp4")


def test_truncated_and_missing_media(tmp_path, fixtures):
    data = (FACES / "talking_pexels.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError):
        list(iter_frames(cut))
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "nope.mp4")


def test_audio_decodes_to_16k_mono(fixtures):
    wav = load_audio(SPEECH / "hello_en.wav")
    assert wav.dtype == np.float32 and abs(len(wav) / 16000 - 4.6) < 0.1
    # the mp3 track of a video
    a = load_audio(FACES / "single_face.mp4", sample_rate=8000)
    assert abs(len(a) / 8000 - 2.4) < 0.2
    with pytest.raises(MediaError):
        load_audio(FACES / "smile.jpg")


def test_tracker_keeps_largest_face(landmarker, fixtures):
    """Two copies of a face side by side at different sizes: the larger one is tracked."""
    from PIL import Image

    face = Image.open(FACES / "happy.jpg").convert("RGB")
    w, h = face.size
    canvas = Image.new("RGB", (w * 2, h), (128, 128, 128))
    canvas.paste(face, (w, 0))
    canvas.paste(face.resize((w // 2, h // 2)), (0, h // 4))
    with FaceTracker(mode="image") as t:
        r = t.detect(np.asarray(canvas))
    assert r is not None and r.landmarks[:, 0].mean() > 0.5


@pytest.mark.parametrize("suffix,codec,fps", [(".mkv", "hevc", 30), (".mov", "h264", 25), (".mp4", "mpeg4", 12)])
def test_containers_codecs_and_rates(tmp_path, landmarker, fixtures, suffix, codec, fps):
    """Re-encode 20 frames of a real face video to other containers, codecs and frame rates."""
    import av

    frames = [f.rgb for f in iter_frames(FACES / "single_face.mp4")][:20]
    out = tmp_path / f"clip{suffix}"
    with av.open(str(out), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
        for rgb in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(rgb[::2, ::2].copy(), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    info = probe(out)
    assert abs(info.fps - fps) < 0.5
    tr = track_media(out)
    assert tr.frames == 20 and tr.frames_with_face >= 18
    assert np.allclose(np.diff(tr.timestamp_ms), 1000 / fps, atol=1.5)
