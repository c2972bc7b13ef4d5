"""Meta-tasks: the meta-database turned into predictor inputs, one (dataset, teacher) pair at a time.

For every task the teacher is loaded from the teacher folder named by its rows, the task is
loaded at the rows' resolution, and a fixed probe batch is drawn from its training split. Each
distinct student is remapped from the teacher and embedded on that probe (stage-4 maps); its
label is its best validation accuracy (a fraction), averaged over the seeds it was trained with,
and the per-seed labels are kept for the seed-to-seed ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from dass_edge.data import load_task
from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.models.checkpoint import load_checkpoint
from dass_edge.models.remap import remap
from dass_edge.predictor.embeddings import embed, probe_batch
from dass_edge.predictor.encoding import student_features
from dass_edge.predictor.task_probe import colour_probe_accuracy, stage_probe_accuracies
from dass_edge.space import Arch, SearchSpace, spec_flops, spec_params
from dass_edge.spec import ModelSpec

__all__ = ["MetaTask", "load_meta_tasks", "teacher_task", "unlabelled_task"]


@dataclass
class MetaTask:
    """One (dataset, teacher) pair with its KD-trained students, ready for the predictor."""

    name: str
    heldout: bool
    teacher_acc: float  # teacher's validation accuracy, fraction
    teacher_embedding: torch.Tensor  # (B, C, g, g)
    teacher_code: torch.Tensor  # (D,) relative encoding of the teacher's own arch
    archs: list[Arch]
    student_embeddings: torch.Tensor  # (N, B, C, g, g)
    codes: torch.Tensor  # (N, D)
    labels: torch.Tensor  # (N,) mean over seeds, fraction
    seed_labels: dict[int, torch.Tensor] = field(default_factory=dict)  # per seed, NaN where not trained
    params: list[int] = field(default_factory=list)
    flops: list[int] = field(default_factory=list)
    spec: ModelSpec | None = None  # the teacher's, for costs that need it (latency from a table)
    # The teacher's per-stage linear-probe accuracies on this data (task_probe.stage_probe_accuracies)
    probe_profile: tuple[float, ...] | None = None
    # A linear probe's accuracy on the images' colour histograms (task_probe.colour_probe_accuracy)
    colour_probe: float | None = None

    def __len__(self) -> int:
        return len(self.archs)

    def support(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-guided adaptation set: the teacher as a student of itself, with its own accuracy."""
        t = self.teacher_embedding[None]
        return t, self.teacher_code[None], t, torch.tensor([self.teacher_acc])

    def teacher_shaped(self) -> torch.Tensor:
        """``(N,)`` bool: the students with the teacher's own shape (excluded from budgeted regret)."""
        return (self.codes == self.teacher_code[None]).all(dim=1)


def unlabelled_task(name: str, archs: list[Arch], spec: ModelSpec,
                    probe_profile: tuple[float, ...] | None = None, colour_probe: float | None = None) -> MetaTask:
    """Students of the teacher ``spec`` without labels or embeddings: codes, sizes, spec and the task's probes,
    what the size-and-shape predictors and baselines read (search candidates, the teacher itself)."""
    import math

    space = SearchSpace(spec, fixed_last_stage=False)
    specs = [space.to_spec(a) for a in archs]
    n = len(archs)
    return MetaTask(name=name, heldout=True, teacher_acc=math.nan, teacher_embedding=torch.zeros(0),
                    teacher_code=torch.tensor(student_features(space.teacher_arch(), spec)), archs=list(archs),
                    student_embeddings=torch.zeros(n, 0),
                    codes=torch.tensor([student_features(a, spec) for a in archs]).reshape(n, -1),
                    labels=torch.full((n,), math.nan), params=[spec_params(s) for s in specs],
                    flops=[spec_flops(s) for s in specs], spec=spec, probe_profile=probe_profile,
                    colour_probe=colour_probe)


def teacher_task(task: MetaTask) -> MetaTask:
    """``task``'s teacher as its only (unlabelled) student: the anchor of a predictor's calibration."""
    if task.spec is None:
        raise DassEdgeError(f"task {task.name} carries no teacher spec; build it with load_meta_tasks()")
    arch = SearchSpace(task.spec, fixed_last_stage=False).teacher_arch()
    return unlabelled_task(task.name, [arch], task.spec, task.probe_profile, task.colour_probe)


def load_meta_tasks(rows: list[dict], teachers_dir: str | Path, probe_seed: int = 0,
                    verify_checksums: bool = True, embed_students: bool = True) -> list[MetaTask]:
    """Group ``rows`` by task and build one :class:`MetaTask` each (sorted by name).

    ``embed_students=False`` skips the students' embeddings (the slow part; ``student_embeddings`` is then
    an empty ``(N, 0)`` tensor): enough for baselines that read only codes, sizes and labels.

    Raises:
        DassEdgeError: a teacher file is missing or is not the one the rows were trained with.
    """
    teachers_dir = Path(teachers_dir)
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    return [_build(name, by_task[name], teachers_dir, probe_seed, verify_checksums, embed_students)
            for name in sorted(by_task)]


@torch.no_grad()
def _build(name: str, rows: list[dict], teachers_dir: Path, probe_seed: int, verify: bool,
           embed_students: bool = True) -> MetaTask:
    first = rows[0]
    path = teachers_dir / first["teacher_file"]
    if not path.is_file():
        raise DassEdgeError(f"teacher {path} of task {name} is missing; restore metadb/teachers or rebuild it")
    if verify and file_sha256(path) != first["teacher_sha256"]:
        raise DassEdgeError(f"teacher {path} is not the one task {name}'s rows were trained with (checksum)")
    teacher, meta = load_checkpoint(path)
    spec = teacher.spec
    data = load_task(name, resolution=first["resolution"])
    probe = probe_batch(data.train, spec.mean, spec.std, seed=probe_seed)
    space = SearchSpace(spec, fixed_last_stage=False)

    per_arch: dict[str, dict] = {}
    for r in rows:
        entry = per_arch.setdefault(r["arch_key"], {"arch": Arch.from_dict(r["arch"]), "seeds": {}})
        entry["seeds"][int(r["seed"])] = float(r["val_acc"]) / 100.0
    keys = sorted(per_arch)
    archs = [per_arch[k]["arch"] for k in keys]
    seeds = sorted({s for e in per_arch.values() for s in e["seeds"]})
    seed_labels = {s: torch.tensor([per_arch[k]["seeds"].get(s, float("nan")) for k in keys]) for s in seeds}
    labels = torch.tensor([sum(per_arch[k]["seeds"].values()) / len(per_arch[k]["seeds"]) for k in keys])
    students = (torch.stack([embed(remap(teacher, a), probe) for a in archs]) if embed_students
                else torch.zeros(len(archs), 0))
    return MetaTask(
        name=name, heldout=bool(first.get("heldout", False)),
        teacher_acc=float(first.get("teacher_val_acc", meta.get("val_acc", 0.0))) / 100.0,
        teacher_embedding=embed(teacher, probe),
        teacher_code=torch.tensor(student_features(space.teacher_arch(), spec)),
        archs=archs, student_embeddings=students,
        codes=torch.tensor([student_features(a, spec) for a in archs]), labels=labels, seed_labels=seed_labels,
        params=[spec_params(space.to_spec(a)) for a in archs], flops=[spec_flops(space.to_spec(a)) for a in archs],
        spec=spec, probe_profile=stage_probe_accuracies(teacher, data), colour_probe=colour_probe_accuracy(data),
    )
