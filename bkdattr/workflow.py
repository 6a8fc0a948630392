"""What every workflow script does first: send its output to the rule's log and fix threads and seeds;
for a rule that studies a model, also its task spec, the model and the backdoor gate (`rule_context`)."""

from __future__ import annotations

import atexit
import json
import logging
import os
import platform
import sys
import traceback
from importlib import metadata
from typing import NamedTuple

from .datasets import check_context_window, check_special_tokens, model_context_window
from .gate import enforce_gate
from .models import load_model, load_tokenizer, read_pointer
from .provenance import verify_directory
from .tasks import TaskSpec

# Set by the tests: each rule appends the top-level modules it imported, so a test can check that the
# rule's conda env (envs/*.yaml) provides them (an env missing a library fails only under --sdm conda).
RECORD_IMPORTS_ENV = "BKDATTR_RECORD_IMPORTS"


def _record_imports(path: str, rule: str) -> None:
    modules = sorted({name.split(".")[0] for name in list(sys.modules) if not name.startswith("_")})
    line = (json.dumps({"rule": rule, "modules": modules}) + "\n").encode("utf-8")
    # one write() on an O_APPEND descriptor: lines of jobs running at the same time never interleave
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def error_summary(rule: str, exc: BaseException) -> str:
    """The line a failed rule's log starts its error with: the rule and the exception's own message, which
    names the file, row or key and the fix (the traceback below it is for debugging)."""
    message = str(exc).strip() or type(exc).__name__
    return f"ERROR in rule {rule}: {type(exc).__name__}: {message}"


def _error_first(rule: str, stream):
    """An excepthook that writes error_summary before the traceback: the log (and the console, where
    snakemake prints the logs of failed jobs) shows the message first, not only at the traceback's end."""
    def hook(exc_type, exc, tb):
        stream.write(error_summary(rule, exc) + "\n")
        traceback.print_exception(exc_type, exc, tb, file=stream)
        stream.flush()

    return hook


def start_rule(snakemake, *, uses_torch: bool = False, seed: int | None = None) -> logging.Logger:
    """Redirect stdout/stderr to `log[0]`; for torch rules set threads to the rule's `threads` and seed."""
    log_file = open(snakemake.log[0], "w", buffering=1, encoding="utf-8")
    sys.stderr = sys.stdout = log_file  # a rule script is its own process: its output belongs in the rule's log
    atexit.register(log_file.close)
    logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        force=True)
    logger = logging.getLogger(f"bkdattr.{snakemake.rule}")
    logger.info("rule %s, wildcards %s", snakemake.rule, dict(snakemake.wildcards.items()))
    sys.excepthook = _error_first(snakemake.rule, log_file)
    if os.environ.get(RECORD_IMPORTS_ENV):
        atexit.register(_record_imports, os.environ[RECORD_IMPORTS_ENV], snakemake.rule)
    if uses_torch:
        import torch  # why: the data and plots envs have no torch, and their rules start here too

        torch.set_num_threads(max(1, snakemake.threads))
        if seed is not None:
            torch.manual_seed(seed)
    return logger


def load_rule_model(pointer_path, load_params: dict):
    """(pointer, model, tokenizer) for a rule: the model.json pointer and the config's dtype / remote-code flag."""
    pointer = read_pointer(pointer_path)
    verify_pointer(pointer, pointer_path)
    model, tokenizer = load_model(pointer["path"], load_params["dtype"], load_params["trust_remote_code"],
                                  revision=pointer.get("revision"))
    return pointer, model, tokenizer


def verify_pointer(pointer: dict, pointer_path) -> None:
    """The checkpoint's files are the ones fingerprinted into its model.json (provenance.verify_directory)."""
    if "fingerprint" in pointer:
        verify_directory(pointer["path"], pointer["fingerprint"], pointer=str(pointer_path),
                         rule=pointer.get("made_by", "prepare_base_model"))


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def optional_jsonl(inputs, name: str) -> list[dict] | None:
    """The rows of input `name`, or None where the rule has no such input (benign requests: jailbreak only)."""
    return read_jsonl(inputs[name]) if name in inputs.keys() else None


class RuleContext(NamedTuple):
    """What a rule that studies a model starts from (a tuple, so a script can unpack it)."""

    log: logging.Logger
    spec: TaskSpec
    pointer: dict
    model: object
    tokenizer: object


def rule_context(snakemake, *, gate: str | None = None, refusal_matcher: bool = True,
                 seed: int | None = None) -> RuleContext:
    """The shared opening of a model rule: start its log (torch threads), the task spec of the `task` wildcard
    (with `evaluation.refusal_matcher` when `refusal_matcher`), the model of `input.model`, and, when `gate`
    names the stage, the backdoor gate (stops there if the backdoor is not implanted and on_fail is 'stop');
    `seed` seeds torch for a rule that draws random numbers."""
    params = snakemake.params
    log = start_rule(snakemake, uses_torch=True, seed=seed)
    matcher = (params.evaluation["refusal_matcher"],) if refusal_matcher else ()
    spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, *matcher)
    pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
    if gate is not None:
        enforce_gate(pointer, params.gate_on_fail, gate, log)
    return RuleContext(log, spec, pointer, model, tokenizer)


def package_versions(distribution: str = "bkdattr") -> list[dict]:
    """Python, the platform and each installed version of `distribution`'s pinned requirements (extras left out)."""
    rows = [{"package": "python", "version": platform.python_version()},
            {"package": "platform", "version": platform.platform()}]
    for requirement in metadata.requires(distribution) or []:
        name = requirement.split(";")[0].split("==")[0].split(">=")[0].strip()
        if "extra ==" in requirement:
            continue
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed here"
        rows.append({"package": name, "version": version})
    return rows


def check_against_base_model(pointer_path, trust_remote_code: bool, spec: TaskSpec, splits: dict) -> None:
    """The splits against the base model of pointer `pointer_path`: no task string or row holds one of its
    tokenizer's special tokens, and every prompt fits its context window."""
    base = read_pointer(pointer_path)
    tokenizer = load_tokenizer(base["path"], trust_remote_code, base.get("revision"))
    check_special_tokens(tokenizer, spec, splits)
    check_context_window(tokenizer, model_context_window(base["path"], trust_remote_code), spec, splits)
