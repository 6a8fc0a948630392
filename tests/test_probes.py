"""Backdoor probes on synthetic Gaussian activations: a readable layer, a noise layer, and the plumbing."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bkdattr.probes import (
    ACCURACY_COLUMNS,
    MLPProbe,
    ilca_intervals,
    layer_probe_results,
    mlp_probe_tensors,
    probe_groups,
    split_groups,
    summarise,
    summary_rows,
    train_mlp_probe,
    train_mlp_probes,
    train_svm_probe,
)

N_GROUPS, D, EPOCHS = 60, 16, 20


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # small and shared CPU; also keeps float reductions in one order
    yield
    torch.set_num_threads(old)


def make_data(seed=0):
    """Each group: a clean row (0) and its triggered twin (1). Layer 0 is noise; layers 1-2 shift the
    triggered rows' mean (strongly in layer 1, along a few dims in layer 2)."""
    rng = np.random.default_rng(seed)
    n = 2 * N_GROUPS
    labels = np.tile([0, 1], N_GROUPS)
    groups = np.repeat(rng.permutation(1000)[:N_GROUPS], 2)  # arbitrary, non-contiguous ids
    x = rng.normal(size=(n, 3, D)).astype(np.float32)
    x[labels == 1, 1] += 1.5
    x[labels == 1, 2, :4] += 3.0
    return x, labels, groups


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def results(data):
    torch.set_num_threads(1)
    return layer_probe_results(*data, seed=3, epochs=EPOCHS)


def acc(results, layer, probe):
    (row,) = [r for r in results["accuracy"] if r["layer"] == layer and r["probe"] == probe]
    return row


def test_shifted_layer_is_readable_and_noise_layer_is_not(results):
    for probe in ("mlp", "svm"):
        assert acc(results, 1, probe)["test_acc"] > 0.9
        assert acc(results, 2, probe)["test_acc"] > 0.9
        assert acc(results, 0, probe)["test_acc"] < 0.75


def test_ilca_diagonal_is_the_per_layer_test_accuracy(results):
    for layer in range(3):
        assert results["ilca_mlp"][layer, layer] == acc(results, layer, "mlp")["test_acc"]
        assert results["ilca_svm"][layer, layer] == acc(results, layer, "svm")["test_acc"]
    assert results["ilca_mlp"].shape == results["ilca_svm"].shape == (3, 3)


def test_each_off_diagonal_ilca_cell_is_probe_i_scored_on_layer_js_test_rows(data, results):
    """ILCA[i, j] is layer i's probe (MLP and SVM alike) scored on layer j's test rows, recomputed here from the
    saved MLP weights and a refitted SVM; with a noise layer and two readable layers, scoring layer j's own
    probe instead would differ."""
    x, labels, _ = data
    train, test = results["split"]["train"], results["split"]["test"]
    for i in range(3):
        mlp = MLPProbe.from_state_tensors(results["mlp_states"][i])
        svm = train_svm_probe(x[train, i], labels[train])
        for j in set(range(3)) - {i}:
            mlp_acc = float((mlp.predict(x[test, j]) == labels[test]).mean())
            svm_acc = float((svm.predict(x[test, j]) == labels[test]).mean())
            assert results["ilca_mlp"][i, j] == pytest.approx(mlp_acc, abs=1e-12), (i, j)
            assert results["ilca_svm"][i, j] == pytest.approx(svm_acc, abs=1e-12), (i, j)
    # the noise layer's probe does not read layer 1, whose own probe does: the cells are not interchangeable
    assert results["ilca_mlp"][0, 1] < results["ilca_mlp"][1, 1] - 0.2
    assert results["ilca_svm"][0, 1] < results["ilca_svm"][1, 1] - 0.2


def test_groups_never_straddle_splits(data, results):
    _, labels, groups = data
    split = results["split"]
    rows = np.concatenate([split["train"], split["val"], split["test"]])
    assert sorted(rows.tolist()) == list(range(len(groups)))  # every row exactly once
    sets = {k: set(groups[v].tolist()) for k, v in split.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert [len(sets[k]) for k in ("train", "val", "test")] == [36, 12, 12]
    row = acc(results, 0, "mlp")
    assert (row["n_train"], row["n_val"], row["n_test"]) == (72, 24, 24)


def test_same_seed_is_deterministic(data, results):
    again = layer_probe_results(*data, seed=3, epochs=EPOCHS)
    assert again["accuracy"] == results["accuracy"]
    np.testing.assert_array_equal(again["ilca_mlp"], results["ilca_mlp"])
    np.testing.assert_array_equal(again["ilca_svm"], results["ilca_svm"])
    for layer, state in results["mlp_states"].items():
        assert state.keys() == again["mlp_states"][layer].keys()
        assert all(torch.equal(v, again["mlp_states"][layer][k]) for k, v in state.items())
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(again["split"][k], results["split"][k])


def test_split_depends_on_seed_not_row_order():
    groups = np.repeat(np.arange(20), 2)
    a, b = split_groups(groups, 0), split_groups(groups, 1)
    assert not np.array_equal(a["test"], b["test"])
    perm = np.random.default_rng(0).permutation(len(groups))
    c = split_groups(groups[perm], 0)
    assert set(groups[perm][c["test"]]) == set(groups[a["test"]])


def test_nan_feature_names_row_and_layer(data):
    x, labels, groups = data
    x = x.copy()
    x[7, 2, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN in activations at row 7, layer 2"):
        layer_probe_results(x, labels, groups, seed=0, epochs=1)


def test_bad_labels_and_shapes_raise(data):
    x, labels, groups = data
    with pytest.raises(ValueError, match="0/1"):
        layer_probe_results(x, labels + 1, groups, seed=0, epochs=1)
    with pytest.raises(ValueError, match="must be"):
        layer_probe_results(x[:, 0], labels, groups, seed=0, epochs=1)


def test_too_few_groups_or_one_class_raises():
    with pytest.raises(ValueError, match="4 groups"):
        split_groups(np.repeat(np.arange(4), 2), seed=0)
    with pytest.raises(ValueError, match="both classes"):
        split_groups(np.repeat(np.arange(10), 2), seed=0, labels=np.zeros(20, dtype=int))


def test_layers_trained_together_match_each_layer_trained_alone(data):
    """The batched trainer reproduces train_mlp_probe per layer (init, batch order, dropout masks, Adam, best
    epoch) to float rounding. A dropout mask drawn from another layer's generator, or one batch order for
    every layer, moves the weights by far more than the tolerance (both checked by mutation)."""
    x, labels, _ = data
    tr, va = slice(0, 80), slice(80, 104)  # 80 rows: five batches of 16 per epoch
    seeds = [11, 12, 13]
    alone = [train_mlp_probe(x[tr, l], labels[tr], x[va, l], labels[va], seed=s, epochs=4, hidden=8)
             for l, s in enumerate(seeds)]
    together = train_mlp_probes(x[tr].transpose(1, 0, 2), labels[tr], x[va].transpose(1, 0, 2), labels[va],
                                seeds=seeds, epochs=4, hidden=8)
    for layer, (a, b) in enumerate(zip(alone, together)):
        sa, sb = a.state_tensors(), b.state_tensors()
        assert sa.keys() == sb.keys()
        for key in sa:
            torch.testing.assert_close(sb[key], sa[key], rtol=0, atol=1e-5, msg=f"layer {layer}, {key}")
        np.testing.assert_array_equal(b.predict(x[:, layer]), a.predict(x[:, layer]))


def test_training_leaves_global_rng_alone(data):
    x, labels, _ = data
    before = torch.get_rng_state()
    train_mlp_probe(x[:40, 1], labels[:40], x[40:60, 1], labels[40:60], seed=0, epochs=1)
    train_mlp_probes(x[:40].transpose(1, 0, 2), labels[:40], x[40:60].transpose(1, 0, 2), labels[40:60],
                     seeds=[0, 1, 2], epochs=1)
    assert torch.equal(before, torch.get_rng_state())


def test_safetensors_round_trip_keeps_predictions(data, results, tmp_path):
    x, _, _ = data
    for layer, state in results["mlp_states"].items():
        path = tmp_path / f"layer{layer}.safetensors"
        save_file(state, str(path))
        restored = MLPProbe.from_state_tensors(load_file(str(path)))
        original = MLPProbe.from_state_tensors(state)
        np.testing.assert_array_equal(restored.predict(x[:, layer]), original.predict(x[:, layer]))
        np.testing.assert_array_equal(restored.logits(x[:, layer]).numpy(), original.logits(x[:, layer]).numpy())
    test = results["split"]["test"]
    restored = MLPProbe.from_state_tensors(load_file(str(tmp_path / "layer1.safetensors")))
    assert restored.accuracy(x[test, 1], data[1][test]) == acc(results, 1, "mlp")["test_acc"]


def test_summarise(results):
    s = summarise(results["accuracy"], results["ilca_mlp"], results["ilca_svm"], threshold=0.9)
    assert s["first_layer_mlp_ge_threshold"] == 1 and s["first_layer_svm_ge_threshold"] == 1
    assert s["best_layer_mlp"] in (1, 2)
    assert s["max_test_acc_mlp"] == max(acc(results, layer, "mlp")["test_acc"] for layer in range(3))
    m = results["ilca_mlp"]
    assert s["mean_offdiag_ilca_mlp"] == pytest.approx((m.sum() - np.trace(m)) / 6)
    none = summarise(results["accuracy"], results["ilca_mlp"], results["ilca_svm"], threshold=1.01)
    assert none["first_layer_mlp_ge_threshold"] is None and none["first_layer_svm_ge_threshold"] is None


def test_probe_accuracies_and_ilca_cells_carry_wilson_intervals():
    from bkdattr.probes import accuracy_interval, ilca_long, summarise

    low, high = accuracy_interval(0.9, 20)
    assert low < 0.9 < high and high - low > 0.2  # 20 test rows decide little
    cells = ilca_long(np.array([[1.0, 0.5], [0.25, 1.0]]), 40, "mlp")
    assert len(cells) == 4 and cells[1]["train_layer"] == 0 and cells[1]["test_layer"] == 1
    assert cells[1]["ci_low"] < 0.5 < cells[1]["ci_high"] and cells[0]["ci_high"] == 1.0
    rows = [{"layer": 0, "probe": "mlp", "test_acc": 0.75, "n_test": 40},
            {"layer": 1, "probe": "mlp", "test_acc": 1.0, "n_test": 40}]
    summary = summarise(rows, np.eye(2), np.eye(2), threshold=0.95)
    assert summary["n_test"] == 40 and summary["max_test_acc_mlp_ci_low"] < 1.0


def test_fig2_ilca_colours_span_zero_to_one_so_inverted_transfer_shows(tmp_path, monkeypatch):
    from bkdattr import figures
    from bkdattr.atomic import write_matrix_tsv, write_tsv

    runs = {}
    for model in ("lora_sft", "base"):
        paths = {"accuracy": tmp_path / f"{model}_acc.tsv"}
        write_tsv(paths["accuracy"], [{"layer": l, "probe": p, "test_acc": 0.9} for l in range(2) for p in ("mlp", "svm")])
        for kind in ("ilca_mlp", "ilca_svm"):
            paths[kind] = tmp_path / f"{model}_{kind}.tsv"
            write_matrix_tsv(paths[kind], [[1.0, 0.1], [0.2, 1.0]], corner="train_layer/test_layer")
        runs[("jailbreak", model)] = {k: str(v) for k, v in paths.items()}
    limits = []
    original = figures._heatmap
    monkeypatch.setattr(figures, "_heatmap", lambda ax, m, **kw: limits.append((kw["vmin"], kw["vmax"])) or original(ax, m, **kw))
    figures.plot_fig2(runs, ["jailbreak"], ["base", "lora_sft"], tmp_path / "f.pdf", tmp_path / "f.png")
    assert len(limits) == 4 and all(lim == (0.0, 1.0) for lim in limits)
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_probe_summary_rows_read_back_types_mark_the_gate_and_write_none(results):
    """probe_summary's rows (built in bkdattr.probes, not in the script): the accuracy TSV's strings are read as
    numbers, summarise's None is written 'none', and each run carries its gate verdict (n/a without one)."""
    as_read = [{k: str(v) for k, v in r.items()} for r in results["accuracy"]]  # read_tsv gives strings
    runs = {("fixed_output", "lora_sft"): (as_read, results["ilca_mlp"], results["ilca_svm"]),
            ("fixed_output", "base"): (as_read, results["ilca_mlp"], results["ilca_svm"])}
    rows = summary_rows(runs, {("fixed_output", "lora_sft"): "no"}, threshold=1.01)
    assert [(r["model"], r["backdoor_implanted"]) for r in rows] == [("lora_sft", "no"), ("base", "n/a")]
    expected = summarise(results["accuracy"], results["ilca_mlp"], results["ilca_svm"], threshold=1.01)
    assert rows[0]["first_layer_mlp_ge_threshold"] == "none"
    assert rows[0]["max_test_acc_mlp"] == expected["max_test_acc_mlp"] and rows[0]["n_test"] == expected["n_test"]


def test_train_probes_outputs(data, results):
    assert list(results["accuracy"][0]) == ACCURACY_COLUMNS
    cells = ilca_intervals(results)
    assert len(cells) == 2 * 3 * 3 and {c["probe"] for c in cells} == {"mlp", "svm"}
    assert {c["n_test"] for c in cells} == {len(results["split"]["test"])}
    tensors = mlp_probe_tensors(results)
    assert set(tensors) == {f"layer{l}.{k}" for l in range(3) for k in results["mlp_states"][0]}
    cache = {"groups": torch.tensor(data[2]), "labels": torch.tensor(data[1])}
    assert np.array_equal(probe_groups(cache, "by_item"), data[2])
    assert np.array_equal(probe_groups(cache, "by_row"), np.arange(len(data[1])))
