"""Rule priorities never starve a chain: Snakemake does not pass a rule's priority on to the jobs it needs,
so a ranked rule behind an unranked one waits until nothing ranked is left (seen: the jailbreak dataset job
waited 21 minutes behind ranked jobs of the other tasks, and with it the whole jailbreak chain)."""

import re
import subprocess
import sys

import pytest
from workflow_utils import REPO, TINY_CONFIG, rule_blocks


def rule_priorities() -> dict[str, int]:
    """rule name -> its `priority:` (0 where it sets none)."""
    return {rule: int(m.group(1)) if (m := re.search(r"^\s+priority:\s*(\d+)", block, re.M)) else 0
            for rule, (_, block) in rule_blocks().items()}


def rule_edges(tmp_path, configfile) -> set[tuple[str, str]]:
    """(upstream rule, downstream rule) pairs of the rule graph Snakemake builds for a config."""
    dot = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(configfile), "--rulegraph"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, re.M))
    return {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)}


@pytest.mark.parametrize("configfile", [REPO / "config.yaml", TINY_CONFIG], ids=["default", "tiny"])
def test_no_rule_ranks_above_a_rule_it_needs(tmp_path, configfile):
    priorities = rule_priorities()
    assert priorities["inject_backdoor"] > 0  # the ranking this guards exists
    edges = rule_edges(tmp_path, configfile)
    assert ("make_dataset", "inject_backdoor") in edges
    starved = [f"{up} ({priorities[up]}) -> {down} ({priorities[down]})" for up, down in sorted(edges)
               if priorities[up] < priorities[down]]
    assert not starved, "a ranked rule needs a lower-ranked one: " + "; ".join(starved)
