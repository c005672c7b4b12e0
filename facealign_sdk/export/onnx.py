"""PyTorch -> ONNX: the whole landmark network as one graph (``model.onnx``).

Input ``image`` (N, 3, 256, 256) float32 RGB in [0, 1], output ``heatmaps``
(N, L, 128, 128) float32, dynamic batch, opset 17, a single file (no external
data), a copy of the model manifest at export time in ``metadata_props`` (``manifest.json`` beside the
graph stays the reference: conventions, decoder blur and tracker settings chosen after the export are only
there). The weights are stored in fp16 and cast to fp32 inside the graph (:func:`store_weights_fp16`):
half the file, the same fp32 arithmetic (runtimes fold the casts when they load it), landmarks within 0.03 px of fp32
weights on the released model, and the parity report checks every export. Optionally a second graph
``model_decode.onnx`` decodes inside (argmax + soft-argmax refinement) and outputs
``points`` (N, L, 2, heatmap px) and ``scores`` (N, L).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

from ..codec import HeatmapCodec
from ..decode import blur_kernel, expected_mass
from ..backends.base import INPUT_NAME
from ..backends.ort import DECODE_OUTPUTS
from ..model import Manifest

OPSET = 17
OUTPUT_NAME = "heatmaps"
METADATA_KEY = "facealign.manifest"
# reduce ops whose ``axes`` became an input in opset 18 (an attribute in opset 17; ReduceSum changed in 13)
_REDUCE_OPS = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}
# ops whose signature changed between opsets 17 and 18 (apart from the reduce ops handled above)
_CHANGED_IN_18 = {"Pad", "Resize", "Split", "ScatterElements", "ScatterND", "Col2Im", "BitwiseAnd", "BitwiseNot",
                  "BitwiseOr", "BitwiseXor", "CenterCropPad", "GroupNormalization", "LpPool", "Mish", "OptionalHasElement",
                  "OptionalGetElement"}

log = logging.getLogger("facealign_sdk")


def manifest_metadata(manifest: Manifest) -> dict[str, str]:
    """``metadata_props`` for an exported graph: the whole manifest plus the fields a runtime reads most."""
    return {
        METADATA_KEY: manifest.model_dump_json(),
        "name": manifest.name,
        "num_landmarks": str(manifest.num_landmarks),
        "landmark_scheme": manifest.landmark_scheme,
        "input_size": str(manifest.input_size),
        "heatmap_size": str(manifest.heatmap_size),
        "mean": json.dumps(list(manifest.mean)),
        "std": json.dumps(list(manifest.std)),
        "input_format": manifest.input_format,
        "weights_sha256": manifest.weights_sha256,
    }


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model, metadata: dict[str, str]) -> None:
    """Replace the ``metadata_props`` of an ``onnx.ModelProto`` in place with ``metadata``."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _constant_ints(model, name: str) -> list[int] | None:
    """The int values of an initializer or Constant node output called ``name`` (None if not constant)."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return [int(v) for v in numpy_helper.to_array(init).ravel()]
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return [int(v) for v in numpy_helper.to_array(attr.t).ravel()]
    return None


def downgrade_to_opset17(model) -> None:
    """Rewrite an opset-18 graph (what the torch.export-based exporter writes) as opset 17, in place.

    Only the reduce ops differ for this network: their ``axes`` input becomes an
    attribute. Any other op whose signature changed raises ValueError rather
    than writing a wrong graph.
    """
    from onnx import helper

    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None or version <= OPSET:
        return
    if version > 18:
        raise ValueError(f"cannot downgrade an opset-{version} graph to opset {OPSET}")
    changed = sorted({n.op_type for n in model.graph.node if n.op_type in _CHANGED_IN_18})
    if changed:
        raise ValueError(f"graph uses ops that changed in opset 18 ({', '.join(changed)}); cannot write opset {OPSET}")
    for node in model.graph.node:
        if node.op_type not in _REDUCE_OPS:
            continue
        noop = next((a.i for a in node.attribute if a.name == "noop_with_empty_axes"), 0)
        kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
        if len(node.input) > 1 and node.input[1]:
            axes = _constant_ints(model, node.input[1])
            if axes is None:
                raise ValueError(f"{node.name}: reduce axes are not constant; cannot write opset {OPSET}")
            kept.append(helper.make_attribute("axes", axes))
            del node.input[1:]
        elif noop:
            raise ValueError(f"{node.name}: noop_with_empty_axes=1 has no opset-{OPSET} equivalent")
        del node.attribute[:]
        node.attribute.extend(kept)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = OPSET


def _torch_export(module, example, path: Path, output_names: list[str], input_name: str = INPUT_NAME) -> None:
    """``torch.onnx.export`` with the torch.export-based exporter and a dynamic batch dimension."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            None,
            input_names=[input_name],
            output_names=output_names,
            dynamic_shapes=({0: batch},),
            opset_version=18,  # the exporter's native opset; downgraded to 17 below
            dynamo=True,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def drop_unused_initializers(model) -> None:
    """Remove initializers and Constant nodes nothing reads (reduce axes left by the opset downgrade), in place."""
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    nodes = [n for n in model.graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    if len(nodes) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


# the layers whose weights (input 1) are stored in fp16; other constants (biases, the decoder's grids and
# kernels) stay fp32: they are small, and the decoder's would lose precision the landmarks need
_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_FP16_SUFFIX = ".fp16"


def store_weights_fp16(model) -> int:
    """Store the weights of every convolution and matrix product as fp16 followed by a Cast back to float32,
    in place; returns how many bytes that saves.

    The graph computes in fp32 as before: ONNX Runtime and OpenVINO fold the casts when they load it. Why:
    the file (and the repository, the wheel, what a GPU machine is sent) shrinks by half for a change of
    the weights of at most 2^-11 relative, far inside the fp32 parity limit.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights_of_layers = {n.input[1] for n in model.graph.node if n.op_type in _WEIGHT_OPS and len(n.input) > 1}
    kept, casts, saved = [], [], 0
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name not in weights_of_layers:
            kept.append(init)
            continue
        weights = numpy_helper.to_array(init)
        if not np.all(np.abs(weights) <= np.finfo(np.float16).max):
            kept.append(init)  # would overflow fp16: stays fp32
            continue
        kept.append(numpy_helper.from_array(weights.astype(np.float16), init.name + _FP16_SUFFIX))
        casts.append(helper.make_node("Cast", [init.name + _FP16_SUFFIX], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "/to_fp32"))
        saved += weights.nbytes // 2
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    nodes = casts + list(model.graph.node)  # the casts first: the graph stays topologically sorted
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return saved


def load_fp32_graph(path: str | Path):
    """An ONNX file as an ``onnx.ModelProto`` with fp32 initializers: the casts of :func:`store_weights_fp16`
    folded back, for the tools that rewrite weights (fp16 conversion, int8 quantization). A graph without
    such casts (an fp32 export of an earlier version) comes back as it is."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path))
    stored = {init.name: init for init in model.graph.initializer if init.data_type == TensorProto.FLOAT16}
    folded, nodes = [], []
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to == TensorProto.FLOAT and node.input[0] in stored:
            # one fp32 initializer per cast, named as its output; the fp16 one stays while anything else reads it
            folded.append(numpy_helper.from_array(
                numpy_helper.to_array(stored[node.input[0]]).astype("float32"), node.output[0]))
        else:
            nodes.append(node)
    if folded:
        model.graph.initializer.extend(folded)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        drop_unused_initializers(model)
    return model


def _finish(path: Path, manifest: Manifest, extra: dict[str, str] | None = None, fp16_weights: bool = False) -> Path:
    """Downgrade to opset 17, store the weights in fp16 when asked, attach the manifest metadata, check and save
    (single file)."""
    import onnx

    model = onnx.load(str(path))
    downgrade_to_opset17(model)
    drop_unused_initializers(model)
    if fp16_weights:
        store_weights_fp16(model)
    # drop the exporter's per-node debugging metadata (stack traces): smaller, and no local paths in a release
    for node in model.graph.node:
        del node.metadata_props[:]
    set_metadata(model, {**manifest_metadata(manifest), **(extra or {})})
    model.producer_name = "facealign-sdk"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def export_onnx(net, manifest: Manifest, out_path: str | Path) -> Path:
    """Export a LandmarkNet (fp32, eval mode) as ``out_path`` (opset 17, dynamic batch, one file)."""
    import torch

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 3, manifest.input_size, manifest.input_size, generator=torch.Generator().manual_seed(0))
    _torch_export(net.eval().float(), example, out, [OUTPUT_NAME])
    _finish(out, manifest, {"outputs": OUTPUT_NAME, "weights": "fp16 storage, fp32 arithmetic"}, fp16_weights=True)
    check_io(out, manifest.num_landmarks, manifest.input_size, manifest.heatmap_size)
    return out


# ---------------------------------------------------------------------------------------------
# decoding inside the graph


def decoder_module(num_landmarks: int, codec: HeatmapCodec):
    """A torch module ``heatmaps -> (points, scores)``: ``codec.decode(..., "soft")`` written in tensor ops
    (:meth:`facealign_sdk.codec.HeatmapCodec.decoder_module`)."""
    import torch
    from torch import nn

    def _mirror(idx: torch.Tensor, size: int) -> torch.Tensor:
        idx = idx.abs()
        return torch.where(idx > size - 1, 2 * (size - 1) - idx, idx)

    class HeatmapDecoder(nn.Module):
        """(N, L, H, W) heatmaps -> points (N, L, 2) heatmap px, scores (N, L); matches facealign_sdk.decode."""

        def __init__(self) -> None:
            super().__init__()
            self.soft_radius = codec.soft_window // 2
            self.conf_radius = codec.confidence_window // 2
            self.power = codec.soft_power
            self.expected_mass = expected_mass(codec.confidence_window, codec.target_sigma)
            self.blurs = codec.blur_sigma > 0  # a release without blur gets no identity convolutions
            kernel = torch.from_numpy(blur_kernel(codec.blur_sigma)) if self.blurs else torch.ones(1)
            # one depthwise filter per map (groups=L): ~8x faster in ONNX Runtime than L one-channel images
            self.register_buffer("kernel_x", kernel.view(1, 1, 1, -1).repeat(num_landmarks, 1, 1, 1))
            self.register_buffer("kernel_y", kernel.view(1, 1, -1, 1).repeat(num_landmarks, 1, 1, 1))

        def blur(self, hm: torch.Tensor) -> torch.Tensor:
            """Gaussian blur of every map, zero outside (facealign_sdk.decode.blur_heatmaps)."""
            if not self.blurs:
                return hm
            lm, r = hm.shape[1], self.kernel_x.shape[-1] // 2
            x = nn.functional.conv2d(hm, self.kernel_x, padding=(0, r), groups=lm)
            return nn.functional.conv2d(x, self.kernel_y, padding=(r, 0), groups=lm)

        def forward(self, hm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            n, lm, h, w = hm.shape
            flat = hm.reshape(n, lm, h * w)
            blurred = self.blur(hm).reshape(n, lm, h * w)
            idx = blurred.argmax(dim=-1)  # (N, L)
            iy = torch.div(idx, w, rounding_mode="floor")
            ix = idx - iy * w

            def window(source: torch.Tensor, radius: int, edge: bool) -> torch.Tensor:
                # like facealign_sdk.decode._window_values: mirrored about the border pixel (edge) or 0 outside
                offs = torch.arange(-radius, radius + 1, device=hm.device)
                xs = ix[..., None] + offs  # (N, L, k)
                ys = iy[..., None] + offs
                valid = ((ys >= 0) & (ys < h))[..., :, None] & ((xs >= 0) & (xs < w))[..., None, :]
                if edge:
                    xs, ys = _mirror(xs, w), _mirror(ys, h)
                lin = ys.clamp(0, h - 1)[..., :, None] * w + xs.clamp(0, w - 1)[..., None, :]  # (N, L, k, k)
                k = 2 * radius + 1
                vals = torch.gather(source, 2, lin.reshape(n, lm, k * k)).reshape(n, lm, k, k)
                return vals if edge else torch.where(valid, vals, torch.zeros_like(vals))

            patch = window(blurred, self.soft_radius, edge=True)
            peak = patch.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
            weights = (patch.clamp_min(0.0) / peak) ** self.power
            total = weights.sum(dim=(-2, -1)).clamp_min(1e-12)
            r = torch.arange(-self.soft_radius, self.soft_radius + 1, device=hm.device, dtype=hm.dtype)
            ox = (weights.sum(dim=-2) * r).sum(dim=-1) / total
            oy = (weights.sum(dim=-1) * r).sum(dim=-1) / total
            points = torch.stack([ix.to(hm.dtype) + ox, iy.to(hm.dtype) + oy], dim=-1)
            mass = window(flat, self.conf_radius, edge=False).sum(dim=(-2, -1))
            scores = (mass / self.expected_mass).clamp(0.0, 1.0)
            return points, scores

    return HeatmapDecoder().eval()


def _rename(graph, old: str, new: str) -> None:
    """Rename a tensor everywhere in a graph (node inputs/outputs, graph inputs/outputs)."""
    for node in graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == old:
                    names[i] = new
    for value in list(graph.input) + list(graph.output):
        if value.name == old:
            value.name = new


def append_decoder(heatmap_model, decoder_model):
    """One graph: ``heatmap_model`` (image -> heatmaps) followed by ``decoder_model`` (heatmaps -> points, scores)."""
    from onnx import compose, helper

    dec = compose.add_prefix(decoder_model, "decode/")
    _rename(dec.graph, "decode/" + OUTPUT_NAME, OUTPUT_NAME)
    for name in DECODE_OUTPUTS:
        _rename(dec.graph, "decode/" + name, name)
    net = heatmap_model.graph
    graph = helper.make_graph(
        list(net.node) + list(dec.graph.node),
        "facealign_landmarks_decoded",
        list(net.input),
        list(dec.graph.output),
        list(net.initializer) + list(dec.graph.initializer),
    )
    return helper.make_model(graph, opset_imports=list(heatmap_model.opset_import), ir_version=heatmap_model.ir_version)


def export_decode_onnx(heatmap_onnx: str | Path, manifest: Manifest, out_path: str | Path) -> Path:
    """``heatmap_onnx`` (model.onnx) + decoding as one graph: ``image`` -> ``points`` (N, L, 2, heatmap px), ``scores`` (N, L)."""
    import onnx
    import torch

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = manifest.heatmap_size
    example = torch.rand(2, manifest.num_landmarks, size, size, generator=torch.Generator().manual_seed(0))
    codec = manifest.heatmap_codec()
    _torch_export(codec.decoder_module(manifest.num_landmarks), example, out, list(DECODE_OUTPUTS),
                  input_name=OUTPUT_NAME)
    decoder = onnx.load(str(out))
    downgrade_to_opset17(decoder)
    onnx.save(append_decoder(onnx.load(str(heatmap_onnx)), decoder), str(out))  # its weights stay as stored
    extra = {"outputs": ",".join(DECODE_OUTPUTS),
             "decode": f"soft-argmax of the maps blurred with sigma {codec.blur_sigma:g} (0: not blurred; window "
                       f"{codec.soft_window}, power {codec.soft_power:g}); points in heatmap pixels"}
    stored = read_metadata(heatmap_onnx).get("weights")  # the network's weights stay stored as they were
    if stored is not None:
        extra["weights"] = stored
    return _finish(out, manifest, extra)


def check_io(path: str | Path, num_landmarks: int, input_size: int, heatmap_size: int) -> None:
    """Raise ValueError when an exported heatmap graph's I/O is not what the runtime expects."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def dims(value) -> list[object]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inp, out = model.graph.input[0], model.graph.output[0]
    if inp.name != INPUT_NAME or dims(inp)[1:] != [3, input_size, input_size] or isinstance(dims(inp)[0], int):
        raise ValueError(f"{path}: input {inp.name} {dims(inp)} is not {INPUT_NAME} [batch, 3, {input_size}, {input_size}]")
    if dims(out)[1:] != [num_landmarks, heatmap_size, heatmap_size]:
        raise ValueError(f"{path}: output {out.name} {dims(out)} is not [batch, {num_landmarks}, {heatmap_size}, {heatmap_size}]")


__all__ = [
    "INPUT_NAME", "METADATA_KEY", "OPSET", "OUTPUT_NAME", "check_io", "downgrade_to_opset17", "export_decode_onnx",
    "export_onnx", "manifest_metadata", "read_metadata", "set_metadata",
]
