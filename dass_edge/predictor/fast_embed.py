"""Fast functional embeddings of many remapped students, without building a module per student.

A search scores hundreds of students per second; ``embed(remap(teacher, arch), probe)`` builds a module
for each (~40 ms). Here every eval-mode BatchNorm is folded into its conv once (a per-output-channel
affine map, so slicing the folded conv equals folding the sliced BN), a student's weights are slices of
the folded teacher weights, and its forward is a few functional ops on NHWC maps.

Students of a search share prefixes (stem, first blocks): block outputs are cached (LRU, bounded in
bytes) under the arch prefix that determines them, and students of one call that share a prefix
compute it once. The rest runs position by position, many students per conv: students with equal
widths are stacked along the batch, and in "first"/"last" mode, where a narrower student's channels
are a prefix/suffix of a wider one's, students of different widths too (zero-padded, masked). Small
maps make single-student convs slow; batched ones run near the CPU's peak.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from dass_edge.errors import DassEdgeError
from dass_edge.models.remap import REMAP_MODES, channel_indices
from dass_edge.models.resnet import ResNet
from dass_edge.predictor.embeddings import EMBED_CHANNELS, EMBED_GRID, channel_projection
from dass_edge.space import Arch, SearchSpace
from dass_edge.spec import conv_out

__all__ = ["CacheInfo", "StudentEmbedder"]

_CL = torch.channels_last  # oneDNN convs on these small maps are several times faster in NHWC
_WEIGHT_CACHE_BYTES = 128 << 20
# Students batched into one conv, by the side of its input maps: small maps gain most from a larger
# GEMM; large ones already fill the cores, and copying them into a batch costs more.
_MAX_BATCH = ((4, 32), (8, 16), (16, 8), (32, 4))
_PAD_SLACK = 2.0  # zero-padded batches may do this much more work than their students need
_CHUNK_BYTES = 256 << 20  # activations one call holds alive at once (students are planned in chunks under it)

Key = Hashable


class CacheInfo(NamedTuple):
    """Activation cache counters, in block evaluations (the stem counts as a block).

    ``hits`` are evaluations a student needed but got from the cache or from another student of the
    same call; ``misses`` are the ones computed.
    """

    hits: int
    misses: int
    bytes: int
    max_bytes: int
    entries: int


class _LRU:
    """Values by key, bounded by the bytes they hold, least recently used evicted first.

    Tensors may be views into one shared storage (the students of one batched conv): a storage is
    counted once, as long as any entry holds it, so the bound is on memory actually held.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[Key, tuple[object, Hashable]] = OrderedDict()
        self._held: dict[Hashable, list[int]] = {}  # storage -> [bytes, entries holding it]

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: Key) -> object | None:
        v = self._d.get(key)
        if v is None:
            return None
        self._d.move_to_end(key)
        return v[0]

    def put(self, key: Key, value: object, nbytes: int, storage: Hashable | None = None) -> None:
        """Hold ``value`` (``nbytes``, in ``storage`` if shared with other entries)."""
        if key in self._d or nbytes > self.max_bytes:
            return
        storage = ("own", key) if storage is None else storage
        held = self._held.setdefault(storage, [nbytes, 0])
        if held[1] == 0:
            self.bytes += nbytes
        held[1] += 1
        self._d[key] = (value, storage)
        while self.bytes > self.max_bytes:
            _, (_, old) = self._d.popitem(last=False)
            held = self._held[old]
            held[1] -= 1
            if held[1] == 0:
                self.bytes -= held[0]
                del self._held[old]

    def put_tensor(self, key: Key, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        self.put(key, t, st.nbytes(), st.data_ptr())  # a live storage's address is unique

    def clear(self) -> None:
        self._d.clear()
        self._held.clear()
        self.bytes = 0


def _take(w: torch.Tensor, dim: int, idx: torch.Tensor) -> torch.Tensor:
    """``w.index_select(dim, idx)``, as a narrow view when ``idx`` is a contiguous range ("first", "last")."""
    start, n = int(idx[0]), idx.numel()
    if int(idx[-1]) - start + 1 == n and (n < 2 or bool((idx[1:] - idx[:-1] == 1).all())):
        return w.narrow(dim, start, n)
    return w.index_select(dim, idx.to(w.device))


def _fold(conv_w: torch.Tensor, bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN folded into the preceding bias-free conv (computed in float64, stored as the conv's dtype)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = conv_w.double() * scale[:, None, None, None]
    b = bn.bias.double() - bn.running_mean.double() * scale
    return w.to(conv_w.dtype), b.to(conv_w.dtype)


def _identity_projection(x: torch.Tensor, eye: tuple[int, int, int] | torch.Tensor, w_out: int) -> torch.Tensor:
    """remap's 0/1 shortcut applied to NHWC maps: a channel copy, or a matmul for scattered channels."""
    nhwc = x.permute(0, 2, 3, 1)
    if isinstance(eye, torch.Tensor):
        return (nhwc.reshape(-1, nhwc.shape[-1]) @ eye).view(*nhwc.shape[:3], w_out).permute(0, 3, 1, 2)
    i0, j0, m = eye
    if m == w_out:  # every output channel has its input channel: a view
        return x.narrow(1, i0, m)
    out = nhwc.new_empty((*nhwc.shape[:3], w_out))
    out[..., j0 : j0 + m] = nhwc[..., i0 : i0 + m]
    out[..., :j0].zero_()
    out[..., j0 + m :].zero_()
    return out.permute(0, 3, 1, 2)


@functools.cache
def _fused_ops_work() -> bool:
    """Whether oneDNN's fused conv(+add)+ReLU ops (private, used by inductor) exist here and agree with
    conv2d + add + relu; if not, the plain ops run."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 5, 5, generator=g).contiguous(memory_format=_CL)
    w, b = torch.randn(3, 4, 3, 3, generator=g), torch.randn(3, generator=g)
    o = torch.randn(2, 3, 5, 5, generator=g).contiguous(memory_format=_CL)
    try:
        with torch.inference_mode():
            ref = F.conv2d(x, w, b, 1, 1)
            ok1 = torch.allclose(_conv_relu_fused(x, w, b, 1, 1), torch.relu(ref), atol=1e-5)
            ok2 = torch.allclose(_conv_add_relu_fused(x, o, w, b), torch.relu(ref + o), atol=1e-5)
    except (RuntimeError, AttributeError, TypeError):
        return False
    return bool(ok1 and ok2)


def _conv_relu_plain(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    return torch.relu_(F.conv2d(x, w, b, stride, pad))


def _conv_add_relu_plain(x: torch.Tensor, other: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.relu_(F.conv2d(x, w, b, 1, 1).add_(other))


def _conv_relu_fused(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise(x, w, b, [pad, pad], [stride, stride], [1, 1], 1, "relu", [], "")


def _conv_add_relu_fused(x: torch.Tensor, other: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise.binary(x, other, w, b, [1, 1], [1, 1], [1, 1], 1, "add", None,
                                                          "relu", [], None)


@dataclass(frozen=True)
class _TBlock:
    """One teacher block, BN folded: what every student block at this position is sliced from."""

    stride: int
    t_in: int  # teacher channels of this block's input
    t_out: int
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    wd: torch.Tensor | None  # the teacher's own 1x1 shortcut, if it has one
    bd: torch.Tensor | None


@dataclass(frozen=True)
class _SBlock:
    """A student block's sliced, folded weights; its shortcut is the identity, a 1x1 conv (``wd``) or ``eye``."""

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    stride: int
    wd: torch.Tensor | None
    bd: torch.Tensor | None
    # remap's identity projection (a 0/1 1x1 conv): out channels j0..j0+m get in channels i0..i0+m, or,
    # when the kept channels are not ranges ("uniform"), the 0/1 matrix itself (in x out), applied as a matmul
    eye: tuple[int, int, int] | torch.Tensor | None
    w_out: int

    @property
    def nbytes(self) -> int:
        ts = (self.w1, self.b1, self.w2, self.b2, self.wd, self.bd)
        return sum(t.numel() * t.element_size() for t in ts if t is not None)


@dataclass
class _Node:
    key: Key
    parent: Key | None  # None for the stem
    pos: tuple[int, int]  # (stage, block); the stem is (-1, 0)
    w_in: int
    w_out: int
    users: int = 0  # planned children and final embeddings still to read this node's output


class StudentEmbedder:
    """``embed(remap(teacher, arch, mode), probe)`` for many students, fast.

    Args:
        teacher: the teacher; its weights and BN statistics are read once, here (later changes are not seen).
        probe: the fixed probe batch ``(B, in_chans, resolution, resolution)``.
        mode: the remap mode ("first", "last" or "uniform").
        cache_mb: bound on the cached block outputs and embeddings (LRU); 0 disables the cache. Sliced
            weights are cached apart (at most 128 MB).

    Raises:
        DassEdgeError: unknown mode, or a probe that does not fit the teacher.
    """

    def __init__(self, teacher: ResNet, probe: torch.Tensor, mode: str = "first", cache_mb: int = 512) -> None:
        if mode not in REMAP_MODES:
            raise DassEdgeError(f"unknown remap mode {mode!r}; choose one of {', '.join(REMAP_MODES)}")
        spec = teacher.spec
        want = (spec.in_chans, spec.resolution, spec.resolution)
        if not isinstance(probe, torch.Tensor) or probe.dim() != 4 or tuple(probe.shape[1:]) != want:
            got = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
            raise DassEdgeError(f"probe has shape {got} but the teacher takes (B, {want[0]}, {want[1]}, {want[2]}) "
                                "images; build it with probe_batch() from the teacher's task at its resolution")
        if probe.shape[0] < 1 or not probe.is_floating_point():
            raise DassEdgeError(f"probe must be a non-empty float batch, got {probe.shape[0]} images of {probe.dtype}")
        if cache_mb < 0:
            raise DassEdgeError(f"cache_mb must be >= 0, got {cache_mb}")
        self.spec, self.mode = spec, mode
        self.space = SearchSpace(spec, fixed_last_stage=False)  # what remap accepts
        dtype, device = teacher.conv1.weight.dtype, teacher.conv1.weight.device
        self.probe = probe.detach().to(device, dtype).clone().contiguous()
        self._probe = self.probe.contiguous(memory_format=_CL)
        self.batch = int(probe.shape[0])
        res = spec.resolution if spec.stem == "small" else conv_out(conv_out(spec.resolution, 2), 2)
        widest = spec.stem_width * res * res  # the largest map a student computes, per image
        for s, width in enumerate(spec.widths):
            res = res if s == 0 else conv_out(res, 2)
            widest = max(widest, width * res * res)
        # two levels of a chunk's maps are alive at once
        self._chunk = max(8, min(512, _CHUNK_BYTES // (2 * self.batch * widest * self.probe.element_size())))
        self._imagenet_stem = spec.stem != "small"
        with torch.no_grad():
            self._fold_teacher(teacher)
        # Students of different widths share a conv only where slices nest and every stride-1 shortcut is an
        # identity or remap's 0/1 projection (true of every teacher a SearchSpace accepts).
        self._nested = mode in ("first", "last") and not any(
            b.wd is not None and b.stride == 1 for stage in self._blocks for b in stage)
        fused = device.type == "cpu" and dtype == torch.float32 and _fused_ops_work()
        self._conv_relu: Callable[..., torch.Tensor] = _conv_relu_fused if fused else _conv_relu_plain
        self._conv_add_relu: Callable[..., torch.Tensor] = _conv_add_relu_fused if fused else _conv_add_relu_plain
        self._idx: dict[tuple[int, int], torch.Tensor] = {}
        self._weights = _LRU(_WEIGHT_CACHE_BYTES)
        self._cache = _LRU(cache_mb << 20)
        self._hits = self._misses = 0

    def _fold_teacher(self, teacher: ResNet) -> None:
        """Every teacher conv with its BN folded in, as eval mode (what ``embed`` runs) computes it."""
        self._stem_w, self._stem_b = _fold(teacher.conv1.weight, teacher.bn1)
        self._stem_pad = teacher.conv1.padding[0]
        self._stem_stride = teacher.conv1.stride[0]
        self._blocks: list[list[_TBlock]] = []
        t_in = teacher.spec.stem_width
        for s in range(len(teacher.spec.stages)):
            stage = []
            for blk in getattr(teacher, f"layer{s + 1}"):
                w1, b1 = _fold(blk.conv1.weight, blk.bn1)
                w2, b2 = _fold(blk.conv2.weight, blk.bn2)
                wd = bd = None
                if blk.downsample is not None:
                    wd, bd = _fold(blk.downsample[0].weight, blk.downsample[1])
                stage.append(_TBlock(blk.conv1.stride[0], t_in, blk.conv1.out_channels, w1, b1, w2, b2, wd, bd))
                t_in = blk.conv1.out_channels
            self._blocks.append(stage)

    # -- public -----------------------------------------------------------------------------------
    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, self._cache.bytes, self._cache.max_bytes, len(self._cache))

    def cache_clear(self) -> None:
        """Drop cached activations and reset the counters (the folded weights stay)."""
        self._cache.clear()
        self._hits = self._misses = 0

    def embed(self, archs: Sequence[Arch]) -> torch.Tensor:
        """Embeddings ``(N, B, channels, grid, grid)`` of the students ``archs``, in order.

        Raises:
            DassEdgeError: an arch does not fit inside the teacher.
        """
        for a in archs:
            if not isinstance(a, Arch):
                raise DassEdgeError(f"expected Arch objects, got {type(a).__name__}")
            self.space.validate(a)
        out: dict[Arch, torch.Tensor] = {}
        with torch.inference_mode():
            todo = []
            for a in dict.fromkeys(archs):
                hit = self._cache.get(("emb", a.widths))
                if hit is not None:
                    out[a] = hit
                    self._hits += 1 + sum(a.depths)
                else:
                    todo.append(a)
            todo.sort(key=lambda a: a.widths)  # neighbours share prefixes: chunks keep them together
            for i in range(0, len(todo), self._chunk):
                out.update(self._embed_chunk(todo[i : i + self._chunk]))
        if not archs:
            return self.probe.new_empty((0, self.batch, EMBED_CHANNELS, EMBED_GRID, EMBED_GRID))
        with torch.no_grad():  # outside inference mode: callers get ordinary tensors (usable with autograd)
            return torch.stack([out[a] for a in archs])

    # -- planning ---------------------------------------------------------------------------------
    def _node_keys(self, arch: Arch) -> list[tuple[Key, tuple[int, int], int, int]]:
        """(key, position, input width, output width) of the stem and every block, in forward order.

        A block's output depends on the stem width and on every block up to it (position and widths),
        not on later blocks: the key is the arch's widths up to and including the block, stage by stage.
        """
        ws = arch.widths
        out: list[tuple[Key, tuple[int, int], int, int]] = [(("stem", ws[0][0]), (-1, 0), 0, ws[0][0])]
        w_in = ws[0][0]
        for s, stage in enumerate(ws):
            for b, w in enumerate(stage):
                out.append((ws[:s] + (stage[: b + 1],), (s, b), w_in, w))
                w_in = w
        return out

    def _embed_chunk(self, archs: list[Arch]) -> dict[Arch, torch.Tensor]:
        values: dict[Key, torch.Tensor] = {}
        plan: dict[Key, _Node] = {}
        finals: dict[Arch, Key] = {}
        for a in archs:
            nodes = self._node_keys(a)
            i = len(nodes) - 1
            while i >= 0:
                key = nodes[i][0]
                if key in plan:
                    break
                hit = self._cache.get(key)
                if hit is not None:
                    values[key] = hit
                    plan[key] = _Node(key, None, nodes[i][1], nodes[i][2], nodes[i][3])  # a source: nothing to run
                    break
                i -= 1
            self._hits += i + 1
            for j in range(i + 1, len(nodes)):
                key, pos, w_in, w_out = nodes[j]
                plan[key] = _Node(key, nodes[j - 1][0] if j else None, pos, w_in, w_out)
                if j:
                    plan[nodes[j - 1][0]].users += 1
                self._misses += 1
            finals[a] = nodes[-1][0]
            plan[nodes[-1][0]].users += 1

        # Run the planned nodes position by position, packed into batched convs.
        levels: dict[tuple[int, int], list[_Node]] = {}
        for node in plan.values():
            if node.key not in values:
                levels.setdefault(node.pos, []).append(node)
        last = (len(self._blocks) - 1, len(self._blocks[-1]) - 1)
        for pos in sorted(levels):
            if pos[0] < 0:
                for node in levels[pos]:
                    values[node.key] = self._stem(node.w_out)
                    self._cache.put_tensor(node.key, values[node.key])
                continue
            side = int(values[levels[pos][0].parent].shape[-1])
            cap = next((c for limit, c in _MAX_BATCH if side <= limit), 1)
            for part in self._pack(pos, levels[pos], cap):
                ys = self._run(pos, part, [values[n.parent] for n in part])
                for n, yi in zip(part, ys):
                    values[n.key] = yi
                    if self._cache.max_bytes and pos != last:  # the teacher's last block extends no prefix
                        self._cache.put_tensor(n.key, yi)
                    parent = plan[n.parent]
                    parent.users -= 1
                    if parent.users == 0:
                        del values[n.parent]

        # Project the stage-4 maps, one batched projection per last-stage width.
        by_width: dict[int, list[Arch]] = {}
        for a in archs:
            by_width.setdefault(a.widths[-1][-1], []).append(a)
        out: dict[Arch, torch.Tensor] = {}
        for width, group in by_width.items():
            feats = torch.cat([values[finals[a]] for a in group])
            if tuple(feats.shape[-2:]) != (EMBED_GRID, EMBED_GRID):
                feats = F.adaptive_avg_pool2d(feats, EMBED_GRID)
            proj = channel_projection(width, EMBED_CHANNELS).to(feats.device, feats.dtype)
            emb = torch.einsum("kc,bchw->bkhw", proj, feats).contiguous()
            for a, e in zip(group, emb.split(self.batch)):
                out[a] = e
                if self._cache.max_bytes:
                    self._cache.put_tensor(("emb", a.widths), e)
        return out

    # -- compute ----------------------------------------------------------------------------------
    def _indices(self, total: int, keep: int) -> torch.Tensor:
        idx = self._idx.get((total, keep))
        if idx is None:
            idx = self._idx[(total, keep)] = channel_indices(self.mode, total, keep)
        return idx

    def _stem(self, width: int) -> torch.Tensor:
        idx = self._indices(self.spec.stem_width, width)
        w = _take(self._stem_w, 0, idx).contiguous(memory_format=_CL)
        b = _take(self._stem_b, 0, idx).contiguous()
        x = self._conv_relu(self._probe, w, b, self._stem_stride, self._stem_pad)
        if self._imagenet_stem:
            x = F.max_pool2d(x, 3, 2, 1)
        return x

    def _student_block(self, pos: tuple[int, int], w_in: int, w_out: int) -> _SBlock:
        """The sliced, folded weights of student block ``pos`` (remap's slicing rules, cached)."""
        key = (pos, w_in, w_out)
        hit = self._weights.get(key)
        if hit is not None:
            return hit
        t = self._blocks[pos[0]][pos[1]]
        out_idx, in_idx = self._indices(t.t_out, w_out), self._indices(t.t_in, w_in)
        # weights stored NHWC like the activations: oneDNN would otherwise reorder them on every call
        w1 = _take(_take(t.w1, 0, out_idx), 1, in_idx).contiguous(memory_format=_CL)
        w2 = _take(_take(t.w2, 0, out_idx), 1, out_idx).contiguous(memory_format=_CL)
        b1, b2 = _take(t.b1, 0, out_idx).contiguous(), _take(t.b2, 0, out_idx).contiguous()
        wd = bd = eye = None
        if t.stride != 1 or w_in != w_out:  # the student block has a 1x1 shortcut
            if t.wd is not None:
                wd = _take(_take(t.wd, 0, out_idx), 1, in_idx).contiguous(memory_format=_CL)
                bd = _take(t.bd, 0, out_idx).contiguous()
            else:  # remap's identity projection in the teacher's channel space
                j, i = (out_idx[:, None] == in_idx[None, :]).nonzero(as_tuple=True)
                m = j.numel()
                if m and int(j[-1] - j[0]) == m - 1 and int(i[-1] - i[0]) == m - 1:
                    eye = (int(i[0]), int(j[0]), m)
                else:
                    eye = (in_idx[:, None] == out_idx[None, :]).to(t.w1.device, t.w1.dtype)
        blk = _SBlock(w1, b1, w2, b2, t.stride, wd, bd, eye, w_out)
        self._weights.put(key, blk, blk.nbytes)
        return blk

    def _pack(self, pos: tuple[int, int], nodes: list[_Node], cap: int) -> list[list[_Node]]:
        """Nodes of one position in batches of at most ``cap`` that one conv can run.

        Equal widths always batch. In "first"/"last" mode a student's channels are a prefix/suffix of a
        wider student's, so students of different widths batch too: inputs are zero-padded to the widest,
        the widest student's weights run, and the extra channels are masked and dropped. That is exact
        (padded channels add zeros) and pays when the padded work stays within ``_PAD_SLACK`` of the real.
        """
        stride2 = self._blocks[pos[0]][pos[1]].stride != 1

        def cost(w_in: int, w_out: int) -> int:
            # oneDNN's AVX-512 convs run output channels in blocks of 16: a conv costs about as much as
            # one with its output width rounded up to 16, so padding within a block is free
            r = -(-w_out // 16) * 16
            return 9 * w_in * r + 9 * w_out * r + (w_in * r if stride2 else 0)

        if not self._nested:
            groups: dict[tuple[int, int], list[_Node]] = {}
            for n in nodes:
                groups.setdefault((n.w_in, n.w_out), []).append(n)
            return [g[k : k + cap] for g in groups.values() for k in range(0, len(g), cap)]
        out: list[list[_Node]] = []
        part: list[_Node] = []
        real = w_in = w_out = 0
        for n in sorted(nodes, key=lambda n: (n.w_out, n.w_in), reverse=True):
            c = cost(n.w_in, n.w_out)
            wi = max(w_in, n.w_in)
            if part and len(part) < cap and (len(part) + 1) * cost(wi, w_out) <= _PAD_SLACK * (real + c):
                part.append(n)
                real, w_in = real + c, wi
            else:
                part = [n]
                out.append(part)
                real, w_in, w_out = c, n.w_in, n.w_out
        return out

    def _run(self, pos: tuple[int, int], nodes: list[_Node], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Block ``pos`` of several students at once (see :meth:`_pack`): one output per node."""
        w_in, w_out = max(n.w_in for n in nodes), max(n.w_out for n in nodes)
        blk = self._student_block(pos, w_in, w_out)
        if all(n.w_in == w_in for n in nodes):
            x = xs[0] if len(xs) == 1 else torch.cat(xs)
        else:  # zero-pad each input to w_in channels, aligned as its channels sit among the teacher's
            first = self.mode == "first"
            x_nhwc = xs[0].new_empty((len(xs) * self.batch, *xs[0].shape[2:], w_in))
            for i, (n, xi) in enumerate(zip(nodes, xs)):
                dst = x_nhwc[i * self.batch : (i + 1) * self.batch]
                lo = 0 if first else w_in - n.w_in
                dst[..., lo : lo + n.w_in] = xi.permute(0, 2, 3, 1)
                if n.w_in < w_in:
                    pad = dst[..., n.w_in :] if first else dst[..., :lo]
                    pad.zero_()
            x = x_nhwc.permute(0, 3, 1, 2)
        mask = None
        if any(n.w_out != w_out for n in nodes):
            keep = torch.arange(w_out, device=x.device)
            lo = torch.tensor([0 if self.mode == "first" else w_out - n.w_out for n in nodes], device=x.device)
            hi = lo + torch.tensor([n.w_out for n in nodes], device=x.device)
            mask = ((keep >= lo[:, None]) & (keep < hi[:, None])).to(x.dtype)[:, None, None, None, :]
        y = self._block(x, blk, mask)
        if len(nodes) == 1 and mask is None:
            return [y]
        # views into y: the cache counts y's storage once, however many students it holds
        return [yi if n.w_out == w_out else yi.narrow(1, 0 if self.mode == "first" else w_out - n.w_out, n.w_out)
                for n, yi in zip(nodes, y.split(self.batch))]

    def _block(self, x: torch.Tensor, blk: _SBlock, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One BasicBlock, BN folded; ``mask`` (students, 1, 1, 1, C) zeroes each student's channels it lacks
        before they reach conv2."""
        h = self._conv_relu(x, blk.w1, blk.b1, blk.stride, 1)
        if mask is not None:
            h = h.contiguous(memory_format=_CL)  # a no-op: conv outputs follow their NHWC inputs
            h.permute(0, 2, 3, 1).view(mask.shape[0], -1, *h.shape[2:], h.shape[1]).mul_(mask)
        if blk.wd is not None:
            idn = F.conv2d(x, blk.wd, blk.bd, blk.stride).contiguous(memory_format=_CL)
        elif blk.eye is not None:
            idn = _identity_projection(x if blk.stride == 1 else x[:, :, :: blk.stride, :: blk.stride], blk.eye,
                                       blk.w_out)
        else:
            idn = x
        return self._conv_add_relu(h, idn, blk.w2, blk.b2)
