"""Run configs: profiles load, and every mistake names the key and the file."""

from __future__ import annotations

import pytest
from support.cli import run_cli

from ocrtune.config import PROFILES, load_config
from ocrtune.errors import ConfigError


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_load(profile):
    cfg = load_config(profile)
    assert cfg.name == profile
    assert cfg.data.height == 64 and cfg.train.charset == "korean_g2"


def test_full_is_bigger_than_tiny():
    tiny, full = load_config("tiny"), load_config("full")
    assert full.data.train_count >= 100_000 > tiny.data.train_count
    assert full.train.batch_size > tiny.train.batch_size


@pytest.mark.parametrize(
    "text, message",
    [
        ("data:\n  heigth: 64\n", "unknown key 'data.heigth'"),
        ("trian: {}\n", "unknown key 'trian'"),
        ("train:\n  batch_size: lots\n", "'train.batch_size' must be int, got 'lots'"),
        ("train:\n  lr: true\n", "'train.lr' must be float, got True"),
        ("export:\n  lang_list: ko\n", "'export.lang_list' must be a list"),
        ("data: [1, 2]\n", "'data' must be a mapping"),
        ("data:\n  skew: 90\n", "'data.skew' must be within 0..45 degrees"),
        ("train:\n  head_lr_scale: 0\n", "'train.head_lr_scale' must be > 0"),
        ("train:\n  amp: fp8\n", "'train.amp' must be auto, bf16, fp16 or off"),
        ("name: no\n", "'name' must be str, got False (YAML reads on/off/yes/no as booleans: quote it)"),
        ("train: {optimizer: sgd}\n", "'train.optimizer' must be adam, adamw or adadelta"),
        ("data:\n  height: [\n", "not valid YAML at line"),
    ],
)
def test_config_errors_name_key_and_file(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(str(path)) and message in str(exc.value)


def test_int_accepted_for_float_and_defaults_filled(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: mine\ntrain:\n  lr: 1\n")
    cfg = load_config(path)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.data.height == 64


def test_amp_off_unquoted_means_off(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  amp: off\n")  # YAML 1.1 reads it as false
    assert load_config(path).train.amp == "off"


def test_cli_validate(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("name: good\n")
    bad.write_text("data:\n  colour: red\n")
    r = run_cli("config", "validate", str(good))
    assert r.returncode == 0 and "ok" in r.stdout
    r = run_cli("config", "validate", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ocrtune: error: {bad}: unknown key 'data.colour' "
        "(known: augment, backend, background, charset, coverage_min, height, "
        "image_format, margins, mix, seed, skew, test_count, test_fonts, train_count, "
        "val_count, wordfreq_top, words, workers)"
    ]
    r = run_cli("config", "validate", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "no such config file" in r.stderr
