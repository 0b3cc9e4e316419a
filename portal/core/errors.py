"""Kursa's error hierarchy: a user's value error (shown, 400) versus a server fault.

A refused value of a form or of stored settings is a FieldRefused naming its field, so a page
shows it under that field; checks that do not depend on each other all run (collect) and are
raised together (refuse), so one submit names every wrong field. The CLI prints the sentences
in turn.
"""

from collections.abc import Callable


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


class FieldRefused(UserError):
    """A value refused for one field; `field` names it (the page's field name or the settings
    key, such as "attributes.email" or "metadata"), so a page shows the message there."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    @property
    def errors(self) -> list["FieldRefused"]:
        return [self]


class FieldConflict(FieldRefused, Conflict):
    """A value that clashes with what another object holds (an email domain, an IdP, a name)."""


class FieldRefusals(FieldRefused):
    """Several fields refused at once, each in `errors`; the message is all of theirs in turn
    and `field` the first one's."""

    def __init__(self, errors: list[FieldRefused]):
        super().__init__(errors[0].field, " ".join(str(e) for e in errors))
        self._errors = errors

    @property
    def errors(self) -> list[FieldRefused]:
        return self._errors


def collect(*checks: Callable[[], object]) -> list[FieldRefused]:
    """Run every check, also after one refuses; what they refused, in order."""
    refused = []
    for check in checks:
        try:
            check()
        except FieldRefused as exc:
            refused.extend(exc.errors)
    return refused


def refuse(errors: list[FieldRefused]) -> None:
    """Raise the one refusal, or all of them together; nothing when there is none."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise FieldRefusals(errors)
