"""The training-free renderer, judged in closed loop: render real portraits with chosen
blendshapes, track the renders again with MediaPipe and check what it sees."""

from __future__ import annotations

import numpy as np
import pytest

from talkclip import InputError, NoFaceError
from talkclip.annotate.media import iter_frames, load_image
from talkclip.annotate.tracker import FaceTracker
from talkclip.model.renderer import BS, Renderer, load_basis, mesh_topology
from talkclip.pipelines.evaluate import psnr

from support import FACES


@pytest.fixture(scope="module")
def smile_state(landmarker):
    r = Renderer()
    return r, r.prepare(load_image(FACES / "smile.jpg"), size=256)


@pytest.fixture(scope="module")
def image_tracker(landmarker):
    with FaceTracker(mode="image") as t:
        yield t


def _set(b0: np.ndarray, **values: float) -> np.ndarray:
    b = b0.copy()
    for k, v in values.items():
        b[BS[k]] = v
    return b


def test_mesh_covers_face_holes():
    tris = mesh_topology()
    # MediaPipe's 852 triangles + the holes (a 20-gon and two 16-gons: n - 2 each) + 2 rings x 36 x 2
    assert tris.shape == (852 + 18 + 2 * 14 + 144, 3)
    assert tris.max() == 468 + 2 * 36 - 1
    # the mouth hole is bridged: some triangle joins upper (13) and lower (14) inner lip
    assert any({13, 14} <= set(t) for t in tris.tolist())


def test_portrait_blendshapes_render_the_portrait(smile_state):
    r, st = smile_state
    frames = r.render(st, st.b0.numpy()[None])
    src = (st.src[0].permute(1, 2, 0).numpy() * 255).round()
    assert frames.shape == (1, 256, 256, 3) and frames.dtype == np.uint8
    assert np.abs(frames[0].astype(float) - src).mean() < 0.5


def test_jaw_open_closed_loop(smile_state, image_tracker):
    r, st = smile_state
    b0 = st.b0.numpy()
    closed, opened = r.render(st, np.stack([_set(b0, jawOpen=0.0), _set(b0, jawOpen=0.8)]))
    a, b = image_tracker.detect(closed), image_tracker.detect(opened)
    assert a is not None and b is not None, "the renders must still show a face"
    assert b.blendshapes[BS["jawOpen"]] - a.blendshapes[BS["jawOpen"]] >= 0.3
    la, lb = a.landmarks[:, :2] * 256, b.landmarks[:, :2] * 256
    # lower lip (14) moves down relative to the upper lip (13); the chin (152) drops too
    gap_a, gap_b = la[14, 1] - la[13, 1], lb[14, 1] - lb[13, 1]
    assert gap_b - gap_a > 8, (gap_a, gap_b)
    assert lb[152, 1] - la[152, 1] > 5
    # while the eyes stay put
    assert np.abs(lb[[33, 263], 1] - la[[33, 263], 1]).max() < 2.0


def test_jaw_open_on_closed_lips_paints_a_cavity(landmarker, image_tracker):
    """anger.jpg has pressed lips: opening needs a synthetic interior, dark with teeth."""
    r = Renderer()
    st = r.prepare(load_image(FACES / "anger.jpg"), size=256)
    b0 = st.b0.numpy()
    closed, opened = r.render(st, np.stack([_set(b0, jawOpen=0.0), _set(b0, jawOpen=0.8)]))
    a, b = image_tracker.detect(closed), image_tracker.detect(opened)
    # MediaPipe reads this synthetic opening partly as mouthLowerDown (~0.9), so jawOpen
    # rises less than on smile.jpg; both together say "open mouth"
    opened_by = {k: b.blendshapes[BS[k]] - a.blendshapes[BS[k]] for k in ("jawOpen", "mouthLowerDownLeft")}
    assert opened_by["jawOpen"] >= 0.12 and opened_by["mouthLowerDownLeft"] >= 0.3, opened_by
    la, lb = a.landmarks[:, :2] * 256, b.landmarks[:, :2] * 256
    assert (lb[14, 1] - lb[13, 1]) - (la[14, 1] - la[13, 1]) > 10
    # the middle of the opened mouth is dark
    cx, cy = lb[[13, 14]].mean(0).astype(int)
    patch = opened[cy - 2:cy + 3, cx - 2:cx + 3].astype(float)
    assert patch.mean() < 0.5 * closed[cy - 2:cy + 3, cx - 2:cx + 3].astype(float).mean()


def test_brow_inner_up_closed_loop(smile_state, image_tracker):
    r, st = smile_state
    b0 = st.b0.numpy()
    low, high = r.render(st, np.stack([_set(b0, browInnerUp=0.0), _set(b0, browInnerUp=0.8)]))
    a, b = image_tracker.detect(low), image_tracker.detect(high)
    assert b.blendshapes[BS["browInnerUp"]] - a.blendshapes[BS["browInnerUp"]] >= 0.3
    la, lb = a.landmarks[:, :2] * 256, b.landmarks[:, :2] * 256
    inner = [55, 107, 285, 336]
    eyes = [159, 386]
    # inner brows go up relative to the upper eyelids
    rise = (la[inner, 1].mean() - la[eyes, 1].mean()) - (lb[inner, 1].mean() - lb[eyes, 1].mean())
    assert rise > 1.5, rise
    # the mouth does not move
    assert np.abs(lb[[13, 14], 1] - la[[13, 14], 1]).max() < 1.5


def test_blink_acts_on_the_named_side(smile_state, image_tracker):
    r, st = smile_state
    b0 = st.b0.numpy()
    base, left = r.render(st, np.stack([b0, _set(b0, eyeBlinkLeft=1.0)]))
    a, b = image_tracker.detect(base), image_tracker.detect(left)
    d_left = b.blendshapes[BS["eyeBlinkLeft"]] - a.blendshapes[BS["eyeBlinkLeft"]]
    d_right = b.blendshapes[BS["eyeBlinkRight"]] - a.blendshapes[BS["eyeBlinkRight"]]
    assert d_left > 0.1 and d_left > 2 * abs(d_right), (d_left, d_right)


def test_head_pose_rotates_the_face(smile_state, image_tracker):
    r, st = smile_state
    b0 = st.b0.numpy()
    ang = np.deg2rad(12.0)
    eye = np.eye(4, dtype=np.float32)
    roll = eye.copy()
    roll[:2, :2] = [[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]
    frames = r.render(st, np.stack([b0, b0]), pose=np.stack([eye, roll]))
    a, b = image_tracker.detect(frames[0]), image_tracker.detect(frames[1])

    def tilt(res):
        l = res.landmarks[:, :2] * 256
        d = l[263] - l[33]
        return np.degrees(np.arctan2(d[1], d[0]))

    assert abs(abs(tilt(b) - tilt(a)) - 12.0) < 4.0, (tilt(a), tilt(b))


def test_zero_basis_file_freezes_the_face(tmp_path, landmarker):
    basis = np.zeros((52, 468, 2), np.float32)
    np.savez(tmp_path / "zero.npz", basis=basis)
    r = Renderer(basis=tmp_path / "zero.npz")
    st = r.prepare(load_image(FACES / "smile.jpg"), size=128)
    b = np.full((2, 52), 0.9, np.float32)
    frames = r.render(st, b)
    src = (st.src[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(frames.astype(float) - src[None]).max() <= 1.0
    np.savez(tmp_path / "bad.npz", basis=np.zeros((52, 10), np.float32))
    with pytest.raises(InputError, match=r"has shape \(52, 10\), expected \(52, 468\+, 2\)"):
        load_basis(tmp_path / "bad.npz")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(InputError, match="cannot read basis"):
        Renderer(basis=tmp_path / "junk.safetensors")


def test_no_face_portrait_raises(landmarker):
    frame = next(iter_frames(FACES / "no_face.mp4")).rgb
    with pytest.raises(NoFaceError, match="no face found in the portrait"):
        Renderer().prepare(frame)


def test_reenactment_follows_a_real_talking_track(smile_state, landmarker):
    """Drive smile.jpg with 200 tracked frames of another person talking; the renders, tracked
    again, must follow the driver's curves (Pearson r per channel)."""
    import itertools

    import torch

    from talkclip.annotate.tracker import track_frames

    with FaceTracker(mode="video") as tr:
        drv = track_frames(itertools.islice(iter_frames(FACES / "talking_pexels.mp4"), 200), tr)
    assert drv.frames_with_face == 200
    r, st = smile_state
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frames = r.render(st, drv.blendshapes)
    finally:
        torch.set_num_threads(threads)
    with FaceTracker(mode="video") as tr:
        got = np.stack([tr.detect(f, 40 * i).blendshapes for i, f in enumerate(frames)])
    for name, need in (("browInnerUp", 0.8), ("mouthSmileLeft", 0.8), ("eyeBlinkLeft", 0.8), ("jawOpen", 0.6)):
        a, b = drv.blendshapes[:, BS[name]], got[:, BS[name]]
        assert np.corrcoef(a, b)[0, 1] > need, (name, np.corrcoef(a, b)[0, 1])


def test_relative_poses_start_at_identity_and_damp_big_turns():
    from talkclip.model.renderer import MAX_POSE_DEG, relative_poses

    def yaw(deg):
        a = np.deg2rad(deg)
        m = np.eye(4, dtype=np.float32)
        m[[0, 0, 2, 2], [0, 2, 0, 2]] = [np.cos(a), np.sin(a), -np.sin(a), np.cos(a)]
        m[:3, 3] = [1.0, 2.0, -40.0]          # translation is ignored
        return m

    rel = relative_poses(np.stack([yaw(10), yaw(15), yaw(60)]))
    assert np.allclose(rel[0], np.eye(4), atol=1e-6)
    angles = [np.degrees(np.arccos(np.clip((np.trace(m[:3, :3]) - 1) / 2, -1, 1))) for m in rel]
    assert angles[1] == pytest.approx(5.0, abs=0.01) and angles[2] == pytest.approx(MAX_POSE_DEG, abs=0.01)


def test_closing_an_open_mouth(landmarker, image_tracker):
    """surprise.jpg has an open jaw (~0.5): rendering jawOpen 0 closes it (closing fields)."""
    r = Renderer()
    st = r.prepare(load_image(FACES / "surprise.jpg"), size=256)
    b0 = st.b0.numpy()
    same, closed = r.render(st, np.stack([b0, _set(b0, jawOpen=0.0)]))
    a, b = image_tracker.detect(same), image_tracker.detect(closed)
    assert a.blendshapes[BS["jawOpen"]] - b.blendshapes[BS["jawOpen"]] >= 0.3
    la, lb = a.landmarks[:, :2] * 256, b.landmarks[:, :2] * 256
    assert (lb[14, 1] - lb[13, 1]) < 0.5 * (la[14, 1] - la[13, 1])


def test_fast_paths_match_their_plain_definitions(smile_state, landmarker):
    """The speed-ups of issue 15 against what they replace: the vectorised rasteriser against a
    loop over triangles, cv2.remap against grid_sample, and the default flow grid (96 at 256 px,
    with Newton going on only for unsolved pixels) against the former 128 on a real talking track."""
    import torch

    from talkclip.model.renderer import _grid_sample_u8, _rasterise, _remap

    r, st = smile_state
    tris = mesh_topology()
    verts = st.verts * (95 / 255)
    idx, wts = _rasterise(verts, tris, 96)
    ref_idx, ref_wts = np.zeros_like(idx), np.zeros_like(wts)
    ys, xs = np.mgrid[0:96, 0:96]
    q = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)                 # (96*96, 2) px
    for tri in tris:                                                            # the last triangle wins
        a, b, c = verts[tri]
        det = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        if abs(det) < 1e-9:
            continue
        l1 = ((b[1] - c[1]) * (q[:, 0] - c[0]) + (c[0] - b[0]) * (q[:, 1] - c[1])) / det
        l2 = ((c[1] - a[1]) * (q[:, 0] - c[0]) + (a[0] - c[0]) * (q[:, 1] - c[1])) / det
        inside = (l1 >= -1e-6) & (l2 >= -1e-6) & (1 - l1 - l2 >= -1e-6)
        ref_idx[inside] = tri
        ref_wts[inside] = np.stack([l1, l2, 1 - l1 - l2], 1)[inside]
    assert (idx == ref_idx).all() and np.abs(wts - ref_wts).max() < 1e-6
    assert (wts.sum(1) > 0).mean() > 0.5                                         # the mesh covers the crop's middle

    pos = torch.rand(2, 2, 256, 256) * 300 - 20                                 # px, partly outside the crop
    a, b = _remap(st.crop, pos).numpy().astype(int), _grid_sample_u8(st.src, pos).numpy().astype(int)
    assert np.abs(a - b).max() <= 1 and np.abs(a - b).mean() < 0.01

    import itertools

    from talkclip.annotate.tracker import track_frames

    with FaceTracker(mode="video") as tr:
        track = track_frames(itertools.islice(iter_frames(FACES / "talking_pexels.mp4"), 60), tr).blendshapes
    fine_r = Renderer(flow_res=128)
    fine = fine_r.render(fine_r.prepare(load_image(FACES / "smile.jpg")), track)
    new = r.render(st, track)
    assert st.flow_res == 96
    assert psnr(fine, new, axis=(1, 2, 3)).min() >= 45   # dB


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_cuda_frames_match_cpu_frames(smile_state, landmarker):
    """On CUDA the portrait is read by grid_sample and the mouth blended on the device: the same
    frames as on the CPU (cv2.remap) within 2 grey levels."""
    r, st = smile_state
    b0 = st.b0.numpy()
    bs = np.stack([b0, _set(b0, jawOpen=0.8), _set(b0, mouthSmileLeft=0.9, browInnerUp=0.7)])
    gpu = Renderer(device="cuda")
    a = r.render(st, bs).astype(int)
    b = gpu.render(gpu.prepare(load_image(FACES / "smile.jpg"), size=256), bs).astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 2


def test_bad_render_settings_and_motion_are_one_line_errors(smile_state):
    r, st = smile_state
    for kw, words in (({"iterations": 0}, "iterations must be"), ({"flow_res": 4096}, "flow_res must be")):
        with pytest.raises(InputError, match=words):
            Renderer(**kw)
    bad = st.b0.numpy()[None].copy()
    bad[0, BS["jawOpen"]] = np.nan
    with pytest.raises(InputError, match="must be finite"):
        r.render(st, bad)
    with pytest.raises(InputError, match="must be finite"):
        r.render(st, st.b0.numpy()[None], np.full((1, 4, 4), np.inf, np.float32))
