"""The per-kind conda envs (envs/*.yaml): every rule names one, each installs this package, pins agree
with pyproject.toml, and each env provides what its rules imported in the tiny workflow run."""

import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from workflow_utils import rule_blocks

REPO = Path(__file__).resolve().parents[1]
ENV_KINDS = ("data", "torch", "plots")
# transformers imports these when they are installed (torch, accelerate, PIL, ...), and works without them:
# the data env has no torch, yet the tokenizer and chat template need none of it.
PROBED_BY_TRANSFORMERS_WHEN_INSTALLED = ("torch", "accelerate", "pillow")


def rule_envs() -> dict[str, str]:
    """rule name -> the env file its `conda:` names (relative to the repository)."""
    envs = {}
    for rule, (smk, block) in rule_blocks().items():
        if m := re.search(r"^\s+conda:\s*\n\s*\"?([^\"\n]+)", block, re.M):
            envs[rule] = str((smk.parent / m.group(1).strip()).resolve().relative_to(REPO))
    return envs


def env_pins(kind: str) -> dict[str, str]:
    spec = yaml.safe_load((REPO / "envs" / f"{kind}.yaml").read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(_split_pin(p) for p in pip)


def _split_pin(requirement: str) -> tuple[str, str]:
    name, sep, version = requirement.partition("==")
    assert sep, f"{requirement!r}: pin an exact version (name==x.y.z)"
    return _canonical(name), version


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_rule_with_code_names_an_existing_env_of_a_known_kind():
    envs = rule_envs()
    scripted = {rule for rule, (_, block) in rule_blocks().items() if re.search(r"^\s+script:", block, re.M)}
    assert scripted and scripted <= set(envs), f"rules without conda: {sorted(scripted - set(envs))}"
    for rule, env in envs.items():
        assert (REPO / env).is_file(), f"rule {rule}: {env} does not exist"
        assert Path(env).stem in ENV_KINDS, f"rule {rule}: {env} is not one of envs/{{{','.join(ENV_KINDS)}}}.yaml"
    assert {Path(e).stem for e in envs.values()} == set(ENV_KINDS)


@pytest.mark.parametrize("kind", ENV_KINDS)
def test_each_env_installs_this_package_and_pins_what_pyproject_pins(kind):
    deploy = REPO / "envs" / f"{kind}.post-deploy.sh"
    assert deploy.is_file(), f"{deploy.name}: missing (Snakemake runs it after creating the env)"
    assert "pip install --quiet --no-deps -e ." in deploy.read_text()
    project = dict(_split_pin(p) for p in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    pins = env_pins(kind)
    differ = {name: (version, project[name]) for name, version in pins.items() if name in project and project[name] != version}
    assert not differ, f"envs/{kind}.yaml pins differ from pyproject.toml (env, pyproject): {differ}"
    spec = yaml.safe_load((REPO / "envs" / f"{kind}.yaml").read_text())
    assert "python=3.11" in spec["dependencies"]


def distribution_closure(names) -> set[str]:
    """The distributions `names` need, with their requirements (markers of this interpreter; no extras)."""
    from packaging.requirements import Requirement

    seen, todo = set(), [_canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requirements:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canonical(req.name))
    return seen


def missing_from_env(modules, kind: str) -> list[str]:
    """Top-level modules a rule imported that the env (its pins, their requirements, snakemake's script
    preamble, the standard library and bkdattr itself) does not provide."""
    pins = set(env_pins(kind))
    if "transformers" in pins:
        pins |= set(PROBED_BY_TRANSFORMERS_WHEN_INSTALLED)
    provided = distribution_closure(pins)
    preamble = distribution_closure(["snakemake"])  # the script directive imports snakemake from its own env
    owners = metadata.packages_distributions()
    missing = []
    for module in modules:
        if module in sys.stdlib_module_names or module in sys.builtin_module_names or module == "bkdattr":
            continue
        dists = {_canonical(d) for d in owners.get(module, [])}
        if dists and not dists & (provided | preamble):
            missing.append(f"{module} ({', '.join(sorted(dists))})")
    return missing


def test_the_import_check_catches_a_library_missing_from_an_env():
    assert missing_from_env(["seaborn", "numpy", "json"], "plots") == []
    assert missing_from_env(["torch"], "plots") == ["torch (torch)"]
    assert missing_from_env(["sklearn"], "data") == ["sklearn (scikit-learn)"]


def test_each_rule_env_provides_what_the_rule_imported_in_the_tiny_run(tiny_run):
    records = [json.loads(line) for line in (tiny_run / "imports.jsonl").read_text().splitlines()]
    envs = rule_envs()
    assert {r["rule"] for r in records} >= {"make_dataset", "inject_backdoor", "fig3", "claims_report"}
    problems = {}
    for record in records:
        kind = Path(envs[record["rule"]]).stem
        if missing := missing_from_env(record["modules"], kind):
            problems[record["rule"]] = (kind, missing)
    assert not problems, f"rules importing what their env lacks (rule: env, modules): {problems}"

