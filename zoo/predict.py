"""``python -m zoo.predict <checkpoint or run folder> [inputs ...]``: use a trained model.

    python -m zoo.predict outputs/captioning/RUN photo1.jpg photo2.png --beam 5
    python -m zoo.predict outputs/captioning/RUN photo.jpg --sample --temperature 0.7
    python -m zoo.predict outputs/charlm/RUN "ROMEO:" --length 300 --temperature 0.8
    echo "a gripping , funny film" | python -m zoo.predict outputs/sentiment/RUN --json
    python -m zoo.predict outputs/tagging/RUN "I saw her duck"
    python -m zoo.predict outputs/translation/RUN "a man rides a bike ." --beam 5
    python -m zoo.predict outputs/seqimage/RUN digit.png          # outputs/video/RUN: folders of frames

Inputs are image files (captioning, seqimage), folders of frames (video), sentences (sentiment,
tagging, translation) or primes (charlm), given as arguments or, without arguments, one per
line on stdin. An input that cannot be read is reported and the others go on; the exit status
is 1 if any failed. ``--json`` prints one JSON object per input.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a checkpoint file or a run folder")
    p.add_argument("inputs", nargs="*", help="files, folders, sentences or primes (default: lines of stdin)")
    p.add_argument("--json", action="store_true", help="one JSON object per input")
    p.add_argument("--beam", type=int, help="beam search with this beam size (captioning, translation)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding")
    p.add_argument("--sample", action="store_true", help="sample (with --temperature)")
    p.add_argument("--temperature", type=float, help="sampling temperature (captioning, translation, charlm)")
    p.add_argument("--length", type=int, help="characters to write (charlm)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from zoo.api import load
    from zoo.errors import ZooError

    try:
        model = load(args.model, map_location=args.device).to(args.device)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    inputs = args.inputs or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    options = model.predict_options(beam=args.beam, greedy=args.greedy, sample=args.sample,
                                    temperature=args.temperature, length=args.length)  # what this task takes of them
    failed = 0
    for result in model.predict_inputs(inputs, **options):
        failed += "error" in result
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        elif "error" in result:
            print(f"{result['input']}\terror: {result['error']}", flush=True)
        else:
            shown = {k: v for k, v in result.items() if k not in ("input", "probabilities")}
            value = next(iter(shown.values())) if len(shown) == 1 else shown
            if isinstance(value, dict) and "tags" in value:
                value = " ".join(f"{w}/{t}" for w, t in zip(value["tokens"], value["tags"]))
            print(f"{result['input']}\t{value}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
