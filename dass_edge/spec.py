"""`ModelSpec`: everything needed to rebuild a ResNet of the family from a checkpoint.

A spec is plain data (JSON round-trip) so it can live in safetensors metadata and run folders
instead of pickles.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from dass_edge.errors import DassEdgeError
from dass_edge.validate import finite, whole

__all__ = ["FAMILY", "STEMS", "LIMITS", "ModelSpec", "block_layout", "conv_out"]

FAMILY = "resnet-basic"
STEMS = ("small", "imagenet")
#: Sane bounds on a spec. A checkpoint's spec is read before its weights, and a spec claiming, say, a
#: stage width of 10,000,000 would otherwise allocate gigabytes before its tensors are compared.
LIMITS = {"width": 8192, "depth": 64, "num_classes": 100_000, "resolution": 4096, "in_chans": 16}


@dataclass(frozen=True)
class ModelSpec:
    """A BasicBlock ResNet with 4 stages and a width per block.

    Args:
        stages: per stage, the output width of each block (``stages[s][b]``).
        stem: ``"small"`` (3x3 stride 1) or ``"imagenet"`` (7x7 stride 2 + 3x3 max-pool).
        num_classes: classifier outputs.
        resolution: square input side in pixels.
        in_chans: input channels.
        mean, std: input normalization (per channel, on [0, 1] pixels).
        class_names: optional names, ``len == num_classes`` when given.
        stem_width: stem output channels; defaults to the width of the first block.
    """

    stages: tuple[tuple[int, ...], ...]
    stem: str = "small"
    num_classes: int = 10
    resolution: int = 32
    in_chans: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    class_names: tuple[str, ...] = field(default=())
    stem_width: int = 0
    family: str = FAMILY

    def __post_init__(self) -> None:
        if not isinstance(self.stages, (list, tuple)) or not all(isinstance(s, (list, tuple)) for s in self.stages):
            raise DassEdgeError("model spec stages must be a list of per-stage width lists")
        if len(self.stages) != 4:
            raise DassEdgeError(f"a ResNet of this family has 4 stages, got {len(self.stages)}")
        if any(len(s) > LIMITS["depth"] for s in self.stages):  # before converting a hostile, huge list
            raise DassEdgeError(f"a stage has more than {LIMITS['depth']} blocks; the model spec is not plausible")
        object.__setattr__(self, "stages", tuple(tuple(whole(w, "a block width") for w in s) for s in self.stages))
        object.__setattr__(self, "mean", tuple(finite(v, "mean") for v in self.mean))
        object.__setattr__(self, "std", tuple(finite(v, "std") for v in self.std))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        for name in ("num_classes", "resolution", "in_chans", "stem_width"):
            object.__setattr__(self, name, whole(getattr(self, name), name))
        if self.stem_width == 0 and self.stages and self.stages[0]:
            object.__setattr__(self, "stem_width", self.stages[0][0])
        self.validate()

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def uniform(cls, widths: tuple[int, ...], depths: tuple[int, ...], **kwargs) -> ModelSpec:
        """A spec whose blocks all have their stage's width (the usual teacher shape)."""
        if len(widths) != len(depths):
            raise DassEdgeError(f"got {len(widths)} widths but {len(depths)} depths; give one of each per stage")
        return cls(stages=tuple((int(w),) * int(d) for w, d in zip(widths, depths)), **kwargs)

    # -- derived ------------------------------------------------------------------------------
    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)

    @property
    def widths(self) -> tuple[int, ...]:
        """Stage widths (width of each stage's last block)."""
        return tuple(s[-1] for s in self.stages)

    @property
    def feature_width(self) -> int:
        return self.stages[-1][-1]

    def validate(self) -> None:
        if self.family != FAMILY:
            raise DassEdgeError(f"unknown model family {self.family!r}; dass-edge builds {FAMILY!r} models")
        if len(self.stages) != 4:
            raise DassEdgeError(f"a ResNet of this family has 4 stages, got {len(self.stages)}")
        for s, blocks in enumerate(self.stages):
            if len(blocks) < 1:
                raise DassEdgeError(f"stage {s + 1} has no blocks; every stage needs depth >= 1")
            if any(not 1 <= w <= LIMITS["width"] for w in blocks):
                raise DassEdgeError(f"stage {s + 1} has a block width outside 1..{LIMITS['width']}: {list(blocks)}")
        if not 1 <= self.stem_width <= LIMITS["width"]:
            raise DassEdgeError(f"stem_width must be in 1..{LIMITS['width']}, got {self.stem_width}")
        if self.stem not in STEMS:
            raise DassEdgeError(f"unknown stem {self.stem!r}; choose one of {', '.join(STEMS)}")
        if not 2 <= self.num_classes <= LIMITS["num_classes"]:
            raise DassEdgeError(f"num_classes must be in 2..{LIMITS['num_classes']}, got {self.num_classes}")
        if not 8 <= self.resolution <= LIMITS["resolution"]:
            raise DassEdgeError(f"resolution must be in 8..{LIMITS['resolution']} pixels, got {self.resolution}")
        if not 1 <= self.in_chans <= LIMITS["in_chans"]:
            raise DassEdgeError(f"in_chans must be in 1..{LIMITS['in_chans']}, got {self.in_chans}")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise DassEdgeError("mean and std need one value per input channel")
        if any(v <= 0 for v in self.std):
            raise DassEdgeError(f"std must be > 0 for every channel (inputs are divided by it), got {list(self.std)}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise DassEdgeError(
                f"{len(self.class_names)} class names for {self.num_classes} classes; give one name per class"
            )

    # -- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = [list(s) for s in self.stages]
        d["mean"], d["std"], d["class_names"] = list(self.mean), list(self.std), list(self.class_names)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise DassEdgeError(f"model spec has unknown fields {sorted(unknown)}; was it written by dass-edge?")
        try:
            return cls(**{**d, "stages": tuple(tuple(s) for s in d["stages"])})
        except (KeyError, TypeError, ValueError) as e:
            raise DassEdgeError(f"model spec is malformed ({e}); re-create the checkpoint with dass-edge") from None

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise DassEdgeError(f"model spec is not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise DassEdgeError("model spec must be a JSON object")
        return cls.from_dict(d)

    def replace(self, **changes) -> ModelSpec:
        d = self.to_dict()
        d.update(changes)
        return ModelSpec.from_dict(d)


def conv_out(size: int, stride: int) -> int:
    # 3x3/pad 1, 1x1/pad 0, 7x7/pad 3 and 3x3 max-pool/pad 1 all give ceil(size / stride).
    return math.ceil(size / stride)


def block_layout(spec: ModelSpec) -> list[tuple[int, int, int, int, bool]]:
    """Every block as ``(in_ch, out_ch, stride, in_resolution, has_projection)``, in order.

    Shared by the model builder, the cost model and the latency tables so that all three agree.
    """
    res = spec.resolution if spec.stem == "small" else conv_out(conv_out(spec.resolution, 2), 2)
    in_ch = spec.stem_width
    out: list[tuple[int, int, int, int, bool]] = []
    for s, blocks in enumerate(spec.stages):
        for b, w in enumerate(blocks):
            stride = 2 if (s > 0 and b == 0) else 1
            out.append((in_ch, w, stride, res, stride != 1 or in_ch != w))
            res = conv_out(res, stride)
            in_ch = w
    return out
