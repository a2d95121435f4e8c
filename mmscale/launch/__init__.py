"""Launchers: the same `python -m mmscale.train` on TPU VM slices (tpu.py), SLURM GPU clusters
(slurm.py) and several local processes (local_multiprocess.py). They build and run commands
(gcloud, sbatch, subprocesses) and check the mesh against the target before anything starts;
training itself always runs on JAX's multi-controller runtime (docs/launch.md)."""
