"""The task's probe profile: how well each stage of the teacher already separates the classes.

Inside a band of equal FLOPs, which student distills best depends on the task. On glyph tasks the
students with more parameters in late stages win; on texture and colour-emoji tasks the ones with wider
early stages do (the sign of the within-band params slope flips across the meta-database). What tells
these tasks apart is where in the teacher the task gets solved: a linear probe on the teacher's stage-2
features already reaches 94% of its stage-4 accuracy on textures, and about half on the glyph tasks.
Across the 11 meta-training tasks that ratio has a Spearman of -0.85 with the within-band params slope.

The profile costs one forward pass of ~1,600 images through the teacher and four closed-form ridge
classifiers, so search computes it for the user's own teacher and data like meta-training does.
"""

from __future__ import annotations

import numpy as np
import torch

from dass_edge.data.task import Split, TaskData, normalize
from dass_edge.models.resnet import ResNet

__all__ = ["PROBE_TRAIN", "PROBE_VAL", "colour_histograms", "colour_probe_accuracy", "probe_ratios", "stage_features",
           "stage_probe_accuracies"]

PROBE_TRAIN = 1000  # images the per-stage classifiers are fitted on (from the training split)
PROBE_VAL = 600  # images they are scored on (from the validation split)
_RIDGE = 10.0  # L2 penalty of the probe classifiers (features standardized)
_BATCH = 256
_COLOUR_BINS = 4  # levels per RGB channel of the colour histogram (4**3 = 64 bins)


def _pick(split: Split, n: int, g: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    idx = torch.randperm(len(split.labels), generator=g)[:n]
    return split.images[idx], split.labels[idx].numpy()


@torch.no_grad()
def stage_features(teacher: ResNet, images: torch.Tensor) -> list[np.ndarray]:
    """Globally pooled activations after each of the 4 stages, ``[(N, C_s)] * 4`` (uint8 images in)."""
    was_training = teacher.training
    teacher.eval()
    out: list[list[torch.Tensor]] = [[] for _ in range(4)]
    for i in range(0, len(images), _BATCH):
        x = normalize(images[i:i + _BATCH], teacher.spec.mean, teacher.spec.std)
        h = teacher.maxpool(teacher.relu(teacher.bn1(teacher.conv1(x))))
        for s in range(4):
            h = getattr(teacher, f"layer{s + 1}")(h)
            out[s].append(h.mean((2, 3)))
    teacher.train(was_training)
    return [torch.cat(o).double().numpy() for o in out]


def _probe_accuracy(f_fit: np.ndarray, y_fit: np.ndarray, f_test: np.ndarray, y_test: np.ndarray,
                    classes: int) -> float:
    """Accuracy of a ridge (least-squares one-vs-rest) classifier on standardized features."""
    mu, sd = f_fit.mean(0), f_fit.std(0) + 1e-6
    a, b = (f_fit - mu) / sd, (f_test - mu) / sd
    w = np.linalg.solve(a.T @ a + _RIDGE * np.eye(a.shape[1]), a.T @ np.eye(classes)[y_fit])
    return float(((b @ w).argmax(1) == y_test).mean())


def stage_probe_accuracies(teacher: ResNet, data: TaskData, seed: int = 0, train_images: int = PROBE_TRAIN,
                           val_images: int = PROBE_VAL) -> tuple[float, float, float, float]:
    """Validation accuracy (fraction) of a linear probe on each stage's pooled teacher features.

    Deterministic in ``seed``: the same images are drawn from ``data.train`` and ``data.val`` every time.
    The predictor was meta-trained with the defaults; other sizes are for tests. With an empty split the
    accuracies are NaN, which the predictor reads as "the average meta-training task".
    """
    g = torch.Generator().manual_seed(seed)
    x_fit, y_fit = _pick(data.train, train_images, g)
    x_val, y_val = _pick(data.val, val_images, g)
    if len(y_fit) == 0 or len(y_val) == 0:
        return (float("nan"),) * 4  # type: ignore[return-value]
    f_fit, f_val = stage_features(teacher, x_fit), stage_features(teacher, x_val)
    k = data.num_classes
    accs = tuple(_probe_accuracy(a, y_fit, b, y_val, k) for a, b in zip(f_fit, f_val))
    return accs  # type: ignore[return-value]


def probe_ratios(accuracies: tuple[float, ...] | list[float]) -> np.ndarray:
    """``(3,)``: stage-1, -2 and -3 probe accuracy over stage 4's (how early the task is solved).

    Chance-level stage-4 probes (a broken teacher) give ratios of 1, the "solved early" end, rather than
    dividing by ~0. Unknown accuracies (NaN) stay NaN.
    """
    a = np.asarray(accuracies, dtype=float)
    last = max(a[3], 1e-3)
    return np.clip(a[:3] / last, 0.0, 1.5)


def colour_histograms(images: torch.Tensor, bins: int = _COLOUR_BINS) -> np.ndarray:
    """``(N, bins**3)``: each uint8 ``(N, 3, R, R)`` image's joint RGB histogram, as fractions of its pixels.
    Layout-free: repeating pixels (the frozen tasks above 16 px) leaves it unchanged."""
    x = images.numpy().astype(np.int64) * bins // 256
    code = (x[:, 0] * bins + x[:, 1]) * bins + x[:, 2]
    # one bincount over all images: image i's codes are shifted into its own block of bins**3
    code = code.reshape(len(code), int(np.prod(code.shape[1:]))) + np.arange(len(code))[:, None] * bins**3
    h = np.bincount(code.ravel(), minlength=len(code) * bins**3).reshape(len(code), bins**3).astype(float)
    return h / np.maximum(h.sum(1, keepdims=True), 1.0)


def colour_probe_accuracy(data: TaskData, seed: int = 0, train_images: int = PROBE_TRAIN,
                          val_images: int = PROBE_VAL) -> float:
    """Validation accuracy (fraction) of a linear probe on the images' colour histograms alone.

    Tells tasks whose classes have colours of their own (colour emoji, photographs) from tasks whose colours
    are drawn at random (the glyphs): inside equal-FLOPs bands the former favour wide early stages and the
    latter deep late ones, and the teacher's pooled stage probes do not tell them apart (BENCHMARKS.md, session
    24). No teacher involved; the same images as :func:`stage_probe_accuracies` with the same ``seed``. NaN with
    an empty split.
    """
    g = torch.Generator().manual_seed(seed)
    x_fit, y_fit = _pick(data.train, train_images, g)
    x_val, y_val = _pick(data.val, val_images, g)
    if len(y_fit) == 0 or len(y_val) == 0:
        return float("nan")
    return _probe_accuracy(colour_histograms(x_fit), y_fit, colour_histograms(x_val), y_val, data.num_classes)
