"""Publishing to the Hugging Face Hub: ``talkclip-data push`` (a TA-MEAD build, dataset repo) and
``talkclip push`` (a checkpoint, model repo), through one commit mechanism.

Everything is checked locally first (:func:`plan_push` for builds, :func:`plan_checkpoint_push`
for checkpoints), giving a :class:`PushPlan` (repo, type, files, commit message). Only then is
the network touched (:func:`send`): the repo is created if needed and the upload is **one
commit** (``HfApi.create_commit`` with all files): if it fails, the repo is left as it was
(large files may have been stored on the Hub's side, but no commit references them). A build's
internal ``.work/`` folder is never uploaded; a checkpoint's optimizer and resume state only
with ``with_state``.

Offline (``HF_HUB_OFFLINE=1``), without a token, or when the Hub cannot be reached: one-line
:class:`talkclip.OfflineError`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from talkclip import InputError, LayoutError, OfflineError, one_line
from talkclip.schemas.build import not_a_build, open_build
from talkclip.schemas.tamead import TABLES

from .card import card_configs

_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class PushPlan:
    out_dir: Path
    repo_id: str
    private: bool
    files: list[tuple[str, Path | bytes]] = field(default_factory=list)   # (path in repo, local file or content)
    total_bytes: int = 0
    commit_message: str = ""
    repo_type: str = "dataset"

    def operations(self) -> list:
        """The huggingface_hub commit operations (one add per file) of the single commit."""
        from huggingface_hub import CommitOperationAdd

        return [CommitOperationAdd(path_in_repo=p, path_or_fileobj=f if isinstance(f, bytes) else str(f))
                for p, f in self.files]

    def sizes(self) -> list[tuple[str, int]]:
        return [(p, len(f) if isinstance(f, bytes) else f.stat().st_size) for p, f in self.files]


def check_repo_id(repo_id: str) -> None:
    if not _REPO_RE.match(repo_id or ""):
        raise InputError(f"--repo must look like OWNER/NAME, got {repo_id!r}")


def plan_push(out_dir: str | Path, repo_id: str, *, private: bool = False) -> PushPlan:
    """Check a build locally and list what one commit would upload; raises on any problem."""
    out = Path(out_dir)
    check_repo_id(repo_id)
    build = open_build(out, ())                 # the one build reader: folder, manifest, tables
    mpath, card = out / "manifest.json", out / "README.md"
    manifest = build.manifest()
    if not manifest:
        raise not_a_build(out, "no manifest.json (run build-ta-mead first)")
    if not manifest.get("complete"):
        raise LayoutError(f"the build in {out} is incomplete; rerun build-ta-mead with the same options first")
    if not card.is_file():
        raise LayoutError(f"{out} has no dataset card README.md")
    configs = card_configs(card.read_text(encoding="utf-8"))
    if "clips" not in configs:
        raise LayoutError(f"{card} has no `configs:` entry for the clips table")
    files: list[tuple[str, Path]] = [("README.md", card), ("manifest.json", mpath)]
    rows: dict[str, int] = {}
    if not build.files("clips"):
        raise not_a_build(out, "no parquet files in clips/")
    for name in TABLES:
        parts = build.files(name)
        if name in configs and not parts:
            raise LayoutError(f"the card declares a {name} config but {out / name} has no parquet files")
        build.check(name)     # the one schema validation (stats and calibrate use it too)
        rows[name] = 0
        for p in parts:
            try:
                meta = pq.read_metadata(p)
            except Exception as e:  # noqa: BLE001 - any parquet error means a damaged file
                raise LayoutError(f"{p} is not a readable parquet file ({one_line(e)})") from None
            rows[name] += meta.num_rows
            files.append((p.relative_to(out).as_posix(), p))
    for name in ("frames", "audio"):
        if rows[name] != rows["clips"]:
            raise LayoutError(f"{name} has {rows[name]} rows but clips has {rows['clips']}; the build is inconsistent")
    extra = sorted(p for p in out.glob("*.csv") if p.is_file() and not p.name.startswith("."))
    files += [(p.name, p) for p in extra]   # e.g. a calibrated AU table written into the build
    total = sum(f.stat().st_size for _, f in files)
    counts = manifest.get("counts") or {}
    msg = (f"TA-MEAD build: {counts.get('clips', rows['clips'])} clips, {counts.get('frames', '?')} frames "
           f"(talkclip {manifest.get('version', '?')})")
    return PushPlan(out, repo_id, private, files, total, msg)


def _offline_reason() -> str | None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    return None


def send(plan: PushPlan, token: str | None = None) -> str:
    """Create the repo if needed and upload ``plan`` as one commit; returns the commit URL."""
    reason = _offline_reason()
    if reason:
        raise OfflineError(f"cannot push to the Hub: {reason} (nothing was uploaded)")
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise OfflineError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (nothing was uploaded)")
    api = HfApi(token=token)
    try:
        api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=plan.private, exist_ok=True)
        info = api.create_commit(plan.repo_id, plan.operations(), commit_message=plan.commit_message,
                                 repo_type=plan.repo_type)
    except Exception as e:  # noqa: BLE001 - network, auth and hub errors all end here
        first = one_line(e)
        raise OfflineError(f"push to {plan.repo_id} failed, no commit was made: {type(e).__name__}: {first}") from None
    return str(getattr(info, "commit_url", info))


def push(out_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Check, then upload the build as one commit to dataset repo ``repo_id``; returns the commit URL."""
    return send(plan_push(out_dir, repo_id, private=private), token)


# ---------------------------------------------------------------- checkpoints (`talkclip push`)

def build_fingerprint(data_dir: str | Path) -> dict:
    """What a checkpoint records about the TA-MEAD build it was trained on: its folder, the
    sha256 of its manifest.json, and the manifest's creation time and clip count."""
    import hashlib

    mpath = Path(data_dir) / "manifest.json"
    out: dict = {"path": str(data_dir)}
    try:
        raw = mpath.read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError):
        return out
    out["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    if isinstance(manifest, dict):
        out["created_utc"] = manifest.get("created_utc")
        out["clips"] = (manifest.get("counts") or {}).get("clips")
    return out


@dataclass(frozen=True)
class CheckpointPushOptions:
    """``talkclip push`` options, validated once by :func:`plan_checkpoint_push`."""

    checkpoint: Path
    repo_id: str
    private: bool = False
    with_state: bool = False
    eval_report: Path | None = None
    dataset_repo: str | None = None       # the Hub dataset repo of the training build, when published
    license: str = "other"


def plan_checkpoint_push(opts: CheckpointPushOptions) -> PushPlan:
    """Check a checkpoint directory locally and plan one commit: weights, config, model card, the
    training curves (``<log>.png``, shown in the card) when the folder has them (+ optimizer/resume
    state and the training log CSV with ``with_state``)."""
    from talkclip.model.checkpoint import CONFIG_FILE, LOG_FILES, MODEL_FILE, OPTIM_FILE, STATE_FILE

    from .model_card import model_card, read_checkpoint_facts

    check_repo_id(opts.repo_id)
    if opts.dataset_repo is not None:
        check_repo_id(opts.dataset_repo)
    ck = Path(opts.checkpoint)
    facts = read_checkpoint_facts(ck)   # CheckpointError / InputError on anything wrong
    files: list[tuple[str, Path | bytes]] = [(MODEL_FILE, ck / MODEL_FILE), (CONFIG_FILE, ck / CONFIG_FILE)]
    if facts["curves"]:
        files.append((facts["curves"], ck / facts["curves"]))
    if opts.with_state:
        state = [n for n in (OPTIM_FILE, STATE_FILE, LOG_FILES[facts["kind"]]) if (ck / n).is_file()]
        if not any(n in state for n in (OPTIM_FILE, STATE_FILE)):
            raise InputError(f"--with-state: {ck} holds no resume state ({STATE_FILE}, {OPTIM_FILE})")
        files += [(n, ck / n) for n in state]
    evaluation = _read_eval_report(opts.eval_report) if opts.eval_report is not None else None
    card = model_card(facts, repo_id=opts.repo_id, evaluation=evaluation, dataset_repo=opts.dataset_repo,
                      license=opts.license, with_state=opts.with_state)
    files.insert(0, ("README.md", card.encode("utf-8")))
    steps = facts.get("steps")
    msg = f"talkclip {facts['kind']} checkpoint ({facts['config_name']}" + (f", {steps} steps)" if steps else ")")
    plan = PushPlan(ck, opts.repo_id, opts.private, files, 0, msg, repo_type="model")
    plan.total_bytes = sum(n for _, n in plan.sizes())
    return plan


def _read_eval_report(path: Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--eval: no such file: {p} (write one with `talkclip eval ... --json > {p.name}`)")
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--eval: {p} is not a JSON report of `talkclip eval --json` ({one_line(e)})") from None
    if not isinstance(report, dict) or not isinstance(report.get("mean"), dict):
        raise InputError(f"--eval: {p} has no 'mean' figures; write it with `talkclip eval ... --json`")
    return report


def push_checkpoint(opts: CheckpointPushOptions, token: str | None = None) -> str:
    """Check, then upload the checkpoint as one commit to model repo ``opts.repo_id``."""
    return send(plan_checkpoint_push(opts), token)
