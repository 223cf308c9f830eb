"""Stage / text-probability schedule (paper 4.1.2)."""

from __future__ import annotations

import pytest

from talkclip import InputError
from talkclip.model.config import load_config
from talkclip.model.schedule import p_schedule, stage1_steps, stage_at


def test_p_rises_linearly_from_zero_to_half_then_stays():
    cfg = load_config("tiny")
    cfg.train.p_ramp_steps, cfg.train.p_max = 100, 0.5
    assert p_schedule(0, cfg) == 0.0
    assert p_schedule(50, cfg) == pytest.approx(0.25)
    assert p_schedule(100, cfg) == pytest.approx(0.5)
    assert p_schedule(10_000, cfg) == pytest.approx(0.5)
    ps = [p_schedule(s, cfg) for s in range(0, 120)]
    assert all(b >= a for a, b in zip(ps, ps[1:]))
    cfg.train.p_ramp_steps = 0
    assert p_schedule(0, cfg) == 0.5


def test_stages():
    cfg = load_config("tiny")
    cfg.train.p_ramp_steps, cfg.train.stage1_fraction = 10, 0.4
    assert stage1_steps("1", 50, cfg) == 50 and stage1_steps("2", 50, cfg) == 0
    n1 = stage1_steps("both", 50, cfg)
    assert n1 == 20
    assert stage_at(0, n1, cfg) == (1, 0.0) and stage_at(19, n1, cfg) == (1, 0.0)
    assert stage_at(20, n1, cfg) == (2, 0.0)          # stage 2 starts at p = 0
    assert stage_at(25, n1, cfg) == (2, pytest.approx(0.25))
    assert stage_at(49, n1, cfg) == (2, pytest.approx(0.5))
    with pytest.raises(InputError, match="--stage must be 1, 2 or both"):
        stage1_steps("3", 10, cfg)
