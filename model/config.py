"""Model and training configuration: nested dataclasses read from JSON files.

A model variant is a JSON file (``model/configs/<name>.json``), never a flag. ``load_config``
accepts a packaged name (``"tiny"``, ``"base"``) or a path, rejects unknown keys and bad values
with :class:`talkclip.ConfigError` (one line), and fills omitted keys with the defaults below
(which are the paper's / StyleTalk's settings).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from talkclip import ConfigError, one_line
from talkclip.annotate.phonemes import n_phonemes

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

TEXT_BACKENDS = ("clip", "clip-random", "minilm")
AUDIO_INPUTS = ("mel", "phoneme", "mel+phoneme")


@dataclass
class ModelConfig:
    d_model: int = 256          # transformer width of every encoder/decoder
    n_heads: int = 8
    n_layers: int = 3           # layers of the style encoder, content encoder and decoder (each)
    ffn: int = 1024
    dropout: float = 0.1
    window: int = 5             # w: the decoder sees 2w+1 audio frames around the predicted frame
    seq_len: int = 64           # L: frames per training sequence
    style_dim: int = 256        # size of the style code s_v / s_t
    style_frames: int = 256     # most frames the video-to-style encoder reads
    style_tokens: int = 4       # the style code is split into this many decoder memory tokens
    audio_input: str = "mel"    # "mel" | "phoneme" | "mel+phoneme" (phoneme ids need alignments)
    n_phonemes: int = 42        # rows of the phone table annotate/data/phones.csv (silence = id 0)
    tem_disc_channels: int = 128  # width of the temporal PatchGAN discriminator
    sync_window: int = 9        # frames the lip-sync discriminator compares
    sync_dim: int = 128         # embedding size inside the lip-sync discriminator


@dataclass
class TextConfig:
    backend: str = "clip"       # "clip" (open_clip tower + weights) | "clip-random" | "minilm"
    clip_model: str = "ViT-B-32"
    weights: str | None = None  # local .safetensors of an open_clip CLIP model (text keys used)
    hf_repo: str | None = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # HF cache, else downloaded
    hf_file: str = "open_clip_model.safetensors"
    quick_gelu: bool = False    # True for OpenAI's original weights
    width: int | None = None    # clip-random only: override the tower's width/layers/heads/context
    layers: int | None = None
    heads: int | None = None
    context_length: int | None = None
    adapter_reduction: int = 4  # CLIP-Adapter bottleneck = width // reduction
    beta: float = 0.6           # s_t = beta * e_s + (1 - beta) * e_t


@dataclass
class AudioConfig:
    sample_rate: int = 16_000
    n_mels: int = 80
    n_fft: int = 512
    win_length: int = 400       # 25 ms
    hop_length: int = 160       # 10 ms; mel frames are then area-averaged onto video frames
    f_min: float = 55.0
    f_max: float = 7600.0


@dataclass
class LossConfig:
    rec: float = 88.0           # lambda_rec
    cos: float = 1.0            # lambda_cos
    sync: float = 1.0           # lambda_sync
    tem: float = 1.0            # lambda_tem
    mu: float = 0.1             # L_rec = mu * L1 + (1 - mu) * (1 - SSIM)
    ssim_window: int = 11       # frames per SSIM window (1-D SSIM over time, per channel)
    cos_detach_video: bool = True  # L_cos moves s_t towards s_v, not s_v towards s_t


@dataclass
class TrainConfig:
    batch_size: int = 32
    lr: float = 1e-4
    disc_lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0      # 0 = off
    stage1_fraction: float = 0.5  # with --stage both: share of steps spent in stage 1
    p_max: float = 0.5          # probability of feeding s_t reaches p_max ...
    p_ramp_steps: int = 10_000  # ... after this many stage-2 steps (linear from 0)
    tem_start_step: int = 0     # L_tem (and its discriminator) switched on from this step
    checkpoint_every: int = 0   # 0 = only at the end
    log_every: int = 10
    workers: int = 2
    sync_steps: int = 2000      # default steps of `talkclip train-sync`
    sync_lr: float = 1e-4
    sync_min_shift: int = 3     # negatives: audio shifted by at least this many frames


@dataclass
class TalkCLIPConfig:
    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    text: TextConfig = field(default_factory=TextConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _check_value(where: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a simple type hint; return it normalised (ints to floats etc.)."""
    s = str(hint)
    if value is None:
        if "None" in s:
            return None
        raise ConfigError(f"config {where}: null is not allowed")
    if "tuple" in s:
        if not (isinstance(value, (list, tuple)) and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ConfigError(f"config {where}: expected a pair of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if hint is bool or s.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"config {where}: expected true/false, got {value!r}")
        return value
    if hint is int or s.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config {where}: expected an integer, got {value!r}")
        return value
    if hint is float or s.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config {where}: expected a number, got {value!r}")
        return float(value)
    if hint is str or s.startswith("str"):
        if not isinstance(value, str):
            raise ConfigError(f"config {where}: expected a string, got {value!r}")
        return value
    return value


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"config {where or 'root'}: expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"config {where or 'root'}: unknown key(s) {', '.join(unknown)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = _check_value(key, value, hint)
    return cls(**kwargs)


def validate(cfg: TalkCLIPConfig) -> TalkCLIPConfig:
    """Raise ConfigError (one line) on values no model can be built with."""
    m, t, a, lo, tr = cfg.model, cfg.text, cfg.audio, cfg.loss, cfg.train
    checks = [
        (m.d_model > 0 and m.d_model % m.n_heads == 0, "model.d_model must be a positive multiple of model.n_heads"),
        (m.n_layers >= 1 and m.ffn >= 1, "model.n_layers and model.ffn must be >= 1"),
        (0.0 <= m.dropout < 1.0, "model.dropout must be in [0, 1)"),
        (m.window >= 0, "model.window must be >= 0"),
        (m.seq_len >= 2, "model.seq_len must be >= 2"),
        (m.style_dim >= 1 and m.style_frames >= 1, "model.style_dim and model.style_frames must be >= 1"),
        (m.style_tokens >= 1, "model.style_tokens must be >= 1"),
        (m.audio_input in AUDIO_INPUTS, f"model.audio_input must be one of {', '.join(AUDIO_INPUTS)}"),
        (m.n_phonemes >= 2, "model.n_phonemes must be >= 2"),
        ("phoneme" not in m.audio_input or m.n_phonemes == n_phonemes(),
         f"model.n_phonemes must be {n_phonemes()} (the phone table's size) when model.audio_input uses phonemes"),
        (1 <= m.sync_window <= m.seq_len, "model.sync_window must be in [1, model.seq_len]"),
        (t.backend in TEXT_BACKENDS, f"text.backend must be one of {', '.join(TEXT_BACKENDS)}"),
        (t.adapter_reduction >= 1, "text.adapter_reduction must be >= 1"),
        (0.0 <= t.beta <= 1.0, "text.beta must be in [0, 1]"),
        (a.n_mels >= 1 and a.n_fft >= a.win_length >= 1 and a.hop_length >= 1,
         "audio: need n_mels >= 1 and n_fft >= win_length >= 1, hop_length >= 1"),
        (0 <= a.f_min < a.f_max <= a.sample_rate / 2, "audio: need 0 <= f_min < f_max <= sample_rate/2"),
        (0.0 <= lo.mu <= 1.0, "loss.mu must be in [0, 1]"),
        (min(lo.rec, lo.cos, lo.sync, lo.tem) >= 0, "loss weights must be >= 0"),
        (lo.ssim_window >= 3 and lo.ssim_window % 2 == 1 and lo.ssim_window <= m.seq_len,
         "loss.ssim_window must be odd, >= 3 and <= model.seq_len"),
        (tr.batch_size >= 1 and tr.lr > 0 and tr.disc_lr > 0 and tr.sync_lr > 0, "train: batch_size >= 1 and positive learning rates"),
        (0.0 <= tr.stage1_fraction <= 1.0, "train.stage1_fraction must be in [0, 1]"),
        (0.0 <= tr.p_max <= 1.0, "train.p_max must be in [0, 1]"),
        (tr.p_ramp_steps >= 0 and tr.checkpoint_every >= 0 and tr.log_every >= 1 and tr.workers >= 0,
         "train: p_ramp_steps, checkpoint_every, workers >= 0 and log_every >= 1"),
        (tr.sync_min_shift >= 1, "train.sync_min_shift must be >= 1"),
        (m.seq_len - m.sync_window >= tr.sync_min_shift,
         "model.seq_len - model.sync_window must be >= train.sync_min_shift (room for shifted negatives)"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"bad config {cfg.name}: {msg}")
    return cfg


def config_from_dict(data: dict[str, Any]) -> TalkCLIPConfig:
    return validate(_build(TalkCLIPConfig, data, ""))


RENDERER_PREFIX = "renderer-"  # packaged renderer configs (model/neural_renderer.py) share the folder


def available_configs(renderer: bool = False) -> list[str]:
    """Names of the packaged TalkCLIP configs (or, with ``renderer``, of the renderer configs)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json") if p.stem.startswith(RENDERER_PREFIX) == renderer)


def read_config_json(name_or_path: str | Path, *, renderer: bool = False) -> dict:
    """The JSON of a packaged config given by name, or of a ``.json`` file given by path.

    Raises a one-line ConfigError for an unknown name, a missing file or unreadable JSON. A
    packaged file without a ``name`` gets its file stem as name.
    """
    kind = "renderer config" if renderer else "config"
    p = Path(name_or_path)
    if p.suffix != ".json" and not p.exists():
        if str(name_or_path) not in available_configs(renderer):
            raise ConfigError(f"unknown {kind} {str(name_or_path)!r}: use one of "
                              f"{', '.join(available_configs(renderer))} or a .json path")
        p = CONFIG_DIR / f"{name_or_path}.json"
    if not p.is_file():
        raise ConfigError(f"{kind} file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {kind} {p}: {one_line(e)}") from None
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": p.stem}
    return data


def load_config(name_or_path: str | Path) -> TalkCLIPConfig:
    """Load a packaged config by name (``"tiny"``, ``"base"``) or a JSON file by path."""
    return config_from_dict(read_config_json(name_or_path))
