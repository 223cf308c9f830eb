"""Shared test set-up: offline hub, fixture paths, the landmarker model.

Test files mirror the package layout (tests/annotate, tests/pipelines, tests/model); their
basenames must be unique because tests/ is not a package. Shared helpers live in support.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from support import FACES, FIXTURES  # noqa: E402


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FACES.is_dir():
        pytest.fail(f"fixtures not found at {FIXTURES} (set TALKCLIP_FIXTURES)")
    return FIXTURES


@pytest.fixture(scope="session")
def landmarker() -> Path:
    """The installed landmarker model; the suite needs it (`talkclip-data setup` places it)."""
    from talkclip.annotate.tracker import resolve_landmarker

    return resolve_landmarker()


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (faster and steadier on a shared 2-core machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """A Hub-compatible server on 127.0.0.1 (tests/hub_server.py), one per session. Clients reach it
    only from subprocesses run with ``hub_server.client_env(os.environ, HF_HOME)``: everything
    else in the test process stays offline (HF_HUB_OFFLINE=1 is read by huggingface_hub at import)."""
    from hub_server import HubServer

    server = HubServer(tmp_path_factory.mktemp("hub-repos")).start()
    yield server
    server.stop()


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per usable core, at most 4 (each worker
    loads torch and the landmarker, and the per-process caches of support.py are built per worker)."""
    from talkclip import usable_cpus

    return max(1, min(4, usable_cpus()))
