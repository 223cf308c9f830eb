"""`talkclip app`: caption, generate and browse a build in the browser (Gradio).

Three tabs, each a thin front of an existing pipeline function and each also a named API
endpoint (``gradio_client.Client(url).predict(..., api_name="/caption")``):

- **Caption** (``/caption``): :func:`talkclip.pipelines.caption.caption_media` on an uploaded
  video or photo (or a webcam snapshot): AU bars with the three level thresholds, captions,
  frames with a face, and the JSON that ``talkclip-data caption --json`` prints.
- **Generate** (``/generate``, with ``--checkpoint``): :func:`talkclip.pipelines.generate.generate`
  on a portrait and speech with a style sentence (mixable with a second one), an intensity, an
  optional style or pose video: the mp4, the main blendshape curves, the ARKit CSV, timings.
- **Dataset** (``/clip``, with ``--data``): :func:`talkclip.pipelines.stats.dataset_stats` as
  plots, a filterable table of clips and, for a selected clip, its video, AU bars and captions.

Errors show the CLI's one line (``error: ...``) in the UI, never a traceback, and the server
keeps serving. Requests queue (Gradio's queue, one at a time per endpoint); the TalkCLIP
checkpoint is loaded once per process. The server binds 127.0.0.1 unless told otherwise and
never opens a share link. Gradio is an optional extra (``pip install -e '.[app]'``).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from talkclip import InputError, MissingAssetError, TalkclipError, one_line
from talkclip.pipelines.plots import au_figure, curves_figure, stats_figures
from talkclip.schemas import AU_IDS
from talkclip.schemas.files import atomic_write, atomic_write_bytes

log = logging.getLogger("talkclip.app")

STYLE_EXAMPLES = (
    "A woman is delighted and speaks with lip corners pulled and cheeks raised.",
    "A man is angry and speaks with brows lowered and lips pressed.",
    "A person is surprised and speaks with brows lifted and jaw dropped.",
    "A woman is sad and speaks with lip corners depressed and inner brows raised.",
    "A man speaks calmly with a neutral expression.",
)
NO_CHECKPOINT = ("**No checkpoint loaded.** Start the app with `talkclip app --checkpoint DIR` (a folder written "
                 "by `talkclip train`; see the README's *Model and training*). A tiny one for a quick look: "
                 "`talkclip-data demo`, then `talkclip train --data demo_out/ta-mead --config tiny --out runs/tiny`.")
NO_DATA = ("**No dataset loaded.** Start the app with `talkclip app --data BUILD`, a TA-MEAD folder from "
           "`talkclip-data build-ta-mead` (`talkclip-data demo` makes a tiny one in `demo_out/ta-mead`).")
ALL = "all"
PREVIEW_FRAMES = 25     # while generating, show the video so far every this many new frames


@dataclass(frozen=True)
class AppOptions:
    checkpoint: str | None = None    # checkpoint directory or Hub id org/name[@rev], as `generate --checkpoint`
    data: Path | None = None         # TA-MEAD build folder
    host: str = "127.0.0.1"
    port: int = 7860
    device: str = "cpu"


def import_gradio():
    """gradio, or a one-line MissingAssetError saying how to install the optional extra."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # no phoning home
    try:
        import gradio
    except ImportError:
        raise MissingAssetError("the browser app needs gradio: pip install -e '.[app]'") from None
    return gradio


def ui_errors(fn: Callable) -> Callable:
    """Run a tab function (a plain or a generator function); any error becomes the CLI's one
    line in the UI (gr.Error), no traceback. Project errors are expected and not logged;
    anything else is logged with its traceback on the server's stderr (a bug to fix) and still
    shown as one line."""
    def one_line_error(e: BaseException, args: tuple, kwargs: dict):
        import gradio as gr

        if isinstance(e, gr.Error):
            return e
        if isinstance(e, TalkclipError):
            msg = one_line(e)
        else:
            log.error("unexpected error in %s", fn.__name__, exc_info=e)
            msg = f"unexpected {type(e).__name__}: {one_line(e)}"
        for a in (*args, *kwargs.values()):   # uploads live in Gradio's cache: name them as the user did
            if isinstance(a, str) and len(a) > 1 and os.path.isabs(a):
                msg = msg.replace(a, Path(a).name)
        return gr.Error(f"error: {msg}", print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapped_gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - the server must keep serving
                raise one_line_error(e, args, kwargs) from None
        return wrapped_gen

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the server must keep serving
            raise one_line_error(e, args, kwargs) from None
    return wrapped


# ---------------------------------------------------------------- the tab functions (plain Python, testable)

class AppState:
    """What the tab functions share: options, a scratch folder for outputs, the loaded
    checkpoint (once per process) and the build's clips table."""

    def __init__(self, options: AppOptions, workdir: Path):
        from talkclip.annotate.au import load_au_table

        self.options = options
        self.workdir = workdir
        self.au_table = load_au_table(None)
        self.loaded = None                    # (renderer, model), loaded once per process
        self.checkpoint: Path | None = None   # the local checkpoint directory
        self._lock = threading.Lock()
        self.clips = None            # pandas DataFrame of the build's clips, one row per clip
        self.mead_root: Path | None = None
        self.stats = None

    def out_dir(self) -> Path:
        d = self.workdir / uuid.uuid4().hex[:12]
        d.mkdir(parents=True)
        return d

    def load(self) -> None:
        """Load the checkpoint and read the build up front, so bad options fail at start-up."""
        if self.options.checkpoint is not None:
            from talkclip.model.device import resolve_device
            from talkclip.model.hub import resolve_checkpoint
            from talkclip.pipelines.generate import load_models

            self.checkpoint = resolve_checkpoint(self.options.checkpoint)    # a Hub id is fetched once
            self.loaded = load_models(self.checkpoint, str(resolve_device(self.options.device)))
        if self.options.data is not None:
            self.clips, self.stats, self.mead_root = read_build(Path(self.options.data))


def caption_tab(state: AppState, media: str | None, subject: str, emotion: str, level: int | float,
                n: int | float, progress=None):
    """Caption one uploaded video or photo -> (summary markdown, captions, AU figure, JSON path)."""
    from talkclip.pipelines.caption import SUBJECTS, caption_media

    if not media:
        raise InputError("upload a video or photo first")
    if subject.strip().lower() not in SUBJECTS:
        raise InputError(f"--subject must be one of {', '.join(SUBJECTS)}, got {subject!r}")
    emo = None if not emotion or emotion == "none" else emotion
    on_frame = None
    if progress is not None:
        def on_frame(i, total):
            progress((i, total) if total else i, desc="tracking", unit="frames")
    res = caption_media(media, subject=subject, emotion=emo, level=int(level) if emo else None, n=int(n),
                        on_frame=on_frame)
    payload = res.to_json()
    payload["video"] = Path(media).name        # the server-side upload path means nothing to the user
    out = state.out_dir() / "caption.json"
    out.write_text(json.dumps(payload, ensure_ascii=False) + "\n")
    rate = f"{res.fps:.2f} fps video" if res.fps else "photo"
    summary = (f"**{res.frames_with_face}/{res.frames}** frames with a face · {rate} · AU estimator "
               f"{res.estimator}" + (f" · emotion {res.emotion}/{res.level}: {', '.join(res.emotion_labels)}"
                                     if res.emotion else "")
               + "".join(f"\n\n⚠ warning: {w}" for w in res.warnings))
    intensity = np.array([a["intensity"] for a in res.aus], dtype=np.float64)
    levels = np.array([a["level"] for a in res.aus], dtype=np.int64)
    fig = au_figure(intensity, levels, state.au_table.thresholds,
                    "AU intensities (mean over frames with a face) and level thresholds")
    return summary, "\n".join(res.captions), fig, str(out)


def checkpoint_summary(state: AppState) -> tuple[str, str | None]:
    """(markdown about the loaded checkpoint, path of its training curves or None) for the Generate
    tab: what the model card would say (config, size, steps, data), read from the folder."""
    from talkclip.pipelines.model_card import read_checkpoint_facts

    if state.checkpoint is None:
        return "", None
    f = read_checkpoint_facts(state.checkpoint)
    data = f.get("data") or {}
    lines = [f"config `{f['config_name']}`, {f['parameters']:,d} parameters",
             f"trained {f['steps']} steps" if f.get("steps") is not None else "training steps not recorded",
             f"on `{Path(data['path']).name}`" if data.get("path") else "training data not recorded",
             f"`{state.options.checkpoint}`"]
    curves = str(state.checkpoint / f["curves"]) if f.get("curves") else None
    return " · ".join(lines) + ("" if curves else " · no training curves in the folder"), curves


def generate_tab(state: AppState, portrait: str | None, speech: str | None, text: str, mix_text: str,
                 mix_weight: float, intensity: float, style_video: str | None, pose_video: str | None,
                 progress=None) -> Iterator[tuple]:
    """Portrait + speech + style -> yields (mp4 path, curves figure, CSV path, timings markdown):
    while rendering, snapshots of the growing (fragmented) mp4 every :data:`PREVIEW_FRAMES`
    frames with only a progress line; last, the finished video with curves, CSV and timings."""
    from talkclip.pipelines.generate import GenerateRequest, run

    if state.loaded is None:
        raise InputError("no checkpoint loaded: start the app with --checkpoint DIR")
    if not portrait or not speech:
        raise InputError("a portrait and a speech file are needed")
    out = state.out_dir()
    mix = ((mix_text.strip(), float(mix_weight)),) if mix_text and mix_text.strip() else ()
    req = GenerateRequest(state.checkpoint, portrait, speech, (text or "").strip() or None, out / "talkclip.mp4",
                          device=state.options.device, export_blendshapes=out / "blendshapes_arkit.csv",
                          style_video=style_video or None, text_mix=mix, intensity=float(intensity),
                          pose_video=pose_video or None, stream=True)    # the mp4 grows as frames are rendered
    snapshots: queue.Queue = queue.Queue()
    shown = [0]

    def on_progress(stage, done, total):   # in the worker thread
        if progress is not None:
            progress((done, total), desc=stage, unit="frames")
        if done < total and done - shown[0] >= PREVIEW_FRAMES and req.out.is_file():
            shown[0] = done
            snap = out / f"partial-{done:05d}.mp4"
            shutil.copyfile(req.out, snap)
            snapshots.put((str(snap), f"rendering: {done}/{total} frames ..."))

    with state._lock:   # one generation at a time per process (torch threads are process-wide)
        result = _in_thread(lambda: run(req, on_progress, loaded=state.loaded), snapshots)
        for item in result:
            yield item[0], None, None, item[1]
    s = result.value
    t = s.timings
    timings = (f"{s.frames} frames at {s.fps:g} fps ({s.duration_s:.2f} s), style from {s.style_source}; "
               f"time: prepare {t['prepare']:.2f} s, text {t['text']:.2f} s, motion, render and encode "
               f"{t['motion'] + t['render'] + t['encode']:.2f} s; real-time factor {s.realtime_factor:.2f}")
    yield str(s.out), curves_figure(s.blendshapes_csv, s.fps), str(s.blendshapes_csv), timings


class _in_thread:
    """Run ``fn`` in a thread; iterating yields what it puts in ``items`` meanwhile; then
    ``value`` is its result (its exception is raised at the end of the iteration)."""

    def __init__(self, fn: Callable, items: "queue.Queue"):
        self.items, self.value, self.error = items, None, None

        def work():
            try:
                self.value = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                self.error = e
        self.thread = threading.Thread(target=work, name="talkclip-app-generate", daemon=True)
        self.thread.start()

    def __iter__(self):
        while self.thread.is_alive() or not self.items.empty():
            try:
                yield self.items.get(timeout=0.2)
            except queue.Empty:
                continue
        if self.error is not None:
            raise self.error


# ---------------------------------------------------------------- the Dataset tab

def read_build(data: Path):
    """(clips DataFrame, DatasetStats, corpus root or None) of a TA-MEAD build folder."""
    from talkclip.pipelines.stats import dataset_stats
    from talkclip.schemas.build import open_build

    build = open_build(data, ("clips",))     # the one build reader: one-line error when it is not a build
    st = dataset_stats(data, n_samples=0)
    df = build.read("clips").sort_by("clip_id").to_pandas()
    df["active_aus"] = [" ".join(f"AU{a}" for a, lv in zip(AU_IDS, levels) if lv >= 1) for levels in df["au_level"]]
    df["caption"] = [c[0] if len(c) else "" for c in df["captions"]]
    root = build.source_root()
    if root is not None and not root.is_dir():
        root = None     # the clips' videos cannot be shown; stats, AU bars and captions still can
    return df, st, root


TABLE_COLUMNS = ["clip_id", "speaker", "emotion", "level", "split", "frames", "active_aus", "caption"]


def filter_clips(state: AppState, speaker: str, emotion: str, level, au: str):
    """The clips table filtered by speaker, emotion, level and an active AU ("all" = no filter)."""
    df = state.clips
    keep = np.ones(len(df), dtype=bool)
    if speaker and speaker != ALL:
        keep &= (df["speaker"] == speaker).to_numpy()
    if emotion and emotion != ALL:
        keep &= (df["emotion"] == emotion).to_numpy()
    if level not in (None, "", ALL):
        keep &= (df["level"] == int(level)).to_numpy()
    if au and au != ALL:
        i = AU_IDS.index(int(au.removeprefix("AU")))
        keep &= np.array([lv[i] >= 1 for lv in df["au_level"]], dtype=bool)
    return df.loc[keep, TABLE_COLUMNS].reset_index(drop=True)


def clip_video(state: AppState, video_path: str, clip_id: str) -> str | None:
    """The clip's video as a file the app may serve (copied or extracted from its tar into the
    scratch folder once), or None when the build's MEAD root is not available."""
    if state.mead_root is None:
        return None
    from talkclip.pipelines.mead import read_member
    from talkclip.pipelines.train_renderer import media_ref

    out = state.workdir / "clips" / f"{clip_id}{Path(video_path.split('::')[-1]).suffix or '.mp4'}"
    if not out.is_file():
        ref = media_ref(video_path, state.mead_root)
        if ref.member is None:
            if not Path(ref.path).is_file():
                raise InputError(f"video of {clip_id} not found: {ref.path}")
            atomic_write(out, lambda tmp: shutil.copyfile(ref.path, tmp))
        else:
            atomic_write_bytes(out, read_member(ref))
    return str(out)


def clip_tab(state: AppState, clip_id: str):
    """One clip of the build -> (video path or None, AU figure, captions markdown)."""
    if state.clips is None:
        raise InputError("no dataset loaded: start the app with --data BUILD")
    rows = state.clips.index[state.clips["clip_id"] == clip_id]
    if not clip_id or len(rows) == 0:
        raise InputError(f"no clip {clip_id!r} in {state.options.data}")
    r = state.clips.loc[rows[0]]
    fig = au_figure(np.asarray(r["au_intensity"], dtype=np.float64), np.asarray(r["au_level"], dtype=np.int64),
                    state.au_table.thresholds, f"{clip_id}: AU intensities (after the speaker's neutral baseline)")
    labels = ", ".join(r["emotion_labels"])
    text = (f"**{clip_id}** · {r['speaker']} · {r['emotion']}/{r['level']} ({labels}) · {r['frames']} frames, "
            f"{r['frames_with_face']} with a face\n\n" + "\n".join(f"- {c}" for c in r["captions"]))
    video = clip_video(state, str(r["video_path"]), clip_id)
    if video is None:
        text += "\n\n*(video not shown: the build's MEAD folder is not available)*"
    return video, fig, text


# ---------------------------------------------------------------- the Blocks

def _caption_ui(gr, state: AppState) -> None:
    from talkclip.annotate.emotions import MEAD_EMOTIONS
    from talkclip.pipelines.caption import SUBJECTS

    with gr.Row():
        with gr.Column(scale=2):
            media = gr.File(label="video or photo", file_types=["image", "video"], type="filepath",
                            elem_id="caption-media")
            webcam = gr.Image(label="or a webcam snapshot", sources=["webcam"], type="filepath", height=200)
            with gr.Row():
                subject = gr.Dropdown(list(SUBJECTS), value="person", label="subject")
                emotion = gr.Dropdown(["none", *MEAD_EMOTIONS], value="none", label="emotion (optional)")
                level = gr.Dropdown([1, 2, 3], value=1, label="level")
            n = gr.Slider(1, 10, value=3, step=1, label="caption variants")
            button = gr.Button("Caption", variant="primary", elem_id="caption-run")
        with gr.Column(scale=3):
            summary = gr.Markdown(elem_id="caption-summary")
            captions = gr.Textbox(label="captions", lines=4, elem_id="caption-captions")
            bars = gr.Plot(label="AU intensities", show_label=False, elem_id="caption-aus")
            json_file = gr.File(label="JSON (as `talkclip-data caption --json`)", elem_id="caption-json")
    webcam.change(lambda p: p, webcam, media, api_visibility="private")

    @ui_errors
    def caption(media, subject, emotion, level, n, progress=gr.Progress()):
        return caption_tab(state, media, subject, emotion, level, n, progress)

    button.click(caption, [media, subject, emotion, level, n], [summary, captions, bars, json_file],
                 api_name="caption")


def _generate_ui(gr, state: AppState) -> None:
    if state.loaded is None:
        gr.Markdown(NO_CHECKPOINT, elem_id="generate-missing")
    with gr.Row(visible=state.loaded is not None):
        with gr.Column(scale=2):
            with gr.Row():
                # a file, not gr.Image: Gradio would decode (and reject) the image itself before the
                # pipeline can give its one-line error; the preview shows what was uploaded
                with gr.Column(min_width=160):
                    portrait = gr.File(label="portrait", file_types=["image"], type="filepath", height=90,
                                       elem_id="generate-portrait")
                    preview = gr.Image(show_label=False, interactive=False, height=150, container=False)
                speech = gr.Audio(label="speech", type="filepath", sources=["upload", "microphone"],
                                  elem_id="generate-speech")
            text = gr.Textbox(label="style sentence", lines=2, elem_id="generate-text",
                              placeholder="e.g. " + STYLE_EXAMPLES[0])
            gr.Examples([[s] for s in STYLE_EXAMPLES], [text], label="example sentences (click one)")
            with gr.Row():
                mix_text = gr.Textbox(label="second sentence (optional)", lines=1)
                mix_weight = gr.Slider(0, 1, value=0.5, step=0.05, label="its weight in the mix")
            intensity = gr.Slider(0, 2, value=1.0, step=0.05, label="intensity (0 neutral, 1 as predicted)")
            if state.loaded is not None:
                about, curves_png = checkpoint_summary(state)
                with gr.Accordion("the loaded checkpoint", open=False, elem_id="generate-checkpoint"):
                    gr.Markdown(about, elem_id="generate-checkpoint-facts")
                    if curves_png:
                        gr.Image(curves_png, show_label=False, interactive=False, label="training curves")
            with gr.Accordion("optional: style video, pose video", open=False):
                style_video = gr.Video(label="style video (instead of the sentence)", sources=["upload"])
                pose_video = gr.Video(label="pose video (head rotations)", sources=["upload"])
            button = gr.Button("Generate", variant="primary", elem_id="generate-run")
        with gr.Column(scale=3):
            video = gr.Video(label="generated video (marked synthetic)", elem_id="generate-video", autoplay=False)
            curves = gr.Plot(label="main blendshape curves", show_label=False, elem_id="generate-curves")
            csv_file = gr.File(label="ARKit blendshapes CSV", elem_id="generate-csv")
            timings = gr.Markdown(elem_id="generate-timings")

    portrait.change(image_preview, portrait, preview, api_visibility="private")

    @ui_errors
    def generate(portrait, speech, text, mix_text, mix_weight, intensity, style_video, pose_video,
                 progress=gr.Progress()):
        yield from generate_tab(state, portrait, speech, text, mix_text, mix_weight, intensity, style_video,
                                pose_video, progress)

    button.click(generate, [portrait, speech, text, mix_text, mix_weight, intensity, style_video, pose_video],
                 [video, curves, csv_file, timings], api_name="generate")


def image_preview(path: str | None) -> str | None:
    """The uploaded image's path when it can be shown, else None (the pipeline reports why)."""
    from PIL import Image, UnidentifiedImageError

    if not path:
        return None
    try:
        with Image.open(path) as im:
            im.verify()
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return path


def _dataset_ui(gr, state: AppState) -> None:
    if state.clips is None:
        gr.Markdown(NO_DATA, elem_id="dataset-missing")
        clip_id = gr.Textbox(visible=False)
        outs = [gr.Video(visible=False), gr.Plot(visible=False), gr.Markdown(visible=False)]
    else:
        df, st = state.clips, state.stats
        gr.Markdown(f"**{st.clips} clips**, {st.speakers} speakers, {st.frames} frames · splits "
                    f"{', '.join(f'{k} {v}' for k, v in st.splits.items())} · failed {sum(st.failures_by_stage.values())}"
                    f" · audio/video mismatch {st.av_mismatch} · `{state.options.data}`", elem_id="dataset-summary")
        fig1, fig2 = stats_figures(st)
        with gr.Row():
            gr.Plot(fig1, label="clips per emotion and level", show_label=False)
            gr.Plot(fig2, label="AU activation", show_label=False)
        with gr.Row():
            speaker = gr.Dropdown([ALL, *sorted(df["speaker"].unique())], value=ALL, label="speaker")
            emotion = gr.Dropdown([ALL, *sorted(df["emotion"].unique())], value=ALL, label="emotion")
            level = gr.Dropdown([ALL, *(str(v) for v in sorted(df["level"].unique()))], value=ALL, label="level")
            au = gr.Dropdown([ALL, *(f"AU{a}" for a in AU_IDS)], value=ALL, label="active AU")
        table = gr.Dataframe(filter_clips(state, ALL, ALL, ALL, ALL), interactive=False, wrap=True,
                             label="clips (click a row)", elem_id="dataset-table", max_height=320)
        clip_id = gr.Dropdown(list(df["clip_id"]), value=None, label="clip", elem_id="dataset-clip",
                              allow_custom_value=True)   # an unknown id gets the app's own one-line error
        with gr.Row():
            outs = [gr.Video(label="clip video", elem_id="dataset-video"),
                    gr.Plot(label="AU intensities", show_label=False, elem_id="dataset-aus")]
        outs.append(gr.Markdown(elem_id="dataset-captions"))
        filters = [speaker, emotion, level, au]
        for f in filters:
            f.change(lambda *v: filter_clips(state, *v), filters, table, api_visibility="private")

        def row_clip_id(evt):  # a click on a row selects its clip
            return evt.row_value[0] if evt.row_value else None
        row_clip_id.__annotations__ = {"evt": gr.SelectData}   # real class: this module's annotations are strings
        table.select(row_clip_id, None, clip_id, api_visibility="private")

    @ui_errors
    def clip(clip_id):
        return clip_tab(state, clip_id)

    clip_id.change(clip, clip_id, outs, api_name="clip")


def build_app(state: AppState):
    """The gr.Blocks of the three tabs (queue enabled, one request at a time per endpoint)."""
    gr = import_gradio()
    with gr.Blocks(title="talkclip") as demo:
        gr.Markdown("## talkclip · text-guided expressive talking heads and the TA-MEAD toolkit")
        with gr.Tabs():
            with gr.Tab("Caption", id="caption", elem_id="tab-caption"):
                _caption_ui(gr, state)
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                _generate_ui(gr, state)
            with gr.Tab("Dataset", id="dataset", elem_id="tab-dataset"):
                _dataset_ui(gr, state)
    demo.queue(default_concurrency_limit=1)
    return demo


def serve(options: AppOptions, *, ready: Callable[[str], None] | None = None) -> None:
    """Load everything once, then serve the app until interrupted (blocks); ``ready(url)`` is
    called once it answers."""
    gr = import_gradio()
    if not (0 < options.port < 65536):
        raise InputError(f"--port must be within 1..65535, got {options.port}")
    workdir = Path(tempfile.mkdtemp(prefix="talkclip-app-"))
    try:
        state = AppState(options, workdir)
        state.load()
        demo = build_app(state)
        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                  font_mono=["ui-monospace", "monospace"])   # no web fonts: works offline
        try:
            demo.launch(server_name=options.host, server_port=options.port, share=False, inbrowser=False,
                        show_error=False, quiet=True, ssr_mode=False, mcp_server=False, pwa=False,
                        allowed_paths=[str(workdir)], theme=theme, prevent_thread_lock=True, run_history=False)
        except OSError as e:   # Gradio's message names its own settings; say it in the CLI's terms
            why = "the port is in use" if "empty port" in str(e) else one_line(e)
            raise InputError(f"cannot listen on {options.host}:{options.port}: {why} (choose another with --port)") from None
        if ready is not None:
            ready(f"http://{options.host}:{options.port}")
        demo.block_thread()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
