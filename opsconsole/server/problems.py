"""RFC 9457 problem documents: the one shape every error of the ops server takes.

Why a module of its own: the application (:mod:`opsconsole.server.app`) and the routers it includes
(:mod:`opsconsole.server.pods`, :mod:`opsconsole.server.freeze`) all answer errors the same way; putting
the shape here lets the routers use it without importing the app that includes them.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

__all__ = ["PROBLEM", "problem"]

#: The media type of every error answer.
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, *, user_error: bool,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer: ``{"type", "title", "status", "detail", "user_error"}``; a 401 also says how to
    authenticate (``WWW-Authenticate: Bearer``)."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "user_error": user_error}
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="opsconsole"')
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=all_headers)
