import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from bkdattr.models import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture
def tiny_config():
    from bkdattr.config import load_config

    return load_config(TINY_CONFIG)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One complete run of the whole workflow on the tiny preset, shared by the workflow tests."""
    from workflow_utils import snakemake

    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(workdir)
    return workdir


@pytest.fixture
def workdir(tmp_path):
    """A scratch working directory for a workflow run (results/ go there, not into the repo)."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)
