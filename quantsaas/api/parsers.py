"""The API's JSON body parser: DRF's, with bounds on what a body may contain.

A body's size is bounded before parsing (quantsaas.body_limit); what fits in that size can
still hurt: nesting deep enough to exhaust Python's recursion (a 500, or worse), integers
of thousands of digits that serializers turn into floats with an OverflowError, and
`1e400`, which Python reads as infinity. No request of this API needs more than a few
levels or more than a double's precision, so anything beyond is a 400 `invalid` here,
before a serializer sees it.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 40  # a double needs 17 significant digits; an int64 19 and a sign


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"A number of {len(text)} characters is too long.")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"A number of {len(text)} characters is too long.")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of the range of a double.")
    return value


def depth_exceeds(data: object, limit: int) -> bool:
    """Whether containers nest deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > limit:
            return True
        stack.extend((item, depth + 1) for item in value)
    return False


class BoundedJSONParser(JSONParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:  # any JSON value: a body may be a list (drf-stubs say dict)
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            data = json.load(
                codecs.getreader(encoding)(stream),
                parse_constant=strict_constant,
                parse_int=_int,
                parse_float=_float,
            )
        except RecursionError:
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if depth_exceeds(data, MAX_DEPTH):
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep.")
        return data
