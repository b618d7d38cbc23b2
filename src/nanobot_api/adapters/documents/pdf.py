"""PDF text, page by page, with pypdf."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

from nanobot_api.adapters.documents.base import ThreadedExtractor
from nanobot_api.domain.attachments import MIB, ExtractedText, TextBuilder
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.filetypes import FileKind

if TYPE_CHECKING:
    from pypdf import PageObject, PdfReader

_MAX_DEPTH = 64  # page tree levels; real files have a handful
_END = object()

# A page's text never needs the 75 MB per decoded stream pypdf allows by default.
_STREAM_BOUND = 32 * MIB


class PypdfTextExtractor(ThreadedExtractor):
    """A DocumentReader for PDF: ``--- Page N ---`` before each page's text.

    Reads at most ``limits.max_pages`` pages and ``limits.max_chars`` characters
    within ``limits.time_budget_s`` (checked between pages); past a bound the text
    ends with a truncation marker. pypdf is imported on first use.
    """

    kind = FileKind.PDF
    kind_label = "a PDF"
    valid_as = "PDF"
    parser = "pypdf"

    def parse(self, data: bytes, name: str) -> ExtractedText:
        import pypdf
        from pypdf.errors import PyPdfError

        try:
            # A context variable: this thread's configuration only.
            with pypdf.apply_configuration(
                maximum_declared_stream_length=_STREAM_BOUND,
                zlib_maximum_output_length=_STREAM_BOUND,
                lzw_maximum_output_length=_STREAM_BOUND,
                run_length_maximum_output_length=_STREAM_BOUND,
                array_based_stream_maximum_output_length=_STREAM_BOUND,
                stream_decoding_work_maximum_length=2 * _STREAM_BOUND,
                # Never run an external decoder on a client's file.
                jbig2dec_binary=None,
                disable_legacy_handling=True,
            ):
                return self._extract(data, name)
        except PyPdfError as exc:
            # pypdf's own errors say what is wrong with the file.
            raise InvalidRequest(f"Could not read '{name}': {str(exc)[:200]}") from exc

    def _extract(self, data: bytes, name: str) -> ExtractedText:
        from pypdf import PdfReader

        limits = self._limits
        text = TextBuilder.start(limits)
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidRequest(f"Could not read '{name}': it is password-protected")
        for index, page in enumerate(_pages(reader, max_nodes=10 * limits.max_pages + 100)):
            if index == limits.max_pages:
                text.stop(f"only the first {limits.max_pages} of {_page_count(reader)} pages")
            if text.out_of_time() or not text.add(f"--- Page {index + 1} ---"):
                break
            page_text = page.extract_text().strip()
            if page_text and not text.add(page_text):
                break
        return text.build()


# Attributes a page takes from its ancestors in the page tree when it lacks them.
_INHERITED = ("/Resources", "/MediaBox", "/CropBox", "/Rotate")


def _pages(reader: PdfReader, *, max_nodes: int) -> Iterator[PageObject]:
    """The pages in order, built one at a time.

    ``reader.pages`` first builds every page of the file (about 0.1 ms each, so a
    hostile 10 MB file of 100,000 empty pages takes seconds before the first
    one); this walk stops with the caller. Cycles, shared nodes and a walk past
    ``max_nodes`` nodes end it quietly.
    """
    from pypdf import PageObject
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

    root = reader.root_object.get("/Pages")
    stack: list[tuple[Iterator[object], dict[str, object]]] = [(iter([root]), {})]
    seen: set[tuple[int, int]] = set()
    visited = 0
    while stack and visited < max_nodes:
        kids, inherited = stack[-1]
        kid = next(kids, _END)
        if kid is _END:
            stack.pop()
            continue
        visited += 1
        if isinstance(kid, IndirectObject):
            if (kid.idnum, kid.generation) in seen:
                continue
            seen.add((kid.idnum, kid.generation))
        node = kid.get_object() if isinstance(kid, IndirectObject) else kid
        if not isinstance(node, DictionaryObject):
            continue
        if node.get("/Type") == "/Pages" or "/Kids" in node:
            below = node.get("/Kids")
            below = below.get_object() if isinstance(below, IndirectObject) else below
            if isinstance(below, ArrayObject) and len(stack) < _MAX_DEPTH:
                mine = {a: node[a] for a in _INHERITED if a in node}
                stack.append((iter(below), inherited | mine))
            continue
        page = PageObject(reader, kid if isinstance(kid, IndirectObject) else None)
        if not isinstance(kid, IndirectObject):
            page.update(node)
        for attribute, value in inherited.items():
            if attribute not in page:
                page[NameObject(attribute)] = value
        yield page


def _page_count(reader: PdfReader) -> str:
    """The page count the file declares, for the truncation marker only."""
    from pypdf.generic import DictionaryObject

    pages = reader.root_object.get("/Pages")
    pages = pages.get_object() if pages is not None else None
    count = pages.get("/Count") if isinstance(pages, DictionaryObject) else None
    return str(count) if isinstance(count, int) else "more"
