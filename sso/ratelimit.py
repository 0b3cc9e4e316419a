"""The limit on login starts: `[sso] login_starts_per_minute` per client (an IPv4 address
or an IPv6 /64, see portal.core.ratelimit).

Each GET of a login address counts in portal's rate limiter (scope "sso-login-start"); more
than the limit from one client within the last minute is answered 429.
"""

from flask import current_app

from portal.core.ratelimit import allow

SCOPE = "sso-login-start"


def allow_login_start(client_address: str) -> bool:
    """Record a login start from `client_address`; False when it is over the limit."""
    limit = current_app.config["KURSA"]["sso"]["login_starts_per_minute"]
    return allow(SCOPE, client_address, limit)
