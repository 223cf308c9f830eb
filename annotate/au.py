"""Action-unit (AU) estimation: the 12 DISFA AUs as 0-5 intensities per frame, clip-level AUs,
and the AU lookup table (thresholds for three levels and the phrases captions use).

Two estimators share one interface (:class:`AUEstimator`):

- ``"mediapipe"`` (default, offline): reads the per-frame MediaPipe blendshapes and landmarks of a
  :class:`~talkclip.annotate.tracker.Track` and maps them to AU intensities with the packaged
  table ``annotate/data/au_mapping.csv`` (see :func:`load_au_mapping` for its format).
- ``"feat"``: py-feat's AU detector (optional extra ``talkclip[feat]``, needs network on first
  use); see :mod:`talkclip.annotate.feat_backend`.

Every AU vector of the project is ordered as :data:`talkclip.schemas.AU_IDS`
(1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26).
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from talkclip import InputError, LayoutError, one_line
from talkclip.schemas import AU_IDS, BLENDSHAPE_NAMES, NUM_AUS

from .tracker import Track

DATA_DIR = Path(__file__).resolve().parent / "data"
AU_MAPPING_PATH = DATA_DIR / "au_mapping.csv"
AU_TABLE_PATH = DATA_DIR / "au_table.csv"
AU_MAX = 5.0

# FACS names of DISFA's 12 AUs.
AU_NAMES: dict[int, str] = {
    1: "Inner Brow Raiser",
    2: "Outer Brow Raiser",
    4: "Brow Lowerer",
    5: "Upper Lid Raiser",
    6: "Cheek Raiser",
    9: "Nose Wrinkler",
    12: "Lip Corner Puller",
    15: "Lip Corner Depressor",
    17: "Chin Raiser",
    20: "Lip Stretcher",
    25: "Lips Part",
    26: "Jaw Drop",
}
UPPER_FACE_AUS = (1, 2, 4, 5, 6, 9)
assert tuple(AU_NAMES) == AU_IDS, "AU_NAMES must follow schemas.AU_IDS"


# ----------------------------------------------------------------------------- geometry

# MediaPipe face-mesh landmark indices (subject's right = image left for a frontal face).
_EYE_R = (33, 133, 159, 145)    # outer corner, inner corner, upper-lid middle, lower-lid middle
_EYE_L = (263, 362, 386, 374)
_BROW_INNER = (107, 336)        # inner brow ends (right, left)
_BROW_MID = (105, 334)          # brow middles, above the upper-lid middles
_BROW_OUTER = (70, 300)         # outer brow ends, above the outer eye corners
_LIP_INNER = (13, 14)           # inner upper lip, inner lower lip (midline)
_MOUTH_CORNERS = (61, 291)
_NOSE_BASE, _CHIN, _FOREHEAD = 2, 152, 10


def _points(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, 478, 3) normalised landmarks -> (T, 478, 3) pixel-scaled points (z uses the width scale)."""
    scale = np.array([width, height, width], dtype=np.float32)
    return landmarks.astype(np.float32) * scale


def _dist(p: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(p[:, a] - p[:, b], axis=-1)  # (T,)


def geometric_features(landmarks: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
    """Face-size-normalised geometric measures, each (T,), from (T, 478, 3) landmarks.

    Distances are 3-D (x, y in pixels, z on the x scale), so head rotation changes them little,
    and are divided by the outer-eye-corner distance (inter-ocular distance, IOD).

    - ``lip_gap``: inner-lip gap (13-14) / IOD. ~0 with closed lips, 0.1-0.2 talking, >0.2 agape.
    - ``jaw_gap``: nose base (2) to chin (152) / IOD. Grows as the jaw drops (person-specific).
    - ``brow_inner_gap``: inner brow end to inner eye corner / IOD (mean of both sides).
    - ``brow_mid_gap``: brow middle to upper-lid middle / IOD. Shrinks when the brows are lowered.
    - ``brow_outer_gap``: outer brow end to outer eye corner / IOD.
    - ``eye_aperture``: upper-to-lower lid distance / eye width (mean of both eyes).
    - ``lower_lid_raise``: height of the lower-lid middle above the line through the eye corners,
      along the face's up axis (forehead-chin), / eye width. Negative at rest; rises when the
      cheeks push the lower lid up.
    - ``lip_corner_raise``: mean height of the mouth corners above the inner-lip midpoint, along
      the face's up axis, / IOD. Positive in a smile, negative when the corners are pulled down.
    """
    p = _points(landmarks, width, height)                                   # (T, 478, 3)
    iod = np.maximum(_dist(p, _EYE_R[0], _EYE_L[0]), 1e-6)                  # (T,)
    up = p[:, _FOREHEAD] - p[:, _CHIN]                                      # (T, 3)
    up = up / np.maximum(np.linalg.norm(up, axis=-1, keepdims=True), 1e-6)

    def height_above(point: np.ndarray, base: np.ndarray) -> np.ndarray:   # (T,)
        return ((point - base) * up).sum(-1)

    def eye(outer: int, inner: int, upper: int, lower: int) -> tuple[np.ndarray, np.ndarray]:
        width_ = np.maximum(_dist(p, outer, inner), 1e-6)
        aperture = _dist(p, upper, lower) / width_
        mid = (p[:, outer] + p[:, inner]) / 2
        return aperture, height_above(p[:, lower], mid) / width_

    ap_r, lid_r = eye(*_EYE_R)
    ap_l, lid_l = eye(*_EYE_L)
    lips_mid = (p[:, _LIP_INNER[0]] + p[:, _LIP_INNER[1]]) / 2
    corners = (height_above(p[:, _MOUTH_CORNERS[0]], lips_mid)
               + height_above(p[:, _MOUTH_CORNERS[1]], lips_mid)) / 2
    return {
        "lip_gap": _dist(p, *_LIP_INNER) / iod,
        "jaw_gap": _dist(p, _NOSE_BASE, _CHIN) / iod,
        "brow_inner_gap": (_dist(p, _BROW_INNER[0], _EYE_R[1]) + _dist(p, _BROW_INNER[1], _EYE_L[1])) / 2 / iod,
        "brow_mid_gap": (_dist(p, _BROW_MID[0], _EYE_R[2]) + _dist(p, _BROW_MID[1], _EYE_L[2])) / 2 / iod,
        "brow_outer_gap": (_dist(p, _BROW_OUTER[0], _EYE_R[0]) + _dist(p, _BROW_OUTER[1], _EYE_L[0])) / 2 / iod,
        "eye_aperture": (ap_r + ap_l) / 2,
        "lower_lid_raise": (lid_r + lid_l) / 2,
        "lip_corner_raise": corners / iod,
    }


GEOMETRIC_FEATURES = ("lip_gap", "jaw_gap", "brow_inner_gap", "brow_mid_gap", "brow_outer_gap",
                      "eye_aperture", "lower_lid_raise", "lip_corner_raise")


# ----------------------------------------------------------------------------- mapping table

@dataclass(frozen=True)
class MappingTerm:
    """One row of au_mapping.csv: ``weight * max(direction * (x - offset), 0)``."""

    au: int
    source: str        # blendshape, L/R stem, geometric feature, or a product "a*b"
    direction: float   # +1: larger x = more action; -1: smaller x = more action
    offset: float      # dead zone / neutral value of x
    weight: float      # intensity units per unit of x beyond the offset (negative = inhibition)


def _blendshape_source(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """A blendshape name, or a stem whose Left/Right pair is averaged (e.g. mouthSmile)."""
    if name in BLENDSHAPE_NAMES:
        i = BLENDSHAPE_NAMES.index(name)
        return lambda bs: bs[:, i]
    if name + "Left" in BLENDSHAPE_NAMES and name + "Right" in BLENDSHAPE_NAMES:
        i, j = BLENDSHAPE_NAMES.index(name + "Left"), BLENDSHAPE_NAMES.index(name + "Right")
        return lambda bs: (bs[:, i] + bs[:, j]) / 2
    return None


def _check_source(source: str, where: str) -> None:
    for part in source.split("*"):
        if _blendshape_source(part) is None and part not in GEOMETRIC_FEATURES:
            raise LayoutError(f"{where}: unknown AU source {part!r} (not a blendshape, L/R stem "
                              f"or geometric feature {', '.join(GEOMETRIC_FEATURES)})")


def _data_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV data file whose comment lines start with '#'."""
    if Path(path).is_dir():
        raise InputError(f"{path} is a folder; give a table file (.csv)")
    if not Path(path).is_file():
        raise InputError(f"no such table file: {path}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read table {path}: {one_line(e)}") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return list(csv.DictReader(lines))


def load_au_mapping(path: str | Path | None = None) -> list[MappingTerm]:
    """Read the blendshape/geometry -> AU table (default: the packaged au_mapping.csv).

    Columns: ``au, source, direction, offset, weight``. Per frame, AU intensity =
    clip(sum over the AU's rows of ``weight * max(direction * (x - offset), 0)``, 0, 5), where x is
    the row's source: a blendshape name, a Left/Right stem (mean of both sides), one of
    :data:`GEOMETRIC_FEATURES`, or a product of those joined by ``*``.
    """
    path = Path(path) if path else AU_MAPPING_PATH
    terms = []
    for k, row in enumerate(_data_rows(path), start=1):
        where = f"{path.name} row {k}"
        try:
            term = MappingTerm(int(row["au"]), row["source"].strip(), float(row["direction"]),
                               float(row["offset"]), float(row["weight"]))
        except (KeyError, AttributeError, TypeError, ValueError) as e:
            raise LayoutError(f"{where}: expected columns au,source,direction,offset,weight ({e})") from None
        if term.au not in AU_IDS:
            raise LayoutError(f"{where}: AU {term.au} is not one of the 12 DISFA AUs")
        if term.direction not in (1.0, -1.0):
            raise LayoutError(f"{where}: direction must be 1 or -1")
        _check_source(term.source, where)
        terms.append(term)
    missing = sorted(set(AU_IDS) - {t.au for t in terms})
    if missing:
        raise LayoutError(f"{path.name}: no rows for AU(s) {missing}")
    return terms


# ----------------------------------------------------------------------------- estimators

class AUEstimator(Protocol):
    name: str

    def estimate(self, track: Track) -> np.ndarray:
        """(T, 12) AU intensities in [0, 5], NaN on frames without a face."""
        ...


class MediaPipeAUEstimator:
    """Maps MediaPipe blendshapes + landmark geometry to AU intensities with a mapping table."""

    name = "mediapipe"

    def __init__(self, mapping: str | Path | None = None):
        self.terms = load_au_mapping(mapping)

    def features(self, track: Track) -> dict[str, np.ndarray]:
        """Every source value the table uses, each (T,), computed in one vectorised pass."""
        geo = geometric_features(track.landmarks, track.width, track.height)
        values: dict[str, np.ndarray] = {}
        for term in self.terms:
            if term.source in values:
                continue
            x = np.ones(track.frames, dtype=np.float32)
            for part in term.source.split("*"):
                get = _blendshape_source(part)
                x = x * (get(track.blendshapes) if get is not None else geo[part])
            values[term.source] = x
        return values

    def estimate(self, track: Track) -> np.ndarray:
        values = self.features(track)
        out = np.zeros((track.frames, NUM_AUS), dtype=np.float32)                 # (T, 12)
        for term in self.terms:
            x = values[term.source]
            out[:, AU_IDS.index(term.au)] += term.weight * np.maximum(term.direction * (x - term.offset), 0.0)
        out = np.clip(out, 0.0, AU_MAX)
        out[~track.face] = np.nan
        return out


def get_estimator(name: str = "mediapipe") -> AUEstimator:
    """The AU estimator called ``name``: "mediapipe" (default, offline) or "feat" (py-feat)."""
    if name == "mediapipe":
        return MediaPipeAUEstimator()
    if name == "feat":
        from .feat_backend import FeatAUEstimator

        return FeatAUEstimator()
    raise InputError(f"unknown AU estimator {name!r}; choose 'mediapipe' or 'feat'")


def clip_au(frame_aus: np.ndarray, baseline: np.ndarray | None = None) -> np.ndarray:
    """Clip-level AUs (12,): nan-mean over frames with a face, minus ``baseline``, clipped to [0, 5].

    ``frame_aus`` is (T, 12) with NaN rows where no face was found; ``baseline`` is an optional
    (12,) per-subject neutral intensity subtracted before levelling. A clip without any face
    frame gives NaN for every AU.
    """
    frame_aus = np.asarray(frame_aus, dtype=np.float64)
    assert frame_aus.ndim == 2 and frame_aus.shape[1] == NUM_AUS, f"expected (T, 12), got {frame_aus.shape}"
    valid = ~np.isnan(frame_aus)                                               # (T, 12)
    count = valid.sum(0)
    mean = np.where(count > 0, np.where(valid, frame_aus, 0.0).sum(0) / np.maximum(count, 1), np.nan)
    if baseline is not None:
        baseline = np.asarray(baseline, dtype=np.float64)
        assert baseline.shape == (NUM_AUS,), f"baseline must be (12,), got {baseline.shape}"
        mean = mean - np.nan_to_num(baseline)
    return np.clip(mean, 0.0, AU_MAX)


# ----------------------------------------------------------------------------- lookup table

_TABLE_COLUMNS = ("au", "name", "noun", "verb1", "verb2", "t1", "t2", "t3", "adverb1", "adverb2", "adverb3")


@dataclass
class AUTable:
    """Per AU: FACS name, noun, two verbs (Hong et al. 2020), level thresholds and adverbs.

    ``levels`` maps a (12,) intensity vector to levels 0..3: level k (k = 1, 2, 3) when the
    intensity reaches ``thresholds[:, k-1]``; level 0 (inactive) below the first threshold.
    """

    names: list[str]                      # (12,) FACS names
    nouns: list[str]                      # (12,) e.g. "inner brows"
    verbs: list[tuple[str, str]]          # (12,) e.g. ("raised", "lifted")
    thresholds: np.ndarray                # (12, 3) increasing intensities for levels 1, 2, 3
    adverbs: list[tuple[str, str, str]]   # (12,) adverb per level, "" for none
    comments: list[str] = field(default_factory=list)  # header comment lines kept by save()

    def __post_init__(self) -> None:
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        assert self.thresholds.shape == (NUM_AUS, 3), f"thresholds must be (12, 3), got {self.thresholds.shape}"
        for lst, what in ((self.names, "names"), (self.nouns, "nouns"), (self.verbs, "verbs"), (self.adverbs, "adverbs")):
            assert len(lst) == NUM_AUS, f"{what} must have 12 entries, got {len(lst)}"
        if not np.all(np.diff(self.thresholds, axis=1) > 0):
            raise LayoutError("AU table thresholds must increase from level 1 to level 3")

    def levels(self, intensity: np.ndarray) -> np.ndarray:
        """(12,) intensities -> (12,) int levels 0..3 (NaN counts as inactive)."""
        x = np.nan_to_num(np.asarray(intensity, dtype=np.float64), nan=-1.0)
        assert x.shape == (NUM_AUS,), f"expected (12,) intensities, got {x.shape}"
        return (x[:, None] >= self.thresholds).sum(1).astype(np.int64)

    def phrase(self, au: int, level: int, rng: random.Random | None = None, verb: int | None = None) -> str:
        """E.g. phrase(1, 3) -> "inner brows extremely raised"; ``rng`` picks one of the two verbs
        (or ``verb`` names it: 0 or 1; default the first)."""
        assert au in AU_IDS, f"AU {au} is not one of {AU_IDS}"
        assert 1 <= level <= 3, f"only active levels 1..3 have a phrase, got {level}"
        i = AU_IDS.index(au)
        verb = self.verbs[i][rng.randrange(2) if rng is not None else (verb or 0)]
        return " ".join(w for w in (self.nouns[i], self.adverbs[i][level - 1], verb) if w)

    def with_thresholds(self, thresholds: np.ndarray) -> "AUTable":
        """A copy with new (12, 3) thresholds (e.g. calibrated on a dataset)."""
        return AUTable(list(self.names), list(self.nouns), list(self.verbs), np.array(thresholds, dtype=np.float64),
                       list(self.adverbs), list(self.comments))

    def to_csv(self) -> str:
        """The table's canonical CSV text (no comments); :attr:`sha256` hashes exactly this."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_TABLE_COLUMNS)
        for i, au in enumerate(AU_IDS):
            w.writerow([au, self.names[i], self.nouns[i], *self.verbs[i],
                        *(f"{t:g}" for t in self.thresholds[i]), *self.adverbs[i]])
        return buf.getvalue()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_csv().encode("utf-8")).hexdigest()

    def save(self, path: str | Path) -> Path:
        from talkclip.schemas.files import atomic_write_text

        head = "".join(f"# {c}\n" if c else "#\n" for c in self.comments)
        return atomic_write_text(path, head + self.to_csv())


def load_au_table(path: str | Path | None = None) -> AUTable:
    """Read an AU lookup table (default: the packaged annotate/data/au_table.csv)."""
    path = Path(path) if path else AU_TABLE_PATH
    if not path.is_file():
        raise InputError(f"no such AU table: {path}")
    data_rows = _data_rows(path)     # raises a one-line InputError for unreadable files
    comments = [ln.lstrip()[1:].removeprefix(" ") for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.lstrip().startswith("#")]
    rows = {}
    for k, row in enumerate(data_rows, start=1):
        try:
            rows[int(row["au"])] = row
            [float(row[c]) for c in ("t1", "t2", "t3")]
            [row[c] for c in _TABLE_COLUMNS]
        except (KeyError, TypeError, ValueError) as e:
            raise LayoutError(f"{path.name} row {k}: expected columns {','.join(_TABLE_COLUMNS)} ({e})") from None
    missing = [au for au in AU_IDS if au not in rows]
    if missing:
        raise LayoutError(f"{path.name}: no rows for AU(s) {missing}")
    r = [rows[au] for au in AU_IDS]
    clean = lambda s: (s or "").strip()  # noqa: E731
    return AUTable(
        names=[clean(x["name"]) for x in r],
        nouns=[clean(x["noun"]) for x in r],
        verbs=[(clean(x["verb1"]), clean(x["verb2"])) for x in r],
        thresholds=np.array([[float(x["t1"]), float(x["t2"]), float(x["t3"])] for x in r]),
        adverbs=[(clean(x["adverb1"]), clean(x["adverb2"]), clean(x["adverb3"])) for x in r],
        comments=comments,
    )


def au_rows(intensity: np.ndarray, table: AUTable) -> list[dict]:
    """[{"au", "name", "intensity", "level"}] for all 12 AUs (the CLI's JSON layout)."""
    levels = table.levels(intensity)
    return [{"au": au, "name": AU_NAMES[au], "intensity": round(float(np.nan_to_num(intensity[i])), 3),
             "level": int(levels[i])} for i, au in enumerate(AU_IDS)]


def order_active(levels: np.ndarray) -> list[int]:
    """Active AUs (level >= 1) in face order: brows, lids, cheeks, nose, then mouth and jaw."""
    levels = np.asarray(levels)
    return [au for i, au in enumerate(AU_IDS) if levels[i] >= 1]


__all__: Sequence[str] = (
    "AU_NAMES", "AUEstimator", "AUTable", "MediaPipeAUEstimator", "au_rows", "clip_au",
    "geometric_features", "get_estimator", "load_au_mapping", "load_au_table", "order_active",
)
