"""The one place where a user's ``--device`` string becomes a torch device."""

from __future__ import annotations

from talkclip import InputError


def resolve_device(name: str | None = "cpu"):
    """"cpu", "cuda" or "cuda:N" -> torch.device; a one-line InputError for anything else or for
    CUDA on a machine without it."""
    import torch

    name = (name or "cpu").strip().lower()
    if name not in ("cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise InputError(f"unknown device {name!r} (cpu, cuda or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but CUDA is not available here")
    return torch.device(name)
