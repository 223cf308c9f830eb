"""`talkclip train` and `talkclip train-sync`: training loops over a TA-MEAD build.

- Adam for the generator (text adapter + projection, video style encoder, content encoder,
  decoder) and for the temporal discriminator; the lip-sync discriminator is pre-trained by
  :func:`train_sync` and loaded frozen (``sync_checkpoint``); without one, L_sync is skipped
  and the summary says so.
- bf16 autocast on CUDA; DistributedDataParallel when started by ``torchrun`` (WORLD_SIZE > 1:
  each rank takes its share of every global batch; rank 0 logs and writes checkpoints; NCCL on
  CUDA, gloo on CPU). Tested on CPU with gloo (2 ranks == one process with the global batch);
  the NCCL/CUDA and bf16 paths were not run (no GPU in the session that wrote them).
- Logging: ``OUT/train_log.csv`` (one row per ``log_every`` steps, every loss term), and
  TensorBoard event files under ``OUT/tb`` when the ``tensorboard`` package is installed.
- Checkpoints: ``OUT`` itself (model.safetensors + config.json + optimizer.safetensors +
  trainer_state.json), written every ``checkpoint_every`` steps and at the end.
- ``resume``: continues from ``OUT``'s trainer_state.json (step, RNG states of torch, numpy and
  Python, optimizer states, the stage-1 length). Batches are a pure function of (seed, step), so
  a resumed run is identical to an uninterrupted one with the same ``steps``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from talkclip import CheckpointError, ConfigError, InputError

from .push import build_fingerprint

LOG_COLUMNS = ("step", "stage", "p", "use_text", "total", "rec", "l1", "ssim", "cos", "sync", "tem", "d_tem", "seconds")
SYNC_LOG_COLUMNS = ("step", "loss", "acc", "seconds")


@dataclass
class TrainSummary:
    out_dir: Path
    start_step: int
    steps: int                      # global step reached
    clips: int
    last: dict[str, float] = field(default_factory=dict)   # mean losses over the last log interval
    first: dict[str, float] = field(default_factory=dict)  # mean losses over the first logged interval
    seconds: float = 0.0
    log_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    rank: int = 0                   # DDP rank of the process that returns this (only rank 0 writes)


# ---------------------------------------------------------------- shared machinery

def _device(name: str):
    from talkclip.model.device import resolve_device

    return resolve_device(name)


def _dist_env():
    """(rank, world, local_rank) from torchrun's environment, (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def rng_state() -> dict[str, Any]:
    import torch

    npst = np.random.get_state()
    py = random.getstate()
    return {
        "tensors": {"rng.torch": torch.get_rng_state()}
        | ({"rng.cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {}),
        "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
        "python": [py[0], list(py[1]), py[2]],
    }


def restore_rng(state: dict[str, Any], tensors: dict) -> None:
    import torch

    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "python" in state:
        p = state["python"]
        random.setstate((p[0], tuple(p[1]), p[2]))


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _first_difference(a: dict, b: dict, where: str = "") -> str | None:
    for k in sorted(set(a) | set(b)):
        key = f"{where}.{k}" if where else k
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            d = _first_difference(x, y, key)
            if d:
                return d
        elif x != y and k != "name":
            return f"{key} ({x!r} vs {y!r})"
    return None


def _resolve_config(config, out: Path, resume: bool, batch_size: int | None = None):
    """The run's config: the checkpoint's on resume (checked against ``config``), else ``config``;
    ``batch_size`` overrides the config's."""
    cfg = _base_config(config, out, resume)
    if batch_size is not None:
        if batch_size < 1:
            raise InputError("--batch-size must be >= 1")
        cfg.train.batch_size = batch_size
    return cfg


def _base_config(config, out: Path, resume: bool):
    from talkclip.model.checkpoint import STATE_FILE, read_config
    from talkclip.model.config import TalkCLIPConfig, load_config

    if resume:
        if not (out / STATE_FILE).is_file():
            raise CheckpointError(f"--resume: {out} holds no resumable checkpoint ({STATE_FILE} missing)")
        saved = read_config(out)
        if config is not None:
            given = config if isinstance(config, TalkCLIPConfig) else load_config(config)
            diff = _first_difference(given.to_dict(), saved.to_dict())
            if diff:
                raise ConfigError(f"--resume: config {given.name} differs from the checkpoint's at {diff}; omit --config")
        return saved
    if (out / STATE_FILE).is_file() or (out / "model.safetensors").is_file():
        raise InputError(f"{out} already holds a checkpoint: pass --resume to continue it or choose another --out")
    if config is None:
        raise ConfigError("no config given (use tiny, base or a .json path)")
    return config if isinstance(config, TalkCLIPConfig) else load_config(config)


def _to(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}


class CsvLog:
    """CSV log + optional TensorBoard, written only where ``enabled`` (rank 0). An existing log is
    kept up to step ``start`` (the checkpoint a resumed run continues) and appended to."""

    def __init__(self, path: Path, columns, enabled: bool, tb_dir: Path | None, start: int = 0):
        self.path, self.columns, self.enabled = path, columns, enabled
        self.tb = None
        if enabled:
            if path.is_file():   # a resumed run: drop rows logged after the checkpoint it resumes
                with path.open(newline="") as f:
                    kept = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= start]
                with path.open("w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
                    w.writeheader()
                    w.writerows(kept)
            new = not path.is_file()
            self.fh = path.open("a", newline="")
            self.w = csv.DictWriter(self.fh, fieldnames=list(columns), extrasaction="ignore")
            if new:
                self.w.writeheader()
            if tb_dir is not None:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(tb_dir))
                except Exception:  # noqa: BLE001 - tensorboard is optional
                    self.tb = None

    def row(self, values: dict) -> None:
        if not self.enabled:
            return
        self.w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items()})
        self.fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, float) and k not in ("seconds",):
                    self.tb.add_scalar(f"train/{k}", v, values["step"])

    def close(self) -> None:
        if self.enabled:
            self.fh.close()
            if self.tb is not None:
                self.tb.close()


class _StepLog:
    """Per-step values averaged over windows of ``every`` steps: one CSV row per window (and at
    the last step), a progress bar moved every step. Keeps the first and last window means."""

    def __init__(self, logger: CsvLog, every: int, start: int, total: int, what: str, bar: bool, info):
        self.logger, self.every, self.total, self.info = logger, every, total, info
        self.acc: dict[str, list[float]] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.t0 = time.time()
        self.bar = None
        if bar:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(what, total=total, completed=start, info="")

    def add(self, step: int, vals: dict[str, float], row: dict | None = None) -> None:
        """Record step ``step``'s values; ``row``: extra CSV columns for a row written now."""
        for k, v in vals.items():
            self.acc.setdefault(k, []).append(v)
        if step % self.every == 0 or step == self.total:
            self.last = {k: float(np.mean(v)) for k, v in self.acc.items()}
            self.first = self.first or dict(self.last)
            self.logger.row({"step": step, **(row or {}), "seconds": round(time.time() - self.t0, 3), **self.last})
            self.acc = {}
            if self.bar:
                self.bar.update(self.task, completed=step, info=self.info(self.last))
        elif self.bar:
            self.bar.update(self.task, completed=step)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
        self.logger.close()


# ---------------------------------------------------------------- generator training

def train(data_dir: str | Path, config, out_dir: str | Path, *, steps: int | None = None, stage: str = "both",
          device: str = "cpu", resume: bool = False, seed: int = 0, batch_size: int | None = None,
          workers: int | None = None, sync_checkpoint: str | Path | None = None,
          checkpoint_every: int | None = None, log_every: int | None = None, cache_dir: str | Path | None = None,
          progress: bool = False, on_step: Callable[[int, dict], None] | None = None) -> TrainSummary:
    """Train TalkCLIP on a TA-MEAD directory; the checkpoint goes to ``out_dir``.

    ``config``: "tiny" | "base" | path | TalkCLIPConfig (None with ``resume``). ``steps``: the
    global step to reach (default: 2 * p_ramp_steps). ``stage``: "1", "2" or "both".
    With ``resume`` the checkpoint's config, seed, stage and stage-1 length are used; keep
    ``steps`` and ``batch_size`` as in the first launch for an identical continuation.
    ``on_step(step, losses)`` is called after every step (tests use it to simulate a crash).
    """
    import torch

    from talkclip.model.checkpoint import (load_checkpoint, load_resume_state, load_sync_checkpoint,
                                           restore_optimizer, save_checkpoint)
    from talkclip.model.data import TAMEADWindows, load_tamead, make_loader
    from talkclip.model.schedule import STAGES, stage1_steps, stage_at
    from talkclip.model.talkclip import TalkCLIP

    if stage not in STAGES:
        raise InputError(f"--stage must be 1, 2 or both, got {stage!r}")
    out = Path(out_dir)
    cfg = _resolve_config(config, out, resume, batch_size)
    tr = cfg.train
    total = int(steps if steps is not None else 2 * max(1, tr.p_ramp_steps))
    if total < 1:
        raise InputError("--steps must be >= 1")
    rank, world, local_rank = _dist_env()
    dev = _device(device)
    if world > 1:  # pragma: no cover - needs torchrun and several devices
        import torch.distributed as dist

        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
    main_rank = rank == 0
    notes: list[str] = []

    data = load_tamead(data_dir, cfg, split="train", cache_dir=cache_dir)
    _seed_all(seed)
    state: dict[str, Any] = {}
    opt_tensors: dict = {}
    if resume:
        state, opt_tensors = load_resume_state(out)
        if state.get("kind") != "talkclip":
            raise CheckpointError(f"{out} is not a TalkCLIP training checkpoint")
        model = load_checkpoint(out, device="cpu")
        seed = int(state["seed"])
        stage = state["stage"]
    else:
        model = TalkCLIP(cfg)
    if sync_checkpoint is not None:
        sync = load_sync_checkpoint(sync_checkpoint)
        sm, cm = sync.config.model, cfg.model
        if (sm.sync_window, sm.sync_dim) != (cm.sync_window, cm.sync_dim) or sync.config.audio != cfg.audio:
            raise CheckpointError(f"sync discriminator {sync_checkpoint} was trained with other window/audio settings")
        model.load_sync_discriminator(sync)
    if not bool(model.sync_ready):
        notes.append("L_sync skipped: no pre-trained lip-sync discriminator (train one with `talkclip train-sync`, pass --sync-checkpoint)")
    model.to(dev).train()
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=tr.lr, betas=tr.betas)
    opt_d = torch.optim.Adam(model.tem_disc.parameters(), lr=tr.disc_lr, betas=tr.betas)
    start = 0
    n1 = stage1_steps(stage, total, cfg)
    if resume:
        restore_optimizer(opt_g, "opt_g", opt_tensors, state["optimizers"]["opt_g"])
        restore_optimizer(opt_d, "opt_d", opt_tensors, state["optimizers"]["opt_d"])
        restore_rng(state, opt_tensors)
        start = int(state["step"])
        n1 = int(state["stage1_steps"])
    gen = model
    if world > 1:  # pragma: no cover
        from torch.nn.parallel import DistributedDataParallel as DDP

        # parameters left out of some steps: the temporal discriminator before tem_start_step
        unused = tr.tem_start_step > 0 or cfg.loss.tem == 0
        gen = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=unused)

    ds = TAMEADWindows(data, cfg, seed)
    loader = make_loader(ds, tr.batch_size, start, total, workers=tr.workers if workers is None else workers,
                         rank=rank, world=world)
    every = log_every or tr.log_every
    ck_every = tr.checkpoint_every if checkpoint_every is None else checkpoint_every
    out.mkdir(parents=True, exist_ok=True)
    log = _StepLog(CsvLog(out / "train_log.csv", LOG_COLUMNS, main_rank, out / "tb", start), every, start, total,
                   "train", progress and main_rank, lambda last: f"L_rec {last.get('rec', float('nan')):.4f}")
    amp = dev.type == "cuda"
    t0 = time.time()

    def save(step: int) -> None:
        if not main_rank:
            return
        st = rng_state()
        st.update({"kind": "talkclip", "step": step, "seed": seed, "stage": stage, "stage1_steps": n1,
                   "total_steps": total, "data_dir": str(data_dir), "data": build_fingerprint(data_dir)})
        save_checkpoint(model, out, optimizers={"opt_g": opt_g, "opt_d": opt_d}, state=st)

    step = start
    try:
        for batch in loader:
            batch = _to(batch, dev)
            st_no, p = stage_at(step, n1, cfg)
            use_text = bool(np.random.default_rng([seed, step, 1]).random() < p) if st_no == 2 else False
            with_tem = step >= tr.tem_start_step and cfg.loss.tem > 0
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                outputs, losses = gen(batch, use_text, with_tem=with_tem)
            opt_g.zero_grad(set_to_none=True)
            losses["total"].backward()
            if tr.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.generator_parameters(), tr.grad_clip)
            opt_g.step()
            vals = {k: float(v.detach()) for k, v in losses.items()}
            if with_tem:
                opt_d.zero_grad(set_to_none=True)
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                    d_loss = model.disc_loss(outputs["pred"], batch["blendshapes"])
                d_loss.backward()
                if world > 1:  # pragma: no cover
                    import torch.distributed as dist

                    for q in model.tem_disc.parameters():
                        if q.grad is not None:
                            dist.all_reduce(q.grad)
                            q.grad /= world
                opt_d.step()
                vals["d_tem"] = float(d_loss.detach())
            step += 1
            if on_step is not None:
                on_step(step, vals)
            log.add(step, vals, {"stage": st_no, "p": round(p, 4), "use_text": int(use_text)})
            if ck_every and step % ck_every == 0 and step < total:
                save(step)
    finally:
        log.close()
    save(step)
    if world > 1:  # pragma: no cover
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return TrainSummary(out, start, step, len(data.clips), log.last, log.first, time.time() - t0,
                        out / "train_log.csv", notes, rank)


# ---------------------------------------------------------------- lip-sync discriminator

def sync_batch(batch: dict, K: int, w: int, min_shift: int, rng: np.random.Generator):
    """In-sync and shifted (motion window, audio window, label) triples from a training batch.

    Each sample gives one positive (audio at the same frames) and one negative (audio of the same
    clip shifted by >= ``min_shift`` frames). Returns (bs (2B, K, 52), audio (2B, K, F), labels (2B,))."""
    import torch

    bs = batch["blendshapes"]                       # (B, L, 52)
    B, L, _ = bs.shape
    aud = batch["audio"][:, w:w + L]                # (B, L, F) aligned with bs
    assert L - K >= min_shift, f"seq_len {L} too short for sync window {K} with shift {min_shift}"
    u = rng.integers(0, L - K + 1, size=B)
    v = np.empty(B, dtype=np.int64)
    for i in range(B):
        choices = [x for x in range(L - K + 1) if abs(x - u[i]) >= min_shift]
        v[i] = choices[int(rng.integers(len(choices)))]
    ar = torch.arange(K)
    iu = torch.as_tensor(u)[:, None] + ar          # (B, K)
    iv = torch.as_tensor(v)[:, None] + ar
    bidx = torch.arange(B)[:, None]
    m = bs[bidx, iu]                                # (B, K, 52)
    pos = aud[bidx, iu]
    neg = aud[bidx, iv]
    labels = torch.cat([torch.ones(B), torch.zeros(B)])
    return torch.cat([m, m]), torch.cat([pos, neg]), labels


def train_sync(data_dir: str | Path, config, out_dir: str | Path, *, steps: int | None = None, device: str = "cpu",
               resume: bool = False, seed: int = 0, batch_size: int | None = None, workers: int | None = None,
               log_every: int | None = None, checkpoint_every: int | None = None, cache_dir: str | Path | None = None,
               progress: bool = False) -> TrainSummary:
    """Pre-train the lip-sync discriminator (BCE: in-sync vs shifted windows) -> sync checkpoint in ``out_dir``."""
    import torch

    from talkclip.model import losses as L
    from talkclip.model.checkpoint import load_resume_state, load_sync_checkpoint, restore_optimizer, save_checkpoint
    from talkclip.model.data import TAMEADWindows, load_tamead, make_loader
    from talkclip.model.discriminators import SyncDiscriminator

    out = Path(out_dir)
    cfg = _resolve_config(config, out, resume, batch_size)
    tr = cfg.train
    total = int(steps if steps is not None else tr.sync_steps)
    if total < 1:
        raise InputError("--steps must be >= 1")
    dev = _device(device)
    data = load_tamead(data_dir, cfg, split="train", cache_dir=cache_dir)
    _seed_all(seed)
    start = 0
    if resume:
        state, tensors = load_resume_state(out)
        if state.get("kind") != "sync":
            raise CheckpointError(f"{out} is not a lip-sync discriminator training checkpoint")
        disc = load_sync_checkpoint(out).unfreeze()
        seed = int(state["seed"])
    else:
        disc = SyncDiscriminator(cfg.model, cfg.audio.n_mels)
        disc.config = cfg
    disc.to(dev).train()
    opt = torch.optim.Adam(disc.parameters(), lr=tr.sync_lr, betas=tr.betas)
    if resume:
        restore_optimizer(opt, "opt", tensors, state["optimizers"]["opt"])
        restore_rng(state, tensors)
        start = int(state["step"])
    ds = TAMEADWindows(data, cfg, seed)
    loader = make_loader(ds, tr.batch_size, start, total, workers=tr.workers if workers is None else workers)
    every = log_every or tr.log_every
    out.mkdir(parents=True, exist_ok=True)
    log = _StepLog(CsvLog(out / "sync_log.csv", SYNC_LOG_COLUMNS, True, None, start), every, start, total,
                   "train-sync", progress, lambda last: f"loss {last['loss']:.4f} acc {last['acc']:.2f}")
    amp = dev.type == "cuda"
    t0 = time.time()

    def save(step: int) -> None:
        st = rng_state()
        st.update({"kind": "sync", "step": step, "seed": seed, "total_steps": total, "data_dir": str(data_dir),
                   "data": build_fingerprint(data_dir)})
        save_checkpoint(disc, out, optimizer=opt, state=st, kind="sync")

    step = start
    try:
        for batch in loader:
            rng = np.random.default_rng([seed, step, 2])
            m, a, y = sync_batch(batch, cfg.model.sync_window, cfg.model.window, tr.sync_min_shift, rng)
            m, a, y = m.to(dev), a.to(dev), y.to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = disc(m, a)
            loss = L.sync_bce(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            log.add(step, {"loss": float(loss.detach()),
                           "acc": float(((logits.detach() > 0).float() == y).float().mean())})
            ck = tr.checkpoint_every if checkpoint_every is None else checkpoint_every
            if ck and step % ck == 0 and step < total:
                save(step)
    finally:
        log.close()
    save(step)
    return TrainSummary(out, start, step, len(data.clips), log.last, log.first, time.time() - t0, out / "sync_log.csv", [])


def summary_json(s: TrainSummary) -> str:
    return json.dumps({"out_dir": str(s.out_dir), "start_step": s.start_step, "steps": s.steps, "clips": s.clips,
                       "first": s.first, "last": s.last, "seconds": round(s.seconds, 2), "notes": s.notes}, indent=1)
