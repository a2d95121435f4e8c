"""JSON schemas of the engine's LLM answers, validated with `jsonschema` (Draft 2020-12).

The same schema dicts are sent to LLM servers as the `response_format` of their structured-output
mode (`llm/openai.py`), so what the server is asked to produce and what the engine accepts are
one definition. Every schema built here is checked against the metaschema when it is built (a
typo such as `"minitems"` or an unknown type fails at import, not by silently accepting anything).
"""
from __future__ import annotations

import functools
import json

import jsonschema

_VALIDATOR = jsonschema.Draft202012Validator


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
  schema = json.loads(schema_json)
  _VALIDATOR.check_schema(schema)
  return _VALIDATOR(schema)


def _path(error: jsonschema.ValidationError) -> str:
  out = "$"
  for part in error.absolute_path:
    out += f"[{part}]" if isinstance(part, int) else f".{part}"
  return out


def schema_errors(value, schema: dict) -> list[str]:
  """Every violation of `schema` by `value` as 'path: message' strings (empty = valid), in a
  stable order (by path, then message). Raises `jsonschema.SchemaError` for an invalid schema."""
  validator = _validator(json.dumps(schema, sort_keys=True))
  errors = [f"{_path(e)}: {e.message}" for e in validator.iter_errors(value)]
  return sorted(errors)


def check(schema: dict) -> dict:
  """`schema`, after checking it against the metaschema (jsonschema.SchemaError if invalid)."""
  _VALIDATOR.check_schema(schema)
  return schema


def string_array(min_items: int = 0) -> dict:
  return check({"type": "array", "items": {"type": "string"}, "minItems": min_items})


def obj(properties: dict, required=None, additional: bool = False) -> dict:
  """Object schema; every property required unless `required` says otherwise."""
  return check({"type": "object", "properties": properties,
                "required": list(properties if required is None else required),
                "additionalProperties": additional})
