# bkdattr-workflow: Backdoor Attribution (arXiv 2509.21761), from poisoned data to figures.
# Usage: snakemake --cores all [--configfile presets/paper.yaml] [target]
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


try:  # the Snakefile and rules/*.smk use the package: it must be installed where snakemake runs
    from bkdattr.config import ConfigError, read_config_file
except ImportError as err:
    raise WorkflowError(f"the bkdattr package is not importable by this snakemake ({err}); install it into "
                        "snakemake's Python with `pip install -e .` from the repository root (README)") from err


# Read before Snakemake reads it: Snakemake evaluates a YTE template while loading. The --configfile files were
# loaded (so evaluated) by Snakemake before this file runs: they are refused below, after the fact (docs/security.md).
# A key written twice (YAML keeps the last, silently), a tab or a `!!python` tag (named with line and column), a
# YTE template (code run while reading): refused, naming the file.
try:
    for _path in ["config.yaml"] if os.path.exists("config.yaml") else []:
        read_config_file(_path)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


configfile: "config.yaml"


try:
    for _path in workflow.configfiles:
        read_config_file(_path)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


try:  # the key at fault, one line, before validate() below would print the whole schema with it
    from bkdattr.config import ConfigError, check_config

    check_config(config, "config")
except ConfigError as err:
    raise WorkflowError(str(err)) from None

validate(config, "bkdattr/schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/data.smk"
include: "rules/inject.smk"
include: "rules/evaluate.smk"
include: "rules/probes.smk"
include: "rules/attribution.smk"
include: "rules/interventions.smk"
include: "rules/run_record.smk"
include: "rules/seeds.smk"
include: "rules/defences.smk"


report: "rules/report/workflow.rst"


# The report embeds each result's job params unescaped in a <script> block: a config string (a trigger) could
# put live HTML there. The params of report rules are shown escaped (bkdattr/report_params.py; no rerun).
from bkdattr.report_params import escape_report_params

escape_report_params(workflow.rules)


# Summaries, tables and figures read small TSVs: on a cluster they run on the submitting node, not as jobs.
localrules:
    all,
    make_benign_requests,
    gate_table,
    injection_table,
    injection_methods_table,
    confirmation_table,
    probe_summary,
    fig2,
    attribution_summary,
    fig3,
    table1,
    table2_and_fig4,
    claims_report,
    summary,
    seed_summary,
    defences_table,
    run_record,


rule all:
    input:
        all_targets(),
    default_target: True
