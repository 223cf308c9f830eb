"""``talkclip-data stats``: what a TA-MEAD build holds.

Clips per emotion and level, AU activation rates (share of clips with level >= 1) per
emotion/level group, failures by stage, and sample captions (the first caption of the first
clip of each group, sorted by clip id, so the output is stable). :func:`write_stats_plots` draws
the first two as PNG files (``--plots DIR``), the figures the app's Dataset tab shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkclip.schemas import AU_IDS
from talkclip.schemas.build import open_build


@dataclass
class GroupStats:
    emotion: str
    level: int
    clips: int
    activation: list[float]         # (12,) share of the group's clips with AU level >= 1


@dataclass
class DatasetStats:
    clips: int
    speakers: int
    frames: int
    splits: dict[str, int]
    failures_by_stage: dict[str, int]
    av_mismatch: int
    groups: list[GroupStats] = field(default_factory=list)
    samples: list[tuple[str, str]] = field(default_factory=list)   # (clip id, caption)


def dataset_stats(out_dir: str | Path, *, n_samples: int = 8) -> DatasetStats:
    """Read the clips (and failures) table of a build and summarise it."""
    build = open_build(out_dir, ("clips",))
    t = build.read("clips").sort_by("clip_id")
    emotion = t.column("emotion").to_pylist()
    level = t.column("level").to_pylist()
    levels = np.array(t.column("au_level").to_pylist(), dtype=np.int64).reshape(-1, len(AU_IDS))  # (N, 12)
    captions = t.column("captions").to_pylist()
    ids = t.column("clip_id").to_pylist()
    groups = []
    samples = []
    for key in sorted(set(zip(emotion, level)), key=lambda k: (k[0] != "neutral", k[0], k[1])):
        idx = [i for i, k in enumerate(zip(emotion, level)) if k == key]
        rate = (levels[idx] >= 1).mean(axis=0)
        groups.append(GroupStats(key[0], int(key[1]), len(idx), [round(float(x), 3) for x in rate]))
        if len(samples) < n_samples and captions[idx[0]]:
            samples.append((ids[idx[0]], captions[idx[0]][0]))
    splits: dict[str, int] = {}
    for s in t.column("split").to_pylist():
        splits[s] = splits.get(s, 0) + 1
    failures = build.read("failures", ["stage"])
    by_stage: dict[str, int] = {}
    for s in failures.column("stage").to_pylist():
        by_stage[s] = by_stage.get(s, 0) + 1
    return DatasetStats(
        clips=t.num_rows, speakers=len(set(t.column("speaker").to_pylist())),
        frames=int(sum(t.column("frames").to_pylist())), splits=dict(sorted(splits.items())),
        failures_by_stage=dict(sorted(by_stage.items())),
        av_mismatch=int(sum(t.column("av_mismatch").to_pylist())), groups=groups, samples=samples)


PLOT_FILES = ("clips_per_level.png", "au_activation.png")


def write_stats_plots(st: DatasetStats, folder: str | Path) -> list[Path]:
    """Clips per emotion and level, and AU activation per group, as ``folder``/``PLOT_FILES``
    (the folder is created when missing; one-line InputError when it cannot be written)."""
    from talkclip.pipelines.plots import save_png, stats_figures
    from talkclip.schemas.files import check_output_file

    paths = [check_output_file(Path(folder) / name, "a stats plot", (".png",)) for name in PLOT_FILES]
    for fig, path in zip(stats_figures(st), paths):
        save_png(fig, path)
    return paths
