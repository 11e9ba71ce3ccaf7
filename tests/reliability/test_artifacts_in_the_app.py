"""An artifacts folder that cannot be written, met in the app: a clear error where the user
acts (the sidebar, the Launch button), no traceback, nothing queued.

The library and CLI side of the same faults (missing, unwritable, full disk) are in
test_artifacts_faults.py. Tests run as root here, which ignores permission bits, so the
unwritable folder is a file standing where the folder should be.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cifar_core.jobs import JobError, submit_job

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def blocked(tmp_path) -> Path:
    blocker = tmp_path / "artifacts"
    blocker.write_text("a file where the artifacts folder should be")
    return blocker


def test_submitting_a_job_there_is_a_clear_error(blocked, tiny_cifar100):
    with pytest.raises(JobError, match=f"cannot write to the artifacts folder {blocked}"):
        submit_job(blocked, model=1, data=str(tiny_cifar100), overrides={"epochs": 1})
    assert blocked.read_text().startswith("a file")  # left as it was


@pytest.mark.slow
def test_the_app_says_so_and_launches_nothing(blocked, tiny_cifar100):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["artifacts_dir"] = str(blocked)
    at.session_state["data_source"] = str(tiny_cifar100)
    at.run()
    assert not at.exception
    assert any(f"{blocked} is a file, not a folder" in e.value for e in at.sidebar.error)
    at.switch_page("pages/train.py").run()
    at.button(key="train_launch").click().run()
    assert not at.exception
    errors = [e.value for e in at.main.error]
    assert any(e.startswith("Not launched: cannot write to the artifacts folder") for e in errors)
    assert not at.success
    assert blocked.is_file() and blocked.read_text().startswith("a file")
