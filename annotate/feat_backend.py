"""py-feat's AU detector as a second AU backend (optional extra: ``pip install 'talkclip[feat]'``).

py-feat (cosanlab) downloads its detector weights from the Hugging Face Hub on first use, so this
backend needs network access once; offline it fails with a one-line :class:`talkclip.OfflineError`,
and without the package with a one-line :class:`talkclip.MissingAssetError`.

Output conversion (:func:`feat_to_au_rows`): py-feat's detectors return one row per detected face
with AU columns named ``AU01``, ``AU02``, ``AU04`` ... ``AU43`` (its default XGBoost detector
gives 20 AUs, a superset of DISFA's 12). Their values are detection *probabilities* in [0, 1],
not FACS intensities. We map them linearly to our 0-5 scale, ``intensity = 5 * p``: p = 0.5,
the usual cut for "detected", lands at 2.5, just above DISFA's common "present" cut of 2, and a
certain detection at 5. A probability is not an intensity; thresholds in au_table.csv were set
for the MediaPipe backend, so calibrate them before mixing the two backends in one dataset. ``value_range="intensity"`` takes columns that
already hold 0-5 intensities (e.g. OpenFace-style ``AU01_r``-like data renamed) unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from talkclip import InputError, LayoutError, MissingAssetError, OfflineError, one_line
from talkclip.schemas import AU_IDS, NUM_AUS

from .tracker import Track

FEAT_INSTALL_HINT = "install the optional extra: pip install 'talkclip[feat]'"
FEAT_AU_COLUMNS: tuple[str, ...] = tuple(f"AU{au:02d}" for au in AU_IDS)  # AU01 ... AU26


def _find_column(columns, au: int) -> str | None:
    for name in (f"AU{au:02d}", f"AU{au}", f"au{au:02d}", f"au{au}"):
        if name in columns:
            return name
    return None


def feat_to_au_rows(fex, value_range: str = "probability") -> np.ndarray:
    """py-feat output (a DataFrame, one row per frame) -> (T, 12) intensities in [0, 5].

    Columns ``AU01`` ... ``AU26`` (``AU1`` spelling accepted) are read in
    :data:`talkclip.schemas.AU_IDS` order; NaN (no face in that frame) stays NaN. Probabilities
    (``value_range="probability"``, py-feat's output) are multiplied by 5; ``"intensity"`` values
    are taken as 0-5 already. Raises LayoutError when one of the 12 AU columns is missing.
    """
    assert value_range in ("probability", "intensity"), f"value_range must be probability|intensity, got {value_range!r}"
    columns = list(getattr(fex, "columns", []))
    names = [_find_column(columns, au) for au in AU_IDS]
    missing = [f"AU{au:02d}" for au, c in zip(AU_IDS, names) if c is None]
    if missing:
        raise LayoutError(f"py-feat output lacks AU column(s) {', '.join(missing)}")
    values = np.asarray(fex[names].to_numpy(dtype=np.float64), dtype=np.float64)   # (T, 12)
    assert values.ndim == 2 and values.shape[1] == NUM_AUS, f"expected (T, 12) AU values, got {values.shape}"
    if value_range == "probability":
        finite = values[np.isfinite(values)]
        if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
            raise LayoutError("py-feat AU values outside [0, 1]; pass value_range='intensity' for 0-5 data")
        values = values * 5.0
    return np.clip(values, 0.0, 5.0).astype(np.float32)


def _largest_face_per_frame(fex, n_frames: int):
    """Keep one row per frame (the largest face box) and index by frame number 0..n_frames-1."""
    import pandas as pd

    df = fex.copy()
    if "frame" not in df.columns:
        df["frame"] = np.arange(len(df))
    if {"FaceRectWidth", "FaceRectHeight"} <= set(df.columns):
        df["_area"] = df["FaceRectWidth"].astype(float) * df["FaceRectHeight"].astype(float)
        df = df.sort_values("_area", ascending=False).drop_duplicates("frame")
    else:
        df = df.drop_duplicates("frame")
    df = df.set_index("frame").reindex(pd.RangeIndex(n_frames))
    return df


class FeatAUEstimator:
    """AU intensities from py-feat's detector, run on the track's source media."""

    name = "feat"

    def __init__(self, **detector_kwargs):
        try:
            import feat  # noqa: F401
        except ImportError:
            raise MissingAssetError(f"py-feat is not installed; {FEAT_INSTALL_HINT}") from None
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
            raise OfflineError("py-feat must download its detector weights but HF_HUB_OFFLINE is set; "
                               "use --estimator mediapipe offline")
        try:
            from feat import Detector

            self._detector = Detector(**detector_kwargs)
        except Exception as e:  # network and hub errors come in many types
            first = one_line(e)
            raise OfflineError(f"py-feat could not load its detector weights (network needed on first use): "
                               f"{first}") from None

    def estimate(self, track: Track) -> np.ndarray:
        src = Path(track.source)
        if not src.is_file():
            raise InputError(f"py-feat needs the media file on disk; no such file: {src}")
        det = self._detector
        kind = "image" if track.fps == 0.0 else "video"
        try:
            if hasattr(det, "detect"):
                fex = det.detect(str(src), data_type=kind)
            else:  # older py-feat API
                fex = det.detect_image(str(src)) if kind == "image" else det.detect_video(str(src))
        except Exception as e:
            first = one_line(e)
            raise InputError(f"py-feat failed on {src.name}: {first}") from None
        rows = feat_to_au_rows(_largest_face_per_frame(fex, track.frames))     # (T, 12)
        rows[~track.face] = np.nan
        return rows
