"""Teacher-output cache: the teacher's logits over the seeded augmentation stream, computed once.

The training loop draws data order and augmentation only from a generator seeded by the recipe's
seed, and within one epoch every training sample appears exactly once. So for a fixed (task data,
teacher, seed, batch size, epochs, augmentation) the augmented view a student sees is identified
by ``(epoch, sample index)``, whatever the student. Replaying that stream once through the teacher
gives a table ``logits[epoch, index]`` that every student of the task reuses: KD then costs what
plain cross-entropy costs.

Each entry also stores the sum of its input pixels; a lookup checks it against the batch the
student actually got, so a stream that drifted (a changed loop, other data) falls back to running
the teacher instead of training on wrong targets.

The folder is capped at ``$DASS_EDGE_TEACHER_CACHE_MB`` megabytes (least recently used files are
deleted first), and lock files are removed by their holder, so the cache does not grow without bound.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dass_edge.data.task import TaskData, iterate_batches
from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write

__all__ = ["CACHE_LIMIT_ENV", "TeacherCache", "cache_key", "build_teacher_cache", "cache_limit_bytes",
           "data_fingerprint", "evict", "load_or_build_cache"]

_VERSION = 1
#: Environment variable capping the cache folder's size in megabytes (least recently used files go first).
CACHE_LIMIT_ENV = "DASS_EDGE_TEACHER_CACHE_MB"
DEFAULT_CACHE_MB = 2048
#: Relative tolerance of the input checksum (sums of the same float32 batch agree bit for bit).
_CHECK_RTOL = 1e-5


@dataclass
class TeacherCache:
    """``logits[epoch, index]`` (float32) and ``checks[epoch, index]`` (input sums) for one stream."""

    key: str
    logits: torch.Tensor
    checks: torch.Tensor

    @property
    def epochs(self) -> int:
        return int(self.logits.shape[0])

    def lookup(self, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor | None:
        """Cached teacher logits for a batch, or None if the batch is not the one cached."""
        if epoch >= self.epochs:
            return None
        index = index.cpu()
        expected = self.checks[epoch, index]
        got = x.detach().sum(dim=(1, 2, 3)).cpu()
        if not torch.allclose(got, expected, rtol=_CHECK_RTOL, atol=1e-3):
            return None
        return self.logits[epoch, index].to(x.device, non_blocking=True)

    def to_state(self) -> dict:
        return {"version": _VERSION, "key": self.key, "logits": self.logits, "checks": self.checks}


def data_fingerprint(data: TaskData) -> str:
    """Checksum of the training images and labels (what the stream is drawn from)."""
    h = hashlib.sha256()
    h.update(data.train.images.contiguous().numpy().tobytes())
    h.update(data.train.labels.contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(teacher_sha256: str, data: TaskData, *, seed: int, batch_size: int, epochs: int, augment: bool,
              mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    """Everything that determines the stream and the teacher's answers to it."""
    payload = {"v": _VERSION, "teacher": teacher_sha256, "data": data_fingerprint(data), "flip": data.flip_ok,
               "seed": seed, "batch_size": batch_size, "epochs": epochs, "augment": augment,
               "mean": list(mean), "std": list(std)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


@torch.no_grad()
def build_teacher_cache(teacher: nn.Module, data: TaskData, *, key: str, seed: int, batch_size: int, epochs: int,
                        augment: bool, mean: tuple[float, ...], std: tuple[float, ...],
                        progress: Callable[[int, int], None] | None = None) -> TeacherCache:
    """Replay the training loop's stream (same generator use, same batches) through the teacher."""
    was_training = teacher.training
    teacher.eval()
    device = next(teacher.parameters()).device
    n = len(data.train)
    logits = torch.empty(epochs, n, teacher.fc.out_features)
    checks = torch.empty(epochs, n)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for x, _y, idx in iterate_batches(data.train, batch_size, mean, std, generator=gen, augment=augment,
                                          flip=data.flip_ok):
            x = x.to(device)
            logits[epoch, idx] = teacher(x).cpu()
            checks[epoch, idx] = x.sum(dim=(1, 2, 3)).cpu()
        if progress:
            progress(epoch + 1, epochs)
    teacher.train(was_training)
    return TeacherCache(key=key, logits=logits, checks=checks)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock, so parallel jobs of one task build a cache once and the others wait for it.

    The lock file is removed by its holder when done, so none pile up: a waiter that then finds its
    file unlinked (another inode at the path, or none) takes the lock again on the current file.
    Where no lock file can be made (read-only cache dir), go on unlocked: the cache is then in memory only."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+")  # noqa: SIM115 - closed below
        except OSError:
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # the holder removed this lock file meanwhile; lock the current one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()  # releases the lock


def cache_limit_bytes() -> int:
    """The cache folder's size cap: ``$DASS_EDGE_TEACHER_CACHE_MB`` megabytes (default 2048; 0: keep none)."""
    raw = os.environ.get(CACHE_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not math.isfinite(mb) or mb < 0:
        raise DassEdgeError(f"${CACHE_LIMIT_ENV} must be a size in megabytes >= 0, got {raw!r}")
    return int(mb * (1 << 20))


def evict(folder: Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Delete least recently used cache files until the folder holds at most ``limit`` bytes.

    ``keep`` (the file just written) goes last; a hit refreshes a file's time, so the caches in use stay.
    """
    entries = []
    for f in folder.glob("*.pt"):
        with contextlib.suppress(OSError):
            st = f.stat()
            entries.append((f != keep, st.st_mtime, f, st.st_size))
    total = sum(e[3] for e in entries)
    removed = []
    for _, _, f, size in sorted(entries, key=lambda e: (not e[0], e[1])):
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            f.unlink()
            removed.append(f)
        total -= size
    return removed


def _read(path: Path, key: str) -> TeacherCache | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt cache file is rebuilt
        return None
    if not isinstance(state, dict) or state.get("version") != _VERSION or state.get("key") != key:
        return None
    return TeacherCache(key=key, logits=state["logits"], checks=state["checks"])


def _nbytes(cache: TeacherCache) -> int:
    return cache.logits.numel() * cache.logits.element_size() + cache.checks.numel() * cache.checks.element_size()


def load_or_build_cache(teacher: nn.Module, teacher_sha256: str, data: TaskData, cache_dir: str | Path, *,
                        seed: int, batch_size: int, epochs: int, augment: bool, mean: tuple[float, ...],
                        std: tuple[float, ...]) -> tuple[TeacherCache, bool]:
    """The cache for this stream from ``cache_dir``, building and writing it if missing.

    Returns ``(cache, hit)``; ``hit`` is False when this call computed it.
    """
    key = cache_key(teacher_sha256, data, seed=seed, batch_size=batch_size, epochs=epochs, augment=augment,
                    mean=mean, std=std)
    path = Path(cache_dir) / "teacher_logits" / f"{data.name}-{key}.pt"
    limit = cache_limit_bytes()
    cached = _read(path, key) if path.is_file() else None
    if cached is not None:
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return cached, True
    with _locked(path.with_name(path.name + ".lock")):
        cached = _read(path, key) if path.is_file() else None  # another process may have built it meanwhile
        if cached is not None:
            return cached, True
        cache = build_teacher_cache(teacher, data, key=key, seed=seed, batch_size=batch_size, epochs=epochs,
                                    augment=augment, mean=mean, std=std)
        if _nbytes(cache) <= limit:
            try:
                atomic_write(path, lambda p: torch.save(cache.to_state(), p))
                evict(path.parent, limit, keep=path)
            except (OSError, DassEdgeError):
                pass  # a read-only cache dir only costs the reuse
    return cache, False
