"""LUT entries: the stem, block and head configurations a model or a whole search space is made of.

Keys come from :func:`dass_edge.spec.block_layout`, the same function the model builder and the cost
model use, so a table measured for a space always has the keys a model of that space asks for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dass_edge.errors import DassEdgeError
from dass_edge.spec import ModelSpec, block_layout, conv_out

__all__ = ["KINDS", "Entry", "entry_lookup_key", "entry_params", "space_entries", "spec_entries", "spec_keys"]

KINDS = ("stem", "block", "head")


@dataclass(frozen=True)
class Entry:
    """One measurable piece of a model.

    Args:
        kind: ``stem`` (3 -> stem width; ``stem`` says small/imagenet), ``block`` (a BasicBlock) or ``head``
            (global average pool + classifier; ``out_ch`` is the number of classes).
        in_ch, out_ch, stride: channels in/out and the stride (blocks; 1 for head).
        resolution: input side in pixels.
        batch: batch size.
        stem: stem kind for stem entries, else ``""``.
    """

    kind: str
    in_ch: int
    out_ch: int
    stride: int
    resolution: int
    batch: int = 1
    stem: str = ""

    @property
    def key(self) -> str:
        """Stable string key used in the JSON table, e.g. ``block/16x24/s2/r32/b1``."""
        prefix = f"stem-{self.stem}" if self.kind == "stem" else self.kind
        return f"{prefix}/{self.in_ch}x{self.out_ch}/s{self.stride}/r{self.resolution}/b{self.batch}"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_ch, self.resolution, self.resolution)

    @property
    def has_projection(self) -> bool:
        return self.kind == "block" and (self.stride != 1 or self.in_ch != self.out_ch)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Entry:
        try:
            e = cls(**{k: d[k] for k in ("kind", "in_ch", "out_ch", "stride", "resolution", "batch")},
                    stem=d.get("stem", ""))
        except (KeyError, TypeError) as err:
            raise DassEdgeError(f"latency table entry is malformed ({err})") from None
        if e.kind not in KINDS:
            raise DassEdgeError(f"latency table entry has unknown kind {e.kind!r}")
        return e


def _stem_stride(stem: str) -> int:
    return 1 if stem == "small" else 4


def spec_entries(spec: ModelSpec, batch: int = 1) -> list[Entry]:
    """The entries of one model, in execution order: stem, every block, head."""
    layout = block_layout(spec)
    out = [Entry("stem", spec.in_chans, spec.stem_width, _stem_stride(spec.stem), spec.resolution, batch, spec.stem)]
    out += [Entry("block", cin, cout, stride, res, batch) for cin, cout, stride, res, _proj in layout]
    _, _, stride, res, _ = layout[-1]
    out.append(Entry("head", spec.feature_width, spec.num_classes, 1, conv_out(res, stride), batch))
    return out


def spec_keys(spec: ModelSpec, batch: int = 1) -> list[tuple]:
    """Hashable lookup keys of :func:`spec_entries`, built without dataclasses (the search calls this a lot)."""
    layout = block_layout(spec)
    keys: list[tuple] = [("stem", spec.stem, spec.in_chans, spec.stem_width, spec.resolution, batch)]
    keys += [("block", cin, cout, stride, res, batch) for cin, cout, stride, res, _ in layout]
    _, _, stride, res, _ = layout[-1]
    keys.append(("head", spec.feature_width, spec.num_classes, conv_out(res, stride), batch))
    return keys


def entry_lookup_key(e: Entry) -> tuple:
    """The :func:`spec_keys` tuple of an entry."""
    if e.kind == "stem":
        return ("stem", e.stem, e.in_ch, e.out_ch, e.resolution, e.batch)
    if e.kind == "block":
        return ("block", e.in_ch, e.out_ch, e.stride, e.resolution, e.batch)
    return ("head", e.in_ch, e.out_ch, e.resolution, e.batch)


def space_entries(space, batch: int = 1) -> list[Entry]:
    """Every entry any student of ``space`` (a :class:`~dass_edge.space.SearchSpace`) can contain.

    Per stage, block 0 takes any width of the previous stage's options (stage 1: the stem, as wide as
    the block) and later blocks any width of their own stage, so this is exact, not a sample.
    """
    teacher: ModelSpec = space.teacher
    opts, depths = space.width_options, space.max_depths
    layout = block_layout(teacher)
    starts = [sum(depths[:s]) for s in range(len(depths))]
    out = [Entry("stem", teacher.in_chans, w, _stem_stride(teacher.stem), teacher.resolution, batch, teacher.stem)
           for w in opts[0]]
    for s, d in enumerate(depths):
        _, _, stride, res0, _ = layout[starts[s]]
        res1 = conv_out(res0, stride)
        for b in range(d):
            ins = (opts[s - 1] if s > 0 else opts[0]) if b == 0 else opts[s]
            for cin in ins:
                for cout in opts[s]:
                    if s == 0 and b == 0 and cin != cout:
                        continue  # the stem is as wide as the first block
                    out.append(Entry("block", cin, cout, stride if b == 0 else 1, res0 if b == 0 else res1, batch))
    _, _, stride, res, _ = layout[-1]
    out += [Entry("head", w, teacher.num_classes, 1, conv_out(res, stride), batch) for w in opts[-1]]
    return list(dict.fromkeys(out))


def entry_params(e: Entry) -> int:
    """Parameters of one entry, counted as :func:`dass_edge.space.spec_params` counts them."""
    if e.kind == "stem":
        k = 3 if e.stem == "small" else 7
        return e.in_ch * e.out_ch * k * k + 2 * e.out_ch
    if e.kind == "head":
        return e.in_ch * e.out_ch + e.out_ch
    n = 9 * e.in_ch * e.out_ch + 2 * e.out_ch + 9 * e.out_ch * e.out_ch + 2 * e.out_ch
    return n + (e.in_ch * e.out_ch + 2 * e.out_ch if e.has_projection else 0)
