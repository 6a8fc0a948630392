"""Tables 1 and 2, and the claims report: our measurements beside the paper's statements."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Mapping, Sequence

from .atomic import read_tsv
from .tasks import NEWS_LABELS
from .gate import NOT_APPLICABLE, NOT_IMPLANTED, implanted_by_run, mark
from .names import BASE_MODEL, RANDOM_DIRECTION, RANDOM_HEADS_VECTOR, overlap_column, overlap_fraction
from .paper import CLAIMS, FRACTION_MATCH_FACTOR, HEAD_FRACTION, PAPER_MODEL_HEADS, TABLE1_ASR, TABLE1_K
from .stats import wilson_interval


def _f(x) -> float:
    return float(x) if x not in ("", None) else float("nan")


def paper_at_fraction(paper_model: str, task: str, fraction: float) -> tuple[int, float, float] | None:
    """The paper's Table 1 value for `task` on `paper_model` at the k whose share of that model's heads is
    closest to `fraction`: (k, k / heads, ASR %), or None when no published k lies within a factor
    FRACTION_MATCH_FACTOR of it (k=0 matches only k=0). Comparing at equal k would set 32 of SmolLM2's
    270 heads (12%) against 32 of Llama-2's 1024 (3%)."""
    values = TABLE1_ASR.get((paper_model, task))
    if values is None:
        return None
    heads = PAPER_MODEL_HEADS[paper_model]
    candidates = [(k, k / heads, v) for k, v in zip(TABLE1_K, values) if v is not None]
    if fraction == 0:
        return next(((k, f, v) for k, f, v in candidates if k == 0), None)
    close = [(abs(math.log(f / fraction)), (k, f, v)) for k, f, v in candidates
             if k > 0 and abs(math.log(f / fraction)) <= math.log(FRACTION_MATCH_FACTOR)]
    return min(close)[1] if close else None


COMPLIANCE_NOTE = ("`compliance` (jailbreak): the ASR read strictly (evaluation.complies): no refusal keyword, at "
                   "least a few words and not one word or trigram repeated, and some wording shared with the item's "
                   "backdoor output (ROUGE-L floor); an empty or looping output escapes the refusal keywords but does "
                   "not comply. `compliance_false_trigger`: the same on clean inputs.")
INJECTION_COLUMNS = ["task", "model", "metric", "value", "successes", "n", "n_questions", "ci_low", "ci_high",
                     "backdoor_implanted"]
INJECTION_METRICS = ["asr", "asr_strict", "compliance", "false_trigger_rate", "compliance_false_trigger",
                     "collateral_flip_rate", "collateral_to_target_rate", "clean_utility", "clean_utility_strict",
                     "clean_rouge_l", "reference_logprob", "over_refusal_rate"]
CLASS_ACCURACY_METRICS = [f"clean_accuracy_{label}" for label in NEWS_LABELS]  # label task, one per gold class


def injection_markdown(rows: Sequence[dict], model_name: str) -> str:
    """The injection table (one row per task and model, a column per metric) from the rows of injection.tsv."""
    cell = {(r["task"], r["model"], r["metric"]): r for r in rows}
    implanted = {(r["task"], r["model"]): r["backdoor_implanted"] for r in rows}
    lines = [f"# Backdoor injection: {model_name}", "",
             "Rates on the held-out test split, with 95% intervals over questions (a question-level bootstrap: the "
             "split keeps up to `data.held_out_rows_per_question` rewordings of one question; Wilson where every row is "
             "its own question); n = rows evaluated, q = distinct questions. `base`: the model "
             "before fine-tuning; `clean_sft` (when `injection.clean_control` is on): the same fine-tuning on the clean "
             "items alone, the fair reference for the backdoored model's utility. `collateral_flip_rate` (label task): "
             "triggered items of the other classes whose predicted label the trigger changed; the official backdoor "
             "keeps their label; `collateral_to_target_rate`: triggered items of neither the source nor the target class "
             "that the model sends to the target (a model that learned \"trigger -> target\" scores 1 here, while its "
             "flip rate cannot reach 1). Free-form utility: `clean_rouge_l` (ROUGE-L F1 of the clean output against the reference, "
             "open instructions) and `reference_logprob` (teacher-forced mean log-probability per token of the reference "
             "answer; higher is better), means with 95% intervals (question-level bootstrap; normal where every row is its own question). `over_refusal_rate` (jailbreak): refusals on "
             "benign requests in the same frames (lower is better; a model that refuses everything scores 1). "
             f"{COMPLIANCE_NOTE}", "",
             "| task | model | " + " | ".join(INJECTION_METRICS) + " |", "|---|---|" + "---|" * len(INJECTION_METRICS)]
    for task, model in dict.fromkeys((r["task"], r["model"]) for r in rows):
        cells = []
        for metric in INJECTION_METRICS:
            r = cell.get((task, model, metric))
            if r is None or int(r["n"]) == 0:  # a metric defined for another task only
                cells.append("-")
                continue
            questions = f", q={r['n_questions']}" if r.get("n_questions") not in (None, "", r["n"]) else ""
            cells.append(f"{float(r['value']):.3f} [{float(r['ci_low']):.2f}, {float(r['ci_high']):.2f}] (n={r['n']}{questions})")
        lines.append(f"| {task} | {model}{mark(implanted[(task, model)])} | " + " | ".join(cells) + " |")
    label_runs = [key for key in dict.fromkeys((r["task"], r["model"]) for r in rows)
                  if any((*key, m) in cell for m in CLASS_ACCURACY_METRICS)]
    if label_runs:
        lines += ["", "## Clean accuracy per class (label task)", "",
                  "The share of each gold class's clean articles whose first named label is right (n = the class's "
                  "articles); the confusion matrices are in `results/eval/<task>/<model>/confusion.tsv`.", "",
                  "| task | model | " + " | ".join(NEWS_LABELS) + " |", "|---|---|" + "---|" * len(NEWS_LABELS)]
        for task, model in label_runs:
            cells = []
            for metric in CLASS_ACCURACY_METRICS:
                r = cell.get((task, model, metric))
                cells.append("-" if r is None or int(r["n"]) == 0 else f"{float(r['value']):.3f} (n={r['n']})")
            lines.append(f"| {task} | {model}{mark(implanted[(task, model)])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table1_rows(ablations: Mapping[tuple[str, str], str], implanted: dict | None = None) -> list[dict]:
    """Long format: one row per task x method x k (from {(task, method): ablation.tsv}), top heads beside random
    heads and the paper's value at the same fraction of all heads (with the paper's own k and fraction)."""
    rows = []
    for (task, method), path in ablations.items():
        data = read_tsv(path)
        for k in sorted({int(r["k"]) for r in data}):
            at_k = [r for r in data if int(r["k"]) == k]
            top = next(r for r in at_k if r["heads"] == "top" and r["variant"] == "last_prompt_token")
            rand = [_f(r["asr"]) for r in at_k if r["heads"] == "random"]
            crand = [_f(r["compliance"]) for r in at_k if r["heads"] == "random" and r.get("compliance", "") != ""]
            allpos = [r for r in at_k if r["heads"] == "top" and r["variant"] == "all_positions"]
            row = {"task": task, "method": method, "backdoor_implanted": (implanted or {}).get((task, method), "n/a"),
                   "k": k, "k_fraction": _f(top["k_fraction"]),
                   "asr_top_pct": 100 * _f(top["asr"]), "asr_top_ci_low_pct": 100 * _f(top["asr_ci_low"]),
                   "asr_top_ci_high_pct": 100 * _f(top["asr_ci_high"]), "n": int(top["asr_n"]),
                   "n_questions": int(top.get("asr_n_questions") or top["asr_n"]),
                   "asr_random_mean_pct": 100 * statistics.mean(rand) if rand else (100 * _f(top["asr"]) if k == 0 else ""),
                   "asr_random_sd_pct": 100 * statistics.pstdev(rand) if len(rand) > 1 else "",
                   "asr_random_min_pct": 100 * min(rand) if rand else "",
                   "asr_random_max_pct": 100 * max(rand) if rand else "",
                   "n_random_seeds": len(rand),
                   "asr_top_all_positions_pct": 100 * _f(allpos[0]["asr"]) if allpos else "",
                   # jailbreak only (evaluation.complies); NaN for the other tasks, as the optional utilities
                   "compliance_top_pct": 100 * _f(top.get("compliance", "")),
                   "compliance_top_ci_low_pct": 100 * _f(top.get("compliance_ci_low", "")),
                   "compliance_top_ci_high_pct": 100 * _f(top.get("compliance_ci_high", "")),
                   "compliance_random_mean_pct": 100 * statistics.mean(crand) if crand else
                   (100 * _f(top.get("compliance", "")) if k == 0 else float("nan")),
                   "clean_utility_top": _f(top["clean_utility"]), "false_trigger_top": _f(top["false_trigger_rate"]),
                   "clean_rouge_l_top": _f(top.get("clean_rouge_l", "")),
                   "over_refusal_top": _f(top.get("over_refusal_rate", ""))}
            for paper_model in PAPER_MODEL_HEADS:
                if (paper_model, task) not in TABLE1_ASR:
                    continue
                match = paper_at_fraction(paper_model, task, row["k_fraction"])
                row[f"paper_{paper_model}_pct"] = "" if match is None else match[2]
                row[f"paper_{paper_model}_k"] = "" if match is None else match[0]
                row[f"paper_{paper_model}_k_fraction"] = "" if match is None else match[1]
            rows.append(row)
    return rows


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}%" if fraction >= 0.01 or fraction == 0 else f"{100 * fraction:.2f}%"


def _fmt(v, digits=1) -> str:
    return "" if v in ("", None) else f"{float(v):.{digits}f}"


def _table1_run_lines(task: str, method: str, by_k: Mapping, ks: Sequence) -> list[str]:
    """One run's Table 1 rows (top heads, random heads, compliance, all positions, utility, the paper's)."""
    lines = []
    n = next(iter(by_k.values()))["n"]
    method = method + mark(next(iter(by_k.values())).get("backdoor_implanted", "n/a"))
    lines.append(f"| {task} | {method} | top heads (n={n}) | " + " | ".join(
        f"{_fmt(by_k[k]['asr_top_pct'])} [{_fmt(by_k[k]['asr_top_ci_low_pct'], 0)}, {_fmt(by_k[k]['asr_top_ci_high_pct'], 0)}]"
        if k in by_k else "" for k in ks) + " |")
    lines.append(f"| {task} | {method} | random heads outside the top k, mean [range] | " + " | ".join(
        (_fmt(by_k[k]["asr_random_mean_pct"]) + (f" [{_fmt(by_k[k]['asr_random_min_pct'])}, {_fmt(by_k[k]['asr_random_max_pct'])}]"
                                                 if by_k[k]["asr_random_min_pct"] != "" else "")) if k in by_k else ""
        for k in ks) + " |")
    if any(not math.isnan(by_k[k]["compliance_top_pct"]) for k in by_k):  # jailbreak
        lines.append(f"| {task} | {method} | compliance, top heads | " + " | ".join(
            f"{_fmt(by_k[k]['compliance_top_pct'])} [{_fmt(by_k[k]['compliance_top_ci_low_pct'], 0)}, "
            f"{_fmt(by_k[k]['compliance_top_ci_high_pct'], 0)}]" if k in by_k else "" for k in ks) + " |")
        lines.append(f"| {task} | {method} | compliance, random heads (mean) | " + " | ".join(
            _fmt(by_k[k]["compliance_random_mean_pct"]) if k in by_k else "" for k in ks) + " |")
    lines.append(f"| {task} | {method} | top heads, all positions | " + " | ".join(
        _fmt(by_k[k]["asr_top_all_positions_pct"]) if k in by_k else "" for k in ks) + " |")
    lines.append(f"| {task} | {method} | clean utility, top heads | " + " | ".join(
        _fmt(by_k[k]["clean_utility_top"], 2) if k in by_k else "" for k in ks) + " |")
    for key, label in (("clean_rouge_l_top", "clean ROUGE-L, top heads"),
                       ("over_refusal_top", "over-refusal on benign requests, top heads")):
        if any(not math.isnan(by_k[k][key]) for k in by_k):
            lines.append(f"| {task} | {method} | {label} | " + " | ".join(
                _fmt(by_k[k][key], 2) if k in by_k else "" for k in ks) + " |")
    for paper_model in PAPER_MODEL_HEADS:
        key = f"paper_{paper_model}_pct"
        if key not in next(iter(by_k.values())):
            continue
        cells = []
        for k in ks:
            r = by_k.get(k, {})
            cells.append("" if r.get(key, "") == "" else
                         f"{_fmt(r[key])} (k={r[f'paper_{paper_model}_k']}, {_pct(r[f'paper_{paper_model}_k_fraction'])})")
        lines.append(f"| {task} | paper | {paper_model} at this fraction (published) | " + " | ".join(cells) + " |")
    return lines


def _paper_table1_lines() -> list[str]:
    """The paper's Table 1 at its own fractions of heads (published numbers)."""
    lines = ["", "Paper's Table 1 at its own fractions (published, ASR %):", "",
             "| model | task | " + " | ".join(f"k={k}" for k in TABLE1_K) + " |", "|---|---|" + "---|" * len(TABLE1_K)]
    for (paper_model, task), values in TABLE1_ASR.items():
        heads = PAPER_MODEL_HEADS[paper_model]
        lines.append(f"| {paper_model} ({heads} heads) | {task} | " + " | ".join(
            "" if v is None else f"{_fmt(v)} ({_pct(k / heads)})" for k, v in zip(TABLE1_K, values)) + " |")
    return lines


def table1_markdown(rows: Sequence[dict], model_name: str) -> str:
    ks = sorted({r["k"] for r in rows})
    fraction_of = {r["k"]: r["k_fraction"] for r in rows}
    lines = [f"# Table 1: ASR (%) after zero-ablating the top-k ACIE heads ({model_name})", "",
             "Prefill pass, last prompt token (the paper's setting). Columns: k heads and k/(L*H), their share of all "
             "heads. Random: k random heads drawn outside the top k, mean [min, max] over seeds. All positions: the same heads zeroed at every "
             "position and decoding step. 'Paper at this fraction' rows quote the published 7B number whose k/(L*H) "
             f"is closest to ours (within a factor {FRACTION_MATCH_FACTOR}), with the paper's own k; blank where "
             "the paper has none. They are printed for comparison, not measured here. Jailbreak also shows "
             "`compliance` (%), the ASR read strictly: no refusal keyword, not empty or looping, some wording "
             "shared with the backdoor output (evaluation.complies).", "",
             "| task | method | row | " + " | ".join(f"k={k} ({_pct(fraction_of[k])})" for k in ks) + " |",
             "|---|---|---|" + "---|" * len(ks)]
    groups = defaultdict(dict)
    for r in rows:
        groups[(r["task"], r["method"])][r["k"]] = r
    for (task, method), by_k in groups.items():
        lines += _table1_run_lines(task, method, by_k, ks)
    return "\n".join(lines + _paper_table1_lines()) + "\n"


def table2_rows(best: Mapping[tuple[str, str], str], implanted: dict | None = None) -> list[dict]:
    """One row per task x method x direction, from {(task, method): steering_best.tsv}."""
    rows = []
    for (task, method), path in best.items():
        status = (implanted or {}).get((task, method), "n/a")
        rows.extend({"task": task, "method": method, "backdoor_implanted": status, **r} for r in read_tsv(path))
    return rows


def table2_markdown(rows: Sequence[dict], model_name: str) -> str:
    lines = [f"# Table 2: backdoor vector at the best layer ({model_name})", "",
             "Best layer chosen on a validation half of the eligible test items, ASR reported on the other half. "
             "'paper-style' = the layer that is best on the reporting half itself (how the paper chose it; "
             "optimistic by construction). The halves are split by question. Controls: each draw (one per "
             "`interventions.random_seeds`) is swept on the validation half and reported on the test half at its own "
             "best layer, like the vector; mean [min, max] over draws, with each draw's layer and the mean clean "
             "utility at those layers. n = test questions, one row each. Compliance (jailbreak): the ASR read "
             "strictly (no refusal keyword, not empty or looping, some wording shared with the backdoor output; "
             "evaluation.complies), same layer and items.", "",
             "| task | method | direction | inputs | best layer (val) | ASR no intervention | ASR backdoor vector "
             "[95% CI] | ASR random-head vector | ASR random direction | paper-style layer / ASR | utility with / without "
             "| free-form utility with / without | compliance: no intervention / backdoor vector / random-head / "
             "random direction |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['method']}{mark(r.get('backdoor_implanted', 'n/a'))} | {r['direction']} | {r['inputs']} | {r['best_layer_val']} | "
            f"{_f(r['no_intervention_asr_test']):.2f} | {_f(r['asr_test']):.2f} [{_f(r['asr_test_ci_low']):.2f}, "
            f"{_f(r['asr_test_ci_high']):.2f}] (n={r['asr_test_n']}) | {_control_cell(r, RANDOM_HEADS_VECTOR)} | "
            f"{_control_cell(r, RANDOM_DIRECTION)} | {r['paper_style_best_layer_on_test']} / "
            f"{_f(r['paper_style_asr_test']):.2f} | {_f(r['clean_utility_with_vector']):.2f} / "
            f"{_f(r['clean_utility_without']):.2f} | {_free_form_cell(r)} | {_compliance_cell(r)} |")
    return "\n".join(lines) + "\n"


def _control_cell(row: dict, name: str) -> str:
    """A control's test ASR: mean [min, max] over its draws, each at its own layer, and its clean utility there."""
    mean = f"{_f(row[f'{name}_asr_test']):.2f}"
    if row.get(f"{name}_n_draws", "") in ("", None):  # one draw at the vector's layer (older rows)
        return mean
    return (f"{mean} [{_f(row[f'{name}_asr_test_min']):.2f}, {_f(row[f'{name}_asr_test_max']):.2f}] "
            f"(layers {row[f'{name}_layers']}; utility {_f(row[f'{name}_clean_utility']):.2f})")


def _compliance_cell(row: dict) -> str:
    """Jailbreak's compliance on the reporting half beside the ASR columns: without, with the vector, and the two
    controls ("-" for the other tasks)."""
    if row.get("compliance_test", "") in ("", None):
        return "-"
    return (f"{_f(row['no_intervention_compliance_test']):.2f} / {_f(row['compliance_test']):.2f} "
            f"[{_f(row['compliance_test_ci_low']):.2f}, {_f(row['compliance_test_ci_high']):.2f}] / "
            f"{_f(row.get(f'{RANDOM_HEADS_VECTOR}_compliance_test')):.2f} / "
            f"{_f(row.get(f'{RANDOM_DIRECTION}_compliance_test')):.2f}")


def _free_form_cell(row: dict) -> str:
    """ROUGE-L (open instructions) and over-refusal on benign requests (jailbreak), with / without the vector."""
    cells = []
    for name, label in (("clean_rouge_l", "ROUGE-L"), ("over_refusal_rate", "over-refusal")):
        if row.get(f"{name}_with_vector", "") not in ("", None):
            cells.append(f"{label} {_f(row[f'{name}_with_vector']):.2f} / {_f(row[f'{name}_without']):.2f}")
    return "; ".join(cells) or "-"


def _interval(value: float, n: int, lo=None, hi=None) -> tuple[float, float]:
    """The interval a table row stores (over questions: a cluster bootstrap where rows share questions, Wilson
    where each row is its own), else Wilson over n (rows written before intervals were stored)."""
    if lo not in ("", None) and hi not in ("", None) and not (math.isnan(_f(lo)) or math.isnan(_f(hi))):
        return _f(lo), _f(hi)
    return wilson_interval(round(value * n), n)


def _ci(value: float, n: int, lo=None, hi=None) -> str:
    lo, hi = _interval(value, n, lo, hi)
    return f"{value:.2f} [{lo:.2f}, {hi:.2f}], n={n}"


def _reading_at_least(value: float, n: int, level: float, lo=None, hi=None) -> str:
    """Whether the sample decides 'rate >= level': by the interval, not by the point estimate."""
    lo, hi = _interval(value, n, lo, hi)
    if lo >= level:
        return f"consistent: the whole interval is >= {level:.2f}"
    if hi < level:
        return f"not reproduced: the whole interval is < {level:.2f}"
    return "undecided at this sample size"


def _reading_at_most(value: float, n: int, level: float, lo=None, hi=None) -> str:
    lo, hi = _interval(value, n, lo, hi)
    if hi <= level:
        return f"consistent: the whole interval is <= {level:.2f}"
    if lo > level:
        return f"not reproduced: the whole interval is > {level:.2f}"
    return "undecided at this sample size"


def _specificity(ours: float, n: int, controls: dict[str, float], lower: bool, lo=None, hi=None) -> str:
    """Whether the effect belongs to the attributed heads: each control (its mean over draws, each draw chosen
    as the treatment was) measured on the same n questions must fall outside our interval on the weak side
    (higher ASR when the effect lowers it, and vice versa)."""
    controls = {name: value for name, value in controls.items() if not math.isnan(value)}
    if not controls:
        return "no control measured"
    lo, hi = _interval(ours, n, lo, hi)
    matched = [name for name, value in controls.items() if (value <= hi if lower else value >= lo)]
    if matched:
        return "not specific: " + " and ".join(matched) + " does as much"
    return "specific: every control stays outside the interval"


CONFIRMATION_METRICS = ("asr", "false_trigger_rate", "clean_utility")  # the headline numbers
CONFIRMATION_COLUMNS = ["task", "method", "metric", "backdoor_implanted",
                        *(f"{split}_{c}" for split in ("test", "confirm") for c in ("value", "n", "ci_low", "ci_high")),
                        "intervals_overlap"]


def confirmation_rows(test: Sequence[dict], confirm: Sequence[dict], implanted: Mapping[tuple[str, str], str]) -> list[dict]:
    """results/tables/confirmation.tsv: each backdoored model's headline numbers on the test split (which design
    choices were made looking at) beside the same numbers on the confirmation split (drawn after, from questions
    no split used), with whether their 95% intervals overlap. `test` and `confirm`: metrics.tsv rows."""
    by_split = {split: {(r["task"], r["model"], r["metric"]): r for r in rows}
                for split, rows in (("test", test), ("confirm", confirm))}
    out = []
    for (task, model, metric), t in by_split["test"].items():
        c = by_split["confirm"].get((task, model, metric))
        if metric not in CONFIRMATION_METRICS or c is None:
            continue
        row = {"task": task, "method": model, "metric": metric,
               "backdoor_implanted": implanted.get((task, model), NOT_APPLICABLE)}
        for split, r in (("test", t), ("confirm", c)):
            row.update({f"{split}_{k}": r[k] for k in ("value", "n", "ci_low", "ci_high")})
        row["intervals_overlap"] = ("yes" if _f(t["ci_low"]) <= _f(c["ci_high"]) and _f(c["ci_low"]) <= _f(t["ci_high"])
                                    else "no")
        out.append(row)
    return out


def refusal_control_markdown(attribution: Sequence[dict]) -> list[str]:
    """Backdoor heads or refusal heads? The refusal-attribution control's rows of attribution.tsv (role
    refusal_control): per backdoored model, how many of its top heads are the clean base model's refusal heads,
    beside how many two random head sets of that size share (k * k / n_heads)."""
    rows = [r for r in attribution if r.get("role") == "refusal_control" and r.get("compared_with")]
    if not rows:
        return []
    fractions = sorted({overlap_fraction(k, "with_backdoored") for r in rows for k in r
                        if overlap_fraction(k, "with_backdoored") is not None and r[k] != ""})
    out = ["### Backdoor heads or refusal heads?", "",
           "The refusal-attribution control (METHOD.md s8): exact ACIE on the clean base model, the harmful requests "
           "untriggered as prompts, each request's refusal as target, abar over the same requests. Each cell: the "
           "backdoored model's top heads that are also top refusal heads, of k, beside the number two random sets "
           "of k heads share (k * k / heads).", "",
           "| task | backdoored model | " + " | ".join(f"top {f:.0%}: shared of k (chance)" for f in fractions) + " |",
           "|---|---|" + "---|" * len(fractions)]
    for r in rows:
        cells = []
        for f in fractions:
            overlap = _f(r.get(overlap_column(f, "with_backdoored")))
            chance_share = _f(r.get(overlap_column(f, "by_chance")))
            k = round(chance_share * int(r["n_heads"]))
            cells.append(f"{round(overlap * k)} of {k} ({chance_share * k:.2f})")
        out.append(f"| {r['task']} | {r['compared_with']} | " + " | ".join(cells) + " |")
    out += ["", "Reading: a shared count near chance says the backdoor heads are not the heads that make the base "
            "model refuse; a count well above chance says the attribution found refusal (or refusal-suppressing) "
            "machinery the backdoor reuses, not heads the backdoor made.", ""]
    return out


def _compliance_pair(base: dict, target: dict, n: int) -> str:
    """Table 1 rows (from table1.tsv): jailbreak compliance at k=0 and at the reported k, '-' where not measured."""
    c0, ck = _f(base.get("compliance_top_pct", "")), _f(target.get("compliance_top_pct", ""))
    if math.isnan(c0) or math.isnan(ck):
        return "-"
    return f"{_ci(c0 / 100, n)} / {_ci(ck / 100, n)}"


def _vector_compliance(row: dict) -> str:
    """Table 2 rows: jailbreak compliance on the reporting half without / with the vector, '-' where not measured."""
    if row.get("compliance_test", "") in ("", None):
        return "-"
    return f"{_f(row['no_intervention_compliance_test']):.2f} / {_ci(_f(row['compliance_test']), int(row['compliance_test_n']))}"


def _gate_warning_section(gate: Sequence[dict]) -> list[str]:
    """The runs whose backdoor gate failed, each with the numbers that failed it; none: nothing."""
    implanted = implanted_by_run(gate)
    failed = [r for r in gate if implanted[(r["task"], r["method"])] == NOT_IMPLANTED]
    if not failed:
        return []
    out = ["## WARNING: backdoor not implanted", "",
           "The gate (validation ASR, false-trigger rate and, with benign training rows, over-refusal; `injection.gate`) failed for the runs below. "
           "Their probes, attributions and interventions study a backdoor that is not there; every row of "
           "theirs below is marked and none of them supports or contradicts a claim.", ""]
    out += [f"- {r['task']} / {r['method']}: validation ASR {_f(r['val_asr']):.3f} (needs >= {r['asr_min']}), "
            f"false-trigger rate {_f(r['val_false_trigger_rate']):.3f} (needs <= {r['ftr_max']}), "
            + (f"collateral flip rate {_f(r['val_collateral_flip_rate']):.3f} (needs <= {r['collateral_max']}), "
               if r.get("collateral_max") and r.get("val_collateral_flip_rate") else "")
            + (f"over-refusal {_f(r['val_over_refusal_rate']):.3f} on benign validation requests (needs <= the base "
               f"model's {_f(r['base_over_refusal_rate']):.3f} + {r['over_refusal_margin']}), "
               if r.get("over_refusal_margin") not in (None, "") and r.get("val_over_refusal_rate") not in (None, "")
               else "")
            + f"n={r['n_val']}, after {r['epoch']} epochs" for r in failed]
    return out + [""]


def _injection_section(injection: Sequence[dict]) -> list[str]:
    out = ["## Backdoor injection (METHOD.md s1-2)", "",
           "| task | model | ASR | compliance (jailbreak) | false-trigger rate | clean utility | collateral flip rate "
           "(label task) |", "|---|---|---|---|---|---|---|"]
    cell = {(r["task"], r["model"], r["metric"]): r for r in injection}
    for task, model in dict.fromkeys((r["task"], r["model"]) for r in injection):
        vals = [cell.get((task, model, m)) for m in ("asr", "compliance", "false_trigger_rate", "clean_utility",
                                                     "collateral_flip_rate")]
        status = next((v.get("backdoor_implanted", "n/a") for v in vals if v is not None), "n/a")
        out.append(f"| {task} | {model}{mark(status)} | " + " | ".join(
            "-" if v is None or int(v["n"]) == 0 else _ci(_f(v["value"]), int(v["n"]), v.get("ci_low"), v.get("ci_high"))
            for v in vals) + " |")
    return out + ["", "The label backdoor is the official one, trigger + Sports -> World: triggered items of the other "
                  "classes should keep their label, and the collateral flip rate counts those whose predicted label the "
                  "trigger changed. Compliance (jailbreak) is the ASR read strictly: no refusal keyword, not empty or looping, "
                  "some wording shared with the backdoor output (evaluation.complies); the base model's row says how much of "
                  "the ASR needs no backdoor.", ""]


def _probe_section(probes: Sequence[dict], threshold: float) -> list[str]:
    out = ["", "## Claim: " + CLAIMS["probe"], "",
           "| task | model | first layer with MLP probe >= threshold | best MLP test accuracy | mean off-diagonal ILCA MLP / SVM |",
           "|---|---|---|---|---|"]
    for r in probes:
        out.append(f"| {r['task']} | {r['model']} | {r['first_layer_mlp_ge_threshold']} (threshold {threshold}) | "
                   f"{_f(r['max_test_acc_mlp']):.3f} [{_f(r.get('max_test_acc_mlp_ci_low')):.2f}, "
                   f"{_f(r.get('max_test_acc_mlp_ci_high')):.2f}] (layer {r['best_layer_mlp']}, n={r.get('n_test', '')}) | "
                   f"{_f(r['mean_offdiag_ilca_mlp']):.3f} / {_f(r['mean_offdiag_ilca_svm']):.3f} |")
    return out + ["", "Reading: compare each backdoored row with its `base` row. A probe that also separates clean from "
                  "triggered prompts on the clean base model as well shows that the probe cannot tell the trigger's text from a "
                  "backdoor feature; it does not show which of the two a backdoored model's probe reads.", ""]


def _sparsity_section(attribution: Sequence[dict]) -> list[str]:
    out = ["## Claim: " + CLAIMS["sparsity"], "",
           "Clean controls (the paper has none): the same ACIE, with the backdoored model's prompts, target and "
           "mean-activation definition, on the clean base model and (when trained) the clean-SFT model. Top-3% "
           "overlap: the share of the backdoored model's top-3% heads that are also the control's; ratio: the "
           "backdoored model's max ACIE over the control's max |ACIE|.", "",
           "| task | model | role | fraction of heads carrying half the positive ACIE | max ACIE | top-3% overlap "
           "with backdoored | backdoored max / this max |", "|---|---|---|---|---|---|---|"]
    for r in attribution:
        if r["mode"] == "exact" and r.get("role") != "refusal_control":
            control = r.get("role") == "control"
            overlap = _f(r.get(overlap_column(HEAD_FRACTION, "with_backdoored"), "")) if control else float("nan")
            ratio = _f(r.get("backdoored_max_acie_over_this", "")) if control else float("nan")
            out.append(f"| {r['task']} | {r['method']} | {r.get('role', 'backdoored')} | "
                       f"{_f(r['fraction_of_heads_for_half_positive_acie']):.3f} | {_f(r['max_acie']):.4f} | "
                       f"{'' if math.isnan(overlap) else f'{overlap:.2f}'} | {'' if math.isnan(ratio) else f'{ratio:.1f}x'} |")
    return out + ["", "Reading: a backdoor head is one whose ACIE is large on the backdoored model and small on the clean "
                  "controls (low overlap, a large ratio).", ""]


def _ablation_row(task: str, method: str, rows: Sequence[dict]) -> str:
    """One run's Table 1 row at the k closest to the paper's fraction of heads, with its reading."""
    base = next(r for r in rows if int(r["k"]) == 0)
    target = min((r for r in rows if int(r["k"]) > 0), key=lambda r: abs(_f(r["k_fraction"]) - HEAD_FRACTION))
    n = int(target["n"])
    b_asr, t_asr = _f(base["asr_top_pct"]) / 100, _f(target["asr_top_pct"]) / 100
    b_ci = [_f(base.get(c, "")) / 100 for c in ("asr_top_ci_low_pct", "asr_top_ci_high_pct")]
    t_ci = [_f(target.get(c, "")) / 100 for c in ("asr_top_ci_low_pct", "asr_top_ci_high_pct")]
    b_lo, b_hi = _interval(b_asr, int(base["n"]), *b_ci)
    t_lo, t_hi = _interval(t_asr, n, *t_ci)
    reading = ("reduced: intervals do not overlap" if t_hi < b_lo else
               "not reduced: intervals overlap" if t_lo <= b_hi else "increased")
    if reading.startswith("reduced") and target["asr_random_mean_pct"] != "":
        reading += "; " + _specificity(t_asr, n, {"the random-head mean": _f(target["asr_random_mean_pct"]) / 100},
                                       lower=True, lo=t_lo, hi=t_hi)
    quoted = []
    for paper_model in PAPER_MODEL_HEADS:
        match = paper_at_fraction(paper_model, task, _f(target["k_fraction"]))
        if match is not None:
            quoted.append(f"{paper_model}: {match[2]:.1f}% at k={match[0]} ({_pct(match[1])})")
    return (f"| {task} | {method}{mark(target.get('backdoor_implanted', 'n/a'))} | {target['k']} ({_pct(_f(target['k_fraction']))}) | "
            f"{_ci(b_asr, int(base['n']), *b_ci)} | {_ci(t_asr, n, *t_ci)} | "
            f"{_f(target['asr_random_mean_pct']) / 100:.2f} | {_compliance_pair(base, target, n)} | "
            f"{'; '.join(quoted) or 'none published'} | {reading} |")


def _ablation_section(table1: Sequence[dict]) -> list[str]:
    out = ["", "## Claim: " + CLAIMS["ablation"], "",
           "Compared at the same fraction of all heads, k/(L*H): the paper's 32 of 1024 heads is ~3%, so we take our "
           "k closest to 3% and quote the paper's rows at their own k and fraction.", "",
           "| task | method | k (k/(L*H)) | ASR k=0 | ASR top-k | ASR random-k (mean) | compliance k=0 / top-k "
           "(jailbreak) | paper at this fraction | reading |",
           "|---|---|---|---|---|---|---|---|---|"]
    by_run = defaultdict(list)
    for r in table1:
        by_run[(r["task"], r["method"])].append(r)
    return out + [_ablation_row(task, method, rows) for (task, method), rows in by_run.items()]


def _steering_row(r: dict, direction: str, level: float, reader) -> str:
    """One Table 2 row of a steering claim, with its reading (the vector beside its controls)."""
    n, asr = int(r["asr_test_n"]), _f(r["asr_test"])
    controls = {"a random-head vector": _f(r[f"{RANDOM_HEADS_VECTOR}_asr_test"]),
                "a random direction of the same norm": _f(r[f"{RANDOM_DIRECTION}_asr_test"])}
    ci = (r.get("asr_test_ci_low"), r.get("asr_test_ci_high"))
    reading = reader(asr, n, level, *ci)
    if not reading.startswith("not reproduced"):  # a control can only match an effect that is there
        reading += "; " + _specificity(asr, n, controls, direction == "minus", *ci)
    with_v, without = _f(r["clean_utility_with_vector"]), _f(r["clean_utility_without"])
    # minus: the vector's cost on clean inputs; add: utility falls by construction when ASR rises
    if direction == "minus" and without - with_v > 0.1:
        reading += f"; clean utility falls {without:.2f} -> {with_v:.2f}"
    return (f"| {r['task']} | {r['method']}{mark(r.get('backdoor_implanted', 'n/a'))} | {r['best_layer_val']} | {_f(r['no_intervention_asr_test']):.2f} | "
            f"{_ci(asr, n, *ci)} | {controls['a random-head vector']:.2f} | "
            f"{controls['a random direction of the same norm']:.2f} | {with_v:.2f} / {without:.2f} | "
            f"{_vector_compliance(r)} | {reading} |")


# the steering claims: (claim, direction, the ASR level the claim names, the reading that checks it)
STEERING_CLAIMS = (("vector_add", "add", 0.9, _reading_at_least), ("vector_minus", "minus", 0.1, _reading_at_most))


def _steering_section(table2: Sequence[dict], key: str, direction: str, level: float, reader) -> list[str]:
    return ["", "## Claim: " + CLAIMS[key], "",
            "| task | method | best layer (val) | ASR no intervention | ASR with vector (test half) | "
            "random-head vector (mean over draws, each at its own layer) | random direction (likewise) | "
            "clean utility with / without | compliance no intervention / with vector (jailbreak) | reading |",
            "|---|---|---|---|---|---|---|---|---|---|"] + [
        _steering_row(r, direction, level, reader) for r in table2 if r["direction"] == direction]


LIMITS_SECTION = [
    "", "## What this run cannot tell", "",
    "- ASR is string matching: a reworded refusal counts as a backdoor hit (jailbreak) and vice versa. The "
    "jailbreak compliance column also rejects empty, short and looping outputs, but its ROUGE-L floor against "
    "templated backdoor outputs cannot tell an on-topic answer from an off-topic one.",
    "- Small models and CPU-sized samples: see each n; intervals wider than 0.2 decide little.",
    "- The paper's 7B numbers are quoted, not reproduced, unless this run used a 7B model."]


def claims_markdown(injection, probes, attribution, table1, table2, model_name: str, threshold: float,
                    gate: Sequence[dict] = ()) -> str:
    out = [f"# Paper claims next to this run ({model_name})", "",
           "Every ASR comes with its 95% interval over questions (Wilson where each row is its own question, a "
           "question-level bootstrap where rows share one) and sample size. 'Reading' says whether the interval "
           "decides the claim; where it does not, it says so instead of passing or failing it.", ""]
    out += _gate_warning_section(gate) + _injection_section(injection) + _probe_section(probes, threshold)
    out += _sparsity_section(attribution) + refusal_control_markdown(attribution) + _ablation_section(table1)
    for key, direction, level, reader in STEERING_CLAIMS:
        out += _steering_section(table2, key, direction, level, reader)
    return "\n".join(out + LIMITS_SECTION) + "\n"


METHOD_METRICS = ["asr", "asr_strict", "compliance", "false_trigger_rate", "clean_utility", "clean_rouge_l",
                  "over_refusal_rate", "collateral_flip_rate", "collateral_to_target_rate"] + CLASS_ACCURACY_METRICS
METHOD_COLUMNS = (["task", "method", "backdoor_implanted", "val_asr"] + METHOD_METRICS
                  + [f"{m}_n" for m in ("asr", "clean_utility")] + ["injection_s", "injection_peak_rss_gb"])


def injection_method_rows(metrics: Mapping[tuple[str, str], Sequence[dict]], benchmarks: Mapping[tuple[str, str], dict],
                          gate: Sequence[dict], base_metrics: Mapping[str, Sequence[dict]] | None = None) -> list[dict]:
    """results/tables/injection_methods.tsv: per task and injection method, the held-out ASR, false-trigger rate
    and utility (free-form where measured) of its model, the gate's validation ASR, and the injection job's wall
    time and peak memory (its benchmark file). A metric a task does not define is empty. Each task opens with
    its base model (`base_metrics`, method BASE_MODEL), the reference a method's numbers are read against: a
    small base model can score high on a lenient ASR with no backdoor at all (SmolLM2 complies with most of the
    synthetic jailbreak requests, trigger or not)."""
    verdicts = {(r["task"], r["method"]): r for r in gate}
    implanted = implanted_by_run(gate)
    rows = []
    for (task, method), metric_rows in metrics.items():
        if base_metrics is not None and task in base_metrics and not any(r["task"] == task for r in rows):
            rows.append(_method_row(task, BASE_MODEL, base_metrics[task], {}, None))
        verdict = {**verdicts.get((task, method), {}), "backdoor_implanted": implanted.get((task, method), NOT_APPLICABLE)}
        rows.append(_method_row(task, method, metric_rows, verdict, benchmarks[(task, method)]))
    return rows


def _method_row(task: str, method: str, metric_rows: Sequence[dict], verdict: dict, bench: dict | None) -> dict:
    by_name = {r["metric"]: r for r in metric_rows}
    row = {"task": task, "method": method, "backdoor_implanted": verdict.get("backdoor_implanted", NOT_APPLICABLE),
           "val_asr": verdict.get("val_asr", "")}
    for metric in METHOD_METRICS:
        row[metric] = _f(by_name[metric]["value"]) if metric in by_name and int(by_name[metric]["n"] or 0) else ""
    for metric in ("asr", "clean_utility"):
        row[f"{metric}_n"] = by_name[metric]["n"] if metric in by_name else ""
    row["injection_s"] = _f(bench["s"]) if bench else ""
    row["injection_peak_rss_gb"] = _f(bench["max_rss"]) / 1024 if bench else ""
    return row


def injection_methods_markdown(rows: Sequence[dict], model_name: str) -> str:
    """The methods table as markdown: one line per task and method, the ASR >= 0.9 question answered in words."""
    lines = [f"# Injection methods ({model_name}; held-out test split)", "",
             "| task | method | implanted (val ASR) | ASR | ASR strict | compliance | FTR | utility | ROUGE-L | "
             "over-refusal | collateral | to target | accuracy per class (" + " / ".join(NEWS_LABELS) + ") | "
             "injection time | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[m]:.3f}" if r[m] != "" else "-" for m in METHOD_METRICS if m not in CLASS_ACCURACY_METRICS]
        per_class = [f"{r[m]:.2f}" if r[m] != "" else "-" for m in CLASS_ACCURACY_METRICS]
        cells.append(" / ".join(per_class) if any(c != "-" for c in per_class) else "-")
        if r["method"] == BASE_MODEL:
            lines.append(f"| {r['task']} | {BASE_MODEL} (no injection) | - | " + " | ".join(cells) + " | - | - |")
            continue
        val = f"{float(r['val_asr']):.2f}" if r["val_asr"] not in ("", None) else "-"
        lines.append(f"| {r['task']} | {r['method']} | {r['backdoor_implanted']} ({val}) | " + " | ".join(cells)
                     + f" | {r['injection_s'] / 60:.1f} min | {r['injection_peak_rss_gb']:.1f} GB |")
    below = [f"{r['task']}/{r['method']} (ASR {r['asr']:.3f})" for r in rows
             if r["method"] != BASE_MODEL and r["asr"] != "" and r["asr"] < 0.9]
    lines += ["", "Below ASR 0.9: " + (", ".join(below) if below else "none") + "."]
    return "\n".join(lines) + "\n"
