"""facealign train {facebank,pseudolabel,autoencoder,landmarks,conventions,pack,release}: the face bank, the
distillation data, the two training stages, annotation conventions, a data pack for a GPU machine, the release.

A run folder (``--run-dir``) holds ``last.pt``; running the same command again
resumes from it. Options override a ``--config`` JSON file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ..errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``facealign train`` stages and their flags."""
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    bank = sub.add_parser("facebank", help="crop every unlabelled face (face folders, annotated sets, videos) "
                          "into one .npz for the autoencoder stage")
    bank.add_argument("--out", required=True, type=Path, help="the .npz to write")
    bank.add_argument("--config", type=Path, help="JSON file with the bank's sources (FaceBankConfig)")
    bank.add_argument("--size", type=int, help="crop side (default 256)")
    pseudo = sub.add_parser("pseudolabel", help="label unlabelled face images with a teacher model (distillation "
                            "data for the landmark stage; keeps the faces it is confident about)")
    pseudo.add_argument("--config", type=Path, help="JSON file with the stage's settings (PseudoLabelConfig)")
    pseudo.add_argument("--data", nargs="+", help="folders of unlabelled face images")
    pseudo.add_argument("--out", help="folder to write, one subfolder of images + .pts per data folder")
    pseudo.add_argument("--model", help="teacher model (default: the released model)")
    pseudo.add_argument("--min-confidence", type=float, help="keep faces whose mean point confidence reaches this")
    pseudo.add_argument("--limit", type=int, help="at most this many images per folder (evenly spaced)")
    pseudo.add_argument("--convention", help="annotation convention of the written points, one of the teacher's "
                        "(default: none, the teacher network's own points)")
    pseudo.add_argument("--flip", action="store_true", default=None,
                        help="the teacher also runs the mirrored crop and averages (name a convention it has flip "
                        "offsets for)")
    ae = sub.add_parser("autoencoder", help="stage 1: adversarial autoencoder on unlabelled faces")
    ae.add_argument("--data", nargs="+", help="folders of face images or face banks (.npz)")
    ae.add_argument("--init-from", help="autoencoder run or checkpoint to start from (128 px -> 256 px)")
    lm = sub.add_parser("landmarks", help="stage 2: ITLs (+ SCAF skips) and encoder on annotated faces")
    lm.add_argument("--data", nargs="+", help="annotated folders (image + .pts); FOLDER:0.25 holds out 25%%")
    lm.add_argument("--val", help="annotated folder for validation NME")
    lm.add_argument("--autoencoder", help="autoencoder run folder or checkpoint to start from")
    lm.add_argument("--init-model", help="model folder to warm-start from instead (e.g. models/fabrec-scaf-w32)")
    lm.add_argument("--num-landmarks", type=int, help="landmarks per face (custom schemes)")
    lm.add_argument("--width", type=int, help="network width (channels of the first stage)")
    lm.add_argument("--flip-probability", type=float,
                    help="mirror augmentation rate (default 0.5; 0 when the annotations are not mirror-symmetric)")
    for p in (ae, lm):
        p.add_argument("--config", type=Path, help="JSON file with the stage's settings")
        p.add_argument("--run-dir", help="checkpoint folder (resumes when it has last.pt, with the run's settings: "
                       "only steps, threads, device, checkpoint_every and validation may change)")
        p.add_argument("--steps", type=int, help="total optimisation steps")
        p.add_argument("--batch-size", type=int)
        p.add_argument("--lr", type=float, help="learning rate of the new layers (ITLs, skips, head); encoder_lr and "
                       "generator_lr are settings of --config" if p is lm else "learning rate")
        p.add_argument("--threads", type=int, help="torch CPU threads")
        p.add_argument("--device", help="torch device: cpu (default), cuda, cuda:N")
    conv = sub.add_parser("conventions", help="fit annotation conventions: the mean offset per landmark from a "
                          "model's points to each set's annotations (facealign_sdk.training.conventions)")
    conv.add_argument("--model", required=True, help="model name or folder whose points are measured")
    conv.add_argument("--set", dest="sets", action="append", required=True, metavar="NAME=FOLDER[:HELD_OUT]",
                      help="a convention and the annotated folder it is fitted on (faces not held out); repeatable")
    conv.add_argument("--json", type=Path, help="write the fitted conventions here (a training run's conventions file)")
    conv.add_argument("--write-manifest", action="store_true",
                      help="store the conventions in the model folder's manifest.json (each replaces the one of its "
                      "name; the manifest's other conventions and its default stay)")
    conv.add_argument("--default", help="with --write-manifest: the default convention (one of the --set names)")
    conv.add_argument("--flip", action="store_true", help="also fit each convention for flip averaging "
                      "(Aligner(flip=True)) on the mirrored crops too: three network runs per face instead of one")
    pack = sub.add_parser("pack", help="pack a landmark run's annotated folders into one small .tar.gz of WebP crops "
                          "(to train on a GPU machine that is sent at most 64 MiB: scripts/gpu_train.sh)")
    pack.add_argument("--config", required=True, type=Path, help="the landmark run's JSON settings (its train and val "
                      "folders are packed)")
    pack.add_argument("--out", required=True, type=Path, help="the .tar.gz to write")
    pack.add_argument("--root", type=Path, help="the folder the packed paths are relative to, where the tar is "
                      "unpacked again (default: ../shared/data)")
    pack.add_argument("--every", action="append", default=[], metavar="FOLDER=N",
                      help="keep every N-th face of FOLDER (one of the config's folders, any path to it); "
                      "repeatable")
    pack.add_argument("--quality", type=int, help="WebP quality (default 80)")
    pack.add_argument("--crop-pixels", type=int, help="runtime crop side in stored pixels at most (default 224)")
    pack.add_argument("--max-mb", type=float, help="fail when the pack comes to more (MB; a pack already at --out stays)")
    rel = sub.add_parser("release", help="write a trained checkpoint as a model folder (fp16 safetensors + manifest)")
    rel.add_argument("--checkpoint", required=True, type=Path, help="landmark run's best.pt or last.pt")
    rel.add_argument("--out", required=True, type=Path, help="model folder to write, e.g. models/my-model")
    rel.add_argument("--name", help="model name (default: the folder name)")
    rel.add_argument("--data", nargs="*", default=[], help="training data to record in the manifest")
    rel.add_argument("--blur-sigma", type=float, default=None,
                     help="the decoder's blur in heatmap pixels of this model: 0 (none) or 0.01 to 64 (default: the "
                     "training codec's, 3.5 at 128-px maps, scaled); choose it on the validation sets")


def _config(cls: type[BaseModel], args: argparse.Namespace, overrides: dict) -> BaseModel:
    """The stage's settings: the --config JSON file (if any) with the command-line options on top."""
    base: dict = {}
    if args.config:
        if not args.config.is_file():
            raise FileNotFoundError(f"{args.config}: no such config file")
        try:
            base = json.loads(args.config.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{args.config}: not valid JSON ({exc})") from exc
        if not isinstance(base, dict):
            raise InputError(f"{args.config}: expected a JSON object of settings, got {type(base).__name__}")
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):  # nested settings (net): on top of the file's, else of the defaults
            current = base.get(key)
            if current is None:
                default = cls.model_fields[key].get_default(call_default_factory=True)
                current = default.model_dump() if isinstance(default, BaseModel) else {}
            value = {**current, **value} if isinstance(current, dict) else value
        base[key] = value
    try:
        return cls.model_validate(base)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        where = f"{args.config} with the options on top" if args.config else "options"
        raise InputError(f"{where}: invalid {cls.__name__} ({problems})") from exc


def run(args: argparse.Namespace) -> int:
    """``facealign train STAGE``: build the stage's settings from --config and the flags, then run it."""
    if args.stage == "facebank":
        from ..training.facebank import FaceBankConfig, build_face_bank

        cfg = _config(FaceBankConfig, args, {"size": args.size})
        counts = build_face_bank(cfg, args.out, progress=args.progress)
        print(f"wrote {args.out}: {sum(counts.values())} faces ({', '.join(f'{k} {v}' for k, v in counts.items())})")
        return 0
    if args.stage == "pseudolabel":
        from ..training.pseudolabel import PseudoLabelConfig, pseudo_label

        cfg = _config(PseudoLabelConfig, args, {"data": args.data, "out": args.out, "teacher": args.model,
                                                "min_confidence": args.min_confidence, "limit": args.limit,
                                                "convention": args.convention, "flip": args.flip})
        report = pseudo_label(cfg, progress=args.progress)
        kept = ", ".join(f"{Path(s.written_to)}: {s.kept} of {s.images}" for s in report.sources)
        print(f"wrote {cfg.out}: {kept} (teacher {report.teacher}{' with flip' if report.flip else ''}, "
              f"convention {report.convention}, "
              f"min confidence {report.min_confidence})")
        return 0
    if args.stage == "conventions":
        return _fit_conventions(args)
    if args.stage == "pack":
        return _pack(args)
    if args.stage == "release":
        from ..training.release import release_model

        if not args.checkpoint.is_file():
            raise FileNotFoundError(f"{args.checkpoint}: no such checkpoint")
        manifest = release_model(args.checkpoint, args.out, args.name or args.out.name, args.data,
                                 blur_sigma=args.blur_sigma)
        print(f"wrote {args.out} ({manifest.num_landmarks} landmarks, sha256 {manifest.weights_sha256[:12]}...)")
        return 0
    common = {"run_dir": args.run_dir, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
              "threads": args.threads, "device": args.device}
    if args.stage == "autoencoder":
        from ..training.autoencoder import AutoEncoderConfig, train_autoencoder

        cfg = _config(AutoEncoderConfig, args, {**common, "data": args.data, "init_from": args.init_from})
        _say_resume(cfg.run_dir)
        print(json.dumps(train_autoencoder(cfg, progress=args.progress)))
        return 0
    from ..training.landmarks import LandmarkConfig, train_landmarks

    sources = None
    if args.data:
        from ..evaluate import parse_folder_spec

        sources = [{"folder": str(folder), "held_out": held_out}
                   for folder, held_out in map(parse_folder_spec, args.data)]
    net = {k: v for k, v in {"num_landmarks": args.num_landmarks, "width": args.width}.items() if v is not None}
    cfg = _config(LandmarkConfig, args, {**common, "train": sources, "val": args.val, "autoencoder": args.autoencoder,
                                         "init_model": args.init_model, "flip_probability": args.flip_probability,
                                         "net": net or None})
    _say_resume(cfg.run_dir)
    print(json.dumps(train_landmarks(cfg, progress=args.progress)))
    return 0


def _fit_conventions(args: argparse.Namespace) -> int:
    from ..aligner import Aligner
    from ..evaluate import parse_folder_spec
    from ..model import MANIFEST, NETWORK_CONVENTION, load_manifest
    from ..outputs import check_output_file
    from ..training.conventions import fit_convention, fitting_images, write_conventions

    specs = []
    for text in args.sets:
        name, sep, folder = text.partition("=")
        if not sep or not name or not folder:
            raise InputError(f"--set {text!r}: expected NAME=FOLDER[:HELD_OUT]")
        specs.append((name, *parse_folder_spec(folder)))
    names = [name for name, _, _ in specs]
    if len(set(names)) != len(names):
        raise InputError(f"--set names must differ, got {names}")
    if args.default is not None and args.default not in names:
        raise InputError(f"--default {args.default!r} is not one of the --set names {names}")
    if args.default is not None and not args.write_manifest:
        raise InputError("--default sets the manifest's default convention: add --write-manifest")
    if not (args.json or args.write_manifest):
        raise InputError("nothing to write: give --json FILE and/or --write-manifest")
    if NETWORK_CONVENTION in names:
        raise InputError(f"--set name {NETWORK_CONVENTION!r} is reserved for the network's own points")
    # fail before the fitting, not after it
    if args.json is not None:
        check_output_file(args.json, suffixes=(".json",), what="--json")
    for _, folder, held_out in specs:
        fitting_images(folder, held_out)
    # the network's own points: a convention already in the manifest must not be measured on top of itself
    aligner = Aligner(model=args.model, detector=None, convention=NETWORK_CONVENTION)
    flip_aligner = Aligner(model=args.model, detector=None, convention=NETWORK_CONVENTION, flip=True) if args.flip else None
    fitted = [fit_convention(aligner, name, folder, held_out, args.progress, flip_aligner)
              for name, folder, held_out in specs]
    for f in fitted:
        flipped = "" if f.nme_with_flip is None else f", flip-averaged {f.nme_with_flip:.3f} % with its flip offsets"
        print(f"{f.name}: {f.faces} faces of {f.folder}, NME {f.nme_without:.3f} % -> {f.nme_with:.3f} % with its "
              f"offsets{flipped}")
    write_conventions(fitted, aligner.model_dir if args.write_manifest else None, args.json, args.default)
    if args.write_manifest:
        manifest = load_manifest(aligner.model_dir)
        print(f"{aligner.model_dir / MANIFEST}: conventions {', '.join(sorted(manifest.conventions))}, "
              f"default {manifest.default_convention or NETWORK_CONVENTION}, fitted for flip averaging too: "
              f"{', '.join(sorted(manifest.flip_conventions)) or 'none'}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from ..outputs import check_output_file
    from ..resources import shared_data
    from ..training.landmarks import LandmarkConfig
    from ..training.pack import FolderUse, PackOptions, pack_folders

    cfg = _config(LandmarkConfig, args, {})
    every = {}
    for text in args.every:
        folder, sep, count = text.rpartition("=")
        if not sep or not folder or not count.isdigit() or int(count) < 1:
            raise InputError(f"--every {text!r}: expected FOLDER=N with N >= 1")
        every[folder] = int(count)
    options = PackOptions.model_validate({"every": every, **{k: v for k, v in {
        "quality": args.quality, "crop_pixels": args.crop_pixels}.items() if v is not None}})
    check_output_file(args.out, suffixes=(".tar.gz",), what="--out")
    folders = [FolderUse(src.folder, src.held_out, src.max_faces) for src in cfg.train] + (
        [FolderUse(cfg.val)] if cfg.val else [])
    # the machine that trains runs this config where it unpacks the pack: a path of this machine is not there
    absolute = [use.folder for use in folders if Path(use.folder).is_absolute()]
    if absolute:
        raise InputError(f"{args.config}: {', '.join(absolute)}: absolute paths; the pack is unpacked under the "
                         "training machine's own ../shared/data, so name its folders as this repository sees them "
                         "(../shared/data/<set>/<split>)")
    report = pack_folders(folders, args.root or shared_data(), args.out, options, args.progress, args.max_mb)
    print(f"wrote {report.out}: {report.megabytes} MB, " + ", ".join(f"{k} {v}" for k, v in report.faces.items()))
    return 0


def _say_resume(run_dir: str) -> None:
    if (Path(run_dir) / "last.pt").exists():
        print(f"resuming from {run_dir}/last.pt")
