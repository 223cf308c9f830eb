"""Training speed: generator steps/s vs DataLoader samples/s (the loader must not be the bottleneck).

Figures, all measured in this run on the same in-memory TA-MEAD-like clips:
- steps/s of the full training step (generator forward/backward/Adam + temporal discriminator),
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
    from talkclip.model.data import make_loader
    from talkclip.model.talkclip import TalkCLIP

    torch.manual_seed(0)
    dev = torch.device(device)
    model = TalkCLIP(cfg).to(dev).train()
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(model.tem_disc.parameters(), lr=1e-4)
    batches = [{k: (v.to(dev) if hasattr(v, "to") else v) for k, v in b.items()}
               for b in make_loader(ds, batch, 0, 4)]
    amp = dev.type == "cuda"

    def one(i: int) -> None:
        b = batches[i % len(batches)]
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            out, losses = model(b, bool(i % 2))
        opt_g.zero_grad()
        losses["total"].backward()
        opt_g.step()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            d = model.disc_loss(out["pred"], b["blendshapes"])
        opt_d.zero_grad()
        d.backward()
        opt_d.step()

    for i in range(3):
        one(i)
    if amp:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(steps):
        one(i)
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
