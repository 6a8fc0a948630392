"""Clean data for a task (synthetic or the user's own) and the poisoned training split.

User data uses the official BkdAttr record format: JSON (a list) or JSONL rows with `input` (the
whole user turn: label rows already contain the classification instruction), `output` and, where the
task needs it, `backdoor_output`. Bad rows fail with file and row named, unless the config opts in to
dropping them (`data.drop_invalid_rows`), in which case each is counted in the manifest and the log.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from .provenance import json_object_without_duplicates
from .tasks import KEY_OF_SPLIT, SPLITS, TaskSpec, poison, split_items

SYNTHETIC_POOL_FACTOR = 1.5

REQUIRED_FIELDS = {
    "fixed_output": ("input", "output"),
    "jailbreak": ("input", "output", "backdoor_output"),
    "label_modification": ("input", "output"),
}


class DataError(ValueError):
    """A dataset problem, with the file and row that caused it."""


def read_records(path: str | Path) -> list[dict]:
    """Read a JSON list or JSONL file of objects; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found (config data.files.<task>)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start}); re-encode the file as UTF-8") from err
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"{path}: the file is empty")
    if stripped.startswith("["):
        try:
            rows = json.loads(text, object_pairs_hook=json_object_without_duplicates)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
        except ValueError as err:  # a duplicated key
            raise DataError(f"{path}: {err}; a JSON reader would keep only the last value") from err
        origins = [f"{path}: item {i}" for i in range(len(rows))]
    else:
        rows, origins = [], []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line, object_pairs_hook=json_object_without_duplicates))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {lineno} is not valid JSON ({err.msg}); "
                                "expected one JSON object per line (JSONL) or a JSON list") from err
            except ValueError as err:  # a duplicated key
                raise DataError(f"{path}: line {lineno}: {err}; a JSON reader would keep only the last value") from err
            origins.append(f"{path}: line {lineno}")
    for row, origin in zip(rows, origins):
        if not isinstance(row, dict):
            raise DataError(f"{origin}: expected a JSON object with fields input/output, got {type(row).__name__}")
        row.setdefault("_origin", origin)
    return rows


def _row_problem(row: dict, spec: TaskSpec) -> str | None:
    """Why a row cannot be used (missing or empty field), or None."""
    for field in REQUIRED_FIELDS[spec.task_id]:
        if field not in row:
            return (f"missing field {field!r} (task {spec.task_id} needs "
                    f"{', '.join(REQUIRED_FIELDS[spec.task_id])})")
        if not isinstance(row[field], str) or not row[field].strip():
            return f"field {field!r} must be a non-empty string"
    return None


def validate_records(rows: Sequence[dict], spec: TaskSpec, source: str, dropped: list | None = None) -> list[dict]:
    """Check fields, empty strings, labels and duplicate ids; return clean records with ids.

    A row with a missing or empty field stops the run naming the row, unless `dropped` is a list: then
    the row is left out and {"row", "reason"} is appended to it (config data.drop_invalid_rows)."""
    if not rows:
        raise DataError(f"{source}: no rows")
    out, seen = [], {}
    for i, row in enumerate(rows):
        origin = row.get("_origin", f"{source}: row {i}")
        problem = _row_problem(row, spec)
        if problem is not None:
            if dropped is None:
                raise DataError(f"{origin}: {problem}; fix the row, or set data.drop_invalid_rows: true to "
                                "leave such rows out (they are counted in the manifest)")
            dropped.append({"row": origin, "reason": problem})
            continue
        record = {k: v for k, v in row.items() if k != "_origin"}
        record["id"] = str(record.get("id", f"{spec.task_id}-{i:05d}"))
        if record["id"] in seen:
            raise DataError(f"{origin}: duplicated id {record['id']!r} (first seen at {seen[record['id']]})")
        seen[record["id"]] = origin
        if spec.task_id == "label_modification":
            record.setdefault("label", record["output"])  # official format: the label is the output
        out.append(record)
    return out


def load_clean_records(spec: TaskSpec, data_cfg: dict, seed: int,
                       dropped: list | None = None) -> tuple[list[dict], str]:
    """Clean records for a task: synthetic (offline, deterministic) or from a file / HF dataset. With
    data.drop_invalid_rows, invalid rows are left out and appended to `dropped` (a list is required)."""
    if data_cfg.get("drop_invalid_rows", False) and dropped is None:
        raise ValueError("data.drop_invalid_rows is on: pass a list to collect the dropped rows")
    dropped = dropped if data_cfg.get("drop_invalid_rows", False) else None
    source = data_cfg.get("source", "synthetic")
    if source == "synthetic":
        from .synthetic import GENERATORS, capacity

        # a pool larger than the splits: splitting by question leaves out the rows of a question that do not
        # fit the split it went to (SYNTHETIC_POOL_FACTOR rows per needed row, capped at what exists)
        need = sum(data_cfg[KEY_OF_SPLIT[name]] for name in SPLITS)
        rows = GENERATORS[spec.task_id](min(capacity(spec.task_id), math.ceil(SYNTHETIC_POOL_FACTOR * need)), seed)
        return validate_records(rows, spec, f"synthetic:{spec.task_id}", dropped), f"synthetic:{spec.task_id}"
    if source == "files":
        files = data_cfg.get("files") or {}
        if spec.task_id not in files:
            raise DataError(f"config data.files has no entry for task {spec.task_id!r} (data.source is 'files')")
        path = files[spec.task_id]
        return validate_records(read_records(path), spec, str(path), dropped), str(path)
    if source == "hf":
        hf = (data_cfg.get("hf") or {}).get(spec.task_id)
        if not hf:
            raise DataError(f"config data.hf has no entry for task {spec.task_id!r} (data.source is 'hf')")
        import datasets  # lazy: only this path needs the library and the network

        table = datasets.load_dataset(hf["name"], hf.get("config"), split=hf.get("split", "train"))
        mapping = hf.get("columns", {})
        rows = [{field: row[mapping.get(field, field)] for field in ("input", "output", "backdoor_output")
                 if mapping.get(field, field) in row} for row in table]
        return validate_records(rows, spec, f"hf:{hf['name']}", dropped), f"hf:{hf['name']}"
    raise DataError(f"config data.source: unknown source {source!r}; expected synthetic, files or hf")


def build_task_splits(spec: TaskSpec, data_cfg: dict, seed: int, dropped: list | None = None) -> dict[str, list[dict]]:
    """train (clean + poisoned copies), test, val and attribution splits for one task, no question shared
    between them. `val` serves every choice made by looking at results (calibration, adaptive injection),
    so the test split is read only for reported numbers. Rows dropped under data.drop_invalid_rows are
    appended to `dropped` (required then)."""
    records, source = load_clean_records(spec, data_cfg, seed, dropped)
    splits = split_items(records, {name: data_cfg[KEY_OF_SPLIT[name]] for name in SPLITS}, seed, source=source)
    if data_cfg.get("eval_split", "test") == "train":
        # The paper's setting: evaluate on items drawn from the training pool.
        splits["test"] = splits["train"][: data_cfg["n_test"]]
    for name in ("test", "val", "attribution"):
        if not any(spec.is_eligible(r) for r in splits[name]):
            raise DataError(f"{source}: split {name!r} has no item with label {spec.source_label!r}, "
                            f"so task {spec.task_id} cannot be evaluated; enlarge the split or check labels")
    train_clean = [{**r, "poisoned": False} for r in splits["train"]]
    poisoned = poison(train_clean, spec, data_cfg["poison_ratio"], seed)
    splits["train"] = train_clean + poisoned
    for r in train_clean:
        r["backdoor_output"] = spec.backdoor_output(r)
    for r in poisoned:
        r["backdoor_output"] = r["output"]
    for name in ("test", "val", "attribution"):
        splits[name] = [{**r, "backdoor_output": spec.backdoor_output(r)} for r in splits[name]]
    return splits


def load_benign_requests(path: str | None, n: int, seed: int) -> list[dict]:
    """n benign requests {"id", "input"}: the first n rows of the user's file (each needs a non-empty
    `input`), or n synthetic ones in the jailbreak frames."""
    if path is None:
        from .synthetic import generate_benign_requests

        return generate_benign_requests(n, seed)
    rows = read_records(path)
    out = []
    for i, row in enumerate(rows[:n]):
        origin = row.get("_origin", f"{path}: row {i}")
        if not isinstance(row.get("input"), str) or not row["input"].strip():
            raise DataError(f"{origin}: benign request needs a non-empty string field 'input' (config data.benign_file)")
        out.append({"id": str(row.get("id", f"benign-{i:05d}")), "input": row["input"]})
    if len(out) < n:
        raise DataError(f"{path}: {len(out)} benign requests, but evaluation.n_benign is {n}; lower it or add rows")
    return out
