"""Every answer of the Kubernetes API emulator other than 2xx, as the ``Status`` object the real API sends.

Why this module exists: the official client turns a ``Status`` body into an ``ApiException`` whose
``status`` and ``reason`` opsconsole and ``kubernetes.core`` act on, so errors must carry the real codes,
reasons and messages. The REST verbs raise :class:`ApiError`; the emulator renders it. The injected
faults that answer an error (``forbidden``, ``throttled``, ``gone``) are rendered here too
(:func:`fault_error`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opsconsole.sandbox.emulator import Fault
from opsconsole.sandbox.kube.resources import JsonObj, Resource, qualified

__all__ = [
    "ApiError",
    "bad_request",
    "conflict",
    "fault_error",
    "invalid",
    "not_allowed",
    "not_found",
    "not_served",
]


class ApiError(Exception):
    """An answer other than 2xx, rendered as a ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: JsonObj | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> JsonObj:
        status: JsonObj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message)


def not_served(message: str = "the server could not find the requested resource") -> ApiError:
    """404 for a path that names no resource."""
    return ApiError(404, "NotFound", message)


def not_found(res: Resource, name: str) -> ApiError:
    """404 for an object that does not exist."""
    return ApiError(
        404,
        "NotFound",
        f'{qualified(res)} "{name}" not found',
        details={"name": name, "group": res.group, "kind": res.plural},
    )


def invalid(res: Resource, name: str, message: str) -> ApiError:
    """422 Invalid: the object breaks a validation rule."""
    return ApiError(
        422,
        "Invalid",
        f'{res.kind}.{res.group or "core"} "{name}" is invalid: {message}',
        details={"name": name, "group": res.group, "kind": res.kind},
    )


def conflict(res: Resource, name: str) -> ApiError:
    """409 Conflict: a write carried a stale ``resourceVersion``."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(res)} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details={"name": name, "group": res.group, "kind": res.plural},
    )


def not_allowed(method: str, res: Resource) -> ApiError:
    """405: the resource does not take this verb."""
    return ApiError(
        405, "MethodNotAllowed", f"the server does not allow this method ({method}) on {qualified(res)}"
    )


def fault_error(fault: Fault, method: str, segments: Sequence[str]) -> ApiError | None:
    """The error an injected fault answers with, or None for faults that answer otherwise.

    ``segments`` are the request path's segments after ``/clusters/<cluster>``.
    """
    if fault.kind == "forbidden":
        if int(fault.param("code", 403)) == 401:
            return ApiError(401, "Unauthorized", "Unauthorized")
        return ApiError(
            403,
            "Forbidden",
            f'/{"/".join(segments)} is forbidden: User "system:anonymous" cannot '
            f"{method.lower()} this resource: the sandbox credentials were revoked",
        )
    if fault.kind == "throttled":
        after = str(fault.param("retry_after", 1))
        return ApiError(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            details={"retryAfterSeconds": int(float(after))},
            headers={"Retry-After": after},
        )
    if fault.kind == "gone":
        return ApiError(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. "
            "You can start a new list without the continue parameter.",
        )
    return None
