"""One place to turn a list of config problems into one error, as every config does, and to check that each
field holds the type it is declared with: configs come from TOML files, which can hold anything."""

import dataclasses
import types
import typing


def raise_if_problems(config_name: str, problems: list[str]) -> None:
    """Raise one ValueError naming every bad field, so a user fixes them all in one go."""
    if problems:
        raise ValueError(f"invalid {config_name}: " + "; ".join(problems))


def _holds(value, hint) -> bool:
    """Whether `value` is of the annotated type. A float field takes an integer (TOML `lr = 1`); an integer
    field takes no float and no boolean (Python counts True as 1, a config should not)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_holds(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):  # (tuple[int, ...] and list[int]: a TOML array of that element type)
        return isinstance(value, (tuple, list)) and all(_holds(item, args[0]) for item in value)
    return True  # (no other kinds of field are declared)


def _name(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_name(arg) for arg in args)
    if origin in (tuple, list):
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(args[0], str(args[0]))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "absent"}.get(hint, str(hint))


def type_problems(config) -> list[str]:
    """One problem per field of the dataclass `config` whose value is not of its declared type."""
    hints = typing.get_type_hints(type(config))
    return [f"{field.name} must be {_name(hints[field.name])}, got {getattr(config, field.name)!r}"
            for field in dataclasses.fields(config) if not _holds(getattr(config, field.name), hints[field.name])]
