"""Atomic writers: every output appears under its final name only once complete.

A job killed half-way leaves at most a `.tmp-*` sibling, never a file that looks finished.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `final`; rename it onto `final` only if the body succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create private (0600/0700) entries; give the result the usual umask mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)
        if directory and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[Mapping]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


def _format_cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_tsv(path: str | os.PathLike, rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> None:
    """Write rows as a TSV with a header; floats get 6 significant digits so tables are diffable."""
    if columns is None:
        columns = list(rows[0].keys()) if rows else []
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_format_cell(row[c]) for c in columns])


def read_tsv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


SAFETENSORS_METADATA_KEY = "bkdattr"


def write_safetensors(path: str | os.PathLike, tensors: Mapping, metadata: Mapping[str, str] | None = None) -> None:
    """Tensors with `metadata` stored as one sorted JSON string under SAFETENSORS_METADATA_KEY: safetensors writes
    a metadata mapping in hash order, which differs from run to run, so several keys would make the same
    tensors give different bytes (read back with `read_safetensors_metadata`)."""
    from safetensors.torch import save_file  # imports torch: atomic also serves the torch-free plots env

    packed = {SAFETENSORS_METADATA_KEY: json.dumps(dict(metadata), sort_keys=True)} if metadata else {}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=packed)


def read_safetensors_metadata(path: str | os.PathLike) -> dict:
    from safetensors import safe_open  # as above: only the rules that read tensors need safetensors

    with safe_open(str(path), "pt") as fh:
        return json.loads((fh.metadata() or {}).get(SAFETENSORS_METADATA_KEY, "{}"))


def write_matrix_tsv(path: str | os.PathLike, matrix, corner: str = "row\\col") -> None:
    """An L x M matrix as TSV: header `corner, 0..M-1`, one row per index."""
    rows = [{corner: i, **{str(j): float(v) for j, v in enumerate(row)}} for i, row in enumerate(matrix)]
    write_tsv(path, rows, [corner] + [str(j) for j in range(len(matrix[0]))])


def read_matrix_tsv(path: str | os.PathLike):
    rows = read_tsv(path)
    return np.array([[float(v) for k, v in row.items() if k.isdigit()] for row in rows])


def write_tsv_union(path: str | os.PathLike, rows: Sequence[Mapping]) -> None:
    """Rows with different keys: columns are the union (first-seen order), missing cells empty."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    write_tsv(path, [{c: row.get(c, "") for c in columns} for row in rows], columns)
