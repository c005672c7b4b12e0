"""How well a model's mean point confidence predicts its error: the pseudo-labelling threshold's measurement.

Runs the model end to end (its own detector, as ``facealign train pseudolabel`` does) on annotated sets and
tabulates, for each confidence threshold, the share of detected faces kept and the NME / FR@10 of the kept
and the rejected faces (pooled over the sets):

    python benchmarks/teacher_confidence.py ../shared/data/300w/val ../shared/data/ytf68/val \\
        ../shared/data/aflw2000/train:0.2 --json runs/teacher_confidence.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facealign_sdk.evaluate import FAILURE_LIMIT, evaluate_folder, parse_folder_spec

from common import add_model_arguments, make_aligner

THRESHOLDS = (0.0, 0.8, 0.84, 0.86, 0.87, 0.88, 0.89, 0.9, 0.92)


def rows_for(nme: np.ndarray, confidence: np.ndarray, thresholds: tuple[float, ...]) -> list[dict]:
    """Per threshold: kept share, mean NME and FR@10 of the kept and the rejected faces (percent)."""
    rows = []
    for t in thresholds:
        kept, rejected = nme[confidence >= t], nme[confidence < t]
        rows.append({
            "min_confidence": t, "kept": int(len(kept)), "kept_pct": round(100 * len(kept) / len(nme), 1),
            "kept_nme_pct": round(100 * float(kept.mean()), 2) if len(kept) else None,
            "kept_fr_pct": round(100 * float((kept > FAILURE_LIMIT).mean()), 2) if len(kept) else None,
            "rejected_nme_pct": round(100 * float(rejected.mean()), 2) if len(rejected) else None,
            "rejected_fr_pct": round(100 * float((rejected > FAILURE_LIMIT).mean()), 2) if len(rejected) else None,
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="annotated folders; FOLDER:0.2 takes its held-out 20 %%")
    parser.add_argument("--json", type=Path, help="write the per-face numbers and the table here")
    add_model_arguments(parser)
    args = parser.parse_args()
    aligner = make_aligner(args)
    faces = []
    for spec in args.folders:
        folder, held_out = parse_folder_spec(spec)
        result = evaluate_folder(aligner, folder, "end2end", held_out, progress=False)
        faces += [{"set": result.label, "image": it.image, "nme": it.nme, "confidence": it.confidence}
                  for it in result.items if it.detected]
        print(f"{result.label}: {len(result.items)} faces, {result.summary.detected} detected, "
              f"NME {result.summary.nme_pct:.2f} %", flush=True)
    nme = np.array([f["nme"] for f in faces])
    confidence = np.array([f["confidence"] for f in faces])
    print(f"pooled: {len(faces)} detected faces; NME of the 10 % least confident "
          f"{100 * nme[confidence <= np.quantile(confidence, 0.1)].mean():.2f} % vs the rest "
          f"{100 * nme[confidence > np.quantile(confidence, 0.1)].mean():.2f} %")
    sets = [("pooled", np.ones(len(faces), bool))] + [
        (name, np.array([f["set"] == name for f in faces])) for name in dict.fromkeys(f["set"] for f in faces)]
    rows = [{"set": name, **row} for name, mask in sets for row in rows_for(nme[mask], confidence[mask], THRESHOLDS)]
    print("\n| set | min confidence | kept | kept % | kept NME % | kept FR@10 % | rejected NME % | rejected FR@10 % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['set']} | {r['min_confidence']} | {r['kept']} | {r['kept_pct']} | {r['kept_nme_pct']} | "
              f"{r['kept_fr_pct']} | {r['rejected_nme_pct']} | {r['rejected_fr_pct']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": aligner.manifest.name, "rows": rows, "faces": faces}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
