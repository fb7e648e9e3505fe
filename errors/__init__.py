"""The one error tree of chat2api.

Every failure a client can see is one of these, and each maps to exactly one
OpenAI error envelope ``{"error": {"message", "type", "param", "code"}}`` with
an honest HTTP status (like h11's ``error_status_hint``)::

    Chat2ApiError                      500 server_error
    ├── InvalidRequest                 400 invalid_request_error
    │   └── PayloadTooLarge            413 invalid_request_error
    ├── AuthenticationFailed           401 invalid_request_error / invalid_api_key
    │   └── ProxyAuthRequired          407 invalid_request_error (+ proxy-authenticate)
    ├── PermissionDenied               403 permission_error
    ├── NotFound                       404 invalid_request_error / unknown_url
    │   └── ModelNotFound              404 invalid_request_error / model_not_found
    ├── RateLimited                    429 requests / rate_limit_exceeded (+ retry-after)
    └── UpstreamError                  502 server_error          (the backend failed us)
        ├── UpstreamTimeout            504 server_error
        └── UpstreamUnavailable        503 server_error
            └── ModelDowngraded        503 server_error / model_downgraded

Messages never contain credentials: callers pass masked values only.
"""

from __future__ import annotations

from typing import Any

from ops.requestid import current_id


def printable(text: str) -> str:
    """``text`` with any lone surrogate (from ``\\ud800`` escapes in JSON a client or
    the backend sent) written as ``\\ud800``: such a string cannot be encoded as
    UTF-8, so it could be neither sent in an answer nor logged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class Chat2ApiError(Exception):
    """Base class: an internal error (500)."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        message = printable(message)
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error envelope for this error. A server-side error names
        the request's id, as OpenAI's do, so a report can be matched to the log."""
        message = self.message
        if self.status >= 500:
            rid = current_id()
            if rid is not None:
                message = f"{message} (request id {rid})"
        return {
            "error": {
                "message": message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """Extra response headers this error carries (for example ``retry-after``)."""
        return {}


class InvalidRequest(Chat2ApiError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthenticationFailed(Chat2ApiError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ProxyAuthRequired(AuthenticationFailed):
    """The HTTPS-proxy listener's own credentials (``proxy_auth``) are missing or wrong."""

    status = 407
    code = "proxy_auth_required"

    def headers(self) -> dict[str, str]:
        return {"proxy-authenticate": 'Basic realm="chat2api"'}


class PermissionDenied(Chat2ApiError):
    status = 403
    type = "permission_error"


class NotFound(Chat2ApiError):
    status = 404
    type = "invalid_request_error"
    code = "unknown_url"


class ModelNotFound(NotFound):
    code = "model_not_found"


class RateLimited(Chat2ApiError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, int(round(self.retry_after))))}


class UpstreamError(Chat2ApiError):
    """The ChatGPT backend failed, answered garbage or broke the stream."""

    status = 502
    type = "server_error"


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamUnavailable(UpstreamError):
    status = 503


class ModelDowngraded(UpstreamUnavailable):
    """ChatGPT answered with another model than the one asked for, and the
    operator refuses such answers (``on_downgrade``)."""

    code = "model_downgraded"


class EmulationFailed(Chat2ApiError):
    """The web model did not answer in the form asked for (a required tool call, valid
    arguments, the structured output), also after one corrective turn (service/emulation.py).
    ``code`` names the failure; a 502 because the upstream model, not the client, failed."""

    status = 502
    type = "server_error"
