#!/usr/bin/env bash
# Snakemake runs this once, inside the new conda env, from the workflow's working directory: install the
# bkdattr package there (without dependencies: the env file pins them), so workflow_scripts import it
# exactly as on the pip path of the README.
set -euo pipefail
if ! grep -qs '^name = "bkdattr"' pyproject.toml; then
    echo "envs post-deploy: no bkdattr pyproject.toml in $PWD; run snakemake --sdm conda from the repository root" >&2
    exit 1
fi
python -m pip install --quiet --no-deps -e .
