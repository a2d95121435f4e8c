"""Format-free evaluation (mmscale/eval/choice.py): ranked choice and the statement probe on
hand-made cases where they disagree with generation, their floors, the world's statements and
grounding questions, and the multiple-choice file loader's errors."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_train_config, write_json
from mmscale.data import world_qa
from mmscale.data.world import build_world
from mmscale.data.world_scenes import Obj, Scene
from mmscale.data.world_spec import WorldSpec
from mmscale.errors import DataError
from mmscale.eval import choice, runner, vqa
from mmscale.eval import records as eval_records
from mmscale.eval.records import load_eval_records
from mmscale.runtime import build_run
from mmscale.testing import random_run


class Bigram(nn.Module):
  """Next-token logits = table[current token]: a model whose preferences are set by hand.
  It takes the MLLM batch (images ignored) and `decode=` like the real model, so generation and
  likelihood scoring run through the same code as for a trained checkpoint."""
  vocab: int

  @nn.compact
  def __call__(self, batch, decode=False):
    table = self.param("table", nn.initializers.zeros, (self.vocab, self.vocab))
    if decode:
      self.variable("cache", "unused", jnp.zeros, (1,))
    return table[batch["tokens"]]


@pytest.fixture(scope="module")
def bigram_run(tiny_world):
  config = tiny_train_config(tiny_world)
  config.eval.update(batch_size=8, max_decode_len=3)
  run = build_run(config, devices=jax.devices()[:1])
  tok = run.tokenizer
  run.model = Bigram(tok.vocab_size)

  def wid(word):
    (i,) = tok.encode(word)
    return i

  table = np.zeros((tok.vocab_size, tok.vocab_size), np.float32)
  # After the question mark the model prefers "the" (a wrong format: it would go on to say
  # "the ..."), and among the colours prefers red; every colour is then followed by EOS.
  table[wid("?"), wid("the")] = 6.0
  table[wid("?"), wid("red")] = 3.0
  table[wid("?"), wid("green")] = 1.0
  table[wid("the"), wid("the")] = 6.0
  for colour in ("red", "green", "blue"):
    table[wid(colour), tok.eos_id] = 6.0
  # In caption form ("the circle is ..."), green is preferred.
  table[wid("is"), wid("green")] = 4.0
  run.params = {"table": jnp.asarray(table)}
  return run


def colour_records(tiny_world, answers):
  config = tiny_train_config(tiny_world)
  image = load_eval_records(config)[0]["images"][0]
  return [{"id": f"q{i}", "kind": "vqa", "images": [image],
           "segments": [{"image": 0}, {"text": "what colour is the circle ?", "loss": False},
                        {"text": a, "loss": True}],
           "meta": {"qtype": "attribute", "qform": "colour", "answer": a,
                    "choices": ["red", "green", "blue"],
                    "statements": [f"the circle is {c} ." for c in ("red", "green", "blue")],
                    "statement_values": ["red", "green", "blue"], "statement_answer": a}}
          for i, a in enumerate(answers)]


def test_ranked_right_where_generation_is_wrong_in_format(bigram_run, tiny_world):
  recs = colour_records(tiny_world, ["red", "green"])
  with jax.set_mesh(bigram_run.mesh):
    generated = vqa.score_vqa_records(bigram_run, recs, "vqa")
    ranked = choice.evaluate_items(bigram_run, choice.ranked_items(recs, "hand"), "ranked")
    statement = choice.evaluate_items(bigram_run, choice.statement_items(recs, "hand"),
                                      "statement")
  # Generation says "the the the" (normalised: empty): wrong for both questions.
  assert generated["vqa/accuracy/all"] == 0.0
  # Likelihood ranks red first: right for the red question, wrong for the green one.
  assert ranked["ranked/accuracy/all"] == 0.5 == ranked["ranked/accuracy_norm/all"]
  # The caption-form probe prefers green: the opposite question is right.
  assert statement["statement/accuracy/all"] == 0.5
  assert ranked["ranked/chance/attribute"] == pytest.approx(1 / 3)
  assert ranked["ranked/majority/attribute"] == 0.5 and ranked["ranked/count/all"] == 2
  table = choice.format_table({**generated, **ranked, **statement})
  assert "attribute" in table and "statement norm" in table


def test_scores_are_the_continuations_log_likelihood(bigram_run, tiny_world):
  (rec,) = colour_records(tiny_world, ["red"])
  (item,) = choice.ranked_items([rec], "hand")
  with jax.set_mesh(bigram_run.mesh):
    ((summed, per_char),) = choice.score_items(bigram_run, [item])
  row = np.asarray(bigram_run.params["table"])
  tok = bigram_run.tokenizer
  q, eos = tok.encode("?")[0], tok.eos_id
  for k, colour in enumerate(("red", "green", "blue")):
    c = tok.encode(colour)[0]
    expected = jax.nn.log_softmax(row[q])[c] + jax.nn.log_softmax(row[c])[eos]
    np.testing.assert_allclose(summed[k], expected, rtol=1e-5)
    np.testing.assert_allclose(per_char[k], expected / len(colour), rtol=1e-5)


def test_length_normalisation_and_ties():
  item = choice.ChoiceItem({}, [], ["above", "left of"], ["above", "left of"], 1, "relation",
                           "where", [])
  # Summed: "above" -2.0 beats "left of" -2.5; per character -0.4 vs -0.357: "left of" wins.
  scores = [(np.array([-2.0, -2.5]), np.array([-2.0 / 5, -2.5 / 7]))]
  out = choice.summarize([item], scores, "p")
  assert out["p/accuracy/relation"] == 0.0 and out["p/accuracy_norm/relation"] == 1.0
  assert out["p/chance/all"] == 0.5 and out["p/count/relation"] == 1
  assert not choice.strictly_best(np.array([-1.0, -1.0]), 1)  # a tie is a miss


def test_world_evaluators_and_floors(tiny_world):
  config = tiny_train_config(tiny_world)
  config.eval.update(batch_size=16, max_examples=24, evals=("ranked", "statement"))
  run = random_run(config, jax.devices()[:2])
  results = runner.run_evaluators(run, ("ranked", "statement"))
  recs = load_eval_records(config)
  for prefix in ("ranked", "statement"):
    assert results[f"{prefix}/count/all"] == 24
    for metric in ("accuracy", "accuracy_norm", "chance", "form_majority"):
      assert 0.0 <= results[f"{prefix}/{metric}/all"] <= 1.0
  assert results["ranked/chance/relation"] == 0.5  # yes / no
  assert 0.25 <= results["statement/chance/relation"] <= 1 / 3  # 3 or 4 predicates
  assert "format-free" in runner.format_table(results)
  stale = [{**recs[0], "meta": {k: v for k, v in recs[0]["meta"].items() if k != "statements"}}]
  with pytest.raises(DataError, match="has no meta field 'statements'.*rebuild"):
    choice.statement_items(stale, "eval/vqa")


def test_world_statements_and_grounding(tmp_path):
  spec = WorldSpec(grounding=True)
  a = Obj("circle", "red", "large", "plain", 0, 0)
  b = Obj("square", "blue", "large", "plain", 1, 2)  # a is above and left of b
  scene = Scene("s", (a, b))
  rng = np.random.default_rng(0)
  for _ in range(20):
    qa = world_qa.relation_qa(scene, spec, {}, rng, None)
    if qa["question"].startswith("is the red circle"):
      assert set(qa["statement_values"]) - {qa["statement_answer"]} == {"right of", "below"}
      assert qa["statement_answer"] in ("left of", "above")
      assert (f"the red circle is {qa['statement_answer']} the blue square ."
              in qa["statements"])
  qa = world_qa.count_qa(Scene("t", (a,)), spec, {}, np.random.default_rng(1), None)
  assert qa["statements"][qa["statement_values"].index(qa["statement_answer"])] \
      == qa["statement"]
  qa = world_qa.grounding_qa(Scene("u", (b,)), spec, {}, rng, None)
  assert (qa["question"], qa["answer"]) == ("where is the blue square ?", "middle right")
  assert qa["choices"] == world_qa.cell_words(spec) and len(qa["choices"]) == 9
  assert qa["statements"][qa["choices"].index("middle right")] == \
      "the blue square is at the middle right ."
  assert world_qa.question_types(spec)[-1] == "grounding"
  assert "grounding" not in world_qa.question_types(WorldSpec())
  summary = build_world(str(tmp_path), num_scenes=20, num_eval_scenes=4, spec=spec,
                        train_tok=False)
  assert summary["eval"]["vqa"]["grounding"] > 0 and summary["spec"]["grounding"] is True
  recs = eval_records.read_records(str(tmp_path / "eval" / "vqa"))
  where = [r for r in recs if r["meta"]["qtype"] == "grounding"]
  assert where and all(len(r["meta"]["statements"]) == 9 for r in where)
  train = eval_records.read_records(str(tmp_path / "arms" / "vqa"))
  assert any(r["meta"]["qtype"] == "grounding" for r in train)




def test_mc_json(image_dir):
  path = write_json(image_dir / "mc.json", {"questions": [
      {"question": "is there a dog ?", "image": "a.png", "choices": ["yes", "no"],
       "answer": "no", "category": "pope"},
      {"question": "what is it ?", "image": "a.png",
       "choices": {"A": "a cat", "B": "a dog"}, "answer": "B",
       "statements": ["this is a cat .", "this is a dog ."]},
      {"question": "colour ?", "image": "a.png", "choices": ["red", "blue"], "answer": 0}]})
  recs = eval_records.load_mc_json(path)
  assert [r["meta"]["answer"] for r in recs] == ["no", "a dog", "red"]
  assert [r["meta"]["qtype"] for r in recs] == ["pope", "all", "all"]
  assert recs[1]["meta"]["statement_answer"] == "a dog"
  assert recs[1]["segments"][2] == {"text": "a dog", "loss": True}
  items = choice.ranked_items(recs, path)
  assert [it.answer for it in items] == [1, 1, 0]
  assert choice.statement_items(recs[1:2], path)[0].candidates[1] == "this is a dog ."


@pytest.mark.parametrize("entry,message", [
    ({"question": "q", "image": "a.png", "answer": "x"}, r"entry 0 has no field 'choices'"),
    ({"question": "q", "image": "a.png", "choices": ["x"], "answer": "x"},
     r"entry 0 field 'choices' must hold at least 2"),
    ({"question": "q", "image": "a.png", "choices": ["x", "x"], "answer": "x"},
     r"entry 0 field 'choices' has duplicates"),
    ({"question": "q", "image": "a.png", "choices": ["x", "y"]}, r"entry 0 has no field 'answer'"),
    ({"question": "q", "image": "a.png", "choices": ["x", "y"], "answer": "z"},
     r"entry 0 field 'answer' 'z' is neither a choice's text nor its key"),
    ({"question": "q", "image": "a.png", "choices": ["x", "y"], "answer": 2},
     r"entry 0 field 'answer' index 2 is outside the 2 choices"),
    ({"question": "q", "image": "a.png", "choices": ["x", "y"], "answer": "x",
      "statements": ["only one"]}, r"entry 0 field 'statements' must hold one string per choice"),
    ({"question": "q", "image": "b.png", "choices": ["x", "y"], "answer": "x"},
     r"entry 0 image 'b.png' not found"),
])
def test_mc_json_errors(image_dir, entry, message):
  path = write_json(image_dir / "bad.json", [entry])
  with pytest.raises(DataError, match=r"bad\.json: " + message):
    eval_records.load_mc_json(path)
