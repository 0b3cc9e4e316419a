"""Kursa's error hierarchy: a user's value error (shown, 400) versus a server fault."""


class KursaError(Exception):
    """Base of Kursa's own errors."""


class UserError(KursaError):
    """Something a user asked for or supplied is wrong; the message is shown to them."""

    status_code = 400


class NotFound(UserError):
    """The object does not exist, or is outside what the user may see (both look alike)."""

    status_code = 404


class Conflict(UserError):
    """The request is valid but clashes with the current state."""

    status_code = 409


class Forbidden(UserError):
    """The user is known but holds no role for this page (an object outside their branch
    answers NotFound instead, so that its existence is not told)."""

    status_code = 403
