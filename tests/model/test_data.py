"""TA-MEAD training reader: filtering, missing faces, window contents, determinism."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from talkclip import InputError, LayoutError
from talkclip.model.audio import SILENCE
from talkclip.model.config import load_config
from talkclip.model.data import StepBatches, TAMEADWindows, load_tamead

from support import write_synthetic_tamead


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_tamead(tmp_path_factory.mktemp("d") / "ta", n_clips=5, frames=50, seed=3)


def test_reader_filters_and_fills_missing_faces(synth, tmp_path):
    cfg = load_config("tiny")
    data = load_tamead(synth, cfg, cache_dir=tmp_path / "cache")
    assert len(data.clips) == 4 and data.skipped["split"] == 1
    c0 = next(c for c in data.clips if c.clip_id.endswith("_000"))
    assert not c0.face[5:9].any() and c0.face[:5].all() and c0.face[9:].all()
    for t in range(5, 9):  # linear interpolation between frames 4 and 9
        want = c0.blendshapes[4] + (t - 4) / 5 * (c0.blendshapes[9] - c0.blendshapes[4])
        assert np.allclose(c0.blendshapes[t], want, atol=1e-6)
    assert c0.audio.shape == (50, cfg.audio.n_mels)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4
    again = load_tamead(synth, cfg, cache_dir=tmp_path / "cache")
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(data.clips, again.clips))
    assert len(load_tamead(synth, cfg, split="test").clips) == 1
    assert len(load_tamead(synth, cfg, split=None).clips) == 5


def test_reader_skips_short_and_mismatched_clips(tmp_path):
    cfg = load_config("tiny")
    short = write_synthetic_tamead(tmp_path / "short", n_clips=2, frames=cfg.model.seq_len - 1, test_clips=0)
    with pytest.raises(InputError, match="no usable clips"):
        load_tamead(short, cfg)
    d = write_synthetic_tamead(tmp_path / "mm", n_clips=3, frames=40, test_clips=0)
    f = next((d / "clips").glob("*.parquet"))
    t = pq.read_table(f)
    flags = [True, False, False]
    t = t.set_column(t.schema.get_field_index("av_mismatch"), "av_mismatch",
                     __import__("pyarrow").array(flags, type=t.schema.field("av_mismatch").type))
    pq.write_table(t, f)
    data = load_tamead(d, cfg)
    assert len(data.clips) == 2 and data.skipped["av_mismatch"] == 1
    (tmp_path / "notta").mkdir()
    (tmp_path / "notta" / "clips").mkdir()
    with pytest.raises(LayoutError, match="frames"):
        load_tamead(tmp_path / "notta", cfg)


def test_windows_are_aligned_and_deterministic(synth):
    cfg = load_config("tiny")
    data = load_tamead(synth, cfg)
    ds = TAMEADWindows(data, cfg, seed=1)
    L, w = cfg.model.seq_len, cfg.model.window
    seen_edge = False
    for i in range(40):
        s = ds[i]
        assert s["blendshapes"].shape == (L, 52) and s["audio"].shape == (L + 2 * w, cfg.audio.n_mels)
        clip = next(c for c in data.clips if s["captions"] in c.captions
                    and any(np.array_equal(c.blendshapes[k:k + L], s["blendshapes"].numpy())
                            for k in range(len(c.blendshapes) - L + 1)))
        start = next(k for k in range(len(clip.blendshapes) - L + 1)
                     if np.array_equal(clip.blendshapes[k:k + L], s["blendshapes"].numpy()))
        for j in range(L + 2 * w):
            src = start - w + j
            row = s["audio"][j].numpy()
            if 0 <= src < len(clip.audio):
                assert np.array_equal(row, clip.audio[src])
            else:
                seen_edge = True
                assert np.all(row == SILENCE)
        assert torch.equal(s["frame_mask"], torch.from_numpy(clip.face[start:start + L]))
        # clips (50 frames) are shorter than style_frames: the style reference is the whole clip
        assert ds.S == 50 and torch.equal(s["style_mask"], torch.from_numpy(clip.face))
        assert torch.equal(s["style_bs"], torch.tensor(clip.blendshapes))
    assert seen_edge  # some window touched a clip end
    a, b = ds[7], ds[7]
    assert all(torch.equal(a[k], b[k]) for k in a if k != "captions") and a["captions"] == b["captions"]
    assert not torch.equal(ds[8]["blendshapes"], a["blendshapes"])
    # global batch k of rank r: disjoint shares, the same ids whatever the start
    assert list(StepBatches(2, 3, 5))[0] == [6, 7]
    assert list(StepBatches(2, 3, 4, rank=1, world=2))[0] == [14, 15]


def test_phoneme_config_needs_a_phoneme_track(synth):
    cfg = load_config("tiny")
    cfg.model.audio_input = "mel+phoneme"
    with pytest.raises(LayoutError, match="no phoneme track.*--phonemes"):
        load_tamead(synth, cfg)


def test_phoneme_track_reaches_the_batches(tmp_path):
    from support import write_phoneme_track

    data = write_synthetic_tamead(tmp_path / "ta", n_clips=4, frames=40, seed=2, test_clips=0)
    tracks = write_phoneme_track(data, drop=1)                 # the last clip gets no track
    cfg = load_config("tiny-phoneme")
    d = load_tamead(data, cfg, split=None)
    assert d.skipped["no_phonemes"] == 1 and len(d.clips) == 3
    for c in d.clips:
        assert c.phonemes.dtype == np.int64 and c.phonemes.tolist() == tracks[c.clip_id]
    ds = TAMEADWindows(d, cfg, seed=0)
    L, w = cfg.model.seq_len, cfg.model.window
    for i in range(6):
        item = ds[i]
        assert item["phonemes"].shape == (L + 2 * w,) and item["phonemes"].dtype == torch.int64
        assert int(item["phonemes"].max()) < cfg.model.n_phonemes
    assert "phonemes" not in TAMEADWindows(load_tamead(data, load_config("tiny"), split=None), cfg)[0]


def test_phoneme_track_of_another_length_is_a_layout_error(tmp_path):
    from support import write_phoneme_track

    data = write_synthetic_tamead(tmp_path / "ta", n_clips=2, frames=40, seed=3, test_clips=0)
    write_phoneme_track(data, n_frames=39)
    with pytest.raises(LayoutError, match="39 frame ids vs 40 frames"):
        load_tamead(data, load_config("tiny-phoneme"), split=None)


@pytest.mark.parametrize("table", ["frames", "audio"])
def test_damaged_shard_is_a_one_line_layout_error(tmp_path, table):
    data = write_synthetic_tamead(tmp_path / "ta", n_clips=3, frames=40, seed=1)
    shard = next((data / table).glob("*.parquet"))
    shard.write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    with pytest.raises(LayoutError, match="unreadable TA-MEAD"):
        load_tamead(data, load_config("tiny"))
