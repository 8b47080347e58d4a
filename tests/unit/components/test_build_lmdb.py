"""build_lmdb: its compiled spec, and its body for real on the tiny dataset."""

from ocrtune.components.build_lmdb import build_lmdb
from ocrtune.components.image import image
from support.kfp_chain import compiled, dataset, executor, interface, lmdb

from ocrtune.data.lmdb import LmdbReader


def test_spec(tmp_path):
    spec = compiled(build_lmdb, tmp_path)
    assert executor(spec)["image"] == image()
    assert "pip install" not in " ".join(executor(spec)["command"])
    assert interface(spec) == ({}, {"dataset": "system.Dataset"}, {"lmdb": "system.Dataset"})


def test_body_writes_one_lmdb_per_split_with_fonts(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    out, (_, meta) = lmdb(base), dataset(base)
    for split, n in {"train": 40, "val": 10, "test": 10}.items():
        with LmdbReader(out / split) as reader:
            assert len(reader) == n
            assert all(reader.font(i) for i in range(n))
    assert (out.parent / "meta.json").read_text().count(meta["content_sha256"]) == 1
    assert (out.parent / "build_lmdb.log").stat().st_size > 0
