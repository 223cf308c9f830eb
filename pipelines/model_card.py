"""The model card (README.md) ``talkclip push`` writes for a checkpoint.

The dataset card of a build is :mod:`talkclip.pipelines.card`; this one describes a checkpoint:
YAML metadata a Hub user expects (library, license, tags, the text encoder it was built on as
``base_model``, the training build, eval figures as ``model-index``) and the text around it
(usage, training data and steps, evaluation, intended use, the synthetic-media notice).
"""

from __future__ import annotations

import json
from pathlib import Path

from talkclip import CheckpointError, InputError, __version__, one_line

# Hub homes of the text encoders a config can name (the base model of a TalkCLIP checkpoint).
MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
METRICS = (("ssim", "SSIM", "higher is better"), ("cpbd", "CPBD", "higher is better"),
           ("f_lmd", "F-LMD", "lower is better"), ("m_lmd", "M-LMD", "lower is better"),
           ("style_score", "AU style score", "higher is better"),
           ("syncnet_confidence", "SyncNet confidence", "higher is better"))
KIND_TAGS = {"sync": "lip-sync-discriminator", "neural-renderer": "neural-renderer"}
KIND_TITLES = {"talkclip": "TalkCLIP text-guided talking-head model", "sync": "lip-sync discriminator",
               "neural-renderer": "neural renderer"}


def _header(path: Path) -> tuple[dict, int]:
    """(safetensors metadata, parameter count) read from the file header only."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            n = 0
            for k in f.keys():
                size = 1
                for d in f.get_slice(k).get_shape():
                    size *= int(d)
                n += size
        return meta, n
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint file {path}: {one_line(e)}") from None


def _text_encoder(cfg) -> dict:
    t = cfg.text
    if t.backend == "clip":
        return {"backend": "clip", "model": f"open_clip {t.clip_model}", "hub": None if t.weights else t.hf_repo}
    if t.backend == "minilm":
        return {"backend": "minilm", "model": "all-MiniLM-L6-v2", "hub": MINILM_REPO}
    return {"backend": t.backend, "model": f"randomly initialised open_clip {t.clip_model} text tower", "hub": None}


def read_checkpoint_facts(ck: Path) -> dict:
    """What the card says about a local checkpoint directory; one-line errors when it is none."""
    from talkclip.model.checkpoint import CONFIG_FILE, LOG_FILES, MODEL_FILE, STATE_FILE, read_checkpoint_config

    if not ck.is_dir():
        raise InputError(f"no such checkpoint folder: {ck}" + (" (it is a file)" if ck.exists() else ""))
    if not (ck / MODEL_FILE).is_file():
        pickled = sorted(p.name for p in ck.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
        why = f"it holds pickled weights ({pickled[0]}); talkclip publishes safetensors only" if pickled else \
            f"no {MODEL_FILE}"
        raise CheckpointError(f"{ck} is not a talkclip checkpoint: {why}")
    if not (ck / CONFIG_FILE).is_file():
        raise CheckpointError(f"{ck} is not a talkclip checkpoint: no {CONFIG_FILE}")
    meta, n_params = _header(ck / MODEL_FILE)
    kind = meta.get("kind", "talkclip")
    if kind == "neural-renderer":
        from talkclip.model.neural_renderer import config_from_dict as renderer_config

        cfg = read_checkpoint_config(ck, renderer_config, "renderer checkpoint")
        text = None
    elif kind in ("talkclip", "sync"):
        from talkclip.model.config import config_from_dict

        cfg = read_checkpoint_config(ck, config_from_dict)
        text = _text_encoder(cfg) if kind == "talkclip" else None
    else:
        raise CheckpointError(f"{ck / MODEL_FILE} holds a {kind!r} file, not a talkclip checkpoint")
    plot = Path(LOG_FILES[kind]).with_suffix(".png").name       # the training curves, when drawn
    facts = {"kind": kind, "config_name": cfg.name, "parameters": n_params, "text_encoder": text,
             "steps": None, "data": None, "curves": plot if (ck / plot).is_file() else None}
    if (ck / STATE_FILE).is_file():
        try:
            state = json.loads((ck / STATE_FILE).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"corrupt {STATE_FILE} in {ck}: {one_line(e)}") from None
        facts["steps"] = state.get("step")
        facts["data"] = state.get("data") or ({"path": state["data_dir"]} if state.get("data_dir") else None)
    return facts


def _metadata(facts: dict, *, evaluation: dict | None, dataset_repo: str | None, license: str, repo_id: str) -> dict:
    meta: dict = {"library_name": "talkclip", "license": license}
    if license == "other":
        meta["license_name"] = "mead-derived"
        meta["license_link"] = "https://wywu.github.io/projects/MEAD/MEAD.html"
    meta["tags"] = ["talkclip", "talking-head", "audio-driven-animation", "text-guided", "arkit-blendshapes",
                    "synthetic-media"] + ([] if facts["kind"] == "talkclip" else [KIND_TAGS[facts["kind"]]])
    text = facts.get("text_encoder") or {}
    if text.get("hub"):
        meta["base_model"] = text["hub"]
    if dataset_repo:
        meta["datasets"] = [dataset_repo]
    data = facts.get("data") or {}
    meta["talkclip"] = {"kind": facts["kind"], "config": facts["config_name"], "version": __version__,
                        "text_encoder": text.get("model"), "training_steps": facts.get("steps"),
                        "ta_mead": {"id": dataset_repo or (Path(data["path"]).name if data.get("path") else None),
                                    "manifest_sha256": data.get("manifest_sha256")}}
    if evaluation:
        mean = evaluation["mean"]
        metrics = [{"type": key, "name": name, "value": round(float(mean[key]), 4)}
                   for key, name, _ in METRICS if isinstance(mean.get(key), (int, float))]
        ds = {"type": "ta-mead", "name": dataset_repo or "TA-MEAD (talkclip build)", "split": "test"}
        if dataset_repo:
            ds["type"] = dataset_repo
        meta["model-index"] = [{"name": repo_id.split("/")[-1], "results": [
            {"task": {"type": "talking-head-generation", "name": "Talking-head generation"},
             "dataset": ds, "metrics": metrics}]}]
    return meta


def model_card(facts: dict, *, repo_id: str, evaluation: dict | None = None, dataset_repo: str | None = None,
               license: str = "other", with_state: bool = False) -> str:
    """README.md text: YAML front matter + markdown."""
    import yaml

    meta = _metadata(facts, evaluation=evaluation, dataset_repo=dataset_repo, license=license, repo_id=repo_id)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()
    return f"---\n{front}\n---\n\n" + "\n\n".join(_body(facts, repo_id, evaluation, dataset_repo, with_state)) + "\n"


def _usage(kind: str, repo_id: str) -> str:
    if kind == "talkclip":
        cmd = (f"talkclip generate --checkpoint {repo_id} --image portrait.jpg --audio speech.wav \\\n"
               '    --text "A woman speaks with a wide smile." --out out.mp4')
    elif kind == "sync":
        cmd = f"talkclip train --data TA_MEAD --config CONFIG --out RUN --sync-checkpoint {repo_id}"
    else:
        cmd = (f"talkclip generate --checkpoint TALKCLIP_CHECKPOINT --renderer {repo_id} --image portrait.jpg \\\n"
               "    --audio speech.wav --text \"...\" --out out.mp4")
    return f"## How to use\n\nWith talkclip installed:\n\n```bash\n{cmd}\n```\n\nA Hub id works wherever a checkpoint " \
           "folder does (`org/name` or `org/name@revision`); offline, the Hugging Face cache is used."


def _body(facts: dict, repo_id: str, evaluation: dict | None, dataset_repo: str | None, with_state: bool) -> list[str]:
    kind = facts["kind"]
    text = facts.get("text_encoder") or {}
    data = facts.get("data") or {}
    parts = [f"# {repo_id.split('/')[-1]}: {KIND_TITLES[kind]}",
             f"A {KIND_TITLES[kind]} ({facts['parameters']:,d} parameters, config `{facts['config_name']}`) "
             "made with talkclip, an open implementation of *TalkCLIP: Talking Head "
             "Generation with Text-Guided Expressive Speaking Styles* (Ma et al.). Files: `model.safetensors` "
             "(weights) and `config.json` (the model config)" + (", plus the optimizer and resume state and the "
                                                                 "training log." if with_state else "."),
             _usage(kind, repo_id)]
    lines = ["## Training", ""]
    if text:
        lines.append(f"- text encoder: {text['model']}" + (f" ([{text['hub']}](https://huggingface.co/{text['hub']}))"
                                                            if text.get("hub") else "") + ", frozen")
    lines.append(f"- training steps: {facts['steps'] if facts.get('steps') is not None else 'not recorded'}")
    if data:
        where = f"[{dataset_repo}](https://huggingface.co/datasets/{dataset_repo})" if dataset_repo else \
            f"local build `{Path(data.get('path', '?')).name}`"
        lines.append(f"- data: TA-MEAD {where}, manifest sha256 `{data.get('manifest_sha256', 'not recorded')}`"
                     + (f", {data['clips']} clips" if data.get("clips") else ""))
    else:
        lines.append("- data: not recorded in the checkpoint")
    if facts.get("curves"):
        lines += ["", f"![training curves: each logged loss against the step]({facts['curves']})"]
    parts.append("\n".join(lines))
    if evaluation:
        rows = ["## Evaluation", "", "`talkclip eval` on held-out clips (LMD in inter-ocular distances):", "",
                "| metric | value | |", "|---|---|---|"]
        mean = evaluation["mean"]
        rows += [f"| {name} | {float(mean[key]):.4f} | {note} |" for key, name, note in METRICS
                 if isinstance(mean.get(key), (int, float))]
        rows.append(f"\n{len(evaluation.get('pairs', []))} video pairs.")
        parts.append("\n".join(rows))
    parts.append("## Intended use\n\nResearch on expressive, speech-driven talking heads and text-controlled "
                 "speaking styles; animation of consenting people's portraits. Not for impersonation, deception, "
                 "harassment or any use that presents generated video as real. Trained on MEAD-derived data: "
                 "check MEAD's terms before any non-research use.")
    parts.append("## Synthetic media\n\nVideos made with this model are synthetic. `talkclip generate` marks every "
                 "output: a visible \"AI\" mark (unless explicitly turned off) and a metadata tag in the mp4 that "
                 "always stays. Keep both when you share results, and say that the video is generated.")
    return parts
