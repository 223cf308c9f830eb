"""The project's plots: matplotlib Figure objects (no pyplot state, so threads and servers can draw),
shown by the app and written as PNG by the CLI.

- :func:`au_figure`: a clip's 12 AU intensities, coloured by level, with the level thresholds.
- :func:`curves_figure`: the main blendshape curves of a generated ARKit CSV.
- :func:`stats_figures`: a build's clips per emotion and level, and AU activation per group
  (``talkclip-data stats --plots DIR``).
- :func:`log_figure`: a training log's curves (every trainer writes ``<log>.png`` beside its CSV).
- :func:`save_png`: any of these to a PNG file, written atomically.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from talkclip.schemas import AU_IDS
from talkclip.schemas.files import atomic_write, cannot_write

# main blendshape curves plotted after generation (ARKit names, as in the CSV)
CURVES = {"jaw": ("jawOpen",), "lips": ("mouthSmileLeft", "mouthFunnel", "mouthPucker", "mouthClose"),
          "brows": ("browInnerUp", "browDownLeft", "browOuterUpLeft"), "eyes": ("eyeBlinkLeft", "eyeWideLeft")}


def au_figure(intensity: np.ndarray, levels: np.ndarray, thresholds: np.ndarray, title: str):
    """Bar chart of (12,) AU intensities (0-5) coloured by level, each AU's three level
    thresholds (12, 3) drawn as ticks across its bar."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(AU_IDS))
    colours = np.array(["#c7ccd6", "#9ecae1", "#4292c6", "#08519c"])[np.clip(levels, 0, 3)]
    ax.bar(x, np.nan_to_num(intensity), color=colours, width=0.7)
    for k, (style, name) in enumerate((("dotted", "level 1"), ("dashed", "level 2"), ("solid", "level 3"))):
        ax.hlines(thresholds[:, k], x - 0.42, x + 0.42, colors="#d94801", linestyles=style, linewidth=1.2,
                  label=f"{name} threshold")
    ax.set_xticks(x, [f"AU{a}" for a in AU_IDS])
    ax.set_ylim(0, max(5.4, float(np.nanmax(intensity, initial=0)) * 1.08))
    ax.set_ylabel("intensity (0-5)")
    ax.legend(loc="upper right", fontsize=7, ncols=3, frameon=False)
    ax.set_title(title, fontsize=9)
    return fig


def curves_figure(csv_path: Path, fps: float):
    """The main blendshape curves (jaw, lips, brows, eyes) of a generated ARKit CSV over time."""
    from matplotlib.figure import Figure

    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    head, data = rows[0], np.array([[float(v) for v in r[2:]] for r in rows[1:]], dtype=np.float32)  # (T, 52)
    t = np.arange(len(data)) / fps
    fig = Figure(figsize=(7.5, 4.0), dpi=100, layout="constrained")
    axes = fig.subplots(len(CURVES), 1, sharex=True)
    for ax, (part, names) in zip(axes, CURVES.items()):
        for n in names:
            ax.plot(t, data[:, head.index(n) - 2], linewidth=1.1, label=n)
        ax.set_ylim(0, 1)
        ax.set_ylabel(part)
        ax.legend(loc="upper right", fontsize=6, ncols=len(names), frameon=False)
    axes[-1].set_xlabel("time (s)")
    axes[0].set_title("main blendshape curves (ARKit names)", fontsize=9)
    return fig


def stats_figures(st):
    """(clips per emotion and level, AU activation per group) of a DatasetStats."""
    from matplotlib.figure import Figure

    emotions = sorted({g.emotion for g in st.groups})
    fig1 = Figure(figsize=(6.5, 2.8), dpi=100, layout="constrained")
    ax = fig1.add_subplot()
    for lv in (1, 2, 3):
        counts = [sum(g.clips for g in st.groups if g.emotion == e and g.level == lv) for e in emotions]
        ax.bar(np.arange(len(emotions)) + (lv - 2) * 0.27, counts, width=0.27, label=f"level {lv}")
    ax.set_xticks(np.arange(len(emotions)), emotions)
    ax.set_ylabel("clips")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("clips per emotion and level", fontsize=9)
    fig2 = Figure(figsize=(6.5, 0.9 + 0.28 * max(1, len(st.groups))), dpi=100, layout="constrained")
    ax = fig2.add_subplot()
    act = np.array([g.activation for g in st.groups], dtype=np.float32).reshape(-1, len(AU_IDS))  # (G, 12)
    im = ax.imshow(100 * act, vmin=0, vmax=100, cmap="Blues", aspect="auto")
    ax.set_xticks(np.arange(len(AU_IDS)), [f"AU{a}" for a in AU_IDS], fontsize=7)
    ax.set_yticks(np.arange(len(st.groups)), [f"{g.emotion}/{g.level} ({g.clips})" for g in st.groups], fontsize=7)
    fig2.colorbar(im, ax=ax, label="% of clips active")
    ax.set_title("AU activation: % of each group's clips at level >= 1", fontsize=9)
    return fig1, fig2


def read_log(csv_path: Path, skip: tuple[str, ...] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A trainer's CSV log -> (steps (N,), {column: values (N,)}) for every column whose cells are
    numbers or empty (a loss not computed at that step: NaN) with at least one number, minus
    ``step``, ``seconds`` and ``skip``. ValueError when the log has no rows."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{Path(csv_path).name} has no rows")
    steps = np.array([int(r["step"]) for r in rows], dtype=np.int64)
    cols = {}
    for name in rows[0]:
        if name in ("step", "seconds", *skip):
            continue
        try:
            v = np.array([float(r[name]) if r[name] not in ("", None) else np.nan for r in rows], dtype=np.float64)
        except ValueError:      # not a number: nothing to draw
            continue
        if np.isfinite(v).any():
            cols[name] = v
    return steps, cols


def log_figure(csv_path: Path, title: str, skip: tuple[str, ...] = ()):
    """One small panel per logged value against the step: the logged points as a thin line and,
    with more than 20 of them, a centred moving mean over a tenth of the run on top."""
    from matplotlib.figure import Figure

    steps, cols = read_log(csv_path, skip)
    n = max(1, len(cols))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.2 * ncols, 0.6 + 2.0 * nrows), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    for ax, (name, v) in zip(axes, cols.items()):
        ax.plot(steps, v, linewidth=0.7, color="#9ecae1" if len(v) > 20 else "#08519c")
        if len(v) > 20:
            ax.plot(steps, moving_mean(v, max(2, len(v) // 10)), linewidth=1.4, color="#08519c")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for k, ax in enumerate(axes):
        if k >= len(cols):
            ax.set_visible(False)
        elif k + ncols >= len(cols):      # nothing below this panel: it carries the step axis
            ax.set_xlabel("step", fontsize=8)
            ax.xaxis.set_tick_params(labelbottom=True)
    fig.suptitle(title, fontsize=10)
    return fig


def moving_mean(v: np.ndarray, window: int) -> np.ndarray:
    """(N,) -> (N,) mean of the finite values within ``window`` points centred on each point
    (fewer at the ends; NaN where none is finite)."""
    ok = np.isfinite(v)
    s = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    c = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(len(v))
    lo, hi = np.maximum(i - window // 2, 0), np.minimum(i + (window + 1) // 2, len(v))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (s[hi] - s[lo]) / (c[hi] - c[lo])


def save_png(fig, path: Path) -> Path:
    """Write a Figure as PNG to ``path`` atomically (no half-drawn file on a crash); an OSError
    (disk full, ...) is a one-line InputError."""
    with cannot_write(path):
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
