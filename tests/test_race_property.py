"""Reconcile and dispatch never race, as a property: hypothesis interleaves dispatch, agent exit,
terminate and reconcile steps on the real local backend, and runs dispatches, exits and
terminates *inside* a reconcile (after its rows were read and before the backend answers, or after
the backend was read and before the answer is judged).

After every step: no live process whose row is ended. Once the loops settle: every row whose
process ended is ended, every live process's row is live, and every task has the status its
container gives it (`state.task_end`). Examples are few (real processes): tens of seconds at most."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from parhelia.state.enums import ContainerState as S
from parhelia.state.requests import TaskRequest
from parhelia.state.store import Store
from tests.test_race import finish, make_control, running

EXIT_CODES = st.sampled_from([0, 1, 124])
PICK = st.integers(min_value=0, max_value=50)
ACTION = st.one_of(
    st.tuples(st.just("dispatch"), st.just(0), st.just(0)),
    st.tuples(st.just("exit"), PICK, EXIT_CODES),
    st.tuples(st.just("terminate"), PICK, st.just(0)),
)
MAX_DISPATCHES = 4
EXPECTED_END = {0: "completed", 1: "failed", 124: "timed_out"}


class ReconcileRace(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="parhelia-race-"))
        self.store = Store(f"sqlite:///{self.dir / 'p.db'}")
        self.control, self.gate = make_control(self.store, self.dir / "sb")
        self.local = self.gate.inner
        self.dispatched: list = []
        # how each dispatch's process ended: ("exit", code) on its own, ("terminated", None) by us
        self.ended: dict[str, tuple[str, int | None]] = {}

    # -- the actions, as steps or inside a listing -----------------------------------------

    def _do(self, kind: str, pick: int, code: int) -> None:
        if kind == "dispatch":
            if len(self.dispatched) < MAX_DISPATCHES:
                self.dispatched.append(self.control.dispatch(TaskRequest(prompt="race")))
            return
        if not self.dispatched:
            return
        d = self.dispatched[pick % len(self.dispatched)]
        if kind == "exit":
            if d.sandbox_id not in self.ended:
                finish(self.local, d.sandbox_id, code)
                self.ended[d.sandbox_id] = ("exit", code)
        else:
            self.control.terminate(d.container_id)
            self.ended.setdefault(d.sandbox_id, ("terminated", None))

    @rule()
    def dispatch(self) -> None:
        self._do("dispatch", 0, 0)

    @precondition(lambda self: self.dispatched)
    @rule(pick=PICK, code=EXIT_CODES)
    def agent_exits(self, pick: int, code: int) -> None:
        self._do("exit", pick, code)

    @precondition(lambda self: self.dispatched)
    @rule(pick=PICK)
    def terminate(self, pick: int) -> None:
        self._do("terminate", pick, 0)

    @rule(
        before=st.lists(ACTION, max_size=2),
        after=st.lists(ACTION, max_size=2),
    )
    def reconcile(self, before: list, after: list) -> None:
        def once(actions):
            def hook():
                self.gate.before_list = self.gate.after_list = None  # only this cycle's
                for action in actions:
                    self._do(*action)

            return hook

        self.gate.before_list = once(before) if before else None
        self.gate.after_list = once(after) if after else None
        try:
            self.control.reconcile_once()
        finally:
            self.gate.before_list = self.gate.after_list = None

    # -- what must hold -------------------------------------------------------------------

    @invariant()
    def no_live_process_has_an_ended_row(self) -> None:
        for info in self.local.list():
            if info.running:
                row = self.store.container_by_sandbox("local", info.sandbox_id)
                assert row is not None, f"{info.sandbox_id} runs with no row"
                assert row.state != S.TERMINATED, f"{row.id} says terminated; its process runs"

    def teardown(self) -> None:
        try:
            self._settle_and_check()
        finally:
            for info in self.local.list():
                if info.running:
                    self.local.terminate(info.sandbox_id)
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _settle_and_check(self) -> None:
        for _ in range(2):
            self.control.reconcile_once()
        for d in self.dispatched:
            row = self.store.get_container(d.container_id)
            task = self.store.get_task(d.task_id)
            if running(self.local, d.sandbox_id):
                assert row.state == S.RUNNING and task.status == "running", (row, task)
                continue
            assert row.state in (S.STOPPED, S.TERMINATED), row
            how, code = self.ended[d.sandbox_id]
            want = EXPECTED_END[code] if how == "exit" else "cancelled"
            assert task.status == want, (row, task, how, code)


ReconcileRace.TestCase.settings = settings(
    max_examples=6,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)
TestReconcileRace = ReconcileRace.TestCase
