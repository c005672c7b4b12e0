"""Write a float32 YuNet from the vendored int8 block-quantised one, exactly.

ONNX Runtime and OpenCV 4.6's DNN cannot run ``DequantizeLinear`` with ``block_size`` (opset 21), which the
vendored ``face_detection_yunet_2023mar_int8bq.onnx`` uses for its weights. Only the weights are quantised:
every ``DequantizeLinear -> Reshape`` pair on an initializer is replaced by its float32 result, computed as
the operator defines it (``(q - zero_point) * scale``, the scale repeated ``block_size`` times along
``axis``), so the float graph computes what the int8 graph computes. The input's height and width become
symbolic: the network is fully convolutional and the C++ detector pads each image to a multiple of 32, as
``cv2.FaceDetectorYN`` does.

    python cpp/tools/yunet_float.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

YUNET_DIR = Path(__file__).resolve().parents[2] / "models" / "yunet"
INT8_MODEL = YUNET_DIR / "face_detection_yunet_2023mar_int8bq.onnx"
FLOAT_MODEL = YUNET_DIR / "face_detection_yunet_2023mar_float.onnx"


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, block_size: int) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opset 21) on constants: per-tensor, per-axis or blocked along ``axis``."""
    zp = np.zeros_like(scale, dtype=np.int32) if zero_point is None else zero_point.astype(np.int32)
    scale = scale.astype(np.float32)
    if scale.ndim == 0:
        return ((q.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)
    axis = axis % q.ndim
    if block_size > 0:
        scale = np.repeat(scale, block_size, axis=axis)[tuple(slice(0, n) for n in q.shape)]
        zp = np.repeat(zp, block_size, axis=axis)[tuple(slice(0, n) for n in q.shape)]
    else:  # per-axis: a 1-D scale along ``axis``
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)


def to_float(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with its constant ``DequantizeLinear`` (and the ``Reshape`` after it) folded."""
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(name in inits for name in node.input if name):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            zero_point = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            folded[node.output[0]] = dequantize(inits[node.input[0]], inits[node.input[1]], zero_point,
                                                attrs.get("axis", 1), attrs.get("block_size", 0))
        elif node.op_type == "Reshape" and node.input[0] in folded and node.input[1] in inits:
            folded[node.output[0]] = folded[node.input[0]].reshape(inits[node.input[1]].tolist())
    if not folded:
        raise ValueError("no constant DequantizeLinear found: is this the int8 block-quantised YuNet?")
    keep = [n for n in graph.node if not all(out in folded for out in n.output)]
    used = {name for n in keep for name in n.input}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    del out.graph.initializer[:]
    out.graph.initializer.extend(i for i in graph.initializer if i.name in used)
    out.graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in folded.items() if name in used)
    del out.graph.value_info[:]
    dims = out.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in out.graph.output:  # (1, anchors, k): the anchor count follows the input size now
        output.type.tensor_type.shape.dim[1].dim_param = f"anchors_{output.name}"
    onnx.checker.check_model(out)
    return out


def check(float_path: Path, int8_path: Path) -> float:
    """Largest output difference between the float model (ONNX Runtime) and the int8 one (OpenCV DNN),
    on a random image."""
    import cv2
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    blob = rng.uniform(0, 255, (1, 3, 320, 480)).astype(np.float32)
    sess = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ours = sess.run(names, {sess.get_inputs()[0].name: blob})
    net = cv2.dnn.readNet(str(int8_path))
    net.setInput(blob)
    theirs = net.forward(names)
    return max(float(np.abs(a - np.asarray(b).reshape(a.shape)).max()) for a, b in zip(ours, theirs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=INT8_MODEL)
    parser.add_argument("--output", type=Path, default=FLOAT_MODEL)
    parser.add_argument("--check", action="store_true", help="compare the outputs with OpenCV running the int8 model")
    args = parser.parse_args(argv)
    onnx.save(to_float(onnx.load(str(args.input))), str(args.output))
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} KB)")
    if args.check:
        print(f"largest output difference vs the int8 model in OpenCV: {check(args.output, args.input):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
