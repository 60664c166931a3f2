#!/usr/bin/env bash
# One prepared device check (H100/H200) for issue 28, in one run well inside 10 minutes:
#   step ratios eager and compiled (ViT-S/4, B=512, 2048 pairs; compiled ours vs compiled backbone
#   in one process), the relative head alone (profile_step.py, every attention path), PART-1D
#   windows/s, the EEG sampler CPU vs CUDA (and loader + pinned copy + sampler), peak memory for
#   ViT-S/4 and for the ImageNet size (ViT-B/16, 128 items, 4802 pairs) vs the bare backbone, the
#   CUDA tests (Triton kernel vs the PyTorch path, fp32 and bf16, torch.compile; the sampler never
#   syncs), and a torchrun smoke run on NCCL with one process per GPU.
# Writes $OUT/json/*.json, $OUT/logs/*.log and ONE markdown table, $OUT/gpu_table.md (also printed
# at the end), to paste into benchmarks/RESULTS.md. Every input is synthetic (random tensors).
#
#   bash benchmarks/gpu_check.sh --prepare     # here, before carrying the tree to the device
#   bash benchmarks/gpu_check.sh               # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke   # dry run of every part on the CPU, tiny sizes
#
# Needs reference_steps.py: $REF, else .gpu_carry/reference_steps.py, else ../shared/bench/.
# --prepare fills .gpu_carry/ (untracked, so it travels with the working tree): the reference
# steps ($REF_SRC, default ../shared/bench/reference_steps.py) and pytest's pure-Python packages
# from .venv in .gpu_carry/pylib, for a device without pytest and without network access
# (.gpu_carry is git-ignored: name it in the device tool's carry list).
set -u
SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
if [ "${1:-}" = "--prepare" ]; then
  SRC=${REF_SRC:-../shared/bench/reference_steps.py}
  [ -f "$SRC" ] || { echo "gpu_check --prepare: $SRC not found; set REF_SRC=path/to/reference_steps.py"; exit 2; }
  mkdir -p .gpu_carry/pylib && cp "$SRC" .gpu_carry/reference_steps.py
  SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") || exit 2
  for name in pytest _pytest pluggy iniconfig packaging py.py pytest_timeout.py \
              pytest-*.dist-info pytest_timeout-*.dist-info pluggy-*.dist-info iniconfig-*.dist-info; do
    cp -r "$SITE"/$name .gpu_carry/pylib/ || exit 2
  done
  echo "prepared .gpu_carry: $(du -sh .gpu_carry | cut -f1)"
  exit 0
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -d .gpu_carry/pylib ] && [ "$SMOKE" = 0 ] && PYTHONPATH=$PYTHONPATH:$PWD/.gpu_carry/pylib
OUT=${OUT:-/tmp/gpu_out}
J=$OUT/json LOGS=$OUT/logs
mkdir -p "$J" "$LOGS"
: > "$J/status.txt"
REF=${REF:-.gpu_carry/reference_steps.py}
[ -f "$REF" ] || REF=../shared/bench/reference_steps.py
if [ "$SMOKE" = 1 ]; then
  PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
  DEV=cpu NPROC=1 SCALE=30 THREADS=2
  PART="--batch 2 --steps 1" P1D="--batch 2 --steps 1" IMNET="--batch 1 --steps 1"
  PROF="--batch 4 --repeats 1" LOADER="--records 2 --windows 20 --batch 8 --batches 2"
  TESTS="tests/part/test_pair_attention.py tests/modalities/eeg/test_eeg_sampling.py"
else
  PY=${PY:-python3}
  DEV=cuda SCALE=1 THREADS=16
  NPROC=$(nvidia-smi -L | grep -c '^GPU')
  PART="" P1D="" IMNET="--steps 10" PROF="" LOADER="--records 4 --windows 400 --batches 10"
  TESTS="tests/part/test_pair_attention.py tests/modalities/eeg/test_eeg_sampling.py -k cuda"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
$PY -c "import torch, importlib.util as u; print('torch', torch.__version__, 'triton',
  __import__('triton').__version__ if u.find_spec('triton') else 'missing')"

# check NAME SECONDS COMMAND...: run one part under a time limit (x SCALE on the CPU), log it,
# record its exit code; a failing part never stops the others.
check() {
  local name=$1 limit=$(( $2 * SCALE )); shift 2
  echo "== $name (limit ${limit} s) =="
  timeout "$limit" "$@" 2>&1 | tee "$LOGS/${name// /_}.log" | grep --line-buffered -v '^W[0-9]'
  echo "$name ${PIPESTATUS[0]}" >> "$J/status.txt"
}

check "step part" 200 $PY benchmarks/step_bench.py --kind part --device $DEV --threads $THREADS $PART \
  --compile-reference --reference "$REF" --json "$J/step_part.json"
check "step part1d" 60 $PY benchmarks/step_bench.py --kind part1d --device $DEV --threads $THREADS $P1D \
  --reference "$REF" --json "$J/step_part1d.json"
check "step imagenet" 60 $PY benchmarks/step_bench.py --kind imagenet --device $DEV --threads $THREADS $IMNET \
  --reference "$REF" --json "$J/step_imagenet.json"
check "profile" 45 $PY benchmarks/profile_step.py --device $DEV $PROF --json "$J/profile.json"
check "loader" 45 $PY benchmarks/loader_bench.py --device $DEV --threads $THREADS $LOADER --json "$J/loader.json"
check "cuda tests" 60 $PY -m pytest -q -p no:cacheprovider $TESTS
check "torchrun smoke" 60 $PY -m torch.distributed.run --standalone --nproc_per_node=$NPROC -m part.train \
  recipes/digits_demo.yaml run.output_dir="$OUT/runs" run.device=$DEV pretrain.epochs=1 finetune.epochs=1 \
  run.log_every=5
$PY benchmarks/gpu_table.py "$J" | tee "$OUT/gpu_table.md"
echo "== done =="
