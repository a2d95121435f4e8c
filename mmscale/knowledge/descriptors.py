"""The semantic descriptor: its JSON schema, validation, canonical form, and the `describe` task.

A descriptor states what a text (or an image) says (docs/data_format.md, "Descriptor"):
```
{"objects":   [{"name": str, "attributes": [str], "count": int}],
 "relations": [{"subject": str, "predicate": str, "object": str}],
 "scene": str, "text_in_image": [str],
 "entities":  [{"name": str, "type": str, "facts": [str]}]}
```
Extra keys are allowed (interleaved objects carry `image`, pair descriptors `comparison` and
`similarity`), so the schema is closed only where the engine reads fields.
"""
import json

from mmscale.knowledge import schema as js

OBJECT_SCHEMA = js.obj({"name": {"type": "string"}, "attributes": js.string_array(),
                        "count": {"type": "integer", "minimum": 0},
                        "image": {"type": "integer", "minimum": 0}},
                       required=["name", "attributes", "count"])
RELATION_SCHEMA = js.obj({"subject": {"type": "string"}, "predicate": {"type": "string"},
                          "object": {"type": "string"}})
ENTITY_SCHEMA = js.obj({"name": {"type": "string"}, "type": {"type": "string"},
                        "facts": js.string_array()})
DESCRIPTOR_SCHEMA = js.obj(
    {"objects": {"type": "array", "items": OBJECT_SCHEMA},
     "relations": {"type": "array", "items": RELATION_SCHEMA},
     "scene": {"type": "string"}, "text_in_image": js.string_array(),
     "entities": {"type": "array", "items": ENTITY_SCHEMA}},
    required=["objects", "relations", "scene", "text_in_image", "entities"], additional=True)

DESCRIBE_PROMPT_VERSION = "describe-v1"
DESCRIBE_INSTRUCTIONS = (
    "You extract a structured semantic descriptor from an image caption. List every object the "
    "caption mentions with its attributes (colour, size, texture, position, material, ...) and "
    "count, every relation between objects as subject-predicate-object, the scene type, any text "
    "visible in the image, and named entities with facts the caption states. State only what the "
    "caption says. Answer with one JSON object matching the schema.")


def empty_descriptor(scene: str = "") -> dict:
  return {"objects": [], "relations": [], "scene": scene, "text_in_image": [], "entities": []}


def descriptor_errors(desc) -> list:
  """Schema violations of a descriptor (empty = valid)."""
  return js.schema_errors(desc, DESCRIPTOR_SCHEMA)


def is_valid(desc) -> bool:
  return not descriptor_errors(desc)


def _key(item) -> str:
  return json.dumps(item, sort_keys=True)


def canonical(desc: dict) -> dict:
  """Order-free form for comparison: lists sorted, entity facts sorted, entities with the same
  name merged. Two descriptors state the same content iff their canonical forms are equal."""
  entities: dict = {}
  for e in desc.get("entities", []):
    ent = entities.setdefault(e["name"], {"name": e["name"], "type": e.get("type", ""),
                                          "facts": set()})
    ent["facts"] |= set(e.get("facts", []))
  out = {k: v for k, v in desc.items()
         if k not in ("objects", "relations", "entities", "text_in_image")}
  out["objects"] = sorted((dict(o) for o in desc.get("objects", [])), key=_key)
  out["relations"] = sorted((dict(r) for r in desc.get("relations", [])), key=_key)
  out["text_in_image"] = sorted(desc.get("text_in_image", []))
  out["entities"] = sorted(({**e, "facts": sorted(e["facts"])} for e in entities.values()),
                           key=_key)
  return out


def merge_entity(entities: list, name: str, etype: str, facts: list) -> None:
  """Adds facts to the entity `name` (created if absent), keeping facts unique and in order."""
  for e in entities:
    if e["name"] == name:
      e["facts"] += [f for f in facts if f not in e["facts"]]
      return
  entities.append({"name": name, "type": etype, "facts": list(dict.fromkeys(facts))})


def describe_input(text: str, grounding: list | None = None) -> dict:
  """Input of the `describe` task; `grounding` (objects known from the image, e.g. the world's
  meta.scenes) lets the offline parser resolve references such as 'the red object'."""
  return {"caption": text, "grounding": grounding or []}
