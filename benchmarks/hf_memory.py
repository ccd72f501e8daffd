"""Peak memory of a Hugging Face image set's set-up: does it grow with the number of images?

    python -m benchmarks.hf_memory                              # 1k and 20k images, both loaders
    python -m benchmarks.hf_memory --sizes 1000 20000 --data hf_image_classification
    python -m benchmarks.hf_memory --streaming                  # data.streaming=true as well

For each size it writes a local parquet set of generated PNGs (``--image-side`` pixels a side,
a label and two captions per image; row groups of 100 rows) under ``--work`` (default: a folder in the temp directory;
the set is reused on later runs), then, in a fresh process for each measurement, builds the
data module the way ``conf/data/<name>.yaml`` does, calls ``setup()`` and takes the first
training batch, and reads the process's peak resident set size (``ru_maxrss``). A first
process converts the parquet file into the Arrow cache (``cold``); a second finds it there
(``warm``, what every later run sees). ``imports`` is the peak after the imports alone, so
``peak - imports`` is what the set-up itself cost; ``RssAnon`` (the growth of the process's own
memory, without the pages of memory-mapped files such as the Arrow cache) is printed beside it.

Images decoded into RAM at set-up grow that cost with the image count; images decoded when a
batch asks for them leave only the index (labels, captions, row numbers) growing. The last
line is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLOURS = ["red", "green", "blue", "yellow", "white"]
SHAPES = ["square", "circle"]
LOADERS = ("hf_image_classification", "hf_captions")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _status_mb(field: str) -> float:
    """A field of /proc/self/status in MB (RssAnon: the process's own memory, not mapped files)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_set(folder: Path, n: int, side: int) -> Path:
    """``n`` generated PNGs (a coloured shape on a noisy background) in ``folder/train.parquet``."""
    path = folder / "train.parquet"
    if path.is_file():
        return path
    import io

    import datasets
    import numpy as np
    from PIL import Image, ImageDraw

    datasets.disable_progress_bars()

    rgb = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 230), "yellow": (230, 220, 40),
           "white": (240, 240, 240)}

    def rows():
        rng = np.random.default_rng(n)
        for k in range(n):
            colour, shape = COLOURS[k % len(COLOURS)], SHAPES[(k // len(COLOURS)) % len(SHAPES)]
            noise = rng.integers(0, 60, (side, side, 3), dtype=np.uint8)
            im = Image.fromarray(noise)
            x, y = rng.integers(0, side // 2, 2)
            box = (int(x), int(y), int(x) + side // 2, int(y) + side // 2)
            draw = ImageDraw.Draw(im)
            (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=rgb[colour])
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            yield {"image": {"bytes": buf.getvalue(), "path": None}, "label": COLOURS.index(colour),
                   "caption": [f"a {colour} {shape}", f"one {shape} in {colour}"]}

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=COLOURS),
                                  "caption": datasets.Sequence(datasets.Value("string"))})
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        ds = datasets.Dataset.from_generator(rows, features=features, cache_dir=cache)
        ds.to_parquet(str(path), batch_size=100)  # row groups of 100 rows, as the hub's image sets have
    return path


def child(loader: str, folder: str, streaming: bool) -> None:
    """One measurement (in its own process): set up, one batch, print the peaks as JSON."""
    import datasets
    from hydra.utils import get_object, instantiate
    from omegaconf import OmegaConf

    from zoo.run.configs import config_dir

    datasets.disable_progress_bars()
    conf = OmegaConf.load(config_dir() / "data" / f"{loader}.yaml")
    get_object(conf._target_)  # the data module's imports (torch, Lightning, ...): what any run pays
    imports, anon = _peak_mb(), _status_mb("RssAnon")
    overrides = {"name": "parquet", "data_dir": folder, "num_workers": 0, "batch_size": 64}
    if loader == "hf_captions":
        overrides.update(image_size=32, caption_column="caption")
    if streaming:
        overrides["streaming"] = True
    data = OmegaConf.merge(conf, overrides)
    dm = instantiate(OmegaConf.create({"seed": 0, "data": data}).data)
    start = time.perf_counter()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    seconds = time.perf_counter() - start
    images = batch.get("images")
    print(json.dumps({"imports_mb": round(imports, 1), "peak_mb": round(_peak_mb(), 1), "setup_s": round(seconds, 2),
                      "anon_mb": round(_status_mb("RssAnon") - anon, 1),
                      "batch": list(images.shape) if images is not None else None}))


def measure(loader: str, folder: Path, hf_home: Path, streaming: bool) -> dict:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmarks.hf_memory", "--child", loader, str(folder)]
    cmd += ["--streaming"] if streaming else []
    r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if r.returncode != 0:
        raise SystemExit(f"{loader} on {folder}: the measuring process failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000], help="image counts")
    p.add_argument("--image-side", type=int, default=64)
    p.add_argument("--data", choices=LOADERS, action="append", help="loaders to measure (default: both)")
    p.add_argument("--streaming", action="store_true", help="also measure hf_image_classification streamed")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "zoo-hf-memory"),
                   help="where the generated sets and their Arrow caches go (reused)")
    p.add_argument("--dry-run", action="store_true", help="say what would be measured, and measure nothing")
    p.add_argument("--child", nargs=2, metavar=("LOADER", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(*args.child, streaming=args.streaming)
        return
    loaders = args.data or list(LOADERS)
    runs = [(loader, False) for loader in loaders]
    if args.streaming:
        runs.append(("hf_image_classification", True))
    if args.dry_run:
        names = ", ".join(loader + (" (streaming)" if streamed else "") for loader, streamed in runs)
        print(f"would measure {names} on "
              f"{', '.join(map(str, args.sizes))} generated {args.image_side}x{args.image_side} PNGs in {args.work}")
        return
    work = Path(args.work)
    print(f"peak RSS of set-up + first batch, {os.cpu_count()}-core machine, {args.image_side}x{args.image_side} PNGs")
    results: dict[str, float] = {}
    for n in args.sizes:
        make_set(work / f"set-{n}-{args.image_side}", n, args.image_side)
    for loader, streaming in runs:
        name = loader + ("_streaming" if streaming else "")
        by_size = {}
        for n in args.sizes:
            folder = work / f"set-{n}-{args.image_side}"
            hf_home = Path(tempfile.mkdtemp(prefix=f"hf-{name}-{n}-", dir=work))
            cold = measure(loader, folder, hf_home, streaming)
            warm = measure(loader, folder, hf_home, streaming)
            by_size[n] = warm
            print(f"  {name:32s} {n:6d} images: imports {warm['imports_mb']:7.1f} MB, peak cold "
                  f"{cold['peak_mb']:7.1f} MB, warm {warm['peak_mb']:7.1f} MB; set-up cost (warm peak - imports) "
                  f"{warm['peak_mb'] - warm['imports_mb']:7.1f} MB, of it the process's own memory (RssAnon) "
                  f"{warm['anon_mb']:6.1f} MB")
            results[f"{name}_{n}_cold_mb"], results[f"{name}_{n}_warm_mb"] = cold["peak_mb"], warm["peak_mb"]
            results[f"{name}_{n}_setup_mb"] = round(warm["peak_mb"] - warm["imports_mb"], 1)
            results[f"{name}_{n}_anon_mb"] = warm["anon_mb"]
        lo, hi = min(args.sizes), max(args.sizes)
        if lo != hi:
            peak = by_size[hi]["peak_mb"] / by_size[lo]["peak_mb"]
            cost = ((by_size[hi]["peak_mb"] - by_size[hi]["imports_mb"])
                    / max(1.0, by_size[lo]["peak_mb"] - by_size[lo]["imports_mb"]))
            print(f"  {name:32s} {hi} / {lo} images: peak x{peak:.2f}, set-up cost x{cost:.2f}")
            results[f"{name}_peak_ratio"], results[f"{name}_setup_ratio"] = round(peak, 3), round(cost, 3)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
