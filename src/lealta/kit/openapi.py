"""The OpenAPI document, completed with what FastAPI cannot see from the signatures.

- **Security**: operations that take an API key (they depend on ``get_principal``) say so,
  with the two ways to send it (``Authorization: Bearer`` or ``X-API-Key``); public ones
  (``/health``, ``/ready``, ``/metrics``, ``/v1/programme/schema``) declare none.
- **Response headers**: every response carries ``X-Request-Id``.
- **Decimal strings**: amounts accept a number or a decimal string; the string form gets its
  pattern (Pydantic documents it as any string).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <api key>` (create one with `lealta apikey"
        " create`).",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
REQUEST_ID_HEADER: dict[str, Any] = {
    "description": "The request's id (the client's `X-Request-Id`, or a new one), also logged.",
    "schema": {"type": "string"},
}


# Decimal strings as the API reads them back (money travels as "59.90"); 12 integer and 6
# fraction digits fit every amount cap and the 18 significant digits amounts may carry.
DECIMAL_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"
SIGNED_DECIMAL_PATTERN = r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$"


def _describe_decimals(node: Any) -> None:
    """Give the string form of every ``Decimal`` field (``number | string``) its pattern."""
    if isinstance(node, dict):
        branches = node.get("anyOf")
        if isinstance(branches, list) and len(branches) == 2:
            number, text = branches
            if number.get("type") == "number" and text == {"type": "string"}:
                signed = number.get("minimum", -1) < 0
                text["pattern"] = SIGNED_DECIMAL_PATTERN if signed else DECIMAL_PATTERN
        for value in node.values():
            _describe_decimals(value)
    elif isinstance(node, list):
        for value in node:
            _describe_decimals(value)


def _needs(dependant: Dependant, calls: tuple[Callable[..., Any], ...]) -> bool:
    return any(d.call in calls or _needs(d, calls) for d in dependant.dependencies)


def install(app: FastAPI, *principal: Callable[..., Any]) -> None:
    """Wrap ``app.openapi`` so the document is completed once, on first use; operations that
    depend on any of the ``principal`` dependencies take an API key."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = plain()
        secured = {
            (route.path_format, method.lower())
            for route in iter_route_contexts(app.routes)
            if isinstance(getattr(route, "dependant", None), Dependant)
            and _needs(route.dependant, principal)
            for method in route.methods or ()
        }
        document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        _describe_decimals(document.get("components", {}).get("schemas", {}))
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                if (path, method) in secured:
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
                for response in operation.get("responses", {}).values():
                    response.setdefault("headers", {})["X-Request-Id"] = REQUEST_ID_HEADER
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
