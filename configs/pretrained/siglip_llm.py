"""A LLaVA-style model from pretrained parts: a SigLIP (or CLIP) vision tower + a Llama 3 /
Qwen2 / Qwen3 / Gemma 2 / Gemma 3 decoder, each from a local Hugging Face checkpoint directory
the user supplies, with a fresh two-layer MLP connector (docs/pretrained.md).

Arguments (big_vision style):
  vision:  vision checkpoint directory (config.json + *.safetensors), e.g.
           siglip-so400m-patch14-384, or clip-vit-large-patch14-336 with feature_layer=-2
  feature_layer: the vision encoder layer the features come from: -1 the last, -2 the
           penultimate (LLaVA-1.5 with CLIP); 0 = a LLaVA-style checkpoint's own, otherwise -1
  decoder: decoder checkpoint directory, e.g. Qwen3-1.7B, Llama-3.2-1B or gemma-3-1b-pt
  stage:   connector | full   the usual recipe: 'connector' trains the connector only (vision
           tower and decoder frozen); 'full' trains everything except the vision tower, with the
           connector at 10x the base rate
  from:    for stage=full: the LLaVA export of the connector stage (tools/export.py
           --format=llava), whose projector then starts the connector ('' = fresh; a Gemma 2
           decoder, whose logits are soft-capped, has no LLaVA export)
  pod:     1b | 7b   mesh / batch / precision / gradient accumulation of configs/scaling/point.py's
           pod presets, for their slices: 1b on a v5e-64, 7b on a v5p-256 (pod=1b with
           siglip-so400m-patch14-384 + Qwen3-1.7B compiles for a v5e-64 and fits:
           docs/pretrained.md)
  steps:   train steps

`python -m mmscale.train --config=configs/pretrained/siglip_llm.py:vision=/ckpt/siglip,decoder=/ckpt/qwen3,stage=connector --workdir=runs/stage1`
The data: set data.world_dir or data.sources (a real corpus); data.tokenizer is the decoder
checkpoint's own tokenizer.json.
"""

from mmscale.config import base_config, parse_arg
from mmscale.errors import ConfigError
from mmscale.hf import presets

# The pod presets' layouts (configs/scaling/point.py): bfloat16 compute, full remat, FSDP,
# 4 microbatches (the XLA attention's float32 T x T scores are per microbatch).
PODS = {
    "1b": dict(batch=512, seq_len=2048, grad_accum=4,
               mesh={"data": 1, "fsdp": -1, "tensor": 1, "expert": 1}),
    "7b": dict(batch=1024, seq_len=2048, grad_accum=4,
               mesh={"data": 1, "fsdp": -1, "tensor": 4, "expert": 1}),
}
STAGES = {
    "connector": dict(freeze=("vit/.*", "decoder/.*"), lr_multipliers=(), lr=1e-3),
    "full": dict(freeze=("vit/.*",), lr_multipliers=(("connector/.*", 10.0),), lr=2e-5),
}


def get_config(arg=None):
  args = parse_arg(arg, vision="", decoder="", stage="connector", pod="1b", steps=5000,
                   feature_layer=0, **{"from": ""})
  for name in ("vision", "decoder"):
    if not args[name]:
      raise ConfigError(f"config argument '{name}'", "a local Hugging Face checkpoint directory "
                        "is required")
  if args.stage not in STAGES or args.pod not in PODS:
    raise ConfigError("config argument 'stage' or 'pod'",
                      f"expected stage in {sorted(STAGES)}, pod in {sorted(PODS)}")
  c = base_config()
  presets.apply_vision(c.model, args.vision, feature_layer=args.feature_layer or None)
  presets.apply_decoder(c.model, args.decoder)
  grid = c.model.vit.image_size // c.model.vit.patch_size
  c.model.connector.update(name="mlp", num_tokens=grid * grid, hidden_dim=0)
  c.model.init_from.connector = args["from"]
  c.model.decoder.update(causal_only=True, scan_layers=True, remat_policy="full")
  c.model.dtype = "bfloat16"
  pod = PODS[args.pod]
  c.mesh.shape = pod["mesh"]
  c.data.update(batch_size=pod["batch"], seq_len=pod["seq_len"], max_images_per_seq=1,
                tokenizer=args.decoder)
  stage = STAGES[args.stage]
  c.optim.update(lr=stage["lr"], warmup_steps=min(500, args.steps // 10), freeze=stage["freeze"],
                 lr_multipliers=stage["lr_multipliers"], weight_decay=0.0,
                 grad_accum_steps=pod["grad_accum"])
  c.train.update(steps=args.steps, log_every=50, checkpoint_every=1000)
  return c
