"""The files the docs' upload examples send, made on the spot."""

from __future__ import annotations

from pathlib import Path


def write_samples(folder: Path) -> None:
    """report.docx, data.xlsx, chart.png and notes.txt in ``folder``."""
    import docx
    import openpyxl
    from PIL import Image

    report = docx.Document()
    report.add_heading("Quarterly report", 1)
    report.add_paragraph("Revenue grew 12% while costs stayed flat.")
    report.save(str(folder / "report.docx"))

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Q3"
    sheet.append(["month", "revenue"])
    for month, revenue in (("Jul", 100), ("Aug", 110), ("Sep", 125)):
        sheet.append([month, revenue])
    book.save(folder / "data.xlsx")

    Image.new("RGB", (32, 16), (30, 90, 200)).save(folder / "chart.png")
    (folder / "notes.txt").write_text("Meeting notes: ship on Friday.\n", encoding="utf-8")
