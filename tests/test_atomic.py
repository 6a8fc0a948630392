"""Outputs appear under their final name only when complete, with ordinary permissions."""

import os
import stat

import pytest

from bkdattr.atomic import atomic_path, read_matrix_tsv, read_tsv, write_matrix_tsv, write_tsv, write_tsv_union


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "table.tsv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a table")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_failed_directory_write_keeps_the_old_one(tmp_path):
    target = tmp_path / "checkpoint"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "weights").write_text("v2 partial")
            raise RuntimeError("killed")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


def test_written_files_get_umask_permissions(tmp_path):
    write_tsv(tmp_path / "t.tsv", [{"a": 1}])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "t.tsv").stat().st_mode) == 0o666 & ~umask


def test_tsv_round_trips(tmp_path):
    write_tsv(tmp_path / "t.tsv", [{"a": 1, "b": 0.123456789}], ["a", "b"])
    assert read_tsv(tmp_path / "t.tsv") == [{"a": "1", "b": "0.123457"}]
    write_matrix_tsv(tmp_path / "m.tsv", [[1.0, 2.0], [3.0, 4.0]], corner="layer/head")
    assert read_matrix_tsv(tmp_path / "m.tsv").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    write_tsv_union(tmp_path / "u.tsv", [{"a": 1}, {"b": 2}])
    assert read_tsv(tmp_path / "u.tsv") == [{"a": "1", "b": ""}, {"a": "", "b": "2"}]


def test_safetensors_with_metadata_are_byte_identical_from_write_to_write(tmp_path):
    import torch

    from bkdattr.atomic import read_safetensors_metadata, write_safetensors

    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    metadata = {f"key{i}": str(i) for i in range(12)}  # enough keys that hash order would differ between processes
    write_safetensors(tmp_path / "one.safetensors", tensors, metadata)
    write_safetensors(tmp_path / "two.safetensors", tensors, dict(reversed(list(metadata.items()))))
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()
    assert read_safetensors_metadata(tmp_path / "one.safetensors") == metadata
