"""ONNX -> TensorRT FP16 engine with one dynamic-batch profile (1 / 8 / 64 by default).

TensorRT 10 builds from the fp32 ``model.onnx`` with ``BuilderFlag.FP16`` (weak
typing). TensorRT 11 removed that flag: there the FP16 graph ``model_fp16.onnx``
(precision in the graph) is built as a strongly typed network. Beside the engine
goes a JSON sidecar (TensorRT version, GPU, profile, manifest, ONNX sha256) that
the runtime checks, because an engine only runs where it was built; the file name
says the TensorRT version and GPU too. One TensorRT logger serves the process.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from ..backends.base import BackendError
from ..backends.trt import (
    INSTALL_HINT,
    EngineSidecar,
    Profile,
    gpu_info,
    import_tensorrt,
    runtime_tag,
    sidecar_path,
    trt_logger,
    write_sidecar,
)
from ..model import Manifest, sha256
from ..outputs import write_file_atomic

from .onnx import INPUT_NAME, OUTPUT_NAME

DEFAULT_PROFILE = Profile(min=1, opt=8, max=64)
DEFAULT_WORKSPACE_GB = 4.0


def parse_profile(text: str) -> Profile:
    """``"1,8,64"`` -> Profile(min=1, opt=8, max=64); ValueError unless 1 <= min <= opt <= max."""
    try:
        lo, opt, hi = (int(v) for v in text.split(","))
    except ValueError as exc:
        raise ValueError(f"--profile must be MIN,OPT,MAX batch sizes, e.g. 1,8,64; got {text!r}") from exc
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"--profile needs 1 <= min <= opt <= max, got {text!r}")
    return Profile(min=lo, opt=opt, max=hi)


def engine_name(profile: Profile, precision: str = "fp16", runtime: dict[str, str] | None = None) -> str:
    """File name of an engine: ``model_fp16_b1-8-64_trt10.13.0.35_sm90_nvidia-h200.engine`` for ``runtime``
    (:func:`~facealign_sdk.backends.trt.runtime_info`), so that engines built on two machines do not overwrite
    each other; ``model_fp16_b1-8-64.engine`` without one (a trtexec build, TensorRT and GPU unknown here)."""
    stem = f"model_{precision}_b{profile.min}-{profile.opt}-{profile.max}"
    return f"{stem}_{runtime_tag(runtime)}.engine" if runtime else f"{stem}.engine"


def _shape(batch: int, size: int) -> str:
    return f"{INPUT_NAME}:{batch}x3x{size}x{size}"


def trtexec_command(onnx_path: Path, engine_path: Path, input_size: int = 256, profile: Profile = DEFAULT_PROFILE,
                    fp16_flag: bool = True) -> str:
    """The equivalent ``trtexec`` command line (``fp16_flag``: TensorRT 10 weak typing; leave out for TensorRT 11
    with the FP16 ONNX graph)."""
    parts = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        *(["--fp16"] if fp16_flag else []),
        f"--minShapes={_shape(profile.min, input_size)}",
        f"--optShapes={_shape(profile.opt, input_size)}",
        f"--maxShapes={_shape(profile.max, input_size)}",
    ]
    return " ".join(parts)


def trtexec_lines(out_dir: Path, input_size: int, profile: Profile) -> list[str]:
    """The trtexec commands for TensorRT 10 (fp32 graph + --fp16) and TensorRT 11 (fp16 graph, strongly typed)."""
    engine = out_dir / engine_name(profile)
    return [
        "# TensorRT 10: " + trtexec_command(out_dir / "model.onnx", engine, input_size, profile, fp16_flag=True),
        "# TensorRT 11: " + trtexec_command(out_dir / "model_fp16.onnx", engine, input_size, profile, fp16_flag=False),
        "# (a trtexec engine has no sidecar: it loads with a warning, unchecked against the weights; "
        "export --to trt writes one)",
    ]


def require_tensorrt():
    """The ``tensorrt`` module for building; BackendError (exit 2) with the install hint when missing."""
    try:
        return import_tensorrt()
    except BackendError:
        raise BackendError(f"--to trt needs TensorRT on this machine: {INSTALL_HINT}; or build the engine "
                           "where it will run with the trtexec command printed above") from None


def weak_typing(trt) -> bool:
    """True where the builder still has ``BuilderFlag.FP16`` (TensorRT 10); False on TensorRT 11+."""
    return hasattr(trt.BuilderFlag, "FP16")


def _parse(trt, builder, logger, onnx_path: Path, strongly_typed: bool):
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if strongly_typed and hasattr(creation, "STRONGLY_TYPED"):
        flags |= 1 << int(creation.STRONGLY_TYPED)
    if hasattr(creation, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(creation.EXPLICIT_BATCH)  # explicit batch is the only mode (and the default) from TRT 10
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ValueError(f"TensorRT cannot parse {onnx_path.name}: " + "; ".join(errors or ["unknown parser error"]))
    return network, parser


def build_engine(
    out_dir: Path,
    manifest: Manifest,
    profile: Profile = DEFAULT_PROFILE,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
) -> Path:
    """Build an FP16 engine from ``out_dir/model.onnx`` (TRT 10) or ``out_dir/model_fp16.onnx`` (TRT 11+).

    Writes ``out_dir/model_fp16_b<min>-<opt>-<max>_<TensorRT and GPU>.engine`` (:func:`engine_name`) and its
    sidecar JSON; returns the engine path.
    """
    trt = require_tensorrt()
    gpu = gpu_info()
    runtime = {"tensorrt_version": trt.__version__, **gpu}
    weak = weak_typing(trt)
    onnx_path = out_dir / ("model.onnx" if weak else "model_fp16.onnx")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path}: needed to build the engine (export --to onnx,fp16 first)")
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path, strongly_typed=not weak)
    config = builder.create_builder_config()
    if weak:
        config.set_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    opt_profile = builder.create_optimization_profile()
    size = manifest.input_size
    opt_profile.set_shape(INPUT_NAME, (profile.min, 3, size, size), (profile.opt, 3, size, size),
                          (profile.max, 3, size, size))
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the TensorRT log above)")
    engine_path = out_dir / engine_name(profile, "fp16", runtime)
    write_file_atomic(engine_path, bytes(serialized))  # whole or not at all: runtimes load any *.engine
    sidecar = EngineSidecar(
        tensorrt_version=trt.__version__,
        gpu_name=gpu["gpu_name"],
        compute_capability=gpu["compute_capability"],
        precision="fp16",
        profile=profile,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        onnx_file=onnx_path.name,
        onnx_sha256=sha256(onnx_path),
        manifest=manifest.model_dump(mode="json"),
        built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    write_sidecar(engine_path, sidecar)
    return engine_path


__all__ = [
    "DEFAULT_PROFILE", "build_engine", "engine_name", "parse_profile", "require_tensorrt", "sidecar_path",
    "trtexec_command", "trtexec_lines", "weak_typing",
]
