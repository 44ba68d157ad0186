"""The one alphabet for external ids: the ids a shop gives its customers.

An external id travels in JSON bodies (``external_id``, an event's ``customer_id``, a CSV
column) and comes back in URL paths (``/v1/members/{external_id}``), so it must be something
a path segment can carry unambiguously. The rule, defined once here and used everywhere an
external id comes in:

- 1 to 128 characters;
- letters and digits of any script (``str.isalnum``: ``josé``, ``Müller``, ``客户7``), plus
  ``-`` ``_`` ``.`` ``:`` ``@`` ``+`` (so e-mail-like and namespaced ids such as
  ``shop:42`` or ``ana+1@example.com`` fit);
- nothing else: no ``/`` (it would split the path), no ``%``, ``?`` or ``#`` (URL syntax), no
  whitespace, control or combining characters (send precomposed, NFC text).

Surrounding whitespace is trimmed first (as it always was: ``" c1 "`` is ``c1``). A value
outside the alphabet, in a body or a path, is ``422 invalid_external_id``. Non-ASCII ids travel
URL-encoded in paths (``/v1/members/jos%C3%A9``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

MAX_LENGTH = 128
EXTRA_CHARACTERS = "-_.:@+"
# Python's ``\w`` is Unicode-aware: letters, digits and ``_`` of any script.
PATTERN = r"^[\w\-.:@+]{1,128}$"
_VALID = re.compile(PATTERN)
ERROR_CODE = "invalid_external_id"
RULE = (
    "1-128 letters or digits (any script) or - _ . : @ +; no '/', '%', '?', '#', spaces or"
    " control characters"
)


def is_valid(value: str) -> bool:
    return _VALID.fullmatch(value) is not None


def check(value: str) -> str:
    value = value.strip()
    if not is_valid(value):
        raise PydanticCustomError(ERROR_CODE, "not a valid external id: " + RULE)
    return value


_SCHEMA: dict[str, Any] = {"pattern": PATTERN, "minLength": 1, "maxLength": MAX_LENGTH}

ExternalId = Annotated[
    str,
    AfterValidator(check),
    Field(
        description="The shop's id for the customer: " + RULE + ".",
        json_schema_extra=_SCHEMA,
        examples=["cust-42"],
    ),
]
"""An external id in a body or a path (see the module docstring)."""
