"""Provenance: what the DAG reads from outside itself is fingerprinted, and checked when it is read again.

A result is only reproducible if the files it came from are the files it says it came from. Snakemake tracks
files that are inputs of rules; model checkpoints are directories (and a local `model.path` lies outside
`results/`), so their files are fingerprinted into `model.json` when the model is prepared or trained, and
every job that loads the model checks the fingerprint first: a swapped or deleted weight file stops the job
with a message naming the file and the rule to rerun, instead of silently mixing two models in one run.

The fingerprint of a file is its size and the sha256 of its contents (of its first and last MiB for files
over LARGE_FILE_BYTES, so that 7B checkpoints are fingerprinted in milliseconds; a different set of weights
differs there with overwhelming probability).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

LARGE_FILE_BYTES = 16 << 20
SAMPLE_BYTES = 1 << 20
# Files of a checkpoint that decide what it computes; logs and caches beside them are ignored.
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja", ".gguf", ".py", ".tiktoken")


class ProvenanceError(ValueError):
    """An input changed, vanished or is ambiguous; the message names the file and the fix."""


def file_fingerprint(path: str | Path) -> dict:
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= LARGE_FILE_BYTES:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(fh.read(SAMPLE_BYTES))
            fh.seek(size - SAMPLE_BYTES)
            digest.update(fh.read(SAMPLE_BYTES))
    return {"size": size, "sha256": digest.hexdigest(), "sampled": size > LARGE_FILE_BYTES}


def content_sha256(path: str | Path) -> str:
    """sha256 of every byte of a user data file (symlinks followed), or of a directory's files (their relative
    names and contents, hidden files left out): what a rule that reads the data gets as a param, so new contents
    rerun it even when the modification time was kept (`touch -r`, `cp -p`, a link re-pointed at an older file).
    Never sampled: a data file edited in the middle must count."""
    path = Path(path).expanduser()
    digest = hashlib.sha256()
    if path.is_dir():
        for p in sorted(p for p in path.rglob("*") if p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(path).parts)):
            digest.update(str(p.relative_to(path)).encode("utf-8") + b"\0" + content_sha256(p).encode("ascii"))
        return digest.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def directory_fingerprint(directory: str | Path) -> dict[str, dict]:
    """{relative file name: fingerprint} of a checkpoint directory's model files."""
    directory = Path(directory)
    files = checkpoint_files(directory)
    if not files:
        raise ProvenanceError(f"{directory}: no model files (safetensors, config, tokenizer) to fingerprint")
    return {str(p.relative_to(directory)): file_fingerprint(p) for p in files}


def verify_directory(directory: str | Path, expected: dict[str, dict], *, pointer: str, rule: str) -> None:
    """Raise ProvenanceError naming the first missing, changed or added model file."""
    directory = Path(directory)
    fix = (f"the model at {directory} is not the one {pointer} was written for; rerun what made it "
           f"(snakemake --forcerun {rule}) so every result downstream comes from one model")
    for name, fingerprint in sorted(expected.items()):
        path = directory / name
        if not path.is_file():
            raise ProvenanceError(f"{path}: missing; {fix}")
        if file_fingerprint(path) != fingerprint:
            raise ProvenanceError(f"{path}: changed since it was fingerprinted (size or contents); {fix}")
    added = sorted(set(str(p.relative_to(directory)) for p in checkpoint_files(directory)) - set(expected))
    if added:
        raise ProvenanceError(f"{directory / added[0]}: a model file that was not there when it was fingerprinted; {fix}")


# ---------------------------------------------------------------- config files and JSON rows
class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice in one mapping (PyYAML keeps the last silently)."""


MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _value_node in node.value:
        if key_node.tag == MERGE_TAG:  # `<<: *anchor`: merged keys may be overridden by the mapping's own
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ProvenanceError(f"{loader.name}: line {key_node.start_mark.line + 1}: key {key!r} is written twice in "
                                  f"one mapping (first at line {seen[key]}); YAML would keep only the last one, "
                                  "silently dropping the first block")
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)  # flattens merge keys (SafeConstructor.flatten_mapping)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def yaml_problem(path: str | Path, err: yaml.YAMLError) -> str:
    """A YAML error as `<path>: line L, column C: <problem>; <fix>`: the position of the problem, and for a
    `!!python/...` (or any other unknown) tag, that tags are refused."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err)
    if isinstance(err, yaml.constructor.ConstructorError) and "could not determine a constructor" in problem:
        tag = problem.split("tag ", 1)[-1].strip()
        return (f"{path}: the tag {tag}{where} is refused: config files are read with a safe loader, which builds "
                "plain mappings, lists, strings and numbers only (no Python objects); remove the tag")
    fix = "; indent with spaces, YAML does not allow tabs" if r"\t" in problem or "\t" in problem else ""
    return f"{path}: not valid YAML{where}: {problem}{fix}"


def load_yaml_unique(path: str | Path):
    """yaml.safe_load that names a duplicated key, and the line and column of a syntax error or a refused
    tag, with the file they are in (ProvenanceError)."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        loader = _UniqueKeyLoader(fh)
        loader.name = str(path)
        try:
            return loader.get_single_data()
        except yaml.YAMLError as err:
            raise ProvenanceError(yaml_problem(path, err)) from err
        finally:
            loader.dispose()


def json_object_without_duplicates(pairs):
    """object_pairs_hook for json.loads: a key written twice in one object is an error, not last-wins."""
    keys = [k for k, _ in pairs]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
        raise ValueError(f"key {dup!r} is written twice in one JSON object")
    return dict(pairs)
