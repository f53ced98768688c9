"""What `parhelia session list` costs on Modal (issue 19), through the SDK and the fake Modal API
whose sandboxes run their entrypoints (and so a real tmux) on this machine. Run:
`python bench/modal_sessions.py [N ...]` (default 1 8 24 sandboxes).

Prints, per fleet size: the median time of a listing with activity (one exec per sandbox: tmux
list-sessions and capture-pane), without it, and per sandbox; and a listing while every exec
hangs (it must end at the deadline, 1 s here). The fake runs the exec'd script as a local process,
so the figures are the SDK's and the script's cost, not Modal's network. The machine may be
shared: the load average is printed with the figures.
"""

from __future__ import annotations

import os
import shlex
import statistics
import sys
import tempfile
import time

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

os.environ.setdefault("MODAL_CONFIG_PATH", os.path.join(tempfile.mkdtemp(), "absent.toml"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from parhelia.state.requests import TaskRequest
from parhelia.state.settings import ModalSettings, Settings
from parhelia.state.store import Store
from parhelia.workers.backends.modal import ModalBackend
from parhelia.workers.control import ControlPlane
from parhelia.workers.sessions import SessionService
from tests.fake_modal import FakeModalServer

AGENT = "import time; print('up', flush=True); time.sleep(600)"


def fleet(n: int):
    server = FakeModalServer().start()
    os.environ["MODAL_SERVER_URL"] = server.url
    server.state.run_entrypoints = True
    data = tempfile.mkdtemp()
    settings = Settings()
    settings.modal.app = "bench"
    settings.modal.timeout_seconds = 1.0
    settings.agent.command = f"{sys.executable} -c {shlex.quote(AGENT)} {{prompt}}"
    backend = ModalBackend(ModalSettings(app="bench"), client=server.client())
    plane = ControlPlane(
        Store(f"sqlite:///{data}/p.db"),
        settings,
        default_backend="modal",
        backends={"modal": backend},
        data_dir=data,
    )
    for _ in range(n):
        plane.dispatch(TaskRequest(prompt="bench", backend="modal"))
    return server, plane


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(sizes: list[int]) -> None:
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    for n in sizes:
        server, plane = fleet(n)
        try:
            service = SessionService(plane)
            deadline = time.monotonic() + 60
            while len(service.list(with_activity=False)) < n:
                if time.monotonic() > deadline:
                    raise SystemExit("the sessions never all came up")
                time.sleep(0.1)
            full = timed(service.list, 5)
            bare = timed(lambda s=service: s.list(with_activity=False), 5)
            server.state.exec_hang = True
            t0 = time.perf_counter()
            rows = service.list()
            hung = time.perf_counter() - t0
            assert all(r.state == "unknown" for r in rows), rows
            server.state.exec_hang = False
            print(
                f"{n:3d} sandboxes: list with activity {full * 1000:7.1f} ms "
                f"({full * 1000 / n:5.1f} ms/sandbox), without {bare * 1000:7.1f} ms; "
                f"all hung: {hung:.2f} s (deadline 1 s)"
            )
        finally:
            server.stop()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 8, 24])
