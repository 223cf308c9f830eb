"""py-feat backend: conversion of its AU columns to our 12-AU rows, and the error path."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from talkclip import LayoutError, MissingAssetError, OfflineError
from talkclip.annotate.au import get_estimator
from talkclip.annotate.feat_backend import FEAT_AU_COLUMNS, _largest_face_per_frame, feat_to_au_rows
from talkclip.schemas import AU_IDS

# py-feat's default AU detector outputs these 20 columns (probabilities in [0, 1]).
PYFEAT_AUS = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12", "AU14",
              "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43"]


def fex_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.uniform(0, 1, size=(rows, len(PYFEAT_AUS))), columns=PYFEAT_AUS)
    df.insert(0, "FaceRectX", 10.0)
    df["anger"] = 0.1
    df["frame"] = np.arange(rows)
    return df


def test_conversion_picks_our_12_in_order_and_scales():
    df = fex_frame(4)
    df.loc[2, PYFEAT_AUS] = np.nan          # no face on frame 2
    out = feat_to_au_rows(df)
    assert out.shape == (4, 12) and out.dtype == np.float32
    for j, au in enumerate(AU_IDS):
        col = f"AU{au:02d}"
        assert FEAT_AU_COLUMNS[j] == col
        np.testing.assert_allclose(out[[0, 1, 3], j], 5 * df.loc[[0, 1, 3], col].to_numpy(), rtol=1e-6)
    assert np.isnan(out[2]).all()
    assert np.nanmin(out) >= 0 and np.nanmax(out) <= 5


def test_conversion_accepts_short_names_and_intensities():
    df = pd.DataFrame({f"AU{au}": [4.2, 7.0] for au in AU_IDS})
    out = feat_to_au_rows(df, value_range="intensity")
    assert np.allclose(out[0], 4.2) and np.allclose(out[1], 5.0)
    with pytest.raises(LayoutError, match="outside"):
        feat_to_au_rows(df)  # values above 1 are not probabilities


def test_conversion_missing_column():
    df = fex_frame(2).drop(columns=["AU26", "AU09"])
    with pytest.raises(LayoutError, match="AU09, AU26"):
        feat_to_au_rows(df)


def test_largest_face_kept_and_missing_frames_nan():
    df = fex_frame(3)
    df["frame"] = [0, 0, 2]
    df["FaceRectWidth"] = [10.0, 50.0, 20.0]
    df["FaceRectHeight"] = [10.0, 50.0, 20.0]
    df["AU01"] = [0.1, 0.9, 0.5]
    out = feat_to_au_rows(_largest_face_per_frame(df, 4))
    assert out.shape == (4, 12)
    assert out[0, 0] == pytest.approx(4.5) and out[2, 0] == pytest.approx(2.5)
    assert np.isnan(out[1]).all() and np.isnan(out[3]).all()


def test_feat_backend_unavailable_is_one_line_error():
    expected = OfflineError if importlib.util.find_spec("feat") is not None else MissingAssetError
    with pytest.raises(expected) as info:
        get_estimator("feat")
    msg = str(info.value)
    assert "\n" not in msg and ("talkclip[feat]" in msg or "offline" in msg.lower() or "HF_HUB" in msg)
