"""The knowledge engine against a real OpenAI-compatible server: `transformers serve` (Hugging
Face's server, from the `test` extra's `transformers[serving]`) started as a subprocess on a free
port, serving tiny models this test writes (nothing is downloaded), driven by `tools/enrich.py`
exactly as a user runs it (`--backend=openai --endpoint=http://127.0.0.1:PORT/v1`, Beam's
DirectRunner with two worker processes).

Two models: `random` (random weights: no answer is JSON valid against the task's schema, so every
record must be re-asked, then failed, counted and sampled under `_invalid_answers`) and `fixed` (a final norm of zero makes
every logit equal, so greedy decoding always picks token 0, whose text is a valid answer: with
`--max_tokens=1` every record must be kept). `transformers serve` ignores `response_format`, so
the engine's schema check is what rejects the random model's answers."""
import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest

from mmscale.data import records, world

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_SCENES = 8
FIXED_ANSWER = '{"statements": ["the scene is described ."]}'
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _save_model(out: str, tokenizer, model_type: str, zero_final_norm: bool) -> str:
  """A 2-layer decoder of width 32 (`model_type`: qwen2 | llama) over `tokenizer`, saved with it
  to `out`."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                                              pad_token="<|endoftext|>")
  fast.chat_template = CHAT_TEMPLATE
  fast.save_pretrained(out)
  config = transformers.AutoConfig.for_model(
      model_type, vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(config)
  if zero_final_norm:
    with torch.no_grad():
      model.model.norm.weight.zero_()
  model.save_pretrained(out)
  return out


def random_model(out: str) -> str:
  """A Qwen2 with random weights over a byte-level BPE vocabulary of 300 pieces (the server
  parses its replies with Qwen's chat-response template, as it does for a real Qwen)."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # pylint: disable=import-outside-toplevel
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL, show_progress=False,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(["what colour is the red circle ? the circle is red ."] * 4, trainer)
  return _save_model(out, tok, "qwen2", zero_final_norm=False)


def fixed_answer_model(out: str) -> str:
  """Token 0 is the whole valid answer; every other word is unknown. With the final norm at
  zero all logits are 0, and greedy decoding takes the first of equal maxima: token 0. A Llama,
  so that the server returns the decoded text as is (for Qwen2 it would parse the reply against
  the prompt's `<|im_start|>assistant` anchor, which this word-level vocabulary cannot spell)."""
  from tokenizers import Tokenizer, models, pre_tokenizers  # pylint: disable=import-outside-toplevel
  vocab = {FIXED_ANSWER: 0, "[UNK]": 1, **{s: 2 + i for i, s in enumerate(SPECIAL)}}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.add_special_tokens(SPECIAL)
  return _save_model(out, tok, "llama", zero_final_norm=True)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  """(endpoint, log path, {name: model dir}) of a running `transformers serve`; stopped after."""
  root = tmp_path_factory.mktemp("llm_server")
  models_ = {"random": random_model(str(root / "random")),
             "fixed": fixed_answer_model(str(root / "fixed"))}
  port, log_path = free_port(), str(root / "server.log")
  env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
  with open(log_path, "w") as log:
    proc = subprocess.Popen(
        [sys.executable, "-m", "transformers.cli.transformers", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--device", "cpu", "--log-level", "info"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
  endpoint = f"http://127.0.0.1:{port}/v1"
  try:
    deadline = time.monotonic() + 180
    while True:
      assert proc.poll() is None, f"transformers serve exited:\n{open(log_path).read()[-3000:]}"
      assert time.monotonic() < deadline, f"no server after 180 s:\n{open(log_path).read()[-3000:]}"
      try:
        if httpx.get(endpoint + "/models", timeout=2, trust_env=False).status_code == 200:
          break
      except httpx.TransportError:
        pass
      time.sleep(0.5)
    yield endpoint, log_path, models_
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


@pytest.fixture(scope="module")
def vqa_arm(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("server_world"))
  world.build_world(out, num_scenes=NUM_SCENES, num_eval_scenes=2, seed=4, train_tok=False)
  return out


def enrich(endpoint: str, model: str, src: str, out: str, world_dir: str, *flags) -> tuple:
  """(exit status, summary) of `tools/enrich.py --stage=vqa2caption` run as a user runs it.

  The server answers one request at a time and keeps working on a request whose client timed
  out, so on a loaded machine short timeouts would pile retries onto it: a long timeout and no
  retries keep every count exact (a request takes well under a second here)."""
  argv = [sys.executable, os.path.join(REPO, "tools", "enrich.py"), "--stage=vqa2caption",
          f"--input={src}", f"--out={out}", f"--vocab={world_dir}", "--backend=openai",
          f"--endpoint={endpoint}", f"--model={model}", "--concurrency=2", "--num_shards=2",
          "--timeout_s=600", "--max_retries=0", *flags, "--direct_num_workers=2",
          "--direct_running_mode=multi_processing"]
  no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1"]))
  env = dict(os.environ, PYTHONPATH=REPO, NO_PROXY=no_proxy, no_proxy=no_proxy)
  done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False)
  assert done.stdout.strip().startswith("{"), done.stderr[-3000:]
  return done.returncode, json.loads(done.stdout)


def posts(log_path: str) -> int:
  """Chat-completion requests the server answered, from its access log."""
  with open(log_path) as f:
    return len(re.findall(r'"POST /v1/chat/completions HTTP/1.1" 200', f.read()))


def test_random_model_answers_are_reasked_failed_counted_and_sampled(server, vqa_arm, tmp_path):
  endpoint, log_path, models_ = server
  before = posts(log_path)
  src = os.path.join(vqa_arm, "arms", "vqa")
  status, s = enrich(endpoint, models_["random"], src, str(tmp_path / "out"), vqa_arm,
                     "--max_tokens=12", "--max_reasks=2")
  sent = posts(log_path) - before
  assert status == 0 and s["complete"], s  # rejected answers finish the shard; not a crash
  assert s["groups_in"] == NUM_SCENES and s["records_in"] == 3 * NUM_SCENES
  assert s["kept"] == 0 and s["failed"] == {"invalid_output": NUM_SCENES}
  u = s["usage"]
  assert sent == u["requests"] == 3 * NUM_SCENES  # one ask + two re-asks per image, all served
  assert u["reasks"] == 2 * NUM_SCENES and u["failures"] == NUM_SCENES
  assert u["prompt_tokens"] > 0 and 0 < u["completion_tokens"] <= 12 * u["requests"]
  assert s["this_run"]["usage_requests"] == sent
  sample_dir = s["invalid_answer_samples"]
  samples = [json.loads(line) for name in sorted(os.listdir(sample_dir))
             for line in open(os.path.join(sample_dir, name))]
  assert len(samples) == NUM_SCENES  # fewer than the 20 kept per worker
  assert all(x["model"] == models_["random"] and "task: vqa2caption" in x["request"]
             and x["errors"] for x in samples)


@pytest.mark.slow
def test_fixed_answer_model_answers_are_kept(server, vqa_arm, tmp_path):
  endpoint, log_path, models_ = server
  before = posts(log_path)
  src, out = os.path.join(vqa_arm, "arms", "vqa"), tmp_path / "out"
  status, s = enrich(endpoint, models_["fixed"], src, str(out), vqa_arm, "--max_tokens=1")
  assert status == 0 and s["complete"] and s["failed"] == {}, s
  assert s["kept"] == s["records_out"] == NUM_SCENES
  assert s["usage"]["requests"] == posts(log_path) - before == NUM_SCENES
  assert s["usage"]["reasks"] == 0 and s["usage"]["completion_tokens"] == NUM_SCENES
  recs = list(records.iter_records(out))
  assert len(recs) == NUM_SCENES and all(r["kind"] == "caption" for r in recs)
  assert {r["segments"][-1]["text"] for r in recs} == {"the scene is described ."}
  assert all(r["meta"]["provenance"][-1]["model"] == models_["fixed"] for r in recs)
  # a rerun answers from the response cache: the server is not asked again
  before = posts(log_path)
  status, again = enrich(endpoint, models_["fixed"], src, str(tmp_path / "again"), vqa_arm,
                         "--max_tokens=1", f"--cache_dir={out / '_llm_cache'}")
  assert status == 0 and again["kept"] == NUM_SCENES
  assert again["usage"]["cache_hits"] == NUM_SCENES and posts(log_path) == before
