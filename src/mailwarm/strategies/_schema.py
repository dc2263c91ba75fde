"""The JSON Schema of strategy specs, built from the registered kinds' own models.

Each kind's fields come from its pydantic model (types, bounds, defaults), so the schema never
drifts from what :func:`~mailwarm.strategies.strategy_from_spec` accepts; the fields that hold
other strategies or factors become references, which makes the schema recursive. Rules across
fields that JSON Schema cannot state (waypoint days that increase, ``adaptive``'s threshold
order) are in the kinds' descriptions and checked when a spec is built.
"""

from __future__ import annotations

import typing
from typing import Any

from mailwarm.strategies._base import SPEC_VERSION, Factor, Strategy
from mailwarm.strategies._presets import PRESETS

__all__ = ["spec_json_schema"]

# A constant factor written as a plain number (``"factor": 0.5``): the same bounds as Constant.
_NUMBER_FACTOR = {"type": "number", "minimum": 0, "maximum": 1_000}


def _reference(annotation: Any, ref: str) -> dict[str, Any] | None:
    """The schema of a field that holds strategies or factors, or None for a plain field."""
    strategy = {"$ref": f"{ref}StrategySpec"}
    factor = {"anyOf": [_NUMBER_FACTOR, {"$ref": f"{ref}FactorSpec"}]}
    if annotation is Any:
        return strategy
    if isinstance(annotation, type) and issubclass(annotation, Factor):
        return factor
    if typing.get_origin(annotation) is tuple:
        item, *rest = typing.get_args(annotation)
        if rest == [Ellipsis] and (inner := _reference(item, ref)) is not None:
            return {"type": "array", "items": inner, "minItems": 1}
    return None


def _kind_schema(cls: type[Strategy] | type[Factor], ref: str) -> dict[str, Any]:
    schema = cls.model_json_schema(ref_template=ref + "{model}")
    schema.pop("$defs", None)
    properties: dict[str, Any] = {
        "kind": {"const": cls.kind},
        "version": {"const": SPEC_VERSION},
    }
    for name, field in cls.model_fields.items():
        nested = _reference(field.annotation, ref)
        properties[name] = nested if nested is not None else schema["properties"][name]
    return {
        "type": "object",
        "title": f"{cls.__name__} ({cls.kind})",
        "description": (cls.__doc__ or "").strip(),
        "properties": properties,
        "required": ["kind", *schema.get("required", [])],
        "additionalProperties": False,
    }


def spec_json_schema(ref: str = "#/$defs/") -> dict[str, dict[str, Any]]:
    """JSON Schema definitions of strategy specs, every registered kind included.

    Returns ``{"StrategySpec": ..., "FactorSpec": ..., "<Class>Spec": ...}``; references
    between them start with ``ref`` (``"#/components/schemas/"`` in an OpenAPI document).
    A standalone schema is ``{"$defs": spec_json_schema(), "$ref": "#/$defs/StrategySpec"}``.
    """
    from mailwarm.strategies._registry import registered_kinds

    definitions: dict[str, dict[str, Any]] = {}
    ramps: list[dict[str, str]] = []
    factors: list[dict[str, str]] = []
    for cls in registered_kinds():
        name = f"{cls.__name__}Spec"
        definitions[name] = _kind_schema(cls, ref)
        (factors if issubclass(cls, Factor) else ramps).append({"$ref": ref + name})
    definitions["PresetSpec"]["properties"]["name"] = {"enum": sorted(PRESETS)}
    definitions["StrategySpec"] = {
        "description": "A strategy spec: an object whose `kind` names the strategy.",
        "oneOf": ramps,
    }
    definitions["FactorSpec"] = {
        "description": "A factor spec (a multiplier for a `scaled` strategy).",
        "oneOf": factors,
    }
    return definitions
