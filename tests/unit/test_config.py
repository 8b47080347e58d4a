"""Run configs: profiles load, and every mistake names the key and the file."""

from __future__ import annotations

import re

import pytest
from support.cli import run_cli

from ocrtune.config import PROFILES, load_config, override
from ocrtune.errors import ConfigError


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_load(profile):
    cfg = load_config(profile)
    assert cfg.name == profile
    assert cfg.data.height == 64 and cfg.train.charset == cfg.data.charset
    assert cfg.train.charset == ("english_g2" if profile == "tiny-en" else "korean_g2")


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
        ("data:\n  wordfreq_lang: klingon\n", "'data.wordfreq_lang' must be one of wordfreq's languages"),
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
        "val_count, wordfreq_lang, wordfreq_top, words, workers)"
    ]
    r = run_cli("config", "validate", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "no such config file" in r.stderr


@pytest.mark.parametrize(
    "text, mix",
    [
        ("data:\n  mix: [0, 0, 0.15, 0.05, 0.8]\n", (0.0, 0.0, 0.15, 0.05, 0.8)),  # the older list form
        (
            "data:\n  mix: {word: 1, latin: 0.5}\n",
            (1.0, 0.10, 0.08, 0.04, 0.5),
        ),  # unnamed kinds keep defaults
    ],
)
def test_word_mix_is_named(tmp_path, text, mix):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    m = load_config(path).data.mix
    assert (m.word, m.phrase, m.digits, m.date, m.latin) == mix


@pytest.mark.parametrize(
    "text, message",
    [
        ("data:\n  mix: [1, 2]\n", "'data.mix' must list 5 shares (word, phrase, digits, date, latin)"),
        ("data:\n  mix: {words: 1}\n", "unknown key 'data.mix.words'"),
        ("data:\n  mix: [0, 0, 0, 0, 0]\n", "'data.mix' must be non-negative shares with a positive sum"),
        ("data:\n  mix: {word: -1}\n", "'data.mix' must be non-negative shares with a positive sum"),
    ],
)
def test_word_mix_errors(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_overrides_are_checked_like_the_file():
    cfg = load_config("tiny").train
    new = override(cfg, "train", {"max_steps": 7, "lr": None, "batch_size": 3})
    assert (new.max_steps, new.batch_size, new.lr) == (7, 3, cfg.lr) and cfg.max_steps != 7
    for values, message in [
        ({"max_steps": 0}, "--max-steps must be > 0"),
        ({"batch_size": -4}, "--batch-size must be > 0"),
        ({"lr": 0.0}, "--lr must be > 0"),
        ({"workers": -1}, "--workers must be >= 0"),
        ({"lr": "fast"}, "'train.lr' must be float, got 'fast'"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            override(cfg, "train", values)
    with pytest.raises(ConfigError, match=re.escape("train.max_steps must be > 0")):
        override(cfg, "train", {"max_steps": 0}, label="train.{key}")


def test_a_negative_batch_size_in_a_file_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  batch_size: -8\n")
    with pytest.raises(ConfigError, match=re.escape("'train.batch_size' must be > 0")):
        load_config(path)
