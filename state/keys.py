"""The names the store finds its shared rows by (the lease, the settings the reconciler writes
for the dashboard), and the active states as SQL compares them. One place, for the `Store` and
its projection alike."""

from __future__ import annotations

from parhelia.state.enums import ACTIVE_STATES

ACTIVE = tuple(s.value for s in ACTIVE_STATES)
RECONCILER_LEASE = "reconciler"
# This store's control-plane id (`new_plane_id`), written once on the first open; every sandbox
# it dispatches carries it as a tag.
PLANE_KEY = "control_plane.id"
# Per backend: the sandboxes of another control plane its last good listing saw, by sandbox id
# (written by the reconciler, shown by the dashboard, refused by terminate).
FOREIGN_PREFIX = "reconciler.foreign."
IN_GRACE_PREFIX = "reconciler.in_grace."  # {sandbox id: when its orphan grace ends}
