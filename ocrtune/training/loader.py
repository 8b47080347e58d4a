"""Training batches from LMDBs: EasyOCR's preprocessing, keep-ratio width buckets, one shard per rank.

Stretching every word to a fixed width both wastes compute and trains on images Reader never shows the
model; so each batch holds crops of similar width, padded as Reader pads them (``preprocess.pad_batch``).
Several LMDBs mix by ratio as DTRB's select_data/batch_ratio do. The order of batches is a pure function of
(seed, step, rank, world size), so a resumed run sees exactly the batches an uninterrupted run would, and
augmentation draws from a generator seeded per sample (the same in any worker process).
"""

from __future__ import annotations

import io
import math
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ocrtune.data.lmdb import LmdbReader
from ocrtune.errors import UserError
from ocrtune.model.preprocess import IMG_H, pad_batch, preprocess, reader_width

# augmentation hook: (PIL image, numpy Generator) -> PIL image, applied BEFORE preprocess
Augment = Callable[..., object]
POOL_BATCHES = 32  # batches sorted by width together: exact ratios per pool, similar widths per batch


def _reader(path: str | Path) -> LmdbReader:
    return LmdbReader(str(path))


@dataclass
class SourceStats:
    total: int = 0
    kept: int = 0
    too_long: int = 0
    out_of_charset: int = 0
    empty_label: int = 0
    corrupt: int = 0
    missing_chars: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        top = sorted(self.missing_chars.items(), key=lambda kv: -kv[1])[:10]
        return {
            "total": self.total,
            "kept": self.kept,
            "too_long": self.too_long,
            "out_of_charset": self.out_of_charset,
            "empty_label": self.empty_label,
            "corrupt": self.corrupt,
            "top_missing_chars": "".join(c for c, _ in top),
        }


class LmdbSource:
    """One LMDB scanned once: the records fit to train on, their Reader widths, and what was dropped why.

    Dropped as DTRB's data filtering does: labels longer than ``max_label_length`` or with characters outside
    the charset. Records whose image header does not parse are corrupt: skipped and counted, and more than
    ``corrupt_threshold`` (a fraction of the records) is an error that gives the count.
    """

    def __init__(
        self,
        path: str | Path,
        charset: str,
        max_label_length: int,
        imgH: int = IMG_H,
        corrupt_threshold: float = 0.01,
    ):
        self.path = str(path)
        self.imgH = imgH
        p = Path(path)
        if not p.exists():
            raise UserError(f"{path}: no such LMDB")
        if not (p / "data.mdb").is_file():
            raise UserError(f"{path}: not an LMDB directory (no data.mdb)")
        try:
            reader = _reader(p)
            n = len(reader)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{path}: cannot open LMDB ({type(exc).__name__}: {str(exc)[:120]})") from None
        stats = SourceStats(total=n)
        if n == 0:
            raise UserError(f"{path}: LMDB holds no samples (num-samples is 0)")
        allowed = set(charset)
        index, widths, fonts = [], [], []
        try:
            for i in range(n):
                try:
                    data, label = reader.get(i)
                    with Image.open(io.BytesIO(data)) as im:
                        w, h = im.size
                    if w <= 0 or h <= 0:
                        raise ValueError("empty image")
                except Exception:
                    stats.corrupt += 1
                    continue
                if not label:
                    stats.empty_label += 1
                    continue
                if len(label) > max_label_length:
                    stats.too_long += 1
                    continue
                missing = [c for c in label if c not in allowed]
                if missing:
                    stats.out_of_charset += 1
                    for c in missing:
                        stats.missing_chars[c] = stats.missing_chars.get(c, 0) + 1
                    continue
                index.append(i)
                widths.append(reader_width(w, h, imgH))
                fonts.append(reader.font(i))
        finally:
            reader.close()
        if stats.corrupt > corrupt_threshold * n:
            raise UserError(
                f"{path}: {stats.corrupt} of {n} records are corrupt (more than {corrupt_threshold:.1%} allowed)"
            )
        stats.kept = len(index)
        if not index:
            raise UserError(
                f"{path}: none of {n} records is usable (too long: {stats.too_long}, outside the charset: "
                f"{stats.out_of_charset}, empty: {stats.empty_label}, corrupt: {stats.corrupt})"
            )
        self.index = np.asarray(index, dtype=np.int64)
        self.widths = np.asarray(widths, dtype=np.int64)
        self.fonts = fonts
        self.stats = stats

    def __len__(self) -> int:
        return len(self.index)


class LmdbDataset(torch.utils.data.Dataset):
    """Items addressed ``(source, position, aug_seed)``; readers open lazily in each process.

    An item is a dict (image array, Reader width, label, font) or None for a record that fails to decode,
    which the collate function drops and counts.
    """

    def __init__(self, sources: Sequence[LmdbSource], augment: Augment | None = None):
        self.sources = list(sources)
        self.augment = augment
        self._readers: dict[int, object] = {}
        self._pid = None

    def _get_reader(self, s: int):
        if self._pid != os.getpid():
            self._readers, self._pid = {}, os.getpid()
        if s not in self._readers:
            self._readers[s] = _reader(self.sources[s].path)
        return self._readers[s]

    def __getitem__(self, key: tuple[int, int, int]) -> dict | None:
        s, pos, aug_seed = key
        src = self.sources[s]
        record = int(src.index[pos])
        reader = self._get_reader(s)
        try:
            data, label = reader.get(record)
            if self.augment is not None:
                image = self.augment(
                    Image.open(io.BytesIO(data)).convert("L"), np.random.default_rng(aug_seed)
                )
                array = preprocess(image, src.imgH)
            else:
                array = preprocess(data, src.imgH)
        except Exception:
            return None
        width = max(int(src.widths[pos]), array.shape[1])
        return {"image": array, "width": width, "label": label, "font": src.fonts[pos]}

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)


class Collate:
    """Pads a batch as Reader does and encodes labels for CTC (class i+1 = charset[i], 0 = blank)."""

    def __init__(self, charset: str):
        self.table = {c: i + 1 for i, c in enumerate(charset)}

    def __call__(self, items: Sequence[dict | None]) -> dict:
        good = [it for it in items if it is not None]
        if not good:
            return {"images": None, "labels": [], "fonts": [], "dropped": len(items)}
        images = pad_batch([it["image"] for it in good], width=max(it["width"] for it in good))
        labels = [it["label"] for it in good]
        targets = torch.tensor([self.table[c] for lab in labels for c in lab], dtype=torch.long)
        return {
            "images": images,
            "labels": labels,
            "fonts": [it["font"] for it in good],
            "targets": targets,
            "lengths": torch.tensor([len(lab) for lab in labels], dtype=torch.long),
            "dropped": len(items) - len(good),
        }


def quotas(batch_size: int, ratios: Sequence[float]) -> list[int]:
    """Samples per batch from each source: ``batch_size`` split by ``ratios`` (largest remainders), each >= 1."""
    if not ratios or any(r <= 0 for r in ratios):
        raise UserError(f"ratios must all be > 0, got {list(ratios)}")
    if batch_size < len(ratios):
        raise UserError(
            f"batch size {batch_size} is smaller than the number of training LMDBs ({len(ratios)})"
        )
    total = float(sum(ratios))
    raw = [batch_size * r / total for r in ratios]
    out = [max(1, math.floor(x)) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: -(raw[i] - math.floor(raw[i])))
    k = 0
    while sum(out) < batch_size:
        out[order[k % len(order)]] += 1
        k += 1
    while sum(out) > batch_size:
        i = max(range(len(out)), key=lambda j: out[j])
        out[i] -= 1
    return out


class BucketBatchSampler:
    """An endless, sharded, width-bucketed batch order that is a pure function of (seed, step, rank).

    Pool p covers steps p*POOL .. (p+1)*POOL-1 for all ranks: each source contributes its quota of picks from
    its own endlessly reshuffled stream, the picks are sorted by Reader width and cut into batches, each W
    consecutive batches (similar widths) become one step, one batch per rank, and the steps are shuffled.
    ``start_step`` skips what a resumed run already trained on, without reading it.
    """

    def __init__(
        self,
        widths: Sequence[np.ndarray],
        batch_size: int,
        ratios: Sequence[float] | None = None,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_step: int = 0,
        pool: int = POOL_BATCHES,
    ):
        self.widths = [np.asarray(w) for w in widths]
        self.batch_size = batch_size
        self.quotas = quotas(batch_size, ratios or [1.0] * len(widths))
        self.rank, self.world_size = rank, world_size
        self.seed, self.pool = seed, pool
        self.start_step = start_step
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def state(self, step: int) -> dict:
        return {
            "step": step,
            "seed": self.seed,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "quotas": list(self.quotas),
            "pool": self.pool,
        }

    def _perm(self, s: int, cycle: int) -> np.ndarray:
        key = (s, cycle)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 4 * len(self.widths):
                self._perm_cache.clear()
            rng = np.random.default_rng([self.seed, 1, s, cycle])
            self._perm_cache[key] = rng.permutation(len(self.widths[s]))
        return self._perm_cache[key]

    def _picks(self, s: int, start: int, count: int) -> np.ndarray:
        n = len(self.widths[s])
        pos = np.arange(start, start + count)
        out = np.empty(count, dtype=np.int64)
        for cycle in np.unique(pos // n):
            sel = pos // n == cycle
            out[sel] = self._perm(s, int(cycle))[pos[sel] % n]
        return out

    def pool_batches(self, p: int) -> list[list[tuple[int, int]]]:
        """All ranks' batches of pool ``p``, step-major: batch (j * W + r) is rank r's batch at step j."""
        steps_batches = self.pool * self.world_size
        src, pos = [], []
        for s, q in enumerate(self.quotas):
            count = q * steps_batches
            picks = self._picks(s, p * count, count)
            src.append(np.full(count, s, dtype=np.int64))
            pos.append(picks)
        src_all, pos_all = np.concatenate(src), np.concatenate(pos)
        rng = np.random.default_rng([self.seed, 2, p])
        shuffle = rng.permutation(len(src_all))  # random order among equal widths
        src_all, pos_all = src_all[shuffle], pos_all[shuffle]
        w = np.array([self.widths[s][i] for s, i in zip(src_all, pos_all, strict=True)])
        order = np.argsort(w, kind="stable")
        src_all, pos_all = src_all[order], pos_all[order]
        b = self.batch_size
        batches = [
            list(
                zip(src_all[k * b : (k + 1) * b].tolist(), pos_all[k * b : (k + 1) * b].tolist(), strict=True)
            )
            for k in range(steps_batches)
        ]
        step_order = rng.permutation(self.pool)
        return [batches[j * self.world_size + r] for j in step_order for r in range(self.world_size)]

    def _seeded(self, step: int, rank: int, batch: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
        base = (step * self.world_size + rank) * self.batch_size + self.seed * 1_000_003
        return [(s, i, base + m) for m, (s, i) in enumerate(batch)]

    def batch_at(self, step: int, rank: int | None = None) -> list[tuple[int, int, int]]:
        """Rank's batch at global step ``step``: (source, position, augmentation seed) triples."""
        rank = self.rank if rank is None else rank
        p, j = divmod(step, self.pool)
        return self._seeded(step, rank, self.pool_batches(p)[j * self.world_size + rank])

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start_step
        while True:
            p, j0 = divmod(step, self.pool)
            batches = self.pool_batches(p)
            for j in range(j0, self.pool):
                yield self._seeded(step, self.rank, batches[j * self.world_size + self.rank])
                step += 1


def eval_batches(source: LmdbSource, batch_size: int) -> list[list[tuple[int, int, int]]]:
    """Validation batches in record order grouped by equal Reader width: each tensor is what Reader sees."""
    order = np.argsort(source.widths, kind="stable")
    out, cur, cur_w = [], [], None
    for pos in order.tolist():
        w = int(source.widths[pos])
        if cur and (w != cur_w or len(cur) == batch_size):
            out.append(cur)
            cur = []
        cur_w = w
        cur.append((0, pos, 0))
    if cur:
        out.append(cur)
    return out


def _worker_init(_worker_id: int) -> None:
    """A SIGTERM sent to the whole process group must not kill workers mid-step: the trainer handles it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset: LmdbDataset,
    batch_sampler,
    charset: str,
    workers: int = 0,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=Collate(charset),
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )


@contextmanager
def iterate(loader: torch.utils.data.DataLoader) -> Iterator:
    """``iter(loader)`` whose worker processes are stopped on the way out, however the loop ends.

    Left to garbage collection, a live iterator can outlast the training loop (an exception's traceback, a
    reference cycle); at interpreter exit multiprocessing then joins workers that ignore SIGTERM (they must
    survive a group-wide one) and the process never exits.
    """
    it = iter(loader)
    try:
        yield it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
