"""What makes a username acceptable: an id, never a name, initials or a CPR number."""

import re
import unicodedata
from datetime import date

USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$")
CPR_RE = re.compile(r"^(\d{2})(\d{2})(\d{2})-?(\d{4})$")
_NOT_ALNUM = re.compile(r"[\W_]+")
_SEPARATORS = set("._-@+")


def with_prefix(username: str, prefix: str) -> str:
    """Add the customer's prefix unless it is already there (in any case)."""
    if not prefix or username.casefold().startswith(prefix.casefold()):
        return username
    return prefix + username


def without_prefix(username: str, prefix: str) -> str:
    if prefix and username.casefold().startswith(prefix.casefold()):
        return username[len(prefix) :]
    return username


def is_cpr_number(value: str) -> bool:
    """DDMMYY-XXXX or ten digits whose first six form a real date (any century)."""
    match = CPR_RE.match(value.strip())
    if not match:
        return False
    day, month, year = (int(part) for part in match.groups()[:3])
    for century in (1900, 2000):
        try:
            date(century + year, month, day)
            return True
        except ValueError:
            continue
    return False


def _squash(text: str) -> str:
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFC", text).casefold())


def name_forms(first_name: str, last_name: str) -> set[str]:
    """The person's name run together, in either order, each part alone, and the initials."""
    first_parts = [p for p in re.split(r"[\s-]+", first_name.strip()) if p]
    last_parts = [p for p in re.split(r"[\s-]+", last_name.strip()) if p]
    parts = first_parts + last_parts
    if not parts:
        return set()
    forms = {_squash(p) for p in parts}
    forms.add(_squash("".join(parts)))
    forms.add(_squash("".join(last_parts + first_parts)))
    forms.add(_squash(first_name))
    forms.add(_squash(last_name))
    initials = [p[0] for p in parts]
    forms.add(_squash("".join(initials)))
    forms.add(_squash("".join([p[0] for p in last_parts + first_parts])))
    for first in first_parts:
        for last in last_parts:
            forms.update(_squash(f"{a}{b}") for a, b in ((first, last), (last, first)))
            forms.update(_squash(f"{a[0]}{b[0]}") for a, b in ((first, last), (last, first)))
    forms.discard("")
    # Danish letters as people type them without a Danish keyboard: ø -> o or oe, and so on.
    return {variant for form in forms for variant in _spellings(form)}


_SPELLINGS = (
    str.maketrans({"æ": "ae", "ø": "oe", "å": "aa"}),
    str.maketrans({"æ": "a", "ø": "o", "å": "a"}),
)


def _spellings(form: str) -> set[str]:
    if form.isascii():
        return {form}
    plain = "".join(c for c in unicodedata.normalize("NFKD", form) if c.isascii())
    return {form, plain, *(form.translate(table) for table in _SPELLINGS)}


def username_problem(
    username: str, first_name: str, last_name: str, prefix: str = ""
) -> str | None:
    """Return why `username` is refused, in plain words, or None when it is acceptable."""
    if not username:
        return "The username is empty; every person needs one."
    if not USERNAME_RE.match(username):
        return (
            "The username may only hold letters, digits and . _ - @ + "
            "(no spaces), at most 150 characters."
        )
    bare = without_prefix(username, prefix)
    if not bare:
        return "The username holds only the customer's prefix."
    # Only a username that starts with a digit can be a CPR number (isdigit() accepts every
    # digit the pattern's \d does): the rest skip the pattern and the strip, once per row.
    if bare[0].isdigit() and is_cpr_number(bare):
        return "The username looks like a CPR number; use an id that is not personal data."
    # A name form holds only the name's own characters: a username with any other character
    # cannot be one. That spares building the forms for nearly every row.
    folded = bare.casefold()
    chars = set(folded) - _SEPARATORS if folded.isascii() else set(_squash(bare))
    name_chars = set((first_name + last_name).casefold())
    if not name_chars.isdisjoint("æøåäöüéèáó"):
        name_chars |= set("aeo")  # their plain spellings
    if not chars or not chars <= name_chars:
        return None
    if _squash(bare) in name_forms(first_name, last_name):
        return "The username is the person's name or initials; use an id that is not their name."
    return None
