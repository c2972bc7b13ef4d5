import math

import pytest
import torch
from conftest import perturbed_teacher

from dass_edge.data import load_task
from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.models import remap, save_checkpoint
from dass_edge.predictor.embeddings import embed, probe_batch
from dass_edge.predictor.meta_tasks import load_meta_tasks
from dass_edge.space import SearchSpace


@pytest.fixture()
def db(tmp_path):
    teacher = perturbed_teacher(num_classes=8, resolution=16)
    path = save_checkpoint(tmp_path / "count-dots.safetensors", teacher, {"val_acc": 80.0})
    a, b = SearchSpace(teacher.spec).sample_many(2, seed=0)
    base = {"task": "count-dots", "teacher_file": path.name, "teacher_sha256": file_sha256(path), "resolution": 16,
            "heldout": True, "teacher_val_acc": 80.0}
    rows = [
        {**base, "arch": a.to_dict(), "arch_key": a.key(), "seed": 0, "val_acc": 60.0},
        {**base, "arch": a.to_dict(), "arch_key": a.key(), "seed": 1, "val_acc": 64.0},
        {**base, "arch": b.to_dict(), "arch_key": b.key(), "seed": 0, "val_acc": 50.0},
    ]
    return rows, tmp_path, teacher, (a, b)


def test_meta_task_holds_embeddings_labels_and_support(db):
    rows, folder, teacher, (a, b) = db
    (task,) = load_meta_tasks(rows, folder)
    assert task.name == "count-dots" and task.heldout and task.teacher_acc == pytest.approx(0.8)
    order = [x.key() for x in task.archs]
    assert order == sorted([a.key(), b.key()])
    ia, ib = order.index(a.key()), order.index(b.key())
    assert task.labels[ia] == pytest.approx(0.62) and task.labels[ib] == pytest.approx(0.50)
    assert task.seed_labels[1][ia] == pytest.approx(0.64) and math.isnan(task.seed_labels[1][ib])
    data = load_task("count-dots", resolution=16)
    probe = probe_batch(data.train, teacher.spec.mean, teacher.spec.std, seed=0)
    assert torch.allclose(task.student_embeddings[ia], embed(remap(teacher, a), probe), atol=1e-5)
    assert torch.allclose(task.teacher_embedding, embed(teacher, probe), atol=1e-5)
    s, code, t, y = task.support()
    assert s.shape[0] == code.shape[0] == y.shape[0] == 1 and y.item() == pytest.approx(0.8)
    assert task.params[ia] < sum(p.numel() for p in teacher.parameters())


def test_wrong_or_missing_teacher_is_a_clear_error(db):
    rows, folder, _, _ = db
    bad = [{**r, "teacher_sha256": "0" * 64} for r in rows]
    with pytest.raises(DassEdgeError, match="checksum"):
        load_meta_tasks(bad, folder)
    with pytest.raises(DassEdgeError, match="is missing"):
        load_meta_tasks(rows, folder / "elsewhere")
