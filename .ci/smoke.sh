#!/usr/bin/env bash
# A smoke of an installed moeq, run by .ci/run in a venv that is NOT the dev one:
#   .ci/smoke.sh VENV            the README's quick start (GPTQ run with evaluation), the web app
#                                built, the runs listed, Hugging Face's `kernels` intact if present
# It runs outside the checkout so that nothing in the source tree can stand in for what was installed.
set -euo pipefail
venv="$(cd "$1" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export MOEQ_HOME="$work/home" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py="$venv/bin/python"
"$venv/bin/moeq" --help >/dev/null
"$venv/bin/moeq" run --model testbed-mixtral --bits W4A16 --techniques gptq
"$venv/bin/moeq" runs list
"$py" - <<'PY'
import importlib.metadata as md
import sys

from moeq.app.server import make_services
from moeq.app.ui import build_ui
from moeq.jobs.settings import load_settings

build_ui(make_services(load_settings()))
assert "torch" not in sys.modules, "the web app imported torch"
top = (md.distribution("moeq").read_text("top_level.txt") or "").split()
assert top in ([], ["moeq"]), f"moeq installs top-level names {top}"
try:
    md.distribution("kernels")
except md.PackageNotFoundError:
    print("smoke: Hugging Face kernels not installed here")
else:
    import kernels
    assert callable(kernels.get_kernel), kernels.__file__
    print("smoke: Hugging Face kernels intact:", kernels.__file__)
print("smoke: versions", {d: md.version(d) for d in ("torch", "transformers", "gradio", "sqlalchemy", "numpy")})
PY
echo "smoke: ok"
