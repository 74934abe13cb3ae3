"""Small helpers shared by API views."""

from outreach.common.errors import NotFound

_BIGINT_MAX = 2**63 - 1


def path_id(value: object, *, what: str = "Object") -> int:
    """An id taken from a URL: anything that cannot be a row id is simply not found
    (``abc`` or a number past bigint would otherwise reach Postgres and fail as a 500)."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= _BIGINT_MAX:
        raise NotFound(f"{what} not found.")
    return int(text)
