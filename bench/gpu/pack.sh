#!/usr/bin/env bash
# Pack what a bare GPU machine lacks to run talkclip's CUDA checks (bench/gpu/check.sh) into one
# file, .gpu-kit/kit.tar.xz (ignored by git), small enough to travel with the working tree.
#
# The GPU machine this project is sometimes lent has CUDA PyTorch, numpy, pandas, pyarrow,
# safetensors, typer, rich, OpenCV, timm, matplotlib and pytest, but no network. The kit holds:
#   site/      the wheels it lacks, unpacked (PyAV, MediaPipe, open_clip and theirs), for its Python
#   cache/     the face landmarker model (what `talkclip-data setup` placed in the user cache)
#   fixtures/  the fixture portraits, talking clip and speech the checks read
#   demo/      the demo corpus and its TA-MEAD build (what `talkclip-data demo` wrote in demo_out/)
#
# Run here, from the repository root, after the README's first command:
#     bash bench/gpu/pack.sh                # PYVER=3.12 (the GPU image's Python) unless set
# It refuses, in one line, when the landmarker, the fixtures or the demo build are missing, and
# when the kit would not fit the 60 MiB a device call may carry beside the repository.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KIT=${KIT:-$ROOT/.gpu-kit}
PYVER=${PYVER:-3.12}
FIXTURES=${TALKCLIP_FIXTURES:-$ROOT/../shared/fixtures}
CACHE=${TALKCLIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/talkclip}
LIMIT_MIB=60
VENV_PY=${VENV_PY:-$ROOT/.venv/bin/python}
# What the GPU image lacks: PyAV, MediaPipe, open_clip and the two of open_clip's needs it lacks
# (ftfy, wcwidth), at the versions the set-up command installed in .venv (pyproject's pins).
PACKAGES="av mediapipe open_clip_torch ftfy wcwidth"
die() { echo "pack.sh: $*" >&2; exit 2; }
[ -f "$CACHE/face_landmarker.task" ] || die "no face landmarker in $CACHE: run \`talkclip-data setup\` first"
[ -f "$FIXTURES/faces/smile.jpg" ] || die "no fixtures at $FIXTURES: set TALKCLIP_FIXTURES"
[ -f "$ROOT/demo_out/ta-mead/manifest.json" ] || die "no demo build in demo_out/: run \`talkclip-data demo\` first"

[ -x "$VENV_PY" ] || die "no $VENV_PY: run the README's set-up command first (or set VENV_PY)"
# shellcheck disable=SC2086
pins=$("$VENV_PY" -c 'import sys; from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))' $PACKAGES) || die "a package of the kit is not installed in $VENV_PY"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/wheels" "$stage/kit/site" "$stage/kit/cache" "$stage/kit/fixtures" "$stage/kit/demo"
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  plat+=(--platform "$p")
done
echo "wheels for Python $PYVER: $pins"
# shellcheck disable=SC2086
"$VENV_PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${plat[@]}" -d "$stage/wheels" $pins 2> >(grep -v "^WARNING: Location" >&2)
for w in "$stage"/wheels/*.whl; do "$VENV_PY" -m zipfile -e "$w" "$stage/kit/site"; done

cp "$CACHE/face_landmarker.task" "$stage/kit/cache/"
mkdir -p "$stage/kit/fixtures/faces" "$stage/kit/fixtures/speech"
cp "$FIXTURES"/faces/*.jpg "$FIXTURES/faces/talking_pexels.mp4" "$stage/kit/fixtures/faces/"
cp "$FIXTURES/speech/hello_en.wav" "$stage/kit/fixtures/speech/"
cp -r "$ROOT/demo_out/mead" "$ROOT/demo_out/ta-mead" "$stage/kit/demo/"

mkdir -p "$KIT"
echo "compressing $(du -sh "$stage/kit" | cut -f1) (xz, a minute or two)"
tar -C "$stage/kit" -cf - . | xz -9 -T0 > "$KIT/kit.tar.xz.part"
size=$(( $(stat -c %s "$KIT/kit.tar.xz.part") / 1048576 ))
if [ "$size" -ge "$LIMIT_MIB" ]; then
  rm -f "$KIT/kit.tar.xz.part"
  die "the kit is $size MiB, over the $LIMIT_MIB MiB a device call carries beside the repository"
fi
mv "$KIT/kit.tar.xz.part" "$KIT/kit.tar.xz"
echo "wrote $KIT/kit.tar.xz ($size MiB): carry .gpu-kit and run \`bash bench/gpu/check.sh\` there"
