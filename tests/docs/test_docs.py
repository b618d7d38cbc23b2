"""Every fenced block in docs/ is run or checked, so the docs cannot drift from the code.

What a block's language means here (an HTML comment on the lines just above a fence
changes it; see docs/index.md, "How these pages are tested"):

- ``python``: run as a script; ``bash``: run with ``bash -eu -o pipefail``. Both run in
  a scratch folder holding a link to ``examples/`` (so ``examples/files/report.docx``
  works as it does from the clone's root) and, for pages that name them bare, copies of
  the sample files the repository ships in ``examples/files/``, with ``HOME`` there too,
  against a real server (the offline echo agent, state in ``~/.nanobot/workspace``)
  started for the block on a free port: every ``8900`` in the block is replaced by that
  port. ``$NANOBOT_API_KEY`` is set.
- ``json``: a config.json sample (its keys are config sections): it must load.
- ``yaml``: must parse. ``text``, ``sse``, ``http``, ``console``: shown, not run.

Directives: ``<!-- server: keyed -->`` (the server needs ``$NANOBOT_API_KEY``),
``<!-- server: latest -->`` (``api.history = "latest"``), ``<!-- serve -->`` (the block
is itself a server: it must answer /health, then stop on SIGINT with exit code 0),
``<!-- pytest -->`` (a test module, run by pytest), ``<!-- config-error: MESSAGE -->``,
``<!-- answer: SCHEMA -->`` / ``<!-- request -->`` (JSON checked against /openapi.json's
schemas; a request is also sent and must succeed), ``<!-- output -->`` on a ``text``
block (the previous block's stdout; ``...`` matches anything), and
``<!-- not-run: why -->`` for the few that cannot run here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
import requests
import yaml  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from nanobot_api.adapters.http.openapi import openapi_document
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.app.config import Config, parse_config
from nanobot_api.app.echo import ECHO_MODEL
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.domain.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SAMPLES = ROOT / "examples" / "files"
API_KEY = "sk-docs-0123456789abcdef"
SHOWN = {"text", "sse", "http", "console"}
RUN = {"python", "bash"}
CONFIG_SECTIONS = {"api", "agents", "providers", "channels", "storage", "tools"}
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
DIRECTIVE = re.compile(r"^<!--\s*(?P<name>[\w-]+)\s*(?::\s*(?P<arg>.*?))?\s*-->$")
TIMEOUT_S = 120


@attrs.frozen
class Block:
    path: Path
    line: int
    lang: str
    body: str
    directives: dict[str, str]
    output: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found: list[Block] = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").split("\n")
        directives: dict[str, str] = {}
        while before and (directive := DIRECTIVE.match(before[-1].strip())):
            directives[directive["name"]] = directive["arg"] or ""
            before.pop()
        line = text.count("\n", 0, match.start()) + 1
        block = Block(path, line, match["lang"], match["body"], directives)
        if "output" in directives and found:
            found[-1] = attrs.evolve(found[-1], output=block.body)
        found.append(block)
    return found


def all_blocks() -> list[Block]:
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    return [block for path in pages for block in read_blocks(path)]


def cases() -> list[Any]:
    params = []
    for block in all_blocks():
        if block.lang in SHOWN and "output" not in block.directives:
            continue
        if "output" in block.directives or "not-run" in block.directives:
            # An output is checked with the block it belongs to; the few blocks that
            # cannot run here are counted by a test of their own, not reported as skips.
            continue
        params.append(pytest.param(block, id=block.id))
    return params


# ---- the pieces a block runs with ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class Scratch:
    cwd: Path
    env: dict[str, str]

    @property
    def workspace(self) -> Path:
        return Path(self.env["HOME"]) / ".nanobot" / "workspace"


@pytest.fixture(name="scratch")
def _scratch(tmp_path: Path) -> Scratch:
    for sample in SAMPLES.iterdir():
        shutil.copyfile(sample, tmp_path / sample.name)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    bin_dir = str(Path(sys.executable).parent)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "NANOBOT_", "PYTEST_"))
    }
    env |= {
        "HOME": str(tmp_path),
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "NANOBOT_API_KEY": API_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    return Scratch(tmp_path, env)


@asynccontextmanager
async def docs_server(block: Block, scratch: Scratch) -> AsyncIterator[int]:
    kind = block.directives.get("server", "")
    api = Config().api
    if kind == "keyed":
        api = attrs.evolve(api, api_key=API_KEY)
    elif kind == "latest":
        api = attrs.evolve(api, history="latest")
    elif kind:
        raise AssertionError(f"{block.id}: unknown server {kind!r}")
    config = attrs.evolve(Config(), api=api, workspace=scratch.workspace)
    async with running_server(build(config), api_key=api.api_key) as server:
        yield server.port


def with_port(body: str, port: int) -> str:
    return re.sub(r"\b8900\b", str(port), body)


def command(block: Block, scratch: Scratch, body: str) -> list[str]:
    if "pytest" in block.directives:
        (scratch.cwd / "test_snippet.py").write_text(body)
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_snippet.py"]
    if block.lang == "python":
        (scratch.cwd / "snippet.py").write_text(body)
        return [sys.executable, "snippet.py"]
    return ["bash", "-eu", "-o", "pipefail", "-c", body]


def matches(expected: str, actual: str) -> bool:
    """Doctest-style: ``...`` stands for any text; runs of spaces and tabs count as one."""

    def tidy(text: str) -> str:
        lines = text.strip().split("\n")
        return "\n".join(re.sub(r"[ \t]+", " ", line).rstrip() for line in lines)

    pattern = ".*?".join(re.escape(part) for part in tidy(expected).split("..."))
    return re.fullmatch(pattern, tidy(actual), re.S) is not None


async def run(block: Block, scratch: Scratch) -> None:
    async with docs_server(block, scratch) as port:
        done = await anyio.run_process(
            command(block, scratch, with_port(block.body, port)),
            cwd=scratch.cwd,
            env=scratch.env,
            check=False,
        )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"{block.id} failed:\n{stdout}\n{stderr}"
    if block.output is not None:
        assert matches(block.output, stdout), f"{block.id} printed:\n{stdout}"


async def serve(block: Block, scratch: Scratch) -> None:
    port = free_port()
    body = with_port(block.body, port)
    process = await anyio.open_process(
        command(block, scratch, body), cwd=scratch.cwd, env=scratch.env
    )
    async with process:
        try:
            await wait_for_health(port, process)
            answer = await anyio.to_thread.run_sync(
                lambda: requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
            )
            assert answer.status_code in (200, 401), answer.text
        finally:
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(30):
                code = await process.wait()
    assert code == 0, f"{block.id} exited {code} after SIGINT"


async def wait_for_health(port: int, process: anyio.abc.Process) -> None:
    with anyio.fail_after(60):
        while True:
            assert process.returncode is None, "the server exited before answering"
            try:
                answer = await anyio.to_thread.run_sync(
                    lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                )
            except requests.ConnectionError:
                await anyio.sleep(0.1)
                continue
            assert answer.status_code == 200
            return


def check_json(block: Block) -> None:
    data = json.loads(block.body)
    if "answer" in block.directives or "request" in block.directives:
        name = block.directives.get("answer") or "ChatCompletionRequest"
        document = openapi_document(ECHO_MODEL, HttpSettings())
        schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        Draft202012Validator(schema).validate(data)
        return
    assert isinstance(data, dict), f"{block.id}: a json block is a config sample or a directive"
    assert set(data) <= CONFIG_SECTIONS, f"{block.id}: not a config.json sample"
    environ = {"NANOBOT_API_KEY": API_KEY, "CUSTOM_API_KEY": "sk-x", "OPENAI_API_KEY": "sk-y"}
    if "config-error" in block.directives:
        with pytest.raises(ConfigError) as refused:
            parse_config(data, environ)
        assert refused.value.message == block.directives["config-error"]
    else:
        parse_config(data, environ)


async def send_request(block: Block, scratch: Scratch) -> None:
    async with docs_server(block, scratch) as port:
        answer = await anyio.to_thread.run_sync(
            lambda: requests.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=json.loads(block.body),
                timeout=30,
            )
        )
    assert answer.status_code == 200, answer.text


# ---- the tests -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("block", cases())
async def test_block(block: Block, scratch: Scratch) -> None:
    with anyio.fail_after(TIMEOUT_S):
        if block.lang in RUN:
            await (serve if "serve" in block.directives else run)(block, scratch)
        elif block.lang == "json":
            check_json(block)
            if "request" in block.directives:
                await send_request(block, scratch)
        elif block.lang == "yaml":
            yaml.safe_load(block.body)
        else:
            raise AssertionError(f"{block.id}: no way to run a {block.lang or 'bare'} block")


def test_every_block_has_a_known_language_and_directives() -> None:
    known = {"serve", "server", "pytest", "config-error", "answer", "request", "output"}
    for block in all_blocks():
        unknown = set(block.directives) - known - {"not-run"}
        assert not unknown, f"{block.id}: unknown directive {unknown}"
        if "not-run" in block.directives:
            assert block.directives["not-run"], f"{block.id}: not-run needs its reason"
        else:
            assert block.lang in RUN | SHOWN | {"json", "yaml"}, f"{block.id}: ```{block.lang}"


def test_not_run_blocks_stay_few() -> None:
    skipped = [b.id for b in all_blocks() if "not-run" in b.directives]
    assert len(skipped) <= 8, skipped


def _config_keys(cls: type, path: str = "") -> set[str]:
    """Every key config.json may hold, as ``camelCase`` names of its leaves and sections."""
    keys = set()
    attrs.resolve_types(cls)
    for field in attrs.fields(cls):
        if field.name == "workspace":
            continue  # from --workspace, never from the file
        head, *rest = field.name.split("_")
        name = head + "".join(part.capitalize() for part in rest)
        keys.add(name)
        inner = field.type
        if getattr(inner, "__origin__", None) is dict:
            inner = inner.__args__[1]
        if isinstance(inner, type) and attrs.has(inner):
            keys |= _config_keys(inner)
    return keys


def test_every_config_key_is_documented() -> None:
    page = (DOCS / "reference" / "configuration.md").read_text()
    missing = {
        key for key in _config_keys(Config) if f"`{key}" not in page and f".{key}`" not in page
    }
    assert missing == set()


def test_every_page_is_reachable_from_the_index() -> None:
    index = (DOCS / "index.md").read_text()
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} - {"index.md"}
    assert {page for page in pages if f"({page})" not in index} == set()


def test_every_file_the_docs_upload_ships_in_the_repository(scratch: Scratch) -> None:
    uploaded = set()
    for block in all_blocks():
        named = set(re.findall(r"files=@([\w./-]+)", block.body))
        named |= set(re.findall(r"open\(\"([\w./-]+\.\w+)\", \"rb\"\)", block.body))
        uploaded |= {name for name in named if f"> {name}" not in block.body}  # not made there
    assert "examples/files/report.docx" in uploaded  # the README's own example
    for name in uploaded:
        assert (scratch.cwd / name).is_file(), name
        if name.startswith("examples/"):
            assert (ROOT / name).is_file(), f"{name} is not in the repository"
    assert shutil.which("curl", path=scratch.env["PATH"]) is not None
