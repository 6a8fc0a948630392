import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from bkdattr.models import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny random Llama checkpoint (2 layers x 4 heads, d_model 64)."""
    from bkdattr.models import build_tiny_model

    path = tmp_path_factory.mktemp("tiny_model") / "model"
    build_tiny_model(path, seed=0)
    return path


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(model, tokenizer) of the tiny checkpoint, on the CPU."""
    from bkdattr.models import load_model

    return load_model(str(tiny_model_dir), device="cpu")


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
