"""A Modal agent's output (issue 13), through the unmodified SDK against the fake Modal API:
`parhelia containers logs` (text, `--json`, `--follow`) and the dashboard's `l`, reading on after
new output (V2 sandboxes through the command router's byte offsets, V1 GPU sandboxes through
`SandboxGetLogs` and its entry-id cursor), a sandbox that ended, a stalled or hung call (never a
freeze; E501 at the deadline, the store untouched) and a sandbox Modal does not know (E205)."""

from __future__ import annotations

import time

import pytest

from parhelia.state.settings import ModalSettings, Settings
from parhelia.workers.backends.deadline import DeadlineBackend
from parhelia.workers.backends.modal import ModalBackend
from parhelia.workers.backends.modal_logs import SandboxOutput, utf8_cut
from parhelia.workers.control import ControlPlane
from tests.fake_modal import FakeModalServer
from tests.test_cli import assert_coded_error, create_task
from tests.test_dashboard import make_app, refreshed, table, until
from tests.test_incident_modal import APP, modal_cli_env  # noqa: F401 - the fixture

DEADLINE = 1.0
MARGIN = 8.0  # SDK start-up and the store, on a busy 2-core machine
WAIT = 30.0  # polling bound for output to travel fake -> SDK -> reader thread


def eventually(read, predicate, what: str):
    """Call `read` until `predicate(result)` holds (polling with a deadline: real threads)."""
    deadline = time.monotonic() + WAIT
    while not predicate(result := read()):
        assert time.monotonic() < deadline, f"{what}: last {result!r}"
        time.sleep(0.05)
    return result


@pytest.fixture
def agent(modal_cli_env, fake_modal: FakeModalServer):  # noqa: F811
    """A container dispatched through the CLI onto the fake: (env, container id, sandbox id)."""
    cid = create_task(modal_cli_env, "write the report")["container_id"]
    sid = modal_cli_env.store().get_container(cid).sandbox_id
    assert sid in fake_modal.state.sandboxes
    yield modal_cli_env, cid, sid
    fake_modal.state.reset()  # ends the streams still open on the fake's side


def backend(fake: FakeModalServer, timeout: float = 10.0) -> DeadlineBackend:
    settings = ModalSettings(app=APP, timeout_seconds=timeout)
    return DeadlineBackend(ModalBackend(settings, client=fake.shared_client), timeout)


# -- the CLI ---------------------------------------------------------------------------------


def test_containers_logs_shows_a_modal_agents_stdout_and_stderr(agent, fake_modal):
    env, cid, sid = agent
    fake_modal.state.write_output(sid, "reading the repo\nwriting the rep")
    fake_modal.state.write_output(sid, "ort\n")
    fake_modal.state.write_output(sid, "warning: slow disk\n", stderr=True)

    r = eventually(
        lambda: env.run("containers", "logs", cid),
        lambda r: "warning: slow disk" in r.out,
        "stderr in the log",
    )
    assert r.code == 0, r.err
    # whole lines, a line split across writes joined; stdout and stderr interleave as they come
    assert sorted(r.out.splitlines()) == [
        "reading the repo",
        "warning: slow disk",
        "writing the report",
    ]

    doc = env.ok("containers", "logs", cid[2:8])  # a prefix, as for any id
    assert doc["container_id"] == cid
    assert "writing the report" in doc["text"] and "warning: slow disk" in doc["text"]
    assert doc["next_offset"] == len(doc["text"].encode())
    assert "SandboxStdioReadV2" in fake_modal.state.calls  # the SDK's own V2 stream
    assert fake_modal.state.unimplemented == []


def test_follow_of_an_ended_sandbox_prints_everything_and_returns(agent, fake_modal):
    env, cid, sid = agent
    fake_modal.state.write_output(sid, "done: 3 files changed\n")
    fake_modal.state.write_output(sid, "exit\n", stderr=True)
    fake_modal.state.finish(sid, code=3)

    r = env.run("containers", "logs", cid, "--follow")  # returns: the streams ended
    assert r.code == 0, r.err
    assert "done: 3 files changed" in r.out and "exit" in r.out
    chunk = backend(fake_modal).read_log(sid)
    assert chunk.ended and "done: 3 files changed" in chunk.text


def test_a_terminated_agents_output_stays_readable(agent, fake_modal):
    env, cid, sid = agent
    fake_modal.state.write_output(sid, "last words\n")
    assert env.run("containers", "terminate", cid, "--yes").code == 0
    assert not fake_modal.state.sandboxes[sid].running
    r = env.run("containers", "logs", cid)
    assert r.code == 0 and "last words" in r.out, r.err


def test_a_sandbox_modal_does_not_know_is_a_coded_error(agent, fake_modal):
    env, cid, sid = agent
    fake_modal.state.forget(sid)
    r = env.run("containers", "logs", cid)
    assert_coded_error(r, "E205", sid, "parhelia reconciler run")
    doc = env.run("containers", "logs", cid, "--json").json
    assert doc["success"] is False and doc["error"]["code"] == "E205"


def test_a_hung_log_call_is_e501_at_the_deadline_and_the_store_is_untouched(
    agent, fake_modal, monkeypatch
):
    env, cid, sid = agent
    fake_modal.state.write_output(sid, "something\n")
    store = env.store()
    before = (store.get_container(cid), len(store.events(limit=10_000)))
    monkeypatch.setenv("PARHELIA_MODAL_TIMEOUT_SECONDS", str(DEADLINE))
    fake_modal.state.hang("SandboxWaitV2", 120.0)  # the API stops answering about the sandbox

    t0 = time.monotonic()
    r = env.run("containers", "logs", cid)
    assert time.monotonic() - t0 < DEADLINE + MARGIN
    assert_coded_error(r, "E501", "did not answer within")
    after = (store.get_container(cid), len(store.events(limit=10_000)))
    assert after[0].model_dump() == before[0].model_dump() and after[1] == before[1]


# -- reading on ------------------------------------------------------------------------------


def test_a_reader_resumes_after_new_output_without_repeating(agent, fake_modal):
    _, _, sid = agent
    b = backend(fake_modal)
    fake_modal.state.write_output(sid, "one\n")
    first = eventually(lambda: b.read_log(sid), lambda c: c.text == "one\n", "first output")
    assert (first.offset, first.next_offset, first.ended) == (0, 4, False)
    assert b.read_log(sid, first.next_offset).text == ""  # nothing new yet, at once

    fake_modal.state.write_output(sid, "two\n")
    fake_modal.state.write_output(sid, "oops\n", stderr=True)
    more = eventually(
        lambda: b.read_log(sid, first.next_offset),
        lambda c: "two" in c.text and "oops" in c.text,
        "new output",
    )
    assert "one" not in more.text and more.offset == 4 and more.next_offset == 4 + 9
    fake_modal.state.finish(sid)
    end = eventually(lambda: b.read_log(sid, more.next_offset), lambda c: c.ended, "the end")
    assert end.text == "" and end.next_offset == more.next_offset
    # one stream per descriptor for the whole time, not one per read
    assert fake_modal.state.calls.count("SandboxStdioReadV2") == 2


def test_a_gpu_sandbox_reads_through_get_logs_and_its_entry_cursor(modal_cli_env, fake_modal):  # noqa: F811
    state = fake_modal.state
    state.log_poll_seconds = 0.2  # long polls end early: the SDK reconnects with its cursor
    sb = state.add_sandbox(state.app_id(APP), ["claude"], {"parhelia": "1"}, gpu="T4")
    assert sb.v1
    b = backend(fake_modal)
    state.write_output(sb.sandbox_id, "gpu warming up\n")
    eventually(lambda: b.read_log(sb.sandbox_id), lambda c: "warming" in c.text, "V1 output")
    seen = len(state.requests["SandboxGetLogs"])
    eventually(lambda: len(state.requests["SandboxGetLogs"]), lambda n: n > seen + 2, "reconnects")
    state.write_output(sb.sandbox_id, "epoch 1\n")
    state.finish(sb.sandbox_id)
    chunk = eventually(lambda: b.read_log(sb.sandbox_id), lambda c: c.ended, "V1 end")
    assert chunk.text == "gpu warming up\nepoch 1\n"  # nothing twice across reconnections
    cursors = {r.last_entry_id for r in state.requests["SandboxGetLogs"]}
    assert "" in cursors and len(cursors) > 1  # later polls resumed after an entry id
    state.reset()


def test_a_stalled_stream_never_freezes_a_read(agent, fake_modal):
    _, _, sid = agent
    fake_modal.state.write_output(sid, "late\n")
    fake_modal.state.hang("SandboxStdioReadV2", 3.0, times=2)  # the router holds output back
    b = backend(fake_modal, timeout=2.0)
    first = b.read_log(sid)  # no E501: a silent stream is a quiet agent, answered in time
    assert first.text == "" and not first.ended
    eventually(lambda: b.read_log(sid), lambda c: c.text == "late\n", "output after the stall")


def test_the_kept_output_is_bounded_and_says_what_was_cut(agent, fake_modal):
    _, _, sid = agent
    b = backend(fake_modal)
    inner = b.inner
    fake_modal.state.write_output(sid, "x" * 99 + "\n")
    eventually(lambda: b.read_log(sid), lambda c: c.next_offset == 100, "first 100 bytes")
    out = inner._outputs[sid]
    out.keep_bytes = 150
    for n in range(3):
        fake_modal.state.write_output(sid, f"{n}" * 99 + "\n")
    chunk = eventually(lambda: b.read_log(sid), lambda c: c.next_offset == 400, "400 bytes")
    assert chunk.offset == 250 and chunk.text.startswith("[… 250 earlier bytes")
    assert chunk.text.endswith("1" * 49 + "\n" + "2" * 99 + "\n")
    assert len(out._buf) == 150


def test_utf8_cut_never_splits_a_character():
    text = "aé€😀".encode()
    for end in range(len(text) + 1):
        cut = utf8_cut(text[:end])
        text[:cut].decode()  # would raise on a split character
        assert end - cut < 4


def test_a_stream_error_is_raised_by_the_next_read():
    class Sandbox:  # what SandboxOutput uses of a modal.Sandbox: two iterables of text
        object_id = "sb-x"
        stdout = ["a\n"]

        @property
        def stderr(self):
            raise ConnectionError("router gone")
            yield  # a generator that fails when first read

    out = SandboxOutput(Sandbox())
    out.settle(first_wait=5.0)
    assert out.failed and not out.ended
    with pytest.raises(ConnectionError):
        out.read(0)


# -- the dashboard -----------------------------------------------------------------------------


async def test_l_on_a_modal_container_follows_its_output(agent, fake_modal):
    from parhelia.widgets.logs_screen import LogsScreen

    env, _, sid = agent
    settings = Settings()
    settings.modal.app = APP
    control = ControlPlane(
        env.store(),
        settings,
        default_backend="modal",
        backends={"modal": backend(fake_modal)},
        holder="logs-test",
    )
    fake_modal.state.write_output(sid, "planning\nERROR no tests found\n")
    app = make_app(control)
    async with app.run_test(size=(150, 45)) as pilot:
        await refreshed(pilot, app)
        table(app).focus()
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogsScreen))
        screen = app.screen
        await until(pilot, lambda: "ERROR no tests found" in screen.lines)
        assert screen.lines[:2] == ["planning", "ERROR no tests found"]
        assert screen.error is None and not screen.ended

        fake_modal.state.write_output(sid, "writing tests\n")  # following: no key needed
        await until(pilot, lambda: "writing tests" in screen.lines)
        await pilot.press("slash", *"error")
        assert screen.shown_lines() == ["ERROR no tests found"]
        await pilot.press("escape")

        fake_modal.state.finish(sid, code=0)
        await until(pilot, lambda: screen.ended)
        assert screen.error is None
        assert screen.lines == ["planning", "ERROR no tests found", "writing tests"]
