"""Turning pydantic's validation errors into what a user should read.

Kept apart from the schema (pslab/scenario.py) because it is about messages,
not fields: one line per wrong field, its dotted path as the user wrote it,
what was expected and a "did you mean" where a name is close to a known one.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


class ScenarioError(Exception):
    """A scenario that cannot be used; str() is the message a user should see."""


_WRONG_TYPE = {
    "model_type",
    "dict_type",
    "float_type",
    "int_type",
    "string_type",
    "bool_type",
    "float_parsing",
    "int_parsing",
    "literal_error",
}


def _is_tag(part: str | int) -> bool:
    """pydantic's names for a union's alternatives or a validator chain, not fields:
    ``ModelSpec``, ``str``, ``function-after[_layers_sum(), ModelSpec]``. Field names
    here are all lowercase identifiers; list indices are ints."""
    if isinstance(part, int):
        return False
    return "[" in part or part[:1].isupper() or part in ("str", "float", "int", "bool")


def _clean(loc: tuple[str | int, ...]) -> tuple[list[str], bool]:
    """The field path a user wrote, and whether the error is about one alternative."""
    return [str(p) for p in loc if not _is_tag(p)], any(_is_tag(p) for p in loc)


def _tagged(info: FieldInfo) -> dict[str, type[BaseModel]]:
    """A tagged union field's members by tag (``algorithm``: sync_ps → its settings)."""
    if not isinstance(info.discriminator, str):
        return {}
    out: dict[str, type[BaseModel]] = {}
    for member in get_args(info.annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            for tag in get_args(member.model_fields[info.discriminator].annotation):
                out[str(getattr(tag, "value", tag))] = member
    return out


def _walk(
    root: type[BaseModel] | None, loc: tuple[str | int, ...]
) -> tuple[tuple[str | int, ...], type[BaseModel] | None, tuple[str, dict[str, type[BaseModel]]]]:
    """``loc`` without a tagged union's tag (pydantic's ``algorithm.sync_ps.tau`` is the
    user's ``algorithm.tau``), the model holding its last field, and the chosen tag with
    its siblings (empty outside a tagged union)."""
    model, members = root, {}
    kept: list[str | int] = []
    parent, variant = root, ("", {})
    for part in loc:
        if isinstance(part, str) and part in members:
            model, variant = members[part], (part, members)
            members = {}
            continue
        kept.append(part)
        parent, members = model, {}
        if model is None or not isinstance(part, str) or part.isdigit():
            continue
        info = model.model_fields.get(part)
        members = _tagged(info) if info is not None else {}
        model = None if info is None or members else _submodel(info.annotation)
    return tuple(kept), parent, variant


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing (difflib)."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _message(
    model: type[BaseModel] | None,
    variant: tuple[str, dict[str, type[BaseModel]]],
    e: Any,
    path: list[str],
) -> str:
    """pydantic's message, with a suggestion for a misspelt field or choice; ``model``
    holds the field, ``variant`` is the tag chosen in a tagged union and its siblings."""
    msg = e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    if e["type"] == "extra_forbidden":
        tag, members = variant
        readers = [t for t, m in members.items() if path[-1] in m.model_fields]
        if readers:  # not a typo: a setting of other variants
            verb = "reads" if len(readers) == 1 else "read"
            return f"{tag} has no such setting; only {', '.join(readers)} {verb} it"
        fields = list(model.model_fields) if model is not None else []
        return f"unknown field{did_you_mean(path[-1], fields)}" + (
            f"; known: {', '.join(fields)}" if fields else ""
        )
    if e["type"] == "union_tag_invalid":
        tags = list(_tagged(model.model_fields[path[-1]])) if model is not None else []
        tag = str(e["ctx"]["tag"])
        return f"unknown {tag!r}{did_you_mean(tag, tags)}; one of: {', '.join(tags)}"
    if e["type"] in ("enum", "literal_error") and isinstance(got, str):
        choices = re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", "")))
        return msg + did_you_mean(got, choices)
    return msg


def format_validation(
    source: str, err: ValidationError, what: str = "scenario", root: type[BaseModel] | None = None
) -> str:
    """One line per wrong field: its dotted path, what was expected, what was given,
    and a "did you mean" where a name is close to a known one.

    A field that accepts alternatives (a duration or a distribution) fails once per
    alternative. The alternatives' "wrong type" complaints are dropped where another
    alternative says something specific about the same field, then only the first
    complaint per path is kept; pydantic's alternative names never reach the path.
    """
    errors = err.errors()
    walked = [(e, *_walk(root, e["loc"])) for e in errors]
    cleaned = [(e, *_clean(loc), model, variant) for e, loc, model, variant in walked]
    specific = [".".join(p) for e, p, *_ in cleaned if e["type"] not in _WRONG_TYPE]
    lines = [f"{source}: invalid {what}"]
    seen: set[str] = set()
    for e, parts, alternative, model, variant in cleaned:
        path = ".".join(parts) or "<top>"
        if (
            alternative
            and e["type"] in _WRONG_TYPE
            and any(s == path or s.startswith(path + ".") for s in specific)
        ):
            continue
        if path in seen:
            continue
        seen.add(path)
        msg = _message(model, variant, e, parts)
        if e["type"] == "union_tag_invalid":  # about the tag's field, not the whole section
            path += "." + e["ctx"]["discriminator"].strip("'")
        got = e.get("input")
        shown = ""
        if (
            e["type"] != "extra_forbidden"
            and got is not None
            and not isinstance(got, dict | list)
            and repr(got) not in msg
        ):
            shown = f" (got {got!r})"
        lines.append(f"  {path}: {msg}{shown}")
    return "\n".join(lines)


def field_error(source: str, path: str, message: str) -> ScenarioError:
    """A check made after the schema (memory, size budget) reported like a schema error."""
    return ScenarioError(f"{source}: invalid scenario\n  {path}: {message}")
