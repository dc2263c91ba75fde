"""Number and boolean field types that take JSON's values as they are.

Pydantic's lax mode reads ``true`` as 1, ``"5"`` as 5 and ``0`` as a date; a request body, a
pool file or a strategy spec that says so is more likely a mistake than a wish, and the API
description promises numbers and booleans. These types refuse such values with a clear error
and keep what JSON itself allows (``5.0`` is the integer 5). Bounds go inside the same
``Annotated`` or on the field, never on an ``Annotated`` wrapped around these (pydantic would
then describe them as ``ge``/``le`` instead of ``minimum``/``maximum``).
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Interval
from pydantic import BeforeValidator

__all__ = ["JsonBool", "JsonFloat", "JsonInt", "Port", "json_boolean", "json_number"]


def json_number(value: Any) -> Any:
    """Field validator: a number (a bool or a numeric string is refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def json_boolean(value: Any) -> Any:
    """Field validator: ``true`` or ``false`` (1, "yes" and the like are refused)."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


JsonInt = Annotated[int, BeforeValidator(json_number)]
JsonFloat = Annotated[float, BeforeValidator(json_number)]
JsonBool = Annotated[bool, BeforeValidator(json_boolean)]
Port = Annotated[int, Interval(ge=1, le=65_535), BeforeValidator(json_number)]
