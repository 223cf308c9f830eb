"""TA-MEAD tables: clips, frames, audio, failures.

Directory layout of a build (``OUT``)::

    OUT/clips/<shard>.parquet      one row per clip (ids, media facts, AU profile, captions)
    OUT/frames/<shard>.parquet     one row per clip holding its per-frame lists (see below)
    OUT/audio/<shard>.parquet      one row per clip: 16 kHz mono int16 PCM
    OUT/failures/<shard>.parquet   one row per failed clip (id, stage, message)
    OUT/manifest.json, OUT/README.md (dataset card with ``configs:``)

Frames are stored one row per clip with list columns: a training sampler reads a whole
clip's track with one row lookup and slices windows from it without a group-by.

Clips and failures are rewritten whole on every run of the build (``clips/train-00000.parquet``,
``clips/test-00000.parquet``, ``failures/failures-00000.parquet``); frames and audio are the
workers' committed shards (any names). Rows of clips, frames and audio match one to one by
``clip_id``; a failed clip has a failures row only. ``av_mismatch`` rows (audio and video
lengths differ by more than 0.2 s) are kept: readers needing exact sync should drop them.
``OUT/.work/`` holds the build's internal state (stage-1 rows, see :data:`STAGE1_SCHEMA`) and is
never published.
"""

from __future__ import annotations

from dataclasses import field, make_dataclass

import pyarrow as pa

from . import NUM_AUS, NUM_BLENDSHAPES, NUM_LANDMARKS

AUDIO_SAMPLE_RATE = 16_000
# Landmarks are stored as int16: normalised image coordinates (x, y) and MediaPipe's relative
# depth z, multiplied by LANDMARK_SCALE. Resolution 1e-4 of the image size, half the bytes.
LANDMARK_SCALE = 10_000.0

CLIPS_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),   # "M003_front_angry_level_1_001"
    pa.field("speaker", pa.string(), nullable=False),   # "M003"
    pa.field("gender", pa.string()),                    # "man" | "woman" | "person"
    pa.field("view", pa.string()),                      # "front"
    pa.field("emotion", pa.string()),                   # the corpus's word: "angry" ("" = unlabelled)
    pa.field("intensity", pa.string()),                 # the corpus's word: "2" (MEAD), "strong", "unspecified"
    pa.field("level", pa.int8()),                       # 1..3 from the label table; 0 = unspecified / unlabelled
    pa.field("take", pa.string()),                      # "001"
    pa.field("sentence", pa.string()),                  # the spoken text, where the corpus defines it
    pa.field("video_path", pa.string()),                # path, or "archive.tar::member"
    pa.field("audio_path", pa.string()),
    pa.field("audio_source", pa.string()),              # "m4a" | "video"
    pa.field("fps", pa.float32()),
    pa.field("width", pa.int32()),                      # video frame size in pixels
    pa.field("height", pa.int32()),
    pa.field("frames", pa.int32()),
    pa.field("frames_with_face", pa.int32()),
    pa.field("duration_s", pa.float32()),               # video duration
    pa.field("audio_duration_s", pa.float32()),
    pa.field("av_mismatch", pa.bool_()),                # |audio - video| > tolerance
    pa.field("au_intensity_raw", pa.list_(pa.float32(), NUM_AUS)),  # clip mean, 0-5
    pa.field("au_intensity", pa.list_(pa.float32(), NUM_AUS)),      # after neutral baseline
    pa.field("au_level", pa.list_(pa.int8(), NUM_AUS)),             # 0 (inactive)..3
    pa.field("emotion_labels", pa.list_(pa.string())),
    pa.field("captions", pa.list_(pa.string())),
    pa.field("split", pa.string()),                     # "train" | "test"
])

FRAMES_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("fps", pa.float32()),
    pa.field("timestamp_ms", pa.list_(pa.int32())),                          # (T,)
    pa.field("face", pa.list_(pa.bool_())),                                  # (T,)
    pa.field("blendshapes", pa.list_(pa.list_(pa.float32(), NUM_BLENDSHAPES))),  # (T, 52)
    pa.field("pose", pa.list_(pa.list_(pa.float32(), 16))),                  # (T, 4x4 row-major)
    pa.field("landmarks", pa.list_(pa.list_(pa.int16(), NUM_LANDMARKS * 3))),  # (T, 478*3) or null
])

AUDIO_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("sample_rate", pa.int32()),
    pa.field("samples", pa.list_(pa.int16())),  # mono PCM
])

FAILURES_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("stage", pa.string()),    # "decode" | "track" | "audio" | "annotate" | ...
    pa.field("error", pa.string()),    # one-line message
    pa.field("path", pa.string()),
])

# Phoneme track (optional: builds made with --phonemes; talkclip.annotate.phonemes): one row per
# clip. Phone ids index the phone table annotate/data/phones.csv (0 = silence); ``frame_ids``
# follows the clip's video frames (row t covers [t/fps, (t+1)/fps), like the frames table).
PHONEMES_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("fps", pa.float32()),
    pa.field("method", pa.string()),                 # "alignment" (sentence known) | "recognition"
    pa.field("sentence", pa.string()),               # the sentence aligned to (null: recognition)
    pa.field("note", pa.string()),                   # why recognition replaced an asked-for alignment
    pa.field("phones", pa.list_(pa.string())),       # segments: phone symbol ...
    pa.field("starts", pa.list_(pa.float32())),      # ... start and end in seconds
    pa.field("ends", pa.list_(pa.float32())),
    pa.field("frame_ids", pa.list_(pa.int16())),     # (T,) phone id per video frame
])


# Phase-1 record of a build (internal, under OUT/.work/stage1/): one row per clip attempted,
# written by the worker that tracked it, in the same commit as the clip's frames/audio rows.
# The clips table is derived from these rows on every run (baseline, levels, captions, split).
# ``ok`` False means the clip failed (its failure row is in OUT/.work/failures/). ``track_s`` is
# a timing field (seconds spent on the clip) and never reaches the published tables.
_PHASE2_ONLY = ("au_intensity", "au_level", "emotion_labels", "captions", "split")
STAGE1_SCHEMA = pa.schema(
    [f for f in CLIPS_SCHEMA if f.name not in _PHASE2_ONLY]
    + [pa.field("ok", pa.bool_(), nullable=False), pa.field("track_s", pa.float32())]
)



def row_type(name: str, schema: pa.Schema) -> type:
    """A frozen, keyword-only dataclass with one field per column of ``schema``, derived from it
    (so row type and schema cannot drift apart): non-nullable columns are required, the others
    default to None. Writers build their rows with these; a misspelt or missing column fails at
    the call, not as a silent null in the table."""
    specs = [(f.name, object) if not f.nullable else (f.name, object, field(default=None)) for f in schema]
    return make_dataclass(name, specs, frozen=True, kw_only=True)


# The tables' row types, derived from the schemas above (the schemas are the one declaration).
ClipRow = row_type("ClipRow", CLIPS_SCHEMA)
FramesRow = row_type("FramesRow", FRAMES_SCHEMA)
AudioRow = row_type("AudioRow", AUDIO_SCHEMA)
FailureRow = row_type("FailureRow", FAILURES_SCHEMA)
Stage1Row = row_type("Stage1Row", STAGE1_SCHEMA)
PhonemesRow = row_type("PhonemesRow", PHONEMES_SCHEMA)

TABLES = {
    "clips": (CLIPS_SCHEMA, ClipRow),
    "frames": (FRAMES_SCHEMA, FramesRow),
    "audio": (AUDIO_SCHEMA, AudioRow),
    "failures": (FAILURES_SCHEMA, FailureRow),
    "phonemes": (PHONEMES_SCHEMA, PhonemesRow),
}
