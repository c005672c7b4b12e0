"""What the benchmark scripts share: the model / backend / thread options and the Aligner they build."""

from __future__ import annotations

import argparse
import os


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--backend``, ``--device``, ``--threads``."""
    parser.add_argument("--model", default=None, help="model name or folder (default: the released model)")
    parser.add_argument("--backend", default="auto", choices=["auto", "ort", "openvino", "torch", "trt"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch / ORT / OpenCV CPU threads")


def make_aligner(args: argparse.Namespace):
    """The Aligner of ``args``, with the thread count applied to ORT (FACEALIGN_THREADS), torch and OpenCV."""
    os.environ["FACEALIGN_THREADS"] = str(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    import cv2

    cv2.setNumThreads(args.threads)
    from facealign_sdk.aligner import Aligner

    return Aligner(model=args.model, backend=args.backend, device=args.device)
