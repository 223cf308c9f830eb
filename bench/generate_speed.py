"""Real-time factor of `talkclip generate` (seconds of video per second of compute), offline and
streaming.

Runs the whole pipeline (portrait tracking, text style, motion, render, encode) on the fixture
portrait smile.jpg and speech hello_en.wav, and prints the split between prepare (portrait
tracking + audio decoding), text, motion, render and encode (the part of encoding that is not
hidden behind rendering); all of those count. The models are loaded once before the runs
(paid once per process, reported, not counted). ``--model base`` builds a base-size TalkCLIP (the
paper's sizes; its CLIP text tower at ViT-B/32 size, randomly initialised, so it runs offline
at the same cost) whose last layer is calibrated so its curves have the mean and spread of a
real talking clip's (``calibrate_head``; ``--raw-head`` keeps the random layer, whose curves sit
near 0.5 and make the warp ~1.5x dearer than speech); ``tiny`` a tiny one; ``--checkpoint DIR``
a trained one. ``--precision fp32 auto`` runs both precisions of the model in turn;
``--precision-check`` prints how far bf16 frames are from fp32 ones (PSNR).

Baseline measured in the same run: encoding the same number of frames of the still portrait
(the least any generator must spend to write the video), right after each run so that both
see the machine at the same speed; the ratio "pipeline / encode-only"
shows what motion and rendering add.

Streaming columns (``Session.stream`` through ``stream_to_file``, a fragmented mp4, audio fed
in 0.2 s chunks as fast as it comes; the portrait and the style are prepared before the clock
starts): ``first frame`` = seconds from the first audio chunk to the first frame written;
``stream rtf`` = steady-state real-time factor after that first frame. The stream also waits for
its look-ahead (decoder window, gate and smoothing: printed in frames) when audio arrives live.

On a 2-core machine shared with other work the wall-clock figures are noisy: each row also
gives the CPU seconds the process used, and the load average is printed.

    .venv/bin/python bench/generate_speed.py [--model base|tiny] [--checkpoint DIR] [--size 256]
        [--device cpu] [--repeats 2] [--threads 1 2] [--precision auto] [--precision-check]
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("TALKCLIP_FIXTURES", ROOT.parent / "shared" / "fixtures"))
PORTRAITS = ["smile.jpg", "happy.jpg", "anger.jpg", "disgust.jpg", "surprise.jpg"]
TEXT = "a man talking with lip corners pulled and inner brows raised"
MOODS = ["happy", "angry", "sad", "surprised", "calm", "disgusted", "fearful", "contemptuous", "neutral", "excited"]


def fresh_text(n: int) -> str:
    """A caption no earlier run used (the frozen text tower caches its embedding per caption)."""
    return f"a {MOODS[n % len(MOODS)]} man talking with lip corners pulled, take {n}"


def make_checkpoint(model: str, out: Path, calibrated: bool = True) -> Path:
    import torch

    from talkclip.model.checkpoint import save_checkpoint
    from talkclip.model.config import load_config
    from talkclip.model.talkclip import TalkCLIP

    cfg = load_config(model)
    if cfg.text.backend == "clip":          # same tower, random weights: runs offline at the same cost
        cfg.text.backend, cfg.text.hf_repo = "clip-random", None
    torch.manual_seed(0)
    net = TalkCLIP(cfg, load_text_weights=False)
    if calibrated:
        calibrate_head(net)
    return save_checkpoint(net, out)


def calibrate_head(net) -> None:
    """Give a random-init model face-like output: its last layer (``decoder.head``, before the
    sigmoid) scaled and shifted per blendshape so that, on the bench's speech and sentence, each
    curve has the mean and spread of that blendshape in a real talking clip (the fixture
    talking_pexels.mp4, tracked). The cost of the model is unchanged; the renderer's depends on
    the curves (a random model's are all near 0.5, a grimace that takes the warp ~1.5x longer
    to invert than real speech)."""
    import numpy as np
    import torch

    from talkclip.annotate.media import load_audio
    from talkclip.annotate.tracker import track_media
    from talkclip.model.audio import audio_features

    track = track_media(FIXTURES / "faces" / "talking_pexels.mp4")
    real = track.blendshapes[track.face].astype(np.float64)                    # (n, 52)
    mean, std = real.mean(0).clip(0.01, 0.99), real.std(0)
    wav = load_audio(FIXTURES / "speech" / "hello_en.wav", net.config.audio.sample_rate)
    logits = []
    hook = net.decoder.head.register_forward_hook(lambda m, i, o: logits.append(o.detach()))
    with torch.no_grad():
        net.generate(audio_features(wav, 25, None, net.config.audio), net.text_style([TEXT])[0])
    hook.remove()
    z = torch.cat(logits).double()                                             # (T, 52) logits now
    want_mean = torch.from_numpy(np.log(mean / (1 - mean)))                    # logit of the real mean
    want_std = torch.from_numpy(std / (mean * (1 - mean)))                     # its spread, to first order
    k = want_std / z.std(0).clamp(min=1e-6)
    with torch.no_grad():
        head = net.decoder.head
        head.weight.mul_(k[:, None].float())
        head.bias.copy_((k * (head.bias.double() - z.mean(0)) + want_mean).float())


def offline_runs(ckpt, audio, tmp, args) -> list:
    """Every run gets a portrait and a caption the process has not seen (none of its caches
    help); the first run also pays the face tracker's one-time start in the process. The models
    are loaded once, as the app and a server do (``run(req, loaded=...)``), so no per-request work
    can hide behind their loading."""
    from talkclip.pipelines.generate import GenerateRequest, load_models, run

    t = time.perf_counter()
    loaded = load_models(ckpt, args.device)
    print(f"models loaded once: {time.perf_counter() - t:.2f}s")
    runs, fresh = [], iter(PORTRAITS * len(args.threads) * len(args.precision) * args.repeats)
    for threads, precision in [(t, p) for t in args.threads for p in args.precision]:
        for i in range(args.repeats):
            image = FIXTURES / "faces" / next(fresh)
            if not args.same_portrait:
                image = _fresh_copy(image, tmp, len(runs))
            c = time.process_time()
            s = run(GenerateRequest(ckpt, image, audio, fresh_text(len(runs)), tmp / f"out{i}.mp4", device=args.device, size=args.size,
                                    fps=args.fps, threads=threads, precision=precision), loaded=loaded)
            cpu = time.process_time() - c
            enc = encode_only(audio, s.frames, tmp, args)       # the baseline, right after, at the same machine speed
            runs.append((f"{threads} thread(s), {precision}", s, enc))
            t = s.timings
            print(f"offline threads {threads} {precision} run {i} ({image.name}): {s.frames} frames ({s.duration_s:.2f} s): load {t['load']:.2f}s "
                  f"| prepare {t['prepare']:.3f}s text {t['text']:.3f}s motion {t['motion']:.3f}s render {t['render']:.3f}s "
                  f"encode {t['encode']:.3f}s -> rtf {s.realtime_factor:.2f} (cpu {cpu:.2f}s); "
                  f"encode-only {enc:.3f}s, ratio {s.duration_s / s.realtime_factor / enc:.2f}x")
    return runs


def _fresh_copy(image: Path, tmp: Path, n: int) -> Path:
    """``image`` itself for the first pass over the portraits, then a copy with ``n`` pixel rows
    cut (new pixels, so the per-process portrait caches miss)."""
    if n < len(PORTRAITS):
        return image
    import cv2

    out = tmp / f"portrait{n}.png"
    cv2.imwrite(str(out), cv2.imread(str(image))[:-n])
    return out


def stream_runs(ckpt, image, audio, tmp, args) -> list:
    from talkclip.annotate.media import load_audio
    from talkclip.pipelines.generate import AUDIO_OUT_RATE, GenerateRequest, Session, stream_to_file

    out = []
    for threads in args.threads:
        req = GenerateRequest(ckpt, image, None, TEXT, None, device=args.device, size=args.size, fps=args.fps,
                              threads=threads, precision=args.precision[0])
        session = Session(req)
        wav, sound = load_audio(audio, session.sample_rate), load_audio(audio, AUDIO_OUT_RATE)
        step = int(0.2 * session.sample_rate)
        for i in range(args.repeats):
            chunks = [wav[j:j + step] for j in range(0, len(wav), step)]
            t0 = time.perf_counter()
            first, n_first, n = None, 0, 0
            for piece in stream_to_file(session, chunks, tmp / f"stream{i}.mp4", audio=sound):
                n += len(piece.frames)
                if first is None:
                    first, n_first = time.perf_counter() - t0, n
            total = time.perf_counter() - t0
            steady = (n - n_first) / args.fps / max(total - first, 1e-9)
            out.append((threads, first, steady))
            print(f"stream threads {threads} run {i}: {n} frames, first frame {first:.3f}s, "
                  f"steady-state rtf {steady:.2f}, whole stream rtf {n / args.fps / total:.2f}")
        motion = session.motion()
        print(f"stream look-ahead: {motion.margin} feature + {session.model.w} decoder + {motion.post.context} "
              f"smoothing frames = {(motion.margin + session.model.w + motion.post.context) / args.fps:.2f} s of audio")
    return out


@functools.lru_cache(maxsize=None)
def _still(size: int, device: str):
    """32 copies (32, S, S, 3) uint8 of the first portrait's crop, made once."""
    import numpy as np

    from talkclip.annotate.media import load_image
    from talkclip.model.renderer import Renderer

    st = Renderer(device=device).prepare(load_image(FIXTURES / "faces" / PORTRAITS[0]), size=size)
    return np.repeat(st.crop[None], 32, 0)


def encode_only(audio, frames, tmp, args) -> float:
    from talkclip.annotate.media import load_audio
    from talkclip.pipelines.generate import Mp4Writer

    still = _still(args.size, args.device)
    sound = load_audio(audio, 48_000)
    t0 = time.perf_counter()
    w = Mp4Writer(tmp / "still.mp4", args.fps, args.size, sound)   # x264 on every core: the least it can take
    for s in range(0, frames, 32):
        w.write(still[: min(32, frames - s)])
    w.close()
    return time.perf_counter() - t0


def precision_check(ckpt, audio, args) -> None:
    """Frames and curves of every fixture portrait (and the sentence TEXT) with the model in bf16
    against fp32: the PSNR of the frames (before video encoding) and the largest curve difference."""
    import numpy as np

    from talkclip.pipelines.evaluate import psnr
    from talkclip.pipelines.generate import GenerateRequest, Session

    worst_db, worst_bs = float("inf"), 0.0
    for name in PORTRAITS:
        out = {}
        for precision in ("fp32", "bf16"):
            req = GenerateRequest(ckpt, FIXTURES / "faces" / name, audio, TEXT, None, device=args.device,
                                  size=args.size, fps=args.fps, precision=precision)
            session = Session(req)
            bs = session.motion().push(session.inputs.wav, final=True)                       # (T, 52)
            out[precision] = bs, session.render(bs, session.poses(np.arange(len(bs))), 0, len(bs))  # (T, S, S, 3)
        (bs32, f32), (bs16, f16) = out["fp32"], out["bf16"]
        db = float(psnr(f32, f16))
        worst_db, worst_bs = min(worst_db, db), max(worst_bs, float(np.abs(bs32 - bs16).max()))
        print(f"precision {name}: bf16 vs fp32 frames PSNR {db:.1f} dB, curves max |diff| {np.abs(bs32 - bs16).max():.4f}")
    print(f"RESULT precision: bf16 vs fp32 over {len(PORTRAITS)} portraits: worst PSNR {worst_db:.1f} dB, "
          f"curves max |diff| {worst_bs:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="base", help="packaged config to build a random-init model from")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a trained checkpoint instead of --model")
    ap.add_argument("--raw-head", action="store_true",
                    help="keep --model's random last layer (curves near 0.5) instead of calibrating it to real curves")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts (0 = torch's default)")
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"],
                    help="the model's precision(s) (generate --precision); the stream uses the first")
    ap.add_argument("--precision-check", action="store_true",
                    help="also print how far bf16 frames and curves are from fp32 ones (PSNR, max difference)")
    ap.add_argument("--no-stream", action="store_true", help="skip the streaming columns")
    ap.add_argument("--same-portrait", action="store_true",
                    help="every offline run on the unaltered fixture photos (repeats reuse the cached portrait)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    image, audio = FIXTURES / "faces" / "smile.jpg", FIXTURES / "speech" / "hello_en.wav"
    tmp = Path(tempfile.mkdtemp(prefix="talkclip-bench-"))
    ckpt = args.checkpoint or make_checkpoint(args.model, tmp / args.model, calibrated=not args.raw_head)
    print(f"model {args.checkpoint or args.model + ('' if args.raw_head else ' (last layer calibrated to real curves)')}, torch default threads {torch.get_num_threads()}, device {args.device}, "
          f"size {args.size}, fps {args.fps}")
    runs = offline_runs(ckpt, audio, tmp, args)
    streams = [] if args.no_stream else stream_runs(ckpt, image, audio, tmp, args)
    if args.precision_check:
        precision_check(ckpt, audio, args)
    best_threads, best, enc = max(runs, key=lambda r: r[1].realtime_factor)
    ratios = sorted(r[1].duration_s / r[1].realtime_factor / r[2] for r in runs[1:] or runs)   # the first run pays set-up
    print(f"baseline encode-only (after the best run): {enc:.3f}s (real-time factor {best.duration_s / enc:.1f})")
    print(f"RESULT real-time factor {best.realtime_factor:.2f} at {args.size} on {args.device} with {best_threads} "
          f"(render {best.frames / max(best.timings['render'], 1e-9):.1f} frames/s); pipeline / encode-only: "
          f"median {ratios[len(ratios) // 2]:.2f}x, best {ratios[0]:.2f}x over {len(ratios)} runs")
    if streams:
        first = min(s[1] for s in streams)
        steady = max(s[2] for s in streams)
        print(f"RESULT streaming: first frame {first:.3f}s after preparation, steady-state real-time factor {steady:.2f}")
    try:
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    except OSError:
        pass


if __name__ == "__main__":
    main()
