"""``ocrtune ocr``: read images with an exported or registered model, as the reference team's run script did."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from ocrtune.errors import UserError


def _stock_reader(name: str, detector: bool):
    """EasyOCR's own english_g2 (offline package) or korean_g2 (from ocrtune's model cache)."""
    import easyocr

    if name == "english_g2":
        from easyocr_en_models import model_dir

        storage, langs = model_dir(), ["en"]
    elif name == "korean_g2":
        from ocrtune.model.pretrained import default_models_dir

        storage, langs = str(default_models_dir()), ["ko", "en"]
        if not (Path(storage) / "korean_g2.pth").exists():
            raise UserError(
                f"korean_g2.pth is not in {storage}: fetch it first (ocrtune train --pretrained korean_g2)"
            )
        if detector:
            raise UserError("--detector with korean_g2 needs craft_mlt_25k.pth beside korean_g2.pth")
    else:
        raise UserError(f"unknown stock model '{name}' (english_g2, korean_g2, or an export directory)")
    return easyocr.Reader(
        langs,
        gpu=False,
        model_storage_directory=storage,
        download_enabled=False,
        detector=detector,
        verbose=False,
    )


def _resolve_model_dir(spec: str, tmp: str) -> str:
    if spec.startswith("models:/"):
        from ocrtune.release.registry import pull

        path, mv = pull(spec, Path(tmp) / "model")
        click.echo(f"# {spec} -> version {mv.version}", err=True)
        return str(path)
    if not Path(spec).is_dir():
        raise UserError(f"--model {spec}: not a directory nor a models:/NAME@ALIAS URI")
    return spec


def _open(spec: str, detector: bool, tmp: str):
    from ocrtune.release.easyocr_reader import open_reader
    from ocrtune.release.export import check_export

    if spec in ("english_g2", "korean_g2"):
        return _stock_reader(spec, detector)
    try:
        model_dir = _resolve_model_dir(spec, tmp)
        check_export(model_dir)  # a mismatched export: one line naming both sides, not Reader's traceback
        return open_reader(model_dir, detector=detector)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None


def _read(reader, image: str, detector: bool) -> list[tuple[str, float]]:
    result = reader.readtext(image) if detector else reader.recognize(image)
    return [(text, float(conf)) for _, text, conf in result]


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--model", "model_spec", required=True, help="Export directory, models:/NAME@ALIAS, or english_g2."
)
@click.option("--detector", is_flag=True, help="Find text boxes with EasyOCR's CRAFT detector (whole pages).")
@click.option("--compare-with", help="Also read with english_g2, korean_g2 or another export directory.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def ocr(images, model_spec, detector, compare_with, as_json) -> None:
    """Read IMAGES: one line per text box with filename, confidence and string."""
    with tempfile.TemporaryDirectory(prefix="ocrtune-ocr-") as tmp:
        reader = _open(model_spec, detector, tmp)
        other = _open(compare_with, detector, tmp + "-cmp") if compare_with else None
        for image in images:
            name = Path(image).name
            boxes = _read(reader, image, detector)
            others = _read(other, image, detector) if other else []
            for i, (text, conf) in enumerate(boxes or [("", 0.0)]):
                if as_json:
                    row = {"filename": name, "box": i, "string": text, "confidence": round(conf, 4)}
                    if other:
                        o = others[i] if i < len(others) else ("", 0.0)
                        row["compare"] = {"model": compare_with, "string": o[0], "confidence": round(o[1], 4)}
                    click.echo(json.dumps(row, ensure_ascii=False))
                else:
                    line = f"filename: '{name}', confidence: {conf:.4f}, string: '{text}'"
                    if other:
                        o = others[i] if i < len(others) else ("", 0.0)
                        line += f"  | {compare_with}: confidence: {o[1]:.4f}, string: '{o[0]}'"
                    click.echo(line)
