"""Benches never talk to the real Modal: their fleets are made up, and nothing here may leave
127.0.0.1. Imported by every bench script before Parhelia: unless MODAL_SERVER_URL already names a
server on this machine (a bench's own fake), it points the SDK at a closed port here, so a Modal
read fails at once (a fleet's agent reads, the reconciler's listing) instead of reaching out.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused


def keep_modal_local() -> None:
    if urlsplit(os.environ.get("MODAL_SERVER_URL", "")).hostname not in ("127.0.0.1", "localhost"):
        os.environ["MODAL_SERVER_URL"] = NOWHERE


keep_modal_local()
