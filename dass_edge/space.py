"""The student search space, defined relative to a teacher.

An :class:`Arch` picks, per stage, a depth (1..teacher depth) and a width per block, each width a
multiple ``m`` of the teacher's stage width, ``m`` in {8/16, 9/16, ..., 16/16}. By default the last
stage keeps the teacher's width so the classifier transfers whole (as in DaSS); pass
``fixed_last_stage=False`` to search it too (the classifier's input columns are then sliced).

This module only holds the value type, encode/decode, sampling/mutation/crossover and the
analytic cost model (params, FLOPs). Building and remapping models lives in ``dass_edge.models``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from dass_edge.errors import DassEdgeError
from dass_edge.spec import ModelSpec, block_layout, conv_out
from dass_edge.validate import whole

__all__ = ["Arch", "SearchSpace", "parse_arch", "WIDTH_MULTIPLIERS", "block_macs", "spec_params", "spec_flops"]

#: Width multipliers relative to the teacher's stage width (step 1/16, as in DaSS).
WIDTH_MULTIPLIERS: tuple[float, ...] = tuple(k / 16 for k in range(8, 17))


@dataclass(frozen=True)
class Arch:
    """A student: per-stage depths and per-block output widths (absolute channel counts)."""

    depths: tuple[int, ...]
    widths: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(whole(d, "an arch depth") for d in self.depths))
        object.__setattr__(self, "widths", tuple(tuple(whole(w, "an arch width") for w in s) for s in self.widths))
        if len(self.depths) != len(self.widths):
            raise DassEdgeError(f"arch has {len(self.depths)} depths but {len(self.widths)} width lists")
        for s, (d, ws) in enumerate(zip(self.depths, self.widths)):
            if d != len(ws):
                raise DassEdgeError(f"stage {s + 1}: depth {d} but {len(ws)} block widths; give one width per block")

    def to_dict(self) -> dict:
        return {"depths": list(self.depths), "widths": [list(w) for w in self.widths]}

    @classmethod
    def from_dict(cls, d: dict) -> Arch:
        try:
            return cls(depths=tuple(d["depths"]), widths=tuple(tuple(w) for w in d["widths"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DassEdgeError(
                f"arch is malformed ({e}); expected {{'depths': [...], 'widths': [[...], ...]}}"
            ) from None

    def key(self) -> str:
        """A short, stable, human-readable identifier (``d2-2-1-2_w32.32-64.48-...``)."""
        ds = "-".join(str(d) for d in self.depths)
        ws = "-".join(".".join(str(w) for w in s) for s in self.widths)
        return f"d{ds}_w{ws}"


def parse_arch(text: str) -> Arch:
    """An arch from JSON (``{"depths": [...], "widths": [[...], ...]}``) or its key (inverse of :meth:`Arch.key`)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return Arch.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise DassEdgeError(f"--arch is not valid JSON ({e.msg})") from None
    try:
        d_part, w_part = text.split("_w", 1)
        if not d_part.startswith("d"):
            raise ValueError
        depths = tuple(int(v) for v in d_part[1:].split("-"))
        widths = tuple(tuple(int(w) for w in stage.split(".")) for stage in w_part.split("-"))
    except ValueError:
        raise DassEdgeError(f"--arch {text!r} is neither JSON nor an arch key like d2-1-2-2_w16.16-32-64.48-128.128"
                            ) from None
    return Arch(depths, widths)


def _stage_width_options(width: int) -> tuple[int, ...]:
    return tuple(sorted({max(1, round(width * m)) for m in WIDTH_MULTIPLIERS}))


class SearchSpace:
    """All students of one teacher.

    Args:
        teacher: the teacher's spec; its stage widths and depths bound the space.
        fixed_last_stage: keep every last-stage block at the teacher's width (default, DaSS).
    """

    def __init__(self, teacher: ModelSpec, fixed_last_stage: bool = True) -> None:
        self.teacher = teacher
        self.fixed_last_stage = fixed_last_stage
        self.max_depths: tuple[int, ...] = teacher.depths
        self.width_options: tuple[tuple[int, ...], ...] = tuple(
            (w,) if (fixed_last_stage and s == len(teacher.widths) - 1) else _stage_width_options(w)
            for s, w in enumerate(teacher.widths)
        )
        if any(len(set(blocks)) != 1 for blocks in teacher.stages) or teacher.stem_width != teacher.stages[0][0]:
            raise DassEdgeError(
                "a teacher needs one width per stage and a stem as wide as its first stage "
                f"(got stages {[list(b) for b in teacher.stages]}, stem {teacher.stem_width})"
            )

    # -- validation ---------------------------------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Return ``arch`` if it belongs to this space, else raise a clear error."""
        if len(arch.depths) != len(self.max_depths):
            raise DassEdgeError(f"arch has {len(arch.depths)} stages; this teacher has {len(self.max_depths)}")
        for s, (d, ws) in enumerate(zip(arch.depths, arch.widths)):
            if not 1 <= d <= self.max_depths[s]:
                raise DassEdgeError(
                    f"stage {s + 1} depth {d} is outside 1..{self.max_depths[s]} (the teacher's depth)"
                )
            for b, w in enumerate(ws):
                if w not in self.width_options[s]:
                    raise DassEdgeError(
                        f"stage {s + 1} block {b + 1} width {w} is not one of {list(self.width_options[s])}"
                    )
        return arch

    def contains(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except DassEdgeError:
            return False
        return True

    def teacher_arch(self) -> Arch:
        """The teacher's own architecture (the largest member of the space)."""
        return Arch(self.max_depths, tuple((opts[-1],) * d for opts, d in zip(self.width_options, self.max_depths)))

    def smallest_arch(self) -> Arch:
        return Arch((1,) * len(self.max_depths), tuple((opts[0],) for opts in self.width_options))

    def to_spec(self, arch: Arch) -> ModelSpec:
        """The buildable spec of a student (stem, classes, normalization taken from the teacher)."""
        self.validate(arch)
        t = self.teacher
        return t.replace(stages=[list(w) for w in arch.widths], stem_width=arch.widths[0][0])

    # -- size ---------------------------------------------------------------------------------
    def size(self) -> int:
        """Number of distinct students."""
        total = 1
        for d_max, opts in zip(self.max_depths, self.width_options):
            total *= sum(len(opts) ** d for d in range(1, d_max + 1))
        return total

    # -- encoding -----------------------------------------------------------------------------
    @property
    def encoding_length(self) -> int:
        return sum(d + d * len(opts) for d, opts in zip(self.max_depths, self.width_options))

    def encode(self, arch: Arch) -> list[float]:
        """Fixed-length one-hot encoding: per stage, depth one-hot then one width one-hot per block slot
        (all zeros for slots deeper than the stage's depth)."""
        self.validate(arch)
        vec: list[float] = []
        for d_max, opts, d, ws in zip(self.max_depths, self.width_options, arch.depths, arch.widths):
            depth_hot = [0.0] * d_max
            depth_hot[d - 1] = 1.0
            vec += depth_hot
            for b in range(d_max):
                slot = [0.0] * len(opts)
                if b < d:
                    slot[opts.index(ws[b])] = 1.0
                vec += slot
        return vec

    def decode(self, vec: list[float]) -> Arch:
        """Inverse of :meth:`encode` (argmax per one-hot group)."""
        if len(vec) != self.encoding_length:
            raise DassEdgeError(f"encoding has length {len(vec)}; this space needs {self.encoding_length}")
        pos = 0
        depths, widths = [], []
        for d_max, opts in zip(self.max_depths, self.width_options):
            group = list(vec[pos : pos + d_max])
            d = group.index(max(group)) + 1
            pos += d_max
            ws = []
            for b in range(d_max):
                slot = list(vec[pos : pos + len(opts)])
                pos += len(opts)
                if b < d:
                    ws.append(opts[slot.index(max(slot))])
            depths.append(d)
            widths.append(tuple(ws))
        return self.validate(Arch(tuple(depths), tuple(widths)))

    # -- sampling -----------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Arch:
        """A uniformly random depth per stage, then a uniformly random width per block."""
        depths = tuple(rng.randint(1, d) for d in self.max_depths)
        widths = tuple(tuple(rng.choice(opts) for _ in range(d)) for opts, d in zip(self.width_options, depths))
        return Arch(depths, widths)

    def sample_many(self, n: int, seed: int = 0, unique: bool = True) -> list[Arch]:
        rng = random.Random(seed)
        out: list[Arch] = []
        seen: set[Arch] = set()
        tries = 0
        while len(out) < n:
            a = self.sample(rng)
            tries += 1
            if unique and a in seen:
                if tries > 100 * n + 1000:
                    raise DassEdgeError(f"the space has fewer than {n} distinct students")
                continue
            seen.add(a)
            out.append(a)
        return out

    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.2) -> Arch:
        """Resample each depth and each block width with probability ``prob`` (OFA-style)."""
        self.validate(arch)
        depths, widths = [], []
        for d_max, opts, d, ws in zip(self.max_depths, self.width_options, arch.depths, arch.widths):
            if rng.random() < prob:
                d = rng.randint(1, d_max)
            new_ws = [ws[b] if b < len(ws) else rng.choice(opts) for b in range(d)]
            new_ws = [rng.choice(opts) if rng.random() < prob else w for w in new_ws]
            depths.append(d)
            widths.append(tuple(new_ws))
        return Arch(tuple(depths), tuple(widths))

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Each stage (depth and its block widths together) from one parent at random."""
        self.validate(a)
        self.validate(b)
        picks = [(a if rng.random() < 0.5 else b) for _ in self.max_depths]
        return Arch(tuple(p.depths[s] for s, p in enumerate(picks)), tuple(p.widths[s] for s, p in enumerate(picks)))

    # -- cost ---------------------------------------------------------------------------------
    def params(self, arch: Arch) -> int:
        return spec_params(self.to_spec(arch))

    def flops(self, arch: Arch) -> int:
        return spec_flops(self.to_spec(arch))


# --- analytic cost model (must match the built model exactly; see tests/test_space.py) ---------
def spec_params(spec: ModelSpec) -> int:
    """Trainable parameters (conv weights, BN affine, classifier), exactly as the built model counts."""
    k = 3 if spec.stem == "small" else 7
    total = spec.in_chans * spec.stem_width * k * k + 2 * spec.stem_width
    for cin, cout, _stride, _res, proj in block_layout(spec):
        total += 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout
        if proj:
            total += cin * cout + 2 * cout
    total += spec.feature_width * spec.num_classes + spec.num_classes
    return total


def spec_flops(spec: ModelSpec) -> int:
    """Multiply-accumulates of convolutions and the classifier for one image (BN/ReLU/add ignored)."""
    if spec.stem == "small":
        r = spec.resolution
        total = spec.in_chans * spec.stem_width * 9 * r * r
    else:
        r = conv_out(spec.resolution, 2)
        total = spec.in_chans * spec.stem_width * 49 * r * r
    total += sum(block_macs(cin, cout, stride, res, proj) for cin, cout, stride, res, proj in block_layout(spec))
    total += spec.feature_width * spec.num_classes
    return total


def block_macs(cin: int, cout: int, stride: int, res: int, proj: bool) -> int:
    """Multiply-accumulates of one BasicBlock (two 3x3 convs, plus the 1x1 projection if it has one), the one
    formula the cost model, the latency-table estimate and the band sampler share."""
    r = conv_out(res, stride)
    return (9 * cin * cout + 9 * cout * cout + (cin * cout if proj else 0)) * r * r
