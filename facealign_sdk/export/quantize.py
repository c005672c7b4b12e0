"""Reduced-precision ONNX graphs: FP16 (``model_fp16.onnx``) and int8 static QDQ (``model_int8.onnx``).

Both keep the float32 ``image`` input and ``heatmaps`` output, so the runtime feeds
them exactly like ``model.onnx``. The int8 graph is calibrated on real face crops
(the deterministic runtime crop of annotated faces, as the runtime sees them).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np

from ..resources import shared_data
from .onnx import INPUT_NAME, load_fp32_graph, read_metadata, set_metadata

log = logging.getLogger("facealign_sdk")

# calibration: faces of ytf68/train, a deterministic even spread over the folder
DEFAULT_CALIB = shared_data("ytf68", "train")
DEFAULT_CALIB_COUNT = 96
CALIB_BATCH = 8


# ---------------------------------------------------------------------------------------------
# face crops (calibration and parity)


def pick_evenly(files: list[Path], count: int) -> list[Path]:
    """``count`` files spread evenly over a sorted list (all when there are fewer)."""
    if count <= 0:
        raise ValueError(f"crop count must be positive, got {count}")
    if len(files) <= count:
        return list(files)
    idx = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[i] for i in idx]


def load_face_crops(folder: str | Path, count: int, crop_size: int = 256, num_points: int = 68) -> np.ndarray:
    """(N, 3, S, S) float32 RGB in [0, 1]: runtime crops of ``count`` annotated faces (image + .pts) of ``folder``."""
    from ..imageio import read_image
    from ..pts import check_points_in_image, read_pts
    from ..training.data import Annotated, landmark_sample, list_images

    crops = []
    for path in pick_evenly(list_images(folder), count):
        pts = path.with_suffix(".pts")
        if not pts.is_file():
            raise FileNotFoundError(f"{path}: no landmark file {pts.name} beside it (calibration needs annotated faces)")
        image, points = read_image(path), read_pts(pts, num_points)
        check_points_in_image(points, image, path)  # a crop of the wrong place would calibrate on no face
        crop, _ = landmark_sample(Annotated(image, points, path.name), crop_size, None)
        crops.append(crop)
    return to_batch(np.stack(crops))


def to_batch(crops_rgb8: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB -> (N, 3, S, S) float32 in [0, 1] (the network's input)."""
    return np.ascontiguousarray(crops_rgb8.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def noise_crops(count: int, crop_size: int = 256, seed: int = 0) -> np.ndarray:
    """(N, 3, S, S) float32 uniform noise: a stand-in when no face data is available (tests)."""
    return np.random.default_rng(seed).random((count, 3, crop_size, crop_size), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# FP16


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write an FP16 copy of an ONNX graph (weights and activations fp16; float32 input/output kept)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = load_fp32_graph(src)
    meta = {p.key: p.value for p in model.metadata_props}
    half = convert_float_to_float16(model, keep_io_types=True)
    sort_nodes(half.graph)  # the converter appends its input casts after their consumers
    set_metadata(half, {**meta, "precision": "fp16", "weights": "fp16"})
    onnx.checker.check_model(half, full_check=True)
    onnx.save(half, str(dst))
    return Path(dst)


def sort_nodes(graph) -> None:
    """Put a graph's nodes in topological order (stable: keeps the given order where it can), in place."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    nodes = list(graph.node)
    deps = [{producer[x] for x in node.input if x in producer and producer[x] != i} for i, node in enumerate(nodes)]
    done: set[int] = set()
    order: list[int] = []

    def visit(i: int, stack: set[int]) -> None:
        if i in done:
            return
        if i in stack:
            raise ValueError(f"graph has a cycle through node {nodes[i].name!r}")
        stack.add(i)
        for j in sorted(deps[i]):
            visit(j, stack)
        stack.discard(i)
        done.add(i)
        order.append(i)

    for i in range(len(nodes)):
        visit(i, set())
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


# ---------------------------------------------------------------------------------------------
# ConvTranspose -> sub-pixel convolution (for int8 on CPU)


def _subpixel_weights(weight: np.ndarray, bias: np.ndarray | None, kernel: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Conv weights (4*Cout, Cin, k', k') + bias equivalent to a stride-2 ConvTranspose (k=4 p=1, or k=2 p=0)
    followed by DepthToSpace(2, CRD). Output channel (o, ry, rx) is output pixel (2m+ry, 2n+rx) of channel o."""
    cin, cout = weight.shape[:2]
    if kernel == 2:
        conv = weight.transpose(1, 2, 3, 0).reshape(cout * 4, cin, 1, 1)
    else:
        conv = np.zeros((cout, 2, 2, cin, 3, 3), weight.dtype)
        for ry in range(2):
            for rx in range(2):
                for a in range(3):  # input row offset a - 1
                    for b in range(3):
                        ky, kx = ry + 1 - 2 * (a - 1), rx + 1 - 2 * (b - 1)
                        if 0 <= ky < 4 and 0 <= kx < 4:
                            conv[:, ry, rx, :, a, b] = weight[:, :, ky, kx].T
        conv = conv.reshape(cout * 4, cin, 3, 3)
    return np.ascontiguousarray(conv), None if bias is None else np.repeat(bias, 4)


def _subpixel_kernel(node) -> int | None:
    """4 or 2 for a ConvTranspose the sub-pixel rewrite handles exactly (stride 2, k4 p1 / k2 p0), else None."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    kernel = list(attrs.get("kernel_shape", []))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    plain = (attrs.get("group", 1) == 1 and list(attrs.get("dilations", [1, 1])) == [1, 1]
             and not any(attrs.get("output_padding", [])) and "output_shape" not in attrs
             and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") and list(attrs.get("strides", [])) == [2, 2])
    if plain and kernel == [4, 4] and pads == [1, 1, 1, 1]:
        return 4
    if plain and kernel == [2, 2] and pads == [0, 0, 0, 0]:
        return 2
    return None


def convtranspose_to_subpixel(model, keep: Collection[str] = ()) -> int:
    """Rewrite stride-2 ConvTranspose nodes (except those named in ``keep``) as Conv + DepthToSpace (exact),
    in place; returns how many.

    ONNX Runtime's CPU kernels have no int8 ConvTranspose, so a quantized
    ConvTranspose runs dequantized in float; as a Conv it runs in int8. A layer that stays in float
    is better kept: as a float Conv + DepthToSpace the heatmap head ran 1.8x slower on OpenVINO
    (3.4 vs 1.9 ms per face, fabrec-scaf-w32, 2 threads) and no faster on ONNX Runtime.
    """
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes, count = [], 0
    for node in model.graph.node:
        kernel = _subpixel_kernel(node) if node.op_type == "ConvTranspose" and node.name not in keep else None
        if kernel is None or node.input[1] not in inits or (len(node.input) > 2 and node.input[2] not in inits):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
        conv_w, conv_b = _subpixel_weights(weight, bias, kernel)
        base = f"{node.name or node.output[0]}/subpixel"
        model.graph.initializer.append(numpy_helper.from_array(conv_w, base + "/W"))
        inputs = [node.input[0], base + "/W"]
        if conv_b is not None:
            model.graph.initializer.append(numpy_helper.from_array(conv_b, base + "/B"))
            inputs.append(base + "/B")
        pad = 1 if kernel == 4 else 0
        nodes.append(helper.make_node("Conv", inputs, [base + "/out"], name=base + "/conv",
                                      kernel_shape=[3, 3] if kernel == 4 else [1, 1], pads=[pad] * 4))
        nodes.append(helper.make_node("DepthToSpace", [base + "/out"], list(node.output), name=base + "/d2s",
                                      blocksize=2, mode="CRD"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.value_info[:]  # shapes changed inside; re-inferred by the quantizer
    from .onnx import drop_unused_initializers

    drop_unused_initializers(model)
    return count


# ---------------------------------------------------------------------------------------------
# int8 static QDQ


def crop_reader(crops: np.ndarray, batch: int = CALIB_BATCH, input_name: str = INPUT_NAME):
    """An onnxruntime ``CalibrationDataReader`` that yields (N, 3, S, S) float32 ``crops`` in batches."""
    from onnxruntime.quantization import CalibrationDataReader

    if crops.ndim != 4 or len(crops) == 0:
        raise ValueError(f"calibration crops must be a non-empty (N, 3, S, S) array, got {crops.shape}")
    data = np.ascontiguousarray(crops, dtype=np.float32)

    class CropReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = iter(())
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = ({input_name: data[i : i + batch]} for i in range(0, len(data), batch))

    return CropReader()


def _preprocess(src: Path, dst: Path) -> Path:
    """``quant_pre_process`` (shape inference + BatchNorm folding); the source graph when it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return dst
    except Exception as exc:  # pre-processing is an optimisation, not a requirement
        log.warning("quant_pre_process failed (%s); quantizing the graph as exported", exc)
        return src


def _head_nodes(model_path: Path) -> list[str]:
    """Names of the nodes that compute the graph's outputs (the heatmap head, through any DepthToSpace)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    producer = {out: n for n in model.graph.node for out in n.output}
    heads, todo = [], [o.name for o in model.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in heads:
            continue
        heads.append(node.name)
        if node.op_type in ("DepthToSpace", "Reshape", "Transpose"):  # data movement: the layer is behind it
            todo.append(node.input[0])
    return heads


def quantize_int8(
    src: str | Path,
    dst: str | Path,
    crops: np.ndarray,
    per_channel: bool = True,
    keep_head_fp32: bool = True,
    method: str = "MinMax",
    activations: str = "uint8",
    reduce_range: bool = False,
    subpixel: bool = True,
) -> Path:
    """Static int8 QDQ quantization of an fp32 ONNX graph, calibrated on ``crops``.

    Weights int8 per output channel. Activations ``"uint8"`` (U8S8, asymmetric: the
    fast path of ONNX Runtime's x86 CPU kernels, measured about 20 % faster than
    S8S8 on an AVX512-VNNI CPU here) or ``"int8"`` (S8S8, symmetric: what TensorRT
    takes). ``reduce_range`` (7-bit weights) avoids U8S8 saturation on x86 CPUs
    without VNNI. ``keep_head_fp32`` leaves the last layer (the heatmap head) in
    float so the heatmaps are not quantized to 256 levels, which would move
    soft-argmax landmarks by a visible fraction of a pixel. ``subpixel`` first rewrites
    the stride-2 ConvTransposes that are quantized as Conv + DepthToSpace (exact), so they run
    in int8 on ONNX Runtime's CPU kernels too.
    """
    import onnx

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    act_types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    if activations not in act_types:
        raise ValueError(f"int8 activations must be uint8 or int8, got {activations!r}")
    if method not in CalibrationMethod.__members__:
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(CalibrationMethod.__members__)}")
    src, dst = Path(src), Path(dst)
    meta = read_metadata(src)
    root = logging.getLogger()
    root_level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a warning per rank-1 weight it cannot quantize per channel
    try:
        with tempfile.TemporaryDirectory(prefix="facealign-int8-") as tmp:
            model = load_fp32_graph(src)  # the quantizer reads weights from fp32 initializers, not through casts
            if subpixel:
                convtranspose_to_subpixel(model, keep=_head_nodes(src) if keep_head_fp32 else ())
            source = Path(tmp) / "fp32.onnx"
            onnx.save(model, str(source))
            prepared = _preprocess(source, Path(tmp) / "prepared.onnx")
            quantize_static(
                prepared,
                dst,
                crop_reader(crops),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=act_types[activations],
                weight_type=QuantType.QInt8,
                reduce_range=reduce_range,
                nodes_to_exclude=_head_nodes(prepared) if keep_head_fp32 else [],
                calibrate_method=CalibrationMethod[method],
                extra_options={"ActivationSymmetric": activations == "int8"},
            )
    finally:
        root.setLevel(root_level)
    _stamp(dst, {**meta, "precision": "int8-qdq", "weights": "int8, fp32 in the layers left in float",
                 "calibration_faces": str(len(crops)), "calibration_method": method,
                 "int8_head": "fp32" if keep_head_fp32 else "int8", "int8_activations": activations,
                 "int8_reduce_range": str(reduce_range).lower(), "int8_subpixel": str(subpixel).lower()})
    return dst


def _stamp(path: Path, metadata: dict[str, str]) -> None:
    """Rewrite an ONNX file's metadata (the quantizer drops the source's) and check it."""
    import onnx

    model = onnx.load(str(path))
    set_metadata(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
