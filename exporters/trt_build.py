"""Build a TensorRT engine from ONNX with the TensorRT Python API (strongly typed network).

Self-contained on purpose (standard library + ``tensorrt`` only): engines must be built on the
device that runs them, so this file can be copied to a Jetson and run there without dass-edge:

    python3 trt_build.py --onnx student.int8-trt.onnx --engine student.int8.engine --opt-batch 1

A strongly typed network takes each layer's precision from the ONNX types: INT8 comes from the
model's Q/DQ nodes (TensorRT 10.1+), FP16 from an FP16 ONNX. No precision flags are set.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

__all__ = ["TrtBuildError", "build_engine", "main"]


class TrtBuildError(RuntimeError):
    """The ONNX model could not be parsed or built into an engine."""


def build_engine(onnx_path: str, engine_path: str, min_batch: int = 1, opt_batch: int = 1, max_batch: int = 32,
                 workspace_mib: int = 1024) -> str:
    """Parse ``onnx_path``, build a strongly typed engine with a dynamic-batch profile, write it atomically.

    Returns the engine path. Raises :class:`TrtBuildError` (parse or build failure) or ImportError.
    """
    import tensorrt as trt

    if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise TrtBuildError(f"TensorRT {trt.__version__} has no strongly typed networks; INT8 from Q/DQ needs 10.1+")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise TrtBuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrtBuildError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    folder = os.path.dirname(os.path.abspath(engine_path))
    fd, tmp = tempfile.mkstemp(prefix=".engine.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(serialized))
        os.replace(tmp, engine_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return engine_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a strongly typed TensorRT engine from an ONNX model.")
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--min-batch", type=int, default=1)
    parser.add_argument("--opt-batch", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--workspace-mib", type=int, default=1024)
    args = parser.parse_args(argv)
    try:
        path = build_engine(args.onnx, args.engine, args.min_batch, args.opt_batch, args.max_batch, args.workspace_mib)
    except (TrtBuildError, ImportError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
