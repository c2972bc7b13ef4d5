"""The runner contract, each backend here, the interleaved timing protocol and the agent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from dass_edge.latency.artifacts import EntryArtifact, OverheadArtifact
from dass_edge.latency.entries import Entry
from dass_edge.latency.graphs import entry_model
from dass_edge.latency.remote import agent_zip
from dass_edge.latency.runners import (
    BackendUnavailable,
    LatencyRunner,
    OrtRunner,
    RunnerError,
    TorchRunner,
    TrtRunner,
    make_runner,
)
from dass_edge.latency.runners.timing import pinned_to_one_core, run_job, scheduling_priority

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


class _Counting(LatencyRunner):
    """A fake backend that counts calls and reports a fixed time per call."""

    def __init__(self) -> None:
        super().__init__("counting")
        self.calls = self.activations = self.deactivations = 0

    def activate_impl(self) -> None:
        self.activations += 1

    def run_impl(self) -> None:
        self.calls += 1

    def infer_impl(self, x):
        self.calls += 1
        return [v * 2 for v in x]

    def time_impl(self) -> float:
        self.run_impl()
        return 0.001

    def deactivate_impl(self) -> None:
        self.deactivations += 1


def test_runner_contract_state_checks_and_context_manager():
    r = _Counting()
    with pytest.raises(RunnerError, match="activated"):
        r.measure(0.0, 3)
    with r:
        assert r.is_active
        with pytest.raises(RunnerError, match="already active"):
            r.activate()
        times = r.measure(0.0, 5, min_warmup_runs=2)
    assert times == [0.001] * 5 and r.calls == 7  # 2 warm-up calls, 5 timed
    assert not r.is_active and r.activations == r.deactivations == 1
    with r, pytest.raises(RunnerError, match="iterations"):
        r.measure(0.0, 0)
    with pytest.raises(RunnerError, match="activated"):
        r.infer([1])
    with r:
        assert r.infer([1, 2]) == [2, 4] and r.inference_time is not None and r.inference_time >= 0


def test_warmup_is_by_time():
    r = _Counting()
    with r:
        r.measure(0.05, 1)
    assert r.calls > 10  # kept calling for 50 ms, not a fixed count


def test_ort_runner_measures_and_frees(tmp_path):
    path = EntryArtifact(Entry("block", 8, 8, 1, 8), "onnxruntime", "fp32")(tmp_path / "b.onnx")
    with OrtRunner(str(path), threads=1) as r:
        times = r.measure(0.0, 4)
        assert r._feed["x"].shape == (1, 8, 8, 8)
    assert len(times) == 4 and all(t > 0 for t in times)
    assert r._sess is None
    with OrtRunner(entry_model(Entry("head", 8, 3, 1, 4)).SerializeToString()) as r:  # bytes work too
        assert len(r.measure(0.0, 2)) == 2


def test_ort_runner_errors_are_clear(tmp_path):
    path = OverheadArtifact("onnxruntime", "fp32")(tmp_path / "o.onnx")
    with pytest.raises(BackendUnavailable, match="NoSuchExecutionProvider"):
        OrtRunner(str(path), providers=("NoSuchExecutionProvider",)).activate()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(RunnerError, match="cannot load"):
        OrtRunner(str(bad)).activate()


def test_torch_runner_on_module_and_exported_program(tmp_path):
    from dass_edge.models.layers import BasicBlock

    with TorchRunner(BasicBlock(4, 8, 2), (1, 4, 8, 8)) as r:
        assert len(r.measure(0.0, 3)) == 3
    path = EntryArtifact(Entry("block", 4, 8, 2, 8), "torch", "fp32")(tmp_path / "b.pt2")
    runner = make_runner({"backend": "torch", "threads": 1}, str(path), (1, 4, 8, 8))
    with runner:
        assert len(runner.measure(0.0, 3)) == 3
    with pytest.raises(RunnerError, match="input shape"):
        make_runner({"backend": "torch"}, str(path))


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_runner_cuda_events_and_graphs():  # pragma: no cover - runs only with a GPU
    from dass_edge.models.layers import BasicBlock

    for graph in (False, True):
        with TorchRunner(BasicBlock(8, 8), (1, 8, 16, 16), device="cuda", precision="fp16", cuda_graph=graph) as r:
            assert all(t > 0 for t in r.measure(0.01, 5))


def test_factory_rejects_unknown_backend():
    with pytest.raises(RunnerError, match="unknown backend"):
        make_runner({"backend": "tvm"}, "x.onnx")


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed; the missing-backend path cannot be exercised")
def test_tensorrt_is_lazy_and_missing_backend_is_clear(tmp_path):
    import dass_edge.latency  # noqa: F401  (importing the package must not need TensorRT)

    assert "tensorrt" not in sys.modules
    path = OverheadArtifact("tensorrt", "fp16")(tmp_path / "o.onnx")
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        TrtRunner(str(path)).activate()


def test_tensorrt_runner_builds_and_measures(tmp_path):  # pragma: no cover - runs only with TensorRT and a GPU
    pytest.importorskip("tensorrt")
    path = EntryArtifact(Entry("block", 8, 16, 2, 16), "tensorrt", "fp16")(tmp_path / "b.onnx")
    with TrtRunner(str(path), precision="fp16") as r:
        assert all(t > 0 for t in r.measure(0.01, 5))
    assert Path(str(path) + ".engine").exists()  # the engine is cached for the next fresh session


def test_run_job_interleaves_rounds_and_emits_every_pair(tmp_path):
    a = OverheadArtifact("onnxruntime", "fp32")(tmp_path / "a.onnx")
    b = EntryArtifact(Entry("head", 4, 2, 1, 2), "onnxruntime", "fp32")(tmp_path / "b.onnx")
    items = [{"id": "few", "artifact": str(a), "rounds": [0, 1], "sessions": 2},
             {"id": "many", "artifact": str(b), "rounds": [0, 1, 2, 3, 4, 5], "sessions": 6}]
    got: list[dict] = []
    n = run_job(items, {"backend": "onnxruntime", "warmup_s": 0.0, "iterations": 2}, got.append, seed=3)
    assert n == len(got) == 8
    assert sorted((r["id"], r["round"]) for r in got) == sorted(
        [("few", 0), ("few", 1)] + [("many", i) for i in range(6)])
    order = [r["id"] for r in got]
    # "few" has 2 rounds over 6 passes: its second round comes in the second half, not right after the first.
    assert order.index("few") < 3 and len(order) - 1 - order[::-1].index("few") >= 3
    assert all(len(r["us"]) == 2 and all(v > 0 for v in r["us"]) for r in got)


def test_run_job_only_measures_requested_rounds(tmp_path):
    a = OverheadArtifact("onnxruntime", "fp32")(tmp_path / "a.onnx")
    got: list[dict] = []
    run_job([{"id": "m", "artifact": str(a), "rounds": [3], "sessions": 5}],
            {"backend": "onnxruntime", "warmup_s": 0.0, "iterations": 1}, got.append)
    assert [(r["id"], r["round"]) for r in got] == [("m", 3)]


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no nice values on this platform")
def test_scheduling_priority_is_restored():
    before = os.getpriority(os.PRIO_PROCESS, 0)
    if before >= 19:
        pytest.skip("the test process already runs at the lowest priority (nice 19): nothing to lower")
    with scheduling_priority(before + 1) as nice:  # lowering priority is always allowed
        assert nice == before + 1 == os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
    with scheduling_priority(None) as nice:
        assert nice == before


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux affinity and 2 or more usable cores")
def test_pinned_to_one_core_pins_then_restores_and_is_recorded(tmp_path):
    before = os.sched_getaffinity(0)
    with pinned_to_one_core(True) as core:
        assert core == max(before) and os.sched_getaffinity(0) == {core}
    assert os.sched_getaffinity(0) == before
    with pinned_to_one_core(False) as core:
        assert core is None and os.sched_getaffinity(0) == before
    a = OverheadArtifact("onnxruntime", "fp32")(tmp_path / "a.onnx")
    got: list[dict] = []
    run_job([{"id": "m", "artifact": str(a), "rounds": [0], "sessions": 1}],
            {"backend": "onnxruntime", "warmup_s": 0.0, "iterations": 1, "pin_core": True}, got.append)
    assert [r["core"] for r in got] == [max(before)] and os.sched_getaffinity(0) == before


def test_agent_zip_runs_a_job_standalone(tmp_path):
    """The zip app needs nothing of dass_edge: run it with this Python from an empty folder."""
    (tmp_path / "agent.pyz").write_bytes(agent_zip())
    (tmp_path / "models").mkdir()
    onnx.save(entry_model(Entry("head", 4, 2, 1, 2)), str(tmp_path / "models" / "h.onnx"))
    job = {"settings": {"backend": "onnxruntime", "threads": 1, "warmup_s": 0.0, "iterations": 2},
           "items": [{"id": "h", "artifact": "models/h.onnx", "rounds": [0, 1]}]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # dass_edge is installed here, so block it: any import of it inside the agent would fail.
    runner = ("import runpy, sys; sys.modules['dass_edge'] = None; sys.argv = sys.argv[1:]; "
              "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-I", "-c", runner, str(tmp_path / "agent.pyz"), "run",
                           str(tmp_path / "job.json")], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    msgs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [m["type"] for m in msgs] == ["info", "record", "record", "done"]
    assert msgs[0]["device"]["cpu"]["logical_cores"] >= 1
    bad = subprocess.run([sys.executable, "-I", str(tmp_path / "agent.pyz"), "info", "tensorrt"],
                         capture_output=True, text=True, timeout=120)
    if not HAS_TRT:
        assert bad.returncode == 3 and json.loads(bad.stdout)["kind"] == "backend"
