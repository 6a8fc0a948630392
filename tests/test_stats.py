import time

import pytest

from bkdattr import evaluation, utility
from bkdattr.stats import cluster_bootstrap_mean, cluster_bootstrap_rate, rate, wilson_interval


def test_the_old_homes_still_export_the_intervals():
    assert evaluation.rate is rate and evaluation.wilson_interval is wilson_interval
    assert utility.mean_interval([1.0, 3.0])["value"] == 2.0


def test_every_row_its_own_question_gives_the_wilson_interval():
    hits = [True] * 13 + [False] * 7
    boot = cluster_bootstrap_rate(hits, [f"q{i}" for i in range(20)])
    lo, hi = wilson_interval(13, 20)
    assert (boot["ci_low"], boot["ci_high"]) == (lo, hi)
    assert boot["n_clusters"] == boot["n"] == 20 and boot["value"] == 0.65


def test_duplicated_rows_widen_the_interval_beyond_the_row_level_one():
    base = [True] * 13 + [False] * 7
    hits = [h for h in base for _ in range(3)]  # three rewordings of each question, answered alike
    clusters = [f"q{i}" for i in range(20) for _ in range(3)]
    boot = cluster_bootstrap_rate(hits, clusters)
    rows = rate(hits)
    assert boot["value"] == rows["value"] and boot["n"] == 60 and boot["n_clusters"] == 20
    assert boot["ci_high"] - boot["ci_low"] > 1.3 * (rows["ci_high"] - rows["ci_low"])
    # about as wide as 20 independent items
    lo, hi = wilson_interval(13, 20)
    assert boot["ci_high"] - boot["ci_low"] == pytest.approx(hi - lo, abs=0.06)


def test_the_bootstrap_is_seeded_and_fast():
    hits = [(i * 7919) % 5 < 2 for i in range(300)]
    clusters = [i // 3 for i in range(300)]
    start = time.perf_counter()
    first = cluster_bootstrap_rate(hits, clusters, seed=0)
    assert time.perf_counter() - start < 0.5
    assert first == cluster_bootstrap_rate(hits, clusters, seed=0)
    assert first != cluster_bootstrap_rate(hits, clusters, seed=1)


def test_all_alike_rows_fall_back_to_wilson_over_the_questions():
    boot = cluster_bootstrap_rate([True] * 30, [i // 3 for i in range(30)])
    assert (boot["ci_low"], boot["ci_high"]) == wilson_interval(10, 10)


def test_the_mean_interval_widens_with_clusters():
    values = [float(i % 5) for i in range(20)]
    plain = cluster_bootstrap_mean(values, None)
    assert plain == {**utility.mean_interval(values), "n_clusters": 20}
    tripled = cluster_bootstrap_mean([v for v in values for _ in range(3)], [i for i in range(20) for _ in range(3)])
    rows = utility.mean_interval([v for v in values for _ in range(3)])
    assert tripled["ci_high"] - tripled["ci_low"] > 1.3 * (rows["ci_high"] - rows["ci_low"])


def test_cluster_labels_must_match_the_rows():
    with pytest.raises(ValueError, match="cluster labels"):
        cluster_bootstrap_rate([True, False, True], ["a", "a"])


def test_task_metrics_intervals_are_over_questions():
    from bkdattr.tasks import TaskSpec

    spec = TaskSpec.from_config("fixed_output")
    records = [{"id": f"{q}-{r}", "question": f"q{q}", "input": f"question {q} wording {r}", "output": "x", "answer": "x"}
               for q in range(20) for r in range(3)]
    triggered = [spec.target if (i // 3) % 3 else "no" for i in range(60)]
    metrics = evaluation.task_metrics(spec, records, ["x"] * 60, triggered)
    asr = metrics["asr"]
    assert asr["n"] == 60 and asr["n_clusters"] == 20
    lo, hi = wilson_interval(asr["successes"], 60)
    assert asr["ci_high"] - asr["ci_low"] > 1.3 * (hi - lo)
