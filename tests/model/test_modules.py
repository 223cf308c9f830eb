"""Shapes, masks and finite losses of every TalkCLIP module (tiny config, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talkclip import ConfigError, InputError, MissingAssetError
from talkclip.model import losses as L
from talkclip.model.audio import SILENCE, audio_features, unfold_windows
from talkclip.model.config import config_from_dict, load_config
from talkclip.model.discriminators import MOUTH_CHANNELS, SyncDiscriminator, TemporalDiscriminator
from talkclip.model.style import VideoStyleEncoder
from talkclip.model.talkclip import TalkCLIP

from support import SPEECH


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny")


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    return TalkCLIP(cfg)


def _batch(cfg, B=3, S=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    Lq, w = cfg.model.seq_len, cfg.model.window
    return {
        "blendshapes": torch.rand(B, Lq, 52, generator=g),
        "frame_mask": torch.ones(B, Lq, dtype=torch.bool),
        "audio": torch.randn(B, Lq + 2 * w, cfg.audio.n_mels, generator=g),
        "style_bs": torch.rand(B, S, 52, generator=g),
        "style_mask": torch.ones(B, S, dtype=torch.bool),
        "captions": ["A man is happy.", "A woman is sad with lip corners depressed.", "A man is talking."][:B],
    }


# ---------------------------------------------------------------- config

def test_packaged_configs_load_with_paper_settings():
    base = load_config("base")
    m, lo = base.model, base.loss
    assert (m.d_model, m.n_heads, m.n_layers, m.ffn, m.dropout) == (256, 8, 3, 1024, 0.1)
    assert (m.window, m.seq_len, m.style_dim, m.style_frames) == (5, 64, 256, 256)
    assert (lo.rec, lo.cos, lo.sync, lo.tem, lo.mu) == (88.0, 1.0, 1.0, 1.0, 0.1)
    assert base.text.backend == "clip" and base.text.clip_model == "ViT-B-32" and base.text.beta == 0.6
    assert base.train.p_max == 0.5
    assert load_config("tiny").text.backend == "clip-random"


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    good = load_config("tiny").to_dict()
    with pytest.raises(ConfigError, match="unknown key.*bogus"):
        config_from_dict({**good, "model": {**good["model"], "bogus": 1}})
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({**good, "extra_section": {}})
    with pytest.raises(ConfigError, match="n_heads"):
        config_from_dict({**good, "model": {**good["model"], "d_model": 30, "n_heads": 4}})
    with pytest.raises(ConfigError, match="integer"):
        config_from_dict({**good, "model": {**good["model"], "d_model": "big"}})
    with pytest.raises(ConfigError, match="backend"):
        config_from_dict({**good, "text": {**good["text"], "backend": "bert"}})
    p = tmp_path / "mine.json"
    p.write_text(json.dumps({"model": {"d_model": 48, "n_heads": 4}}))
    c = load_config(p)
    assert c.name == "mine" and c.model.d_model == 48 and c.model.n_layers == 3  # defaults fill the rest
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="unknown config"):
        load_config("huge")


# ---------------------------------------------------------------- audio

def test_audio_features_align_with_video_frames(cfg):
    sr, fps = 16000, 30.0
    wav = np.zeros(sr * 2, dtype=np.float32)  # 2 s -> 60 frames
    t = np.arange(sr * 2) / sr
    on = (t >= 20 / fps) & (t < 30 / fps)      # a tone exactly during frames 20..29
    wav[on] = 0.5 * np.sin(2 * np.pi * 440 * t[on])
    f = audio_features(wav, fps, None, cfg)
    assert f.shape == (60, cfg.audio.n_mels) and f.dtype == torch.float32
    energy = f.mean(1)
    loud = energy > (SILENCE + 0.5)
    assert loud[21:29].all() and not loud[:19].any() and not loud[31:].any()
    assert torch.allclose(f[:15], torch.full_like(f[:15], SILENCE))  # digital silence is a constant
    # explicit frame counts pad (silence) or cut
    g = audio_features(wav, fps, 75, cfg)
    assert g.shape == (75, cfg.audio.n_mels) and torch.allclose(g[65:], torch.full_like(g[65:], SILENCE))
    assert audio_features(wav, fps, 10, cfg).shape == (10, cfg.audio.n_mels)
    with pytest.raises(InputError):
        audio_features(np.zeros((2, 100), np.float32), fps, None, cfg)


def test_audio_features_on_real_speech(cfg, fixtures):
    from talkclip.annotate.media import load_audio

    wav = load_audio(SPEECH / "hello_en.wav")
    f = audio_features(wav, 25.0, None, load_config("base"))
    assert f.shape == (int(len(wav) / 16000 * 25), 80) and torch.isfinite(f).all()
    assert f.std(0).mean() > 0.05  # speech varies over time


def test_unfold_windows_matches_a_loop():
    x = torch.arange(2 * 7 * 3, dtype=torch.float32).view(2, 7, 3)
    u = unfold_windows(x, 2, -9.0)
    assert u.shape == (2, 7, 5, 3)
    for t in range(7):
        for k in range(5):
            src = t + k - 2
            want = x[:, src] if 0 <= src < 7 else torch.full((2, 3), -9.0)
            assert torch.equal(u[:, t, k], want)


# ---------------------------------------------------------------- style encoders

def test_video_style_padding_does_not_change_the_code(cfg):
    torch.manual_seed(0)
    enc = VideoStyleEncoder(cfg.model).eval()
    x = torch.rand(2, 30, 52)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    s = enc(x, mask)
    assert s.shape == (2, cfg.model.style_dim) and torch.isfinite(s).all()
    y = x.clone()
    y[1, 20:] = torch.rand(10, 52) * 5  # garbage in padded frames
    assert torch.allclose(enc(y, mask), s, atol=1e-5)
    # more padding frames appended: same code; the unpadded clip alone: same code
    z = torch.cat([x, torch.rand(2, 12, 52)], 1)
    zm = torch.cat([mask, torch.zeros(2, 12, dtype=torch.bool)], 1)
    assert torch.allclose(enc(z, zm), s, atol=1e-5)
    assert torch.allclose(enc(x[1:, :20]), s[1:], atol=1e-5)
    assert not torch.allclose(enc(x), s)  # the mask matters
    with pytest.raises(AssertionError, match="at most"):
        enc(torch.rand(1, cfg.model.style_frames + 1, 52))


def test_text_style_encoder_freezing_cache_and_blend(model, cfg):
    te = model.text
    assert all(not p.requires_grad for p in te.backbone.parameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("text.")}
    assert trainable and all(n.startswith(("text.adapter.", "text.proj.")) for n in trainable)
    te.clear_cache()
    texts = ["A man is happy.", "A woman is angry.", "A man is happy."]
    s = model.text_style(texts)
    assert s.shape == (3, cfg.model.style_dim)
    assert len(te._cache) == 2 and torch.allclose(s[0], s[2])
    e_t = te.proj(te.embed(texts))
    assert torch.allclose(s, cfg.text.beta * te.adapter(e_t) + (1 - cfg.text.beta) * e_t, atol=1e-6)
    model.train()
    assert not te.backbone.training  # frozen backbone stays in eval mode
    # the cache returns the same embedding the backbone computes
    assert torch.allclose(te.embed(["A woman is angry."]), te.backbone(["A woman is angry."]), atol=1e-6)
    # ... in the precision asked for: a bf16 embedding is kept apart from the fp32 one
    fp32 = te.embed(["A calm man."])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = te.embed(["A calm man."])
    assert not torch.equal(bf16, fp32) and torch.equal(te.embed(["A calm man."]), fp32)


def test_clip_backend_needs_local_weights_and_loads_them(tmp_path):
    from safetensors.torch import save_file

    from talkclip.model.text import ClipTextBackbone

    c = load_config("base").text
    c.hf_repo = "nobody/not-cached-anywhere"
    with pytest.raises(MissingAssetError, match="not in the Hugging Face cache and HF_HUB_OFFLINE is set"):
        ClipTextBackbone(c)
    c.weights = str(tmp_path / "missing.safetensors")
    with pytest.raises(MissingAssetError, match="not found"):
        ClipTextBackbone(c)
    # a (random) ViT-B-32 CLIP state dict in open_clip's key layout, with a vision key to ignore
    torch.manual_seed(1)
    ref = ClipTextBackbone(c, load_weights=False).eval()
    sd = {k: v.contiguous() for k, v in ref.tower.state_dict().items() if k != "attn_mask"}
    sd["visual.proj"] = torch.zeros(3, 3)
    save_file(sd, str(tmp_path / "clip.safetensors"))
    c.weights = str(tmp_path / "clip.safetensors")
    torch.manual_seed(2)
    loaded = ClipTextBackbone(c).eval()
    with torch.no_grad():
        a, b = ref(["she is beaming"]), loaded(["she is beaming"])
    assert a.shape == (1, 512) and torch.allclose(a, b, atol=1e-5)
    save_file({"token_embedding.weight": torch.zeros(2, 2)}, str(tmp_path / "wrong.safetensors"))
    c.weights = str(tmp_path / "wrong.safetensors")
    with pytest.raises(MissingAssetError, match="lack text-tower keys"):
        ClipTextBackbone(c)


def test_clip_tower_cut_after_end_of_text_equals_the_whole_context():
    """encode_tokens runs CLIP's text tower on each caption up to its end-of-text token: the same
    features as the whole 77-token context, for captions of different lengths, and a caption's
    features do not depend on the rest of its batch (bit for bit: training caches them)."""
    from talkclip.model.text import ClipTextBackbone

    c = load_config("base").text
    c.backend, c.hf_repo = "clip-random", None
    torch.manual_seed(3)
    b = ClipTextBackbone(c, load_weights=False).eval()
    caps = ["calm", "A woman is delighted and speaks with lip corners pulled and inner brows raised.", "a man"]
    tokens = b._tokenizer(caps, context_length=b.context_length)                # (3, 77)
    assert int(tokens.argmax(-1).max()) < 30                                     # so the cut is real
    with torch.no_grad():
        whole, cut = b.tower(tokens), b.encode_tokens(tokens)
    assert whole.shape == cut.shape == (3, 512)
    assert torch.allclose(whole, cut, atol=1e-5) and whole.std() > 0.1
    with torch.no_grad():
        assert torch.equal(b.encode_tokens(tokens[1:2]), cut[1:2])
    with torch.no_grad():                                                        # a caption filling the context
        long = b._tokenizer(["word " * 100], context_length=b.context_length)
        assert torch.allclose(b.tower(long), b.encode_tokens(long), atol=1e-5)


def test_minilm_backend_projects_to_style_size():
    c = load_config("tiny")
    c.text.backend, c.text.width, c.text.layers, c.text.heads, c.text.context_length = "minilm", None, None, None, None
    torch.manual_seed(0)
    m = TalkCLIP(c)
    assert m.text.backbone.width == 384 and isinstance(m.text.proj, torch.nn.Linear)
    e = m.text.embed(["She is beaming with joy.", "She is smiling happily.", "The stock market fell sharply."])
    cos = torch.nn.functional.cosine_similarity
    assert cos(e[0], e[1], dim=0) > cos(e[0], e[2], dim=0) + 0.2  # a real sentence encoder
    assert m.text_style(["a"]).shape == (1, c.model.style_dim)


# ---------------------------------------------------------------- decoder, discriminators, full model

def test_forward_shapes_losses_and_text_mask(model, cfg):
    b = _batch(cfg)
    model.train()
    mask = torch.tensor([True, False, True])
    out, losses = model(b, mask)
    B, Lq = 3, cfg.model.seq_len
    assert out["pred"].shape == (B, Lq, 52)
    assert out["pred"].min() >= 0 and out["pred"].max() <= 1
    assert torch.equal(out["style"][0], out["s_t"][0]) and torch.equal(out["style"][1], out["s_v"][1])
    for k in ("rec", "l1", "ssim", "cos", "tem", "total"):
        assert torch.isfinite(losses[k]), k
    assert "sync" not in losses  # no pre-trained sync discriminator loaded
    losses["total"].backward()
    assert model.text.adapter.net[0].weight.grad is not None
    assert all(p.grad is None for p in model.text.backbone.parameters())
    assert all(p.grad is None for p in model.sync_disc.parameters())
    model.zero_grad(set_to_none=True)
    d = model.disc_loss(out["pred"], b["blendshapes"])
    assert torch.isfinite(d) and d > 0


def test_frame_output_depends_only_on_its_audio_window(model, cfg):
    model.eval()
    w = cfg.model.window
    T = 40
    feats = torch.randn(T, cfg.audio.n_mels)
    style = model.text_style(["A man is happy."])[0]
    y = model.generate(feats, style)
    assert y.shape == (T, 52) and (y >= 0).all() and (y <= 1).all()
    f2 = feats.clone()
    f2[0] += 3.0
    y2 = model.generate(f2, style)
    assert not torch.allclose(y2[: w + 1], y[: w + 1])          # frames that see frame 0 change
    assert torch.allclose(y2[w + 1:], y[w + 1:], atol=1e-6)     # the others do not
    # chunked generation equals one pass
    assert torch.allclose(model.generate(feats, style, chunk=7), y, atol=1e-5)
    assert model.generate(torch.zeros(0, cfg.audio.n_mels), style).shape == (0, 52)


def test_inference_decoder_runs_its_last_layer_on_the_centre_only(model, cfg):
    """In eval mode the decoder's last layer works on the centre token alone: the same curves as
    the whole nn.TransformerDecoder (which training still runs), with and without bf16."""
    dec = model.decoder
    was = dec.training
    dec.eval()
    try:
        N, K, d = 30, 2 * cfg.model.window + 1, cfg.model.d_model
        content, style = torch.randn(N, K, d), torch.randn(N, cfg.model.style_dim)
        tgt = content + dec.style_add(style)[:, None]
        whole = torch.sigmoid(dec.head(dec.dec(tgt, dec.style_mem(style).view(N, dec.n_tok, d))[:, dec.centre]))
        with torch.no_grad():
            fast = dec(content, style)
            torch.testing.assert_close(fast, whole.detach(), atol=2e-6, rtol=0)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                cast = dec(content, style)
            assert cast.dtype == torch.float32            # the head and its sigmoid stay fp32
            assert 0 < (cast - whole).abs().max() < 0.02
        dec.train()                                   # training: the whole decoder, dropout draws included
        torch.manual_seed(1)
        trained = dec(content, style)
        torch.manual_seed(1)
        mem = dec.style_mem(style).view(N, dec.n_tok, d)
        torch.testing.assert_close(trained, torch.sigmoid(dec.head(dec.dec(tgt, mem)[:, dec.centre])), atol=0, rtol=0)
    finally:
        dec.train(was)


def test_phoneme_input_switch():
    c = load_config("tiny")
    c.model.audio_input = "mel+phoneme"
    torch.manual_seed(0)
    m = TalkCLIP(c)
    b = _batch(c, B=2)
    with pytest.raises(InputError, match="phoneme"):
        m(b)
    b["phonemes"] = torch.randint(0, c.model.n_phonemes, (2, c.model.seq_len + 2 * c.model.window))
    out, losses = m(b)
    assert out["pred"].shape == (2, c.model.seq_len, 52) and torch.isfinite(losses["total"])
    y = m.generate(torch.randn(20, c.audio.n_mels), torch.randn(c.model.style_dim), phonemes=torch.randint(0, 42, (20,)))
    assert y.shape == (20, 52)


def test_discriminator_shapes(cfg):
    tem = TemporalDiscriminator(cfg.model)
    seq = torch.rand(3, cfg.model.seq_len, 52)
    assert tem(seq).shape == (3, cfg.model.seq_len // 4)
    sync = SyncDiscriminator(cfg.model, cfg.audio.n_mels)
    K = cfg.model.sync_window
    assert sync(torch.rand(5, K, 52), torch.rand(5, K, cfg.audio.n_mels)).shape == (5,)
    n_win = len(range(0, cfg.model.seq_len - K + 1, max(1, K // 2)))
    assert sync.sequence_logits(seq, torch.rand(3, cfg.model.seq_len, cfg.audio.n_mels)).shape == (3, n_win)
    from talkclip.schemas import BLENDSHAPE_NAMES

    names = {BLENDSHAPE_NAMES[i] for i in MOUTH_CHANNELS}
    assert len(names) == 28 and {"jawOpen", "mouthClose", "cheekPuff"} <= names and "browInnerUp" not in names
    sync.freeze()
    assert not sync.training and not any(p.requires_grad for p in sync.parameters())


# ---------------------------------------------------------------- losses

def test_losses_behave():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 32, 52, generator=g)
    assert torch.isclose(L.ssim_1d(x, x, 11), torch.tensor(1.0), atol=1e-6)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert L.ssim_1d(x, noisy, 11) < 0.9
    assert L.ssim_1d(x, (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1), 11) > L.ssim_1d(x, noisy, 11)
    rec, l1, lssim = L.rec_loss(noisy, x, 0.1, 11)
    assert torch.isclose(rec, 0.1 * l1 + 0.9 * lssim)
    mask = torch.ones(2, 32, dtype=torch.bool)
    mask[:, 10:] = False
    y = x.clone()
    y[:, 10:] += 1.0  # errors only where the mask is off
    assert L.l1_loss(y, x, mask) == 0 and L.l1_loss(y, x) > 0.5
    a = torch.randn(4, 8)
    assert torch.isclose(L.cos_loss(a, a), torch.tensor(0.0), atol=1e-6)
    assert torch.isclose(L.cos_loss(a, -a), torch.tensor(2.0), atol=1e-6)
    assert L.hinge_d_loss(torch.full((3,), 2.0), torch.full((3,), -2.0)) == 0
    assert L.hinge_d_loss(torch.zeros(3), torch.zeros(3)) == 2
    assert L.hinge_g_loss(torch.full((3,), 1.5)) == -1.5
    assert L.sync_loss(torch.full((4,), 20.0)) < 1e-6 and L.sync_loss(torch.zeros(4)) > 0.69


def test_forward_under_bf16_autocast(cfg):
    """The CUDA training path uses bf16 autocast; the same maths runs under CPU autocast here."""
    torch.manual_seed(0)
    m = TalkCLIP(cfg)
    s = SyncDiscriminator(cfg.model, cfg.audio.n_mels)
    m.load_sync_discriminator(s)
    b = _batch(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, losses = m(b, torch.tensor([True, False, True]))
        d = m.disc_loss(out["pred"], b["blendshapes"])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    (losses["total"] + d).backward()
    assert torch.isfinite(m.decoder.head.weight.grad).all()
