"""Which data homes `behavior demo` may write into.

The demo writes synthetic users into the lake it is given. Into a home that holds real
payments that would mix synthetic customers with real ones (or, in another currency, reject
every synthetic row and fail the run). So the demo writes a marker, `demo.json` at the data
home's root (who wrote it, when, the demo's parameters), before anything else, and runs only in a home that holds no data (no file in
the lake, the quarantine, the inbox or a bundle) or that carries the marker (a home an
earlier demo made). A home with data and no marker is refused.
"""

from __future__ import annotations

from datetime import datetime, timezone

from behavior.errors import BehaviorError
from behavior.store import atomic
from behavior.store.datahome import ENV_VAR, DataHome

MARKER = "demo.json"
WRITTEN_BY = "behavior demo"


class NotADemoHome(BehaviorError):
    """The data home holds data that `behavior demo` did not write."""


def _data_in(home: DataHome) -> list[str]:
    """What the home holds, one phrase per place with files (lake, inbox, bundles)."""
    found = []
    for name, folder in (("the lake", home.lake), ("the inbox", home.inbox.parent), ("bundles", home.bundles)):
        if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
            found.append(f"{name} ({folder})")
    return found


def is_demo_home(home: DataHome) -> bool:
    """Whether `home` carries the marker of `behavior demo`."""
    return (home.root / MARKER).is_file()


def claim_for_demo(home: DataHome, **params: object) -> None:
    """Make `home` a demo home (write the marker with `params`), unless it holds data the demo did
    not write: then NotADemoHome, saying how to choose another data home, and nothing is written."""
    if not is_demo_home(home):
        found = _data_in(home)
        if found:
            raise NotADemoHome(
                f"the data home {home.root} holds data that `behavior demo` did not write: {'; '.join(found)}. "
                "The demo would mix synthetic customers into it. Run the demo in a data home of its own: "
                "`make demo DATA_DIR=/tmp/behavior-demo` or `behavior --data-dir /tmp/behavior-demo demo` "
                f"(or set {ENV_VAR}); a demo home is recognised by its {MARKER}")
    atomic.write_json(home.root / MARKER, {"written_by": WRITTEN_BY,
                                           "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                           **params})
