"""AU estimation on the real fixture photos and videos, clip-level AUs and the AU lookup table."""

from __future__ import annotations

import numpy as np
import pytest

from talkclip import InputError, LayoutError
from talkclip.annotate.au import (AU_NAMES, AU_TABLE_PATH, MediaPipeAUEstimator, clip_au,
                                  geometric_features, get_estimator, load_au_mapping, load_au_table)
from talkclip.annotate.captions import render_captions
from talkclip.annotate.tracker import Track, track_media
from talkclip.schemas import AU_IDS, BLENDSHAPE_NAMES

from support import FACES


def _col(au: int) -> int:
    return AU_IDS.index(au)


# The mapping's gains were calibrated on these fixture photos (and on talking_pexels.mp4 and
# single_face.mp4); see the header of annotate/data/au_mapping.csv. Tests on them are IN-SAMPLE:
# they check that the mapping still reproduces its calibration, not that it generalises.
CALIBRATION_PHOTOS = ("surprise", "happy", "smile", "anger", "disgust")
# No fixture face photo was left out of the calibration, so the held-out inputs are the same
# faces mirrored left-right: images whose landmarks and blendshapes were never measured when the
# gains were chosen (every DISFA AU here is bilateral, so the expected levels do not change).
HELD_OUT_PHOTOS = ("surprise", "happy", "smile", "anger")


@pytest.fixture(scope="module")
def photo_tracks(landmarker, fixtures):
    return {n: track_media(FACES / f"{n}.jpg") for n in CALIBRATION_PHOTOS}


@pytest.fixture(scope="module")
def held_out_levels(landmarker, fixtures, tmp_path_factory):
    from PIL import Image, ImageOps

    folder = tmp_path_factory.mktemp("mirrored")
    est, table = get_estimator("mediapipe"), load_au_table()
    out = {}
    for n in HELD_OUT_PHOTOS:
        path = folder / f"{n}_mirrored.png"
        with Image.open(FACES / f"{n}.jpg") as im:
            ImageOps.mirror(im.convert("RGB")).save(path)
        out[n] = table.levels(clip_au(est.estimate(track_media(path))))
    return out


@pytest.fixture(scope="module")
def photo_levels(photo_tracks):
    est, table = get_estimator("mediapipe"), load_au_table()
    return {n: table.levels(clip_au(est.estimate(t))) for n, t in photo_tracks.items()}


def test_surprise_photo_brows_and_mouth_active(photo_levels):
    """In sample (a calibration photo)."""
    lv = photo_levels["surprise"]
    assert max(lv[_col(1)], lv[_col(2)]) >= 1, f"AU1/AU2 inactive on surprise: {lv}"
    assert max(lv[_col(25)], lv[_col(26)]) >= 1, f"AU25/AU26 inactive on surprise: {lv}"
    caps = render_captions(subject="woman", au_levels=lv, au_table=load_au_table(), n=3, seed=0)
    assert any("brows" in c for c in caps), caps


@pytest.mark.parametrize("name", ["happy", "smile"])
def test_smiles_raise_lip_corners(photo_levels, name):
    """In sample (calibration photos)."""
    assert photo_levels[name][_col(12)] >= 1, photo_levels[name]


def test_anger_lowers_brows_without_smile(photo_levels):
    """In sample (a calibration photo)."""
    lv = photo_levels["anger"]
    assert lv[_col(4)] >= 1 and lv[_col(12)] == 0, lv


def test_held_out_mirrored_photos_keep_their_main_aus(held_out_levels):
    """Out of sample (photos the mapping was not calibrated on): the mirrored faces."""
    lv = held_out_levels
    assert max(lv["surprise"][_col(1)], lv["surprise"][_col(2)]) >= 1, lv["surprise"]
    assert max(lv["surprise"][_col(25)], lv["surprise"][_col(26)]) >= 1, lv["surprise"]
    assert lv["happy"][_col(12)] >= 1 and lv["smile"][_col(12)] >= 1, (lv["happy"], lv["smile"])
    assert lv["anger"][_col(4)] >= 1 and lv["anger"][_col(12)] == 0, lv["anger"]
    assert lv["happy"][_col(4)] == 0 and lv["smile"][_col(4)] == 0


def test_smile_does_not_read_as_frown(photo_levels):
    # blendshape cross-talk: smiling faces can show browDown; AU4 must stay inactive on smiles
    for name in ("happy", "smile"):
        assert photo_levels[name][_col(4)] == 0, (name, photo_levels[name])


def test_smile_inhibits_brow_down_cross_talk(photo_tracks):
    """The same browDown reads lower as AU4 when the mouth smiles (real happy.jpg landmarks)."""
    tr = photo_tracks["happy"]
    bs = tr.blendshapes.copy()
    bs[:, [BLENDSHAPE_NAMES.index("browDownLeft"), BLENDSHAPE_NAMES.index("browDownRight")]] = 0.4
    smiling = Track(tr.source, 0.0, tr.width, tr.height, tr.timestamp_ms, tr.face, bs, tr.pose, tr.landmarks)
    bs_flat = bs.copy()
    bs_flat[:, [BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight")]] = 0.0
    flat = Track(tr.source, 0.0, tr.width, tr.height, tr.timestamp_ms, tr.face, bs_flat, tr.pose, tr.landmarks)
    est = MediaPipeAUEstimator()
    assert est.estimate(smiling)[0, _col(4)] < est.estimate(flat)[0, _col(4)] - 0.5


def test_frames_without_face_are_nan_and_range(photo_tracks):
    """Stack a real face frame with an empty (no face) frame: (T, 12), NaN row, values in [0, 5]."""
    a, b = photo_tracks["surprise"], photo_tracks["anger"]
    face = np.array([True, False, True])
    tr = Track("x", 25.0, a.width, a.height, np.arange(3), face,
               np.concatenate([a.blendshapes, np.zeros_like(a.blendshapes), b.blendshapes]),
               np.concatenate([a.pose, np.zeros_like(a.pose), b.pose]),
               np.concatenate([a.landmarks, np.zeros_like(a.landmarks), b.landmarks]))
    out = MediaPipeAUEstimator().estimate(tr)
    assert out.shape == (3, 12) and np.isnan(out[1]).all()
    assert np.nanmin(out) >= 0 and np.nanmax(out) <= 5
    clip = clip_au(out)
    assert np.allclose(clip, np.clip((out[0] + out[2]) / 2, 0, 5), atol=1e-5)


def test_talking_video_aus_are_moderate(landmarker, fixtures):
    """Talking frames sit mostly at low intensities: the median frame is not at the ceiling."""
    tr = track_media(FACES / "single_face.mp4")
    aus = MediaPipeAUEstimator().estimate(tr)
    assert aus.shape == (tr.frames, 12) and not np.isnan(aus).any()
    med = np.median(aus, axis=0)
    assert (med < 4).all(), med
    assert med[_col(25)] >= 1, "a talking mouth parts the lips"


def test_geometric_features_scale_invariant(photo_tracks):
    tr = photo_tracks["surprise"]
    f1 = geometric_features(tr.landmarks, tr.width, tr.height)
    f2 = geometric_features(tr.landmarks, tr.width * 2, tr.height * 2)
    for k in f1:
        assert np.allclose(f1[k], f2[k], rtol=1e-4, atol=1e-6), k
    assert f1["lip_gap"][0] > geometric_features(photo_tracks["anger"].landmarks, 512, 512)["lip_gap"][0] + 0.1


def test_clip_au_baseline_and_clipping():
    fa = np.array([[1.0] * 12, [3.0] * 12, [np.nan] * 12])
    assert np.allclose(clip_au(fa), 2.0)
    base = np.full(12, 0.5)
    base[0] = 4.0
    got = clip_au(fa, baseline=base)
    assert got[0] == 0.0 and np.allclose(got[1:], 1.5)
    assert np.isnan(clip_au(np.full((2, 12), np.nan))).all()
    with pytest.raises(AssertionError):
        clip_au(np.zeros((3, 11)))


def test_mapping_is_data(tmp_path, photo_tracks):
    """A user mapping file changes the estimate; bad rows give one-line LayoutErrors."""
    text = (AU_TABLE_PATH.parent / "au_mapping.csv").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("12,")] + ["12,mouthSmile,1,0.0,0.0"]
    p = tmp_path / "map.csv"
    p.write_text("\n".join(lines) + "\n")
    assert MediaPipeAUEstimator(p).estimate(photo_tracks["happy"])[0, _col(12)] == 0.0
    assert len(load_au_mapping()) > 12
    (tmp_path / "bad.csv").write_text("au,source,direction,offset,weight\n1,eyebrowMagic,1,0,1\n")
    with pytest.raises(LayoutError, match="eyebrowMagic"):
        load_au_mapping(tmp_path / "bad.csv")
    (tmp_path / "few.csv").write_text("au,source,direction,offset,weight\n1,browInnerUp,1,0,1\n")
    with pytest.raises(LayoutError, match="no rows"):
        load_au_mapping(tmp_path / "few.csv")
    with pytest.raises(InputError, match="unknown AU estimator 'openface'"):
        get_estimator("openface")


def test_au_table_levels_phrases_and_hash(tmp_path):
    t = load_au_table()
    assert t.thresholds.shape == (12, 3) and t.names == [AU_NAMES[a] for a in AU_IDS]
    th = t.thresholds
    x = np.array([th[0, 0] - 1e-3, th[1, 0], th[2, 1], th[3, 2], 5, 0, 0, 0, 0, 0, np.nan, 0])
    assert t.levels(x).tolist()[:5] == [0, 1, 2, 3, 3] and t.levels(x)[10] == 0
    assert t.phrase(1, 3) == "inner brows extremely raised"
    assert t.phrase(25, 2) == "lips parted"
    assert t.phrase(26, 1) == "jaw slightly dropped"
    import random

    verbs = {t.phrase(12, 2, random.Random(f"{k}")) for k in range(20)}
    assert verbs == {"lip corners pulled", "lip corners stretched"}
    saved = t.save(tmp_path / "t.csv")
    again = load_au_table(saved)
    assert again.sha256 == t.sha256 and np.allclose(again.thresholds, th)
    assert "Hong et al. 2020" in saved.read_text()
    assert t.with_thresholds(th + 0.1).sha256 != t.sha256
    with pytest.raises(LayoutError):
        t.with_thresholds(th[:, ::-1])
