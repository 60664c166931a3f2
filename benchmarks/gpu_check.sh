#!/usr/bin/env bash
# One prepared device check (H100/H200): step benchmarks against the reference steps in the same
# process, the EEG loader + sampler, and short training smoke tests on CUDA (bf16, torchrun/NCCL).
# Needs ../shared/bench/reference_steps.py copied to .gpu_carry/ and a small prepared synthetic
# PC18 directory in .gpu_carry/prep (see benchmarks/RESULTS.md for how they were made).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
REF=.gpu_carry/reference_steps.py
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
echo "== PART image step (ViT-S/4, 64 patches, 2048 pairs, scale variant), B=512 bf16 =="
timeout 150 python3 benchmarks/step_bench.py --kind part --batch 512 --reference $REF
echo "== PART-1D step (EEG encoder, 40 windows, 512 pairs), B=512 bf16 =="
timeout 90 python3 benchmarks/step_bench.py --kind part1d --batch 512 --reference $REF
echo "== EEG loader + sampler on cuda =="
timeout 45 python3 benchmarks/loader_bench.py --records 8 --windows 600 --batches 20 --threads 8
echo "== smoke: digits demo on cuda (bf16) =="
timeout 60 python3 -m part.train recipes/digits_demo.yaml run.output_dir=$OUT/runs pretrain.epochs=3 \
  finetune.epochs=3 run.device=cuda run.log_every=5 && tail -n 2 $OUT/runs/digits_demo/metrics.jsonl
echo "== smoke: EEG sleep recipe (paper-size 12.9M encoder) via torchrun/NCCL, compiled =="
timeout 170 torchrun --nproc_per_node=1 -m part.train recipes/eeg_sleep.yaml data.root=.gpu_carry/prep \
  run.output_dir=$OUT/runs pretrain.epochs=2 finetune.epochs=2 pretrain.batch_size=128 \
  finetune.batch_size=64 evaluate.repeats=1 run.num_workers=2 run.compile=true run.log_every=1 \
  && grep -c pretrain $OUT/runs/eeg_sleep_part/metrics.jsonl && python3 -c "
import json; r=json.load(open('$OUT/runs/eeg_sleep_part/report/report.json')); print('kappa', r['kappa'], 'acc', r['accuracy'])"
echo "== done =="
