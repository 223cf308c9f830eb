"""The one training loop: `talkclip train`, `train-sync` and `train-renderer` all run on :class:`Solver`.

In the spirit of audiocraft's solvers, each model says only what is its own -- how to read its
config, build (or reload) the model and its optimizers, load the data, draw the batches of a
step range and run ONE step -- and this base does the rest the same way for all three:

- options: one validated, frozen :class:`TrainOptions` (ranges, choices), checked with the
  output folder (:func:`talkclip.schemas.files.claim_output_dir`) BEFORE any data is read;
- config: the checkpoint's on ``--resume`` (a given ``--config`` must equal it: ConfigError),
  else the given one;
- checkpoints: :func:`talkclip.model.checkpoint.save_checkpoint` -- ``OUT/model.safetensors`` +
  ``config.json`` + ``optimizer.safetensors`` + ``trainer_state.json`` (step, seed, RNG states of
  torch/numpy/Python, optimizer states, the model's own extras) -- every ``checkpoint_every``
  steps and at the end; resume restores all of it, so a resumed run equals an uninterrupted one
  (batches are a pure function of (seed, step));
- logging: one CSV row per ``log_every`` steps of window means (``OUT/<log file>``, rows past the
  resumed checkpoint dropped), TensorBoard under ``OUT/tb`` when installed, a rich progress bar;
- DDP under ``torchrun`` (WORLD_SIZE > 1; NCCL on CUDA, gloo on CPU; rank 0 logs and saves) for
  models that support it, bf16 autocast on CUDA, and :meth:`Solver.optimize`, the one place a
  loss is back-propagated. The CUDA paths (bf16, NCCL) were written without a GPU to run them;
  the CPU forms (fp32, gloo DDP) are tested.
"""

from __future__ import annotations

import csv
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from talkclip import CheckpointError, ConfigError, InputError, one_line

STAGES = ("1", "2", "both")
SPLITS = ("train", "test", "all")


# ---------------------------------------------------------------- options

@dataclass(frozen=True)
class TrainOptions:
    """Everything a training command is told, validated once (InputError, one line, naming the
    option). Unset numbers (None) fall back to the model config's."""

    data_dir: Path | None = None
    out: Path | None = None
    config: Any = None               # packaged name | .json path | config object | None (with resume)
    steps: int | None = None         # global step to reach
    device: str = "cpu"
    resume: bool = False
    seed: int = 0
    batch_size: int | None = None
    workers: int | None = None       # DataLoader worker processes
    checkpoint_every: int | None = None   # 0 = only at the end
    log_every: int | None = None
    threads: int | None = None       # torch CPU threads (None = torch's default)
    cache_dir: Path | None = None    # audio feature cache (train, train-sync)
    progress: bool = False
    stage: str = "both"              # train: "1", "2" or "both"
    sync_checkpoint: str | Path | None = None   # train: frozen lip-sync discriminator (folder or Hub id)
    split: str = "train"             # train-renderer: train, test or all
    mead: Path | None = None         # train-renderer: the MEAD root the build read
    max_clips: int | None = None     # train-renderer: 0 = all
    frame_stride: int | None = None  # train-renderer
    landmarker: Path | None = None   # train-renderer: re-tracking model

    def __post_init__(self) -> None:
        for name in ("data_dir", "out", "cache_dir", "mead", "landmarker"):   # sync_checkpoint may be a Hub id
            v = getattr(self, name)
            if v is not None and not isinstance(v, Path):
                object.__setattr__(self, name, Path(v))
        rules = (("steps", 1), ("batch_size", 1), ("workers", 0), ("checkpoint_every", 0), ("log_every", 1),
                 ("threads", 1), ("max_clips", 0), ("frame_stride", 1), ("seed", 0))
        for name, low in rules:
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low):
                raise InputError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {v!r}")
        if self.stage not in STAGES:
            raise InputError(f"--stage must be 1, 2 or both, got {self.stage!r}")
        if self.split not in SPLITS:
            raise InputError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if not isinstance(self.device, str) or not self.device:
            raise InputError(f"--device must be a device name such as cpu or cuda, got {self.device!r}")


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
    skipped: dict[str, int] = field(default_factory=dict)  # clips left out, by reason (every reason)
    frames: int = 0                 # train-renderer: cached frames
    failures: list[tuple[str, str]] = field(default_factory=list)  # train-renderer: (clip_id, reason)


# ---------------------------------------------------------------- RNG state, config comparison

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


def seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def first_difference(a: dict, b: dict, where: str = "") -> str | None:
    """The first key (dotted path, ``name`` ignored) where two config dicts differ, or None."""
    for k in sorted(set(a) | set(b)):
        key = f"{where}.{k}" if where else k
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            d = first_difference(x, y, key)
            if d:
                return d
        elif x != y and k != "name":
            return f"{key} ({x!r} vs {y!r})"
    return None


def dist_env() -> tuple[int, int, int]:
    """(rank, world, local_rank) from torchrun's environment, (0, 1, 0) otherwise."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


# ---------------------------------------------------------------- logging

class CsvLog:
    """CSV log + optional TensorBoard, written only where ``enabled`` (rank 0). An existing log is
    kept up to step ``start`` (the checkpoint a resumed run continues) and appended to."""

    def __init__(self, path: Path, columns, enabled: bool, tb_dir: Path | None, start: int = 0):
        self.path, self.columns, self.enabled = path, columns, enabled
        self.tb = None
        if not enabled:
            return
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
                if isinstance(v, float) and k != "seconds":
                    self.tb.add_scalar(f"train/{k}", v, values["step"])

    def close(self) -> None:
        if self.enabled:
            self.fh.close()
            if self.tb is not None:
                self.tb.close()


class Bar:
    """A rich progress display with named tasks (data loading, training); inert when disabled."""

    def __init__(self, enabled: bool):
        self.p = None
        self.tasks: dict[str, Any] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
            self.p.start()

    def update(self, name: str, done: int, total: int, info: str | None = None) -> None:
        if self.p is None:
            return
        if name not in self.tasks:
            self.tasks[name] = self.p.add_task(name, total=total, completed=done, info="")
        fields = {} if info is None else {"info": info}
        self.p.update(self.tasks[name], completed=done, total=total, **fields)

    def stop(self) -> None:
        if self.p is not None:
            self.p.stop()
            self.p = None


class StepLog:
    """Per-step values averaged over windows of ``every`` steps: one CSV row per window (and at
    the last step), the progress bar moved every step. Keeps the first and last window means."""

    def __init__(self, logger: CsvLog, every: int, total: int, what: str, bar: Bar, info: Callable[[dict], str]):
        self.logger, self.every, self.total, self.what, self.bar, self.info = logger, every, total, what, bar, info
        self.acc: dict[str, list[float]] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.t0 = time.time()

    def add(self, step: int, vals: dict[str, float], row: dict | None = None) -> None:
        """Record step ``step``'s values; ``row``: extra CSV columns for a row written now."""
        for k, v in vals.items():
            self.acc.setdefault(k, []).append(v)
        if step % self.every == 0 or step == self.total:
            self.last = {k: float(np.mean(v)) for k, v in self.acc.items()}
            self.first = self.first or dict(self.last)
            self.logger.row({"step": step, **(row or {}), "seconds": round(time.time() - self.t0, 3), **self.last})
            self.acc = {}
            self.bar.update(self.what, step, self.total, self.info(self.last))
        else:
            self.bar.update(self.what, step, self.total)

    def close(self) -> None:
        self.logger.close()


# ---------------------------------------------------------------- the solver

class Solver:
    """Base of the three trainers. Subclasses set the class attributes and implement the hooks
    (``load_config`` .. ``run_step``); :meth:`run` is the loop they share."""

    kind = ""                 # checkpoint kind (model.safetensors metadata, trainer_state.json)
    what = ""                 # command name: messages, progress bar
    log_columns: tuple[str, ...] = ()
    plot_skip: tuple[str, ...] = ()  # log columns left out of <log>.png (besides step and seconds)
    config_hint = ""          # the packaged config names, for "no config given"
    ddp = False               # may run under torchrun (each rank takes its share of every batch)
    tensorboard = False       # TensorBoard events under OUT/tb

    def __init__(self, opts: TrainOptions, on_step: Callable[[int, dict], None] | None = None):
        self.o = opts
        self.on_step = on_step    # called after every step (tests use it to simulate a crash)
        self.seed = opts.seed
        self.rank, self.world, self.local_rank = dist_env()
        self.notes: list[str] = []
        self.start = 0
        self.bar = Bar(False)

    # -------- hooks (model-specific)
    def load_config(self, config):              # name | path | object -> config (ConfigError when bad)
        raise NotImplementedError

    def read_config(self, out: Path):           # the config of the checkpoint in ``out``
        raise NotImplementedError

    def prepare_config(self, cfg):              # apply option overrides; return cfg
        return cfg

    def default_steps(self) -> int:
        raise NotImplementedError

    def check_inputs(self) -> None:             # cheap checks of the model's own inputs, before any loading
        pass

    def load_data(self) -> None:                # read the training data (self.data)
        raise NotImplementedError

    def build_model(self):                      # a fresh model (the RNGs are seeded)
        raise NotImplementedError

    def load_model(self):                       # the model of the checkpoint being resumed
        raise NotImplementedError

    def make_optimizers(self) -> dict:          # name -> torch optimizer
        raise NotImplementedError

    def batches(self, start: int, stop: int) -> Iterable:   # the batches of steps [start, stop)
        raise NotImplementedError

    def run_step(self, step: int, batch) -> tuple[dict[str, float], dict]:
        """One optimisation step -> (loss values to average and log, extra CSV columns)."""
        raise NotImplementedError

    def state(self) -> dict:                    # model-specific resume state (JSON-able)
        return {}

    def restore(self, state: dict) -> None:     # read it back on resume
        pass

    def schedule(self) -> None:                 # set up per-run schedules once model and steps are known
        pass

    def info(self, last: dict[str, float]) -> str:   # progress bar text from the last window's means
        return ""

    def summary_extra(self) -> dict:
        return {}

    def ddp_find_unused(self) -> bool:          # some parameters sit out some steps (DDP must know)
        return False

    # -------- shared machinery
    @property
    def log_file(self) -> str:
        """OUT/<log_file>: the CSV log of this kind of checkpoint (model/checkpoint.py LOG_FILES)."""
        from talkclip.model.checkpoint import LOG_FILES

        return LOG_FILES[self.kind]

    def plot_log(self, log_path: Path) -> None:
        """``<log>.png`` beside the CSV log: the whole run's curves (resumed runs included). Drawing
        cannot fail a run whose checkpoint is saved: a failure becomes a note."""
        from talkclip.pipelines.plots import log_figure, save_png

        try:
            save_png(log_figure(log_path, f"{self.what}: {log_path.parent.name}", self.plot_skip),
                     log_path.with_suffix(".png"))
        except Exception as e:  # noqa: BLE001 - a plot is a convenience, the run is done
            self.notes.append(f"no loss plot ({one_line(e)})")

    def autocast(self):
        """bf16 autocast on CUDA, nothing elsewhere."""
        import torch

        return torch.autocast(device_type=self.dev.type, dtype=torch.bfloat16, enabled=self.dev.type == "cuda")

    def optimize(self, loss, opt, params=None, clip: float = 0.0, reduce: bool = False) -> None:
        """The one backward pass of the project: zero the grads, back-propagate ``loss``,
        average ``params``' grads over DDP ranks when ``reduce`` (modules outside DDP), clip their
        norm to ``clip`` (> 0), step ``opt``."""
        import torch

        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = list(params) if params is not None else None
        if reduce and self.world > 1:  # pragma: no cover - needs torchrun
            import torch.distributed as dist

            for q in params or []:
                if q.grad is not None:
                    dist.all_reduce(q.grad)
                    q.grad /= self.world
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()

    def attach(self, model, cfg, total: int):
        """Hold ``model`` (config ``cfg``) on the options' device with fresh optimizers, ready for
        :meth:`run_step` -- what :meth:`run` does after loading; benchmarks and experiments call it
        directly on in-memory data."""
        from talkclip.model.device import resolve_device

        self.cfg, self.total = cfg, int(total)
        if not hasattr(self, "dev"):
            self.dev = resolve_device(self.o.device)
        self.model = model.to(self.dev).train()
        self.net = self.model
        self.optimizers = self.make_optimizers()
        self.schedule()
        return self

    def _resolve_config(self):
        """The run's config: the checkpoint's on resume (a given config must equal it), else the given one."""
        from talkclip.model.checkpoint import MODEL_FILE, STATE_FILE

        o, out = self.o, self.o.out
        if o.resume:
            if not (out / STATE_FILE).is_file():
                raise CheckpointError(f"--resume: {out} holds no resumable checkpoint ({STATE_FILE} missing)")
            cfg = self.read_config(out)
            if o.config is not None:
                given = self.load_config(o.config)
                diff = first_difference(given.to_dict(), cfg.to_dict())
                if diff:
                    raise ConfigError(f"--resume: config {getattr(given, 'name', o.config)} differs from the "
                                      f"checkpoint's at {diff}; omit --config")
            return self.prepare_config(cfg)
        if (out / STATE_FILE).is_file() or (out / MODEL_FILE).is_file():
            raise InputError(f"{out} already holds a checkpoint: pass --resume to continue it or choose another --out")
        if o.config is None:
            raise ConfigError(f"no config given (use {self.config_hint} or a .json path)")
        return self.prepare_config(self.load_config(o.config))

    def _validate(self) -> tuple[dict, dict]:
        """Everything checked before data is read: options (TrainOptions), data folder, config,
        model-specific inputs, output folder (claimed), resume state."""
        from talkclip.model.checkpoint import STATE_FILE, load_resume_state
        from talkclip.schemas.files import claim_output_dir

        o = self.o
        if o.data_dir is None or o.out is None:
            raise InputError("a training run needs --data and --out")
        if not o.data_dir.exists():
            raise InputError(f"data folder not found: {o.data_dir}")
        if self.world > 1 and not self.ddp:
            raise InputError(f"{self.what} runs in one process: start it without torchrun")
        self.cfg = self._resolve_config()
        state, tensors = {}, {}
        if o.resume:
            state, tensors = load_resume_state(o.out)
            if state.get("kind", self.kind) != self.kind:
                raise CheckpointError(f"{o.out} is not a {self.what} checkpoint (it holds a {state.get('kind')!r} run)")
            self.start, self.seed = int(state["step"]), int(state.get("seed", self.seed))
        else:
            claim_output_dir(o.out, ("config.json", STATE_FILE, self.log_file), f"a `{self.what}` checkpoint")
        self.check_inputs()
        self.total = int(o.steps if o.steps is not None else self.default_steps())
        if self.total < self.start:
            raise InputError(f"--steps {self.total} is below the checkpoint's step {self.start}")
        return state, tensors

    def _init_dist(self) -> None:
        import torch

        from talkclip.model.device import resolve_device

        self.dev = resolve_device(self.o.device)
        if self.world > 1:  # pragma: no cover - needs torchrun
            import torch.distributed as dist

            dist.init_process_group("nccl" if self.dev.type == "cuda" else "gloo")
            if self.dev.type == "cuda":
                self.dev = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.dev)

    def _wrap_ddp(self, find_unused: bool) -> None:
        if self.world > 1:  # pragma: no cover - needs torchrun
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.dev.index] if self.dev.type == "cuda" else None
            self.net = DDP(self.model, device_ids=ids, find_unused_parameters=find_unused)

    def save(self, step: int) -> None:
        """Checkpoint + resume state (rank 0 only)."""
        from talkclip.model.checkpoint import save_checkpoint

        if self.rank != 0:
            return
        st = rng_state()
        if not hasattr(self, "fingerprint"):
            from .push import build_fingerprint

            self.fingerprint = build_fingerprint(self.o.data_dir)   # the build trained on (manifest hash)
        st.update({"kind": self.kind, "step": step, "seed": self.seed, "total_steps": self.total,
                   "data_dir": str(self.o.data_dir), "data": self.fingerprint, **self.state()})
        save_checkpoint(self.model, self.o.out, optimizers=self.optimizers, state=st, kind=self.kind)

    def _setup(self, state: dict, tensors: dict) -> None:
        """Data, model, optimizers, resume state."""
        from talkclip.model.checkpoint import restore_optimizer

        self.load_data()
        seed_all(self.seed)
        if self.o.resume:
            self.restore(state)
        model = self.load_model() if self.o.resume else self.build_model()
        self.attach(model, self.cfg, self.total)
        if self.ddp:
            self._wrap_ddp(self.ddp_find_unused())
        if self.o.resume:
            saved = state.get("optimizers") or {"opt": state.get("optimizer", {})}   # older renderer states
            for name, opt in self.optimizers.items():
                if name not in saved:
                    raise CheckpointError(f"{self.o.out}: resume state lacks optimizer {name!r}")
                restore_optimizer(opt, name, tensors, saved[name])
            restore_rng(state, tensors)

    def _loop(self, log: StepLog) -> int:
        ck = self.cfg.train.checkpoint_every if self.o.checkpoint_every is None else self.o.checkpoint_every
        step = self.start
        for batch in self.batches(self.start, self.total):
            vals, row = self.run_step(step, batch)
            step += 1
            if self.on_step is not None:
                self.on_step(step, vals)
            log.add(step, vals, row)
            if ck and step % ck == 0 and step < self.total:
                self.save(step)
        return step

    def run(self) -> TrainSummary:
        """Validate, load, train from the checkpoint's step (or 0) to ``steps``, save; -> summary."""
        import torch

        t0 = time.time()
        state, tensors = self._validate()
        self._init_dist()
        main_rank = self.rank == 0
        saved_threads = torch.get_num_threads()
        if self.o.threads:
            torch.set_num_threads(self.o.threads)
        self.bar = Bar(self.o.progress and main_rank)
        out = self.o.out
        try:
            self._setup(state, tensors)
            every = self.o.log_every or self.cfg.train.log_every
            tb = out / "tb" if self.tensorboard else None
            log = StepLog(CsvLog(out / self.log_file, self.log_columns, main_rank, tb, self.start), every,
                          self.total, self.what, self.bar, self.info)
            try:
                step = self._loop(log)
            finally:
                log.close()
        finally:
            self.bar.stop()
            torch.set_num_threads(saved_threads)
        self.save(step)
        if main_rank:
            self.plot_log(out / self.log_file)
        if self.world > 1:  # pragma: no cover - needs torchrun
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return TrainSummary(out, self.start, step, len(self.data.clips), log.last, log.first, time.time() - t0,
                            out / self.log_file, self.notes, self.rank, **self.summary_extra())
