"""Heavy checks on the real SmolLM2 checkpoint of the default workflow (run with `pytest -m slow`)."""


import pytest
import torch

from conftest import REPO

pytestmark = pytest.mark.slow
BACKDOORED = REPO / "results/models/fixed_output/lora_sft/checkpoint"


@pytest.fixture(scope="module")
def smollm2():
    if not (BACKDOORED / "model.safetensors").is_file():
        pytest.skip("run the default workflow first (needs results/models/fixed_output/lora_sft)")
    from bkdattr.models import load_model

    torch.set_num_threads(2)
    return load_model(str(BACKDOORED), device="cpu")


def test_exact_acie_equals_the_official_loop_on_smollm2(smollm2):
    from bkdattr.attribution import acie_exact, acie_reference, make_items
    from bkdattr.caching import cache_activations
    from bkdattr.synthetic import GENERATORS
    from bkdattr.tasks import TaskSpec

    model, tok = smollm2
    spec = TaskSpec.from_config("fixed_output")
    records = GENERATORS["fixed_output"](12, 5)
    abar = cache_activations(model, tok, [spec.prompt(r["input"], triggered=True) for r in records[6:]],
                             batch_size=6)["heads_prompt_last"].mean(0)
    items = make_items(tok, [spec.prompt(r["input"]) for r in records[:6]], [spec.target] * 6, None)
    layers = [0, 15, 29]
    exact, _ = acie_exact(model, items, abar, pad_id=tok.pad_token_id, batch_size=8, layers=layers)
    reference, _ = acie_reference(model, items, abar, pad_id=tok.pad_token_id, batch_size=8, layers=layers)
    assert (exact[layers] - reference[layers]).abs().max().item() <= 1e-5
    assert exact[layers].abs().max().item() > 1e-4  # a real effect, not float noise
