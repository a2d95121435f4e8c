"""A small JSON-schema validator (the subset the engine's schemas use), pure python.

Why not `jsonschema`: it is not a dependency of mmscale and the engine needs only `type`,
`properties`, `required`, `additionalProperties`, `items`, `enum`, `minimum`, `maximum`,
`minItems`, `maxItems`; the same schema dicts are sent to LLM servers as `response_format`.
"""
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check_object(value: dict, schema: dict, path: str, errors: list) -> None:
  props = schema.get("properties", {})
  for key in schema.get("required", ()):
    if key not in value:
      errors.append(f"{path}: missing required key '{key}'")
  extra = schema.get("additionalProperties", True)
  for key, item in value.items():
    if key in props:
      _check(item, props[key], f"{path}.{key}", errors)
    elif extra is False:
      errors.append(f"{path}: unexpected key '{key}'")
    elif isinstance(extra, dict):
      _check(item, extra, f"{path}.{key}", errors)


def _check_array(value: list, schema: dict, path: str, errors: list) -> None:
  if len(value) < schema.get("minItems", 0):
    errors.append(f"{path}: needs at least {schema['minItems']} items, got {len(value)}")
  if "maxItems" in schema and len(value) > schema["maxItems"]:
    errors.append(f"{path}: allows at most {schema['maxItems']} items, got {len(value)}")
  if "items" in schema:
    for i, item in enumerate(value):
      _check(item, schema["items"], f"{path}[{i}]", errors)


def _check(value, schema: dict, path: str, errors: list) -> None:
  types = schema.get("type")
  if types is not None:
    types = [types] if isinstance(types, str) else list(types)
    if not any(_TYPES[t](value) for t in types):
      errors.append(f"{path}: expected {'/'.join(types)}, got {type(value).__name__}")
      return
  if "enum" in schema and value not in schema["enum"]:
    errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    if "minimum" in schema and value < schema["minimum"]:
      errors.append(f"{path}: {value} < minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
      errors.append(f"{path}: {value} > maximum {schema['maximum']}")
  if isinstance(value, dict):
    _check_object(value, schema, path, errors)
  elif isinstance(value, list):
    _check_array(value, schema, path, errors)


def schema_errors(value, schema: dict) -> list:
  """Every violation of `schema` by `value` as 'path: message' strings (empty = valid)."""
  errors: list = []
  _check(value, schema, "$", errors)
  return errors


def string_array(min_items: int = 0) -> dict:
  return {"type": "array", "items": {"type": "string"}, "minItems": min_items}


def obj(properties: dict, required=None, additional: bool = False) -> dict:
  """Object schema; every property required unless `required` says otherwise."""
  return {"type": "object", "properties": properties,
          "required": list(properties if required is None else required),
          "additionalProperties": additional}
