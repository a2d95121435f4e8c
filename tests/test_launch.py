"""Launchers: `--dry_run` plans for a 4-worker TPU slice, 2 slices and a 2-node SLURM job; a mesh
that does not fit fails before anything starts, naming the mesh, the devices and a mesh that fits;
the SLURM / explicit environments are detected for jax.distributed."""

import os
import subprocess
import sys

import pytest

from mmscale.errors import ConfigError
from mmscale.launch import slurm, topology, tpu
from mmscale.parallel import mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_ARGS = ["--name=mm", "--zone=us-west4-a", "--project=proj", "--accelerator_type=v5litepod-16",
            "--config=configs/world/tiny.py", "--workdir=gs://bucket/runs/tiny"]


def test_tpu_targets():
  v5e = topology.tpu_target("v5litepod-16")
  assert (v5e.devices, v5e.hosts) == (16, 4)
  assert (topology.tpu_target("v5p-32").devices, topology.tpu_target("v5p-32").hosts) == (16, 4)
  assert (topology.tpu_target("v6e-8").devices, topology.tpu_target("v6e-8").hosts) == (8, 1)
  assert topology.tpu_target("v6e-64", num_slices=2).devices == 128
  with pytest.raises(ValueError, match="unknown TPU"):
    topology.tpu_target("v9x-8")


def test_tpu_dry_run_four_workers(capsys):
  code = tpu.main(["tpu", *TPU_ARGS, "--after=delete", "--dry_run", "--",
                   "--config.mesh.shape.fsdp=4", "--config.train.steps=100"])
  out = capsys.readouterr().out
  assert code == 0
  assert "16 devices on 4 hosts; mesh {'data': 4, 'fsdp': 4" in out
  lines = [l for l in out.splitlines() if not l.startswith("#")]
  expect = [
      "gcloud compute tpus tpu-vm describe mm --zone=us-west4-a --project=proj",
      "gcloud compute tpus tpu-vm create mm --accelerator-type=v5litepod-16 "
      "--version=v2-alpha-tpuv5-lite --zone=us-west4-a --project=proj",
      "git ls-files -co --exclude-standard -z | tar czf /tmp/mmscale-mm.tgz --null -T -",
      "gcloud compute tpus tpu-vm scp /tmp/mmscale-mm.tgz 'mm:~/mmscale.tgz' --worker=all",
      "tar xzf ~/mmscale.tgz -C ~/mmscale",
      # a gs:// workdir: the `gcs` extra (gcsfs), epath's file system without TensorFlow
      "pip install -q '\"'\"'jax[tpu]'\"'\"' -e ~/mmscale'\"'\"'[gcs]'\"'\"'",
      "~/mmscale-venv/bin/python -m mmscale.train --config=configs/world/tiny.py "
      "--workdir=gs://bucket/runs/tiny --config.mesh.shape.fsdp=4 --config.train.steps=100",
      "gcloud compute tpus tpu-vm ssh mm --worker=0 '--command=tail -n +1 -F ~/mmscale_train.log",
      "gcloud compute tpus tpu-vm delete mm --quiet --zone=us-west4-a --project=proj",
  ]
  text = "\n".join(lines)
  positions = [text.find(e) for e in expect]
  assert all(p >= 0 for p in positions), [e for e, p in zip(expect, positions) if p < 0]
  assert positions == sorted(positions), "commands out of order"
  ssh_all = [l for l in lines if " ssh mm --worker=all " in l]
  assert len(ssh_all) == 3  # unpack, install, train: every worker


def test_tpu_dry_run_multislice_and_git(capsys):
  code = tpu.main(["tpu", "--name=mm", "--zone=z", "--accelerator_type=v5p-32",
                   "--num_slices=2", "--config=configs/world/tiny.py", "--workdir=gs://b/r",
                   "--git_url=https://x/y.git", "--git_ref=v1", "--no-create", "--dry_run", "--",
                   "--config.mesh.shape.fsdp=8"])
  out = capsys.readouterr().out
  assert code == 0 and "create" not in out and "git checkout -q v1" in out
  for i in range(2):
    assert f"export MEGASCALE_SLICE_ID={i}" in out and f"ssh mm-{i} --worker=all" in out
  assert "MEGASCALE_NUM_SLICES=2" in out and "MEGASCALE_COORDINATOR_ADDRESS" in out
  assert "describe mm-0 '--format=value(networkEndpoints[0].ipAddress)'" in out


def test_tpu_mesh_that_does_not_fit_fails_before_any_command(capsys):
  code = tpu.main(["tpu", *TPU_ARGS, "--dry_run", "--", "--config.mesh.shape.data=3",
                   "--config.mesh.shape.fsdp=4"])
  captured = capsys.readouterr()
  assert code == 2 and "gcloud" not in captured.out
  err = captured.err
  assert "mesh {'data': 3, 'fsdp': 4, 'tensor': 1, 'expert': 1}" in err
  assert "does not fit 16 devices" in err
  assert "a mesh that fits 16 devices: {'data': 4, 'fsdp': 4" in err


def test_multislice_mesh_needs_data_divisible_by_slices(capsys):
  code = tpu.main(["tpu", "--name=mm", "--zone=z", "--accelerator_type=v5p-16", "--num_slices=2",
                   "--config=configs/world/tiny.py", "--workdir=gs://b/r", "--dry_run", "--",
                   "--config.mesh.shape.data=1", "--config.mesh.shape.fsdp=16"])
  assert code == 2 and "not divisible by the 2 slices" in capsys.readouterr().err


def test_slurm_dry_run_two_nodes(capsys):
  code = slurm.main(["slurm", "--nodes=2", "--gpus_per_node=8", "--partition=h100",
                     "--time=02:00:00", "--config=configs/world/tiny.py",
                     "--workdir=/shared/runs/tiny",
                     "--venv=/opt/venv", "--repo=/shared/mmscale", "--dry_run", "--",
                     "--config.mesh.shape.fsdp=8"])
  out = capsys.readouterr().out
  assert code == 0
  assert "16 devices, 16 processes; mesh {'data': 2, 'fsdp': 8" in out
  for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
               "#SBATCH --time=02:00:00", "#SBATCH --partition=h100", "#SBATCH --signal=TERM@120",
               "#SBATCH --requeue"):
    assert line in out.splitlines(), line
  assert "sbatch --export=ALL,VENV=/opt/venv,MMSCALE_REPO=/shared/mmscale mmscale.sbatch " \
         "configs/world/tiny.py /shared/runs/tiny --config.mesh.shape.fsdp=8" in out
  assert "srun --kill-on-bad-exit=1 --cpu-bind=none /opt/venv/bin/python -m mmscale.train " \
         "--config=configs/world/tiny.py --workdir=/shared/runs/tiny " \
         "--config.mesh.shape.fsdp=8" in out
  # the rendered script is a valid bash script
  script = out.split("# batch script (mmscale.sbatch):\n")[1].split("# submit:")[0]
  assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_slurm_per_node_and_bad_mesh(capsys):
  assert slurm.main(["slurm", "--nodes=2", "--per=node", "--config=configs/world/tiny.py",
                     "--workdir=/w", "--dry_run"]) == 0
  out = capsys.readouterr().out
  assert "#SBATCH --ntasks-per-node=1" in out and "#SBATCH --cpus-per-task=96" in out
  assert slurm.main(["slurm", "--nodes=2", "--config=configs/world/tiny.py", "--workdir=/w",
                     "--dry_run", "--", "--config.mesh.shape.tensor=3"]) == 2
  err = capsys.readouterr().err
  assert "does not fit 16 devices" in err and "a mesh that fits 16 devices" in err


def test_shell_wrappers_are_valid_bash():
  for name in ("tpu_pod.sh", "slurm_gpu.sbatch", "local.sh"):
    assert subprocess.run(["bash", "-n", os.path.join(REPO, "launch", name)]).returncode == 0
  out = subprocess.run(["bash", os.path.join(REPO, "launch", "tpu_pod.sh")] + TPU_ARGS +
                       ["--dry_run"], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable})
  assert out.returncode == 0 and "tpu-vm create mm" in out.stdout, out.stderr[-2000:]


def test_distributed_env_detection(monkeypatch):
  for var in ("MMSCALE_COORDINATOR", "SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS",
              "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "CUDA_VISIBLE_DEVICES",
              "SLURM_STEP_NUM_NODES", "SLURM_NNODES"):
    monkeypatch.delenv(var, raising=False)
  assert mesh_lib.distributed_env() == "none"
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert mesh_lib.distributed_env() == "none"  # an interactive allocation of one task
  monkeypatch.setenv("SLURM_NTASKS", "16")
  assert mesh_lib.distributed_env() == "slurm"
  monkeypatch.setenv("SLURM_NNODES", "2")
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")
  assert mesh_lib._slurm_local_device_ids() is None  # one task per GPU: JAX uses SLURM_LOCALID
  monkeypatch.setenv("SLURM_NTASKS", "2")
  assert mesh_lib._slurm_local_device_ids() == list(range(8))  # one task per node
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
  assert mesh_lib._slurm_local_device_ids() == [0]  # SLURM bound one GPU to the task
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "a,b")
  monkeypatch.delenv("SLURM_JOB_ID")
  assert mesh_lib.distributed_env() == "tpu"
  monkeypatch.setenv("MMSCALE_COORDINATOR", "127.0.0.1:1")
  assert mesh_lib.distributed_env() == "explicit"


def test_trainer_rejects_a_mesh_that_does_not_fit_before_building(tiny_world, tmp_path):
  from conftest import tiny_train_config  # pylint: disable=import-outside-toplevel
  from mmscale.train.trainer import train  # pylint: disable=import-outside-toplevel
  config = tiny_train_config(tiny_world)
  config.mesh.shape.update(data=-1, fsdp=3)
  with pytest.raises(ConfigError) as e:
    train(config, str(tmp_path / "w"))
  message = str(e.value)
  assert "mesh {'data': -1, 'fsdp': 3" in message and "does not fit 8 devices" in message
  assert "a mesh that fits 8 devices: {'data': 8" in message
  assert not os.path.exists(tmp_path / "w")  # failed before the workdir was even made
