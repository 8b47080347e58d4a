"""A frozen benchmark set and the score plain easyocr gets on it: the yardstick for parity and promotion.

A set is a gt.txt directory or a DTRB LMDB; its content hash names it, so a promotion records exactly what
both models were scored on. Scores are taken through ``easyocr.Reader`` (``easyocr_reader``), never
through ocrtune's own inference, because that is what users will run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ocrtune.data.gt_layout import read_gt, read_samples
from ocrtune.data.lmdb import LmdbReader
from ocrtune.errors import UserError
from ocrtune.model.decode import read_crops
from ocrtune.model.network import Model
from ocrtune.model.pretrained import load_recognizer_state
from ocrtune.release.easyocr_reader import export_name, model_config, open_reader, read_crop


@dataclass
class Benchmark:
    path: str
    sha256: str
    samples: list[tuple[str | bytes, str]]  # (image path or encoded bytes, label)
    fonts: list[str | None] | None = None  # each sample's typeface, where the set records it

    def font(self, i: int) -> str | None:
        return self.fonts[i] if self.fonts else None

    def image_bytes(self, i: int) -> bytes:
        img = self.samples[i][0]
        return img if isinstance(img, bytes) else Path(img).read_bytes()

    @property
    def id(self) -> str:
        return f"{Path(self.path).name}@sha256:{self.sha256[:16]}"


def load_benchmark(path: str | Path, limit: int | None = None) -> Benchmark:
    """Samples of a gt.txt dir or an LMDB, with a content hash over images and labels."""
    p = Path(path)
    h = hashlib.sha256()
    samples: list[tuple[str | bytes, str]] = []
    fonts: list[str | None] = []
    if (p / "data.mdb").is_file():
        with LmdbReader(p) as reader:
            n = len(reader) if limit is None else min(limit, len(reader))
            for i in range(n):
                img, label = reader.get(i)
                samples.append((img, label))
                fonts.append(reader.font(i))
    elif (p / "gt.txt").is_file():
        side = read_samples(p)
        for rel, label in read_gt(p)[:limit]:
            samples.append((str(p / rel), label))
            fonts.append(side.get(rel, (None, None))[0])
    else:
        raise UserError(f"{p}: not a benchmark set (expected a gt.txt directory or an LMDB)")
    if not samples:
        raise UserError(f"{p}: benchmark set is empty")
    for img, label in samples:
        data = img if isinstance(img, bytes) else Path(img).read_bytes()
        h.update(hashlib.sha256(data).digest())
        h.update(label.encode("utf-8") + b"\0")
    return Benchmark(str(p), h.hexdigest(), samples, fonts if any(fonts) else None)


def reader_predictions(model_dir: str | Path, bench: Benchmark, reader=None) -> list[tuple[str, float]]:
    """What plain ``easyocr.Reader`` reads on each sample (a ``reader`` already open may be passed)."""
    reader = reader or open_reader(model_dir)
    return [read_crop(reader, img) for img, _ in bench.samples]


def word_accuracy(predictions: list[str], labels: list[str]) -> float:
    return sum(p == t for p, t in zip(predictions, labels, strict=True)) / max(1, len(labels))


def reader_accuracy(model_dir: str | Path, bench: Benchmark) -> float:
    preds = reader_predictions(model_dir, bench)
    return word_accuracy([t for t, _ in preds], [label for _, label in bench.samples])


def ocrtune_predictions(
    model_dir: str | Path, bench: Benchmark, batch_size: int = 64, quantize: bool = False
) -> list[tuple[str, float]]:
    """The same export read by ocrtune's own batched inference (crops grouped by width).

    ``quantize`` applies the int8 dynamic quantization that ``easyocr.Reader`` applies on CPU by default;
    its activation scales are taken per batch, so that path reads one crop at a time, as Reader does.
    """
    d = Path(model_dir)
    cfg = model_config(d)
    state, _ = load_recognizer_state(d / f"{export_name(d)}.pth")
    net = Model(num_class=int(state["Prediction.weight"].shape[0]), **cfg["network_params"])
    net.load_state_dict(state)
    if quantize:  # exactly Reader's CPU path (get_recognizer(quantize=True))
        torch.quantization.quantize_dynamic(net, dtype=torch.qint8, inplace=True)
        batch_size = 1
    return read_crops(
        net,
        [img for img, _ in bench.samples],
        cfg["character_list"],
        imgH=int(cfg["imgH"]),
        batch_size=batch_size,
    )


def parity(model_dir: str | Path, bench: Benchmark) -> dict:
    """ocrtune's own reading vs plain easyocr's on every sample: agreement and both word accuracies.

    The contract (issue: export parity): agreement >= 99% and |accuracy difference| <= 1 point. ocrtune
    reads as Reader does on CPU (int8 dynamic quantization); the float model's accuracy (what training
    validates) and its agreement with Reader are reported beside it, so the cost of int8 is visible too.
    """
    return parity_of(bench, *readings(model_dir, bench))


def readings(model_dir: str | Path, bench: Benchmark) -> tuple[list[str], list[str], list[str]]:
    """ocrtune's int8 reading (as Reader on CPU), plain easyocr.Reader's, ocrtune's float reading."""
    ours = [t for t, _ in ocrtune_predictions(model_dir, bench, quantize=True)]
    theirs = [t for t, _ in reader_predictions(model_dir, bench)]
    ours_float = [t for t, _ in ocrtune_predictions(model_dir, bench, quantize=False)]
    return ours, theirs, ours_float


def parity_of(
    bench: Benchmark, ours: list[str], theirs: list[str], ours_float: list[str] | None = None
) -> dict:
    """The parity figures of readings already made (ocrtune's int8, Reader's, optionally ocrtune's float)."""
    labels = [label for _, label in bench.samples]

    def agreement(a: list[str], b: list[str]) -> float:
        return sum(x == y for x, y in zip(a, b, strict=True)) / len(labels)

    agree = agreement(ours, theirs)
    acc_ours, acc_reader = word_accuracy(ours, labels), word_accuracy(theirs, labels)
    floats = {}
    if ours_float is not None:
        floats = {
            "float_accuracy": word_accuracy(ours_float, labels),
            "float_agreement": agreement(ours_float, theirs),
        }
    return {
        "benchmark": bench.id,
        "samples": len(labels),
        "agreement": agree,
        "ocrtune_accuracy": acc_ours,
        "easyocr_accuracy": acc_reader,
        "accuracy_gap": abs(acc_ours - acc_reader),
        **floats,
        "ok": agree >= 0.99 and abs(acc_ours - acc_reader) <= 0.01,
        "disagreements": [
            {"label": lab, "ocrtune": a, "easyocr": b}
            for lab, a, b in zip(labels, ours, theirs, strict=True)
            if a != b
        ][:20],
    }
