"""A file that an accepted message has still to send outlives the uploads bound
(``api.maxMediaMb``) while its channel is down, and goes out with its bytes."""

from __future__ import annotations

import base64
from pathlib import Path

import attrs
import httpx2

from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.acceptance.test_channels import call, configured
from tests.platforms import Fail, FakePlatforms
from tests.upstream import Calls, ScriptedUpstream, Text


def _stored(media: Path) -> set[str]:
    # Listing a small folder in a test needs no worker thread.
    return {path.name for path in media.iterdir() if path.suffix != ".json"}


def _upload(session: str, data: bytes, text: str = "keep this") -> dict[str, object]:
    url = f"data:text/plain;base64,{base64.b64encode(data).decode()}"
    part = {"type": "file", "file": {"filename": "report.txt", "file_data": url}}
    content = [{"type": "text", "text": text}, part]
    return {"messages": [{"role": "user", "content": content}], "session_id": session}


def _webhook_attempts(fake: FakePlatforms) -> int:
    return sum(1 for arrival in fake.arrivals if arrival.platform == "webhook")


async def test_a_file_waiting_in_the_outbox_outlives_the_bound_and_is_delivered(
    tmp_path: Path, storage_url: str
) -> None:
    report = b"quarterly numbers\n" * 17_000  # 306 kB
    async with ScriptedUpstream(default=lambda _: Text("ok")) as up, FakePlatforms() as fake:
        # The webhook is down: its answer asks for 2 s before the next attempt.
        fake.fail("webhook", Fail(503, retry_after="2"))
        up.add(
            Calls(
                (call(content="Report", channel="webhook", chat_id="ops", media=["report.txt"]),)
            ),
            Text("Sent."),
        )
        config = configured(tmp_path / "workspace", up, fake)
        config = attrs.evolve(
            config,
            api=attrs.evolve(config.api, max_media_mb=1),
            storage=attrs.evolve(config.storage, url=storage_url),
        )
        media = config.workspace / "media" / "api"
        async with (
            running_server(build(config)) as server,
            httpx2.AsyncClient(base_url=server.origin, timeout=30) as client,
        ):
            answer = await client.post("/v1/chat/completions", json=_upload("ops", report))
            assert answer.status_code == 200, answer.text
            (waiting,) = _stored(media)
            await fake.wait_for(lambda f: _webhook_attempts(f) == 1)
            for n in range(4):  # 1.2 MB of other sessions' uploads: over the 1 MiB bound
                other = _upload(f"other-{n}", bytes([65 + n]) * 300_000)
                assert (await client.post("/v1/chat/completions", json=other)).status_code == 200
            # Still down (no second attempt yet), and the bound has removed other files.
            assert _webhook_attempts(fake) == 1
            stored = _stored(media)
            assert waiting in stored
            assert len(stored) < 5
            await fake.wait_for(lambda f: any(p.filename for p in f.messages("webhook")))
        (sent,) = [p for p in fake.messages("webhook") if p.filename]
        assert (sent.filename, sent.data) == ("report.txt", report)
