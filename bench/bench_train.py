"""Training benchmark: data-loader samples/s per worker (LMDB read + decode + EasyOCR preprocessing + padding)
and training samples/s with 1 and 2 DDP ranks (torchrun, gloo) on this CPU, side by side in one run.

    .venv/bin/python bench/bench_train.py [--samples 600] [--steps 12] [--batch 16] [--repeat 2] [--amp off,bf16]
    .venv/bin/python bench/bench_train.py --device cuda --samples 20000 --steps 300 --batch 192 --skip-loader
        [--dtrb DTRB_CHECKOUT --dtrb-deps DIR]   # DIR: pip install --target DIR natsort nltk six

The data are Korean words from wordfreq (only those korean_g2 can spell), drawn with Korean handwriting
fonts at height 64 and written with ocrtune's LMDB writer. The model is english_g2 with head surgery to
korean_g2 (1,009 classes), as the tiny profile starts offline.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ocrtune.charsets import load_charset  # noqa: E402
from ocrtune.data.lmdb import LmdbReader, write_lmdb  # noqa: E402
from ocrtune.model.preprocess import preprocess  # noqa: E402
from ocrtune.training.loader import BucketBatchSampler, Collate, LmdbDataset, LmdbSource, make_loader  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

FONT_DIR = Path("/usr/share/fonts/truetype/nanum")
FONTS = ["NanumPen.ttf", "NanumBrush.ttf", "NanumBarunpenR.ttf"]


def make_data(root: Path, n: int) -> tuple[Path, float]:
    """n rendered Korean words as an LMDB; returns its path and the mean width at height 64."""
    import wordfreq

    chars = set(load_charset("korean_g2"))
    words = [w for w in wordfreq.top_n_list("ko", 5000) if len(w) >= 2 and all(c in chars for c in w)]
    rng = np.random.default_rng(0)
    layout = root / "layout"
    (layout / "images").mkdir(parents=True)
    gt, widths = [], []
    fonts = [ImageFont.truetype(str(FONT_DIR / f), 48) for f in FONTS if (FONT_DIR / f).is_file()]
    for i in range(n):
        word, font = words[rng.integers(len(words))], fonts[rng.integers(len(fonts))]
        left, top, right, bottom = font.getbbox(word)
        img = Image.new("L", (right - left + 10, bottom - top + 10), 255)
        ImageDraw.Draw(img).text((5 - left, 5 - top), word, font=font, fill=0)
        widths.append(img.width * 64 / img.height)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        (layout / f"images/image_{i:06d}.jpg").write_bytes(buf.getvalue())
        gt.append(f"images/image_{i:06d}.jpg\t{word}")
    (layout / "gt.txt").write_text("\n".join(gt) + "\n", "utf-8")
    write_lmdb(layout, root / "lmdb")
    return root / "lmdb", float(np.mean(widths))


def bench_loader(lmdb_path: Path, charset: str, samples: int, batch: int) -> dict[str, float]:
    """samples/s of: a plain loop (read + preprocess), our pipeline in-process, and with 1 worker process."""

    reader = LmdbReader(lmdb_path)
    n = len(reader)
    t = time.perf_counter()
    for k in range(samples):
        data, _ = reader.get(k % n)
        preprocess(data)
    plain = samples / (time.perf_counter() - t)

    source = LmdbSource(lmdb_path, charset, 34)
    out = {"plain loop": plain}
    for workers in (0, 1):
        sampler = BucketBatchSampler([source.widths], batch, seed=1)
        loader = make_loader(LmdbDataset([source]), sampler, charset, workers=workers)
        it = iter(loader)
        next(it)  # worker start-up not timed
        t, seen = time.perf_counter(), 0
        while seen < samples:
            seen += len(next(it)["labels"])
        rate = seen / (time.perf_counter() - t)
        out["ocrtune loader, in-process" if workers == 0 else "ocrtune loader, 1 worker process"] = rate
        del it, loader
    # collate alone (padding + label encoding) on already preprocessed items
    ds, col = LmdbDataset([source]), Collate(charset)
    items = [ds[(0, k % len(source), 0)] for k in range(batch * 8)]
    t = time.perf_counter()
    for k in range(8):
        col(items[k * batch : (k + 1) * batch])
    out["collate only"] = batch * 8 / (time.perf_counter() - t)
    return out


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_ours(
    lmdb_path: Path,
    val_path: Path,
    nproc: int,
    steps: int,
    batch: int,
    work: Path,
    pretrained: str,
    threads=None,
    device: str = "cpu",
    amp: str = "off",
    workers: int = 1,
):
    """(wall s, CPU s of all its processes, the steady samples/s it reports) for one torchrun launch."""
    cfg = work / "bench.yaml"
    cfg.write_text(
        f"name: bench\ntrain:\n  pretrained: {pretrained}\n  charset: korean_g2\n  optimizer: adam\n"
        f"  batch_size: {batch}\n  max_steps: {steps}\n  val_interval: 100000\n  checkpoint_interval: 100000\n"
        f'  warmup_steps: 1\n  workers: {workers}\n  lr: 0.001\n  amp: "{amp}"\n',
        "utf-8",
    )
    out = work / f"ours-{nproc}-{steps}-{pretrained}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh run each time, not a resume
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd += ["-m", "ocrtune", "train", "--config", str(cfg), "--train", str(lmdb_path), "--val", str(val_path)]
    cmd += ["--out", str(out), "--no-mlflow", "--no-progress", "--device", device]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WORLD_SIZE", "RANK"))}
    env["PYTHONPATH"] = str(REPO)
    if threads:
        env["OCRTUNE_THREADS"] = str(threads)
    t, c = time.perf_counter(), _cpu_children()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t, _cpu_children() - c
    if r.returncode != 0:
        raise SystemExit(f"ocrtune train with {nproc} rank(s) failed:\n{r.stderr[-3000:]}")
    return wall, cpu, float(re.search(r"([\d.]+) samples/s", r.stdout).group(1))


SHIM = """import itertools, sys
sys.path.append({deps!r})
import torch._utils
if not hasattr(torch._utils, "_accumulate"):  # removed from torch since DTRB was written; its dataset.py imports it
    torch._utils._accumulate = itertools.accumulate
"""


def run_dtrb(
    dtrb: Path,
    deps: Path,
    lmdb_path: Path,
    val_path: Path,
    steps: int,
    batch: int,
    work: Path,
    *,
    character: str | None = None,
    extra: tuple[str, ...] = (),
    exp_name: str | None = None,
    threads: int = 1,
    val_interval: int = 100000,
) -> tuple[float, float]:
    """(wall s, CPU s) of DTRB's own train.py, None-VGG-BiLSTM-CTC 256/256 at 64x256, on the same LMDBs.

    Its weights and log_train.txt land in DTRB_CHECKOUT/saved_models/EXP_NAME (DTRB's own layout)."""
    shim = work / "dtrb-shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(SHIM.format(deps=str(deps)), "utf-8")
    cmd = [sys.executable, "train.py", "--train_data", str(lmdb_path), "--valid_data", str(val_path)]
    cmd += ["--select_data", "/", "--batch_ratio", "1", "--Transformation", "None"]
    cmd += ["--FeatureExtraction", "VGG", "--SequenceModeling", "BiLSTM", "--Prediction", "CTC"]
    cmd += ["--imgH", "64", "--imgW", "256", "--input_channel", "1", "--output_channel", "256"]
    cmd += ["--hidden_size", "256", "--batch_size", str(batch), "--num_iter", str(steps)]
    cmd += ["--valInterval", str(val_interval), "--workers", "1", "--batch_max_length", "34"]
    cmd += ["--character", character or load_charset("korean_g2"), "--adam", "--lr", "0.001"]
    cmd += ["--exp_name", exp_name or f"bench-{steps}", *extra]  # later flags win in argparse
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORLD_SIZE", "RANK"))}
    env["PYTHONPATH"] = str(shim)
    env["OMP_NUM_THREADS"] = str(threads)
    t, c = time.perf_counter(), _cpu_children()
    r = subprocess.run(cmd, cwd=dtrb, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t, _cpu_children() - c
    if r.returncode != 0 or "end the training" not in r.stdout:
        raise SystemExit(f"DTRB train.py failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return wall, cpu


def rank_bench(lmdb_path: Path, val_path: Path, args, work: Path) -> None:
    """1 rank with 1 thread, 1 rank with both cores, 2 ranks with 1 thread each; alternating, best of --repeat.

    DDP scaling is 2 ranks vs 1 rank at the same threads per rank; 1 rank with 2 threads is what the same
    cores give without DDP (threads inside one process instead of processes)."""
    layouts = [(1, 1), (1, 2), (2, 1)]
    for amp in args.amp.split(","):
        print(
            f"\ntraining, batch {args.batch}/rank, {args.steps} steps, english_g2 -> korean_g2 head, "
            f"amp {amp}, samples/s (best of {args.repeat}):"
        )
        best = dict.fromkeys(layouts, 0.0)
        for _ in range(args.repeat):
            for nproc, threads in layouts:
                rate = run_ours(
                    lmdb_path, val_path, nproc, args.steps, args.batch, work, "english_g2", threads, amp=amp
                )[2]
                best[(nproc, threads)] = max(best[(nproc, threads)], rate)
        one, both, two = best[(1, 1)], best[(1, 2)], best[(2, 1)]
        print(f"  1 rank,  1 thread         {one:8.2f}")
        print(f"  1 rank,  2 threads        {both:8.2f}   {both / one:.2f}x of 1 rank x 1 thread")
        print(
            f"  2 ranks, 1 thread each    {two:8.2f}   {two / one:.2f}x of 1 rank x 1 thread (DDP scaling), "
            f"{two / both:.2f}x of 1 rank x 2 threads"
        )


def gpu_utilisation(samples: list[float], stop: threading.Event) -> None:
    """Poll nvidia-smi every 0.5 s (GPU 0) until ``stop`` is set."""
    while not stop.wait(0.5):
        try:
            r = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
            )
        except FileNotFoundError:  # no nvidia-smi: utilisation is reported as nan
            return
        if r.returncode == 0 and r.stdout.strip().isdigit():
            samples.append(float(r.stdout.strip()))


def gpu_bench(lmdb_path: Path, val_path: Path, args, work: Path) -> None:
    """samples/s on one GPU with AMP (bf16 where supported, else fp16) and the GPU's utilisation meanwhile."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    print(
        f"\nGPU: {torch.cuda.get_device_name(0)}, batch {args.batch}, amp auto, {args.workers} loader workers"
    )
    steps = args.steps
    util: list[float] = []
    stop = threading.Event()
    poll = threading.Thread(target=gpu_utilisation, args=(util, stop), daemon=True)
    poll.start()
    wall, _, rate = run_ours(
        lmdb_path,
        val_path,
        1,
        steps,
        args.batch,
        work,
        "english_g2",
        device="cuda",
        amp="auto",
        workers=args.workers,
    )
    stop.set()
    poll.join()
    steady = util[len(util) // 3 :] or [float("nan")]  # start-up (model load, cuDNN autotune) left out
    print(
        f"  1 GPU: {rate:,.0f} samples/s over {steps} steps ({wall:.0f} s with start-up); GPU utilisation "
        f"mean {np.mean(steady):.0f}% (median {np.median(steady):.0f}%, {len(util)} polls)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=600, help="words rendered into the LMDB")
    ap.add_argument("--steps", type=int, default=12, help="training steps per run (2 first steps not timed)")
    ap.add_argument("--batch", type=int, default=16, help="batch size per rank")
    ap.add_argument("--loader-samples", type=int, default=4000)
    ap.add_argument("--amp", default="off,bf16", help="CPU autocast modes to compare (off, bf16)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: the GPU figures only")
    ap.add_argument("--workers", type=int, default=4, help="loader workers per rank on a GPU")
    ap.add_argument("--skip-loader", action="store_true", help="skip the data-loader figures")
    ap.add_argument("--skip-ranks", action="store_true", help="skip the 1-vs-2-ranks comparison")
    ap.add_argument("--repeat", type=int, default=2, help="alternating runs per configuration; best counts")
    ap.add_argument(
        "--dtrb", type=Path, help="a checkout of clovaai/deep-text-recognition-benchmark: compare"
    )
    ap.add_argument(
        "--dtrb-deps", type=Path, help="directory with DTRB's extra packages (natsort, nltk, six)"
    )
    args = ap.parse_args()
    print(f"machine: {machine()}")
    charset = load_charset("korean_g2")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        lmdb_path, mean_w = make_data(work / "data", args.samples)
        val_path, _ = make_data(work / "val", 32)
        print(
            f"data: {args.samples} Korean words, 3 handwriting fonts, mean width {mean_w:.0f} px at height 64"
        )
        if not args.skip_loader:
            print("\ndata loader (LMDB read + JPEG decode + EasyOCR preprocessing + padding), samples/s:")
            for name, rate in bench_loader(lmdb_path, charset, args.loader_samples, 32).items():
                print(f"  {name:34s} {rate:9,.0f}")
        # other work on a small machine slows runs at random: runs alternate and the best of --repeat counts
        if args.device == "cuda":
            gpu_bench(lmdb_path, val_path, args, work)
        elif not args.skip_ranks:
            rank_bench(lmdb_path, val_path, args, work)
        if args.dtrb:
            n1, n2, b = 3, 3 + args.steps, args.batch
            print(
                f"\nvs DTRB train.py, from scratch, batch {b}, 1 process with 1 thread + 1 loader worker each;"
            )
            print(
                f"samples/s = {n2 - n1} steps x {b} / (best time of a {n2}-step run - best of a {n1}-step run),"
            )
            print(
                "by wall time and by CPU time of all the run's processes (CPU time barely depends on other load):"
            )
            runs = {"d1": [], "o1": [], "d2": [], "o2": []}
            for _ in range(args.repeat):
                runs["d1"].append(run_dtrb(args.dtrb, args.dtrb_deps, lmdb_path, val_path, n1, b, work))
                runs["o1"].append(run_ours(lmdb_path, val_path, 1, n1, b, work, "none", threads=1)[:2])
                runs["d2"].append(run_dtrb(args.dtrb, args.dtrb_deps, lmdb_path, val_path, n2, b, work))
                runs["o2"].append(run_ours(lmdb_path, val_path, 1, n2, b, work, "none", threads=1)[:2])
            for k, label in ((0, "wall"), (1, "CPU ")):
                best = {name: min(r[k] for r in v) for name, v in runs.items()}
                dtrb_rate = (n2 - n1) * b / (best["d2"] - best["d1"])
                ours_rate = (n2 - n1) * b / (best["o2"] - best["o1"])
                print(
                    f"  {label}: DTRB (64x256 stretched) {dtrb_rate:7.2f}   ocrtune (keep-ratio buckets) "
                    f"{ours_rate:7.2f}   ratio {ours_rate / dtrb_rate:.2f}x   "
                    f"({', '.join(f'{n} {t:.1f}s' for n, t in best.items())})"
                )
        print(f"\nmachine after: {machine()}")


if __name__ == "__main__":
    main()
