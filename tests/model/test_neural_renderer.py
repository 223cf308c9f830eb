"""The PIRenderer-style neural renderer (issue 5): shapes, ranges, the warp convention,
overfitting real frames, checkpoints and the rig-compatible interface."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talkclip import CheckpointError, ConfigError, NoFaceError
from talkclip.model.neural_renderer import (MOTION_CHANNELS, NeuralRenderer, PIRenderNet, config_from_dict,
                                            load_renderer, load_renderer_config,
                                            motion_descriptor, relative_pose6, rotation_vectors, save_renderer,
                                            ssim, warp)
from talkclip.model.renderer import crop_box, crop_face

from talkclip.schemas import BLENDSHAPE_NAMES

from support import FACES


def _tiny(seed: int = 0) -> PIRenderNet:
    torch.manual_seed(seed)
    return PIRenderNet(load_renderer_config("renderer-tiny"))


def test_configs_packaged_and_checked():
    tiny, base = load_renderer_config("renderer-tiny"), load_renderer_config("renderer-base")
    assert (tiny.size, base.size) == (64, 256)
    assert base.window > tiny.window
    with pytest.raises(ConfigError, match="unknown key 'sise'"):
        config_from_dict({**tiny.to_dict(), "sise": 3})
    with pytest.raises(ConfigError, match="unknown key 'lrr'"):
        config_from_dict({**tiny.to_dict(), "train": {"lrr": 1}})
    with pytest.raises(ConfigError, match="divisible"):
        config_from_dict({**tiny.to_dict(), "size": 60})
    with pytest.raises(ConfigError, match="unknown renderer config"):
        load_renderer_config("renderer-huge")


def test_subnetwork_shapes_and_losses(one_torch_thread):
    m = _tiny()
    cfg = m.config
    B, S, W = 3, cfg.size, 2 * cfg.window + 1
    src, tgt = torch.rand(B, 3, S, S), torch.rand(B, 3, S, S)
    motion = torch.randn(B, MOTION_CHANNELS, W)
    z = m.mapping(motion)
    assert z.shape == (B, cfg.latent_dim)
    flow, warped = m.warp(src, z)
    assert flow.shape == (B, 2, S, S) and warped.shape == (B, 3, S, S)
    out = m.edit(warped, src, z)
    assert out.shape == (B, 3, S, S)
    out, losses = m(src, motion, tgt)
    assert out.shape == (B, 3, S, S)
    assert set(losses) == {"l1", "ssim", "warp", "smooth", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    lc = cfg.loss
    expect = lc.l1 * losses["l1"] + lc.ssim * losses["ssim"] + lc.warp * losses["warp"] + lc.smooth * losses["smooth"]
    assert torch.allclose(losses["total"], expect)
    assert m(src, motion)[1] == {}                                     # no target, no losses
    with pytest.raises(AssertionError, match="motion must be"):
        m(src, motion[:, :, :2])


def test_base_config_builds_and_runs(one_torch_thread):
    m = PIRenderNet(load_renderer_config("renderer-base"))
    n = sum(p.numel() for p in m.parameters())
    assert 5e6 < n < 60e6, f"PIRenderer-like size expected, got {n / 1e6:.1f} M parameters"
    with torch.no_grad():
        out, _ = m(torch.rand(1, 3, 256, 256), torch.randn(1, MOTION_CHANNELS, 27))
    assert out.shape == (1, 3, 256, 256)


def test_untrained_is_identity_and_output_in_range(one_torch_thread):
    m = _tiny()
    src = torch.rand(2, 3, 64, 64)
    motion = torch.randn(2, MOTION_CHANNELS, 5)
    with torch.no_grad():
        out, _ = m(src, motion)
    assert (out - src).abs().max() < 2e-3, "zero-initialised heads: the untrained renderer reproduces the source"
    with torch.no_grad():                                              # wild weights: still inside (0, 1)
        for p in m.parameters():
            p.normal_(0, 3.0)
        out, _ = m(src, motion * 10)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert (out - src).abs().mean() > 0.05, "random heads must change the image"


def test_warp_convention_and_ssim():
    img = torch.rand(1, 3, 16, 16)
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 2.0 / 16                                              # +1 pixel in x (normalised units)
    out = warp(img, flow)
    assert torch.allclose(out[..., :-1], img[..., 1:], atol=1e-5), "out(p) = image(p + flow)"
    assert torch.allclose(warp(img, torch.zeros_like(flow)), img, atol=1e-5)
    x = torch.rand(2, 3, 32, 32)
    assert abs(float(ssim(x, x)) - 1) < 1e-5
    assert float(ssim(x, torch.rand(2, 3, 32, 32))) < 0.2


def test_pose_and_motion_descriptors():
    a = 0.3
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rv = rotation_vectors(np.stack([np.eye(3), Ry, 2.0 * Ry]))         # a scale in the matrix is dropped
    assert np.allclose(rv, [[0, 0, 0], [0, a, 0], [0, a, 0]], atol=1e-6)
    P0 = np.eye(4, dtype=np.float32)
    P0[:3, 3] = [1, 2, -40]
    P1 = P0.copy()
    P1[:3, :3] = Ry @ P0[:3, :3]
    P1[:3, 3] += [5, 0, 0]
    p6 = relative_pose6(np.stack([P0, P1]), P0)
    assert np.allclose(p6[0], 0, atol=1e-6) and np.allclose(p6[1], [0, a, 0, 0.5, 0, 0], atol=1e-5)
    bs = np.arange(4 * 52, dtype=np.float32).reshape(4, 52)
    m = motion_descriptor(bs, np.zeros((4, 6), np.float32), bs[1], np.array([0, 3]), window=2)
    assert m.shape == (2, MOTION_CHANNELS, 5)
    # centre 0: frames -2, -1 clamp to frame 0; centre 3: frames 4, 5 clamp to frame 3
    assert np.array_equal(m[0, :52].T, bs[[0, 0, 0, 1, 2]]) and np.array_equal(m[1, :52].T, bs[[1, 2, 3, 3, 3]])
    assert np.array_equal(m[:, 58:], np.broadcast_to(bs[1][None, :, None], (2, 52, 5)))


@pytest.fixture(scope="module")
def real_frames(landmarker):
    """Five face crops (64 px, one fixed crop) of single_face.mp4 with their tracked motion."""
    from talkclip.annotate.media import iter_frames
    from talkclip.annotate.tracker import FaceTracker

    frames = [f.rgb for f in iter_frames(FACES / "single_face.mp4")]
    idx = [0, 15, 30, 45, 60]
    with FaceTracker(mode="image") as tr:
        res = [tr.detect(frames[i]) for i in idx]
    assert all(r is not None for r in res)
    box = crop_box(res[0].landmarks, frames[0].shape[1], frames[0].shape[0])
    crops = np.stack([crop_face(frames[i], box, 64) for i in idx])
    return crops, np.stack([r.blendshapes for r in res]), np.stack([r.pose for r in res])


def test_tiny_renderer_overfits_real_frames(real_frames, one_torch_thread):
    crops, bs, pose = real_frames
    m = _tiny()
    cfg = m.config
    src = torch.from_numpy(crops[0]).permute(2, 0, 1).float()[None].div(255).expand(4, -1, -1, -1)
    tgt = torch.from_numpy(crops[1:]).permute(0, 3, 1, 2).float().div(255)
    motion = torch.from_numpy(motion_descriptor(bs, relative_pose6(pose, pose[0]), bs[0], np.arange(1, 5), cfg.window))
    opt = torch.optim.Adam(m.parameters(), lr=cfg.train.lr)
    l1 = []
    for _ in range(60):
        _, losses = m(src, motion, tgt)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        l1.append(float(losses["l1"].detach()))
    assert l1[0] > 0.02, "the frames must differ from the source to begin with"
    assert min(l1[-5:]) * 3 <= l1[0], f"L1 fell only from {l1[0]:.4f} to {min(l1[-5:]):.4f}"


def test_checkpoint_round_trip_and_errors(tmp_path, one_torch_thread):
    m = _tiny(seed=3)
    with torch.no_grad():
        for p in m.edit.res.parameters():
            p.normal_(0, 0.1)                                          # make the output depend on the weights
    d = save_renderer(m, tmp_path / "r")
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]
    m2 = load_renderer(d)
    src, motion = torch.rand(2, 3, 64, 64), torch.randn(2, MOTION_CHANNELS, 5)
    with torch.no_grad():
        assert torch.equal(m.eval()(src, motion)[0], m2(src, motion)[0])
    assert m2.config.to_dict() == m.config.to_dict()

    with pytest.raises(CheckpointError, match="not found"):
        load_renderer(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((d / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt") as e:
        load_renderer(bad)
    assert "\n" not in str(e.value)
    (bad / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes())
    (bad / "config.json").write_text(json.dumps({**m.config.to_dict(), "extra": 1}))
    with pytest.raises(CheckpointError, match="bad config.json"):
        load_renderer(bad)
    (bad / "config.json").write_text(json.dumps({**m.config.to_dict(), "warp_channels": 4}))
    with pytest.raises(CheckpointError, match="does not match"):
        load_renderer(bad)


def test_neural_renderer_interface(tmp_path, landmarker):
    from talkclip.annotate.media import load_image

    d = save_renderer(_tiny(), tmp_path / "r")
    r = NeuralRenderer(d)
    portrait = load_image(FACES / "smile.jpg")
    state = r.prepare(portrait, size=128)
    assert state.src.shape == (1, 3, 64, 64) and state.b0.shape == (52,)
    bs = np.repeat(state.b0[None], 5, 0)
    bs[:, BLENDSHAPE_NAMES.index("jawOpen")] = np.linspace(0, 1, 5)
    frames = r.render(state, bs)
    assert frames.shape == (5, 128, 128, 3) and frames.dtype == np.uint8
    # untrained = identity: every frame is the portrait crop, resized
    crop = torch.nn.functional.interpolate(state.src, size=(128, 128), mode="bicubic", align_corners=False)
    crop = (crop.clamp(0, 1) * 255 + 0.5).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.abs(frames.astype(int) - crop.astype(int)).max() <= 2
    assert r.render(state, bs[:2], pose=np.repeat(np.eye(4, dtype=np.float32)[None], 2, 0)).shape == (2, 128, 128, 3)
    assert r.render(state, bs[:0]).shape == (0, 128, 128, 3)
    # chunked rendering: frames [2, 4) of the sequence see their real neighbours in the window
    torch.manual_seed(1)
    with torch.no_grad():
        for p in list(r.model.warp.flow.parameters()) + list(r.model.edit.res.parameters()):
            p.normal_(0, 0.05)                                         # a motion-dependent renderer
    whole = r.render(state, bs)
    chunk, cut = r.render(state, bs, start=2, stop=4).astype(int), r.render(state, bs[2:4]).astype(int)
    same, differ = np.abs(chunk - whole[2:4]).max(), np.abs(cut - whole[2:4]).max()
    assert same <= 1, "a chunk renders as the whole sequence does (up to float rounding)"
    assert differ > 3, "windows cut at the chunk's edges differ"
    with pytest.raises(NoFaceError, match="no face found in the portrait"):
        r.prepare(np.full((200, 200, 3), 128, np.uint8))
