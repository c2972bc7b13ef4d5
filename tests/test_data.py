import numpy as np
import pytest
import torch
from PIL import Image

from dass_edge.data import load_task, task_summaries
from dass_edge.data.builtin import builtin_tasks, load_builtin
from dass_edge.data.imagefolder import load_image_folder
from dass_edge.data.task import augment_batch
from dass_edge.errors import DassEdgeError


def test_at_least_twelve_builtin_tasks_with_distinct_names():
    rows = task_summaries()
    assert len(rows) >= 12
    assert len({r["name"] for r in rows}) == len(rows)
    for r in rows:
        assert r["num_classes"] >= 2 and r["train"] > r["val"] > 0 and r["test"] > 0


def test_builtin_task_is_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_CACHE", str(tmp_path))
    a = load_builtin("count-dots", resolution=16)
    assert list(tmp_path.glob("tasks/count-dots-r16-*.npz"))
    b = load_builtin("count-dots", resolution=16)  # from the cache
    monkeypatch.setenv("DASS_EDGE_CACHE", str(tmp_path / "fresh"))
    c = load_builtin("count-dots", resolution=16)  # regenerated
    for s in ("train", "val", "test"):
        assert torch.equal(a.split(s).images, b.split(s).images)
        assert torch.equal(a.split(s).images, c.split(s).images)
        assert torch.equal(a.split(s).labels, c.split(s).labels)
    assert a.train.images.shape == (8 * 150, 3, 16, 16) and a.train.images.dtype == torch.uint8
    # Splits are drawn independently: no test image repeats a training image.
    train = {bytes(x.numpy()) for x in a.train.images}
    assert not any(bytes(x.numpy()) in train for x in a.test.images)


@pytest.mark.parametrize("name", sorted(builtin_tasks()))
def test_every_builtin_task_renders_balanced_varied_images(name):
    data = load_task(name)
    labels = data.train.labels.numpy()
    counts = np.bincount(labels, minlength=data.num_classes)
    assert counts.min() == counts.max() == builtin_tasks()[name].split_size("train") // data.num_classes
    imgs = data.train.images.float()
    # Not blank, and samples of one class differ from each other (intra-class variety).
    assert imgs.std() > 20
    first = imgs[labels == 0]
    assert (first[0] - first[1]).abs().mean() > 5


def test_corrupt_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_CACHE", str(tmp_path))
    good = load_builtin("count-dots", resolution=12)
    path = next(tmp_path.glob("tasks/count-dots-r12-*.npz"))
    path.write_bytes(b"garbage")
    again = load_builtin("count-dots", resolution=12)
    assert torch.equal(good.val.images, again.val.images)


def test_unknown_task_and_bad_resolution():
    with pytest.raises(DassEdgeError, match="unknown task 'nope'.*dass-edge data list"):
        load_task("nope")
    with pytest.raises(DassEdgeError, match="resolution 4"):
        load_task("shapes", resolution=4)


def _write_folder(root, classes=("cat", "dog"), n=10, size=(20, 14)):
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = np.full((size[1], size[0], 3), 40 * k + i, dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")


def test_image_folder_split_is_deterministic_and_complete(tmp_path):
    _write_folder(tmp_path / "ds")
    a = load_image_folder(tmp_path / "ds", resolution=8)
    b = load_image_folder(tmp_path / "ds", resolution=8)
    assert a.class_names == ("cat", "dog")
    assert (len(a.train), len(a.val), len(a.test)) == (14, 4, 2)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert a.train.images.shape[1:] == (3, 8, 8)


def test_image_folder_with_split_folders(tmp_path):
    _write_folder(tmp_path / "ds" / "train", n=20)
    _write_folder(tmp_path / "ds" / "test", n=3)
    d = load_image_folder(tmp_path / "ds", resolution=8)
    assert len(d.test) == 6 and len(d.val) == 6 and len(d.train) == 34


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "no class folders"),
        (lambda root: (root / "a").mkdir(parents=True), "has no images"),
    ],
)
def test_image_folder_errors(tmp_path, setup, message):
    root = tmp_path / "ds"
    setup(root)
    with pytest.raises(DassEdgeError, match=message):
        load_image_folder(root)


def test_unreadable_image_named_in_error(tmp_path):
    _write_folder(tmp_path / "ds")
    (tmp_path / "ds" / "cat" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DassEdgeError, match=r"cannot read image .*broken\.png"):
        load_image_folder(tmp_path / "ds")


def test_augment_crops_shift_content_and_keep_shape():
    g = torch.Generator().manual_seed(0)
    imgs = torch.zeros(64, 3, 8, 8, dtype=torch.uint8)
    imgs[:, :, 3, 3] = 255
    out = augment_batch(imgs, g, pad=2, flip=False)
    assert out.shape == imgs.shape
    pos = {tuple((o[0] == 255).nonzero()[0].tolist()) for o in out if (o[0] == 255).any()}
    assert len(pos) > 5  # the bright pixel moved to many positions
    assert all(abs(r - 3) <= 2 and abs(c - 3) <= 2 for r, c in pos)
