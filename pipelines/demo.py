"""``talkclip-data demo``: the sample talking-head video to caption, and a tiny corpus to build.

The demo chains three pipelines (caption, make-sample, build-ta-mead) plus ``stats``; the CLI
prints each one's result. This module owns the demo's paths and its one rule: the MEAD-shaped
sample is cut once into ``OUT/mead`` (a rerun reuses it) and built into ``OUT/ta-mead``.
"""

from __future__ import annotations

from pathlib import Path


def demo_video() -> Path:
    """The talking-head sample `talkclip-data setup` placed (MissingAssetError when it did not)."""
    from .setup import sample_path

    return sample_path("talking.mp4")


def demo_corpus(out: str | Path) -> tuple[Path, Path]:
    """(MEAD-shaped sample root, TA-MEAD build folder) of a demo in ``out``; the sample is cut
    from the demo video the first time and reused by later runs."""
    from .sample import make_sample

    out = Path(out)
    mead = out / "mead"
    if not mead.is_dir():
        make_sample(mead)
    build = out / "ta-mead"
    if _outdated(build):   # the demo's own folder, built by an earlier talkclip: start it over
        import shutil

        shutil.rmtree(build)
    return mead, build


def _outdated(build: Path) -> bool:
    """Whether ``build`` holds a work record that this version's schema cannot read."""
    from talkclip import OutdatedTableError

    from .build_ta_mead import STAGE1_SCHEMA, WORK_DIR
    from .shards import read_table

    try:
        read_table(build / WORK_DIR / "stage1", STAGE1_SCHEMA)
    except OutdatedTableError:
        return True
    return False
