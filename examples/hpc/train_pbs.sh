#!/bin/bash
# Multi-GPU training on a PBS Pro cluster (the scheduler the original Recode Perceptions targeted, e.g.
# Imperial College's HPC). One node, NGPUS GPUs, one process per GPU through torchrun.
#   qsub examples/hpc/train_pbs.sh
#   qsub -v RESUME=outputs/runs/<run folder> examples/hpc/train_pbs.sh     # continue a run cut short
# Batch sizes are per GPU: the global batch is --batch-size x NGPUS.
#PBS -N perceptions-train
#PBS -l select=1:ncpus=16:mem=96gb:ngpus=2
#PBS -l walltime=24:00:00
#PBS -j oe
set -euo pipefail

NGPUS=${NGPUS:-2}
PROJECT=${PROJECT:-$HOME/perceptions}
DATA=${DATA:-$HOME/data/placepulse}
OUT=${OUT:-$PROJECT/outputs/runs}

cd "$PROJECT"
source examples/hpc/env.sh

# Node-local scratch ($TMPDIR on PBS) reads small files far faster than the home/project file systems.
LOCAL=$TMPDIR/perceptions-data
mkdir -p "$LOCAL" && rsync -a "$DATA/" "$LOCAL/"

ARGS=(--data "$LOCAL" --out "$OUT" --backbone efficientnet_lite0 --freeze-epochs 2 --epochs 10
      --batch-size 32 --workers 7 --loss both --no-progress)
if [[ -n "${RESUME:-}" ]]; then ARGS=(--resume "$RESUME" --data "$LOCAL" --workers 7 --no-progress); fi

export OMP_NUM_THREADS=4
# `--` ends torchrun's own options: without it torchrun reads e.g. --monitor as its --monitor-interval.
# --standalone: a rendezvous on this node alone, on a free port.
torchrun --standalone --nproc-per-node "$NGPUS" -m perceptions -- train "${ARGS[@]}"
