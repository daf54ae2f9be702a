"""Strict dict → frozen dataclass conversion: unknown keys and wrong types name the offending key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from moeq.contract.errors import RecipeError

T = TypeVar("T")


def build(cls: type[T], data: Any, key: str) -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys; `key` is the dotted path for errors."""
    if not isinstance(data, dict):
        raise RecipeError(key, f"expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        from moeq.contract.suggest import did_you_mean

        raise RecipeError(f"{key}.{unknown[0]}" if key else unknown[0],
                          f"unknown key{did_you_mean(unknown[0], fields)} (allowed: {', '.join(sorted(fields))})")
    values = {}
    for name, value in data.items():
        values[name] = convert(hints[name], value, f"{key}.{name}" if key else name)
    try:
        obj = cls(**values)
    except RecipeError as exc:
        raise RecipeError(f"{key}.{exc.key}" if key else exc.key, exc.detail) from None
    except (TypeError, ValueError) as exc:
        raise RecipeError(key or cls.__name__, str(exc)) from exc
    return obj


def convert(tp: Any, value: Any, key: str) -> Any:
    """Convert a JSON value to type `tp` or raise RecipeError naming `key`."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        if len(candidates) == 1:
            return convert(candidates[0], value, key)
        for arg in candidates:
            try:
                return convert(arg, value, key)
            except RecipeError:
                continue
        raise RecipeError(key, f"invalid value {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise RecipeError(key, f"must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(key, f"expected a list, got {type(value).__name__}")
        (item_tp, *_rest) = get_args(tp)
        return tuple(convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(key, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(key, f"expected a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise RecipeError(key, "must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(key, f"expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise RecipeError(key, f"unsupported type {tp!r}")


def to_dict(obj: Any) -> Any:
    """Inverse of `build`: dataclasses → plain JSON-able dicts (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
