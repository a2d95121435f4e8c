"""Local evaluation files: VQA JSON and COCO captions load into records, with clear errors."""


import pytest

from conftest import write_json
from mmscale.errors import DataError
from mmscale.eval import records as eval_records




def test_vqa_json(image_dir):
  path = write_json(image_dir / "vqa.json", [
      {"question": "what colour ?", "image": "a.png", "answers": [{"answer": "Red"}] * 10,
       "question_type": "colour"},
      {"question": "how many ?", "image": "a.png", "answer": "two"}])
  recs = eval_records.load_vqa_json(path)
  assert [r["meta"]["qtype"] for r in recs] == ["colour", "all"]
  assert recs[0]["meta"]["answers"] == ["Red"] * 10 and recs[1]["meta"]["answers"] == ["two"]
  assert recs[0]["segments"][1] == {"text": "what colour ?", "loss": False}
  assert recs[0]["images"][0][:4] == b"\x89PNG"
  assert len(eval_records.load_vqa_json(path, limit=1)) == 1


def test_coco_captions(image_dir):
  path = write_json(image_dir / "captions.json", {
      "images": [{"id": 1, "file_name": "a.png"}],
      "annotations": [{"image_id": 1, "caption": "a grey image"},
                      {"image_id": 1, "caption": "nothing at all"}]})
  (rec,) = eval_records.load_coco_captions(path)
  assert rec["meta"]["references"] == ["a grey image", "nothing at all"]
  assert rec["segments"][1]["text"] == "a grey image"


@pytest.mark.parametrize("obj,message", [
    ([{"image": "a.png", "answer": "x"}], r"entry 0 has no field 'question'"),
    ([{"question": "q", "image": "b.png", "answer": "x"}], r"entry 0 image 'b.png' not found"),
    ([{"question": "q", "image": "a.png", "answers": []}],
     r"entry 0 field 'answers' must be a non-empty list"),
    ({"data": []}, r"top level has no field 'questions'"),
])
def test_vqa_json_errors(image_dir, obj, message):
  path = write_json(image_dir / "bad.json", obj)
  with pytest.raises(DataError, match=r"bad\.json: " + message):
    eval_records.load_vqa_json(path)


def test_coco_errors(image_dir):
  with pytest.raises(DataError, match="missing.json: file not found"):
    eval_records.load_coco_captions(str(image_dir / "missing.json"))
  (image_dir / "broken.json").write_text("{")
  with pytest.raises(DataError, match="broken.json: not valid JSON"):
    eval_records.load_coco_captions(str(image_dir / "broken.json"))
  path = write_json(image_dir / "c.json", {"images": [{"id": 2, "file_name": "a.png"}],
                                      "annotations": [{"image_id": 1, "caption": "x"}]})
  with pytest.raises(DataError, match=r"images\[0\] \(id 2\) has no caption"):
    eval_records.load_coco_captions(path)
  path = write_json(image_dir / "d.json", {"images": [], "annotations": [{"image_id": 1}]})
  with pytest.raises(DataError, match=r"annotations\[0\] has no field 'caption'"):
    eval_records.load_coco_captions(path)
