"""Teacher → student parameter remapping (no training).

Student block ``b`` of stage ``s`` takes teacher block ``b`` of stage ``s``; every tensor is the
teacher's tensor restricted to a subset of its channels. The subset depends only on the teacher's
channel count and the student's width, so producer and consumer of a feature map always agree:

* ``first`` — the first ``w`` channels (DaSS "copy-paste-first", ``[:out, :in]``),
* ``last`` — the last ``w`` channels,
* ``uniform`` — ``w`` channels evenly spread over the teacher's.

A student block whose width changes inside a stage needs a 1x1 shortcut the teacher does not have;
it is initialized as the identity in the teacher's channel space (a 0/1 matrix, BN set to pass
values through exactly), so the student computes what the teacher's residual path would.
Remapping the teacher's own architecture returns the teacher, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dass_edge.errors import DassEdgeError
from dass_edge.models.resnet import ResNet, build_model
from dass_edge.space import Arch, SearchSpace

__all__ = ["REMAP_MODES", "channel_indices", "remap"]


def _first(total: int, keep: int) -> torch.Tensor:
    return torch.arange(keep)


def _last(total: int, keep: int) -> torch.Tensor:
    return torch.arange(total - keep, total)


def _uniform(total: int, keep: int) -> torch.Tensor:
    return torch.linspace(0, total - 1, keep).round().long()


REMAP_MODES: dict[str, Callable[[int, int], torch.Tensor]] = {"first": _first, "last": _last, "uniform": _uniform}


def channel_indices(mode: str, total: int, keep: int) -> torch.Tensor:
    """Which of the teacher's ``total`` channels a width-``keep`` student layer keeps."""
    if mode not in REMAP_MODES:
        raise DassEdgeError(f"unknown remap mode {mode!r}; choose one of {', '.join(REMAP_MODES)}")
    if not 1 <= keep <= total:
        raise DassEdgeError(f"cannot keep {keep} of {total} teacher channels")
    return REMAP_MODES[mode](total, keep)


def _identity_projection(out_idx: torch.Tensor, in_idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """1x1 conv weight mapping each kept input channel to the same teacher channel among the outputs."""
    w = (out_idx[:, None] == in_idx[None, :]).to(dtype)
    return w[:, :, None, None]


@torch.no_grad()
def remap(teacher: ResNet, arch: Arch, mode: str = "first") -> ResNet:
    """Build the student ``arch`` with weights taken from ``teacher``.

    Raises:
        DassEdgeError: the arch does not fit inside the teacher, or the mode is unknown.
    """
    tspec = teacher.spec
    space = SearchSpace(tspec, fixed_last_stage=False)
    space.validate(arch)
    with torch.device("meta"):  # no allocation or init: every tensor is set below (load with assign=True)
        student = build_model(space.to_spec(arch), init_weights=False)
    t = teacher.state_dict()
    new: dict[str, torch.Tensor] = {}

    def idx(total: int, keep: int) -> torch.Tensor:
        return channel_indices(mode, total, keep)

    def take_bn(dst: str, src: str, out_idx: torch.Tensor) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            new[f"{dst}.{name}"] = t[f"{src}.{name}"][out_idx].clone()
        new[f"{dst}.num_batches_tracked"] = t[f"{src}.num_batches_tracked"].clone()

    stem_idx = idx(tspec.stem_width, arch.widths[0][0])
    new["conv1.weight"] = t["conv1.weight"][stem_idx].clone()
    take_bn("bn1", "bn1", stem_idx)

    prev_idx = stem_idx
    for s, widths in enumerate(arch.widths):
        t_width = tspec.widths[s]
        for b, w in enumerate(widths):
            src, dst = f"layer{s + 1}.{b}", f"layer{s + 1}.{b}"
            out_idx = idx(t_width, w)
            new[f"{dst}.conv1.weight"] = t[f"{src}.conv1.weight"][out_idx][:, prev_idx].clone()
            take_bn(f"{dst}.bn1", f"{src}.bn1", out_idx)
            new[f"{dst}.conv2.weight"] = t[f"{src}.conv2.weight"][out_idx][:, out_idx].clone()
            take_bn(f"{dst}.bn2", f"{src}.bn2", out_idx)
            if student.get_submodule(dst).downsample is not None:
                if f"{src}.downsample.0.weight" in t:
                    new[f"{dst}.downsample.0.weight"] = t[f"{src}.downsample.0.weight"][out_idx][:, prev_idx].clone()
                    take_bn(f"{dst}.downsample.1", f"{src}.downsample.1", out_idx)
                else:
                    ref = t[f"{src}.conv1.weight"]
                    new[f"{dst}.downsample.0.weight"] = _identity_projection(out_idx, prev_idx, ref.dtype)
                    bn = student.get_submodule(f"{dst}.downsample.1")
                    new[f"{dst}.downsample.1.weight"] = torch.ones(w, dtype=ref.dtype)
                    new[f"{dst}.downsample.1.bias"] = torch.zeros(w, dtype=ref.dtype)
                    new[f"{dst}.downsample.1.running_mean"] = torch.zeros(w, dtype=ref.dtype)
                    # var + eps == 1 makes BN an exact identity in eval mode.
                    new[f"{dst}.downsample.1.running_var"] = torch.full((w,), 1.0 - bn.eps, dtype=ref.dtype)
                    new[f"{dst}.downsample.1.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
            prev_idx = out_idx

    new["fc.weight"] = t["fc.weight"][:, prev_idx].clone()
    new["fc.bias"] = t["fc.bias"].clone()
    student.load_state_dict(new, strict=True, assign=True)
    student.train(teacher.training)
    return student
