"""Training from pretrained parts, end to end: a tiny random SigLIP tower and Qwen3 decoder,
saved by transformers as local checkpoints, are imported through `model.init_from`, trained a
few steps on the knowledge world with the vision tower frozen, exported as a LLaVA checkpoint,
and the export greedily generates in transformers exactly what mmscale generates."""

import os

import jax
import numpy as np
import pytest

from mmscale.data import tokenizer as tok_lib
from mmscale.errors import ConfigError
from mmscale.eval.generate import greedy_generate
from mmscale.hf import presets
from mmscale.hf.checkpoint import Checkpoint
from mmscale.train.trainer import train
from tests.conftest import tiny_train_config
from tests.hf_helpers import save_random
from tests.test_hf_tokenizer import write_hf_tokenizer

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def world_hf_tokenizer(world_dir, directory):
  """The world's word vocabulary as a Hugging Face tokenizer.json (the decoder's own tokenizer
  in a real pretrained start): the run then reads text through the `tokenizers` library."""
  sp = tok_lib.Tokenizer(os.path.join(world_dir, "tokenizer.model"))
  words = [sp.id_to_piece(i).lstrip("\u2581") for i in range(5, sp.vocab_size)]
  return write_hf_tokenizer(directory, [w for w in words if w],
                            {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
                             "unk_token": "<unk>"}, extra_tokens=("<image>",))


def pretrained_config(world_dir, tmp_path):
  vision_dir, text_dir = str(tmp_path / "siglip"), str(tmp_path / "qwen3")
  save_random(transformers.SiglipVisionModel, transformers.SiglipVisionConfig(
      hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
      image_size=48, patch_size=16), vision_dir)
  save_random(transformers.AutoModelForCausalLM.from_config, transformers.Qwen3Config(
      vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True),
      text_dir, seed=1)
  c = tiny_train_config(world_dir, steps=3, checkpoint_every=3)
  presets.apply_vision(c.model, vision_dir)
  presets.apply_decoder(c.model, text_dir)
  c.data.tokenizer = world_hf_tokenizer(world_dir, tmp_path / "qwen3")
  c.model.connector.update(name="mlp", num_tokens=9, hidden_dim=0)
  c.model.decoder.causal_only = True
  c.optim.freeze = ("vit/.*",)
  c.optim.lr_multipliers = (("connector/.*", 3.0),)
  return c, vision_dir


@pytest.mark.slow
def test_pretrained_parts_train_frozen_and_export(tiny_world, tmp_path):
  config, vision_dir = pretrained_config(tiny_world, tmp_path)
  ctx = train(config, str(tmp_path / "run"))
  params = jax.device_get(ctx.params)
  assert np.isfinite(ctx.last_metrics["loss"])
  siglip = Checkpoint(vision_dir)
  np.testing.assert_array_equal(  # frozen: exactly the imported weights
      params["vit"]["block_0"]["mlp"]["fc1"]["kernel"],
      siglip.read("encoder.layers.0.mlp.fc1.weight").T)

  out = str(tmp_path / "llava")
  tok = ctx.tokenizer
  assert isinstance(tok, tok_lib.HFTokenizer)
  from tools.export import export_hf  # pylint: disable=import-outside-toplevel
  export_hf(str(tmp_path / "run"), out, kind="llava")  # tools/export.py --format=llava
  text = "what colour is the ring ?"
  assert transformers.AutoTokenizer.from_pretrained(out).encode(
      text, add_special_tokens=False) == tok.encode(text)
  hf_model = transformers.LlavaForConditionalGeneration.from_pretrained(out).eval()
  processor = transformers.AutoProcessor.from_pretrained(out)  # what harnesses load
  image = np.random.default_rng(1).integers(0, 256, (48, 48, 3)).astype(np.uint8)
  inputs = processor(text="<image>what colour is the ring ?", images=image, return_tensors="np")
  assert inputs["input_ids"][0].tolist() == [tok.image_id] * 9 + tok.encode(text)
  assert inputs["pixel_values"].shape == (1, 3, 48, 48)
  rng = np.random.default_rng(0)
  words = np.array([tok.encode("what colour is the")] * 2, np.int32)
  tokens = np.concatenate([np.full((2, 1), tok.bos_id, np.int32),
                           np.full((2, 9), tok.image_id, np.int32), words], axis=1)
  prompt = {"tokens": tokens, "positions": np.tile(np.arange(14, dtype=np.int32), (2, 1)),
            "segment_ids": np.ones_like(tokens), "mask_ar": np.ones_like(tokens),
            "mask_loss": np.zeros_like(tokens),
            "images": rng.uniform(-1, 1, (2, 1, 48, 48, 3)).astype(np.float32),
            "image_positions": np.tile(np.arange(1, 10, dtype=np.int32), (2, 1))}
  pixels = torch.from_numpy(prompt["images"][:, 0].transpose(0, 3, 1, 2))
  with torch.no_grad():
    ref = hf_model(input_ids=torch.from_numpy(tokens).long(), pixel_values=pixels).logits.numpy()
  logits = np.asarray(ctx.model.apply({"params": params}, prompt))
  np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=0)
  ours = np.asarray(greedy_generate(ctx.model, params, prompt, max_new_tokens=6))
  with torch.no_grad():
    theirs = hf_model.generate(
        input_ids=torch.from_numpy(tokens).long(),
        pixel_values=pixels, attention_mask=torch.ones(tokens.shape, dtype=torch.long),
        max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_id).numpy()
  np.testing.assert_array_equal(ours, theirs[:, tokens.shape[1]:])


def test_a_freeze_pattern_matching_nothing_fails(tiny_world, tmp_path):
  config, _ = pretrained_config(tiny_world, tmp_path)
  config.optim.freeze = ("vision/.*",)
  with pytest.raises(ConfigError, match="optim.freeze.*'vision/.\\*' matches no parameter"):
    train(config, str(tmp_path / "run"))


@pytest.mark.parametrize("stage", ["connector", "full"])
def test_pretrained_config_validates(stage, tiny_world, tmp_path):
  """configs/pretrained/siglip_llm.py over user-supplied checkpoint directories: the stages'
  freezing and learning rates, a valid run on 8 devices."""
  from mmscale import config as config_lib  # pylint: disable=import-outside-toplevel
  from mmscale.spec import validate  # pylint: disable=import-outside-toplevel
  c, vision_dir = pretrained_config(tiny_world, tmp_path)
  text_dir = c.model.init_from.decoder
  c = config_lib.load_config(f"configs/pretrained/siglip_llm.py:vision={vision_dir},"
                             f"decoder={text_dir},stage={stage},steps=100")
  assert c.model.init_from.vit == vision_dir and c.model.decoder.qk_norm
  assert c.optim.freeze == (("vit/.*", "decoder/.*") if stage == "connector" else ("vit/.*",))
  validate(c, 8)
