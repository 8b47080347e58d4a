"""export: its compiled spec, and its body for real: the checkpoint as a directory plain easyocr.Reader loads."""

from ocrtune.components.export import export
from ocrtune.components.image import image
from support.kfp_chain import compiled, executor, interface, model

from ocrtune.release.easyocr_reader import model_config, open_reader


def test_spec(tmp_path):
    spec = compiled(export, tmp_path)
    assert executor(spec)["image"] == image()
    assert "pip install" not in " ".join(executor(spec)["command"])
    params, arts_in, arts_out = interface(spec)
    assert params == {"profile": "STRING", "charset": "STRING"}
    assert arts_in == {"checkpoint": "system.Model"} and arts_out == {"model": "system.Model"}


def test_body_exports_what_reader_loads(tmp_path_factory):
    out = model(tmp_path_factory.getbasetemp())
    assert {p.name for p in out.iterdir()} == {"custom.pth", "custom.yaml", "custom.py"}
    assert model_config(out)["lang_list"] == ["en"]
    assert open_reader(out) is not None
