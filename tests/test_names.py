"""Every control and model name is spelled once, in bkdattr.names; code, rules and scripts import it."""

import re

import pytest

from bkdattr import names
from conftest import REPO

SOURCES = [*REPO.glob("bkdattr/*.py"), *REPO.glob("workflow_scripts/*.py"), *REPO.glob("rules/*.smk"),
           REPO / "Snakefile"]
CONSTANTS = ["BACKDOOR_VECTOR", "RANDOM_HEADS_VECTOR", "RANDOM_DIRECTION", "BASE_MODEL", "CLEAN_CONTROL"]


@pytest.mark.parametrize("constant", CONSTANTS)
def test_a_name_is_spelled_only_in_the_names_module(constant):
    value = getattr(names, constant)
    literal = re.compile(r"""["']""" + re.escape(value) + r"""["']""")
    spelled = [f"{path.relative_to(REPO)}:{n}" for path in SOURCES if path.name != "names.py"
               for n, line in enumerate(path.read_text().splitlines(), 1) if literal.search(line.split("#")[0])]
    assert spelled == [], f"{constant} ({value!r}) is spelled out instead of imported from bkdattr.names"


def test_the_names_are_distinct():
    values = [getattr(names, c) for c in CONSTANTS] + [names.NO_INTERVENTION]
    assert len(set(values)) == len(values)
