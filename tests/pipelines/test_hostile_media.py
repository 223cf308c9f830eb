"""Issue 9, items 8, 15, 17 and 18: odd but legitimate media and options, through the CLI.

Each test fails on the code before the fix: a 16-bit grey PNG read as all white ("no face"),
Pillow's DecompressionBombWarning on a phone-size photo, numpy's "Mean of empty slice" in
`eval`, `--groups <folder>` answered with "no such table file", `--n 100000` rendering
100000 captions (repeats included), and a confident caption from a 16 px face.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

import subprocess
import sys

from support import FACES, assert_one_line_error, run_data_cli


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from talkclip.cli import app; app()", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _caption_json(path, *args) -> tuple[dict, str]:
    proc = run_data_cli("caption", "--video", path, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_16_bit_grey_png_reads_as_a_viewer_shows_it(tmp_path, landmarker):
    grey = np.asarray(Image.open(FACES / "anger.jpg").convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")          # mode I;16
    Image.fromarray(grey).save(tmp_path / "g8.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    deep, _ = _caption_json(tmp_path / "g16.png")
    flat, _ = _caption_json(tmp_path / "g8.png")
    assert deep["frames_with_face"] == 1
    # The same picture at two bit depths gives the same AUs (to the rounding of 16 -> 8 bits).
    assert [a["level"] for a in deep["aus"]] == [a["level"] for a in flat["aus"]]
    np.testing.assert_allclose([a["intensity"] for a in deep["aus"]],
                               [a["intensity"] for a in flat["aus"]], atol=0.05)


def test_phone_size_photo_is_read_quietly(tmp_path, landmarker):
    # 12000 x 9000 = 108 MP, above Pillow's 89 MP warning limit (grey JPEG keeps the test light).
    big = Image.open(FACES / "smile.jpg").convert("L").resize((12000, 9000), Image.Resampling.BILINEAR)
    big.save(tmp_path / "phone.jpg", quality=70)
    out, err = _caption_json(tmp_path / "phone.jpg")
    assert out["frames_with_face"] == 1
    assert err.strip() == "", err


def test_caption_n_is_capped_at_the_distinct_variants(landmarker):
    out, err = _caption_json(FACES / "surprise.jpg", "--emotion", "surprised", "--level", "3", "--n", "100000")
    caps = out["captions"]
    assert 1 < len(caps) < 1000 and len(set(caps)) == len(caps)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: --n 100000") and f"giving {len(caps)}" in lines[0]
    assert out["warnings"] and "--n 100000" in out["warnings"][0]
    # Asking for exactly that many gives the same set, without a notice.
    again, err2 = _caption_json(FACES / "surprise.jpg", "--emotion", "surprised", "--level", "3",
                                "--n", str(len(caps)))
    assert set(again["captions"]) == set(caps) and err2.strip() == "" and again["warnings"] == []


def test_tiny_face_is_flagged(tmp_path, landmarker):
    Image.open(FACES / "happy.jpg").resize((16, 16)).save(tmp_path / "tiny.png")
    out, err = _caption_json(tmp_path / "tiny.png")
    assert out["frames_with_face"] == 1          # MediaPipe still answers at this size...
    assert any("px across" in w for w in out["warnings"])   # ...so the caption must carry a warning
    assert "unreliable" in err and err.count("\n") == 1
    # A normal photo carries no such warning.
    normal, err = _caption_json(FACES / "happy.jpg")
    assert normal["warnings"] == [] and err.strip() == ""


def test_groups_folder_says_it_is_a_folder(tmp_path, landmarker):
    line = assert_one_line_error(run_data_cli("caption", "--video", FACES / "happy.jpg", "--emotion", "happy",
                                              "--level", "2", "--groups", tmp_path))
    assert "is a folder" in line


def test_eval_with_no_face_reference_prints_no_numpy_warning(tmp_path, landmarker):
    proc = run_cli("eval", "--generated", FACES / "single_face.mp4", "--reference", FACES / "no_face.mp4", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "empty slice" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert report["pairs"][0]["lmd_frames"] == 0
