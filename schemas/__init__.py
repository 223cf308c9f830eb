"""Table definitions for TA-MEAD and the names they use.

Each table is declared once, as a pyarrow schema (:mod:`.tamead`); every writer casts to it
with :func:`cast_table`, every reader opens a build through :mod:`.build`. This package
imports nothing else from the project (only its error classes, lazily).
"""

from __future__ import annotations

import pyarrow as pa

# The 52 blendshape channels in MediaPipe Face Landmarker's output order (`_neutral` first,
# then 51 ARKit names; ARKit's tongueOut is not produced by MediaPipe).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
NUM_BLENDSHAPES = len(BLENDSHAPE_NAMES)  # 52
# Apple ARKit's 52 blendshape names: MediaPipe's 51 named channels plus tongueOut (which MediaPipe
# does not estimate), for exports to 3-D rigs.
ARKIT_NAMES: tuple[str, ...] = (*BLENDSHAPE_NAMES[1:], "tongueOut")
NUM_LANDMARKS = 478

# DISFA's 12 action units, in the order every AU vector of the project uses.
AU_IDS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
NUM_AUS = len(AU_IDS)

assert NUM_BLENDSHAPES == 52, "MediaPipe gives 52 blendshapes"


def cast_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast ``table`` to ``schema`` (columns reordered by name); raise on missing columns."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        from talkclip import LayoutError   # the project's error classes only

        raise LayoutError(f"table lacks columns {missing} of its schema")
    return table.select(schema.names).cast(schema)
