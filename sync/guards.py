"""Checks on a change set before it may touch the directory."""

from dataclasses import dataclass

from sync.plan import ChangeSet


@dataclass(frozen=True)
class GuardLimits:
    max_inactivations: int
    max_inactivation_share: float

    @classmethod
    def from_settings(cls, settings: dict) -> "GuardLimits":
        sync = settings["sync"]
        return cls(sync["guard_max_inactivations"], sync["guard_max_inactivation_share"])


def hold_reason(changes: ChangeSet, limits: GuardLimits) -> str | None:
    """Why the run must wait for an admin's approval, or None when it may be applied."""
    count = changes.count("person", "inactivated")
    active = changes.active_persons_before
    if count > limits.max_inactivations:
        return (
            f"The run would inactivate {count} of {active} active persons, more than the "
            f"limit of {limits.max_inactivations}. Check the source; approve the run if "
            "this is right."
        )
    if active and count / active > limits.max_inactivation_share:
        return (
            f"The run would inactivate {count} of {active} active persons "
            f"({count / active:.0%}), more than the limit of "
            f"{limits.max_inactivation_share:.0%}. Check the source; approve the run if "
            "this is right."
        )
    return None
