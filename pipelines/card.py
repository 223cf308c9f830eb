"""The dataset card (README.md) of a TA-MEAD build: YAML ``configs:`` for ``datasets`` + provenance."""

from __future__ import annotations

import json

CARD_CONFIGS = ("clips", "frames", "audio", "failures", "phonemes")
_PHONEMES_TABLE = """- **phonemes** (built with `--phonemes`): one row per clip: `method` (`alignment` to the
  clip's `sentence`, or `recognition`), the phone segments (`phones`, `starts`, `ends` in
  seconds) and `frame_ids` (T, one id of talkclip's phone table per video frame; 0 = silence),
  made offline with pocketsphinx's en-us model. Recognised phones are rough (see the manifest).
"""


def _yaml_configs(has_test: bool, has_failures: bool, extra: tuple[str, ...] = ()) -> list[str]:
    lines = ["configs:", "- config_name: clips", "  default: true", "  data_files:",
             "  - split: train", "    path: clips/train-*.parquet"]
    if has_test:
        lines += ["  - split: test", "    path: clips/test-*.parquet"]
    for name in ("frames", "audio") + (("failures",) if has_failures else ()) + extra:
        lines += [f"- config_name: {name}", "  data_files:", "  - split: full", f"    path: {name}/*.parquet"]
    return lines


def _front_matter(src: dict, has_test: bool, has_failures: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """The card's YAML front matter lines (licence, tags, ``configs:``)."""
    licence = [f"license: {src['licence']}"]
    if src["licence"] == "other":
        licence += [f"license_name: {src['licence_name']}"] + ([f"license_link: {src['licence_link']}"]
                                                               if src["licence_link"] else [])
    return ["---", f"pretty_name: {src['dataset']} (talkclip build)", *licence,
            "language:", "- en",
            "tags:", "- talking-head", "- facial-action-units", "- text-to-speaking-style",
            *_yaml_configs(has_test, has_failures, extra), "---", ""]


def dataset_card(manifest: dict, *, has_test: bool, has_failures: bool) -> str:
    """Markdown card with YAML front matter; ``datasets.load_dataset(out_dir)`` reads the clips config.

    ``manifest["source"]`` names the corpus, its licence and citation and the recipe that listed it
    (:meth:`talkclip.pipelines.recipes.RecipeSource.card_source`).
    """
    c, o, src = manifest["counts"], manifest["options"], manifest["source"]
    phonemes = (manifest.get("phonemes") or {}).get("enabled", False)
    head = _front_matter(src, has_test, has_failures, ("phonemes",) if phonemes else ())
    stages = ", ".join(f"{k}: {v}" for k, v in c["failures_by_stage"].items()) or "none"
    body = f"""# {src['dataset']} (talkclip build)

Text-annotated {src['title']}, built with `talkclip-data build --corpus {src['corpus']}` (the
`{src['corpus']}` recipe, version {src['recipe_version']}; talkclip {manifest['version']}, format
`{manifest['format']}`), after the TA-MEAD dataset described in *TalkCLIP: Talking Head Generation
with Text-Guided Expressive Speaking Styles* (Ma et al.). The paper's own annotation was never
released; everything here was produced by this tool, as described below.

## Contents

| | |
|---|---|
| clips | {c['clips']} ({c['train_clips']} train, {c['test_clips']} test) of {c['selected']} selected |
| speakers | {c['speakers']} (test: {', '.join(manifest['splits']['test']) or 'none'}) |
| frames | {c['frames']} ({c['frames_with_face']} with a face) |
| failed clips | {c['failed']} ({stages}) |
| audio/video length mismatch > {manifest['av_tolerance_s']} s (kept, flagged) | {c['av_mismatch']} |
| views | {', '.join(o.get('views') or ['all'])} |
| files skipped (name not following the corpus's scheme) | {c.get('skipped_names', 0)} |

```python
from datasets import load_dataset
clips = load_dataset("path/or/repo")                     # clips config: train / test splits
frames = load_dataset("path/or/repo", "frames")          # per-frame tracks, one row per clip
```

or with pyarrow: `pyarrow.dataset.dataset("OUT/clips", format="parquet")`.

{_tables_section(manifest['au_ids'], phonemes)}## How it was annotated

- Face tracking: MediaPipe Face Landmarker (VIDEO mode), model sha256
  `{manifest['landmarker_sha256'][:16]}...`.
- AU estimator: {manifest['au_estimator']}. These are estimates from MediaPipe's 52 blendshapes
  and landmark geometry mapped to DISFA's 0-5 scale, **not** the DISFA-trained AU detector the
  paper used. Clip AU = mean over frames with a face.
- Neutral baseline: {'on' if manifest['baseline']['enabled'] else 'off'}. When on, each speaker's
  mean raw AU over their neutral clips (per view) is subtracted before levelling.
- AU levels: AU table sha256 `{manifest['au_table_sha256'][:16]}...` ({o['au_table']}).
- Emotion labels and levels: label table sha256 `{manifest['group_table_sha256'][:16]}...`
  ({o['groups'] if o['groups'] != 'packaged' else 'packaged ' + src['labels']}). The packaged
  table, mapping the corpus's emotion/intensity groups to a level and labels from the 135
  categories of Shaver et al. (1987), is **this project's own annotation**, not the paper's
  (which was never published); clips without an emotion get captions with the AU part only.
- Captions: {o['n_captions']} per clip, "<subject> <emotion> and speaks with <AUs>" with variants
  that drop the emotion or the AU part; deterministic for seed {o['seed']} and the clip id.
- Split: whole speakers held out for test, chosen by a stable hash of the speaker id.
- Audio: clips with no audio at all are failures; clips whose audio and video lengths differ by
  more than {manifest['av_tolerance_s']} s are kept and flagged (`av_mismatch`).

{_provenance(src)}## Build facts

```json
{json.dumps(dict(version=manifest['version'], options=o, counts=c, splits=manifest['splits'],
                 warnings=manifest['warnings']), indent=1)}
```
"""
    return "\n".join(head) + body


def _tables_section(au_ids, phonemes: bool) -> str:
    """The card's description of the tables."""
    return f"""## Tables (schemas in `talkclip/schemas/tamead.py`)

- **clips**: one row per clip: ids (`clip_id` as the corpus names the clip, speaker, view, the
  corpus's own `emotion` and `intensity` words, `level` 1-3 from the label table (0 =
  unspecified or unlabelled), take, `sentence` = the spoken text where the corpus defines it),
  source paths relative to the corpus root (a tar member is written `SPK/video.tar::member`),
  fps, frame size, frame counts, durations, `audio_source` (`m4a` / `wav` = the corpus's
  separate audio file, `video` = the video's own track), `av_mismatch`, the 12
  DISFA AU intensities (`au_intensity_raw` = clip mean, `au_intensity` = after the neutral
  baseline), their levels 0-3 (`au_level`), `emotion_labels`, `captions`, `split`.
  AU order: {', '.join(f'AU{a}' for a in au_ids)}.
- **frames**: one row per clip holding per-frame lists: `timestamp_ms` (T), `face` (T),
  `blendshapes` (T x 52, MediaPipe order), `pose` (T x 16, the 4x4 facial transformation
  matrix, row-major), `landmarks` (T x 1434 int16 = 478 x (x, y, z) times 10000, or null when
  built without `--landmarks`). A training sampler reads a clip's whole track with one row lookup.
- **audio**: one row per clip: 16 kHz mono int16 PCM of the clip's audio.
{_PHONEMES_TABLE if phonemes else ""}- **failures**: clips that could not be used: `clip_id`, `stage` (read, decode, track, audio,
  annotate), `error`, `path`. (A build without failures has no failures files and no
  failures config; a build without test speakers has no test split.)

"""


def _provenance(src: dict) -> str:
    """The card's provenance section: the source corpus, its terms, its citation."""
    link = f" ({src['licence_link']})" if src["licence_link"] else ""
    cite = f"Cite it when you use it:\n\n```bibtex\n{src['citation']}\n```\n" if src["citation"] else ""
    return (f"## Provenance and terms\n\nThe videos and audio come from **{src['title']}** "
            f"({src['homepage'] or 'the folder given to the build'}), under {src['licence_name']}{link}. "
            f"{src['terms']}\n{cite}\n")


def card_configs(text: str) -> list[str]:
    """Config names declared in a card's YAML front matter (a light parser for the checks)."""
    if not text.startswith("---"):
        return []
    end = text.find("\n---", 3)
    if end < 0:
        return []
    names = []
    for line in text[3:end].splitlines():
        s = line.strip()
        if s.startswith("- config_name:"):
            names.append(s.split(":", 1)[1].strip())
    return names
