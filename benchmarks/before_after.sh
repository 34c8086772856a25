#!/usr/bin/env bash
# Runs a benchmark script twice in one go, on an earlier checkout ("before") and on this one
# ("after"), each beside CompressAI, so a refactor's speed is compared on the same machine, the
# same day and load. Each side's ratio to CompressAI is what to compare (absolute times move
# with the machine's load).
#
#   benchmarks/before_after.sh BEFORE_DIR codec_speed.py --image $KODAK/kodim23.png \
#       --compressai-python /tmp/compressai-venv/bin/python
#
# BEFORE_DIR: a checkout of the earlier commit (e.g. `git worktree add /tmp/before <commit>`);
# its nlq_jax is put first on PYTHONPATH for the "before" run. Output: both runs' tables.
set -eu
before=$(cd "$1" && pwd); script=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
echo "## before: $(git -C "$before" log -1 --format='%h %s' | cut -c1-80)"
(cd "$before" && PYTHONPATH="$before" python "benchmarks/$script" "$@")
echo
echo "## after: $(git -C "$here" log -1 --format='%h %s' | cut -c1-80) (+ working tree)"
(cd "$here" && PYTHONPATH="$here" python "benchmarks/$script" "$@")
