#!/usr/bin/env bash
# The prepared GPU check (issue 12.3): one NVIDIA card, ≤ 8 min budgeted, figures written as one JSON.
#
#   scripts/gpu_check.sh [OUT.json]              # CUDA, bf16, Qwen3-4B-shaped model (default OUT:
#                                                #   docs/results/gpu/gpu_check.json)
#   scripts/gpu_check.sh --smoke OUT.json        # CPU, fp32, tiny shapes: seconds (what the tests run)
#   scripts/gpu_check.sh --help                  # every option (--layers, --kinds, --skip-fast-dev-run)
#
# PYTHON picks the interpreter (default: python on PATH, with projected_grpo installed).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
