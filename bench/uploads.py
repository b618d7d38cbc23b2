"""Uploads: extraction time of 10 MB documents, and 10 MB uploads through a real server.

Targets: each extraction under 2 s; an upload's peak RSS growth in the server under
3x the file size; /health keeps answering while a document is being extracted.

Run: .venv/bin/python bench/uploads.py [--no-server]
"""

from __future__ import annotations

import base64
import http.client
import json
import select
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from nanobot_api.adapters.documents import DocumentReaderByKind
from nanobot_api.domain.attachments import MIB
from nanobot_api.domain.filetypes import FileKind, detect_kind

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import nanobot_server
from tests import bigfiles, files

TARGET = int(9.5 * MIB)  # "10 MB", safely under the 10 MiB per-file limit


def _big_files() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, mime); documents of ordinary prose and an image."""
    png = files.make_png("bench") + b"\0" * (TARGET - 200)  # trailing bytes after IEND
    return {
        "report.docx": (bigfiles.make_big_docx("bench-docx", TARGET), FileKind.DOCX.mime),
        "sheet.xlsx": (bigfiles.make_big_xlsx("bench-xlsx", TARGET), FileKind.XLSX.mime),
        "paper.pdf": (bigfiles.make_big_pdf("bench-pdf", TARGET), FileKind.PDF.mime),
        "photo.png": (png[:TARGET], FileKind.PNG.mime),
    }


# ---------------------------------------------------------------------------
# In process: extraction time, and how long the event loop is kept from running


async def _extract(data: bytes, name: str) -> tuple[float, float, int, bool]:
    reader = DocumentReaderByKind.standard()
    worst_gap = 0.0
    done = False

    async def watch_loop() -> None:
        nonlocal worst_gap
        last = time.perf_counter()
        while not done:
            await anyio.sleep(0.001)
            now = time.perf_counter()
            worst_gap = max(worst_gap, now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_loop)
        start = time.perf_counter()
        out = await reader.read(detect_kind(data, name), data, name)
        elapsed = time.perf_counter() - start
        done = True
    return elapsed, worst_gap, len(out.text), out.truncated


def extraction(big: dict[str, tuple[bytes, str]]) -> None:
    print("extraction of ~10 MB documents, in process (target < 2 s each)")
    for name, (data, _) in big.items():
        if name.endswith(".png"):
            continue
        runs = [anyio.run(_extract, data, name) for _ in range(3)]
        elapsed = statistics.median(r[0] for r in runs)
        gap = max(r[1] for r in runs)
        chars, truncated = runs[0][2], runs[0][3]
        print(
            f"  {name:12} {len(data) / MIB:5.1f} MB  extract {elapsed:5.2f} s  "
            f"({chars} chars{', truncated' if truncated else ''}); "
            f"longest event-loop stall {gap * 1000:.0f} ms"
        )


# ---------------------------------------------------------------------------
# Through a real server: latency, peak RSS growth, /health meanwhile


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak(pid: int) -> bool:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0) for a process we own.
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _multipart(name: str, data: bytes, mime: str) -> tuple[bytes, str]:
    return files.encode_multipart({"message": "bench"}, [("files", name, data, mime)])


def _json(name: str, data: bytes, mime: str) -> tuple[bytes, str]:
    url = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    part = {"type": "file", "file": {"file_data": url, "filename": name}}
    content = [{"type": "text", "text": "bench"}, part]
    body = json.dumps({"messages": [{"role": "user", "content": content}]}).encode()
    return body, "application/json"


def _post(port: int, body: bytes, content_type: str) -> tuple[int, float, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - start
    conn.close()
    try:
        text = json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        text = payload[:200].decode(errors="replace")
    return response.status, elapsed, text


class _HealthProbe(threading.Thread):
    """Asks /health every 20 ms; records the slowest answer and any failure."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.worst = 0.0
        self.answers = 0
        self.failures = 0

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                ok = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ok = False
            self.worst = max(self.worst, time.perf_counter() - start)
            self.answers += ok
            self.failures += not ok
            time.sleep(0.02)


def upload(
    big: dict[str, tuple[bytes, str]],
    name: str,
    encode: Callable[[str, bytes, str], tuple[bytes, str]],
) -> None:
    data, mime = big[name]
    # A small file of the same kind first, so lazy imports are not counted as growth.
    warm_name, warm_data = name, _warm(name)
    with nanobot_server() as (port, process, _):
        status, _, _ = _post(port, *encode(warm_name, warm_data, mime))
        assert status == 200, status
        body, content_type = encode(name, data, mime)
        baseline = _status_kb(process.pid, "VmRSS")
        exact = _reset_peak(process.pid)
        probe = _HealthProbe(port)
        probe.start()
        status, elapsed, text = _post(port, body, content_type)
        probe.stop.set()
        probe.join()
        growth = (_status_kb(process.pid, "VmHWM") - baseline) / 1024
    size = len(data) / MIB
    print(
        f"  {encode.__name__[1:]:9} {name:12} {size:4.1f} MB  -> {status} in {elapsed:5.2f} s; "
        f"peak RSS growth {growth:6.1f} MB = {growth / size:4.1f}x file"
        f"{'' if exact else ' (peak since start)'}; /health {probe.answers} ok, "
        f"{probe.failures} failed, slowest {probe.worst * 1000:.0f} ms  [{text[-60:]!r}]"
    )


def early_refusal(size_mb: int = 30) -> None:
    """A multipart file over the limit, sent chunked: how much was sent before the 413."""
    body, content_type = files.encode_multipart(
        {"message": "x"}, [("files", "big.bin", b"\0" * (size_mb * MIB), "x/y")]
    )
    with nanobot_server() as (port, _, _):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        sent, answer, start = 0, b"", time.perf_counter()
        for at in range(0, len(body), 64 * 1024):
            piece = body[at : at + 64 * 1024]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            if select.select([sock], [], [], 0)[0]:
                answer = sock.recv(4096)
                break
        elapsed = time.perf_counter() - start
        sock.close()
    status = answer.split(b" ", 2)[1].decode() if answer else "no answer"
    print(
        f"  multipart {size_mb} MB file over the 10 MB limit, no Content-Length: {status} "
        f"after {sent / MIB:.1f} MB sent (socket buffers included), {elapsed * 1000:.0f} ms"
    )


def _warm(name: str) -> bytes:
    makers: dict[str, Callable[[str], bytes]] = {
        ".docx": files.make_docx,
        ".xlsx": files.make_xlsx,
        ".pdf": files.make_pdf,
        ".png": files.make_png,
    }
    return makers[Path(name).suffix]("warm")


def main() -> None:
    started = time.perf_counter()
    big = _big_files()
    print(f"(made the files in {time.perf_counter() - started:.1f} s)")
    extraction(big)
    if "--no-server" in sys.argv:
        return
    print("10 MB uploads through `nanobot serve` (echo agent; target peak RSS growth < 3x)")
    for name in ("photo.png", "report.docx", "sheet.xlsx", "paper.pdf"):
        for encode in (_multipart, _json):
            upload(big, name, encode)
    early_refusal()


if __name__ == "__main__":
    main()
