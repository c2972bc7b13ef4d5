import pytest
import torch

from dass_edge.data import load_task
from dass_edge.data.task import Split, TaskData
from dass_edge.errors import DassEdgeError
from dass_edge.models import build_model
from dass_edge.spec import ModelSpec
from dass_edge.training.loop import Recipe, evaluate, train


def _small(name: str, per_split: int = 480) -> TaskData:
    """A built-in task cut to a few hundred images per split, so training tests stay quick."""
    d = load_task(name, resolution=16)
    g = torch.Generator().manual_seed(0)

    def cut(split: Split) -> Split:
        idx = torch.randperm(len(split), generator=g)[:per_split]
        return Split(split.images[idx], split.labels[idx])

    return TaskData(d.name, d.class_names, d.resolution, cut(d.train), cut(d.val), cut(d.test), d.flip_ok)


def _tiny(data):
    mean, std = data.mean_std
    torch.manual_seed(0)
    return build_model(ModelSpec.uniform((8, 8, 16, 16), (1, 1, 1, 1), num_classes=data.num_classes,
                                         resolution=data.resolution, mean=mean, std=std)), mean, std


class Killed(Exception):
    pass


def test_training_learns_above_chance():
    data = _small("textures", 960)
    model, mean, std = _tiny(data)
    before = evaluate(model, data.val, mean, std)
    result = train(model, data, Recipe(epochs=4, lr=0.1, batch_size=64), mean=mean, std=std)
    assert result.best_val_acc > 100 / data.num_classes + 10
    assert result.best_val_acc >= before
    assert len(result.history) == 4 and result.best_epoch in range(1, 5)
    assert evaluate(result.model, data.val, mean, std) == pytest.approx(result.best_val_acc)


def test_killed_run_resumes_to_identical_weights(tmp_path):
    data = _small("count-dots")
    recipe = Recipe(epochs=3, lr=0.05, batch_size=64)
    model, mean, std = _tiny(data)
    straight = train(model, data, recipe, mean=mean, std=std)

    resume = tmp_path / "run.partial.pt"

    def kill_after_first_epoch(event, info):
        if event == "epoch" and info["epoch"] == 2:
            raise Killed

    model, _, _ = _tiny(data)
    with pytest.raises(Killed):
        train(model, data, recipe, mean=mean, std=std, resume_path=resume, progress=kill_after_first_epoch)
    assert resume.is_file()
    state = torch.load(resume, weights_only=True)
    assert state["epoch"] == 1
    events = []
    model, _, _ = _tiny(data)
    resumed = train(model, data, recipe, mean=mean, std=std, resume_path=resume,
                    progress=lambda e, i: events.append((e, i)))
    assert events[0] == ("start", {"total": 3 * 8, "done": 8})
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert not resume.exists()
    for k, v in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_resume_file_of_another_run_is_not_reused(tmp_path):
    data = _small("count-dots")
    resume = tmp_path / "run.partial.pt"
    model, mean, std = _tiny(data)

    def kill(event, info):
        if event == "epoch":
            raise Killed

    with pytest.raises(Killed):
        train(model, data, Recipe(epochs=2, lr=0.05), mean=mean, std=std, resume_path=resume, progress=kill)
    model, _, _ = _tiny(data)
    events = []
    train(model, data, Recipe(epochs=2, lr=0.02), mean=mean, std=std, resume_path=resume,
          progress=lambda e, i: events.append((e, i)))
    assert events[0][1]["done"] == 0


def test_bad_recipe_rejected():
    with pytest.raises(DassEdgeError, match="epochs must be >= 1"):
        Recipe(epochs=0).validate()


def test_resolve_device_gives_one_line_errors():
    import torch

    from dass_edge.errors import DassEdgeError
    from dass_edge.training.loop import resolve_train_device

    assert resolve_train_device("cpu") == torch.device("cpu") and resolve_train_device(None) == torch.device("cpu")
    with pytest.raises(DassEdgeError, match="unknown device"):
        resolve_train_device("gpu0")
    with pytest.raises(DassEdgeError, match="cpu or cuda"):
        resolve_train_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(DassEdgeError, match="sees no CUDA GPU"):
            resolve_train_device("cuda")


def test_distill_cli_rejects_a_missing_gpu(tmp_path, capsys):
    import torch

    from tests.conftest import run_cli

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code, _, err = run_cli(["distill", "--arch", "d1-1-1-2_w12-24-48-128.128", "--out", str(tmp_path / "s"),
                            "--train-device", "cuda"], capsys)
    assert code == 2 and "sees no CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_observers_see_every_step_and_epoch_and_change_nothing():
    """``after_step`` and ``epoch_metrics`` observe a run (benchmarks compare ranking signals with them): the
    run's history and weights are the same with and without them, the metrics land in each epoch's entry."""
    data = _small("textures", 240)
    recipe = Recipe(epochs=2, lr=0.05, batch_size=64)
    model, mean, std = _tiny(data)
    plain = train(model, data, recipe, mean=mean, std=std)
    model, mean, std = _tiny(data)
    steps: list[int] = []
    seen = train(model, data, recipe, mean=mean, std=std, after_step=lambda m: steps.append(1),
                 epoch_metrics=lambda m: {"acc_again": evaluate(m, data.val, mean, std), "training": m.training})
    assert len(steps) == 2 * -(-len(data.train) // 64)
    assert [h["val_acc"] for h in seen.history] == [h["val_acc"] for h in plain.history]
    assert [h["acc_again"] for h in seen.history] == [h["val_acc"] for h in seen.history]
    assert all(h["training"] is False for h in seen.history)  # evaluated in eval mode, as the loop leaves it
    for a, b in zip(plain.model.state_dict().values(), seen.model.state_dict().values()):
        assert torch.equal(a, b)
