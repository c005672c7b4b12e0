"""Where does int8 lose landmark precision? A PyTorch simulation of the int8 ONNX graph, switched on part by part.

``facealign export --to int8`` (static QDQ, ONNX Runtime) moves this model's landmarks by p99
~1 px from the fp32 model's, above the export's 0.5 px gate. To see why, :func:`simulate_int8`
makes a copy of the network compute what ONNX Runtime's int8 graph computes (up to bias rounding
and the odd one-step rounding difference):

* weights: symmetric int8 per output channel of the *BatchNorm-folded* convolution, as
  ``quant_pre_process`` folds it; stride-2 transposed convolutions per output channel of their
  sub-pixel rewrite (``export.quantize.convtranspose_to_subpixel``); the head stays float;
* activations: asymmetric uint8 per tensor over the calibration min/max (MinMax) of the float
  network, at every convolution / linear input, every convolution output (once, after the ReLU,
  where ONNX Runtime fuses Conv + ReLU) and every multi-scale skip block output.

Checked against ONNX Runtime on this model (``tests/test_int8_sim.py``): with weights only, its
heatmaps differ from those of ORT's int8 weights by 2 % of what the rounding changes; with
everything on it reproduces the *size* of the int8 graph's error (landmarks p99 1.04 vs 1.06 px,
mean heatmap error 0.0120 vs 0.0126), not the errors value by value: one-step rounding
differences (accumulation order) in early layers grow through the network. Then it
switches the simulation on for weights only, activations only, each part of the network, and
(``--per-tensor``) each activation tensor alone, and reports the landmark shift against fp32
(decoder as in the export's parity check, 256-px crop pixels).

    python benchmarks/int8_sensitivity.py [--model models/fabrec-scaf-w32] [--faces 64] [--per-tensor]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facealign_sdk.nets import LandmarkNet  # noqa: E402
from facealign_sdk.nets.blocks import BasicBlock, InvBasicBlock, MultiScaleBlock  # noqa: E402

QUANT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


# ---------------------------------------------------------------------------------------------
# simulated int8 arithmetic (straight-through rounding, so that int8_qat_probe.py can train through it)


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def fake_quant_symmetric(w: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
    """int8 symmetric [-127, 127] with scale absmax / 127 (broadcast), dequantized."""
    scale = (absmax / 127.0).clamp_min(1e-12).detach()
    return torch.clamp(_round_ste(w / scale), -127, 127) * scale


def fake_quant_uint8(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """uint8 asymmetric over [min(lo, 0), max(hi, 0)], dequantized (ONNX Runtime's MinMax scheme)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    zero = float(np.clip(round(-lo / scale), 0, 255))
    return (torch.clamp(_round_ste(x / scale) + zero, 0, 255) - zero) * scale


class WeightFakeQuant(nn.Module):
    """Parametrization: the weight as the int8 graph will hold it.

    ``fold`` is the BatchNorm factor gamma / sqrt(var + eps) of a following BatchNorm
    (per output channel), which the exported graph multiplies into the weight before
    it is quantized; ``layout`` says how output channels are grouped for the scales.
    """

    def __init__(self, layout: str, fold: torch.Tensor | None) -> None:
        super().__init__()
        self.layout = layout
        self.enabled = True  # off while calibrating: ranges come from the float graph, as ONNX Runtime's do
        self.register_buffer("fold", fold, persistent=False)

    def _fold_shape(self, w: torch.Tensor) -> list[int]:
        shape = [1] * w.dim()
        shape[1 if self.layout.startswith("convT") else 0] = -1
        return shape

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        f = None
        if self.fold is not None:
            f = self.fold.view(self._fold_shape(w))
            f = torch.where(f.abs() < 1e-12, torch.full_like(f, 1e-12), f)
            w = w * f
        if self.layout == "convT4":  # (Cin, Cout, 4, 4): sub-pixel channel (o, ky % 2, kx % 2)
            cin, cout = w.shape[:2]
            g = w.reshape(cin, cout, 2, 2, 2, 2).abs().amax(dim=(0, 2, 4), keepdim=True)
            q = fake_quant_symmetric(w.reshape(cin, cout, 2, 2, 2, 2), g).reshape(w.shape)
        elif self.layout == "convT2":  # (Cin, Cout, 2, 2): sub-pixel channel (o, ky, kx)
            q = fake_quant_symmetric(w, w.abs().amax(dim=0, keepdim=True))
        elif self.layout == "convT":  # other transposed convs: per output channel (axis 1)
            q = fake_quant_symmetric(w, w.abs().amax(dim=(0, *range(2, w.dim())), keepdim=True))
        else:  # conv (Cout, Cin, k, k) / linear (out, in): per output channel (axis 0)
            q = fake_quant_symmetric(w, w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True))
        return q / f if f is not None else q


def _layout(layer: nn.Module) -> str:
    if isinstance(layer, nn.ConvTranspose2d):
        if tuple(layer.stride) == (2, 2) and layer.groups == 1 and tuple(layer.dilation) == (1, 1):
            if tuple(layer.kernel_size) == (4, 4) and tuple(layer.padding) == (1, 1):
                return "convT4"
            if tuple(layer.kernel_size) == (2, 2) and tuple(layer.padding) == (0, 0):
                return "convT2"
        return "convT"
    return "conv"


def conv_bn_pairs(net: nn.Module) -> dict[nn.Module, nn.BatchNorm2d]:
    """Convolutions that a BatchNorm directly follows (registered next to each other), which export folds."""
    pairs: dict[nn.Module, nn.BatchNorm2d] = {}
    for module in net.modules():
        children = list(module.children())
        for a, b in zip(children, children[1:]):
            if isinstance(a, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(b, nn.BatchNorm2d):
                if b.num_features == (a.out_channels):
                    pairs[a] = b
    return pairs


def relu_after(net: nn.Module) -> set[nn.BatchNorm2d]:
    """BatchNorms whose output goes straight into a ReLU (in ``Sequential`` or as a block's ``bn1``)."""
    out: set[nn.BatchNorm2d] = set()
    for module in net.modules():
        children = list(module.children())
        if isinstance(module, nn.Sequential):
            out.update(a for a, b in zip(children, children[1:]) if isinstance(a, nn.BatchNorm2d) and isinstance(b, nn.ReLU))
        if isinstance(module, (BasicBlock, InvBasicBlock)):
            out.add(module.bn1)
    return out


class ActivationQuant:
    """Per-tensor uint8 fake quantization of one tensor, with a min/max observer for calibration."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lo, self.hi = float("inf"), float("-inf")
        self.observing = True
        self.enabled = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.observing:
            self.lo = min(self.lo, float(x.detach().min()))
            self.hi = max(self.hi, float(x.detach().max()))
            return x
        return fake_quant_uint8(x, self.lo, self.hi)


class Int8Sim:
    """A LandmarkNet copy that computes what the int8 graph computes (see :func:`simulate_int8`)."""

    def __init__(self, net: LandmarkNet, quants: list[ActivationQuant], layers: dict[str, nn.Module]) -> None:
        self.net, self.quants, self.layers_by_name = net, quants, layers
        self.layers = list(layers.values())

    def calibrate(self, crops: np.ndarray, batch: int = 8) -> None:
        """Record every quantized tensor's min/max on ``crops`` ((N, 3, S, S) float in [0, 1]) with the float
        network (as ONNX Runtime's calibration sees it), then switch the simulated int8 arithmetic on."""
        for q in self.quants:
            q.observing, q.lo, q.hi = True, float("inf"), float("-inf")
        self.set_enabled(set(), None)  # float weights, every activation observed
        with torch.no_grad():
            for i in range(0, len(crops), batch):
                self.net(torch.from_numpy(np.ascontiguousarray(crops[i : i + batch])))
        for q in self.quants:
            q.observing = False
        self.set_enabled(None, None)

    def set_enabled(self, weights: set[nn.Module] | None, activations: set[int] | None) -> None:
        """Simulate int8 only for the weights of ``weights`` (layers) and the activations whose index in
        ``quants`` is in ``activations``; None: all."""
        for layer in self.layers:
            if parametrize.is_parametrized(layer, "weight"):
                layer.parametrizations.weight[0].enabled = weights is None or layer in weights
        for i, q in enumerate(self.quants):
            q.enabled = activations is None or i in activations


def simulate_int8(net: LandmarkNet) -> Int8Sim:
    """A copy of ``net`` whose forward computes the int8 graph's arithmetic (see the module docstring).

    The heatmap head keeps float weights (the int8 export leaves it in float) but its input is quantized.
    """
    net = copy.deepcopy(net).eval()
    pairs = conv_bn_pairs(net)
    relu_follows = relu_after(net)
    quants: list[ActivationQuant] = []
    layers: dict[str, nn.Module] = {}

    def quantize_input(q: ActivationQuant) -> Callable:
        return lambda module, args: (q(args[0]), *args[1:])

    def quantize_output(q: ActivationQuant) -> Callable:
        return lambda module, args, out: q(out)

    for name, layer in net.named_modules():
        if not isinstance(layer, QUANT_LAYERS):
            continue
        layers[name] = layer
        q_in = ActivationQuant(f"{name} input")
        quants.append(q_in)
        layer.register_forward_pre_hook(quantize_input(q_in))
        if layer is net.head:
            continue
        bn = pairs.get(layer)
        fold = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().clone() if bn is not None else None
        layout = _layout(layer)
        parametrize.register_parametrization(layer, "weight", WeightFakeQuant(layout, fold))
        if bn in relu_follows and layout in ("conv", "convT"):
            continue  # Conv + ReLU run fused: quantized once, after the ReLU, by the next layer's input
        q_out = ActivationQuant(f"{name} output")
        quants.append(q_out)
        (bn if bn is not None else layer).register_forward_hook(quantize_output(q_out))
    for name, block in net.named_modules():
        if isinstance(block, MultiScaleBlock):  # its residual sum is a tensor of its own in the graph
            q_out = ActivationQuant(f"{name} output")
            quants.append(q_out)
            block.register_forward_hook(quantize_output(q_out))
    return Int8Sim(net, quants, layers)


# ---------------------------------------------------------------------------------------------
# the report


def main() -> int:
    from facealign_sdk.export.parity import landmark_stats, run_batched
    from facealign_sdk.export.quantize import DEFAULT_CALIB, DEFAULT_CALIB_COUNT, load_face_crops
    from facealign_sdk.backends.torch_backend import load_network
    from facealign_sdk.decode import decode_heatmaps
    from facealign_sdk.model import load_manifest, resolve_model_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder or name (default: the released model)")
    p.add_argument("--calib", type=Path, default=DEFAULT_CALIB, help="annotated faces for the activation ranges")
    p.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_COUNT)
    p.add_argument("--data", type=Path, default=DEFAULT_CALIB.parent / "val", help="annotated faces to measure on")
    p.add_argument("--faces", type=int, default=64)
    p.add_argument("--per-tensor", action="store_true", help="also each activation tensor alone (~2 s each)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = resolve_model_dir(args.model)
    net = load_network(model_dir, load_manifest(model_dir))
    sim = simulate_int8(net)
    sim.calibrate(load_face_crops(args.calib, args.calib_count))
    crops = load_face_crops(args.data, args.faces)

    def landmarks(module: nn.Module) -> np.ndarray:
        with torch.no_grad():
            heatmaps = run_batched(lambda x: module(torch.from_numpy(x)).numpy(), crops)
        return decode_heatmaps(heatmaps, "soft")[0] * 2  # 128-px heatmap -> 256-px crop

    reference = landmarks(net)
    rows: list[dict] = []

    def measure(label: str, weights: set[nn.Module] | None, activations: set[int] | None) -> None:
        sim.set_enabled(weights, activations)
        stats = landmark_stats(reference, landmarks(sim.net))
        rows.append({"simulated": label, **{k: round(v, 4) for k, v in stats.items()}})
        print(f"{label:45s} mean {stats['landmark_mean_px']:.3f}  p99 {stats['landmark_p99_px']:.3f}  "
              f"max {stats['landmark_max_px']:.3f} px", flush=True)

    everything = set(range(len(sim.quants)))
    measure("all (weights + activations)", None, None)
    measure("weights only", None, set())
    measure("activations only", set(), None)
    parts = sorted({name.split(".")[0] + ("." + name.split(".")[1] if name.startswith(("encoder", "generator")) else "")
                    for name in sim.layers_by_name})
    for part in parts:
        layers = {m for n, m in sim.layers_by_name.items() if n == part or n.startswith(part + ".")}
        acts = {i for i, q in enumerate(sim.quants) if q.name.split(" ")[0] == part or q.name.startswith(part + ".")}
        if any(np.isfinite(sim.quants[i].lo) for i in acts):  # skip layers the landmark network never runs
            measure(f"{part} only", layers, acts)
    if args.per_tensor:
        for i in sorted(everything):
            if np.isfinite(sim.quants[i].lo):
                measure(f"tensor {sim.quants[i].name}", set(), {i})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
