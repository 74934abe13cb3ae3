"""The published JSON Schema of the plan format (schema.json next to this file)."""

import copy
import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators

SCHEMA_PATH = Path(__file__).with_name("schema.json")


@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def plan_schema() -> dict[str, Any]:
    """A copy of the plan JSON Schema (draft 2020-12), e.g. to serve it to editors."""
    return copy.deepcopy(_schema())


def _is_whole_number(checker: Any, instance: object) -> bool:
    # JSON Schema counts 3.0 as an integer; weights are counted in whole units, and a stored
    # plan should read back exactly as written, so only real integers pass.
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_whole_number),
)


@functools.cache
def plan_schema_validator() -> Draft202012Validator:
    return _StrictValidator(_schema())
