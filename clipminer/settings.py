"""One declaration per setting: a dataclass field carries its help, bounds and choices.

A settings dataclass (``FindClipsConfig``, with its nested ``SegmentConfig``) is the
single source: the command line's options, the batch runner and the ``[findclips]``
table of ``jobs/nightly.toml`` are views of its fields, so a new setting is one edit.
:func:`flat_fields` lists the fields (nested ones flattened, snake_case names) and
:func:`from_flat` builds the object from a flat mapping, refusing unknown keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from clipminer.errors import UsageError

T = TypeVar("T")


def setting(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    metavar: str | None = None,
    flag: str | None = None,
) -> Any:
    """A dataclass field with its command-line help and bounds in ``metadata``.

    ``min`` and ``max`` are inclusive bounds, ``above`` an exclusive lower one (a
    learning rate must be above 0). ``flag`` names the command-line option when it
    differs from the field (``timeout`` for ``read_timeout_seconds``); TOML keys are
    always the field names.
    """
    meta = {
        "help": help, "min": min, "max": max, "above": above, "metavar": metavar, "flag": flag
    }  # fmt: skip
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FlatField:
    """One setting as the command line and TOML see it."""

    name: str
    """snake_case; the option is ``--name-with-dashes``."""
    kind: Literal["float", "int", "str", "bool", "path", "strings", "choice"]
    """``strings``: a repeatable option / a TOML list; ``choice``: one of ``choices``."""
    optional: bool
    """None is allowed (the default then means "decide for me")."""
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    path: tuple[str, ...] = ()
    """Nested dataclass fields leading to it (``("segment",)``)."""
    flag: str | None = None
    """The command-line option's name without dashes, when not ``name``."""
    above: float | None = None
    """An exclusive lower bound."""

    def within(self, number: float) -> bool:
        """Whether ``number`` is within this setting's bounds."""
        return not (
            (self.min is not None and number < self.min)
            or (self.max is not None and number > self.max)
            or (self.above is not None and number <= self.above)
        )

    @property
    def option(self) -> str:
        """``--name-with-dashes``."""
        return "--" + (self.flag or self.name).replace("_", "-")


def _kind(tp: Any) -> tuple[str, bool, tuple[str, ...]]:
    """(kind, optional, choices) of a resolved type hint."""
    optional = False
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        optional = True
        (tp,) = [a for a in args if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "choice", optional, tuple(str(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "strings", optional, ()
    names = {float: "float", int: "int", str: "str", bool: "bool", Path: "path"}
    if tp in names:
        return names[tp], optional, ()
    raise TypeError(f"unsupported setting type {tp!r}")


def flat_fields(cls: type, path: tuple[str, ...] = ()) -> list[FlatField]:
    """The settings of ``cls``, nested dataclasses flattened, in declaration order."""
    hints = typing.get_type_hints(cls)
    found: list[FlatField] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            found += flat_fields(tp, (*path, f.name))  # type: ignore[arg-type]
            continue
        if "help" not in f.metadata:
            continue  # not a user setting
        kind, optional, choices = _kind(tp)
        default = f.default if f.default is not dataclasses.MISSING else None
        found.append(
            FlatField(
                f.name, kind, optional, default, f.metadata["help"], f.metadata["min"],  # type: ignore[arg-type]
                f.metadata["max"], choices, f.metadata["metavar"], path, f.metadata["flag"],
                f.metadata.get("above"),
            )
        )  # fmt: skip
    return found


def _coerce(spec: FlatField, value: Any, where: str) -> Any:
    if value is None:
        if spec.optional:
            return None
        raise UsageError(f"{where}: {spec.name} cannot be empty")
    bad = UsageError(f"{where}: {spec.name} must be {_describe(spec)}, got {value!r}")
    if spec.kind == "strings":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise bad
        return tuple(value)
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if spec.kind == "path":
        if not isinstance(value, (str, Path)):
            raise bad
        return Path(value)
    if spec.kind in ("str", "choice"):
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad
    if spec.kind == "int" and not float(value).is_integer():
        raise bad
    number = int(value) if spec.kind == "int" else float(value)
    if not spec.within(number):
        raise bad
    return number


def check_declared(config: Any) -> None:
    """Check every setting of ``config`` (not of its nested settings) against its
    declaration: a choice among its ``Literal``'s, a number within its bounds. For
    ``__post_init__``, so that objects built in code are held to the same declaration
    as the command line and TOML.

    Raises:
        UsageError: the first setting that is out of its declaration, named by its option.
    """
    for spec in flat_fields(type(config)):
        if spec.path:
            continue
        value = getattr(config, spec.name)
        if value is None and spec.optional:
            continue
        if spec.kind == "choice":
            ok = value in spec.choices
        elif spec.kind in ("int", "float"):
            ok = not isinstance(value, bool) and isinstance(value, int | float)
            ok = ok and spec.within(value)
        else:
            continue
        if not ok:
            raise UsageError(f"{spec.option} must be {_describe(spec)}, got {value!r}")


def _describe(spec: FlatField) -> str:
    if spec.kind == "choice":
        return "one of " + ", ".join(spec.choices)
    if spec.kind == "strings":
        return "a list of strings"
    if spec.kind in ("str", "path"):
        return "a string"
    if spec.kind == "bool":
        return "true or false"
    bounds = []
    if spec.above is not None:
        bounds.append(f"> {spec.above:g}")
    if spec.min is not None:
        bounds.append(f">= {spec.min:g}")
    if spec.max is not None:
        bounds.append(f"<= {spec.max:g}")
    noun = "an integer" if spec.kind == "int" else "a number"
    return " ".join([noun, " and ".join(bounds)]).strip()


def from_flat(cls: type[T], values: Mapping[str, Any], *, where: str) -> T:
    """Build ``cls`` from flat snake_case ``values``; missing keys keep their defaults.

    Raises:
        UsageError: an unknown key (the message lists the valid ones), a value of the
            wrong type or out of bounds, or settings that contradict each other;
            ``where`` (the file or ``--options``) starts the message.
    """
    specs = {spec.name: spec for spec in flat_fields(cls)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise UsageError(
            f"{where}: unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; valid: {', '.join(specs)}"
        )
    grouped: dict[tuple[str, ...], dict[str, Any]] = {}
    for name, value in values.items():
        spec = specs[name]
        grouped.setdefault(spec.path, {})[name] = _coerce(spec, value, where)
    try:
        return _build(cls, (), grouped)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _build(
    cls: type[T], path: tuple[str, ...], grouped: dict[tuple[str, ...], dict[str, Any]]
) -> T:
    hints = typing.get_type_hints(cls)
    kwargs = dict(grouped.get(path, {}))
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], (*path, f.name), grouped)
    return cls(**kwargs)


def to_flat(config: Any) -> dict[str, Any]:
    """The settings of ``config`` as a flat snake_case mapping (what :func:`from_flat` takes)."""
    flat: dict[str, Any] = {}
    for spec in flat_fields(type(config)):
        holder = config
        for step in spec.path:
            holder = getattr(holder, step)
        flat[spec.name] = getattr(holder, spec.name)
    return flat
