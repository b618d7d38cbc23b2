"""PowerPoint text with python-pptx: ``--- Slide N ---``, then its text, tables and notes."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

from nanobot_api.adapters.documents.base import ThreadedExtractor
from nanobot_api.adapters.documents.zipguard import check_zip, too_much_xml, xml_size
from nanobot_api.domain.attachments import ExtractedText, TextBuilder
from nanobot_api.domain.filetypes import FileKind

_MAX_GROUP_DEPTH = 8  # groups nest; a hostile file could nest them without end
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"


class PptxTextExtractor(ThreadedExtractor):
    """A DocumentReader for PPTX: each slide's text frames, tables (rows of
    tab-separated cells) and speaker notes, in slide order.

    The zip is checked against ``limits`` before python-pptx opens it; at most
    ``limits.max_slides`` slides within ``limits.max_chars`` and
    ``limits.time_budget_s`` (checked between slides). python-pptx is imported on
    first use.
    """

    kind = FileKind.PPTX
    kind_label = "a PowerPoint presentation"
    valid_as = "PowerPoint presentation"
    parser = "python-pptx"

    def parse(self, data: bytes, name: str) -> ExtractedText:
        members = check_zip(data, name, self._limits)
        # python-pptx parses every XML part when it opens the file.
        if xml_size(members) > self._limits.max_parsed_xml_bytes:
            raise too_much_xml(name, self._limits)
        return self._extract(data)

    def _extract(self, data: bytes) -> ExtractedText:
        import pptx

        limits = self._limits
        text = TextBuilder.start(limits)
        slides = pptx.Presentation(io.BytesIO(data)).slides
        count = len(slides)
        for number, slide in enumerate(slides, 1):
            if number > limits.max_slides:
                text.stop(f"only the first {limits.max_slides} of {count} slides")
            if text.out_of_time() or not text.add(f"--- Slide {number} ---"):
                break
            if not _add_all(text, _slide_lines(slide)):
                break
        return text.build()


def _add_all(text: TextBuilder, lines: Iterable[str]) -> bool:
    """Adds the non-blank lines, one at a time; False once the text is full."""
    for seen, line in enumerate(lines):
        if seen % 256 == 255 and text.out_of_time():
            return False
        if line.strip() and not text.add(line):
            return False
    return True


def _slide_lines(slide: Any) -> Iterator[str]:
    yield from _shape_lines(slide.shapes, 0)
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        if notes is not None and notes.text.strip():
            yield f"Notes: {' '.join(notes.text.split())}"


def _shape_lines(shapes: Iterable[Any], depth: int) -> Iterator[str]:
    for shape in shapes:
        if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            # Paragraph by paragraph from the XML: python-pptx's ``paragraphs`` builds
            # them all first, seconds for a hostile text frame of a million.
            body = shape.element.find(f"{_P}txBody")
            for paragraph in body.iterchildren(f"{_A}p") if body is not None else ():
                yield paragraph.text  # python-pptx's element class: the paragraph's text
        if getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                yield "\t".join(" ".join(cell.text.split()) for cell in row.cells)
        if depth < _MAX_GROUP_DEPTH and hasattr(shape, "shapes"):
            yield from _shape_lines(shape.shapes, depth + 1)
