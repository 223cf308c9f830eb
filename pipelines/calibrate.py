"""``talkclip-data calibrate``: AU level thresholds derived from a TA-MEAD build.

Per AU, from the clips table's ``au_intensity`` (the value levels are applied to, i.e. after
the neutral baseline when the build used one):

- level 1 starts at the ``neutral_q`` quantile (default 0.95) of the **neutral** clips: a
  neutral clip is active on that AU only 5 % of the time;
- levels 2 and 3 start at the ``level2_q`` / ``level3_q`` quantiles (default 0.5 / 0.85) of the
  **emotional** clips' intensities that reach level 1;
- where fewer than ``min_active`` emotional clips reach level 1, levels 2 and 3 keep the base
  table's distances above level 1;
- thresholds are kept increasing (at least ``MIN_GAP`` apart), level 1 at least ``MIN_T1``,
  and all at most 5.

The result is the base AU table (default: the packaged one) with new thresholds, saved as a
CSV that ``build-ta-mead --au-table FILE`` accepts (a rerun into the same folder then only
recomputes levels and captions). Thresholds from a few dozen clips are rough; the report says
how many clips each AU's figures rest on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkclip import InputError
from talkclip.schemas import AU_IDS
from talkclip.schemas.build import open_build
from talkclip.schemas.files import check_output_file

MIN_T1 = 0.05
MIN_GAP = 0.05
AU_MAX = 5.0


@dataclass
class CalibrationReport:
    path: Path
    thresholds: np.ndarray          # (12, 3) new
    previous: np.ndarray            # (12, 3) of the base table
    n_neutral: int
    n_emotional: int
    n_active: list[int]             # (12,) emotional clips at or above the new level-1 threshold
    warnings: list[str] = field(default_factory=list)


def read_clips(out_dir: str | Path):
    """The clips table of a build as a pyarrow Table (the one build reader checks it is one)."""
    return open_build(out_dir, ("clips",)).read("clips")


def derive_thresholds(neutral: np.ndarray, emotional: np.ndarray, base: np.ndarray, *, neutral_q: float = 0.95,
                      level2_q: float = 0.5, level3_q: float = 0.85, min_active: int = 3) -> tuple[np.ndarray, list[int]]:
    """neutral (N, 12), emotional (E, 12) intensities, base (12, 3) -> new (12, 3) thresholds, active counts."""
    for name, a in (("neutral", neutral), ("emotional", emotional)):
        if a.ndim != 2 or a.shape[1] != len(AU_IDS):
            raise ValueError(f"{name} intensities must be (N, {len(AU_IDS)}), got {a.shape}")
    out = np.zeros((len(AU_IDS), 3))
    n_active = []
    for i in range(len(AU_IDS)):
        n = neutral[:, i][np.isfinite(neutral[:, i])]
        e = emotional[:, i][np.isfinite(emotional[:, i])]
        t1 = max(float(np.quantile(n, neutral_q)) if len(n) else float(base[i, 0]), MIN_T1)
        above = e[e >= t1]
        n_active.append(int(len(above)))
        if len(above) >= min_active:
            t2, t3 = float(np.quantile(above, level2_q)), float(np.quantile(above, level3_q))
        else:
            t2, t3 = t1 + float(base[i, 1] - base[i, 0]), t1 + float(base[i, 2] - base[i, 0])
        t2 = max(t2, t1 + MIN_GAP)
        t3 = max(t3, t2 + MIN_GAP)
        if t3 > AU_MAX:  # squeeze into the 0-5 scale, keeping the order
            t3 = AU_MAX
            t2 = min(t2, t3 - MIN_GAP)
            t1 = min(t1, t2 - MIN_GAP)
        out[i] = (round(t1, 4), round(t2, 4), round(t3, 4))
    return out, n_active


def calibrate(out_dir: str | Path, *, out_file: str | Path | None = None, base_table: str | Path | None = None,
              neutral_q: float = 0.95, level2_q: float = 0.5, level3_q: float = 0.85) -> CalibrationReport:
    """Derive thresholds from the build in ``out_dir`` and write an AU table file (see module doc)."""
    from talkclip.annotate.au import load_au_table

    for name, q in (("neutral quantile", neutral_q), ("level-2 quantile", level2_q), ("level-3 quantile", level3_q)):
        if not 0.0 < q < 1.0:
            raise InputError(f"{name} must be between 0 and 1, got {q}")
    if level3_q <= level2_q:
        raise InputError("the level-3 quantile must be above the level-2 quantile")
    build = open_build(out_dir, ("clips",))
    path = check_output_file(Path(out_file) if out_file else build.root / "au_table.calibrated.csv", "--out")
    clips = build.read("clips", ["emotion", "au_intensity"])
    emotion = np.array(clips.column("emotion").to_pylist())
    intensity = np.array(clips.column("au_intensity").to_pylist(), dtype=np.float64).reshape(-1, len(AU_IDS))
    neutral, emotional = intensity[emotion == "neutral"], intensity[emotion != "neutral"]
    if not len(neutral) or not len(emotional):
        raise InputError(f"calibration needs neutral and emotional clips; {out_dir} has {len(neutral)} neutral "
                         f"and {len(emotional)} emotional")
    table = load_au_table(base_table)
    new, n_active = derive_thresholds(neutral, emotional, table.thresholds, neutral_q=neutral_q,
                                      level2_q=level2_q, level3_q=level3_q)
    warnings = []
    if len(neutral) < 20 or len(emotional) < 60:
        warnings.append(f"only {len(neutral)} neutral and {len(emotional)} emotional clips: thresholds are rough")
    few = [f"AU{au}" for au, k in zip(AU_IDS, n_active) if k < 3]
    if few:
        warnings.append(f"levels 2/3 keep the base table's spacing for {', '.join(few)} (fewer than 3 active clips)")
    calibrated = table.with_thresholds(new)
    manifest = build.manifest()
    calibrated.comments = list(table.comments) + [
        "",
        f"CALIBRATED by `talkclip-data calibrate` on a TA-MEAD build ({len(neutral)} neutral, "
        f"{len(emotional)} emotional clips; base AU table sha256 {manifest.get('au_table_sha256', '?')[:12]}).",
        f"t1 = {neutral_q} quantile of neutral clips; t2/t3 = {level2_q}/{level3_q} quantiles of the "
        "emotional clips at or above t1 (au_intensity, after the neutral baseline if the build used one).",
    ]
    calibrated.save(path)
    return CalibrationReport(path, new, table.thresholds.copy(), len(neutral), len(emotional), n_active, warnings)
