"""Greedy CTC decoding and its confidence, computed exactly as EasyOCR's ``recognizer_predict`` does.

Evaluation scores must be the numbers a Reader user will see, so the same arithmetic is repeated: softmax,
zero the ignored classes and renormalise (always, even with nothing ignored: the division changes the last
bits), argmax, collapse repeats, drop the blank (class 0); confidence is EasyOCR's ``custom_mean`` of the
per-column maxima over non-blank columns (repeats included), ``prod ** (2 / sqrt(n))``, 0 when all blank.
"""

from __future__ import annotations

import numpy as np
import torch

from ocrtune.model.preprocess import pad_batch, preprocess_with_width


def ignore_indices(charset: str, ignore_chars: str = "") -> list[int]:
    """Class indices of ``ignore_chars`` (EasyOCR drops classes whose characters the language lacks)."""
    return [charset.index(ch) + 1 for ch in ignore_chars if ch in charset]


def probabilities(logits: torch.Tensor, ignore_idx: list[int] | None = None) -> np.ndarray:
    """(B, T, C) float32 probabilities after EasyOCR's ignore-and-renormalise step."""
    prob = torch.softmax(logits.detach().float(), dim=2).cpu().numpy()
    prob[:, :, ignore_idx or []] = 0.0
    return prob / np.expand_dims(prob.sum(axis=2), axis=-1)


def custom_mean(x: np.ndarray) -> float:
    return x.prod() ** (2.0 / np.sqrt(len(x)))


def decode_greedy(logits: torch.Tensor, charset: str, ignore_chars: str = "") -> list[tuple[str, float]]:
    """(text, confidence) per row of (B, T, 1 + len(charset)) logits, identical to EasyOCR's greedy path."""
    if logits.dim() != 3 or logits.shape[2] != len(charset) + 1:
        raise ValueError(
            f"logits of shape {tuple(logits.shape)} do not fit a charset of {len(charset)} + blank"
        )
    prob = probabilities(logits, ignore_indices(charset, ignore_chars))
    index = torch.from_numpy(prob).float().max(2)[1].numpy()  # text from torch's argmax, as EasyOCR
    values, argmax = prob.max(axis=2), prob.argmax(axis=2)  # confidence from numpy's, as EasyOCR
    table = np.array(["[blank]", *charset])
    out = []
    for t, v, i in zip(index, values, argmax, strict=True):
        keep = np.insert(t[1:] != t[:-1], 0, True) & (t != 0)
        text = "".join(table[t[keep]])
        maxima = v[i != 0]
        conf = custom_mean(maxima) if len(maxima) else custom_mean(np.array([0]))
        out.append((text, float(conf)))
    return out


def read_crops(
    model: torch.nn.Module,
    images: list,
    charset: str,
    ignore_chars: str = "",
    imgH: int = 64,
    batch_size: int = 64,
    contrast_ths: float = 0.1,
    adjust_contrast: float = 0.5,
    device: str | torch.device = "cpu",
) -> list[tuple[str, float]]:
    """Read whole-image crops as ``Reader.recognize`` does, batched without changing any crop's input.

    Crops are grouped by the width Reader pads each to, so every batch row equals Reader's own tensor; a
    reading under ``contrast_ths`` is retried on the contrast-stretched crop and the more confident one kept.
    """

    def run(indices: list[int], contrast: float) -> dict[int, tuple[str, float]]:
        groups: dict[int, list[tuple[int, object]]] = {}
        for i in indices:
            arr, width = preprocess_with_width(images[i], imgH, contrast)
            groups.setdefault(width, []).append((i, arr))
        out: dict[int, tuple[str, float]] = {}
        model.eval()
        with torch.no_grad():
            for width, items in groups.items():
                for k in range(0, len(items), batch_size):
                    chunk = items[k : k + batch_size]
                    x = pad_batch([a for _, a in chunk], width).to(device)
                    for (i, _), res in zip(
                        chunk, decode_greedy(model(x), charset, ignore_chars), strict=True
                    ):
                        out[i] = res
        return out

    first = run(list(range(len(images))), 0.0)
    low = [i for i, (_, conf) in first.items() if conf < contrast_ths]
    if low:
        second = run(low, adjust_contrast)
        for i in low:
            if second[i][1] >= first[i][1]:  # Reader keeps the retry unless the first is strictly better
                first[i] = second[i]
    return [first[i] for i in range(len(images))]
