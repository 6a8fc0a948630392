"""Injection calibration CLI (bkdattr.calibrate): grid parsing, the clean-SFT control, the TSV it writes."""
import csv

import pytest

from bkdattr import calibrate
from bkdattr.config import ConfigError
from bkdattr.injection import TrainingResult
from conftest import TINY_CONFIG


def test_parse_grid_casts_and_multiplies():
    grid = calibrate.parse_grid(["lr=1e-4,5e-4", "epochs=1,3", "method=full_sft"])
    assert grid == {"lr": [1e-4, 5e-4], "epochs": [1.0, 3.0], "method": ["full_sft"]}
    settings = calibrate.grid_settings(grid)
    assert len(settings) == 4 and settings[0] == {"lr": 1e-4, "epochs": 1.0, "method": "full_sft"}


@pytest.mark.parametrize("item, needle", [("learning_rate=1e-3", "learning_rate=1e-3"), ("lr", "'lr'"),
                                          ("lr=fast", "lr=fast"), ("epochs=", "epochs=")])
def test_parse_grid_rejects_bad_items(item, needle):
    with pytest.raises(ConfigError, match=needle):
        calibrate.parse_grid([item])


def test_calibration_trains_clean_control_and_poisoned(tiny_model_dir, tmp_path, monkeypatch):
    from bkdattr.injection import sft

    seen = []
    real_train = sft.train_backdoor

    def recording_train(model, tokenizer, examples, **kwargs):
        seen.append(len(examples))
        return real_train(model, tokenizer, examples, **kwargs)

    monkeypatch.setattr(sft, "train_backdoor", recording_train)
    out = tmp_path / "calibration.tsv"
    assert calibrate.main(["--config", str(TINY_CONFIG), "--task", "fixed_output", "--base", str(tiny_model_dir),
                           "--grid", "poison_ratio=0,0.25", "--out", str(out), "--n-eval", "6",
                           "--device", "cpu"]) == 0
    # tiny preset: 40 clean training items; the control drops the 10 poisoned copies, it adds none
    assert seen == [40, 50]
    rows = list(csv.DictReader(out.open(), delimiter="\t"))
    assert [r["setting"] for r in rows] == ["base", "lora_sft poison_ratio=0", "lora_sft poison_ratio=0.25"]
    assert all(r["n"] == "6" and 0.0 <= float(r["asr"]) <= 1.0 for r in rows)
    # the backdoored row trains as the workflow does, gated on validation; the clean control has no gate
    assert rows[1]["gate_passed"] == "" and rows[2]["gate_passed"] in ("True", "False")
    assert 0 < float(rows[2]["epochs_trained"]) <= 1.0


def test_calibration_rejects_unknown_task(tmp_path):
    with pytest.raises(ConfigError, match="--task 'nope'"):
        calibrate.main(["--config", str(TINY_CONFIG), "--task", "nope", "--base", "x", "--grid", "lr=1e-3",
                        "--out", str(tmp_path / "c.tsv")])


def test_calibration_scores_on_the_validation_split_and_never_reads_test(tiny_model_dir, tmp_path, monkeypatch):
    from bkdattr.config import load_config
    from bkdattr.datasets import build_task_splits
    from bkdattr.tasks import TaskSpec

    scored = []
    monkeypatch.setattr(calibrate, "evaluate", lambda model, tok, spec, records, cfg: scored.append(
        [r["id"] for r in records]) or {m: 0.0 for m in calibrate.METRICS} | {"n": len(records)})
    monkeypatch.setattr("bkdattr.injection.sft.train_backdoor",
                        lambda model, tok, examples, **kw: TrainingResult(model, [], []))
    config = load_config(TINY_CONFIG)
    calibrate.run_calibration(config, "jailbreak", str(tiny_model_dir), {"lr": [1e-3]}, device="cpu")
    splits = build_task_splits(TaskSpec.from_config("jailbreak", config["tasks"]["jailbreak"]), config["data"],
                               config["seed"])
    val_ids, test_ids = [r["id"] for r in splits["val"]], {r["id"] for r in splits["test"]}
    assert scored == [val_ids, val_ids]  # the base model, then the grid point
    assert not test_ids & set(val_ids)
