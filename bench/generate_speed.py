"""Real-time factor of `talkclip generate` (seconds of video per second of compute).

Runs the whole pipeline (portrait tracking, text style, motion, render, encode) on the fixture
portrait smile.jpg and speech hello_en.wav, and prints the split between prepare (portrait
tracking + audio decoding), text, motion, render and encode; all of those count. Checkpoint
loading and renderer set-up are reported but not counted (paid once per process). The figure is
for the given checkpoint: by default a tiny random model, whose motion step is negligible.

Baseline measured in the same run: encoding the same number of frames of the still portrait
(the least any generator must spend to write the video), so the ratio "pipeline / encode-only"
shows what motion and rendering add. The goal is a real-time factor above 1 at 256 on CPU.
On a 2-core machine shared with other work the figures are noisy: the load average is printed.

    .venv/bin/python bench/generate_speed.py [--checkpoint DIR] [--size 256] [--device cpu] [--repeats 2] [--threads 1 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("TALKCLIP_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: a tiny random-init model")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                    help="torch thread counts to compare (0 = torch's default)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch

    from talkclip.annotate.media import load_audio, load_image
    from talkclip.model.renderer import Renderer
    from talkclip.pipelines.generate import Mp4Writer, generate

    image, audio = FIXTURES / "faces" / "smile.jpg", FIXTURES / "speech" / "hello_en.wav"
    tmp = Path(tempfile.mkdtemp(prefix="talkclip-bench-"))
    ckpt = args.checkpoint
    if ckpt is None:
        from talkclip.model.checkpoint import save_checkpoint
        from talkclip.model.config import load_config
        from talkclip.model.talkclip import TalkCLIP

        torch.manual_seed(0)
        ckpt = save_checkpoint(TalkCLIP(load_config("tiny")), tmp / "tiny")
    print(f"torch threads {torch.get_num_threads()}, device {args.device}, size {args.size}, fps {args.fps}")

    runs = []
    for threads in args.threads:
        for i in range(args.repeats):
            s = generate(ckpt, image, audio, "a man talking with lip corners pulled and inner brows raised",
                         tmp / f"out{i}.mp4", device=args.device, size=args.size, fps=args.fps,
                         threads=threads or None)
            runs.append((threads or torch.get_num_threads(), s))
            t = s.timings
            print(f"threads {runs[-1][0]} run {i}: {s.frames} frames ({s.duration_s:.2f} s video): "
                  f"load {t['load']:.2f}s prepare {t['prepare']:.2f}s | text {t['text']:.3f}s motion {t['motion']:.3f}s "
                  f"render {t['render']:.3f}s encode {t['encode']:.3f}s -> real-time factor {s.realtime_factor:.2f}")
    best_threads, best = max(runs, key=lambda r: r[1].realtime_factor)

    # baseline: encode-only of the same number of still frames (+ the audio), same writer
    st = Renderer(device=args.device).prepare(load_image(image), size=args.size)
    still = np.repeat((st.src[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)[None], 32, 0)
    t0 = time.perf_counter()
    w = Mp4Writer(tmp / "still.mp4", args.fps, args.size, load_audio(audio, 48_000))
    for s in range(0, best.frames, 32):
        w.write(still[: min(32, best.frames - s)])
    w.close()
    enc = time.perf_counter() - t0
    work = sum(v for k, v in best.timings.items() if k != "load")
    print(f"baseline encode-only: {enc:.3f}s (real-time factor {best.duration_s / enc:.1f})")
    print(f"RESULT real-time factor {best.realtime_factor:.2f} at {args.size} on {args.device} with {best_threads} thread(s) "
          f"(render {best.frames / max(best.timings['render'], 1e-9):.1f} frames/s); "
          f"pipeline / encode-only = {work / enc:.2f}x")
    try:
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    except OSError:
        pass


if __name__ == "__main__":
    main()
