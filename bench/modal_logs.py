"""A Modal agent's log through the SDK and the fake Modal API. Run: `python bench/modal_logs.py [MIB]`.

Prints: the first read of a sandbox with output (connect, streams, the quiet wait), a follower's
read of new output (write on the fake -> text in `read_log`), the time to stream MIB of output
through a V2 sandbox's stdout, and the memory kept for it (the bounded tail), beside the size.
The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import loopback  # noqa: F401  (bench/loopback.py: Modal stays on 127.0.0.1; first)

os.environ.setdefault("MODAL_CONFIG_PATH", os.path.join(tempfile.mkdtemp(), "absent.toml"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from parhelia.state.settings import ModalSettings
from parhelia.workers.backends.modal import ModalBackend
from tests.fake_modal import FakeModalServer


def main(mib: int) -> None:
    server = FakeModalServer().start()
    client = server.client()
    state = server.state
    backend = ModalBackend(ModalSettings(app="bench"), client=client)
    app_id = state.app_id("bench")
    try:
        firsts = []
        for _ in range(5):
            sb = state.add_sandbox(app_id, ["claude"], {"parhelia": "1"})
            state.write_output(sb.sandbox_id, "hello\n" * 100)
            t0 = time.perf_counter()
            chunk = backend.read_log(sb.sandbox_id)
            firsts.append(time.perf_counter() - t0)
            assert chunk.next_offset == 600, chunk

        follows, offset = [], chunk.next_offset
        for i in range(20):
            state.write_output(sb.sandbox_id, f"line {i}\n")
            t0 = time.perf_counter()
            while not (c := backend.read_log(sb.sandbox_id, offset)).text:
                time.sleep(0.001)
            follows.append(time.perf_counter() - t0)
            offset = c.next_offset

        big = state.add_sandbox(app_id, ["claude"], {"parhelia": "1"})
        line = ("x" * 1023 + "\n").encode()
        for _ in range(mib * 1024):
            state.write_output(big.sandbox_id, line)
        state.output_retained = mib << 20
        state.finish(big.sandbox_id)
        t0, offset = time.perf_counter(), 0
        while not (c := backend.read_log(big.sandbox_id, offset)).ended:
            offset = c.next_offset
            if c.next_offset == c.offset:
                time.sleep(0.01)
        assert c.next_offset == mib << 20, c.next_offset
        streamed = time.perf_counter() - t0
        kept = len(backend._outputs[big.sandbox_id]._buf)
    finally:
        server.stop()
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"first read with output   median {statistics.median(firsts) * 1000:7.1f} ms")
    print(f"follower sees new output median {statistics.median(follows) * 1000:7.1f} ms")
    print(f"{mib} MiB streamed in {streamed:.2f} s ({mib / streamed:.1f} MiB/s)")
    print(f"kept {kept / 2**20:.1f} MiB of {mib} MiB ({kept / (mib << 20):.0%})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
