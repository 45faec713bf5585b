"""Names and ids that come from outside: one check for names that become paths, one for ids.

* :func:`safe_name` guards every name that becomes a file or folder name (experiment names,
  report files, model names ...): no ``/`` or ``\\``, no ``..``, no NUL or other control
  character, no leading dot, at most :data:`MAX_NAME_LEN` characters. It raises
  :class:`~liveshelf.errors.ValidationError` (HTTP 422), whose message shows the name, never a path.
* Ids (users, items, rooms, hosts, events) may hold any printable text, but no control
  character (NUL included) and no bidirectional override / isolate (U+202A-U+202E,
  U+2066-U+2069: they make an id display as another one). :data:`ID_PATTERN` is the rule as a
  regular expression for pydantic / OpenAPI, :data:`ID_BAD_RE2` the forbidden characters for
  Arrow's RE2 (the ingest validator), :func:`check_id` the same in Python.

>>> safe_name("ranker-v2", "name")
'ranker-v2'
>>> safe_name("..", "name")
Traceback (most recent call last):
...
liveshelf.errors.ValidationError: The 'name' parameter must be a plain name (no '/', '\\', '..', control characters or leading dot; at most 128 characters). Got '..' instead.
"""

from __future__ import annotations

import re

from liveshelf.errors import ValidationError

MAX_NAME_LEN = 128

#: Characters no id or name may hold: C0 / C1 controls (NUL included), DEL, bidi overrides and isolates.
_BAD_CHARS = "\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_BAD = re.compile(f"[{_BAD_CHARS}]")

#: An id as a regular expression (pydantic ``pattern`` / OpenAPI; Python, Rust and ECMA-262 syntax).
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+$"
#: The forbidden characters of an id in RE2 syntax (``pyarrow.compute.match_substring_regex``).
ID_BAD_RE2 = r"[\x00-\x1f\x7f-\x9f\x{202a}-\x{202e}\x{2066}-\x{2069}]"
#: A safe name as a regular expression (OpenAPI documentation of path parameters; :func:`safe_name` decides).
NAME_PATTERN = r"^[^./\\\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069][^/\\\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]{0,127}$"

ID_RULE = "printable characters (no control characters, NUL or bidirectional override characters)"


def unsafe_reason(value: object) -> str | None:
    """Why ``value`` is not a safe name, or None when it is one."""
    if not isinstance(value, str) or not value:
        return "not a non-empty string"
    if len(value) > MAX_NAME_LEN:
        return f"longer than {MAX_NAME_LEN} characters"
    if "/" in value or "\\" in value:
        return "a path separator"
    if ".." in value:
        return "'..'"
    if value.startswith("."):
        return "a leading dot"
    if _BAD.search(value):
        return "a control or bidirectional character"
    if value != value.strip():
        return "surrounding whitespace"
    return None


def safe_name(value: object, field: str = "name") -> str:
    """``value`` when it is safe as one file or folder name; else :class:`ValidationError` naming ``field``."""
    if unsafe_reason(value) is not None:
        shown = value[: MAX_NAME_LEN + 2] if isinstance(value, str) else value
        raise ValidationError(
            f"The '{field}' parameter must be a plain name (no '/', '\\', '..', control "
            f"characters or leading dot; at most {MAX_NAME_LEN} characters). "
            f"Got {shown!r} instead.",
            field=field,
            value=value,
        )
    return value  # type: ignore[return-value]


def is_safe_name(value: object) -> bool:
    return unsafe_reason(value) is None


def is_printable_id(value: str) -> bool:
    """True when ``value`` holds no control, NUL or bidirectional override character."""
    return _BAD.search(value) is None


def check_id(value: str, field: str) -> str:
    """``value`` when it is a printable id; else :class:`ValidationError` naming ``field``."""
    if not is_printable_id(value):
        raise ValidationError(
            f"The '{field}' parameter must hold {ID_RULE}. Got {value[:64]!r} instead.",
            field=field,
            value=value,
        )
    return value


__all__ = [
    "ID_BAD_RE2",
    "ID_PATTERN",
    "ID_RULE",
    "MAX_NAME_LEN",
    "NAME_PATTERN",
    "check_id",
    "is_printable_id",
    "is_safe_name",
    "safe_name",
    "unsafe_reason",
]
