"""Checkpoints on Modal, through the unmodified SDK against the fake Modal API: a checkpoint is
`Sandbox.snapshot_filesystem()` (the task command router's TaskSnapshotFilesystem), its ref the
image id; a restore creates a sandbox from that image (ImageFromId), so the files are there."""

from __future__ import annotations

import pytest

from parhelia.state.checkpoint_store import list_checkpoints
from parhelia.state.enums import ContainerState
from parhelia.state.errors import ParheliaError
from parhelia.state.requests import TaskRequest
from parhelia.state.settings import ModalSettings, Settings
from parhelia.workers.backends.modal import ModalBackend
from parhelia.workers.checkpoints import create_checkpoint, diff_checkpoints, restore_checkpoint
from parhelia.workers.control import ControlPlane

APP = "parhelia-checkpoints"


@pytest.fixture
def plane(fake_modal, store, tmp_path):
    settings = Settings()
    settings.modal.app = APP
    backend = ModalBackend(ModalSettings(app=APP), client=fake_modal.shared_client)
    return ControlPlane(
        store, settings, default_backend="modal", backends={"modal": backend}, data_dir=tmp_path
    )


def test_snapshot_is_an_image_and_restore_starts_a_sandbox_from_it(plane, fake_modal):
    first = plane.dispatch(TaskRequest(prompt="write notes", backend="modal"))
    sb = fake_modal.state.sandboxes[first.sandbox_id]
    sb.files["/root/notes.txt"] = b"the agent's notes\n"  # as if the agent had written it

    row = create_checkpoint(plane, first.container_id, note="keep this")
    assert row.backend == "modal" and row.ref in fake_modal.state.snapshots
    assert row.ref.startswith("im-") and row.task_id == first.task_id
    (req,) = fake_modal.state.requests["TaskSnapshotFilesystem"]
    assert req.task_id == sb.task_id

    plane.terminate(first.container_id)
    restored = restore_checkpoint(plane, row.id)
    new = fake_modal.state.sandboxes[restored.sandbox_id]
    assert new.definition.image_id == row.ref
    assert new.files == {"/root/notes.txt": b"the agent's notes\n"}
    assert new.tags["parhelia_container"] == restored.container_id
    assert plane.store.get_container(restored.container_id).meta["restored_from"] == row.id
    assert plane.store.get_task(restored.task_id).prompt == "write notes"
    assert fake_modal.state.unimplemented == []

    with pytest.raises(ParheliaError) as err:  # an image has no file list to compare
        diff_checkpoints(plane, row.id, row.id)
    assert err.value.code == "E901" and len(err.value.suggestions) >= 2


def test_snapshot_of_an_ended_sandbox_is_e600_and_changes_nothing(plane, fake_modal):
    first = plane.dispatch(TaskRequest(prompt="x", backend="modal"))
    fake_modal.state.finish(first.sandbox_id, code=0)
    with pytest.raises(ParheliaError) as err:
        create_checkpoint(plane, first.container_id)
    assert err.value.code == "E600" and len(err.value.suggestions) >= 2
    assert list_checkpoints(plane.store) == []
    (ev,) = plane.store.events(types=["checkpoint.failed"])
    assert ev.details["code"] == "E600" and ev.container_id == first.container_id


def test_restore_of_an_image_modal_no_longer_has_leaves_nothing_running(plane, fake_modal):
    first = plane.dispatch(TaskRequest(prompt="x", backend="modal"))
    row = create_checkpoint(plane, first.container_id)
    fake_modal.state.snapshots.clear()  # expired (its ttl) or deleted
    before = set(fake_modal.state.sandboxes)
    with pytest.raises(ParheliaError) as err:
        restore_checkpoint(plane, row.id)
    assert err.value.code == "E205" and "no such object" in err.value.message
    assert set(fake_modal.state.sandboxes) == before
    failed = [c for c in plane.store.containers() if c.id != first.container_id]
    assert [(c.state, c.termination_reason) for c in failed] == [
        (ContainerState.TERMINATED, "dispatch_failed")
    ]
