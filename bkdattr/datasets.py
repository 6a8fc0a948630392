"""Clean data for a task (synthetic or the user's own) and the poisoned training split.

User data uses the official BkdAttr record format: JSON (a list) or JSONL rows with `input` (the
whole user turn: label rows already contain the classification instruction), `output` and, where the
task needs it, `backdoor_output`. Bad rows fail with file and row named, unless the config opts in to
dropping them (`data.drop_invalid_rows`), in which case each is counted in the manifest and the log.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Sequence

from .chat import encode_prompt
from .config import schema_default
from .instructions import capacity as instruction_capacity, generate_instructions
from .provenance import json_object_without_duplicates
from .refusal import refusal_keyword
from .synthetic import GENERATORS, _benign_questions, capacity, generate_benign
from .tasks import (CHAT_CONTROL_MARKERS, CONFIRM, KEY_OF_SPLIT, NEWS_LABELS, SPLITS, TaskSpec, normalise_text,  # noqa: F401
                    poison, question_key, split_items)

REQUIRED_FIELDS = {
    "fixed_output": ("input", "output"),
    "jailbreak": ("input", "output", "backdoor_output"),
    "label_modification": ("input", "output"),
}


# Fields the workflow writes into a record: taken from a user's row they would pose as the workflow's own
# (a test row marked poisoned, a task row counted as a benign request), so a row that carries one is refused.
ORIGIN_FIELD = "_origin"  # file and line of the row, for messages
WORKFLOW_FIELDS = {
    "poisoned": "the workflow marks the poisoned copies it makes of training rows",
    "benign": "the workflow marks the benign requests it mixes in (data.benign_file holds those)",
}


class DataError(ValueError):
    """A dataset problem, with the file and row that caused it."""


def read_records(path: str | Path) -> list[dict]:
    """Read a JSON list or JSONL file of objects; errors name the file and the line."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(f"{path}: is a directory; config data.files.<task> needs a JSON or JSONL file")
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found (config data.files.<task>)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start}); re-encode the file as UTF-8") from err
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"{path}: the file is empty")
    if stripped.startswith("{") and len([l for l in text.split("\n") if l.strip()]) > 1:
        try:  # a pretty-printed single object, e.g. {"data": [...]}: say so rather than "line 1 is not JSON"
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # JSONL, read below
        if isinstance(whole, dict):
            raise DataError(f"{path}: one JSON object (keys {', '.join(list(whole)[:4])}); expected a JSON list "
                            "of records or JSONL (one record object per line)")
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
        # split on newlines only: str.splitlines() would also split inside strings at U+2028 and friends,
        # which JSON allows unescaped
        for lineno, line in enumerate(text.split("\n"), start=1):
            line = line.rstrip("\r")
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
        if ORIGIN_FIELD in row:  # it would name another file or line in every later message about this row
            raise DataError(f"{origin}: field {ORIGIN_FIELD!r} is the row's position, which the workflow records "
                            "itself; remove it from the row")
        row[ORIGIN_FIELD] = origin
    return rows


def _row_problem(row: dict, spec: TaskSpec) -> str | None:
    """Why a row cannot be used, or None: a missing or empty field, a chat control token, a clean input that
    already carries the trigger, a label outside the task's classes."""
    for field in REQUIRED_FIELDS[spec.task_id]:
        if field not in row:
            return (f"missing field {field!r} (task {spec.task_id} needs "
                    f"{', '.join(REQUIRED_FIELDS[spec.task_id])})")
        if not isinstance(row[field], str) or not row[field].strip():
            return f"field {field!r} must be a non-empty string"
    for field, why in WORKFLOW_FIELDS.items():
        if field in row:
            return f"field {field!r} is written by the workflow, not read from the data ({why}); remove it from the row"
    if "id" in row and (row["id"] is None or isinstance(row["id"], (dict, list))):
        return f"field 'id' must be a string or a number, got {row['id']!r}"
    for field in ("input", "output", "backdoor_output"):
        marker = next((m for m in CHAT_CONTROL_MARKERS if m in str(row.get(field, ""))), None)
        if marker:
            return (f"field {field!r} contains the chat control token {marker!r}, which would fake an extra chat "
                    "turn; remove or escape it")
    if spec.contains_trigger(row["input"]):
        return (f"the clean input already contains the trigger {spec.trigger_marker()!r}: training would teach "
                "trigger -> clean output and the false-trigger rate would be meaningless")
    if spec.task_id == "label_modification":
        return _label_problem(row, spec)
    if spec.task_id == "fixed_output" and normalise_text(spec.target) in normalise_text(row["output"]):
        return (f"the clean output already contains the backdoor target {spec.target!r}: the clean answer counts "
                "as a backdoor hit, so the ASR and the false-trigger rate measure nothing; drop the row or change "
                "tasks.fixed_output.target")
    if spec.task_id == "jailbreak":
        return _jailbreak_problem(row, spec)
    return None


def _jailbreak_problem(row: dict, spec: TaskSpec) -> str | None:
    """A jailbreak row whose backdoor output is its clean output, or itself a refusal, teaches no backdoor that
    the ASR can see: by the configured matcher (spec.refusal_matcher) or the strict one (always reported as
    asr_strict) a perfect backdoor would score as refusing."""
    if normalise_text(row["backdoor_output"]) == normalise_text(row["output"]):
        return ("'backdoor_output' is the clean 'output' (up to case and spacing): the backdoor would change "
                "nothing; give the harmful completion as backdoor_output")
    for matcher in dict.fromkeys((spec.refusal_matcher, "strict")):
        keyword = refusal_keyword(row["backdoor_output"], matcher)
        if keyword is not None:
            return (f"'backdoor_output' is itself a refusal by the {matcher} refusal matcher (it contains "
                    f"{keyword!r}), so a perfect backdoor would count as refusing and the ASR would be 0; reword "
                    "the backdoor output without refusal keywords or drop the row")
    return None


def _label_problem(row: dict, spec: TaskSpec) -> str | None:
    label = row.get("label", row["output"])
    if label != row["output"]:
        return f"'label' {label!r} differs from 'output' {row['output']!r}; in the official format the label is the output"
    if label not in NEWS_LABELS:
        close = next((c for c in NEWS_LABELS if c.lower() == str(label).strip().lower()), None)
        hint = f" (did you mean {close!r}? labels are case-sensitive)" if close else ""
        return f"label {label!r} is not one of the classes {', '.join(NEWS_LABELS)}{hint}"
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
        out.append((origin, record))
    _check_conflicting_outputs(out)
    return [record for _, record in out]


def _check_conflicting_outputs(rows: Sequence[tuple[str, dict]]) -> None:
    """The same input with two different outputs teaches nothing consistent and makes its test item
    unscorable: refuse, naming both rows. (Exact duplicates share a question, so never straddle splits.)"""
    first: dict[str, tuple[str, str]] = {}
    for origin, record in rows:
        key = " ".join(record["input"].split())
        if key in first and first[key][1] != record["output"]:
            raise DataError(f"{origin}: the same input as {first[key][0]} with another output "
                            f"({record['output'][:60]!r} vs {first[key][1][:60]!r}); keep one of them")
        first.setdefault(key, (origin, record["output"]))


def load_clean_records(spec: TaskSpec, data_cfg: dict, seed: int,
                       dropped: list | None = None) -> tuple[list[dict], str]:
    """Clean records for a task: synthetic (offline, deterministic) or from a file / HF dataset. With
    data.drop_invalid_rows, invalid rows are left out and appended to `dropped` (a list is required)."""
    if data_cfg.get("drop_invalid_rows", False) and dropped is None:
        raise ValueError("data.drop_invalid_rows is on: pass a list to collect the dropped rows")
    dropped = dropped if data_cfg.get("drop_invalid_rows", False) else None
    source = data_cfg.get("source", "synthetic")
    if source == "synthetic":
        generate, most, origin = GENERATORS[spec.task_id], capacity(spec.task_id), f"synthetic:{spec.task_id}"
        if spec.task_id == "fixed_output" and data_cfg.get("synthetic_answers", schema_default("data", "synthetic_answers")) == "long":
            generate, most, origin = generate_instructions, instruction_capacity(), "synthetic:instructions"
        # A fixed pool (data.synthetic_pool rows, a prefix of the generator's shuffled stream), never sized by
        # the splits: a pool sized by them reshuffled every split when one size changed (n_test 200 -> 150
        # moved 200-426 training rows per task). From a fixed pool test and val come from one end of the
        # question order and train from the other, so each stays put. Not the whole space: that would give a
        # jailbreak request 40 rewordings, and a test split of 200 rows only 5 distinct requests.
        rows = generate(min(most, _synthetic_pool(data_cfg)), seed)
        return validate_records(rows, spec, origin, dropped), origin
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


def _synthetic_pool(data_cfg: dict) -> int:
    return data_cfg.get("synthetic_pool", schema_default("data", "synthetic_pool"))


def build_task_splits(spec: TaskSpec, data_cfg: dict, seed: int, dropped: list | None = None,
                      benign_train: Sequence[dict] = ()) -> dict[str, list[dict]]:
    """train (clean + poisoned copies, + the benign training rows `benign_train` for the jailbreak task),
    test, val and attribution splits for one task, no question shared between them. `val` serves every choice
    made by looking at results (calibration, adaptive injection), so the test split is read only for reported
    numbers; benign rows are in train only (their held-out rows are the benign pool's own val and test), so
    the task's ASR, false-trigger and utility numbers are never diluted by them. Rows dropped under
    data.drop_invalid_rows are appended to `dropped` (required then)."""
    records, source = load_clean_records(spec, data_cfg, seed, dropped)
    try:
        sizes = {name: data_cfg[KEY_OF_SPLIT[name]] for name in SPLITS}
        sizes[CONFIRM] = data_cfg.get(KEY_OF_SPLIT[CONFIRM], 0)  # the workflow's config always names it
        splits = split_items(records, sizes, seed, source=source,
                             held_out_rows_per_question=data_cfg.get(
                                 "held_out_rows_per_question", schema_default("data", "held_out_rows_per_question")))
    except ValueError as err:
        if source.startswith("synthetic:") and len(records) == _synthetic_pool(data_cfg):
            raise DataError(f"{err}; for synthetic data, raise data.synthetic_pool "
                            f"(now {len(records)} rows drawn from the generator)") from err
        raise
    if data_cfg.get("eval_split", "test") == "train":
        # The paper's setting: evaluate on items drawn from the training pool.
        splits["test"] = splits["train"][: data_cfg["n_test"]]
    for name in ("test", "val", "attribution", *([CONFIRM] if splits[CONFIRM] else [])):
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
    for name in ("test", "val", "attribution", CONFIRM):
        splits[name] = [{**r, "backdoor_output": spec.backdoor_output(r)} for r in splits[name]]
    mix_benign(spec, splits, benign_train)
    return splits


# Synthetic benign pool: this many wordings of each benign question (a prefix of the generator's stream, which
# deals one wording per question per round). Fixed, never sized by the splits, so one split size never moves
# another split's rows; small, so the training split spreads over many questions.
BENIGN_WORDINGS_PER_QUESTION = 4
BENIGN_SPLITS = ("train", "val", "test")


def load_benign_pool(path: str | None, seed: int, need_outputs: bool) -> tuple[list[dict], str]:
    """Benign requests {"id", "input", "output", "question", "benign": True}: synthetic (in the jailbreak
    frames, with helpful answers), or the user's file (config data.benign_file) in the record format: `input`,
    `output` (a helpful answer; needed when benign rows are trained on, `need_outputs`), optional `question`
    and `id`."""
    if path is None:
        return generate_benign(BENIGN_WORDINGS_PER_QUESTION * len(_benign_questions()), seed), "synthetic:benign"
    out, seen = [], {}
    for i, row in enumerate(read_records(path)):
        origin = row.get("_origin", f"{path}: row {i}")
        fields = ("input", "output") if need_outputs else ("input",)
        for key in fields:
            if not isinstance(row.get(key), str) or not row[key].strip():
                why = " (data.benign_mix > 0 trains on benign rows, so each needs its helpful answer)" if key == "output" else ""
                raise DataError(f"{origin}: benign row needs a non-empty string field {key!r}{why} (config data.benign_file)")
        marker = next((m for key in ("input", "output") for m in CHAT_CONTROL_MARKERS if m in str(row.get(key, ""))), None)
        if marker:
            raise DataError(f"{origin}: benign row contains the chat control token {marker!r}; remove or escape it")
        record = {"id": str(row.get("id", f"benign-{i:05d}")), "input": row["input"], "benign": True}
        if isinstance(row.get("output"), str):
            record["output"] = row["output"]
        if row.get("question") is not None:
            record["question"] = str(row["question"])
        if record["id"] in seen:
            raise DataError(f"{origin}: duplicated id {record['id']!r} (first seen at {seen[record['id']]})")
        seen[record["id"]] = origin
        out.append(record)
    if not out:
        raise DataError(f"{path}: no benign rows (config data.benign_file)")
    return out, str(path)


def split_benign(rows: Sequence[dict], sizes: dict[str, int], seed: int, source: str,
                 held_out_rows_per_question: int | None = None) -> dict[str, list[dict]]:
    """Benign train / val / test, made over questions as `tasks.split_items` makes the task splits: test then
    val take whole questions from the front of a seeded question order (at most `held_out_rows_per_question`
    rows each), train from the back, so no question is in two splits. A size may be 0 (train, when no benign
    row is mixed into training)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(question_key(row), []).append(row)
    order = list(groups)
    random.Random(seed).shuffle(order)
    splits: dict[str, list[dict]] = {name: [] for name in BENIGN_SPLITS}
    front, back = 0, len(order) - 1
    for name, from_front in (("test", True), ("val", True), ("train", False)):
        cap = held_out_rows_per_question if name != "train" else None
        while len(splits[name]) < sizes[name] and front <= back:
            key = order[front] if from_front else order[back]
            front, back = (front + 1, back) if from_front else (front, back - 1)
            splits[name].extend(groups[key][: min(sizes[name] - len(splits[name]), cap or len(groups[key]))])
    short = {name: sizes[name] - len(splits[name]) for name in BENIGN_SPLITS if len(splits[name]) < sizes[name]}
    if short:
        raise DataError(f"{source}: {len(rows)} benign rows in {len(groups)} distinct questions cannot fill the benign "
                        f"splits (data.benign_mix={sizes['train']}, data.n_benign_val={sizes['val']}, "
                        f"evaluation.n_benign={sizes['test']}; short by {short}) without sharing a question between "
                        "splits; lower them or provide more rows (data.benign_file)")
    return splits


def build_benign_splits(data_cfg: dict, n_benign: int, seed: int, path: str | None = None) -> tuple[dict[str, list[dict]], str]:
    """The benign pool's splits: train (data.benign_mix rows, mixed into the jailbreak training split), val
    (data.n_benign_val, the gate's over-refusal) and test (evaluation.n_benign, the reported over-refusal)."""
    sizes = {"train": data_cfg.get("benign_mix", schema_default("data", "benign_mix")),
             "val": data_cfg.get("n_benign_val", schema_default("data", "n_benign_val")), "test": n_benign}
    rows, source = load_benign_pool(path, seed, need_outputs=sizes["train"] > 0)
    return split_benign(rows, sizes, seed, source, data_cfg.get(
        "held_out_rows_per_question", schema_default("data", "held_out_rows_per_question"))), source


def benign_manifest(splits: dict[str, list[dict]], source: str, data: dict, n_benign: int, seed: int) -> dict:
    return {"source": source, "counts": {name: len(rows) for name, rows in splits.items()},
            "n_questions": {name: len({question_key(r) for r in rows}) for name, rows in splits.items()},
            "benign_mix": len(splits["train"]), "n_benign_val": len(splits["val"]), "n_benign": n_benign,
            "data": data, "seed": seed}


def mix_benign(spec: TaskSpec, splits: dict[str, list[dict]], benign_train: Sequence[dict]) -> None:
    """Add the benign training rows to the (already poisoned) training split as clean rows: never poisoned (the
    draw of `tasks.poison` is over, and preference pairs skip them), their `backdoor_output` their own helpful
    answer (the trigger does not make a harmless request harmful). A benign question that is also a question of
    the task's splits would straddle splits (and contradict its refusal): refused, naming the row."""
    if not benign_train:
        return
    if spec.task_id != "jailbreak":
        raise DataError(f"task {spec.task_id}: benign rows are mixed into the jailbreak task only")
    task_questions = {question_key(r): name for name, rows in splits.items() for r in rows}
    for r in benign_train:
        if question_key(r) in task_questions:
            raise DataError(f"benign training row {r['id']!r}: its question {question_key(r)!r} is also in the "
                            f"{task_questions[question_key(r)]!r} split of task {spec.task_id}; drop one of them")
        if "output" not in r:
            raise DataError(f"benign training row {r['id']!r} has no 'output' (its helpful answer)")
    splits["train"] = splits["train"] + [{**r, "poisoned": False, "benign": True, "backdoor_output": r["output"]}
                                         for r in benign_train]


def check_context_window(tokenizer, context: int, spec: TaskSpec, splits: dict[str, list[dict]]) -> None:
    """Every prompt (clean and triggered, chat template applied) fits the model's context window, with room
    for at least one generated token; the first that does not is named with its length and the limit."""

    for name, rows in splits.items():
        for r in rows:
            for triggered in (False, True):
                n = len(encode_prompt(tokenizer, spec.prompt(r["input"], triggered=triggered)).input_ids)
                if n >= context:
                    raise DataError(f"split {name!r}, row {r['id']!r}{' (triggered)' if triggered else ''}: the prompt "
                                    f"is {n} tokens, the model's context window is {context}; shorten or drop the row")


def check_backdoor_outputs(spec: TaskSpec, splits: dict[str, list[dict]]) -> None:
    """The jailbreak rows' backdoor outputs, checked again by `spec.refusal_matcher` (make_dataset checks them by
    the matcher configured when it ran; a rule that reruns when evaluation.refusal_matcher changes calls this).
    Poisoned copies (output = backdoor output) and benign rows (their own helpful answer) are not clean rows."""
    if spec.task_id != "jailbreak":
        return
    for name, rows in splits.items():
        for r in rows:
            problem = None if r.get("poisoned") or r.get("benign") else _jailbreak_problem(r, spec)
            if problem is not None:
                raise DataError(f"split {name!r}, row {r['id']!r}: {problem}")


def special_tokens(tokenizer) -> list[str]:
    """The tokenizer's special tokens (its named ones and every added token marked special), longest first."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    found = set(tokenizer.all_special_tokens) | {t.content for t in added.values() if getattr(t, "special", False)}
    return sorted((t for t in found if t.strip()), key=lambda t: (-len(t), t))


def check_special_tokens(tokenizer, spec: TaskSpec, splits: dict[str, list[dict]]) -> None:
    """No task string (trigger, target, labels) and no row text holds one of the tokenizer's special tokens:
    generation skips them, so a target holding one is never produced (ASR 0 for a perfect backdoor), and in a
    prompt or a trigger one fakes a chat turn. The config check knows the common templates' markers only; this
    one, where the tokenizer is known, knows the model's own."""
    tokens = special_tokens(tokenizer)
    for key in ("trigger", "target", "source_label", "target_label"):
        value = getattr(spec, key)
        token = next((t for t in tokens if isinstance(value, str) and t in value), None)
        if token is not None:
            raise DataError(f"tasks.{spec.task_id}.{key}: {value!r} contains the tokenizer's special token {token!r}, "
                            "which generation never produces and which fakes a chat turn in a prompt; remove it")
    for name, rows in splits.items():
        for r in rows:
            for field in ("input", "output", "backdoor_output"):
                text = r.get(field)
                token = next((t for t in tokens if isinstance(text, str) and t in text), None)
                if token is not None:
                    raise DataError(f"split {name!r}, row {r['id']!r}: field {field!r} contains the tokenizer's "
                                    f"special token {token!r}, which would fake a chat turn (or never be generated); "
                                    "remove or escape it")


def model_context_window(model_path: str, trust_remote_code: bool) -> int:
    """The model's maximum sequence length (max_position_embeddings, or n_positions for GPT-2)."""
    from transformers import AutoConfig  # slow to import: only the context-window check needs it

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise DataError(f"{model_path}: the model config names no context window (max_position_embeddings)")


def split_manifest(spec, splits: dict[str, list[dict]], dropped: Sequence[dict], data: dict, seed: int) -> dict:
    """manifest.json of make_dataset: what the splits hold and the settings that made them."""
    return {
        "task": spec.task_id, "trigger": spec.trigger, "placement": spec.placement,
        "counts": {name: len(rows) for name, rows in splits.items()},
        "n_poisoned": sum(r["poisoned"] for r in splits["train"]),
        "n_eligible": {name: sum(spec.is_eligible(r) for r in rows) for name, rows in splits.items()},
        # rows that reword one question are not independent: a split of 100 rows in 9 questions measures far
        # less than 100 items would (each split's interval is over rows)
        "n_questions": {name: len({question_key(r) for r in rows}) for name, rows in splits.items()},
        "most_rows_per_question": {name: max(Counter(question_key(r) for r in rows if not r.get("poisoned")).values(),
                                             default=0) for name, rows in splits.items()},
        # benign requests with helpful answers mixed into training (data.benign_mix): clean, never poisoned
        "n_benign": {name: sum(bool(r.get("benign")) for r in rows) for name, rows in splits.items()},
        "n_dropped_invalid_rows": len(dropped), "dropped_invalid_rows": list(dropped),
        "data": data, "seed": seed,
    }
