#!/usr/bin/env bash
# The benchmark scripts must keep working: run every scenario of make bench
# for a few transactions (no timing is asserted; benchmarks are never tests).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bash "$here/bench/run.sh" --smoke
