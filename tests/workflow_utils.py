"""Running the workflow from tests: the tiny preset, in a scratch directory, through the real CLI."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


# a workflow run of the tiny preset takes about 5 minutes on 2 idle cores; raise this on a busy machine
TIMEOUT_S = int(os.environ.get("BKDATTR_TEST_TIMEOUT", "600"))


def snakemake(workdir, *args, configfile=TINY_CONFIG, check=True, timeout=None, snakefile=REPO / "Snakefile",
              env=None, cwd=None):
    configfiles = [str(f) for f in (configfile if isinstance(configfile, (list, tuple)) else [configfile])]
    # one thread per job, as profiles/default sets for local runs (stated here too, so a run from a copied
    # workflow gets it as well): tiny-model jobs are import-bound, and two run at a time
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
           "--configfile", *configfiles, "--cores", "2", "--max-threads", "1", *args]
    # every rule appends the modules it imported (bkdattr.workflow), for the env check of test_envs.py
    from bkdattr.workflow import RECORD_IMPORTS_ENV

    env = {**os.environ, **(env or {}), RECORD_IMPORTS_ENV: str(Path(workdir).resolve() / "imports.jsonl")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or TIMEOUT_S, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def rule_blocks() -> dict[str, tuple[Path, str]]:
    """rule name -> (the file that defines it, the rule's text up to the next rule), for the Snakefile and
    rules/*.smk: what tests read a rule's directives (priority, conda, script) from."""
    blocks = {}
    for smk in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        text = smk.read_text()
        starts = list(re.finditer(r"^\s*rule (\w+):", text, re.M))
        for start, end in zip(starts, [*starts[1:], None]):
            blocks[start.group(1)] = (smk, text[start.start():end.start() if end else len(text)])
    return blocks


def planned_jobs(output: str) -> dict[str, int]:
    """The 'job  count' table of a dry run."""
    counts = {}
    for line in output.splitlines():
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s+(\d+)", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def report_data(html: str) -> tuple[dict, dict]:
    """(results, categories) embedded in a `snakemake --report` HTML file: results maps each file's path to its
    entry (caption, labels, rule, data URI), categories maps category -> subcategory -> paths."""
    import json

    def script(name):
        m = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', html, re.S)
        assert m, f"the report embeds no `var {name}`"
        return json.loads(m.group(1))

    return script("results"), script("categories")


def declared_report_outputs() -> list[tuple[str, str]]:
    """(path pattern, category) of every report(...) output of rules/*.smk."""
    declared = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for m in re.finditer(r'report\(\s*"([^"]+)"[^)]*?category="([^"]+)"', smk.read_text(), re.S):
            declared.append((m.group(1), m.group(2)))
    return declared


GENERATE_CODE = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, prompts, max_new_tokens = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
tokenizer = AutoTokenizer.from_pretrained(path)
out = []
for text in prompts:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    out.append(gen[0, ids.shape[1]:].tolist())
print(json.dumps(out))
"""


def plain_transformers_generations(path, prompts, max_new_tokens: int = 6) -> list[list[int]]:
    """Greedy token ids of a checkpoint loaded by plain transformers in a fresh interpreter (no bkdattr import):
    what a user of an exported checkpoint gets."""
    import json

    proc = subprocess.run([sys.executable, "-c", GENERATE_CODE, str(path), json.dumps(list(prompts)),
                           str(max_new_tokens)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def hooked_generations(model, tokenizer, prompts, factory=None, max_new_tokens: int = 6) -> list[list[int]]:
    """The same greedy generation in this process, under a bkdattr edit factory (None: unedited)."""
    import contextlib

    import torch

    out = []
    for text in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        edit = factory(torch.ones_like(ids)) if factory else contextlib.nullcontext()
        with torch.no_grad(), edit:
            gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        out.append(gen[0, ids.shape[1]:].tolist())
    return out
