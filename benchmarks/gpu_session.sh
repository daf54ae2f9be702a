#!/usr/bin/env bash
# The one prepared GPU session (issue: "On the GPU"). Run it on a lent CUDA machine from the
# repository root; everything it prints lands under one folder so one call brings it all back:
#
#   OUT=/some/folder bash benchmarks/gpu_session.sh          # default OUT=gpu-session-<date>
#
# Each step has its own timeout (GPU time is short: the whole script stays under ~9 minutes),
# and a failing step does not stop the later ones; the summary lists each step's exit status.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-session-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
export OUT
summary="$OUT/summary.txt"
: > "$summary"
step() {  # step NAME SECONDS COMMAND...
  local name="$1" secs="$2"; shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$secs" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" >> "$summary"
}

# 1. the device and the install (CUDA torch of the pinned version, then the project as README says)
step device 30 nvidia-smi
step install 240 bash -c 'python3.11 -m venv .venv-gpu && . .venv-gpu/bin/activate &&
  pip install -q "torch==2.13.0" && pip install -q -e ".[dev]" &&
  python -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))"'
. .venv-gpu/bin/activate 2>/dev/null || true

# 2. every GPU test: kernels, a quantized model end to end, the torch path on CUDA
step pytest_gpu 240 python -m pytest -q -m gpu -p no:cacheprovider

# 3. the quick start on CUDA, then the same run on CPU for the metric comparison
export MOEQ_HOME="$OUT/home"
step run_cuda 120 env MOEQ_DEVICE=cuda moeq run --model testbed-mixtral --bits W4A16 --techniques gptq
step run_cpu 120 env MOEQ_DEVICE=cpu moeq run --model testbed-mixtral --bits W4A16 --techniques gptq
step runs_json 30 bash -c "moeq runs list --json > '$OUT/runs.json'"

# 4. measured HBM read bandwidth (the bound the kernel table is compared with)
step hbm 60 python - <<'PY'
import json, os, torch
x = torch.empty(2 * 1024 ** 3 // 2, dtype=torch.bfloat16, device="cuda")  # 2 GiB
x.normal_()
for _ in range(3):
    x.sum()
torch.cuda.synchronize()
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
best = 0.0
for _ in range(10):
    start.record(); x.sum(); end.record(); torch.cuda.synchronize()
    best = max(best, x.numel() * 2 / (start.elapsed_time(end) / 1e3) / 1e12)
print(json.dumps({"read_tbps": best, "device": torch.cuda.get_device_name(0)}))
open(os.path.join(os.environ.get("OUT", "."), "hbm.json"), "w").write(json.dumps({"read_tbps": best}))
PY
tbps=$(python -c "import json; print(json.load(open('$OUT/hbm.json'))['read_tbps'])" 2>/dev/null || echo 3.35)

# 5. the kernel table (Mixtral-8x7B and Qwen3-30B-A3B shapes, 1/16/128/2048 tokens, W2/W3/W4/W8/mixed)
step moe_kernels 300 python benchmarks/moe_kernels.py --hbm-tbps "$tbps" --out "$OUT/moe_kernels.json"

echo "done; steps:" && cat "$summary"
