"""Checkpoint directories: round trip, and one-line CheckpointError on damage."""

from __future__ import annotations

import json

import pytest
import torch

from talkclip import CheckpointError
from talkclip.model.checkpoint import load_checkpoint, load_sync_checkpoint, save_checkpoint
from talkclip.model.config import load_config
from talkclip.model.discriminators import SyncDiscriminator
from talkclip.model.talkclip import TalkCLIP


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(3)
    cfg = load_config("tiny")
    m = TalkCLIP(cfg).eval()
    d = save_checkpoint(m, tmp_path_factory.mktemp("ck") / "tiny")
    return m, d


def test_roundtrip_gives_the_same_model(saved):
    m, d = saved
    assert (d / "model.safetensors").is_file() and (d / "config.json").is_file()
    assert json.loads((d / "config.json").read_text())["name"] == "tiny"
    m2 = load_checkpoint(d)
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    feats = torch.randn(25, m.config.audio.n_mels)
    style = m.text_style(["A woman is surprised."])[0]
    assert torch.allclose(m2.text_style(["A woman is surprised."])[0], style, atol=1e-6)
    assert torch.allclose(m2.generate(feats, style), m.generate(feats, style), atol=1e-6)


def test_damaged_checkpoints_raise_checkpoint_error(saved, tmp_path):
    import shutil

    _, d = saved
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    for damage in ("truncate", "garbage", "no_config", "bad_config", "no_model", "wrong_arch"):
        c = tmp_path / damage
        shutil.copytree(d, c)
        if damage == "truncate":
            data = (c / "model.safetensors").read_bytes()
            (c / "model.safetensors").write_bytes(data[: len(data) // 2])
        elif damage == "garbage":
            (c / "model.safetensors").write_bytes(b"\x00" * 64)
        elif damage == "no_config":
            (c / "config.json").unlink()
        elif damage == "bad_config":
            (c / "config.json").write_text('{"model": {"d_model": 32, "wings": 2}}')
        elif damage == "no_model":
            (c / "model.safetensors").unlink()
        elif damage == "wrong_arch":
            cfg = json.loads((c / "config.json").read_text())
            cfg["model"]["d_model"] = 64
            (c / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(c)
        assert "\n" not in str(e.value), damage


def test_sync_checkpoint_roundtrip_and_kind_check(saved, tmp_path):
    cfg = load_config("tiny")
    torch.manual_seed(4)
    s = SyncDiscriminator(cfg.model, cfg.audio.n_mels)
    s.config = cfg
    d = save_checkpoint(s, tmp_path / "sync", kind="sync")
    s2 = load_sync_checkpoint(d)
    K = cfg.model.sync_window
    x, a = torch.rand(3, K, 52), torch.rand(3, K, cfg.audio.n_mels)
    assert torch.allclose(s.eval()(x, a), s2(x, a)) and not s2.training
    with pytest.raises(CheckpointError, match="not a TalkCLIP"):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match="not a lip-sync"):
        load_sync_checkpoint(saved[1])
    # loading it into a TalkCLIP model switches L_sync on
    m = TalkCLIP(cfg)
    m.load_sync_discriminator(s2)
    assert bool(m.sync_ready)


def test_minilm_checkpoint_leaves_out_the_packaged_encoder(tmp_path):
    cfg = load_config("tiny")
    cfg.text.backend, cfg.text.width, cfg.text.layers, cfg.text.heads, cfg.text.context_length = "minilm", None, None, None, None
    torch.manual_seed(5)
    m = TalkCLIP(cfg).eval()
    d = save_checkpoint(m, tmp_path / "mini")
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert not any(k.startswith("text.backbone.") for k in keys) and "text.adapter.net.0.weight" in keys
    m2 = load_checkpoint(d)
    assert torch.allclose(m2.text_style(["She is beaming."]), m.text_style(["She is beaming."]), atol=1e-5)
