"""The Hugging Face Hub both ways, against tests/hub_server.py (loopback, session fixture).

Online clients run only in subprocesses whose environment points HF_ENDPOINT at the server
(``hub_server.client_env``): huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT at import, so
this test process itself stays offline. The real client code runs (no monkeypatching): the
CLIs, huggingface_hub's upload (preupload, LFS batch + PUT + verify, commit) and download
(snapshot_download, HEAD + ranged GET) and datasets.load_dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from talkclip import OfflineError

from support import FACES, ROOT, SPEECH, cached_mini_build, read_build_tables, write_synthetic_tamead

TALKCLIP = [sys.executable, "-c", "from talkclip.cli import app; app()"]
TALKCLIP_DATA = [sys.executable, "-c", "from talkclip.cli import data_app; data_app()"]


def _run(cmd: list[str], env: dict, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _py(code: str, env: dict) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-c", code], env)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    """The single error line (huggingface_hub's own upload/download progress bars aside)."""
    lines = [ln for ln in proc.stderr.replace("\r", "\n").splitlines() if ln.strip() and not re.search(r"\d+%\|", ln)]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    return lines[0]


def _offline_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(home))
    return env


def _card_meta(text: str) -> dict:
    import yaml

    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny TalkCLIP checkpoint with resume state, log and log plot, as the trainer saves it after
    2 steps on a build."""
    import torch

    from talkclip.model.checkpoint import save_checkpoint
    from talkclip.model.config import load_config
    from talkclip.model.talkclip import TalkCLIP
    from talkclip.pipelines.plots import log_figure, save_png
    from talkclip.pipelines.push import build_fingerprint

    root = tmp_path_factory.mktemp("hub-train")
    data = write_synthetic_tamead(root / "synth", n_clips=2, frames=40, seed=3)
    (data / "manifest.json").write_text(json.dumps({"format": "ta-mead/1", "counts": {"clips": 2}}))
    torch.manual_seed(0)
    model = TalkCLIP(load_config("tiny"))
    opt = torch.optim.Adam(model.generator_parameters(), lr=1e-4)
    save_checkpoint(model, root / "ckpt", optimizers={"opt_g": opt},
                    state={"kind": "talkclip", "step": 2, "data_dir": str(data), "data": build_fingerprint(data)})
    log = root / "ckpt" / "train_log.csv"
    log.write_text("step,total,rec\n1,0.9,0.5\n2,0.8,0.4\n")
    save_png(log_figure(log, "train"), log.with_suffix(".png"))
    return data, root / "ckpt"


def test_dataset_push_round_trip_through_load_dataset(hub_server, tmp_path):
    from talkclip.pipelines.push import plan_push

    _, build = cached_mini_build()
    env = hub_server.client_env(os.environ, tmp_path / "hf")
    r = _run([*TALKCLIP_DATA, "push", build, "--repo", "tester/ta-mead-mini"], env)
    assert r.returncode == 0 and "pushed:" in r.stdout, r.stderr
    stored = hub_server.repo_files("tester/ta-mead-mini", "dataset")
    plan = plan_push(build, "tester/ta-mead-mini")
    assert set(stored) == {p for p, _ in plan.files} | {".gitattributes"}
    assert all(stored[p] == f.read_bytes() for p, f in plan.files)
    assert len(hub_server.commits("tester/ta-mead-mini", "dataset")) == 2   # repo creation + ONE push commit
    assert any(m == "PUT" and "/lfs-upload/datasets/" in p for m, p, _ in hub_server.log)   # parquet went by LFS

    code = ("import datasets, json; from huggingface_hub import HfFileSystem\n"
            "ds = datasets.load_dataset('tester/ta-mead-mini')\n"
            "with HfFileSystem().open('datasets/tester/ta-mead-mini/clips/train-00000.parquet', block_size=4) as f:\n"
            "    f.seek(-4, 2); tail = f.read(4).decode()\n"   # a ranged read: the Parquet footer magic
            "print(json.dumps({'tail': tail, 'clips': {s: sorted([r['clip_id'], r['captions']] for r in ds[s]) "
            "for s in ds}}))")
    n_log = len(hub_server.log)
    r = _py(code, env)
    assert r.returncode == 0, r.stderr[-2000:]
    answer = json.loads(r.stdout.strip().splitlines()[-1])
    assert answer["tail"] == "PAR1"
    assert any(m == "GET" and p.endswith("clips/train-00000.parquet") and (rg or "").startswith("bytes=")
               for m, p, rg in hub_server.log[n_log:])
    remote = answer["clips"]
    clips = read_build_tables(build)["clips"].to_pylist()
    local = {s: sorted([c["clip_id"], c["captions"]] for c in clips if c["split"] == s) for s in ("train", "test")}
    local = {s: v for s, v in local.items() if v}
    assert remote == local and sum(map(len, remote.values())) == len(clips)
    assert not hub_server.errors


def test_checkpoint_push_card_and_generate_by_name(hub_server, trained, tmp_path, landmarker):
    data, ck = trained
    report = tmp_path / "eval.json"
    report.write_text(json.dumps({"pairs": [{"name": "a"}], "mean": {"ssim": 0.8123, "cpbd": 0.15, "f_lmd": 2.4,
                                                                     "m_lmd": 3.6}, "notes": []}))
    env = hub_server.client_env(os.environ, tmp_path / "hf")
    repo = "tester/tiny-talkclip"
    r = _run([*TALKCLIP, "push", ck, "--repo", repo, "--eval", report, "--dataset", "tester/ta-mead-mini"], env)
    assert r.returncode == 0 and "pushed:" in r.stdout, r.stderr
    stored = hub_server.repo_files(repo)
    # no resume state; the training curves the card shows
    assert set(stored) == {".gitattributes", "README.md", "config.json", "model.safetensors", "train_log.png"}
    assert stored["model.safetensors"] == (ck / "model.safetensors").read_bytes()
    assert stored["train_log.png"] == (ck / "train_log.png").read_bytes()
    card = stored["README.md"].decode()
    meta = _card_meta(card)
    assert meta["library_name"] == "talkclip" and meta["license"] == "other" and "synthetic-media" in meta["tags"]
    assert meta["datasets"] == ["tester/ta-mead-mini"]
    tc = meta["talkclip"]
    assert tc["training_steps"] == 2 and tc["config"] == "tiny"
    assert tc["ta_mead"]["manifest_sha256"] == hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"ssim": 0.8123, "cpbd": 0.15, "f_lmd": 2.4, "m_lmd": 3.6}
    assert "Synthetic media" in card and "Intended use" in card and f"--checkpoint {repo}" in card

    # fetch by name while the server cuts the weights download in half: the client retries (huggingface_hub
    # resumes with a Range request from the last whole chunk it wrote; a tiny file has none, so it starts over)
    hub_server.faults["truncate"] = "model.safetensors"
    n_log = len(hub_server.log)
    r = _py(f"from talkclip.model.hub import resolve_checkpoint; print(resolve_checkpoint({repo!r}))", env)
    assert r.returncode == 0, r.stderr[-2000:]
    fetched = Path(r.stdout.strip().splitlines()[-1])
    assert sorted(p.name for p in fetched.iterdir()) == ["config.json", "model.safetensors"]   # only what it needs
    assert (fetched / "model.safetensors").read_bytes() == (ck / "model.safetensors").read_bytes()
    gets = [p for m, p, _ in hub_server.log[n_log:] if m == "GET" and p.endswith("model.safetensors")]
    assert len(gets) == 2 and "truncate" not in hub_server.faults   # cut once, fetched again in the same call

    # generate from the cached Hub copy (offline now) and from the local folder: same frames
    outs = {}
    for name, ref in (("hub", repo), ("local", str(ck))):
        outs[name] = tmp_path / f"{name}.mp4"
        r = _run([*TALKCLIP, "generate", "--checkpoint", ref, "--image", FACES / "smile.jpg", "--audio",
                  SPEECH / "dogs_door_en.wav", "--text", "A woman smiles.", "--out", outs[name], "--threads", "1"],
                 _offline_env(tmp_path / "hf"))
        assert r.returncode == 0, r.stderr[-2000:]
    a, b = _frames(outs["hub"]), _frames(outs["local"])
    assert len(a) > 10 and len(a) == len(b) and all((x == y).all() for x, y in zip(a, b))
    assert not hub_server.errors


def _frames(path: Path) -> list:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_failed_commit_leaves_repo_unchanged(hub_server, trained, tmp_path):
    _, ck = trained
    env = hub_server.client_env(os.environ, tmp_path / "hf")
    repo = "tester/fails-midway"
    assert _run([*TALKCLIP, "push", ck, "--repo", repo, "--private"], env).returncode == 0
    assert json.loads((hub_server.root / "models" / repo / "meta.json").read_text())["private"] is True
    before_commits, before_files = hub_server.commits(repo), hub_server.repo_files(repo)
    hub_server.faults["commit_500"] = True
    r = _run([*TALKCLIP, "push", ck, "--repo", repo, "--with-state"], env)
    line = _one_line(r)
    assert "no commit was made" in line and repo in line
    assert "commit_500" not in hub_server.faults   # the fault fired: uploads went through, the commit failed
    assert hub_server.commits(repo) == before_commits and hub_server.repo_files(repo) == before_files
    r = _run([*TALKCLIP, "push", ck, "--repo", repo, "--with-state"], env)   # the same command, server healthy
    assert r.returncode == 0, r.stderr
    assert {"optimizer.safetensors", "trainer_state.json"} <= set(hub_server.repo_files(repo))


def test_hub_ids_that_are_not_checkpoints_are_one_line(hub_server, trained, tmp_path):
    _, ck = trained
    weights = (ck / "model.safetensors").read_bytes()
    hub_server.create("tester/no-config", {"model.safetensors": weights, "README.md": b"# hi\n"})
    hub_server.create("tester/pickled", {"config.json": (ck / "config.json").read_bytes(),
                                         "pytorch_model.bin": b"\x80\x04not really a pickle"})
    env = hub_server.client_env(os.environ, tmp_path / "hf")
    r = _run([*TALKCLIP, "generate", "--checkpoint", "tester/no-config", "--image", FACES / "smile.jpg",
              "--audio", SPEECH / "dogs_door_en.wav", "--text", "x", "--out", tmp_path / "o.mp4"], env)
    assert "tester/no-config" in _one_line(r) and "no config.json" in _one_line(r)
    assert not (tmp_path / "o.mp4").exists()
    code = ("import talkclip\nfrom talkclip.model.checkpoint import load_checkpoint, load_sync_checkpoint\n"
            "from talkclip.model.neural_renderer import load_renderer\n"
            "for load, ref in ((load_checkpoint, 'tester/pickled'), (load_sync_checkpoint, 'tester/nobody-here'),\n"
            "                  (load_renderer, 'tester/no-config@v9')):\n"
            "    try:\n        load(ref)\n    except talkclip.TalkclipError as e:\n"
            "        print(type(e).__name__, e.exit_code, '|', str(e).replace(chr(10), ' NEWLINE '))\n")
    r = _py(code, env)
    assert r.returncode == 0, r.stderr[-2000:]
    pickled, missing, revision = r.stdout.strip().splitlines()
    assert pickled.startswith("CheckpointError 2") and "pickled weights (pytorch_model.bin)" in pickled
    assert missing.startswith("CheckpointError 2") and "no such model repo" in missing
    assert revision.startswith("CheckpointError 2") and "no revision 'v9'" in revision
    assert "NEWLINE" not in r.stdout


def test_clip_weights_download_when_online_then_cache_offline(hub_server, tmp_path):
    from safetensors.torch import save_file
    import torch

    save_file({"token_embedding.weight": torch.arange(12.0).reshape(3, 4)}, str(tmp_path / "w.safetensors"))
    blob = (tmp_path / "w.safetensors").read_bytes()
    hub_server.create("tester/clip-mini", {"open_clip_model.safetensors": blob})
    code = ("from talkclip.model.config import load_config\nfrom talkclip.model.text import resolve_clip_weights\n"
            "c = load_config('base').text\nc.hf_repo = 'tester/clip-mini'\nprint(resolve_clip_weights(c))\n")
    online = _py(code, hub_server.client_env(os.environ, tmp_path / "hf"))
    assert online.returncode == 0, online.stderr[-2000:]
    path = online.stdout.strip().splitlines()[-1]
    assert Path(path).read_bytes() == blob and str(tmp_path / "hf") in path
    offline = _py(code, _offline_env(tmp_path / "hf"))   # the same lookup offline: served from the cache
    assert offline.returncode == 0 and offline.stdout.strip().splitlines()[-1] == path, offline.stderr


def test_offline_and_not_cached_is_one_line_exit_2(tmp_path, monkeypatch):
    from talkclip.model.hub import resolve_checkpoint

    env = _offline_env(tmp_path / "empty-hf")
    data = write_synthetic_tamead(tmp_path / "synth", n_clips=3, frames=90, seed=1)
    r = _run([*TALKCLIP, "train", "--data", data, "--config", "base", "--out", tmp_path / "run", "--steps", "1"], env)
    line = _one_line(r)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/open_clip_model.safetensors" in line
    assert "HF_HUB_OFFLINE" in line and "hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K open_clip_model.safetensors" in line
    # no network (offline mode not set; nothing listens at the endpoint): the same kind of line
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    no_net = dict(env, HF_HUB_OFFLINE="0", HF_ENDPOINT=closed)
    r = _run([*TALKCLIP, "generate", "--checkpoint", "tester/never-cached", "--image", FACES / "smile.jpg",
              "--audio", SPEECH / "dogs_door_en.wav", "--text", "x", "--out", tmp_path / "o.mp4"], no_net)
    line = _one_line(r)
    assert "tester/never-cached" in line and "not in the Hugging Face cache" in line and "hf download" in line
    assert "the Hub cannot be reached" in line and not (tmp_path / "o.mp4").exists()
    # in this (offline) process: a local folder wins over a Hub id of the same shape, else one line
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert resolve_checkpoint("org/name") == Path("org/name")
    with pytest.raises(OfflineError, match="org/other is not a local folder and not in the Hugging Face cache"):
        resolve_checkpoint("org/other")


def test_checkpoint_push_plan_is_checked_locally(trained, tmp_path):
    """`talkclip push --dry-run` and every push: what goes into the commit, and local refusals."""
    import shutil

    from talkclip import CheckpointError, InputError
    from talkclip.pipelines.push import CheckpointPushOptions, plan_checkpoint_push

    _, ck = trained
    plan = plan_checkpoint_push(CheckpointPushOptions(ck, "tester/x"))
    assert [p for p, _ in plan.files] == ["README.md", "model.safetensors", "config.json", "train_log.png"]
    assert plan.repo_type == "model" and "](train_log.png)" in plan.files[0][1].decode()   # the card shows the curves
    assert plan.total_bytes == sum(n for _, n in plan.sizes()) and "2 steps" in plan.commit_message
    full = plan_checkpoint_push(CheckpointPushOptions(ck, "tester/x", with_state=True))
    assert {"optimizer.safetensors", "trainer_state.json", "train_log.csv"} <= {p for p, _ in full.files}
    with pytest.raises(InputError, match="OWNER/NAME"):
        plan_checkpoint_push(CheckpointPushOptions(ck, "no-slash"))
    bad_eval = tmp_path / "eval.json"
    bad_eval.write_text('{"pairs": []}')
    with pytest.raises(InputError, match="no 'mean' figures"):
        plan_checkpoint_push(CheckpointPushOptions(ck, "tester/x", eval_report=bad_eval))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(ck / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="pickled weights"):
        plan_checkpoint_push(CheckpointPushOptions(pickled, "tester/x"))
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    shutil.copy(ck / "model.safetensors", no_config / "model.safetensors")
    with pytest.raises(CheckpointError, match="no config.json"):
        plan_checkpoint_push(CheckpointPushOptions(no_config, "tester/x"))
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for name in ("model.safetensors", "config.json"):
        shutil.copy(ck / name, weights_only / name)
    bare = plan_checkpoint_push(CheckpointPushOptions(weights_only, "tester/x"))
    assert [p for p, _ in bare.files] == ["README.md", "model.safetensors", "config.json"]
    assert "training curves" not in bare.files[0][1].decode()
    with pytest.raises(InputError, match="holds no resume state"):
        plan_checkpoint_push(CheckpointPushOptions(weights_only, "tester/x", with_state=True))
