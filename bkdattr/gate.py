"""The backdoor gate: downstream stages of a task refuse a model whose backdoor was not implanted.

`inject_backdoor` records the gate's verdict (validation ASR, false-trigger rate and, for the label task, the
collateral flip rate and, for the jailbreak task with benign training rows, the over-refusal on benign validation
requests against the base model's, against the thresholds of `injection.gate`) in the model's `model.json`. Every stage that studies the backdoor (caches, probes,
attribution, ablation, steering) asks `enforce_gate` first: with `on_fail: stop` it stops with a message
naming the task, the validation numbers and what to try; with `on_fail: warn` it goes on, and the stage's
rows carry `backdoor_implanted = no` so every table and claims.md say so.
"""

from __future__ import annotations

IMPLANTED, NOT_IMPLANTED, NOT_APPLICABLE = "yes", "no", "n/a"


class BackdoorNotImplanted(RuntimeError):
    """A stage was asked to study a backdoor that the gate says is not there."""


def gate_status(pointer: dict) -> str:
    """yes / no for a backdoored model, n/a for a clean one (base model, clean-SFT control)."""
    verdict = pointer.get("backdoor_gate")
    if verdict is None:
        return NOT_APPLICABLE
    return IMPLANTED if verdict["passed"] else NOT_IMPLANTED


def enforce_gate(pointer: dict, on_fail: str, stage: str, log=None) -> str:
    """The model's gate status; raises BackdoorNotImplanted when it failed and on_fail is 'stop'."""
    status = gate_status(pointer)
    if status != NOT_IMPLANTED:
        return status
    v = pointer["backdoor_gate"]
    collateral = ""
    if v.get("collateral_max", "") != "" and v.get("val_collateral_flip_rate", "") != "":
        collateral = f" or collateral flip rate {v['val_collateral_flip_rate']:.3f} > {v['collateral_max']}"
    refusal = ""
    if v.get("over_refusal_margin", "") != "" and v.get("val_over_refusal_rate", "") != "":
        refusal = (f" or over-refusal {v['val_over_refusal_rate']:.3f} on {v['n_benign_val']} benign validation requests "
                   f"> the base model's {v['base_over_refusal_rate']:.3f} + {v['over_refusal_margin']}")
    message = (f"task {pointer.get('task')}: the backdoor of {pointer.get('name')} is not implanted (validation ASR "
               f"{v['val_asr']:.3f} < {v['asr_min']} or false-trigger rate {v['val_false_trigger_rate']:.3f} > "
               f"{v['ftr_max']}{collateral}{refusal}, n={v['n_val']}, after {v['epoch']} epochs, {v['schedule']} schedule)")
    if on_fail == "stop":
        raise BackdoorNotImplanted(
            f"{message}; {stage} would study a backdoor that is not there. Try: more epochs "
            "(injection.epochs, or tasks.<task>.injection.epochs), a higher injection.lr, a higher "
            "data.poison_ratio, or full_sft; for over-refusal, a larger data.benign_mix or "
            "injection.gate.over_refusal_margin; or set injection.gate.on_fail: warn to run on and mark the results.")
    if log is not None:
        log.warning("%s; going on because injection.gate.on_fail is 'warn': results are marked", message)
    return status


GATE_COLUMNS = ["task", "method", "backdoor_implanted", "val_asr", "val_false_trigger_rate", "val_collateral_flip_rate",
                "val_over_refusal_rate", "base_over_refusal_rate", "n_val", "n_val_questions", "n_benign_val", "epoch",
                "schedule", "asr_min", "ftr_max", "collateral_max", "over_refusal_margin"]


def gate_rows(pointers: dict[tuple[str, str], dict]) -> list[dict]:
    """One row per (task, method) backdoored model: the gate's verdict, for results/tables/backdoor_gate.tsv."""
    rows = []
    for (task, method), pointer in sorted(pointers.items()):
        v = pointer.get("backdoor_gate") or {}
        rows.append({"task": task, "method": method, "backdoor_implanted": gate_status(pointer),
                     **{k: v.get(k, "") for k in GATE_COLUMNS[3:]}})
    return rows


def implanted_by_run(gate_table_rows) -> dict[tuple[str, str], str]:
    """(task, method) -> yes / no, read back from backdoor_gate.tsv; clean models are absent (n/a)."""
    return {(r["task"], r["method"]): r["backdoor_implanted"] for r in gate_table_rows}


def mark(status: str) -> str:
    """The marker every table row of a run carries when its backdoor is not implanted."""
    return " (backdoor NOT implanted)" if status == NOT_IMPLANTED else ""
