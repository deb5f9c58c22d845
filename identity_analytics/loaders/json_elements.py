"""The elements of a JSON file DuckDB cannot read: arrays (or pages of them, saved one after
the other) and documents split element by element, so that each bad element is quarantined
by its position and the good ones are still loaded.
"""

from __future__ import annotations

import json
import re

#: JSON's insignificant whitespace.
_WHITESPACE = " \t\r\n"
#: Bytes that are not UTF-8, as ``surrogateescape`` decodes them.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
#: The characters that delimit strings and brackets in JSON text.
_STRUCTURE = re.compile(r'[\\"{}\[\],\n]')
#: Accepts raw control characters in strings (to find where such a malformed element ends).
_LENIENT_DECODER = json.JSONDecoder(strict=False)
#: Characters of a malformed element's text kept for its (redacted) excerpt.
_MALFORMED_EXCERPT_CHARS = 1000


def json_elements(text: str) -> tuple[list[int], list[str], dict[int, tuple[str, str]]]:
    """(numbers, texts) of the well-formed elements of JSON arrays or documents, and the bad ones.

    The text may hold several arrays (pages saved one after the other) and documents, each
    array's elements being records; nothing after the first array is left unread. Elements
    are numbered from 1, across arrays. A malformed element, or one holding bytes that are not
    UTF-8 (decoded as lone surrogates), maps to (reason, its text); reading resumes after it.
    """
    decoder = json.JSONDecoder()
    numbers: list[int] = []
    records: list[str] = []
    faults: dict[int, tuple[str, str]] = {}
    position = 0
    in_array = lost = False
    while True:
        while position < len(text) and text[position] in _WHITESPACE + ",":
            position += 1
        if position >= len(text):
            break
        if text[position] == "[" and not in_array:  # an array: its elements are the records
            in_array, position = True, position + 1
            continue
        if text[position] == "]" and in_array:  # more arrays (pages) or documents may follow
            in_array, position = False, position + 1
            continue
        number, start = len(numbers) + len(faults) + 1, position
        try:
            value, position = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, RecursionError) as error:
            end = _end_of_lenient_element(text, start) or _end_of_bad_element(text, start, in_array)
            lost, position = end is None, len(text) if end is None else end
            reason = (
                f"malformed JSON: {error.msg.removesuffix(' at')} (line {error.lineno} column {error.colno})"
                if isinstance(error, json.JSONDecodeError)
                else "malformed JSON (nested too deeply)"
            )
            if lost:
                reason += "; the rest of the file could not be read"
            faults[number] = (reason, text[start : min(position, start + _MALFORMED_EXCERPT_CHARS)])
            continue
        if _UNDECODABLE.search(text, start, position):
            faults[number] = ("not valid UTF-8 text", text[start:position])
            continue
        numbers.append(number)
        records.append(json.dumps(value))
    if in_array and not lost:
        faults[len(numbers) + len(faults) + 1] = ("malformed JSON (the array is not closed)", "")
    return numbers, records, faults


def _end_of_lenient_element(text: str, start: int) -> int | None:
    """Where the element at ``start`` ends if its only fault is raw control characters (line breaks) in strings."""
    try:
        return _LENIENT_DECODER.raw_decode(text, start)[1]
    except (json.JSONDecodeError, RecursionError):
        return None


def _end_of_bad_element(text: str, start: int, in_array: bool) -> int | None:
    """Where the malformed element at ``start`` ends, as far as its brackets, strings and lines tell.

    In an array: at the next ``,`` or the closing ``]`` outside brackets. Between documents:
    after the closing brace, or at a line break outside brackets. A string is taken to end at
    a line break, as JSON strings hold none, so that an unterminated one does not hide the
    rest. An element left unclosed ends where a line indented as it was starts the next one.
    None if the text ends first.
    """
    line_start = text.rfind("\n", 0, start) + 1
    indent = text[line_start:start] if not text[line_start:start].strip(_WHITESPACE) else None
    depth = 0
    in_string = False
    escaped_until = start
    for match in _STRUCTURE.finditer(text, start):
        at, char = match.start(), match.group()
        if at < escaped_until:
            continue
        unclosed = depth > 0 or in_string
        if char == "\n" and unclosed and indent is not None and _starts_sibling(text, at, indent, in_array):
            return at
        if in_string:
            if char == "\\":
                escaped_until = at + 2
            elif char in '"\n':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            if in_array and depth == 0 and char == "]":
                return at
            depth = max(depth - 1, 0)
            if not in_array and depth == 0:
                return at + 1
        elif depth == 0 and char == ("," if in_array else "\n") and at > start:
            return at
    return None


def _starts_sibling(text: str, newline: int, indent: str, in_array: bool) -> bool:
    """Whether the line after ``newline`` starts an element at ``indent`` (after a ``,`` in an array)."""
    if not text.startswith(indent, newline + 1) or not text.startswith(("{", "["), newline + 1 + len(indent)):
        return False
    if not in_array:
        return True
    before = newline - 1
    while before >= 0 and text[before] in _WHITESPACE:
        before -= 1
    return before >= 0 and text[before] == ","


def printable(text: str) -> str:
    """Text decoded with lone surrogates for undecodable bytes, with those bytes replaced."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
