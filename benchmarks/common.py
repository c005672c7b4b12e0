"""What the benchmark scripts share: the model / backend / thread options and the Aligner they build."""

from __future__ import annotations

import argparse
import os


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--backend``, ``--device`` (the CLI's flags), ``--threads``."""
    from facealign_sdk.cli.flags import MODEL_FLAGS, add_aligner_flags

    add_aligner_flags(parser, MODEL_FLAGS)
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
    from facealign_sdk.cli.flags import aligner_from_args

    return aligner_from_args(args)
