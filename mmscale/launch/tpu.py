"""Train on a Cloud TPU VM slice (or several, over DCN) with gcloud: `launch/tpu_pod.sh` calls this.

```
python -m mmscale.launch.tpu --name=mm-v5e --zone=us-west4-a --project=my-proj \
    --accelerator_type=v5litepod-16 --config=configs/world/tiny.py \
    --workdir=gs://my-bucket/runs/tiny [--after=delete] [--dry_run] -- --config.train.steps=5000
```
Steps: check the mesh against the slice (fails before anything is created) -> create the slice
unless it exists -> copy this checkout (tracked + untracked, not ignored files) to every worker,
or clone `--git_url` at `--git_ref` -> install `jax[tpu]` and mmscale in a venv on every worker
-> optionally build the knowledge world on every worker -> start `python -m mmscale.train` on all
workers (JAX finds its peers from the TPU metadata) -> stream worker 0's log until training ends
-> keep, stop or delete the slice. Rerunning the same command resumes from the workdir's latest
checkpoint. With `--num_slices=N` the slices NAME-0..NAME-{N-1} are joined over DCN (MEGASCALE_*
variables); the mesh puts the slices along `data` (mmscale/parallel/mesh.py).
"""

from __future__ import annotations

import shlex
import sys
import types

from absl import flags

from mmscale import cli_flags, paths
from mmscale.launch import topology
from mmscale.launch.commands import Step, execute, render

REMOTE_DIR = "~/mmscale"
REMOTE_VENV = "~/mmscale-venv"
LOG = "~/mmscale_train.log"
RC = "~/mmscale_train.rc"
COORDINATOR_FILE = "~/mmscale_coordinator"
MEGASCALE_PORT = 8080


def _gcloud(args, *words: str) -> str:
  flags = [f"--zone={args.zone}"] + ([f"--project={args.project}"] if args.project else [])
  return shlex.join(["gcloud", "compute", "tpus", "tpu-vm", *words, *flags])


def _ssh(args, name: str, command: str, worker: str = "all") -> str:
  return _gcloud(args, "ssh", name, f"--worker={worker}", f"--command={command}")


def slice_names(args) -> list[str]:
  if args.num_slices == 1:
    return [args.name]
  return [f"{args.name}-{i}" for i in range(args.num_slices)]


def train_command(args, slice_id: int) -> str:
  """The shell command every worker runs: training in the background, its log and exit code in
  files, so an ssh disconnect never kills the run."""
  env = dict(kv.split("=", 1) for kv in args.env)
  exports = ""
  if args.num_slices > 1:
    env.update(MEGASCALE_NUM_SLICES=str(args.num_slices), MEGASCALE_SLICE_ID=str(slice_id),
               MEGASCALE_PORT=str(MEGASCALE_PORT))
    exports = f'export MEGASCALE_COORDINATOR_ADDRESS="$(cat {COORDINATOR_FILE}):{MEGASCALE_PORT}"; '
  train = [f"{REMOTE_VENV}/bin/python", "-m", "mmscale.train", f"--config={args.config}",
           f"--workdir={args.workdir}", *args.train_args]
  exports += "".join(f"export {k}={shlex.quote(v)}; " for k, v in sorted(env.items()))
  inner = f"{exports}{' '.join(_quote_remote(w) for w in train)}; echo $? > {RC}"
  return (f"cd {REMOTE_DIR} && rm -f {RC} && "
          f"nohup bash -c {shlex.quote(inner)} > {LOG} 2>&1 < /dev/null &")


def _quote_remote(word: str) -> str:
  """Quotes a word for the remote shell but keeps a leading ~/ expandable."""
  return word if word.startswith("~/") else shlex.quote(word)


def stream_command() -> str:
  """Worker 0: follow the log until the exit code appears, then exit with it."""
  return (f"tail -n +1 -F {LOG} & T=$!; while [ ! -s {RC} ]; do sleep 5; done; "
          f"sleep 2; kill $T; exit $(cat {RC})")


def steps(args) -> list[Step]:
  version = args.version or topology.default_tpu_version(args.accelerator_type)
  names = slice_names(args)
  out = []
  for name in names:
    if args.create:
      create = [f"--accelerator-type={args.accelerator_type}", f"--version={version}"]
      create += ["--spot"] if args.spot else []
      out.append(Step(f"create the slice {name} unless it exists",
                      _gcloud(args, "create", name, *create),
                      unless=_gcloud(args, "describe", name)))
  if args.git_url:
    fetch = (f"(test -d {REMOTE_DIR}/.git || git clone {shlex.quote(args.git_url)} {REMOTE_DIR}) "
             f"&& cd {REMOTE_DIR} && git fetch --all -q && git checkout -q {shlex.quote(args.git_ref)}")
    copy = [Step(f"clone {args.git_url}@{args.git_ref} on every worker of {n}",
                 _ssh(args, n, fetch)) for n in names]
  else:
    tarball = f"/tmp/mmscale-{args.name}.tgz"
    copy = [Step("pack this checkout (tracked and untracked files, .gitignore respected)",
                 f"git ls-files -co --exclude-standard -z | tar czf {tarball} --null -T -")]
    for n in names:
      copy.append(Step(f"copy it to every worker of {n}",
                       _gcloud(args, "scp", tarball, f"{n}:~/mmscale.tgz", "--worker=all")))
      copy.append(Step(f"unpack on every worker of {n}",
                       _ssh(args, n, f"mkdir -p {REMOTE_DIR} && tar xzf ~/mmscale.tgz -C {REMOTE_DIR}")))
  out += copy
  if not args.skip_install:
    # a gs:// workdir: gcsfs (the `gcs` extra), epath's file system without TensorFlow
    extra = "'[gcs]'" if paths.is_remote(args.workdir) else ""
    install = (f"(test -x {REMOTE_VENV}/bin/python || python3 -m venv {REMOTE_VENV}) && "
               f"{REMOTE_VENV}/bin/pip install -q -U pip && "
               f"{REMOTE_VENV}/bin/pip install -q 'jax[tpu]' -e {REMOTE_DIR}{extra}")
    out += [Step(f"install jax[tpu] and mmscale on every worker of {n}", _ssh(args, n, install))
            for n in names]
  if args.build_world_scenes:
    build = (f"cd {REMOTE_DIR} && (test -f data/world/world.json || test -f data/world/manifest.json "
             f"|| {REMOTE_VENV}/bin/python tools/build_world.py --out=data/world "
             f"--num_scenes={args.build_world_scenes} --seed=0)")
    out += [Step(f"build the knowledge world on every worker of {n} (same seed: same data)",
                 _ssh(args, n, build)) for n in names]
  if args.num_slices > 1:
    describe = _gcloud(args, "describe", names[0], "--format=value(networkEndpoints[0].ipAddress)")
    for n in names:  # "$(...)" expands here, on the launching machine
      out.append(Step(f"tell every worker of {n} the DCN coordinator (slice 0, worker 0)",
                      _gcloud(args, "ssh", n, "--worker=all") +
                      f' --command="echo $({describe}) > {COORDINATOR_FILE}"'))
  out += [Step(f"start training on every worker of {n}", _ssh(args, n, train_command(args, i)))
          for i, n in enumerate(names)]
  out.append(Step(f"stream worker 0's log of {names[0]} until training ends",
                  _ssh(args, names[0], stream_command(), worker="0"), check=False))
  if args.after in ("stop", "delete"):
    extra = ("--quiet",) if args.after == "delete" else ()
    out += [Step(f"{args.after} the slice {n}", _gcloud(args, args.after, n, *extra))
            for n in names]
  return out


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this module's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("name", None, "TPU VM name (NAME-i for --num_slices > 1)", flag_values=fv)
  flags.DEFINE_string("zone", None, None, flag_values=fv)
  flags.DEFINE_string("project", "", "default: gcloud's configured project", flag_values=fv)
  flags.DEFINE_string("accelerator_type", None, "e.g. v5litepod-16, v5p-32, v6e-64",
                      flag_values=fv)
  flags.DEFINE_string("version", "", "TPU runtime; default per generation", flag_values=fv)
  flags.DEFINE_integer("num_slices", 1, "> 1: multi-slice over DCN", flag_values=fv)
  flags.DEFINE_string("config", None, "path.py[:arg], relative to the repo", flag_values=fv)
  flags.DEFINE_string("workdir", None, "gs://bucket/run: shared by all workers", flag_values=fv)
  flags.DEFINE_boolean("create", True, "create the slice when it does not exist (default on; "
                       "--nocreate or --no-create: off)", flag_values=fv)
  flags.DEFINE_boolean("spot", False, "create as a Spot (preemptible) slice", flag_values=fv)
  flags.DEFINE_string("git_url", "", "clone this repo instead of copying the checkout",
                      flag_values=fv)
  flags.DEFINE_string("git_ref", "main", None, flag_values=fv)
  flags.DEFINE_boolean("skip_install", False, "reuse the workers' venv as is", flag_values=fv)
  flags.DEFINE_integer("build_world_scenes", 0, "build data/world with this many scenes on every "
                       "worker (0 = skip)", flag_values=fv)
  flags.DEFINE_multi_string("env", [], "KEY=VALUE for training, repeatable", flag_values=fv)
  flags.DEFINE_enum("after", "keep", ["keep", "stop", "delete"],
                    "what to do with the slice when training ends", flag_values=fv)
  flags.DEFINE_boolean("dry_run", False, "print every command, run nothing", flag_values=fv)
  flags.mark_flags_as_required(["name", "zone", "accelerator_type", "config", "workdir"],
                               flag_values=fv)


def parse(argv: list[str]) -> types.SimpleNamespace:
  """argv = [program, *flags, "--", *train_args] -> the flag values as attributes, and
  `train_args`: the arguments after `--` (more mmscale.train flags), passed on unchanged.

  `--no-create` (the spelling docs/launch.md uses) means absl's `--nocreate`. `--config` stays a
  path string: it is handed to mmscale.train on the workers (and read here only to check the
  mesh), with the `--config.x=y` overrides among train_args."""
  end = argv.index("--") if "--" in argv else len(argv)
  argv = [("--nocreate" if a == "--no-create" else a) for a in argv[:end]] + list(argv[end:])
  fv, rest = cli_flags.parse(define_flags, argv, doc=__doc__, positional=True)
  if fv.num_slices < 1:
    cli_flags.usage_error("--num_slices must be >= 1")
  if any("=" not in kv for kv in fv.env):
    cli_flags.usage_error("--env takes KEY=VALUE")
  return types.SimpleNamespace(**fv.flag_values_dict(), train_args=rest[1:])


def main(argv: list[str]) -> int:
  """argv = [program, *flags, "--", *train_args]; returns the exit status (2: the mesh does not
  fit)."""
  args = parse(argv)
  target = topology.tpu_target(args.accelerator_type, args.num_slices)
  try:
    shape = topology.check_mesh(args.config, args.train_args, target)
  except ValueError as e:  # ConfigError: the mesh does not fit, nothing was started
    print(f"error: {e}", file=sys.stderr)
    return 2
  plan = steps(args)
  print(f"# {target.description}: {target.devices} devices on {target.hosts} hosts; mesh {shape}",
        flush=True)
  if args.dry_run:
    print(render(plan), end="")
    return 0
  return execute(plan)


if __name__ == "__main__":
  cli_flags.run(main)
