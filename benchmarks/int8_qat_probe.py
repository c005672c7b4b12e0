"""Can quantization-aware fine-tuning bring the int8 graph within the export's parity gate?

Trains a copy of the released network inside the int8 simulation of ``int8_sensitivity.py``
(rounding with straight-through gradients) to reproduce the fp32 model's heatmaps on augmented
``ytf68/train`` crops, and every ``--every`` steps exports the copy, quantizes it as
``facealign export --to int8`` does and measures its ONNX Runtime int8 landmarks against the
*original* fp32 model (the parity statistic, 64 ``ytf68/val`` crops). Session 4 results are in
``benchmarks/README.md``; nothing it writes is shipped.

    python benchmarks/int8_qat_probe.py --out runs/qat --steps 600 --lr 5e-6 [--mode all|bias]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from int8_sensitivity import simulate_int8  # noqa: E402


def main() -> int:
    from facealign_sdk.export.onnx import export_onnx
    from facealign_sdk.export.parity import landmark_stats, ort_session, run_batched
    from facealign_sdk.export.quantize import DEFAULT_CALIB, DEFAULT_CALIB_COUNT, load_face_crops, quantize_int8
    from facealign_sdk.backends.torch_backend import load_network
    from facealign_sdk.decode import decode_heatmaps
    from facealign_sdk.model import load_manifest, resolve_model_dir
    from facealign_sdk.nets import LandmarkNet
    from facealign_sdk.training.data import LandmarkAugment, landmark_sample, load_annotated
    from facealign_sdk.training.landmarks import heatmap_loss

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--out", type=Path, required=True, help="folder for the checkpoints and int8 graphs")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=5e-6, help="divided by 10 after 70 %% of the steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--every", type=int, default=200, help="measure int8 parity every N steps")
    p.add_argument("--mode", choices=("all", "bias"), default="all", help="train every weight, or biases / BN shifts only")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.steps < 1 or args.every < 1 or args.lr <= 0:
        p.error("--steps and --every must be >= 1 and --lr > 0")
    logging.getLogger().setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = resolve_model_dir(args.model)
    manifest = load_manifest(model_dir)
    teacher = load_network(model_dir, manifest)
    calib = load_face_crops(DEFAULT_CALIB, DEFAULT_CALIB_COUNT)
    val = load_face_crops(DEFAULT_CALIB.parent / "val", 64)
    with torch.no_grad():
        reference = decode_heatmaps(run_batched(lambda x: teacher(torch.from_numpy(x)).numpy(), val), "soft")[0] * 2
    items = load_annotated(DEFAULT_CALIB)
    sim = simulate_int8(teacher)
    sim.calibrate(calib)
    student = sim.net
    for name, param in student.named_parameters():
        param.requires_grad_(name.endswith(".bias") or args.mode == "all")
    if args.mode == "all":  # BatchNorm statistics are folded into the weights; keep them as they are
        for module in student.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.requires_grad_(False)

    def float_state() -> dict[str, torch.Tensor]:
        return {k.replace(".parametrizations.weight.original", ".weight"): v.detach().clone()
                for k, v in student.state_dict().items()}

    def measure(step: int) -> None:
        net = LandmarkNet(teacher.config)
        net.load_state_dict(float_state())
        torch.save(net.state_dict(), args.out / f"student_{step}.pt")
        export_onnx(net.eval(), manifest, args.out / "student.onnx")
        quantize_int8(args.out / "student.onnx", args.out / "student_int8.onnx", calib)
        session = ort_session(args.out / "student_int8.onnx", args.threads)
        points = decode_heatmaps(run_batched(lambda x: session.run(None, {"image": x})[0], val), "soft")[0] * 2
        stats = {k: round(v, 3) for k, v in landmark_stats(reference, points).items()}
        print(json.dumps({"step": step, "ort_int8_vs_fp32": stats}), flush=True)

    measure(0)
    opt = torch.optim.Adam([q for q in student.parameters() if q.requires_grad], lr=args.lr)
    rng = np.random.default_rng(0)
    aug = LandmarkAugment(p_flip=0.0)
    losses, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        if step == int(0.7 * args.steps):
            for group in opt.param_groups:
                group["lr"] = args.lr / 10
        crops = [landmark_sample(items[i], 256, rng, aug)[0] for i in rng.integers(0, len(items), args.batch)]
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        with torch.no_grad():
            target = teacher(x)
        loss = heatmap_loss(student(x), target, 20.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            print(f"step {step} loss {np.mean(losses[-50:]):.5f} {time.time() - t0:.0f} s", flush=True)
        if step % args.every == 0 or step == args.steps:
            measure(step)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
