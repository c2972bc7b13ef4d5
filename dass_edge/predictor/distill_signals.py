"""Cheap distillation signals of a remapped student against its teacher, on a probe batch.

Before any training, a student remapped from the teacher already behaves partly like it; how much of
the teacher's function survives the remap is what distillation starts from. Three signals per
student, all from one forward pass of teacher and student on the same images (eval mode):

* ``kl`` — mean KL(teacher || student) of the softmax outputs (lower = closer);
* ``agreement`` — fraction of images where the student's top-1 class is the teacher's;
* ``cka`` — linear CKA (Kornblith et al., 2019) of the pre-pooling stage-4 features, flattened per image;
  it compares representations of different widths without projecting either into the other's basis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dass_edge.models.resnet import ResNet

__all__ = ["SIGNALS", "distill_signals", "linear_cka"]

#: Names of the signals, in the order :func:`distill_signals` returns them.
SIGNALS = ("kl", "agreement", "cka")


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA of two ``(B, ·)`` representations of the same ``B`` inputs (1 for identical, in [0, 1])."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(0, keepdim=True)
    b = b - b.mean(0, keepdim=True)
    cross = torch.linalg.norm(b.T @ a) ** 2
    denom = torch.linalg.norm(a.T @ a) * torch.linalg.norm(b.T @ b)
    return float(cross / denom) if float(denom) > 0 else 0.0


@torch.no_grad()
def distill_signals(teacher: ResNet, student: ResNet, x: torch.Tensor,
                    teacher_out: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[float, float, float]:
    """``(kl, agreement, cka)`` of ``student`` against ``teacher`` on batch ``x`` (both put in eval mode).

    ``teacher_out``: the teacher's ``(features, logits)`` on ``x``, to reuse across many students.
    """
    teacher.eval()
    student.eval()
    if teacher_out is None:
        ft = teacher.forward_features(x)
        teacher_out = (ft, teacher.forward_head(ft))
    ft, lt = teacher_out
    fs = student.forward_features(x)
    ls = student.forward_head(fs)
    kl = F.kl_div(F.log_softmax(ls.double(), 1), F.log_softmax(lt.double(), 1), log_target=True,
                  reduction="batchmean")
    agreement = (ls.argmax(1) == lt.argmax(1)).double().mean()
    return float(kl), float(agreement), linear_cka(ft, fs)
