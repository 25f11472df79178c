"""The `digits` commands that use a trained model: predict, export and serve; each command's
parser beside its handler.

    add_predict(subparsers)  # `digits predict CHECKPOINT PATH...` then calls cmd_predict
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import DigitsError


def cmd_predict(args: argparse.Namespace) -> int:
    from ..predict import check_show, predict_paths, show, to_csv
    from ..predictor import load_predictor

    if not 1 <= args.top_k <= 10:
        raise DigitsError(f"--top-k must be from 1 to 10, got {args.top_k}")
    if args.csv and args.number:
        raise DigitsError("--number cannot be used with --csv (its p0..p9 columns hold one digit per file); "
                          "use --json, which gives each digit's probabilities")
    if args.show:
        check_show(args.show, [args.checkpoint, *args.paths])  # refused before any prediction is printed
    predictor = load_predictor(args.checkpoint, args.device, threads=1)  # one image at a time
    result = predict_paths(predictor, args.paths, number=args.number)
    for file, message in result.errors:
        print(f"digits: error: {file}: {message}", file=sys.stderr)
    if args.json:
        print("[" + ",\n ".join(json.dumps(p.to_dict()) for p in result.predictions) + "]")
    elif args.csv:
        print(to_csv(result.predictions), end="")
    else:
        for p in result.predictions:
            top = "  ".join(f"{d}: {100 * q:.1f}%" for d, q in p.top(args.top_k))
            print(f"{p.file}: {p.prediction}   ({top})" if isinstance(p.prediction, int) else
                  f"{p.file}: {p.prediction}   ({len(p.pixels)} digits)")
    if args.show and result.predictions:
        print(f"wrote {show(result.predictions, args.show)}", file=sys.stderr)
    return 1 if result.errors else 0


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="predict the digit in image files (photos, scans, drawings)")
    p.add_argument("checkpoint", help="a checkpoint.pt, or a model.onnx written by `digits export`")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of them")
    p.add_argument("--top-k", type=int, default=3, help="probabilities shown per file (default 3)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON array: file, prediction, probabilities")
    out.add_argument("--csv", action="store_true", help="print CSV: file, prediction, p0..p9")
    p.add_argument("--show", metavar="OUT.png", help="also draw each preprocessed input with its prediction")
    p.add_argument("--number", action="store_true", help="read each image as a number of several digits, "
                   "left to right")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.set_defaults(handler=cmd_predict)


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_model

    print(f"wrote {export_model(args.checkpoint, args.format, args.out)}")
    return 0


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript for deployment")
    p.add_argument("checkpoint", help="a checkpoint.pt written by `digits run` or `digits train`")
    p.add_argument("--format", choices=("onnx", "torchscript"), help="default: the one --out's suffix "
                   "names (.onnx: onnx, .ts: torchscript)")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write: NAME.onnx (ONNX, which "
                   "predict and serve read) or NAME.ts (TorchScript); with --format, any name but one "
                   "whose suffix names another kind (.ts, .pt or .pth for ONNX, .onnx for TorchScript)")
    p.set_defaults(handler=cmd_export)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import serve

    limits = {name: value for name, value in (("max_concurrent", args.max_concurrent),
                                              ("max_connections", args.max_connections)) if value is not None}
    if not 0 < args.max_upload_mb < float("inf") or not 0 < args.head_timeout < float("inf") \
            or args.max_pixels <= 0 or any(value <= 0 for value in limits.values()):
        raise DigitsError("--max-upload-mb, --max-pixels, --max-concurrent, --max-connections and "
                          "--head-timeout must be positive (and finite) numbers")
    if not 0 <= args.port <= 65535:
        raise DigitsError(f"--port must be from 0 to 65535 (0: any free port), not {args.port}")
    serve(args.checkpoint, args.host, args.port, max_upload_bytes=int(args.max_upload_mb * 2**20),
          max_pixels=args.max_pixels, head_timeout=args.head_timeout, **limits)
    return 0


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="web app and REST API: draw a digit, see the prediction")
    p.add_argument("checkpoint", help="a checkpoint.pt, or a model.onnx written by `digits export`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: "
                   "this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=10, help="largest request body in MiB; larger "
                   "ones get 413 (default 10)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image in decoded pixels; "
                   "larger ones get 422 (default 40,000,000; at most Pillow's own limit, 178,956,970)")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="images decoded and predicted at "
                   "once; further requests wait (default: one per CPU core)")
    p.add_argument("--max-connections", type=int, metavar="N", help="open connections at most; more "
                   "get 503 at once (default: the file descriptors the process may open less 320, "
                   "704 of 1,024)")
    p.add_argument("--head-timeout", type=float, default=10, metavar="S", help="seconds a connection "
                   "may take to send a request head before it gets 408 (default 10)")
    p.set_defaults(handler=cmd_serve)
