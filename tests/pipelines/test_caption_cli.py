"""`talkclip-data caption` and `demo` through the installed console script (real subprocesses)."""

from __future__ import annotations

import json
import re

import pytest

from talkclip.annotate.media import iter_frames
from talkclip.schemas import AU_IDS

from support import FACES, assert_one_line_error, run_data_cli, write_partial_face_video

KEYS = {"video", "frames", "frames_with_face", "fps", "aus", "captions"}


def test_caption_json_on_photo(landmarker, fixtures):
    proc = run_data_cli("caption", "--video", FACES / "surprise.jpg", "--subject", "woman",
                        "--emotion", "surprised", "--level", "3", "--n", "4", "--seed", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert KEYS <= set(out)
    assert out["frames"] == out["frames_with_face"] == 1 and isinstance(out["fps"], float)
    assert [a["au"] for a in out["aus"]] == list(AU_IDS)
    for a in out["aus"]:
        assert set(a) == {"au", "name", "intensity", "level"} and 0 <= a["level"] <= 3 and 0 <= a["intensity"] <= 5
    assert len(out["captions"]) == 4 and all(c.startswith("A woman ") for c in out["captions"])
    assert any("brows" in c for c in out["captions"])
    assert out["emotion_labels"] and any(" while speaking." in c for c in out["captions"])


def test_caption_human_output_without_emotion(landmarker, fixtures):
    proc = run_data_cli("caption", "--video", FACES / "anger.jpg", "--subject", "man")
    assert proc.returncode == 0, proc.stderr
    assert "Brow Lowerer" in proc.stdout and "Jaw Drop" in proc.stdout
    caps = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip().startswith("A man ")]
    assert len(caps) == 3 and all(c.startswith("A man speaks with brows ") for c in caps), proc.stdout


def test_talking_video_every_frame(landmarker, fixtures):
    decoded = sum(1 for _ in iter_frames(FACES / "talking_pexels.mp4"))
    proc = run_data_cli("caption", "--video", FACES / "talking_pexels.mp4", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["frames"] == decoded and out["frames_with_face"] == decoded
    assert abs(out["fps"] - 23.976) < 0.01


def test_partial_face_video_succeeds(tmp_path, landmarker, fixtures):
    video = write_partial_face_video(tmp_path / "partial.mp4")
    proc = run_data_cli("caption", "--video", video, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert 0 < out["frames_with_face"] < out["frames"] == 24


def test_no_face_truncated_and_missing_exit_2(tmp_path, landmarker, fixtures):
    line = assert_one_line_error(run_data_cli("caption", "--video", FACES / "no_face.mp4"))
    assert "no face" in line
    data = (FACES / "single_face.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_data_cli("caption", "--video", cut, "--json"))
    assert "no such file" in assert_one_line_error(run_data_cli("caption", "--video", tmp_path / "nope.mp4"))


@pytest.mark.parametrize("args, words", [
    (("--emotion", "furious", "--level", "2"), "unknown emotion"),
    (("--emotion", "angry", "--level", "4"), "no level 4"),
    (("--subject", "dog"), "--subject"),
    (("--estimator", "feat"), "py-feat"),
])
def test_bad_options_exit_2(args, words, fixtures):
    line = assert_one_line_error(run_data_cli("caption", "--video", FACES / "smile.jpg", *args))
    assert words in line


def test_broken_model_table_and_folder_exit_2(tmp_path, fixtures):
    (tmp_path / "bad.csv").write_bytes(b"\xff\xfe\x00 not utf-8")
    (tmp_path / "fake.task").write_text("not a model")
    line = assert_one_line_error(run_data_cli("caption", "--video", FACES / "smile.jpg",
                                              "--landmarker", tmp_path / "fake.task"))
    assert "cannot load landmarker model" in line
    line = assert_one_line_error(run_data_cli("caption", "--video", FACES / "smile.jpg",
                                              "--au-table", tmp_path / "bad.csv"))
    assert "cannot read table" in line
    assert "not a file" in assert_one_line_error(run_data_cli("caption", "--video", tmp_path))


def test_demo_runs_on_sample_or_says_how_to_get_it(tmp_path, landmarker):
    from talkclip.annotate.tracker import cache_dir

    empty = tmp_path / "cache"
    line = assert_one_line_error(run_data_cli("demo", env={"TALKCLIP_CACHE": str(empty)}))
    assert "setup" in line
    if not (cache_dir() / "samples" / "talking.mp4").is_file():
        pytest.skip("sample media not installed (run `talkclip-data setup`)")
    proc = run_data_cli("demo", "--json", "--n", "2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["frames_with_face"] > 0 and len(out["captions"]) == 2


def test_prefetch_keeps_order_and_reraises():
    from talkclip import MediaError
    from talkclip.pipelines.caption import prefetch

    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise MediaError("corrupt after 2")

    got = []
    with pytest.raises(MediaError, match="corrupt after 2"):
        for x in prefetch(failing()):
            got.append(x)
    assert got == [1, 2]
    closed = []

    def endless():
        try:
            k = 0
            while True:
                yield k
                k += 1
        finally:
            closed.append(True)

    it = prefetch(endless(), depth=2)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()
    assert closed == [True]


def test_caption_media_uses_user_tables(tmp_path, landmarker, fixtures):
    """--au-table and --groups files change levels and labels (pure pipeline function)."""
    from talkclip.annotate.au import AU_TABLE_PATH, load_au_table
    from talkclip.annotate.emotions import GROUPS_PATH
    from talkclip.pipelines.caption import caption_media, levels_of

    default = caption_media(FACES / "happy.jpg", subject="woman", emotion="happy", level=2, n=3, seed=1)
    assert levels_of(default)[AU_IDS.index(12)] >= 1
    assert set(default.emotion_labels) == {"happiness", "joy", "delight", "amusement", "enjoyment"}
    strict = load_au_table().with_thresholds(load_au_table().thresholds + 10)   # nothing reaches level 1
    strict.save(tmp_path / "strict.csv")
    groups = tmp_path / "groups.csv"
    groups.write_text(GROUPS_PATH.read_text().replace("happy,2,happiness;joy;delight;amusement;enjoyment",
                                                      "happy,2,glee"))
    res = caption_media(FACES / "happy.jpg", subject="woman", emotion="happy", level=2, n=3, seed=1,
                        au_table=tmp_path / "strict.csv", groups=groups)
    assert (levels_of(res) == 0).all() and res.emotion_labels == ["glee"]
    assert res.au_table_sha256 != default.au_table_sha256 == load_au_table(AU_TABLE_PATH).sha256
    assert all(re.fullmatch(r"A woman (is gleeful|is full of glee) while speaking\.", c) for c in res.captions)
    assert [a["intensity"] for a in res.aus] == [a["intensity"] for a in default.aus]


def test_demo_builds_and_reports_its_ta_mead(tmp_path, landmarker):
    """The README's first command ends with `talkclip-data demo`: caption, build, stats, exit 0."""
    from talkclip.annotate.tracker import cache_dir

    if not (cache_dir() / "samples" / "talking.mp4").is_file():
        pytest.skip("sample media not installed (run `talkclip-data setup`)")
    proc = run_data_cli("demo", "--out", tmp_path / "demo", "--n", "1")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "sample captions" in proc.stdout and "demo TA-MEAD in" in proc.stdout
    assert (tmp_path / "demo" / "ta-mead" / "manifest.json").is_file()
