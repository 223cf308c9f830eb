"""Walking MEAD folders (extracted and tar), filters, layout errors, and the demo sample."""

from __future__ import annotations

import subprocess
import sys
import tarfile

import pytest

from talkclip import InputError, LayoutError
from talkclip.pipelines.mead import read_member, walk_mead

from support import FACES, ROOT, cached_mini_mead


@pytest.fixture(scope="module")
def mini(fixtures):
    return cached_mini_mead()


def test_walk_lists_front_clips_of_both_layouts(mini):
    clips = walk_mead(mini["root"])
    assert [c.clip_id for c in clips] == mini["front_clips"]
    by_id = {c.clip_id: c for c in clips}
    # extracted speaker: plain paths; the m4a of the silent mp4 is paired by emotion/level/take
    sad = by_id["M001_front_sad_level_2_001"]
    assert sad.video.member is None and sad.audio is not None and sad.audio.path.endswith("sad/level_2/001.m4a")
    assert by_id["M001_front_angry_level_1_001"].audio is None
    # tar speaker: members of video.tar / audio.tar, not unpacked anywhere
    w = by_id["W001_front_happy_level_1_001"]
    assert w.video.path.endswith("W001/video.tar") and w.video.member == "video/front/happy/level_1/001.mp4"
    assert w.audio.member == "audio/happy/level_1/001.m4a"
    assert w.video.display.endswith("video.tar::video/front/happy/level_1/001.mp4")
    assert not (mini["root"] / "W001" / "video").exists()


def test_tar_member_bytes_are_read_exactly(mini):
    clip = {c.clip_id: c for c in walk_mead(mini["root"])}["W001_front_neutral_level_1_002"]
    with tarfile.open(clip.video.path) as tf:
        expected = tf.extractfile(clip.video.member).read()
    assert read_member(clip.video) == expected
    src = clip.video.open()
    assert src.name.endswith("::video/front/neutral/level_1/002.mp4") and src.read() == expected


def test_filters(mini):
    root = mini["root"]
    all_views = walk_mead(root, views=None)
    assert set(mini["other_views"]) <= {c.clip_id for c in all_views}
    assert len(all_views) == len(mini["front_clips"]) + len(mini["other_views"])
    assert [c.view for c in walk_mead(root, views=["left_30"])] == ["left_30"]
    # the one --views rule (the CLI passes what it parsed): not given = front, "all" = every view
    assert {c.view for c in walk_mead(root, views=[])} == {"front"}
    assert len(walk_mead(root, views=["all"])) == len(all_views)
    neutral = walk_mead(root, emotions=["neutral"])
    assert {c.emotion for c in neutral} == {"neutral"} and len(neutral) == 4
    assert {c.speaker for c in walk_mead(root, speakers=["W001"])} == {"W001"}
    assert [c.clip_id for c in walk_mead(root, limit=3)] == mini["front_clips"][:3]
    with pytest.raises(InputError, match="unknown emotion"):
        walk_mead(root, emotions=["joyful"])
    with pytest.raises(InputError, match="not found"):
        walk_mead(root, speakers=["M999"])
    with pytest.raises(LayoutError, match="no clip"):
        walk_mead(root, speakers=["W001"], views=["top"])


def test_not_mead_shaped(tmp_path, mini):
    with pytest.raises(InputError, match="no such folder"):
        walk_mead(tmp_path / "missing")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    with pytest.raises(LayoutError, match=r"expected <root>/<SPK>/video/<view>"):
        walk_mead(tmp_path)
    # a single speaker's folder given instead of the root: say so
    with pytest.raises(LayoutError, match="pass its parent"):
        walk_mead(mini["root"] / "M001")


def test_cli_bad_layout_exits_2_with_one_line(tmp_path):
    (tmp_path / "not_mead").mkdir()
    proc = subprocess.run([sys.executable, "-c", "from talkclip.cli import data_app; data_app()", "build-ta-mead",
                           "--mead", str(tmp_path / "not_mead"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not MEAD-shaped" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_broken_landmarker_fails_before_any_clip(tmp_path):
    """A model file that does not load is unusable input (exit 2), not a failure of every clip."""
    mead = cached_mini_mead()["root"]
    (tmp_path / "fake.task").write_text("not a model")
    proc = subprocess.run([sys.executable, "-c", "from talkclip.cli import data_app; data_app()", "build-ta-mead",
                           "--mead", str(mead), "--out", str(tmp_path / "out"), "--landmarker",
                           str(tmp_path / "fake.task")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "cannot load landmarker model" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_make_sample_is_mead_shaped_and_builds(tmp_path, fixtures):
    from talkclip.pipelines.sample import SAMPLE_PLAN, make_sample

    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "talking.mp4").symlink_to(FACES / "talking_pexels.mp4")
    rep = make_sample(tmp_path / "sample", samples_dir=samples, clip_s=1.0)
    clips = walk_mead(rep.root)
    assert [c.clip_id for c in clips] == rep.clips and len(clips) == len(SAMPLE_PLAN)
    assert {c.speaker for c in clips} == {"DEMO1", "DEMO2"}
    assert all(c.audio is not None for c in clips if c.speaker == "DEMO2")
    proc = subprocess.run([sys.executable, "-c", "from talkclip.cli import data_app; data_app()", "build-ta-mead",
                           "--mead", str(rep.root), "--out", str(tmp_path / "built"), "--speakers", "DEMO2",
                           "--limit", "2"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr          # every clip succeeded
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "built" / "clips")
    assert t.num_rows == 2
    assert set(t.column("audio_source").to_pylist()) == {"m4a"}
    assert all(c.startswith("A person ") for caps in t.column("captions").to_pylist() for c in caps)
    with pytest.raises(InputError, match="not empty"):
        make_sample(rep.root, samples_dir=samples)
