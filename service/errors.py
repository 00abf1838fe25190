"""The service's exceptions: each carries its HTTP status, a stable type and a safe text.

Handlers raise these; one middleware (`service.middleware`) renders them as
`application/problem+json` (RFC 9457) for the API, or as a page for the web form.
Messages never quote what the client sent: it may be an identifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

__all__ = [
    "ApiError",
    "BadRequest",
    "FeatureOff",
    "Forbidden",
    "InvalidIdentifiers",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "Unauthorized",
    "UnsupportedMediaType",
]

PROBLEM_BASE = "https://exposure.invalid/problems/"


class ApiError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str | None]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def problem(self) -> dict[str, object]:
        body: dict[str, object] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = [dict(e) for e in self.errors]
        return body


class BadRequest(ApiError):
    status, slug, title = 400, "malformed-request", "Malformed request"


class Unauthorized(ApiError):
    status, slug, title = 401, "unauthorized", "Missing or unknown API key"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="exposure"'})


class Forbidden(ApiError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(ApiError):
    status, slug, title = 404, "not-found", "Not found"


class FeatureOff(NotFound):
    """A feature this deployment does not offer (private lookups without an OPRF key, or
    an index without a private part). 404, never a 5xx: a 5xx says the service is
    failing, and a proxy that counts it marks every backend down at once (docs/design.md
    §5), when each of them is answering exactly as configured."""

    slug, title = "not-enabled", "Not enabled on this service"


class MethodNotAllowed(ApiError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class RequestTimeout(ApiError):
    """The client stopped sending its request (a slow or stalled body). The middleware
    closes the connection after this answer: a slow client cannot hold it for ever."""

    status, slug, title = 408, "request-timeout", "Request too slow"


class PayloadTooLarge(ApiError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(ApiError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported content type"


class InvalidIdentifiers(ApiError):
    status, slug, title = 422, "invalid-identifiers", "Invalid or incomplete identifiers"


class RateLimited(ApiError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, retry_after: float, detail: str | None = None) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(
            detail or f"Rate limit reached: retry in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )
        self.retry_after = seconds

    @classmethod
    def beyond_burst(cls, cost: float, burst: float, refill_seconds: float) -> RateLimited:
        """A request costing more than the caller's limit ever holds at once: no wait
        lets it through (nothing passes on credit), only a smaller request."""
        return cls(refill_seconds, f"This request costs {cost:g} units and your limit holds "
                   f"at most {burst:g} at once: send at most {burst:g} items per request.")


class NotReady(ApiError):
    status, slug, title = 503, "not-ready", "Service not ready"
