"""Files with a Hugging Face Hub home: the one place that turns a name into a local path.

- :func:`hub_file` -- one file of a Hub repo (e.g. the CLIP text weights): the cache, else a
  download with ``huggingface_hub``'s own progress bar. Offline (``HF_HUB_OFFLINE=1``) or with
  no network and nothing cached: one-line :class:`talkclip.MissingAssetError` naming the repo
  and file and how to bring them onto an offline machine.
- :func:`resolve_checkpoint` -- a checkpoint reference as users type it (``--checkpoint``,
  ``--renderer``, ``--sync-checkpoint``, the app): an existing local path wins; otherwise a Hub
  model id ``org/name`` or ``org/name@revision`` is fetched with ``snapshot_download`` (only
  ``model.safetensors`` and ``config.json``), from the cache when offline. Every loader of a
  checkpoint directory calls it, so every command accepts both forms.

All errors are one line (exit 2): no such repo or revision, a repo that is not a talkclip
checkpoint (no ``config.json``) or holds pickled weights only, offline and not cached.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path

from talkclip import CheckpointError, MissingAssetError, OfflineError, one_line

CHECKPOINT_FILES = ("model.safetensors", "config.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_./-]+)?$")
_CACHE_HINT = ("on a connected machine run `{cmd}`, then copy its Hugging Face cache (~/.cache/huggingface/hub) "
               "to this machine (or point HF_HOME at a copy)")


def is_hub_id(ref: str) -> bool:
    """``org/name`` or ``org/name@revision`` (a bare name is never treated as a Hub id)."""
    return bool(_ID_RE.match(ref)) and ".." not in ref


def _offline_why() -> str:
    from huggingface_hub import constants

    return "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"


@contextmanager
def _quiet_retries():
    """Silence huggingface_hub's "Retrying in Ns" warnings for one call: without a network the
    user gets one line at the end (the download's own progress bar is not a log record)."""
    log = logging.getLogger("huggingface_hub")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def hub_file(repo_id: str, filename: str, *, what: str, hint: str = "") -> Path:
    """Local path of ``repo_id``/``filename`` (model repo): cache, else download; one-line errors."""
    from httpx2 import HTTPError
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        with _quiet_retries():
            return Path(hf_hub_download(repo_id, filename))
    except GatedRepoError:
        raise MissingAssetError(f"{what} {repo_id}/{filename} need a Hugging Face token with access "
                                "(`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise MissingAssetError(f"{what}: no repo {repo_id} on the Hub") from None
    except RevisionNotFoundError as e:
        raise MissingAssetError(f"{what}: {repo_id}: {one_line(e)}") from None
    except LocalEntryNotFoundError:
        cmd = f"hf download {repo_id} {filename}"
        raise MissingAssetError(f"{what} {repo_id}/{filename} are not in the Hugging Face cache and "
                                f"{_offline_why()}: " + _CACHE_HINT.format(cmd=cmd) + hint) from None
    except EntryNotFoundError:
        raise MissingAssetError(f"{what}: the Hub repo {repo_id} has no file {filename}") from None
    except (HTTPError, OSError) as e:   # HTTPError (httpx2): HfHubHTTPError and connection errors
        raise MissingAssetError(f"{what} {repo_id}/{filename} could not be downloaded: {one_line(e)}") from None


def resolve_checkpoint(ref: str | Path, what: str = "checkpoint") -> Path:
    """A local checkpoint directory for ``ref``: the path itself when it exists (or is not shaped
    like a Hub id: the loader then reports it missing), else the Hub snapshot of ``org/name[@rev]``."""
    p = Path(ref).expanduser()
    text = str(ref)
    if p.exists() or not is_hub_id(text):
        return p
    repo_id, _, revision = text.partition("@")
    folder = _snapshot(repo_id, revision or None, what)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"Hub repo {repo_id} is not a talkclip {what}: it has no config.json")
    if not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"Hub repo {repo_id} has no model.safetensors: not a talkclip {what}")
    return folder


def _snapshot(repo_id: str, revision: str | None, what: str) -> Path:
    """snapshot_download of the checkpoint files (checked against the repo's listing when online)."""
    from httpx2 import HTTPError
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{repo_id}@{revision}" if revision else repo_id
    sha = None
    try:
        if not constants.HF_HUB_OFFLINE:
            info = HfApi().model_info(repo_id, revision=revision)
            _check_listing(repo_id, [s.rfilename for s in info.siblings or []], what)
            sha = info.sha
        # by the name asked for (not the sha): the cache then maps that name to the snapshot for offline use
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(CHECKPOINT_FILES),
                                      local_files_only=constants.HF_HUB_OFFLINE))
    except GatedRepoError:
        raise OfflineError(f"{what} {where}: the Hub repo needs a token with access (`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{what} {where}: no local folder of that name and no such model repo on the Hub") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{what} {where}: the Hub repo {repo_id} has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        pass
    except (HTTPError, OSError) as e:
        if sha is not None:   # listed fine, then the download failed: say so (a rerun resumes it)
            raise OfflineError(f"{what} {where}: download failed ({one_line(e)}); rerun to resume") from None
    try:   # no network (or the Hub failed): the cache may still hold it
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(CHECKPOINT_FILES),
                                      local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        cmd = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "") + " model.safetensors config.json"
        raise OfflineError(f"{what} {where} is not a local folder and not in the Hugging Face cache, and "
                           f"{_offline_why()}: " + _CACHE_HINT.format(cmd=cmd)) from None


def _check_listing(repo_id: str, files: list[str], what: str) -> None:
    names = set(files)
    if "model.safetensors" not in names:
        pickled = sorted(f for f in names if f.endswith(PICKLE_SUFFIXES))
        if pickled:
            raise CheckpointError(f"Hub repo {repo_id} holds pickled weights ({pickled[0]}), not model.safetensors: "
                                  "talkclip never unpickles")
    if "config.json" not in names:
        raise CheckpointError(f"Hub repo {repo_id} is not a talkclip {what}: it has no config.json")
    if "model.safetensors" not in names:
        raise CheckpointError(f"Hub repo {repo_id} has no model.safetensors: not a talkclip {what}")
