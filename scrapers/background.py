"""The background class: images of scenes without an action, from generic queries.

Open-set mining needs a class for "none of these actions" that generalizes, so it is
scraped the way the negative sets of Kinetics were gathered: from many varied,
everyday scenes (people talking to a camera, streets, rooms, landscapes, animals at
rest) rather than from one query. The default queries ship as package data
(``background_queries.txt``); ``--background-queries FILE`` replaces them. A class's
images are dealt round-robin over its queries (:func:`round_robin`), so every query
contributes and one that comes up short leaves its share to the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from clipminer.errors import UsageError

DEFAULT_QUERIES_FILE = "background_queries.txt"
"""The default list, a data file of the ``scrapers`` package."""


def parse_queries(text: str) -> list[str]:
    """One query per line; blank lines and ``#`` comments are ignored.

    White space runs become one space; of queries that differ only in case or spacing
    (one search to an engine) the first is kept.
    """
    queries: dict[str, str] = {}
    for line in text.splitlines():
        query = " ".join(line.split("#", 1)[0].split())
        if query:
            queries.setdefault(query.casefold(), query)
    return list(queries.values())


def read_queries(path: str | Path | None = None) -> list[str]:
    """The generic queries of ``path``, or the default list when ``path`` is None.

    Raises:
        UsageError: ``path`` is not a file, or holds no query.
    """
    if path is None:
        text = resources.files("scrapers").joinpath(DEFAULT_QUERIES_FILE).read_text("utf-8")
        return parse_queries(text)
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such background queries file")
    queries = parse_queries(path.read_text(encoding="utf-8-sig"))
    if not queries:
        raise UsageError(f"{path}: no background queries in it (only blank lines or comments)")
    return queries


def round_robin(total: int, have: Sequence[int]) -> list[int]:
    """Each query's target when a class's ``total`` images are dealt over its queries.

    The images still missing (``total`` less what the queries ``have``) are dealt one at
    a time to the query with the fewest so far, the first of equals: a fresh class gets
    an even split, ``round_robin(7, [0, 0, 0]) == [3, 2, 2]``, and a resumed one evens
    out, ``round_robin(7, [4, 0, 0]) == [4, 2, 1]``. No target is below what its query
    has, so the targets add up to the larger of ``total`` and ``sum(have)``.

    Raises:
        ValueError: a negative count.
    """
    if total < 0 or any(h < 0 for h in have):
        raise ValueError(f"counts must be 0 or more, got total={total} and have={list(have)}")
    extra = total - sum(have)
    if extra <= 0 or not have:
        return list(have)

    def needed(level: int) -> int:  # images that raise every query to at least `level`
        return sum(max(0, level - h) for h in have)

    low, high = min(have), min(have) + extra  # the highest level `extra` reaches
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if needed(middle) <= extra else (low, middle - 1)
    targets = [max(h, low) for h in have]
    left = extra - needed(low)  # fewer than the queries at `low`: one more each, in order
    for i, target in enumerate(targets):
        if left and target == low:
            targets[i] += 1
            left -= 1
    return targets
