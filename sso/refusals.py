"""Refused provider settings: each names its field, so a page shows it under that field, and
several can be refused at once, so one submit names every wrong field (as the LDAP source
form does). The CLI prints their sentences in turn."""

from collections.abc import Callable

from portal.core.errors import Conflict, UserError


class FieldRefused(UserError):
    """A value refused for one setting; `field` names it (the provider pages' field name, or
    "metadata" for the metadata however it was given), so a page shows the error there."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    @property
    def errors(self) -> list["FieldRefused"]:
        return [self]


class FieldConflict(FieldRefused, Conflict):
    """A setting that clashes with another provider's (an email domain, an IdP)."""


class FieldRefusals(FieldRefused):
    """Several settings refused at once, each in `errors`; the message is all of theirs in
    turn and `field` the first one's."""

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
