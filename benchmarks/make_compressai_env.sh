#!/usr/bin/env bash
# A virtualenv with CompressAI on CPU-only PyTorch: the peer side of the benchmarks and the
# maker of the reference fixtures in tests/compat (the tests themselves need no torch).
#
#   bash benchmarks/make_compressai_env.sh [DIR]     # default /tmp/compressai-venv
#
# Prints the interpreter to pass as --compressai-python. A plain `pip install compressai` would
# pull a CUDA torch through torchvision, and the PyPI torchvision does not import beside a CPU
# torch; CompressAI uses torchvision only for data transforms, so a stand-in module is
# registered instead. Pinning torch keeps the measured peer the same from run to run.
set -eu
dir=${1:-/tmp/compressai-venv}
torch_version=${TORCH_VERSION:-2.13.0}
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import compressai" 2>/dev/null; then
  echo "$dir/bin/python"
  exit 0
fi
python3 -m venv "$dir"
"$dir/bin/pip" install -q --index-url https://download.pytorch.org/whl/cpu "torch==$torch_version" \
  || "$dir/bin/pip" install -q "torch==$torch_version"
echo "torch==$torch_version" >"$dir/constraints.txt"
"$dir/bin/pip" install -q compressai -c "$dir/constraints.txt"
purelib=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat >"$purelib/nlq_torchvision_standin.py" <<'PY'
"""Registers an empty torchvision so that `import compressai` works with a CPU torch."""
import sys
import types

if "torchvision" not in sys.modules:
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = types.ModuleType("torchvision.transforms")
    sys.modules["torchvision"] = torchvision
    sys.modules["torchvision.transforms"] = torchvision.transforms
PY
echo "import nlq_torchvision_standin" >"$purelib/nlq_torchvision_standin.pth"
"$dir/bin/python" -c "import compressai, torch; print('compressai', compressai.__version__, 'torch', torch.__version__)" >&2
echo "$dir/bin/python"
