"""Where a `next` parameter may send the browser: a path of this site, nothing else."""

import re
from urllib.parse import urlsplit

# A path: "/" then no second slash, and no backslash or control character anywhere (browsers
# and URL parsers drop a tab or newline, so "/\t/evil.test" would become "//evil.test", another
# site, and read "\" as "/").
_LOCAL_PATH = re.compile(r"^/(?!/)[^\x00-\x1f\x7f\\]*$")
MAX_LENGTH = 2000


def local_path(target: str | None) -> str | None:
    """`target` when it is a path of this site (with its query), else None."""
    if not target or len(target) > MAX_LENGTH or not _LOCAL_PATH.match(target):
        return None
    if any(char.isspace() and char != " " for char in target):  # no other space of any script
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
