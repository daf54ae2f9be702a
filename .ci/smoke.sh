#!/usr/bin/env bash
# A smoke of an installed moeq, run by .ci/run in a venv that is NOT the dev one:
#   .ci/smoke.sh VENV            the README's quick start (GPTQ run with evaluation), the runs listed,
#                                `moeq serve` answering its page (secret path, token header), Hugging Face's
#                                `kernels` intact if present
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
"$py" - <<'PY'
import os, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
home = Path(os.environ["MOEQ_HOME"])
proc = subprocess.Popen([str(Path(sys.executable).with_name("moeq")), "serve", "--port", str(port)],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    deadline, status = time.monotonic() + 180, None
    while time.monotonic() < deadline and proc.poll() is None:
        token = home / "serve-token"
        if token.is_file() and token.read_text().strip():
            secret = token.read_text().strip()
            script = urllib.request.Request(f"http://127.0.0.1:{port}/config",  # scripts: the header
                                            headers={"Authorization": f"token {secret}"})
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/s/{secret}/", timeout=10).status
                assert urllib.request.urlopen(script, timeout=10).status == 200, "Authorization: token refused"
                break
            except OSError:
                pass
        time.sleep(1)
    assert status == 200, f"moeq serve did not answer its page (status {status}, exit {proc.poll()})"
    print("smoke: moeq serve answered its page")
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
PY
echo "smoke: ok"
