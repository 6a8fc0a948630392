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


def test_overlap_columns_are_named_and_read_back_by_one_helper():
    from bkdattr.names import OVERLAP_COLUMNS, overlap_column, overlap_fraction

    assert overlap_column(0.03, "by_chance") == "top0.03_overlap_by_chance"
    for what in OVERLAP_COLUMNS:
        assert overlap_fraction(overlap_column(0.1, what), what) == 0.1
    assert overlap_fraction("top0.1_overlap_by_chance", "with_backdoored") is None
    with pytest.raises(ValueError, match="unknown overlap column"):
        overlap_column(0.03, "with_nothing")


def test_the_paper_head_fraction_is_written_once_in_the_code():
    """0.03 (the paper's 32 of 1024 heads) is paper.HEAD_FRACTION; config values stay in config.yaml."""
    import re

    spelled = [f"{path.relative_to(REPO)}:{n}" for folder in ("bkdattr", "workflow_scripts", "rules")
               for path in sorted((REPO / folder).rglob("*.py")) + sorted((REPO / folder).rglob("*.smk"))
               for n, line in enumerate(path.read_text().splitlines(), 1)
               if re.search(r"(?<![\d.-])0\.03(?!\d)", line.split("#")[0]) and path.name != "paper.py"]
    assert spelled == []
