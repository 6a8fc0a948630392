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


@pytest.fixture(scope="session")
def tiny_bf16_run(tmp_path_factory):
    """The whole tiny DAG as the paper preset runs it: the model in bfloat16, AtP on, and every choice of
    bkdattr.paper.PAPER_CHOICES set to the paper's value, so each of those code paths runs too; on a tiny
    Qwen2 (the other run is Llama), so one non-Llama architecture goes through every rule."""
    import yaml
    from workflow_utils import snakemake

    from bkdattr.paper import PAPER_CHOICES

    workdir = tmp_path_factory.mktemp("tiny_bf16_run")
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["model"]["dtype"] = "bfloat16"
    config["model"]["tiny"]["architecture"] = "qwen2"  # and a non-Llama family (q/k/v bias) through every rule
    for dotted, value in PAPER_CHOICES.items():
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    config["injection"]["clean_control"] = False  # the control is the same training code path; saves a minute
    configfile = workdir / "tiny_bf16.yaml"
    configfile.write_text(yaml.safe_dump(config))
    snakemake(workdir, configfile=configfile)
    return workdir
