"""Head surgery: start from any gen2 recognizer with any charset, keeping what the old head already knows.

EasyOCR's trainer fails with "size mismatch for Prediction.weight" whenever the charset changes. Here the
output layer is rebuilt row by row (row 0 = CTC blank, row i+1 = character i): rows of characters the old
and new charsets share are copied, new characters get fresh rows, and the report says what happened.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ocrtune.errors import UserError
from ocrtune.model.network import Model
from ocrtune.model.pretrained import load_recognizer_state, resolve_with_fallback

if TYPE_CHECKING:
    from ocrtune.platform.storage import ObjectStore

HEAD_W, HEAD_B = "Prediction.weight", "Prediction.bias"


def _sample(chars: list[str], n: int = 12) -> str:
    return "".join(chars[:n]) + ("…" if len(chars) > n else "")


def adapt_head(
    state_dict: dict[str, torch.Tensor],
    old_chars: str,
    new_chars: str,
    fresh: bool = False,
    seed: int = 0,
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """A state dict whose output layer fits ``new_chars``, and a report of kept/added/dropped rows.

    New rows start as the mean of the trained character rows plus small noise (std a tenth of the trained
    rows' spread), with the mean trained bias: a new character begins as an "average" character, so it
    neither swamps the trained ones nor starts unreachable. ``fresh`` rebuilds the whole head, blank
    included, with nn.Linear's own init (EasyOCR's ``new_prediction``). Deterministic for a given seed.
    """
    if len(set(new_chars)) != len(new_chars):
        dup = next(c for i, c in enumerate(new_chars) if c in new_chars[:i])
        raise UserError(f"new charset repeats the character {dup!r}")
    if HEAD_W not in state_dict or HEAD_B not in state_dict:
        raise UserError(f"state dict has no {HEAD_W}/{HEAD_B}: not a recognizer")
    rows = state_dict[HEAD_W].shape[0]
    if not fresh and len(old_chars) + 1 != rows:
        raise UserError(
            f"old charset has {len(old_chars)} + 1 classes but {HEAD_W} has {rows} rows: wrong charset for "
            "these weights"
        )
    gen = torch.Generator().manual_seed(seed)
    if fresh:
        return _fresh_head(state_dict, old_chars, new_chars, gen)
    return _surgery_head(state_dict, old_chars, new_chars, gen)


def _head(state_dict: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return state_dict[HEAD_W], state_dict[HEAD_B]


def _fresh_head(
    state_dict: dict[str, torch.Tensor], old_chars: str, new_chars: str, gen: torch.Generator
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """The whole head, blank included, drawn anew with nn.Linear's init (EasyOCR's ``new_prediction``)."""
    weight, bias, out = *_head(state_dict), OrderedDict(state_dict)
    (rows, hidden), n_new = weight.shape, len(new_chars) + 1
    bound = 1.0 / hidden**0.5  # nn.Linear's default init, drawn from our generator for reproducibility
    with torch.no_grad():
        new_w = (torch.rand((n_new, hidden), generator=gen) * 2 - 1) * bound
        new_b = (torch.rand((n_new,), generator=gen) * 2 - 1) * bound
    out[HEAD_W], out[HEAD_B] = new_w.to(weight.dtype), new_b.to(bias.dtype)
    report = {
        "mode": "fresh",
        "old_classes": rows,
        "new_classes": n_new,
        "kept": 0,
        "added": len(new_chars),
        "dropped": len(old_chars),
        "blank": "new",
    }
    report["message"] = (
        f"head {rows} -> {n_new} classes: fresh head (new_prediction), all {len(new_chars)} characters "
        "and the blank start untrained"
    )
    return out, report


def _surgery_head(
    state_dict: dict[str, torch.Tensor], old_chars: str, new_chars: str, gen: torch.Generator
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """The blank and the rows of shared characters copied, new characters' rows drawn near the mean row."""
    weight, bias, out = *_head(state_dict), OrderedDict(state_dict)
    (rows, hidden), n_new = weight.shape, len(new_chars) + 1
    old_index = {c: i + 1 for i, c in enumerate(old_chars)}
    trained_w, trained_b = weight[1:].float(), bias[1:].float()
    mean_w = trained_w.mean(0) if len(old_chars) else torch.zeros(hidden)
    spread = trained_w.std().item() if trained_w.numel() > 1 else 0.01
    mean_b = trained_b.mean().item() if len(old_chars) else 0.0
    new_w = torch.empty((n_new, hidden), dtype=torch.float32)
    new_b = torch.empty((n_new,), dtype=torch.float32)
    new_w[0], new_b[0] = weight[0].float(), bias[0].float()
    kept, added = [], []
    for i, ch in enumerate(new_chars, start=1):
        src = old_index.get(ch)
        if src is not None:
            new_w[i], new_b[i] = weight[src].float(), bias[src].float()
            kept.append(ch)
        else:
            new_w[i] = mean_w + torch.randn(hidden, generator=gen) * (0.1 * spread)
            new_b[i] = mean_b
            added.append(ch)
    new_set = set(new_chars)
    dropped = [c for c in old_chars if c not in new_set]
    out[HEAD_W], out[HEAD_B] = new_w.to(weight.dtype), new_b.to(bias.dtype)
    return out, _surgery_report(rows, n_new, old_chars, new_chars, kept, added, dropped)


def _surgery_report(
    rows: int, n_new: int, old_chars: str, new_chars: str, kept: list, added: list, dropped: list
) -> dict[str, Any]:
    report = {
        "mode": "surgery",
        "old_classes": rows,
        "new_classes": n_new,
        "kept": len(kept),
        "added": len(added),
        "dropped": len(dropped),
        "blank": "kept",
        "added_sample": _sample(added),
        "dropped_sample": _sample(dropped),
    }
    if rows == n_new and old_chars == new_chars:
        report["message"] = f"head unchanged: {rows} classes, same charset"
    else:
        report["message"] = (
            f"head {rows} -> {n_new} classes: kept the blank and {len(kept)} trained rows, added {len(added)} "
            f"new ({report['added_sample'] or '-'}), dropped {len(dropped)} ({report['dropped_sample'] or '-'})"
        )
    return report


def build_model(
    pretrained: str | Path | None,
    charset: str,
    fresh_head: bool = False,
    cache_dir: str | Path | None = None,
    store: ObjectStore | None = None,
    fallback: str | None = None,
    seed: int = 0,
) -> tuple[Model, dict[str, Any]]:
    """A gen2 Model for ``charset``, from ``pretrained`` (korean_g2, english_g2, a .pth, or None: scratch).

    With ``fallback`` (e.g. english_g2) an unavailable ``pretrained`` is replaced and ``report['note']``
    says so. The report always says which weights were used (``base``: the name or path that gave them,
    ``pretrained``: the file) and what the head surgery did.
    """
    if not charset:
        raise UserError("empty charset")
    if pretrained is None:
        torch.manual_seed(seed)
        model = Model(num_class=len(charset) + 1)
        return model, {
            "pretrained": None,
            "base": "none",
            "mode": "scratch",
            "new_classes": len(charset) + 1,
            "message": f"new model from scratch, {len(charset) + 1} classes",
        }
    path, note = resolve_with_fallback(pretrained, fallback, cache_dir, store)
    base = fallback if note else str(pretrained)  # a note from resolve_with_fallback = the fallback was used
    state, old_chars = load_recognizer_state(path)
    rows = state[HEAD_W].shape[0]
    if old_chars is None:
        if fresh_head:
            old_chars = ""
        elif rows == len(charset) + 1:
            old_chars = charset  # same size, unknown names: assume the weights were trained on this charset
            note = (note + "; " if note else "") + f"{path.name} carries no charset: assumed the given one"
        else:
            raise UserError(
                f"{path}: its charset is unknown (no checkpoint charset, no {path.stem}.yaml beside it) and its "
                f"{rows} classes do not fit the {len(charset) + 1} asked for: use a fresh head"
            )
    state, report = adapt_head(state, old_chars, charset, fresh=fresh_head, seed=seed)
    model = Model(num_class=len(charset) + 1)
    model.load_state_dict(state, strict=True)
    report["pretrained"] = str(path)
    report["base"] = base
    if note:
        report["note"] = note
    return model, report


def _keep_eval(module: nn.Module, _inputs: Any) -> None:
    module.eval()


def freeze(model: Model, feature_extractor: bool = False, sequence_model: bool = False) -> dict[str, int]:
    """Stop training the VGG trunk and/or the BiLSTMs; returns trainable/frozen parameter counts.

    A frozen trunk keeps its BatchNorm statistics too (its BatchNorm layers stay in eval mode even under
    ``model.train()``), so it computes exactly what the pretrained model computed.
    """
    parts = []
    if feature_extractor:
        parts.append(model.FeatureExtraction)
        for m in model.FeatureExtraction.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not getattr(m, "_ocrtune_frozen", False):
                m.register_forward_pre_hook(_keep_eval)
                m._ocrtune_frozen = True
                m.eval()
    if sequence_model:
        parts.append(model.SequenceModeling)
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"frozen": frozen, "trainable": trainable}
