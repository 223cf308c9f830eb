"""Training speed: generator steps/s vs DataLoader samples/s (the loader must not be the bottleneck).

Figures, all measured in this run on the same in-memory TA-MEAD-like clips:
- steps/s of the full training step (generator forward/backward/Adam + temporal discriminator):
  ``TalkCLIPSolver.run_step``, the step `talkclip train` runs (grad clipping included: the
  hand-written step this bench timed before omitted it, about 8% of a tiny CPU step),
- samples/s of the real data path (TAMEADWindows + DataLoader) with 0 and 2 workers,
- the ratio loader samples/s / (steps/s x batch): > 1 means the loader keeps up (the baseline
  is the rate the training step consumes samples at).
Tiny config on CPU always; the base sizes on CUDA when a GPU is present (bf16 autocast; the text
tower is random-init there since no CLIP weights are needed for timing).

    python bench/train_speed.py [--threads 1] [--steps 30] [--batch 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def fake_data(cfg, n_clips: int = 32, frames: int = 150, seed: int = 0):
    from talkclip.model.data import Clip, TAMEADData

    rng = np.random.default_rng(seed)
    clips = []
    for k in range(n_clips):
        clips.append(Clip(f"c{k:03d}", 30.0, [f"A person is talking, variant {j}." for j in range(5)],
                          rng.uniform(0, 1, (frames, 52)).astype(np.float32), np.ones(frames, bool),
                          rng.normal(0, 1, (frames, cfg.audio.n_mels)).astype(np.float32)))
    return TAMEADData(clips)


def loader_rate(ds, batch: int, n_batches: int, workers: int) -> float:
    from talkclip.model.data import make_loader

    dl = make_loader(ds, batch, 0, n_batches + 2, workers=workers)
    it = iter(dl)
    next(it), next(it)  # warm-up (worker start)
    t = time.perf_counter()
    n = 0
    for b in it:
        n += len(b["captions"])
    return n / (time.perf_counter() - t)


def step_rate(cfg, ds, device: str, batch: int, steps: int) -> float:
    """Steps/s of the training step itself: TalkCLIPSolver.run_step, the one `talkclip train` runs
    (stage 2 with p = p_max: both style codes; temporal discriminator on)."""
    from talkclip.model.data import make_loader
    from talkclip.model.talkclip import TalkCLIP
    from talkclip.pipelines.train import TalkCLIPSolver, TrainOptions

    torch.manual_seed(0)
    cfg.train.p_ramp_steps = 0
    solver = TalkCLIPSolver(TrainOptions(device=device, stage="2")).attach(TalkCLIP(cfg), cfg, total=steps + 3)
    batches = list(make_loader(ds, batch, 0, 4))
    amp = solver.dev.type == "cuda"

    for i in range(3):
        solver.run_step(i, batches[i % len(batches)])
    if amp:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(steps):
        solver.run_step(3 + i, batches[i % len(batches)])
    if amp:
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


def report(name: str, cfg, device: str, batch: int, steps: int, workers_list) -> None:
    from talkclip.model.data import TAMEADWindows

    ds = TAMEADWindows(fake_data(cfg), cfg, seed=0)
    sps = step_rate(cfg, ds, device, batch, steps)
    need = sps * batch
    print(f"[{name} on {device}] batch {batch}: {sps:.2f} steps/s = {need:.1f} samples/s consumed")
    for w in workers_list:
        r = loader_rate(ds, batch, max(20, int(2 * need / batch) + 5), w)
        print(f"  DataLoader workers={w}: {r:.1f} samples/s -> loader / training = {r / need:.2f}x "
              f"({'ok' if r > need else 'LOADER IS THE BOTTLENECK'})")


def main(argv=None) -> None:
    from talkclip.model.config import load_config

    ap = argparse.ArgumentParser(description="TalkCLIP training speed")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    report("tiny", load_config("tiny"), "cpu", a.batch, a.steps, (0, 2))
    if torch.cuda.is_available():
        cfg = load_config("base")
        cfg.text.backend, cfg.text.hf_repo = "clip-random", None
        report("base", cfg, "cuda", cfg.train.batch_size, a.steps, (0, 4))
    else:
        print("[base on cuda] skipped: no CUDA device in this environment")


if __name__ == "__main__":
    main()
