"""calibrate (thresholds from a build, used by a rebuild) and stats on the mini-MEAD build."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from talkclip import InputError, LayoutError
from talkclip.pipelines.calibrate import MIN_GAP, calibrate, derive_thresholds

from support import assert_one_line_error, cached_mini_build, read_build_tables, run_data_cli


@pytest.fixture(scope="module")
def built(fixtures, landmarker):
    return cached_mini_build()


def test_derive_thresholds_follows_the_quantiles():
    rng = np.random.default_rng(0)
    neutral = rng.uniform(0, 1, size=(2000, 12))
    emotional = rng.uniform(0, 4, size=(4000, 12))
    emotional[:, 5] = 0.0                                  # AU9 never active among emotional clips
    base = np.tile([1.0, 2.0, 3.5], (12, 1))
    t, n_active = derive_thresholds(neutral, emotional, base)
    assert np.allclose(t[:, 0], 0.95, atol=0.02)           # 95th percentile of U(0, 1)
    # among emotional values >= 0.95 (uniform on [0.95, 4]): median ~2.47, 85th pct ~3.54
    assert np.allclose(t[[0, 1, 2, 3, 4, 6], 1], 2.475, atol=0.08)
    assert np.allclose(t[[0, 1, 2, 3, 4, 6], 2], 3.54, atol=0.08)
    assert n_active[5] == 0 and np.allclose(t[5], t[5, 0] + np.array([0.0, 1.0, 2.5]))  # base spacing kept
    assert np.all(np.diff(t, axis=1) >= MIN_GAP - 1e-9) and t.max() <= 5.0


def test_calibrate_writes_a_table_the_build_uses(built, tmp_path):
    from talkclip.annotate.au import load_au_table
    from talkclip.pipelines.build_ta_mead import build_ta_mead

    facts, straight = built
    out = tmp_path / "copy"
    shutil.copytree(straight, out)
    rep = calibrate(out, out_file=tmp_path / "cal.csv")
    table = load_au_table(rep.path)
    assert np.allclose(table.thresholds, rep.thresholds) and rep.n_neutral == 4 and rep.n_emotional == 7
    assert any("rough" in w for w in rep.warnings)
    clips = read_build_tables(out)["clips"].to_pylist()
    neutral = np.array([r["au_intensity"] for r in clips if r["emotion"] == "neutral"])
    assert np.all(rep.thresholds[:, 0] >= np.quantile(neutral, 0.95, axis=0) - 6e-5)  # 4-decimal rounding
    assert "CALIBRATED" in rep.path.read_text() and table.phrase(1, 3) == load_au_table().phrase(1, 3)
    s = build_ta_mead(facts["root"], out, au_table=rep.path)
    assert s.processed == s.retried == s.still_failing == 3   # only the failed clips are tried again
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["au_table_sha256"] == table.sha256
    for r in read_build_tables(out)["clips"].to_pylist():
        assert r["au_level"] == [int(x) for x in table.levels(np.array(r["au_intensity"]))]


def test_calibrate_errors(built, tmp_path):
    with pytest.raises(LayoutError, match="not a TA-MEAD build"):
        calibrate(tmp_path)
    with pytest.raises(InputError, match="between 0 and 1"):
        calibrate(built[1], neutral_q=1.5)


def test_stats_counts_and_rates(built):
    from talkclip.pipelines.stats import dataset_stats

    _, out = built
    st = dataset_stats(out)
    clips = read_build_tables(out)["clips"].to_pylist()
    assert st.clips == 11 and st.speakers == 2 and st.failures_by_stage == {"audio": 1, "decode": 1, "track": 1}
    assert sum(g.clips for g in st.groups) == 11 and st.av_mismatch == 1
    groups = {(g.emotion, g.level): g for g in st.groups}
    assert groups[("neutral", 1)].clips == 4 and st.groups[0].emotion == "neutral"
    happy = [r for r in clips if (r["emotion"], r["level"]) == ("happy", 2)]
    want = (np.array([r["au_level"] for r in happy]) >= 1).mean(0)
    assert np.allclose(groups[("happy", 2)].activation, want, atol=1e-3)
    all_caps = {c for r in clips for c in r["captions"]}
    assert st.samples and all(text in all_caps for _, text in st.samples)


def test_stats_and_calibrate_cli(built, tmp_path):
    from talkclip.cli import data

    _, straight = built
    out = tmp_path / "copy"
    shutil.copytree(straight, out)
    runner = CliRunner()
    res = runner.invoke(data, ["stats", str(out)])
    assert res.exit_code == 0, res.output
    assert "11 clips" in res.output and "neutral/1" in res.output and "sample captions" in res.output
    res = runner.invoke(data, ["calibrate", str(out), "--out", str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t.csv").is_file() and "--au-table" in res.output


def test_stats_figures_show_the_counts_and_rates(built):
    from talkclip.pipelines.plots import stats_figures
    from talkclip.pipelines.stats import dataset_stats

    st = dataset_stats(built[1])
    counts, activation = stats_figures(st)
    bars = counts.axes[0].patches
    emotions = sorted({g.emotion for g in st.groups})
    heights = {(round(b.get_x() + b.get_width() / 2 + 0.27 * (2 - lv)), lv): b.get_height()   # bar centre -> emotion index
               for lv, chunk in zip((1, 2, 3), np.split(np.array(bars), 3)) for b in chunk}
    for g in st.groups:
        assert heights[(emotions.index(g.emotion), g.level)] == g.clips
    shown = activation.axes[0].get_images()[0].get_array()
    assert np.allclose(shown, 100 * np.array([g.activation for g in st.groups]))


def test_stats_cli_writes_the_plots_and_refuses_a_bad_folder_first(built, tmp_path):
    from PIL import Image

    from talkclip.cli import data

    build = built[1]
    res = CliRunner().invoke(data, ["stats", str(build), "--plots", str(tmp_path / "plots" / "new")])
    assert res.exit_code == 0, res.output
    for name in ("clips_per_level.png", "au_activation.png"):
        with Image.open(tmp_path / "plots" / "new" / name) as im:
            assert im.format == "PNG" and im.size[0] == 650
    assert "plots: " in res.output
    (tmp_path / "file").write_text("x")
    line = assert_one_line_error(run_data_cli("stats", build, "--plots", tmp_path / "file"))
    assert "is a file, not a folder" in line
