"""``talkclip-data push``: publish a TA-MEAD build to the Hugging Face Hub as a dataset repo.

Everything is checked locally first (:func:`plan_push`): the manifest says the build is
complete, the dataset card has ``configs:`` for the clips table, every Parquet file of the four
tables has its declared schema, and the frames/audio tables have a row for every clip. Only
then is the network touched, and the upload is **one commit** (``HfApi.create_commit`` with all
files): if it fails, the repo is left as it was (large files may have been stored on the Hub's
side, but no commit references them). The internal ``.work/`` folder is never uploaded.

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
from talkclip.schemas.build import open_build
from talkclip.schemas.tamead import TABLES

from .card import card_configs

_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class PushPlan:
    out_dir: Path
    repo_id: str
    private: bool
    files: list[tuple[str, Path]] = field(default_factory=list)   # (path in repo, local file)
    total_bytes: int = 0
    commit_message: str = ""

    def operations(self) -> list:
        """The huggingface_hub commit operations (one add per file) of the single commit."""
        from huggingface_hub import CommitOperationAdd

        return [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(f)) for p, f in self.files]


def plan_push(out_dir: str | Path, repo_id: str, *, private: bool = False) -> PushPlan:
    """Check a build locally and list what one commit would upload; raises on any problem."""
    out = Path(out_dir)
    if not _REPO_RE.match(repo_id or ""):
        raise InputError(f"--repo must look like OWNER/NAME, got {repo_id!r}")
    if not out.is_dir():
        raise InputError(f"no such folder: {out}")
    mpath, card = out / "manifest.json", out / "README.md"
    if not mpath.is_file():
        raise LayoutError(f"{out} is not a TA-MEAD build: no manifest.json (run build-ta-mead first)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise LayoutError(f"{mpath} is not valid JSON ({e.msg})") from None
    if not manifest.get("complete"):
        raise LayoutError(f"the build in {out} is incomplete; rerun build-ta-mead with the same options first")
    if not card.is_file():
        raise LayoutError(f"{out} has no dataset card README.md")
    configs = card_configs(card.read_text(encoding="utf-8"))
    if "clips" not in configs:
        raise LayoutError(f"{card} has no `configs:` entry for the clips table")
    files: list[tuple[str, Path]] = [("README.md", card), ("manifest.json", mpath)]
    rows: dict[str, int] = {}
    build = open_build(out, ("clips",))
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


def push(out_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Check, then upload the build as one commit to dataset repo ``repo_id``; returns the commit URL."""
    plan = plan_push(out_dir, repo_id, private=private)
    reason = _offline_reason()
    if reason:
        raise OfflineError(f"cannot push to the Hub: {reason} (nothing was uploaded)")
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise OfflineError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (nothing was uploaded)")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.create_commit(repo_id, plan.operations(), commit_message=plan.commit_message, repo_type="dataset")
    except Exception as e:  # noqa: BLE001 - network, auth and hub errors all end here
        first = one_line(e)
        raise OfflineError(f"push to {repo_id} failed, no commit was made: {type(e).__name__}: {first}") from None
    return str(getattr(info, "commit_url", info))
