"""SyncNet port: shapes, safetensors loading, MFCC against python_speech_features, offset math.

All with random-init weights: the released syncnet_v2 weights are not available here.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from talkclip import CheckpointError, InputError
from talkclip.annotate.media import load_audio
from talkclip.model.syncnet import (SyncNet, expected_keys, int16_scale, load_syncnet, mfcc, offset_confidence,
                                    offset_distances, sync_score)

from support import SPEECH


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random-init SyncNet's state dict with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    m = SyncNet()
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return m.state_dict()


def _save(path, sd):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def test_towers_take_the_documented_shapes():
    torch.manual_seed(0)
    m = SyncNet().eval()
    with torch.no_grad():
        aud = torch.randn(3, 1, 13, 20)
        vid = torch.rand(2, 3, 5, 224, 224) * 255
        assert m.netcnnaud(aud).shape == (3, 512, 1, 1)
        assert m.netcnnlip(vid).shape == (2, 512, 1, 1, 1)
        out, losses = m(aud[:2], vid)
    assert out["audio"].shape == (2, 1024) and out["video"].shape == (2, 1024) and out["dist"].shape == (2,)
    assert losses == {} and torch.isfinite(out["dist"]).all()
    with pytest.raises(AssertionError):
        m.embed_audio(torch.randn(1, 1, 13, 21))
    with pytest.raises(AssertionError):
        m.embed_video(torch.rand(1, 3, 4, 224, 224))


def test_key_names_follow_syncnet_python():
    keys = expected_keys()
    assert keys["netcnnaud.0.weight"] == (64, 1, 3, 3)
    assert keys["netcnnaud.18.weight"] == (512, 256, 5, 4)
    assert keys["netcnnaud.19.running_var"] == (512,)
    assert keys["netfcaud.1.running_mean"] == (512,)
    assert keys["netcnnlip.0.weight"] == (96, 3, 5, 7, 7)
    assert keys["netcnnlip.4.weight"] == (256, 96, 1, 5, 5)
    assert keys["netcnnlip.18.weight"] == (512, 256, 1, 6, 6)
    assert keys["netfclip.3.weight"] == (1024, 512)
    # 6 conv + 6 BN per tower (2 + 4 tensors), 2 fc + 1 BN per head
    assert len(keys) == 2 * (6 * 2 + 6 * 4) + 2 * (2 * 2 + 4)
    assert not any("num_batches_tracked" in k for k in keys)


def test_safetensors_round_trip_with_and_without_num_batches_tracked(tmp_path):
    sd = _random_state(1)
    full = load_syncnet(_save(tmp_path / "full.safetensors", sd))
    slim_sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    slim = load_syncnet(_save(tmp_path / "slim.safetensors", slim_sd))
    for k, v in sd.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(full.state_dict()[k], v) and torch.equal(slim.state_dict()[k], v), k
    assert not full.training and not slim.training
    with torch.no_grad():
        x = torch.randn(2, 1, 13, 20)
        assert torch.allclose(full.embed_audio(x), slim.embed_audio(x))


@pytest.mark.parametrize("case", ["torch_zip", "raw_pickle", "garbage", "missing_key", "extra_key",
                                  "wrong_shape", "int_tensor", "no_file"])
def test_bad_weights_are_one_line_checkpoint_errors(tmp_path, case):
    sd = {k: v for k, v in _random_state(2).items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "w.safetensors"
    expect = ""
    if case == "torch_zip":
        path = tmp_path / "syncnet_v2.model"
        torch.save(sd, path)                    # written only; the loader must never unpickle it
        expect = "zip archive"
    elif case == "raw_pickle":
        path = tmp_path / "w.pkl"
        path.write_bytes(pickle.dumps({"a": 1}))
        expect = "pickle"
    elif case == "garbage":
        path.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad json")
        expect = "not a readable safetensors"
    elif case == "missing_key":
        sd["netcnnlip.0.WEIGHT"] = sd.pop("netcnnlip.0.weight")
        _save(path, sd)
        expect = "missing key netcnnlip.0.weight"
    elif case == "extra_key":
        sd["module.extra"] = torch.zeros(3)
        _save(path, sd)
        expect = "unexpected key module.extra"
    elif case == "wrong_shape":
        sd["netcnnaud.18.weight"] = torch.zeros(512, 256, 4, 4)
        _save(path, sd)
        expect = "netcnnaud.18.weight has shape (512, 256, 4, 4), expected (512, 256, 5, 4)"
    elif case == "int_tensor":
        sd["netfclip.0.bias"] = torch.zeros(512, dtype=torch.int64)
        _save(path, sd)
        expect = "netfclip.0.bias is not a floating point"
    else:
        path = tmp_path / "absent.safetensors"
        expect = "no such SyncNet weights file"
    with pytest.raises(CheckpointError) as e:
        load_syncnet(path)
    msg = str(e.value)
    assert expect in msg and "\n" not in msg, msg


def test_mfcc_matches_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    wav = int16_scale(load_audio(SPEECH / "hello_en.wav", 16_000))
    ref, ours = psf.mfcc(wav, 16_000), mfcc(wav)
    assert ref.shape == ours.shape == (1 + int(np.ceil((len(wav) - 400) / 160)), 13)
    assert np.abs(ref - ours).max() < 1e-6 * max(1.0, np.abs(ref).max())
    rng = np.random.default_rng(0)
    for n in (150, 400, 401, 561, 1600):       # one frame, exact fit, padded last frame
        x = rng.normal(0, 3000, n)
        assert np.abs(psf.mfcc(x, 16_000) - mfcc(x)).max() < 1e-6, n
    silence = np.zeros(2000)                    # zero energies -> eps before the log
    assert np.abs(psf.mfcc(silence, 16_000) - mfcc(silence)).max() < 1e-6
    with pytest.raises(InputError):
        mfcc(np.zeros(0))


def test_confidence_of_a_planted_minimum():
    base = np.arange(31, dtype=np.float64) + 5.0      # shift index 12 -> offset 15 - 12 = 3
    base[12] = 1.0
    rows = np.stack([base + r for r in range(4)])     # means = base + 1.5
    res = offset_confidence(rows)
    # sorted means: 2.5, 6.5 .. 17.5 (12 values), 19.5, 20.5, 21.5 <- 16th of 31 = median
    assert res.offset == 3
    assert res.min_dist == pytest.approx(2.5)
    assert res.confidence == pytest.approx(21.5 - 2.5)
    assert res.windows == 4 and res.mean_dists.shape == (31,)


@pytest.mark.parametrize("delay", [3, -2, 0])
def test_offset_distances_find_a_shifted_audio(delay):
    g = torch.Generator().manual_seed(5)
    v = torch.randn(40, 16, generator=g)
    a = torch.randn(40, 16, generator=g)
    # audio delayed by `delay` frames: audio j carries video j - delay
    for j in range(40):
        if 0 <= j - delay < 40:
            a[j] = v[j - delay]
    d = offset_distances(v, a, vshift=15)
    assert d.shape == (40, 31)
    i, c = 20, 7                                                   # video 20 vs audio 20 + 7 - 15 = 12
    assert d[i, c] == pytest.approx(float(torch.nn.functional.pairwise_distance(v[i:i + 1], a[12:13])), rel=1e-6)
    assert d[0, 0] == pytest.approx(float((v[0] + 1e-6).norm()), rel=1e-6)  # zero padding outside the clip
    res = offset_confidence(d)
    assert res.offset == -delay and res.confidence > 1.0


def test_sync_score_windows_and_short_input(one_torch_thread):
    torch.manual_seed(0)
    m = SyncNet().eval()
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (12, 224, 224, 3), dtype=np.uint8)
    audio = rng.normal(0, 0.1, 16_000 * 12 // 25 + 100).astype(np.float32)
    res = sync_score(m, crops, audio, vshift=4, batch_size=4)
    assert res.windows == 12 - 5 and res.mean_dists.shape == (9,)
    assert -4 <= res.offset <= 4 and np.isfinite(res.confidence) and res.confidence >= 0 and res.min_dist > 0
    with pytest.raises(InputError):
        sync_score(m, crops[:5], audio)
