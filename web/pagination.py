"""Pagination parameters: ``?page=&per_page=`` (1-based pages) or ``?offset=&limit=``."""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional

DEFAULT_PER_PAGE = 24
MAX_PER_PAGE = 200


class Page(NamedTuple):
    """A resolved window onto a newest-first listing."""

    offset: int
    limit: int

    @property
    def page(self) -> int:
        """1-based page number (exact when offset is a multiple of limit)."""
        return self.offset // self.limit + 1 if self.limit else 1


def _int_arg(args: Mapping[str, str], name: str, minimum: int, maximum: int) -> Optional[int]:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError("{} must be an integer".format(name))
    if value < minimum or value > maximum:
        raise ValueError("{} must be between {} and {}".format(name, minimum, maximum))
    return value


def parse_page(args: Mapping[str, str], default_limit: int = DEFAULT_PER_PAGE) -> Page:
    """Resolve query arguments into (offset, limit); raises ValueError with a message for bad values.

    ``offset``/``limit`` win when given; otherwise ``page``/``per_page``. Mixing offset with page is refused.
    """
    offset = _int_arg(args, "offset", 0, 10 ** 9)
    limit = _int_arg(args, "limit", 1, MAX_PER_PAGE)
    page = _int_arg(args, "page", 1, 10 ** 7)
    per_page = _int_arg(args, "per_page", 1, MAX_PER_PAGE)
    if offset is not None and page is not None:
        raise ValueError("use either offset/limit or page/per_page, not both")
    if offset is not None or limit is not None:
        return Page(offset or 0, limit or per_page or default_limit)
    size = per_page or default_limit
    return Page(((page or 1) - 1) * size, size)
