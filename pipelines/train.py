"""`talkclip train` and `talkclip train-sync`: TalkCLIP and its lip-sync discriminator on the shared
training loop (:mod:`talkclip.pipelines.solver`: save / resume / log / progress / DDP / autocast).

- Adam for the generator (text adapter + projection, video style encoder, content encoder,
  decoder) and for the temporal discriminator; the lip-sync discriminator is pre-trained by
  :func:`train_sync` and loaded frozen (``sync_checkpoint``); without one, L_sync is skipped
  and the summary says so.
- bf16 autocast on CUDA; DistributedDataParallel when started by ``torchrun`` (WORLD_SIZE > 1:
  each rank takes its share of every global batch; rank 0 logs and writes checkpoints; NCCL on
  CUDA, gloo on CPU). Tested on CPU with gloo (2 ranks == one process with the global batch);
  the NCCL/CUDA and bf16 paths were not run (no GPU in the sessions that wrote them).
- Logging: ``OUT/train_log.csv`` (one row per ``log_every`` steps, every loss term), and
  TensorBoard event files under ``OUT/tb`` when the ``tensorboard`` package is installed.
- Checkpoints: ``OUT`` itself (model.safetensors + config.json + optimizer.safetensors +
  trainer_state.json), written every ``checkpoint_every`` steps and at the end.
- ``resume``: continues from ``OUT``'s trainer_state.json (step, RNG states of torch, numpy and
  Python, optimizer states, the stage and stage-1 length). Batches are a pure function of (seed,
  step), so a resumed run is identical to an uninterrupted one with the same ``steps``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from talkclip import CheckpointError, ConfigError

from .solver import CsvLog, Solver, TrainOptions, TrainSummary, restore_rng, rng_state  # noqa: F401 (re-exported)

LOG_COLUMNS = ("step", "stage", "p", "use_text", "total", "rec", "l1", "ssim", "cos", "sync", "tem", "d_tem", "seconds")
SYNC_LOG_COLUMNS = ("step", "loss", "acc", "seconds")


def _to(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}


class _TAMEADSolver(Solver):
    """Shared by TalkCLIP and the lip-sync discriminator: TalkCLIP configs and TA-MEAD windows."""

    config_hint = "tiny, base, base-minilm"

    def load_config(self, config):
        from talkclip.model.config import TalkCLIPConfig, load_config

        return config if isinstance(config, TalkCLIPConfig) else load_config(config)

    def read_config(self, out: Path):
        from talkclip.model.checkpoint import read_config

        return read_config(out)

    def prepare_config(self, cfg):
        if self.o.batch_size is not None:
            cfg.train.batch_size = self.o.batch_size
        return cfg

    def check_inputs(self) -> None:
        from talkclip.model.data import check_layout

        check_layout(self.o.data_dir)

    def load_data(self) -> None:
        from talkclip.model.data import load_tamead

        self.data = load_tamead(self.o.data_dir, self.cfg, split="train", cache_dir=self.o.cache_dir)

    def batches(self, start: int, stop: int):
        from talkclip.model.data import TAMEADWindows, make_loader

        workers = self.cfg.train.workers if self.o.workers is None else self.o.workers
        return make_loader(TAMEADWindows(self.data, self.cfg, self.seed), self.cfg.train.batch_size, start, stop,
                           workers=workers, rank=self.rank, world=self.world)

    def summary_extra(self) -> dict:
        return {"skipped": dict(self.data.skipped)}


# ---------------------------------------------------------------- generator training

class TalkCLIPSolver(_TAMEADSolver):
    """TalkCLIP's generator (+ temporal discriminator) with the paper's two-stage schedule."""

    kind, what, log_columns = "talkclip", "train", LOG_COLUMNS
    plot_skip = ("stage", "use_text")   # the schedule shows in p; use_text is a coin flip per step
    ddp = True
    tensorboard = True
    n1: int | None = None     # steps spent in stage 1
    sync = None               # the frozen lip-sync discriminator, when given

    def default_steps(self) -> int:
        return 2 * max(1, self.cfg.train.p_ramp_steps)

    def restore(self, state: dict) -> None:
        self.stage, self.n1 = state["stage"], int(state["stage1_steps"])

    def state(self) -> dict:
        return {"stage": self.stage, "stage1_steps": self.n1}

    def schedule(self) -> None:
        from talkclip.model.schedule import stage1_steps

        self.stage = getattr(self, "stage", self.o.stage)
        if self.n1 is None:
            self.n1 = stage1_steps(self.stage, self.total, self.cfg)

    def build_model(self):
        from talkclip.model.talkclip import TalkCLIP

        return self._with_sync(TalkCLIP(self.cfg))

    def load_model(self):
        from talkclip.model.checkpoint import load_checkpoint

        return self._with_sync(load_checkpoint(self.o.out, device="cpu"))

    def check_inputs(self) -> None:
        from talkclip.model.checkpoint import load_sync_checkpoint

        super().check_inputs()
        self.sync = None
        if self.o.sync_checkpoint is not None:
            self.sync = load_sync_checkpoint(self.o.sync_checkpoint)
            sm, cm = self.sync.config.model, self.cfg.model
            if (sm.sync_window, sm.sync_dim) != (cm.sync_window, cm.sync_dim) or self.sync.config.audio != self.cfg.audio:
                raise CheckpointError(f"sync discriminator {self.o.sync_checkpoint} was trained with other "
                                      "window/audio settings")

    def _with_sync(self, model):
        if self.sync is not None:
            model.load_sync_discriminator(self.sync)
        if not bool(model.sync_ready):
            self.notes.append("L_sync skipped: no pre-trained lip-sync discriminator (train one with "
                              "`talkclip train-sync`, pass --sync-checkpoint)")
        return model

    def make_optimizers(self) -> dict:
        import torch

        tr = self.cfg.train
        return {"opt_g": torch.optim.Adam(self.model.generator_parameters(), lr=tr.lr, betas=tr.betas),
                "opt_d": torch.optim.Adam(self.model.tem_disc.parameters(), lr=tr.disc_lr, betas=tr.betas)}

    def ddp_find_unused(self) -> bool:
        # the temporal discriminator sits out the steps before tem_start_step
        return self.cfg.train.tem_start_step > 0 or self.cfg.loss.tem == 0

    def use_text(self, step: int) -> tuple[int, float, bool]:
        """(stage, p, feed the text style code?) at ``step``: a coin flip of (seed, step), the same on every rank."""
        from talkclip.model.schedule import stage_at

        st_no, p = stage_at(step, self.n1, self.cfg)
        return st_no, p, bool(np.random.default_rng([self.seed, step, 1]).random() < p) if st_no == 2 else False

    def run_step(self, step: int, batch: dict) -> tuple[dict[str, float], dict]:
        tr, cfg, model = self.cfg.train, self.cfg, self.model
        batch = _to(batch, self.dev)
        st_no, p, use_text = self.use_text(step)
        with_tem = step >= tr.tem_start_step and cfg.loss.tem > 0
        with self.autocast():
            outputs, losses = self.net(batch, use_text, with_tem=with_tem)
        self.optimize(losses["total"], self.optimizers["opt_g"], model.generator_parameters(), tr.grad_clip)
        vals = {k: float(v.detach()) for k, v in losses.items()}
        if with_tem:
            with self.autocast():
                d_loss = model.disc_loss(outputs["pred"], batch["blendshapes"])
            self.optimize(d_loss, self.optimizers["opt_d"], model.tem_disc.parameters(), reduce=True)
            vals["d_tem"] = float(d_loss.detach())
        return vals, {"stage": st_no, "p": round(p, 4), "use_text": int(use_text)}

    def info(self, last: dict[str, float]) -> str:
        return f"L_rec {last.get('rec', float('nan')):.4f}"


def train(data_dir: str | Path, config, out_dir: str | Path, *,
          on_step: Callable[[int, dict], None] | None = None, **options) -> TrainSummary:
    """Train TalkCLIP on a TA-MEAD directory; the checkpoint goes to ``out_dir``.

    ``config``: "tiny" | "base" | "base-minilm" | path | TalkCLIPConfig (None with ``resume``).
    ``options``: the fields of :class:`TrainOptions` (steps: the global step to reach, default
    2 * p_ramp_steps; stage: "1", "2" or "both"; device, resume, seed, batch_size, workers,
    sync_checkpoint, checkpoint_every, log_every, cache_dir, progress). With ``resume`` the
    checkpoint's config, seed, stage and stage-1 length are used; keep ``steps`` and
    ``batch_size`` as in the first launch for an identical continuation.
    ``on_step(step, losses)`` is called after every step (tests use it to simulate a crash).
    """
    opts = TrainOptions(data_dir=data_dir, config=config, out=out_dir, **options)
    return TalkCLIPSolver(opts, on_step).run()


# ---------------------------------------------------------------- lip-sync discriminator

def sync_batch(batch: dict, K: int, w: int, min_shift: int, rng: np.random.Generator):
    """In-sync and shifted (motion window, audio window, label) triples from a training batch.

    Each sample gives one positive (audio at the same frames) and one negative (audio of the same
    clip shifted by >= ``min_shift`` frames). Returns (bs (2B, K, 52), audio (2B, K, F), labels (2B,))."""
    import torch

    bs = batch["blendshapes"]                       # (B, L, 52)
    B, L, _ = bs.shape
    aud = batch["audio"][:, w:w + L]                # (B, L, F) aligned with bs
    if L - K < min_shift:
        raise ConfigError(f"model.seq_len {L} is too short for sync window {K} with shift {min_shift}")
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


class SyncSolver(_TAMEADSolver):
    """The lip-sync discriminator: BCE on in-sync vs shifted (motion, audio) windows."""

    kind, what, log_columns = "sync", "train-sync", SYNC_LOG_COLUMNS

    def default_steps(self) -> int:
        return self.cfg.train.sync_steps

    def build_model(self):
        from talkclip.model.discriminators import SyncDiscriminator

        disc = SyncDiscriminator(self.cfg.model, self.cfg.audio.n_mels)
        disc.config = self.cfg
        return disc

    def load_model(self):
        from talkclip.model.checkpoint import load_sync_checkpoint

        return load_sync_checkpoint(self.o.out).unfreeze()

    def make_optimizers(self) -> dict:
        import torch

        tr = self.cfg.train
        return {"opt": torch.optim.Adam(self.model.parameters(), lr=tr.sync_lr, betas=tr.betas)}

    def run_step(self, step: int, batch: dict) -> tuple[dict[str, float], dict]:
        from talkclip.model import losses as L

        cfg = self.cfg
        rng = np.random.default_rng([self.seed, step, 2])
        m, a, y = sync_batch(batch, cfg.model.sync_window, cfg.model.window, cfg.train.sync_min_shift, rng)
        m, a, y = m.to(self.dev), a.to(self.dev), y.to(self.dev)
        with self.autocast():
            logits = self.model(m, a)
        loss = L.sync_bce(logits.float(), y)
        self.optimize(loss, self.optimizers["opt"])
        return {"loss": float(loss.detach()), "acc": float(((logits.detach() > 0).float() == y).float().mean())}, {}

    def info(self, last: dict[str, float]) -> str:
        return f"loss {last['loss']:.4f} acc {last['acc']:.2f}"


def train_sync(data_dir: str | Path, config, out_dir: str | Path, **options) -> TrainSummary:
    """Pre-train the lip-sync discriminator (BCE: in-sync vs shifted windows) -> sync checkpoint in
    ``out_dir``. ``options``: the fields of :class:`TrainOptions` (steps default: train.sync_steps)."""
    return SyncSolver(TrainOptions(data_dir=data_dir, config=config, out=out_dir, **options)).run()
