from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nanobot_api.testing import postgres
from nanobot_api.testing.postgres import TemporaryPostgres, temporary_postgres


@pytest.mark.slow
def test_a_server_that_never_answers_is_stopped_and_its_folder_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Orphaned test servers (ppid 1) piled up when start-up failed after the
    # postmaster had been launched: the run must stop what it started.
    started: list[subprocess.Popen[bytes]] = []
    folders: list[Path] = []

    def never_ready(self: TemporaryPostgres) -> None:
        assert self._process is not None
        started.append(self._process)
        folders.append(self.root.parent)  # the temp folder temporary_postgres made
        raise postgres.PostgresUnavailable("did not answer in time (planted)")

    monkeypatch.setattr(TemporaryPostgres, "_wait_ready", never_ready)
    with pytest.raises(postgres.PostgresUnavailable), temporary_postgres():
        pass
    assert len(started) == 1
    assert started[0].poll() is not None
    assert not folders[0].exists()
