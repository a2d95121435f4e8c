"""Text-centroid contrastive decoding (TCCD; "The Cost of Language: Centroid Erasure", arXiv
2604.14363) as a decoding option of the evaluation suite, and the one implementation
mmscale/analysis uses.

Sign convention: with `full` the logits of the unmodified model and `ref` those of the reference
in which text hidden states are replaced by their nearest text centroids (text structure erased),

    tccd = (1 + alpha) * full - alpha * ref        on tokens with p_full >= beta * max p_full
    tccd = -inf                                    on the others (adaptive plausibility cut-off)

alpha > 0 amplifies what the full model predicts beyond the text-centroid reference (i.e. what
depends on fine-grained text/visual structure rather than coarse language priors); alpha = 0 is
the full model (its argmax is always kept by the cut-off, so greedy decoding is unchanged);
alpha < 0 would move towards the reference. beta in [0, 1]: 0 keeps every finite token, 1 only
the full model's argmax (making alpha irrelevant). The cut-off is the visual-contrastive-decoding
rule: it stops the contrast from promoting tokens the full model finds implausible.

Decoding is `generate.generate` with two passes, `Pass(model)` and `ErasedPass(model, "text")`,
combined by `tccd_processor`; alpha and beta are traced processor arguments (a sweep compiles
once). `decoding(ctx)` turns `config.eval.tccd_*` (mmscale/config.py) into generate arguments for every
evaluator (predict.py) and `python -m mmscale.generate`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mmscale import paths
from mmscale.errors import ConfigError
from mmscale.eval.erasure import CentroidSet, ErasedPass, erase_layers, erased_params
from mmscale.eval.generate import Pass

PROBE_HINT = ("create one with `python tools/probe.py --workdir=W --layers=L --k=K` (it writes "
              "W/analysis/probe_l<L>_k<K>/centroids.npz + centroids.json) and pass its path as "
              "eval.tccd_centroids (--tccd_centroids)")


def tccd_logits(full: jax.Array, ref: jax.Array, alpha, beta) -> jax.Array:
  """float[..., V] full and reference logits -> float32[..., V] contrasted logits (module doc).

  The cut-off compares probabilities in log space: log p >= log beta + max log p. Tokens whose
  full logit is -inf (masked, e.g. past `valid_vocab`) stay -inf for every beta (their contrast
  would be -inf + inf = nan).
  """
  full, ref = full.astype(jnp.float32), ref.astype(jnp.float32)
  logp = jax.nn.log_softmax(full, axis=-1)
  keep = logp >= jnp.log(beta) + jnp.max(logp, axis=-1, keepdims=True)
  keep = keep & (full > -jnp.inf)
  return jnp.where(keep, (1.0 + alpha) * full - alpha * ref, -jnp.inf)


def tccd_processor(pass_logits: tuple, step, args: dict) -> jax.Array:
  """The generate logits processor: pass 0 full, pass 1 text-erased; args {"alpha", "beta"}
  float32[] (traced). Module-level, so every call shares one jit cache entry."""
  del step
  return tccd_logits(pass_logits[0], pass_logits[1], args["alpha"], args["beta"])


def tccd_decoding(model, params, text_layers: dict, alpha, beta) -> dict:
  """`generate.generate` keyword arguments for TCCD: model (the two passes), params, processor.

  text_layers: {"centroids": float[depth, k, D], "active": bool[depth]} (`erase_layers`).
  alpha, beta: floats or float32[] arrays (traced either way).
  """
  return {"model": (Pass(model), ErasedPass(model, modality="text")),
          "params": (params, erased_params(params, text_layers)),
          "logits_processor": tccd_processor,
          "processor_args": {"alpha": jnp.float32(alpha), "beta": jnp.float32(beta)}}


def _settings(config) -> tuple[float, float]:
  alpha, beta = float(config.eval.tccd_alpha), float(config.eval.tccd_beta)
  if not 0.0 <= beta <= 1.0:
    raise ConfigError("eval.tccd_beta", f"the plausibility cut-off must be in [0, 1], got {beta}")
  return alpha, beta


def _layers(config) -> tuple[int, ...] | None:
  """eval.tccd_layers as ints (a tuple or "1,2"); None = all of the set's layers."""
  raw = config.eval.tccd_layers
  if isinstance(raw, str):
    raw = [x for x in raw.split(",") if x.strip()]
  return tuple(int(x) for x in raw) or None


def centroids_path(config, workdir: str = "") -> str:
  """The TCCD centroid file: `eval.tccd_centroids`, else `<workdir>/analysis/centroids.npz`.

  Raises ConfigError naming the file (and the probe outputs found under the run) when it or its
  centroids.json does not exist.
  """
  path = config.eval.tccd_centroids
  if not path and not workdir:
    raise ConfigError("eval.tccd_centroids", "TCCD (eval.tccd_alpha != 0) needs text centroids "
                      "and there is no workdir to look in; " + PROBE_HINT)
  path = path or paths.join(workdir, "analysis", "centroids.npz")
  meta = paths.join(paths.parent(path), "centroids.json")
  if paths.is_file(path) and paths.is_file(meta):
    return path
  found = paths.glob(paths.join(workdir, "analysis"), "*/centroids.npz") if workdir else []
  missing = path if not paths.is_file(path) else meta
  raise ConfigError("eval.tccd_centroids",
                    f"TCCD centroid file {missing} not found; " + PROBE_HINT
                    + (f"; this run has {', '.join(found)}" if found else ""))


def load_text_layers(config, workdir: str = "") -> tuple[dict, dict]:
  """(erase layers {"centroids": float32[depth, k, D], "active": bool[depth]} of the text
  centroids, a JSON-ready description of the set used). Errors name the file."""
  path = centroids_path(config, workdir)
  cset = CentroidSet.load_file(path)
  dec = config.model.decoder
  if "text" not in cset.centroids:
    raise ConfigError("eval.tccd_centroids", f"{path} has no `text` array")
  width = cset.centroids["text"].shape[-1]
  if width != dec.width:
    raise ConfigError("eval.tccd_centroids", f"{path} holds {width}-wide centroids but the "
                      f"decoder is {dec.width} wide: centroids of another model?")
  layers = _layers(config)
  try:
    text = erase_layers(cset, "text", dec.depth, layers)
  except ValueError as e:
    raise ConfigError("eval.tccd_layers", f"{path}: {e}") from e
  info = {"tccd_centroids": paths.absolute(path), "tccd_k": cset.k,
          "tccd_layers": list(layers or cset.layers)}
  return text, info


def describe(config, workdir: str = "") -> dict:
  """The decoding settings evaluation used, for results.json: sampling and, when on, TCCD."""
  alpha, beta = _settings(config)
  out = {"temperature": float(config.eval.temperature),
         "top_p": float(config.eval.top_p), "tccd_alpha": alpha}
  if alpha:
    out.update(tccd_beta=beta, **load_text_layers(config, workdir)[1])
  return out


def decoding(ctx) -> dict:
  """`generate.generate` keyword arguments (model, params, ...) for an Run: the plain
  model when `eval.tccd_alpha` is 0, else TCCD with the centroid set of `centroids_path`.

  The centroids and alpha / beta are placed replicated on the context's mesh (global arrays, as
  multi-process jit needs).
  """
  alpha, beta = _settings(ctx.config)
  if not alpha:
    return {"model": ctx.model, "params": ctx.params}
  text, _ = load_text_layers(ctx.config, getattr(ctx, "workdir", ""))
  replicated = jax.sharding.NamedSharding(ctx.mesh, jax.sharding.PartitionSpec())
  out = tccd_decoding(ctx.model, ctx.params, jax.device_put(text, replicated), alpha, beta)
  out["processor_args"] = jax.device_put(out["processor_args"], replicated)
  return out
