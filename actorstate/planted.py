"""Planted bugs: deliberate faults the chaos runner's checkers must catch.

``actorstate chaos --inject-bug NAME`` starts its servers with
``ACTORSTATE_PLANTED_BUG=NAME`` in their environment; each name below turns
on one bug in the server, so a run proves the checkers can fail. Nothing
else sets the variable, a server with one active says so at start, and an
unknown name is refused.
"""

from __future__ import annotations

import logging
import os

__all__ = ["ENVIRONMENT_VARIABLE", "PLANTED_BUGS", "active", "check_names"]

ENVIRONMENT_VARIABLE = "ACTORSTATE_PLANTED_BUG"

PLANTED_BUGS = {
    "ack-before-commit": "commit mode replies before the commit (a SIGKILL then loses acknowledged writes)",
    "lose-update-on-conflict": "a write that meets another process's newer version is dropped, "
    "its callers told it succeeded",
    "apply-retry-twice": "a retried write under an idempotency key applies again",
    "reorder-events": "get_context shows the two newest events swapped",
    "leak-across-principals": "over HTTP a session id acts for whichever principal presents it, "
    "as over stdio (another principal's session is reached, not answered like an unknown one)",
    "claim-keeps-epoch": "a PostgreSQL node that claims a session keeps its owner epoch instead of "
    "bumping it, so the old owner's writes are not fenced",
}


def check_names(names: str) -> tuple[str, ...]:
    """The comma-separated ``names``, each a planted bug.

    Error handling:
        Raises ``ValueError`` naming an unknown one and the known ones.
    """
    chosen = tuple(name for name in names.split(",") if name)
    unknown = sorted(set(chosen) - set(PLANTED_BUGS))
    if unknown:
        raise ValueError(
            f"unknown planted bug(s) {', '.join(unknown)}; choose from {', '.join(PLANTED_BUGS)}"
        )
    return chosen


# Unknown names are left out here (importing never fails); serve refuses them, naming them.
_ACTIVE = frozenset(os.environ.get(ENVIRONMENT_VARIABLE, "").split(",")) & frozenset(PLANTED_BUGS)


def active(name: str) -> bool:
    """Whether planted bug ``name`` is on in this process (read once, at import)."""
    assert name in PLANTED_BUGS, name
    return name in _ACTIVE


if _ACTIVE:  # said at import, so an embedding application hears it too, not only serve
    logging.getLogger("actorstate.planted").warning(
        "planted bug(s) on through %s: %s (for the chaos runner only)",
        ENVIRONMENT_VARIABLE,
        ", ".join(sorted(_ACTIVE)),
    )
