"""Build a TensorRT engine on the device over SSH (``--host user@device``): engines must be built where they run.

Reuses :class:`dass_edge.latency.remote.SshTarget` (host keys verified, ``BatchMode``, every remote
argument quoted): the TensorRT-ready ONNX and the self-contained ``trt_build.py`` go over in one tar
stream, the device's own Python/TensorRT builds the engine, and the engine comes back byte for byte.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from dass_edge.errors import DassEdgeError

__all__ = ["build_engine_remote"]


def _fetch(target, remote_path: str, local: Path, timeout: float) -> None:
    """Copy one remote file here, binary-safe (``ssh ... cat``; ``SshTarget.run`` decodes text)."""
    try:
        proc = subprocess.run(target.ssh_argv(["cat", "--", remote_path]), capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise DassEdgeError(f"{target.label}: fetching the engine did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0 or not proc.stdout:
        detail = (proc.stderr.decode(errors="replace").strip().splitlines() or ["empty file"])[-1]
        raise DassEdgeError(f"{target.label}: could not fetch the engine ({detail})")
    local.write_bytes(proc.stdout)


def build_engine_remote(host: str, onnx_path: Path, engine_path: Path, builder: Path, *, python: str = "python3",
                        opt_batch: int = 1, max_batch: int = 32, precision: str = "fp16",
                        target=None) -> str | None:
    """Build ``onnx_path`` into ``engine_path`` on ``host``; returns the device's TensorRT version.

    Args:
        host: ``user@host[:port]``.
        onnx_path, engine_path: local files (the engine is written here once it is back).
        builder: the local ``trt_build.py`` to run on the device.
        python: the device's interpreter (the profile's ``remote_python``).
        precision: what the ONNX holds (the builder sets flags from it on TensorRT < 9).
        target: an ``SshTarget`` to use instead of one parsed from ``host`` (tests).

    Raises:
        DassEdgeError: bad host, ssh failure (with the reason), or a failed build on the device.
    """
    if target is None:
        from dass_edge.latency.remote import SshTarget

        target = SshTarget.parse(host, python=python)
    workdir = target.open_workdir()
    try:
        target.upload(workdir, [(onnx_path.name, onnx_path), ("trt_build.py", builder)])
        remote_engine = f"{workdir}/{engine_path.name}"
        target.run([target.python, f"{workdir}/trt_build.py", "--onnx", f"{workdir}/{onnx_path.name}",
                    "--engine", remote_engine, "--precision", precision, "--opt-batch", str(opt_batch),
                    "--max-batch", str(max_batch)],
                   timeout=target.connect_timeout + 1800)
        version = target.run([target.python, "-c", "import tensorrt; print(tensorrt.__version__)"]).strip() or None
        _fetch(target, remote_engine, engine_path, timeout=target.connect_timeout + 600)
    finally:
        target.cleanup(workdir)
    return version
