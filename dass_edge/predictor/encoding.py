"""Architecture encoding that means the same thing for every teacher.

``SearchSpace.encode`` is exact but its length depends on the teacher's depths, so one predictor
could not read students of a 2-2-2-2 and a 2-3-3-2 teacher. Here a stage's depth is one-hot over
1..``MAX_DEPTH`` and each block's width is one-hot over the 9 multipliers m = 8/16..16/16 of the
teacher's stage width: a student of any family teacher maps into one fixed-length vector.
"""

from __future__ import annotations

from dass_edge.errors import DassEdgeError
from dass_edge.space import WIDTH_MULTIPLIERS, Arch
from dass_edge.spec import ModelSpec

__all__ = ["MAX_DEPTH", "RELATIVE_ENCODING_LENGTH", "encode_relative", "student_features"]

#: Deepest stage the encoding can hold (ResNet-34's third stage has 6 blocks).
MAX_DEPTH = 6
_N_WIDTHS = len(WIDTH_MULTIPLIERS)
RELATIVE_ENCODING_LENGTH = 4 * (MAX_DEPTH + MAX_DEPTH * _N_WIDTHS)


def _multiplier_index(width: int, teacher_width: int) -> int:
    """Index of the multiplier closest to ``width / teacher_width`` (exact for widths of the space)."""
    ratio = width / teacher_width
    return min(range(_N_WIDTHS), key=lambda i: abs(WIDTH_MULTIPLIERS[i] - ratio))


def encode_relative(arch: Arch, teacher: ModelSpec) -> list[float]:
    """Fixed-length, teacher-relative one-hot encoding of ``arch``."""
    if len(arch.depths) != 4:
        raise DassEdgeError(f"arch has {len(arch.depths)} stages; the family has 4")
    vec: list[float] = []
    for depth, widths, t_width in zip(arch.depths, arch.widths, teacher.widths):
        if not 1 <= depth <= MAX_DEPTH:
            raise DassEdgeError(f"stage depth {depth} is outside 1..{MAX_DEPTH} of the predictor's encoding")
        hot = [0.0] * MAX_DEPTH
        hot[depth - 1] = 1.0
        vec += hot
        for b in range(MAX_DEPTH):
            slot = [0.0] * _N_WIDTHS
            if b < depth:
                slot[_multiplier_index(widths[b], t_width)] = 1.0
            vec += slot
    return vec


def student_features(arch: Arch, teacher: ModelSpec) -> list[float]:
    """The predictor's architecture input: what meta-training and search both feed it (one definition)."""
    return encode_relative(arch, teacher)
