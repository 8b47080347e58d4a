"""Accuracy after the same number of samples: DTRB's train.py and ``ocrtune train`` fine-tune the same model.

Both start from the real english_g2 (None-VGG-BiLSTM-CTC, 256/256, imgH 64) and train on the same LMDB of English
words in our handwriting fonts, with the same optimizer (Adam, constant learning rate, no warm-up), gradient
clip 5, batch size, number of steps and threads. DTRB stretches every crop to 64x256 (its default); ocrtune
resizes as EasyOCR's Reader does and pads to keep-ratio width buckets. Each tool keeps its best_accuracy.pth by
its own validation on the same val LMDB (DTRB also validates after its first step); both are then read by
plain ``easyocr.Reader`` on the test split, whose typefaces never appear in training.

    fetch github:clovaai/deep-text-recognition-benchmark; check it out into DTRB_CHECKOUT
    pip install --target DEPS natsort nltk six
    .venv/bin/python bench/bench_dtrb_accuracy.py --dtrb DTRB_CHECKOUT --dtrb-deps DEPS [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml

warnings.filterwarnings("ignore")
os.environ.setdefault("PYTHONWARNINGS", "ignore")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_time_to_accuracy import config as tta_config  # noqa: E402
from bench_time_to_accuracy import english_words, score, train_argv  # noqa: E402
from bench_train import run_dtrb  # noqa: E402
from machine import machine  # noqa: E402

from ocrtune.charsets import load_charset  # noqa: E402
from ocrtune.release.frozen_benchmark import load_benchmark  # noqa: E402


def english_data(root: Path, train_count: int) -> None:
    """English words (wordfreq) rendered by ``ocrtune data generate``: train / val / test (held-out fonts)."""
    if (root / "lmdb" / "train").exists():
        return
    words = english_words(root)
    args = argparse.Namespace(train_count=train_count, test_count=300, batch=32, lr=None, head_lr_scale=1.0)
    cfg = tta_config("en", words, args)
    (root / "data.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    run = [sys.executable, "-m", "ocrtune"]
    subprocess.run(
        [
            *run,
            "data",
            "generate",
            "--config",
            str(root / "data.yaml"),
            "--out",
            str(root / "data"),
            "--quiet",
        ],
        check=True,
    )
    subprocess.run(
        [*run, "data", "lmdb", str(root / "data"), str(root / "lmdb")], check=True, stdout=subprocess.DEVNULL
    )


def run_ours(root: Path, pretrained: Path, steps: int, batch: int, lr: float, threads: int, amp: str):
    """(wall s, last validation accuracy, out dir) of ``ocrtune train`` with DTRB's optimizer settings."""
    out = root / f"ours-{amp}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {
        "name": f"vs-dtrb-{amp}",
        "train": {
            "pretrained": str(pretrained),
            "charset": "english_g2",
            "optimizer": "adam",
            "lr": lr,
            "schedule": "constant",
            "warmup_steps": 0,
            "grad_clip": 5.0,
            "batch_size": batch,
            "max_steps": steps,
            "val_interval": steps,
            "checkpoint_interval": steps,
            "workers": 1,
            "amp": amp,
        },
    }
    (root / f"ours-{amp}.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, *train_argv(root / f"ours-{amp}.yaml", root, out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WORLD_SIZE", "RANK"))}
    env["OCRTUNE_THREADS"] = str(threads)
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"ocrtune train failed:\n{(r.stdout + r.stderr)[-3000:]}")
    wall = time.perf_counter() - t
    return wall, last_accuracy(out / "log_train.txt"), out


def last_accuracy(log: Path) -> float:
    """The last Current_accuracy of a DTRB-style log_train.txt, as a fraction (DTRB's tool writes percent)."""
    found = re.findall(r"Current_accuracy\s*:\s*([\d.]+)", log.read_text("utf-8"))
    return float(found[-1]) / 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtrb", type=Path, help="a checkout of deep-text-recognition-benchmark")
    ap.add_argument("--dtrb-deps", type=Path, help="pip --target dir with natsort, nltk, six")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2, help="threads for each tool (run one after the other)")
    ap.add_argument("--train-count", type=int, default=20000)
    ap.add_argument("--bf16", action="store_true", help="also run ocrtune with CPU bf16 autocast")
    ap.add_argument("--keep", type=Path, help="keep the data and runs here (reused when present)")
    args = ap.parse_args()
    if not (args.dtrb and args.dtrb_deps):
        print(
            "skipped: needs a DTRB checkout and its packages (--dtrb DIR --dtrb-deps DIR); see the docstring"
        )
        return
    if not (args.dtrb / "train.py").is_file():
        raise SystemExit(
            f"--dtrb {args.dtrb}: no train.py there (not a deep-text-recognition-benchmark checkout)"
        )
    from easyocr_en_models import model_dir

    print(f"machine: {machine('easyocr')}")
    tmp = Path(tempfile.mkdtemp(prefix="ocrtune-vs-dtrb-"))
    root = args.keep or tmp
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    english_data(root, args.train_count)
    print(
        f"data: {args.train_count} train / 200 val / 300 test (held-out typefaces), {time.perf_counter() - t:.0f} s"
    )
    bench = load_benchmark(root / "data" / "test")
    english_g2 = Path(model_dir()) / "english_g2.pth"
    samples = args.steps * args.batch
    print(f"english_g2 itself through Reader: {score(english_g2, 'english_g2', ['en'], bench, tmp):.4f}")
    print(
        f"\n{args.steps} steps x batch {args.batch} = {samples:,} samples each, Adam lr {args.lr} constant, "
        f"clip 5, {args.threads} threads, 1 loader worker\n"
    )
    rows = []
    # english_g2.pth holds CUDA tensors and DTRB's torch.load has no map_location: hand it a CPU copy
    import torch

    cpu_copy = root / "english_g2-cpu.pth"
    torch.save(torch.load(english_g2, map_location="cpu", weights_only=True), cpu_copy)
    exp = f"vs-ocrtune-{args.steps}"
    shutil.rmtree(args.dtrb / "saved_models" / exp, ignore_errors=True)
    wall, _ = run_dtrb(
        args.dtrb,
        args.dtrb_deps,
        root / "lmdb/train",
        root / "lmdb/val",
        args.steps,
        args.batch,
        root,
        character=load_charset("english_g2"),
        exp_name=exp,
        threads=args.threads,
        val_interval=args.steps,
        extra=("--saved_model", str(cpu_copy), "--FT", "--lr", str(args.lr)),
    )
    d = args.dtrb / "saved_models" / exp
    rows.append(
        (
            "DTRB train.py (64x256 stretched)",
            wall,
            last_accuracy(d / "log_train.txt"),
            score(d / "best_accuracy.pth", "english_g2", ["en"], bench, tmp),
        )
    )
    for amp in ["off", "bf16"] if args.bf16 else ["off"]:
        wall, val, out = run_ours(root, english_g2, args.steps, args.batch, args.lr, args.threads, amp)
        label = "ocrtune train (Reader's resize, buckets)" + (", bf16" if amp == "bf16" else "")
        rows.append((label, wall, val, score(out / "best_accuracy.pth", "english_g2", ["en"], bench, tmp)))
    print(f"{'':44s} {'wall s':>7s} {'samples/s':>9s} {'own val acc':>11s} {'Reader, held-out':>16s}")
    for label, wall, val, acc in rows:
        print(f"{label:44s} {wall:7.0f} {samples / wall:9.1f} {val:11.4f} {acc:16.4f}")
    print("(wall time includes start-up and validation; bench_train.py measures steady samples/s)")
    print(f"machine after: {machine()}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
