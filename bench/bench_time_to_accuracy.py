"""Time to accuracy on this CPU: fine-tune, and score checkpoints through plain easyocr on held-out fonts.

English: the real english_g2 fine-tuned on English words in our handwriting fonts, against english_g2 itself.
Korean: english_g2 with head surgery to korean_g2 (what the tiny profile does offline), from 0.
Training runs under torchrun (--nproc ranks) in chunks (``--stop-at``, resumed exactly), so the curve is read
off one schedule; only training wall time counts, scoring happens between chunks through ``easyocr.Reader``
on the test split, whose fonts never appear in training.

    .venv/bin/python bench/bench_time_to_accuracy.py --lang en [--minutes 15] [--chunks 5] [--nproc 1]
    .venv/bin/python bench/bench_time_to_accuracy.py --lang ko --nproc 1 --head-lr-scale 10
"""

from __future__ import annotations

import argparse
import json
import os
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

from machine import machine  # noqa: E402

from ocrtune.release.export import export_model  # noqa: E402
from ocrtune.release.frozen_benchmark import load_benchmark, reader_accuracy  # noqa: E402

PY = sys.executable
TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def ocrtune(*args: str) -> None:
    subprocess.run([PY, "-m", "ocrtune", *args], check=True, stdout=subprocess.DEVNULL)


def config(lang: str, words: Path | None, args) -> dict:
    en = lang == "en"
    return {
        "name": f"tta-{lang}",
        "data": {
            "charset": "english_g2" if en else "korean_g2",
            "words": str(words) if words else None,
            "wordfreq_top": 0 if en else 20000,
            "coverage_min": 0 if en else 5,
            "mix": (
                {"word": 0.8, "phrase": 0.0, "digits": 0.1, "date": 0.05, "latin": 0.05}
                if en
                else {"word": 0.7, "phrase": 0.1, "digits": 0.08, "date": 0.04, "latin": 0.08}
            ),
            "train_count": args.train_count,
            "val_count": 200,
            "test_count": args.test_count,
            "test_fonts": 3,
            "workers": 2,
        },
        "train": {
            "pretrained": "english_g2",
            "charset": "english_g2" if en else "korean_g2",
            "batch_size": args.batch,
            "max_steps": 1000,  # replaced after calibration
            "lr": args.lr or (1e-4 if en else 1e-3),
            "head_lr_scale": args.head_lr_scale,
            "warmup_steps": 20,
            "val_interval": 10**6,
            "checkpoint_interval": 10**6,
            "workers": 0,
        },
        "export": {"name": "custom", "lang_list": ["en"] if en else ["ko", "en"]},
    }


def english_words(root: Path) -> Path:
    """The 8,000 most frequent alphabetic English words of 3+ letters (wordfreq), one per line."""
    import wordfreq

    ws = [w for w in wordfreq.top_n_list("en", 20000) if w.isascii() and w.isalpha() and len(w) > 2]
    words = root / "words.txt"
    words.write_text("\n".join(ws[:8000]) + "\n", encoding="utf-8")
    return words


def train_argv(cfg_file: Path, root: Path, out: Path, *flags: str) -> list[str]:
    """``-m ocrtune train`` on ROOT/lmdb/{train,val} into OUT, without progress bar or MLflow."""
    argv = ["-m", "ocrtune", "train", "--config", str(cfg_file), "--train", str(root / "lmdb/train")]
    return [*argv, "--val", str(root / "lmdb/val"), "--out", str(out), "--no-progress", "--no-mlflow", *flags]


def train(cfg_file: Path, root: Path, out: Path, nproc: int, stop_at: int | None) -> float:
    torchrun = [PY, TORCHRUN, "--standalone", f"--nproc_per_node={nproc}"]
    argv = [*torchrun, *train_argv(cfg_file, root, out, "--resume")]
    if stop_at:
        argv += ["--stop-at", str(stop_at)]
    t = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode not in (0, 75):
        raise SystemExit(f"training failed:\n{r.stdout[-3000:]}")
    return time.monotonic() - t


def score(checkpoint: Path, charset: str, lang_list: list[str], bench, tmp: Path) -> float:
    from ocrtune.charsets import load_charset

    d = tmp / f"export-{time.monotonic_ns()}"
    export_model(checkpoint, d, charset=load_charset(charset), lang_list=lang_list)
    acc = reader_accuracy(d, bench)
    shutil.rmtree(d)
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--lang", choices=["en", "ko"], default="ko", help="default: ko (head surgery from english_g2)"
    )
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--chunks", type=int, default=5)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float)
    ap.add_argument(
        "--head-lr-scale", type=float, help="output layer LR = lr x this (default: 10 for ko, 1 for en)"
    )
    ap.add_argument("--steps", type=int, help="a fixed schedule of this many steps instead of calibrating")
    ap.add_argument("--train-count", type=int, default=20000)
    ap.add_argument("--test-count", type=int, default=300)
    ap.add_argument("--keep", type=Path, help="keep the work directory here")
    args = ap.parse_args()
    if args.head_lr_scale is None:
        args.head_lr_scale = 10.0 if args.lang == "ko" else 1.0
    print(f"machine: {machine('easyocr')}")
    print(f"options: {vars(args)}")
    tmp = Path(tempfile.mkdtemp(prefix="ocrtune-tta-"))
    root = args.keep or tmp
    root.mkdir(parents=True, exist_ok=True)
    words = None
    if args.lang == "en":
        words = english_words(root)
    cfg = config(args.lang, words, args)
    cfg_file = root / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    t = time.monotonic()
    if not (root / "data").exists():
        ocrtune("data", "generate", "--config", str(cfg_file), "--out", str(root / "data"), "--quiet")
        ocrtune("data", "lmdb", str(root / "data"), str(root / "lmdb"))
    print(
        f"data: {args.train_count} train / 200 val / {args.test_count} test images in {time.monotonic() - t:.0f} s"
    )
    bench = load_benchmark(root / "data" / "test")
    split = json.loads((root / "data" / "split.json").read_text())
    print(f"test fonts (never trained on): {split.get('test_fonts_held_out')}")

    charset, langs = cfg["train"]["charset"], cfg["export"]["lang_list"]
    if args.lang == "en":
        from easyocr_en_models import model_dir

        base = score(Path(model_dir()) / "english_g2.pth", charset, langs, bench, tmp)
        print(f"english_g2 itself on the test split (plain easyocr): {base:.4f}")
    else:
        base = 0.0
        print("english_g2 cannot read Hangul: the Korean curve starts at 0")

    for old_run in ("calib", "train"):  # a kept directory's runs would be resumed, not re-run
        shutil.rmtree(root / old_run, ignore_errors=True)
    if args.steps:
        total = args.steps
        print(f"schedule: {total} steps (--steps)")
    else:
        # calibrate s/step on a throwaway run: (20 -> 60 resumed) - (0 -> 20), so start-up cancels out
        calib = train(cfg_file, root, root / "calib", args.nproc, stop_at=20)
        calib2 = train(cfg_file, root, root / "calib", args.nproc, stop_at=60)
        step_s = (calib2 - calib) / 20
        total = int(args.minutes * 60 / step_s)
        print(
            f"calibration: {step_s:.3f} s/step with {args.nproc} ranks at batch {args.batch} "
            f"(20 steps {calib:.0f} s, 40 resumed {calib2:.0f} s, both with start-up) -> {total} steps "
            f"in {args.minutes:.0f} min"
        )
    cfg["train"]["max_steps"] = total
    cfg_file.write_text(yaml.safe_dump(cfg, allow_unicode=True))

    print(f"{'minutes':>8} {'step':>6} {'word accuracy (easyocr.Reader, held-out fonts)':>48}")
    print(f"{0.0:8.1f} {0:6d} {base:48.4f}")
    elapsed, out = 0.0, root / "train"
    for i in range(1, args.chunks + 1):
        stop = total * i // args.chunks
        elapsed += train(cfg_file, root, out, args.nproc, stop_at=None if i == args.chunks else stop)
        acc = score(out / "checkpoint.pth", charset, langs, bench, tmp)
        print(f"{elapsed / 60:8.1f} {stop:6d} {acc:48.4f}", flush=True)
    print(
        f"final: {acc:.4f} vs start {base:.4f} ({100 * (acc - base):+.1f} points) in {elapsed / 60:.1f} min"
    )
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
