"""One error shape for every response: RFC 9457 problem details."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from mailwarm._errors import ConfigurationError, MailwarmError

__all__ = ["ERROR_RESPONSES", "Problem", "ProblemDocument", "install_problem_handlers", "problem"]

MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One invalid input: where it is and what is wrong."""

    field: str
    message: str


class ProblemDocument(BaseModel):
    """An RFC 9457 problem details document: every error answer has this shape."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def _described(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": ProblemDocument,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDocument"}}},
    }


# Documented on every route, so clients (and schemathesis) know every answer's shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _described("The request cannot be read."),
    401: _described("Not signed in, or the access token is invalid or expired."),
    403: _described("Signed in, but the role does not allow this."),
    404: _described("No such object in your organisation."),
    409: _described(
        "Conflicts with the current state (a duplicate, an Idempotency-Key reused, "
        "a provider the server has no OAuth app for)."
    ),
    422: _described("Invalid input: `errors` names each field at fault."),
    429: _described("Too many requests: retry after the `Retry-After` seconds."),
    502: _described("A mail provider failed."),
    503: _described("The database does not answer."),
}


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.title = status, detail, title
        self.headers, self.extra = headers or {}, extra


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem-details response."""
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _allowed_methods(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return methods


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, including the framework's own, as problem details."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.detail, title=exc.title, headers=exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path only;
            # a path served by several routes (GET and DELETE ...) allows all of theirs.
            headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
        return problem(exc.status_code, detail, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return problem(
            422, f"{first['field']}: {first['message']}", title="Invalid request", errors=errors
        )

    @app.exception_handler(ConfigurationError)
    async def _configuration(_: Request, exc: ConfigurationError) -> JSONResponse:
        return problem(422, str(exc), title="Invalid request")

    @app.exception_handler(MailwarmError)
    async def _mailwarm(_: Request, exc: MailwarmError) -> JSONResponse:
        return problem(502, str(exc), title="Mail provider error")
