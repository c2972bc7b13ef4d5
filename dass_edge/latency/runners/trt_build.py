"""Build a TensorRT engine from ONNX: the one builder used by profiling, export and devices.

Self-contained on purpose (standard library + ``tensorrt`` only, no relative imports): engines must be
built on the device that runs them, so this file is also copied to a Jetson and run there without
dass-edge::

    python3 trt_build.py --onnx student.int8-trt.onnx --engine student.int8.engine --precision int8

TensorRT 9+ builds a strongly typed network: each layer's precision is read off the ONNX types (INT8 out
of Q/DQ nodes, FP16 out of an FP16 model) and no precision flags are set. Older releases (JetPack 5
ships TensorRT 8.5) have no strongly typed mode, so the builder flags matching ``precision`` are set
(``int8`` = INT8 + FP16, as the Q/DQ model keeps some layers in float). Inputs with a dynamic batch
dimension get one optimization profile ``(min, opt, max)``; other dynamic dimensions are refused.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

__all__ = ["PRECISIONS", "TrtBuildError", "build_serialized", "main", "strongly_typed", "write_bytes_atomic",
           "write_engine"]

PRECISIONS = ("fp32", "fp16", "int8")


class TrtBuildError(RuntimeError):
    """The ONNX model could not be parsed or built into an engine."""


def strongly_typed(version: str) -> bool:
    """Whether TensorRT ``version`` builds strongly typed networks (9.0 and later)."""
    try:
        return int(str(version).split(".")[0]) >= 9
    except ValueError:
        return True


def build_serialized(onnx_path: str, precision: str = "fp16", workspace_mib: int = 1024,
                     batch: tuple[int, int, int] = (1, 1, 1)) -> bytes:
    """Parse ``onnx_path`` and return the serialized engine.

    Args:
        precision: what the model holds (``fp32``, ``fp16`` or ``int8`` Q/DQ); sets builder flags only
            on TensorRT < 9.
        workspace_mib: builder workspace limit.
        batch: ``(min, opt, max)`` of a dynamic batch dimension.

    Raises:
        TrtBuildError: unknown precision, parse or build failure, dynamic dimensions beyond the batch.
        ImportError: TensorRT is not installed.
    """
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise TrtBuildError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = trt.NetworkDefinitionCreationFlag
    typed = getattr(flags, "STRONGLY_TYPED", None)
    network = builder.create_network(1 << int(typed if typed is not None else flags.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise TrtBuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [t for t in inputs if any(d < 0 for d in tuple(t.shape))]
    if dynamic:
        lo, opt, hi = batch
        profile = builder.create_optimization_profile()
        for t in dynamic:
            dims = tuple(t.shape)
            if any(d < 0 for d in dims[1:]):
                raise TrtBuildError(f"{onnx_path}: input {t.name} has dynamic dims beyond the batch: {dims}")
            profile.set_shape(t.name, (lo, *dims[1:]), (opt, *dims[1:]), (hi, *dims[1:]))
        config.add_optimization_profile(profile)
    if typed is None and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrtBuildError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    return bytes(serialized)


def write_engine(onnx_path: str, engine_path: str, precision: str = "fp16", min_batch: int = 1, opt_batch: int = 1,
                 max_batch: int = 32, workspace_mib: int = 1024) -> str:
    """Build ``onnx_path`` with a ``(min_batch, opt_batch, max_batch)`` profile and write the engine atomically.

    Returns the engine path. Raises what :func:`build_serialized` raises; no partial file is left.
    """
    data = build_serialized(onnx_path, precision, workspace_mib, (min_batch, opt_batch, max_batch))
    return write_bytes_atomic(engine_path, data)


def write_bytes_atomic(path: str, data: bytes) -> str:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place: a reader (or a second
    profiling process) never sees half an engine. Standard library only, for the reason this file is;
    the package's own outputs go through its io module."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a TensorRT engine from an ONNX model (TensorRT 8.5 or 9+).")
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--precision", default="fp16", choices=PRECISIONS,
                        help="what the model holds; sets builder flags on TensorRT < 9 only (default fp16)")
    parser.add_argument("--min-batch", type=int, default=1)
    parser.add_argument("--opt-batch", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--workspace-mib", type=int, default=1024)
    args = parser.parse_args(argv)
    try:
        path = write_engine(args.onnx, args.engine, args.precision, args.min_batch, args.opt_batch, args.max_batch,
                            args.workspace_mib)
    except (TrtBuildError, ImportError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
