"""Training schedule of the paper (section 4.1.2): stage 1 feeds only s_v; stage 2 feeds s_t with a
probability p that rises linearly from 0 to ``train.p_max`` (0.5) over ``train.p_ramp_steps``
stage-2 steps. ``--stage both`` spends the first ``round(stage1_fraction * steps)`` steps in stage 1."""

from __future__ import annotations

from talkclip import InputError

from .config import TalkCLIPConfig

STAGES = ("1", "2", "both")


def p_schedule(step: int, cfg: TalkCLIPConfig) -> float:
    """Probability of feeding the text style code at stage-2 step ``step`` (0-based)."""
    tr = cfg.train
    if step < 0:
        return 0.0
    if tr.p_ramp_steps <= 0:
        return tr.p_max
    return tr.p_max * min(1.0, step / tr.p_ramp_steps)


def stage1_steps(stage: str, total_steps: int, cfg: TalkCLIPConfig) -> int:
    """How many of the first steps are stage 1."""
    if stage not in STAGES:
        raise InputError(f"--stage must be 1, 2 or both, got {stage!r}")
    if stage == "1":
        return total_steps
    if stage == "2":
        return 0
    return int(round(cfg.train.stage1_fraction * total_steps))


def stage_at(step: int, n_stage1: int, cfg: TalkCLIPConfig) -> tuple[int, float]:
    """(stage, p) at global step ``step`` when the first ``n_stage1`` steps are stage 1."""
    if step < n_stage1:
        return 1, 0.0
    return 2, p_schedule(step - n_stage1, cfg)
