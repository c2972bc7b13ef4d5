"""Supervised training loop shared by teacher training and distillation.

The loop owns what every run needs: SGD (Nesterov) with cosine decay and linear warm-up, seeded
shuffling and augmentation, evaluation on the validation split after each epoch, the best-on-val
weights, and a resume file written atomically after every epoch — kill the process and the next
call continues from the last finished epoch with the same random stream. What differs between
runs (plain cross-entropy, KD against cached teacher logits) is the ``loss_fn`` passed in.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dass_edge.data.task import Split, TaskData, iterate_batches
from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write
from dass_edge.validate import finite, whole

__all__ = ["Recipe", "TrainResult", "LossFn", "StepHook", "EpochMetrics", "evaluate", "train", "cross_entropy_loss",
           "model_device", "resolve_train_device"]

#: ``loss_fn(model, x, y, index, epoch) -> loss``; ``index`` are sample positions in the train split.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
#: ``progress(event, info)`` with events ``start`` (total steps), ``step``, ``epoch``.
ProgressFn = Callable[[str, dict], None]
#: Called after every optimizer step with the model (e.g. to keep a weight average).
StepHook = Callable[[nn.Module], None]
#: Called after every epoch with the model in eval mode; what it returns joins that epoch's history entry.
EpochMetrics = Callable[[nn.Module], dict]


@dataclass(frozen=True)
class Recipe:
    """Optimization settings; the whole recipe is recorded with every result."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    augment: bool = True
    seed: int = 0

    def validate(self) -> Recipe:
        """Refuse settings that cannot train (NaN or infinite numbers included); returns ``self``."""
        if whole(self.epochs, "epochs") < 1:
            raise DassEdgeError(f"epochs must be >= 1, got {self.epochs}")
        if whole(self.batch_size, "batch size") < 1:
            raise DassEdgeError(f"batch size must be >= 1, got {self.batch_size}")
        whole(self.seed, "seed")
        if finite(self.lr, "learning rate") <= 0:
            raise DassEdgeError(f"learning rate must be > 0, got {self.lr}")
        if not 0 <= finite(self.momentum, "momentum") < 1:
            raise DassEdgeError(f"momentum must be in [0, 1), got {self.momentum}")
        if finite(self.weight_decay, "weight decay") < 0:
            raise DassEdgeError(f"weight decay must be >= 0, got {self.weight_decay}")
        if finite(self.warmup_epochs, "warm-up epochs") < 0:
            raise DassEdgeError(f"warm-up epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 <= finite(self.label_smoothing, "label smoothing") < 1:
            raise DassEdgeError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        return self


@dataclass
class TrainResult:
    model: nn.Module  # best-on-validation weights, eval mode
    best_val_acc: float
    final_val_acc: float
    best_epoch: int
    history: list[dict]
    seconds: float
    images_per_second: float


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        return F.cross_entropy(model(x), y, label_smoothing=label_smoothing)

    return loss


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights live (batches are moved there)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def resolve_train_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a one-line error if that device is not here."""
    name = (name or "cpu").strip().lower()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DassEdgeError(f"unknown device {name!r}; use cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DassEdgeError("--train-device cuda was asked for but this torch sees no CUDA GPU; use --train-device cpu")
    if device.type not in ("cpu", "cuda"):
        raise DassEdgeError(f"training runs on cpu or cuda, not {device.type}")
    return device


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, mean: tuple[float, ...], std: tuple[float, ...], batch_size: int = 512
             ) -> float:
    """Top-1 accuracy (percent) on a split, on the device the model lives on."""
    if len(split) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    device = model_device(model)
    correct = 0
    for x, y, _ in iterate_batches(split, batch_size, mean, std):
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    model.train(was_training)
    return 100.0 * correct / len(split)


def _lr_at(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    total = recipe.epochs * steps_per_epoch
    warm = int(recipe.warmup_epochs * steps_per_epoch)
    if step < warm:
        return recipe.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * recipe.lr * (1.0 + torch.cos(torch.tensor(t * torch.pi)).item())


def _fingerprint(model: nn.Module, data: TaskData, recipe: Recipe, extra: dict) -> str:
    """Identifies a run, so a resume file is only reused by the same run."""
    init = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        init.update(k.encode())
        init.update(v.detach().cpu().numpy().tobytes())
    payload = {"recipe": asdict(recipe), "task": data.name, "n_train": len(data.train), "init": init.hexdigest(),
               **extra}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _diverged(resume_path: Path | None, epoch: int, what: str, recipe: Recipe) -> None:
    """Stop a run that went non-finite: nothing of it is kept (its resume file included), nothing is written."""
    if resume_path is not None:
        resume_path.unlink(missing_ok=True)
    raise DassEdgeError(f"training diverged in epoch {epoch + 1}: {what}; lower the learning rate "
                        f"(it was {recipe.lr}) and run again")


def train(
    model: nn.Module,
    data: TaskData,
    recipe: Recipe,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    loss_fn: LossFn | None = None,
    resume_path: str | Path | None = None,
    progress: ProgressFn | None = None,
    fingerprint_extra: dict | None = None,
    device: str | torch.device = "cpu",
    stop_after: int | None = None,
    after_step: StepHook | None = None,
    epoch_metrics: EpochMetrics | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train``, selecting the best epoch on ``data.val``.

    Args:
        resume_path: where to keep the per-epoch resume state; deleted when the run finishes.
        fingerprint_extra: anything else that defines the run (e.g. the teacher's checksum).
        device: where the forward and backward passes run. Shuffling and augmentation stay on the CPU
            with the recipe's generator, so every device sees the same stream (and the same cached
            teacher logits). The returned model is on the CPU.
        stop_after: run only the recipe's first epochs, its learning-rate schedule unchanged: the result is
            the full run's state after that epoch (search's short-KD refinement compares students there).
        after_step, epoch_metrics: observers that change nothing in the run: one sees the model after every
            optimizer step, the other adds its numbers to each epoch's history entry (benchmarks use them to
            compare ranking signals of short runs). Their state is the caller's: a resumed run does not replay
            the steps of epochs done before the kill.
    """
    recipe.validate()
    last_epoch = recipe.epochs
    if stop_after is not None:
        if isinstance(stop_after, bool) or not isinstance(stop_after, int) or not 1 <= stop_after <= recipe.epochs:
            raise DassEdgeError(f"stop_after must be an epoch from 1 to {recipe.epochs}, got {stop_after!r}")
        last_epoch = stop_after
        fingerprint_extra = {**(fingerprint_extra or {}), "stop_after": stop_after}
    if len(data.train) == 0 or len(data.val) == 0:
        raise DassEdgeError(f"task {data.name} needs non-empty train and val splits")
    loss_fn = loss_fn or cross_entropy_loss(recipe.label_smoothing)
    fp = _fingerprint(model, data, recipe, fingerprint_extra or {})
    device = torch.device(device)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.momentum > 0)
    gen = torch.Generator().manual_seed(recipe.seed)
    steps_per_epoch = -(-len(data.train) // recipe.batch_size)
    start_epoch, history = 0, []
    best_state, best_acc, best_epoch = copy.deepcopy(model.state_dict()), -1.0, -1
    elapsed = 0.0
    resume_path = Path(resume_path) if resume_path else None
    if resume_path is not None and resume_path.is_file():
        try:
            state = torch.load(resume_path, map_location="cpu", weights_only=True)
        except Exception:  # a corrupt resume file only costs the progress it held
            state = None
        if state is not None and state.get("fingerprint") == fp:
            model.load_state_dict(state["model"])  # copies onto the model's device
            optimizer.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            start_epoch, history, elapsed = int(state["epoch"]), list(state["history"]), float(state["elapsed"])
            best_state, best_acc, best_epoch = state["best_state"], float(state["best_acc"]), int(state["best_epoch"])

    if progress:
        progress("start", {"total": last_epoch * steps_per_epoch, "done": start_epoch * steps_per_epoch})
    images_seen, t_train = 0, 0.0
    for epoch in range(start_epoch, last_epoch):
        t0 = time.perf_counter()
        model.train()
        total_loss, n_batches = 0.0, 0
        for b, (x, y, idx) in enumerate(iterate_batches(data.train, recipe.batch_size, mean, std, generator=gen,
                                                         augment=recipe.augment, flip=data.flip_ok)):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(recipe, epoch * steps_per_epoch + b, steps_per_epoch)
            loss = loss_fn(model, x, y, idx, epoch)
            if not torch.isfinite(loss.detach()):
                _diverged(resume_path, epoch, f"the loss became {float(loss.detach())}", recipe)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(model)
            total_loss += float(loss.detach())
            n_batches += 1
            images_seen += int(y.shape[0])
            if progress:
                progress("step", {"epoch": epoch + 1, "loss": float(loss.detach())})
        t_train += time.perf_counter() - t0
        if not all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point()):
            _diverged(resume_path, epoch, "a weight became NaN or infinite", recipe)
        val_acc = evaluate(model, data.val, mean, std)
        elapsed += time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "loss": total_loss / max(1, n_batches), "val_acc": val_acc})
        if epoch_metrics is not None:  # sees the model in eval mode, as after evaluation; training resumes after
            model.eval()
            history[-1].update(epoch_metrics(model))
            model.train()
        if val_acc > best_acc:
            best_acc, best_epoch, best_state = val_acc, epoch + 1, copy.deepcopy(model.state_dict())
        if progress:
            progress("epoch", history[-1])
        if resume_path is not None and epoch + 1 < last_epoch:
            state = {"fingerprint": fp, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "generator": gen.get_state(), "epoch": epoch + 1, "history": history, "elapsed": elapsed,
                     "best_state": best_state, "best_acc": best_acc, "best_epoch": best_epoch}
            atomic_write(resume_path, lambda p, s=state: torch.save(s, p))
    final_val = history[-1]["val_acc"]
    model.load_state_dict(best_state)
    model.to("cpu").eval()
    if resume_path is not None:
        resume_path.unlink(missing_ok=True)
    return TrainResult(model=model, best_val_acc=best_acc, final_val_acc=final_val, best_epoch=best_epoch,
                       history=history, seconds=elapsed,
                       images_per_second=images_seen / t_train if t_train > 0 else float("nan"))
