"""saasfw.security.ratelimit: every public name of rate limiting.

``RateLimit``, ``RateLimiter``, ``RateLimitPolicy``, ``RateLimitSettings`` and
``RateLimitExceeded`` are also on ``saasfw.security``; the decision and metrics types,
the middleware, the storage error and the installer and production rule are here.
"""

from saasfw.security._ratelimit import (
    RateLimitDecision,
    RateLimiter,
    RateLimitExceeded,
    RateLimitMetrics,
    RateLimitPolicy,
    RateLimitSettings,
    RateLimitStorageUnavailable,
    rate_limit_production_problems,
)
from saasfw.security._ratelimit_asgi import RateLimit, RateLimitMiddleware, install_rate_limiter

__all__ = [
    "RateLimit",
    "RateLimitDecision",
    "RateLimitExceeded",
    "RateLimitMetrics",
    "RateLimitMiddleware",
    "RateLimitPolicy",
    "RateLimitSettings",
    "RateLimitStorageUnavailable",
    "RateLimiter",
    "install_rate_limiter",
    "rate_limit_production_problems",
]
