"""Hugging Face checkpoints in and out: a face over mmscale.models (which never imports it).

- `checkpoint`: reading a local Hugging Face directory (config.json + safetensors shards).
- `families`: the supported families (config.json `model_type`) and how their configs map onto
  `config.model` (a registry of presets).
- `mapping`: which checkpoint tensor fills which mmscale parameter, and how it is reshaped.
- `load`: checkpoint tensors straight into a run's shardings, shard by shard.
- `init_from`: `model.init_from` (decoder and vision encoder from checkpoints, connector fresh).
Docs: docs/pretrained.md.
"""
