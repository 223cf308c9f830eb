"""pipelines/plots.py: the figures draw the data they are given; trainers write their log plots.
(`stats --plots`: tests/pipelines/test_calibrate_stats.py.)"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from talkclip import InputError
from talkclip.pipelines.plots import log_figure, moving_mean, read_log, save_png
from talkclip.pipelines.push import CheckpointPushOptions, plan_checkpoint_push

from support import write_synthetic_tamead


def _write_log(path, rows, columns):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return path


def test_moving_mean_is_the_centred_mean_of_the_finite_values():
    rng = np.random.default_rng(0)
    v = rng.normal(size=40)
    v[[3, 4, 17]] = np.nan
    for window in (1, 2, 5, 8):
        got = moving_mean(v, window)
        for i in range(len(v)):
            part = v[max(0, i - window // 2):min(len(v), i + (window + 1) // 2)]
            want = np.nanmean(part) if np.isfinite(part).any() else np.nan
            assert got[i] == pytest.approx(want, nan_ok=True), (window, i)
    assert np.isnan(moving_mean(np.array([np.nan, np.nan, 1.0]), 2)[0])


def test_log_figure_draws_each_logged_column_against_the_step(tmp_path):
    rng = np.random.default_rng(1)
    cols = ("step", "stage", "total", "sync", "empty", "seconds")
    rows = [{"step": s, "stage": 1 + (s > 30), "total": f"{x:.6g}", "sync": f"{x / 2:.6g}" if s % 2 else "",
             "empty": "", "seconds": 0.1 * s} for s, x in zip(range(1, 61), rng.uniform(0, 5, 60))]
    log = _write_log(tmp_path / "train_log.csv", rows, cols)
    steps, values = read_log(log, skip=("stage",))
    assert list(values) == ["total", "sync"]            # step, seconds, skipped and empty columns left out
    assert np.array_equal(steps, np.arange(1, 61))
    assert np.isnan(values["sync"][1]) and values["sync"][0] == pytest.approx(float(rows[0]["sync"]))

    fig = log_figure(log, "train: x", skip=("stage",))
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["total", "sync"]
    raw, smooth = shown[0].get_lines()                  # 60 points: the logged line and its moving mean
    assert np.array_equal(raw.get_xdata(), steps)
    assert np.allclose(raw.get_ydata(), [float(r["total"]) for r in rows])
    assert np.allclose(smooth.get_ydata(), moving_mean(values["total"], 6))
    png = save_png(fig, tmp_path / "train_log.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (640, 260)  # 2 panels: (3.2 x 2) x (0.6 + 2.0) in at 100 dpi
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write .*file/a.png"):
        save_png(fig, tmp_path / "file" / "a.png")


def test_read_log_leaves_out_words_and_refuses_an_empty_log(tmp_path):
    log = _write_log(tmp_path / "a.csv", [{"step": 1, "loss": "0.5", "note": "warm-up"},
                                          {"step": 2, "loss": "0.25", "note": ""}], ("step", "loss", "note"))
    steps, values = read_log(log)
    assert list(values) == ["loss"] and np.array_equal(values["loss"], [0.5, 0.25])
    with pytest.raises(ValueError, match="no rows"):
        read_log(_write_log(tmp_path / "b.csv", [], ("step", "loss")))


def test_every_trainer_writes_its_log_plot_and_a_failed_plot_is_only_a_note(tmp_path, monkeypatch):
    from talkclip.pipelines import plots
    from talkclip.pipelines.train import train, train_sync

    drawn = {}
    save = plots.save_png

    def recording_save(fig, path):
        drawn[path.name] = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        return save(fig, path)

    monkeypatch.setattr(plots, "save_png", recording_save)
    data = write_synthetic_tamead(tmp_path / "ta", n_clips=4, frames=60, seed=3)
    s = train(data, "tiny", tmp_path / "g", steps=4, workers=0, log_every=1)
    assert (tmp_path / "g" / "train_log.png").is_file() and not [n for n in s.notes if "plot" in n]
    # the schedule's flags are left out (TalkCLIPSolver.plot_skip); sync has no value without a sync model
    assert drawn["train_log.png"] == ["p", "total", "rec", "l1", "ssim", "cos", "tem", "d_tem"]
    train_sync(data, "tiny", tmp_path / "s", steps=3, workers=0)
    assert (tmp_path / "s" / "sync_log.png").is_file() and drawn["sync_log.png"] == ["loss", "acc"]
    # a push carries each kind's own plot (shown in the card), and its log CSV with the resume state
    plan = plan_checkpoint_push(CheckpointPushOptions(tmp_path / "s", "me/sync", with_state=True))
    assert {"sync_log.png", "sync_log.csv", "trainer_state.json"} <= {name for name, _ in plan.files}
    assert "](sync_log.png)" in plan.files[0][1].decode()

    def broken(*a, **k):
        raise ValueError("no backend\nsecond line")

    monkeypatch.setattr(plots, "log_figure", broken)
    s = train(data, "tiny", tmp_path / "h", steps=2, workers=0, log_every=1)
    assert s.steps == 2 and (tmp_path / "h" / "model.safetensors").is_file()
    assert not (tmp_path / "h" / "train_log.png").exists()
    assert "no loss plot (no backend)" in s.notes
