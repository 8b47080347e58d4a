"""The run config: one YAML file, typed and validated, so a typo fails before hours of training do.

Every section is a dataclass; unknown keys and wrong types are errors that name the key and the file.
Three profiles ship inside the package: ``tiny`` (Korean, a 2-core laptop, minutes), ``tiny-en`` (english_g2
fine-tuned on English handwriting, the offline proof) and ``full`` (a GPU cluster).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import wordfreq
import yaml

from ocrtune.data.words import KINDS, WordMix
from ocrtune.errors import ConfigError

PROFILES = ("tiny", "tiny-en", "full")


@dataclass
class DataConfig:
    """Synthetic data generation (fonts, words, renderer) and the split."""

    words: str | None = None  # user word file (UTF-8, one entry a line); None = built-in sources only
    wordfreq_top: int = 5000  # most frequent words taken from wordfreq
    wordfreq_lang: str = "ko"  # whose words: ko, en, ... (wordfreq's language codes)
    coverage_min: int = 3  # every charset character appears at least this many times
    charset: str = "korean_g2"
    train_count: int = 2000
    val_count: int = 200
    test_count: int = 200
    test_fonts: int = 2  # typefaces held out of training entirely (every font file of each)
    height: int = 64
    skew: float = 15.0
    background: str = "mixed"
    augment: bool = True
    image_format: str = "jpg"
    seed: int = 0
    workers: int = 2
    backend: str = "pillow"  # pillow (ours) | trdg (the real trdg 1.8.0 in its own venv)
    margins: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # top, left, bottom, right pixels
    # shares of each kind of text among the non-coverage texts: a mapping (word, phrase, digits, date,
    # latin), or the older list of five numbers in that order
    mix: WordMix = field(default_factory=WordMix)


@dataclass
class TrainConfig:
    """Fine-tuning of the None-VGG-BiLSTM-CTC recognizer."""

    pretrained: str = "korean_g2"
    fallback_pretrained: str | None = "english_g2"
    charset: str = "korean_g2"
    batch_size: int = 32
    max_steps: int = 300
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    schedule: str = "cosine"
    grad_clip: float = 5.0
    val_interval: int = 100
    checkpoint_interval: int = 100
    amp: str = "auto"
    workers: int = 1
    freeze_feature_extractor: bool = False
    freeze_sequence_model: bool = False
    max_label_length: int = 34
    early_stop_patience: int = 0
    seed: int = 0
    fresh_head: bool = False  # EasyOCR's new_prediction: a new output layer instead of head surgery
    head_lr_scale: float = 1.0  # the output layer's learning rate = lr x this (new characters learn faster)
    corrupt_threshold: float = 0.01  # fraction of undecodable LMDB records tolerated (skipped and counted)
    max_bad_steps: int = 10  # abort after this many non-finite losses/gradients in a row


@dataclass
class ExportConfig:
    name: str = "custom"
    lang_list: list[str] = field(default_factory=lambda: ["ko", "en"])


@dataclass
class RegistryConfig:
    model_name: str = "ocrtune-korean"
    min_delta: float = 0.0


@dataclass
class StorageConfig:
    bucket: str = "ocrtune"
    prefix: str = "runs"


@dataclass
class RunConfig:
    name: str = "tiny"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, where: str, source: str) -> Any:
    """Return ``value`` coerced to ``tp`` or raise ConfigError naming ``where`` in ``source``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where, source)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{source}: '{where}' must be {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{where}' must be a list, got {value!r}")
        return [_check(v, item_tp, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if tp is WordMix and isinstance(value, list):
        if len(value) != len(KINDS):
            raise ConfigError(
                f"{source}: '{where}' must list {len(KINDS)} shares ({', '.join(KINDS)}), got {value!r}"
            )
        value = dict(zip(KINDS, value, strict=True))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{source}: '{where}' must be {tp.__name__}, got {value!r}")
    if tp is str and isinstance(value, bool):  # YAML 1.1 reads off/no/on/yes as booleans
        if where == "train.amp" and value is False:
            return "off"  # `amp: off` means what it says
        raise ConfigError(
            f"{source}: '{where}' must be str, got {value!r} (YAML reads on/off/yes/no as booleans: quote it)"
        )
    if not isinstance(value, tp):
        raise ConfigError(f"{source}: '{where}' must be {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, source: str, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix or '<top>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{source}: unknown key '{where}' (known: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else key
        kwargs[key] = _check(value, hints[key], where, source)
    return cls(**kwargs)


def _one_of(*choices: str) -> tuple:
    *head, last = choices
    return (lambda v: v in choices, f"must be {', '.join(head)} or {last}")


def _at_least(low: float, strict: bool = False) -> tuple:
    if strict:
        return (lambda v: v > low, f"must be > {low:g}")
    return (lambda v: v >= low, f"must be >= {low:g}")


# Range checks that types alone cannot express, keyed by the dotted name a message shows; applied to a
# loaded file and to command-line overrides alike, so neither path can skip them.
CHECKS: dict[str, tuple] = {
    "data.height": _at_least(16),
    "data.skew": (lambda v: 0 <= v <= 45, "must be within 0..45 degrees"),
    "data.train_count": _at_least(0, strict=True),
    "data.val_count": _at_least(0),
    "data.test_count": _at_least(0),
    "data.workers": _at_least(1),
    "data.image_format": (lambda v: v in ("jpg", "png"), "must be jpg or png"),
    "data.wordfreq_lang": (
        lambda v: v in wordfreq.available_languages(),
        "must be one of wordfreq's languages (ko, en, ja, ...)",
    ),
    "data.mix": (
        lambda v: all(getattr(v, k) >= 0 for k in KINDS) and sum(getattr(v, k) for k in KINDS) > 0,
        "must be non-negative shares with a positive sum",
    ),
    "train.batch_size": _at_least(0, strict=True),
    "train.max_steps": _at_least(0, strict=True),
    "train.lr": _at_least(0, strict=True),
    "train.workers": _at_least(0),
    "train.head_lr_scale": _at_least(0, strict=True),
    "train.optimizer": _one_of("adam", "adamw", "adadelta"),
    "train.schedule": _one_of("cosine", "onecycle", "constant"),
    "train.amp": _one_of("auto", "bf16", "fp16", "off"),
    "storage.bucket": (lambda v: len(v) >= 3, "must be at least 3 characters"),
}


def _check_range(section: str, obj: Any, key: str, label: str) -> None:
    rule = CHECKS.get(f"{section}.{key}")
    if rule and not rule[0](getattr(obj, key)):
        raise ConfigError(f"{label} {rule[1]}")


def _validate(cfg: RunConfig, source: str) -> RunConfig:
    for name in CHECKS:
        section, key = name.split(".")
        _check_range(section, getattr(cfg, section), key, f"{source}: '{name}'")
    return cfg


def override(section_cfg: Any, section: str, values: dict[str, Any], label: str = "--{flag}") -> Any:
    """``section_cfg`` (e.g. a TrainConfig) with ``values`` replacing its fields, type- and range-checked
    as a config file is. None values are left out (an option not given). ``label`` names a bad value
    in the error: ``--{flag}`` gives the command-line flag (``--max-steps must be > 0``), ``{key}`` the field."""
    given = {k: v for k, v in values.items() if v is not None}
    hints = typing.get_type_hints(type(section_cfg))
    checked = {}
    for key, value in given.items():
        if key not in hints:
            raise ConfigError(f"unknown setting '{section}.{key}'")
        checked[key] = _check(value, hints[key], f"{section}.{key}", "command line")
    result = dataclasses.replace(section_cfg, **checked)
    for key in checked:
        _check_range(section, result, key, label.format(flag=key.replace("_", "-"), key=key))
    return result


def from_dict(data: Any, source: str = "<config>") -> RunConfig:
    return _validate(_build(RunConfig, data, source), source)


def load_config(path_or_profile: str | Path) -> RunConfig:
    """Load a YAML run config from a path, or a shipped profile by name (``PROFILES``)."""
    text: str
    source = str(path_or_profile)
    if str(path_or_profile) in PROFILES:
        text = resources.files("ocrtune.profiles").joinpath(f"{path_or_profile}.yaml").read_text("utf-8")
        source = f"profile '{path_or_profile}'"
    else:
        path = Path(path_or_profile)
        if not path.is_file():
            raise ConfigError(f"{source}: no such config file (profiles: {', '.join(PROFILES)})")
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return from_dict(data, source)
