"""Export to EasyOCR's custom-model format: NAME.pth + NAME.yaml + NAME.py, loadable by plain easyocr.

* NAME.pth — state dict with every key prefixed ``module.`` (on CPU EasyOCR drops the first 7 characters
  of each key; on GPU it wraps the model in DataParallel, which expects the same prefix).
* NAME.yaml — network_params, imgH, lang_list, character_list (Hangul kept readable: allow_unicode).
* NAME.py — ``ocrtune/model/network.py`` itself, which imports only torch, so no ocrtune is needed to load it.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import torch
import yaml

from ocrtune.errors import UserError
from ocrtune.files import staged_dir
from ocrtune.model import network as model_module
from ocrtune.model.pretrained import load_recognizer_state
from ocrtune.release.easyocr_reader import export_name

NETWORK_PARAMS = {"input_channel": 1, "output_channel": 256, "hidden_size": 256}
ALLOWED_IMPORTS = {"torch", "__future__", "typing", "math"}


def _network_source() -> str:
    """The model's source, checked to import nothing but torch (and the standard typing helpers)."""
    src = Path(model_module.__file__).read_text("utf-8")
    for node in ast.walk(ast.parse(src)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else ["<relative>"]
        for n in names:
            if n.split(".")[0] not in ALLOWED_IMPORTS:
                raise RuntimeError(
                    f"ocrtune/model/network.py imports {n}: an export's NAME.py must import only torch"
                )
    return src


def check_charset(num_class: int, charset: str, where: str) -> None:
    if len(charset) + 1 != num_class:
        raise UserError(
            f"{where}: character_list has {len(charset)} characters (num_class {len(charset) + 1}) "
            f"but the weights have {num_class} classes"
        )


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    name: str = "custom",
    charset: str | None = None,
    lang_list: list[str] | None = None,
    img_h: int = 64,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write NAME.pth/.yaml/.py into ``out`` atomically and prove the trio loads with strict keys."""
    if not name.isidentifier():
        raise UserError(f"export name '{name}' must be a Python identifier (it is EasyOCR's recog_network)")
    state, recorded = load_recognizer_state(checkpoint)
    charset = charset or recorded
    if not charset:
        raise UserError(f"{checkpoint}: the checkpoint records no charset; pass --charset")
    num_class = int(state["Prediction.weight"].shape[0])
    check_charset(num_class, charset, str(checkpoint))
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: exists and is not empty (use --overwrite)")
    with staged_dir(out, overwrite=True) as staging:  # an empty or (with overwrite) old OUT is replaced whole
        torch.save(
            {f"module.{k}": v.detach().cpu().contiguous() for k, v in state.items()}, staging / f"{name}.pth"
        )
        config = {
            "network_params": dict(NETWORK_PARAMS),
            "imgH": int(img_h),
            "lang_list": list(lang_list or ["ko", "en"]),
            "character_list": charset,
        }
        (staging / f"{name}.yaml").write_text(
            yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        (staging / f"{name}.py").write_text(_network_source(), encoding="utf-8")
        info = check_export(staging)
    return {**info, "dir": str(out)}


def check_export(model_dir: str | Path) -> dict[str, Any]:
    """Load NAME.py on its own and the weights into it (strict); errors name what does not match."""
    d = Path(model_dir)
    try:
        name = export_name(d)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    try:
        cfg = yaml.safe_load((d / f"{name}.yaml").read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{d / (name + '.yaml')}: not valid YAML ({type(exc).__name__})") from None
    missing = [k for k in ("network_params", "imgH", "lang_list", "character_list") if k not in (cfg or {})]
    if missing:
        raise UserError(f"{d / (name + '.yaml')}: missing {', '.join(missing)}")
    spec = importlib.util.spec_from_file_location(f"_ocrtune_export_{name}", d / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UserError(f"{d / (name + '.py')}: does not import ({type(exc).__name__}: {exc})") from None
    if not hasattr(module, "Model"):
        raise UserError(f"{d / (name + '.py')}: defines no Model class (EasyOCR calls Model(...))")
    weights = torch.load(d / f"{name}.pth", map_location="cpu", weights_only=True)
    if not all(k.startswith("module.") for k in weights):
        raise UserError(
            f"{d / (name + '.pth')}: keys must start with 'module.' (EasyOCR strips 7 characters)"
        )
    num_class = int(weights["module.Prediction.weight"].shape[0])
    check_charset(num_class, cfg["character_list"], str(d / f"{name}.yaml"))
    try:
        net = module.Model(num_class=num_class, **cfg["network_params"])
    except TypeError as exc:
        raise UserError(
            f"{d / (name + '.py')}: Model does not take (input_channel, output_channel, hidden_size, "
            f"num_class), which EasyOCR passes ({exc})"
        ) from None
    try:
        net.load_state_dict({k[7:]: v for k, v in weights.items()}, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise UserError(f"{d / (name + '.pth')}: does not fit the Model of {name}.py ({first})") from None
    return {"name": name, "num_class": num_class, "imgH": cfg["imgH"], "lang_list": cfg["lang_list"]}
