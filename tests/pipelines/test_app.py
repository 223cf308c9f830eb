"""`talkclip app` (issue 14): one app process per session, started like a user would (the CLI in a
subprocess, loopback, a free port) with a tiny random-init checkpoint and the mini-MEAD build;
driven by a real headless Chromium (Debian's chromium + chromium-driver through Selenium) and by
gradio_client. Screenshots of the three tabs land in $TALKCLIP_TEST_ARTIFACTS (default
test-artifacts/ at the repository root)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from talkclip.annotate.media import iter_frames, load_audio
from talkclip.schemas import ARKIT_NAMES

from support import (FACES, ROOT, SPEECH, assert_one_line_error, cached_mini_build, tiny_checkpoint,
                     write_synthetic_tamead)

ARTIFACTS = Path(os.environ.get("TALKCLIP_TEST_ARTIFACTS", ROOT / "test-artifacts"))
SPEECH_FILE = SPEECH / "kids_door_en.wav"        # 2.2 s: keeps generation short
APP = [sys.executable, "-c", "from talkclip.cli import app; app()", "app"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> float:
    """Seconds until the app answers HTTP 200 (fails with the app's log if it exits first)."""
    import urllib.request

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the app did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, landmarker):
    """(url, facts) of a running `talkclip app --checkpoint TINY --data BUILD --port P`."""
    tmp = tmp_path_factory.mktemp("app")
    ckpt = tiny_checkpoint(tmp / "tiny")
    facts, build = cached_mini_build()
    port = _free_port()
    log = tmp / "app.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    with open(log, "w") as out:
        proc = subprocess.Popen([*APP, "--checkpoint", str(ckpt), "--data", str(build), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}/"
    try:
        startup = _wait_up(proc, url, log)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "app-startup.txt").write_text(f"app answered after {startup:.1f} s (tiny checkpoint, mini build)\n")
        yield dict(url=url, port=port, proc=proc, log=log, facts=facts, build=build, tmp=tmp)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def client(app_server):
    from gradio_client import Client

    return Client(app_server["url"], verbose=False, download_files=str(app_server["tmp"] / "downloads"))


@pytest.fixture(scope="session")
def browser(app_server):
    """Headless Debian chromium through its chromium-driver (no browser downloads)."""
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.fail("the app's browser tests need Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver (.ci/run installs them)")
    os.environ.setdefault("SE_OFFLINE", "true")      # Selenium Manager: never fetch a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1100", "--autoplay-policy=no-user-gesture-required",
              "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):   # a test-pattern webcam
        opts.add_argument(a)
    driver = webdriver.Chrome(options=opts, service=Service(driver_bin))
    driver.set_page_load_timeout(60)
    driver.get(app_server["url"])
    yield driver
    driver.quit()


def _wait(driver, cond, timeout: float = 60, what: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: cond(d))
    except Exception:
        _screenshot(driver, f"failed-{what or 'wait'}")
        raise


def _screenshot(driver, name: str) -> Path:
    """The whole page (not only the window) as ARTIFACTS/app-NAME.png."""
    import base64

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"app-{name}.png"
    w, h = driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def _open_tab(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    tab = _wait(driver, lambda d: next((b for b in d.find_elements(By.CSS_SELECTOR, "button[role='tab']")
                                        if b.text.strip() == label), None), what=f"tab-{label}")
    tab.click()


def _css(driver, selector: str):
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found else None


def _video_duration(driver, selector: str) -> float | None:
    """duration of the first <video> under ``selector`` once its metadata has loaded."""
    return driver.execute_script(
        "const v = document.querySelector(arguments[0] + ' video');"
        "return v && v.readyState >= 1 && isFinite(v.duration) ? v.duration : null;", selector)


def _f(path):
    """A local file as a gradio_client upload."""
    from gradio_client import handle_file

    return handle_file(str(path))


def _no_face_photo(path: Path) -> Path:
    from PIL import Image

    frame = next(iter(iter_frames(FACES / "no_face.mp4", check_complete=False)))
    Image.fromarray(frame.rgb).save(path)
    return path


# ---------------------------------------------------------------- the browser

def test_browser_caption_tab(browser, app_server):
    _open_tab(browser, "Caption")
    from selenium.webdriver.common.by import By

    # a webcam snapshot (Chromium's fake camera: a test pattern, no face) becomes the media to
    # caption, and the page shows the CLI's one line, no traceback
    browser.find_element(By.XPATH, "//*[contains(text(), 'Click to Access Webcam')]").click()
    capture = _wait(browser, lambda d: _css(d, "button[aria-label='capture photo']"), what="webcam")
    _wait(browser, lambda d: d.execute_script("const v = document.querySelector('video');"
                                              "return v && v.readyState >= 2 && v.videoWidth > 0;"), what="camera")
    for _ in range(3):   # a click while the camera warms up can be lost on a busy machine
        capture.click()
        try:
            _wait(browser, lambda d: "KB" in _css(d, "#caption-media").text, timeout=15, what="snapshot")
            break
        except Exception:  # noqa: BLE001 - retried, then failed below
            continue
    assert "KB" in _css(browser, "#caption-media").text, "the webcam snapshot never reached the upload"
    _css(browser, "#caption-run").click()
    toast = _wait(browser, lambda d: next((t.text for t in d.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']")
                                           if "error:" in t.text), None), what="toast")
    assert "error: no face found in any of the 1 frame(s) of image.png" in toast and "Traceback" not in toast, toast
    _screenshot(browser, "caption-error")
    for close in browser.find_elements(By.CSS_SELECTOR, "[data-testid='toast-close']"):
        close.click()          # keep the later screenshots clean
    _css(browser, "#caption-media button[aria-label='Clear']").click()
    _css(browser, "#caption-media input[type=file]").send_keys(str(FACES / "surprise.jpg"))
    _wait(browser, lambda d: "surprise" in (t := _css(d, "#caption-media").text) and "KB" in t, what="upload")
    _css(browser, "#caption-run").click()
    text = _wait(browser, lambda d: d.find_element("css selector", "#caption-captions textarea").get_attribute("value"),
                 what="captions")
    # the surprise photo: brows raised, mouth open (AU1 inner brows, AU26 jaw drop, AU25 lips part)
    assert len(text.splitlines()) == 3 and all(s.startswith("A person") for s in text.splitlines())
    assert "inner brows" in text and "jaw" in text and "lips" in text, text
    assert "1/1" in _css(browser, "#caption-summary").text
    _wait(browser, lambda d: _css(d, "#caption-aus img"), what="au-plot")
    assert _css(browser, "#caption-json a") is not None          # the JSON download link
    _screenshot(browser, "caption")


def test_browser_generate_tab(browser, app_server):
    from selenium.webdriver.common.by import By

    _open_tab(browser, "Generate")
    opener = _css(browser, "#generate-checkpoint button.label-wrap")       # the accordion's header
    assert "the loaded checkpoint" in opener.text
    browser.execute_script("arguments[0].scrollIntoView()", opener)
    opener.click()
    facts = _wait(browser, lambda d: (e := _css(d, "#generate-checkpoint-facts")) and e.is_displayed()
                  and " ".join(e.text.split()), what="checkpoint-facts")
    assert "config tiny ," in facts and "training steps not recorded" in facts, facts
    _css(browser, "#generate-portrait input[type=file]").send_keys(str(FACES / "smile.jpg"))
    _css(browser, "#generate-speech input[type=file]").send_keys(str(SPEECH_FILE))
    # click the first example sentence: it fills the style box
    example = _wait(browser, lambda d: next((e for e in d.find_elements(By.XPATH, "//*[contains(text(), 'delighted')]")
                                             if e.is_displayed()), None), what="example")
    example.click()
    _wait(browser, lambda d: "delighted" in _css(d, "#generate-text textarea").get_attribute("value"), what="example-fill")
    _wait(browser, lambda d: _css(d, "#generate-speech audio, #generate-speech [data-testid='waveform-controls']")
          or "kids_door" in _css(d, "#generate-speech").text, what="speech-upload")
    _css(browser, "#generate-run").click()
    _wait(browser, lambda d: "real-time factor" in _css(d, "#generate-timings").text, timeout=120, what="finished")
    duration = _wait(browser, lambda d: _video_duration(d, "#generate-video"), what="video")
    audio_s = len(load_audio(SPEECH_FILE)) / 16_000
    assert abs(duration - audio_s) < 0.1, (duration, audio_s)
    _wait(browser, lambda d: _css(d, "#generate-curves img"), what="curves")
    assert "real-time factor" in _css(browser, "#generate-timings").text
    _screenshot(browser, "generate")


def test_browser_dataset_tab(browser, app_server):
    _open_tab(browser, "Dataset")
    facts = app_server["facts"]
    summary = _wait(browser, lambda d: (e := _css(d, "#dataset-summary")) and e.text, what="dataset")
    assert f"{len(facts['expected_ok'])} clips" in summary
    cell = _wait(browser, lambda d: _css(d, "#dataset-table [data-testid='cell-0-0']"), what="table")
    first = cell.text.strip()
    assert first in facts["expected_ok"], first
    cell.click()
    _wait(browser, lambda d: first in _css(d, "#dataset-captions").text, what="clip-captions")
    duration = _wait(browser, lambda d: _video_duration(d, "#dataset-video"), what="clip-video")
    assert abs(duration - 1.2) < 0.15, duration               # mini-MEAD clips are 1.2 s
    _wait(browser, lambda d: _css(d, "#dataset-aus img"), what="clip-aus")
    _screenshot(browser, "dataset")


# ---------------------------------------------------------------- the API (gradio_client)

def test_api_caption_matches_the_cli_json(client):
    from talkclip.pipelines.caption import caption_media

    summary, captions, _plot, json_path = client.predict(_f(FACES / "happy.jpg"), "woman", "happy", 2, 3,
                                                         api_name="/caption")
    got = json.loads(Path(json_path).read_text())
    want = caption_media(FACES / "happy.jpg", subject="woman", emotion="happy", level=2, n=3).to_json()
    assert got.pop("video") == "happy.jpg" and want.pop("video")
    assert got == want                                        # the JSON `caption --json` prints
    assert captions.splitlines() == want["captions"] and "lip corners" in captions   # AU12 on a smile
    assert "1/1" in summary and "happy/2" in summary


def test_api_generate_shows_the_video_as_it_grows(client):
    job = client.submit(_f(FACES / "smile.jpg"), _f(SPEECH_FILE), "A man is delighted and speaks with lip corners pulled.",
                        "A man is angry.", 0.3, 1.2, None, None, api_name="/generate")
    video, _plot, csv_path, timings = job.result(timeout=180)
    video = video["video"] if isinstance(video, dict) else video
    frames = sum(1 for _ in iter_frames(video))
    assert frames == round(len(load_audio(SPEECH_FILE)) / 16_000 * 25)
    # before the result: the mp4 so far, every 25 frames, growing
    partial = [o for o in job.outputs()[:-1]]
    assert partial and all(o[3].startswith("rendering: ") for o in partial), [o[3] for o in job.outputs()]
    sizes = [sum(1 for _ in iter_frames(o[0]["video"] if isinstance(o[0], dict) else o[0], check_complete=False))
             for o in partial]
    assert 0 < sizes[0] and sizes == sorted(sizes) and sizes[-1] < frames, (sizes, frames)
    header = Path(csv_path).read_text().splitlines()[0].split(",")
    assert header == ["Timecode", "BlendShapeCount", *ARKIT_NAMES]
    assert "style from text-mix" in timings


def test_api_clip(client, app_server):
    import pyarrow.parquet as pq

    cid = app_server["facts"]["expected_ok"][0]
    video, _plot, text = client.predict(cid, api_name="/clip")
    video = video["video"] if isinstance(video, dict) else video
    clips = pq.read_table(app_server["build"] / "clips").to_pandas().set_index("clip_id")
    assert all(c in text for c in clips.loc[cid, "captions"])
    assert sum(1 for _ in iter_frames(video)) == clips.loc[cid, "frames"]


def test_api_errors_are_one_line_and_the_server_keeps_serving(client, tmp_path, app_server):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        client.predict(_f(_no_face_photo(tmp_path / "empty_room.png")), "person", "none", 1, 3, api_name="/caption")
    msg = str(e.value)
    assert msg.startswith("error: no face found") and "\n" not in msg and "Traceback" not in msg, msg
    assert "empty_room.png" in msg and "/tmp/gradio" not in msg        # named as uploaded
    with pytest.raises(AppError, match=r"^error: no clip 'nope'"):
        client.predict("nope", api_name="/clip")
    broken_wav, broken_jpg = tmp_path / "broken.wav", tmp_path / "broken.jpg"
    broken_wav.write_bytes(b"RIFF not really a wav file" * 40)
    broken_jpg.write_bytes((FACES / "smile.jpg").read_bytes()[:300])
    for portrait, speech, name in ((FACES / "smile.jpg", broken_wav, "broken.wav"),
                                   (broken_jpg, SPEECH_FILE, "broken.jpg")):
        with pytest.raises(AppError) as e:
            client.predict(_f(portrait), _f(speech), "calm", "", 0.5, 1.0, None, None, api_name="/generate")
        msg = str(e.value)
        assert msg.startswith("error: ") and name in msg and "\n" not in msg, msg
    # still serving
    _summary, captions, _plot, _json = client.predict(_f(FACES / "anger.jpg"), "man", "none", 1, 1,
                                                      api_name="/caption")
    assert captions.startswith("A man")
    assert app_server["proc"].poll() is None
    assert "Traceback" not in app_server["log"].read_text()


def test_two_generate_requests_at_once_both_finish(client):
    args = [(str(FACES / "smile.jpg"), str(SPEECH_FILE), "A man is happy.", "", 0.5, 1.0, None, None),
            (str(FACES / "surprise.jpg"), str(SPEECH / "dogs_door_en.wav"), "A woman is surprised.", "", 0.5, 1.0,
             None, None)]
    jobs = [client.submit(_f(a[0]), _f(a[1]), *a[2:], api_name="/generate") for a in args]
    results = [j.result(timeout=180) for j in jobs]
    for (portrait, speech, *_), (video, *_rest) in zip(args, results):
        video = video["video"] if isinstance(video, dict) else video
        n = sum(1 for _ in iter_frames(video))
        assert n == round(len(load_audio(speech)) / 16_000 * 25), (speech, n)
    first = [f.rgb for f in iter_frames(results[0][0]["video"] if isinstance(results[0][0], dict) else results[0][0])]
    second = [f.rgb for f in iter_frames(results[1][0]["video"] if isinstance(results[1][0], dict) else results[1][0])]
    assert np.abs(first[0].astype(int) - second[0].astype(int)).mean() > 5    # two portraits, two videos


# ---------------------------------------------------------------- the server itself

def test_app_listens_on_loopback_only(app_server):
    """No --host given: the socket is bound to 127.0.0.1 (from /proc/net/tcp, state 0A = LISTEN)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    listening = [r[1] for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == app_server["port"]]
    assert listening and all(a.split(":")[0] == "0100007F" for a in listening), listening
    log = app_server["log"].read_text()
    assert f"talkclip app on http://127.0.0.1:{app_server['port']}" in log and "gradio.live" not in log, log


def test_missing_gradio_is_one_line(tmp_path):
    code = ("import sys; sys.modules['gradio'] = None; sys.argv = ['talkclip', 'app']; "
            "from talkclip.cli import app; app()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), cwd=tmp_path)
    assert "pip install -e '.[app]'" in assert_one_line_error(proc)


def test_dataset_filters_and_tar_clips_in_process(tmp_path):
    """The Dataset tab's functions without a server: filters, and a clip read from a speaker's tar."""
    from talkclip.pipelines.app import AppOptions, AppState, clip_tab, filter_clips

    facts, build = cached_mini_build()
    state = AppState(AppOptions(data=build), tmp_path)
    state.load()
    everything = filter_clips(state, "all", "all", "all", "all")
    assert sorted(everything["clip_id"]) == facts["expected_ok"]
    happy = filter_clips(state, "all", "happy", "all", "all")
    assert len(happy) and set(happy["emotion"]) == {"happy"}
    w001_level1 = filter_clips(state, "W001", "all", "1", "all")
    assert len(w001_level1) and set(w001_level1["speaker"]) == {"W001"} and set(w001_level1["level"]) == {1}
    with_au25 = filter_clips(state, "all", "all", "all", "AU25")
    assert 0 < len(with_au25) < len(everything) and all("AU25" in a.split() for a in with_au25["active_aus"])
    cid = next(c for c in facts["expected_ok"] if c.startswith("W001"))     # W001 lives in video.tar
    video, _fig, text = clip_tab(state, cid)
    assert Path(video).parent == tmp_path / "clips" and cid in text
    assert sum(1 for _ in iter_frames(video)) == int(state.clips.set_index("clip_id").loc[cid, "frames"])


def test_checkpoint_summary_says_what_was_trained_and_finds_its_curves(tmp_path, landmarker):
    """The Generate tab's note on the loaded checkpoint, in process: a trained one (steps, data,
    curves) and a bare one (weights + config only)."""
    from talkclip.pipelines.app import AppOptions, AppState, checkpoint_summary
    from talkclip.pipelines.train import train

    data = write_synthetic_tamead(tmp_path / "synth-build", n_clips=4, frames=60, seed=5)
    train(data, "tiny", tmp_path / "ck", steps=3, workers=0, log_every=1)
    state = AppState(AppOptions(checkpoint=str(tmp_path / "ck")), tmp_path / "work")
    state.load()
    about, curves = checkpoint_summary(state)
    assert "config `tiny`" in about and "trained 3 steps" in about and "on `synth-build`" in about
    assert curves == str(tmp_path / "ck" / "train_log.png")
    bare = AppState(AppOptions(checkpoint=str(tiny_checkpoint(tmp_path / "bare"))), tmp_path / "work2")
    bare.load()
    about, curves = checkpoint_summary(bare)
    assert curves is None and "training steps not recorded" in about and "no training curves" in about
