"""Printable letters: one merged A4 PDF per batch, for a mail house.

ReportLab lays them out (measured against WeasyPrint on the same two-page letter:
~70-140 letters/s against ~9/s; see bench/notify_bench.py). The body comes from the
Jinja2 template `letter.xml.j2` as a few block elements (h1, h2, p, li, banner,
signature, small) whose inline markup ReportLab's Paragraph reads; the sender, the
recipient's address, the date and the reference are drawn on the first page of each
letter, the address where a French window envelope (DL, window on the right, 45 x
100 mm) shows it once the page is folded in three: 110 mm from the left edge, 50 mm
from the top.
"""

from __future__ import annotations

import copy
import io
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
)

__all__ = ["Letter", "LetterBatch", "LetterStyle", "register_fonts"]

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN: Final = 20 * mm
ADDRESS_LEFT: Final = 110 * mm
ADDRESS_TOP: Final = 50 * mm
ADDRESS_WIDTH: Final = 85 * mm
BODY_TOP_FIRST: Final = 105 * mm  # below the address window and the date line
_FOLDS: Final = (99 * mm, 198 * mm)  # folded in three for a DL envelope
_CACHE_LIMIT: Final = 4096

# DejaVu (Debian's fonts-dejavu-core) covers every Latin name; ReportLab's bundled Vera,
# from which DejaVu grew, is the fallback so that the letters never need a system font.
_FONT_CANDIDATES: Final = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
     "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
)
_FONTS: dict[str, str] = {}


def register_fonts() -> tuple[str, str]:
    """(regular, bold) font names, registered once per process."""
    if _FONTS:
        return _FONTS["regular"], _FONTS["bold"]
    import reportlab

    regular, bold = "Vera", "VeraBd"
    paths: tuple[str, str] | None = None
    for candidate in _FONT_CANDIDATES:
        if all(Path(p).is_file() for p in candidate):
            paths, regular, bold = candidate, "NoticeSans", "NoticeSans-Bold"
            break
    if paths is None:
        fonts = Path(reportlab.__file__).parent / "fonts"
        paths = (str(fonts / "Vera.ttf"), str(fonts / "VeraBd.ttf"))
    pdfmetrics.registerFont(TTFont(regular, paths[0]))
    pdfmetrics.registerFont(TTFont(bold, paths[1]))
    pdfmetrics.registerFontFamily(regular, normal=regular, bold=bold, italic=regular,
                                  boldItalic=bold)
    _FONTS.update(regular=regular, bold=bold)
    return regular, bold


class LetterStyle:
    def __init__(self) -> None:
        regular, bold = register_fonts()
        self.regular, self.bold = regular, bold
        base = dict(fontName=regular, fontSize=10, leading=13.5, spaceAfter=4)
        self.styles = {
            "h1": ParagraphStyle("h1", **{**base, "fontName": bold, "fontSize": 13,
                                          "leading": 16, "spaceAfter": 8}),
            "h2": ParagraphStyle("h2", **{**base, "fontName": bold, "fontSize": 11,
                                          "leading": 14, "spaceBefore": 6, "spaceAfter": 3,
                                          "keepWithNext": 1}),
            "p": ParagraphStyle("p", **base),
            "li": ParagraphStyle("li", **{**base, "leftIndent": 12, "bulletIndent": 2,
                                          "spaceAfter": 2}),
            "banner": ParagraphStyle("banner", **{**base, "fontName": bold,
                                                  "textColor": "#a00000", "borderColor":
                                                  "#a00000", "borderWidth": 1.5,
                                                  "borderPadding": 4, "spaceAfter": 10}),
            "signature": ParagraphStyle("signature", **{**base, "spaceBefore": 4}),
            "small": ParagraphStyle("small", **{**base, "fontSize": 8, "leading": 10,
                                                "textColor": "#404040", "spaceBefore": 10}),
        }


@dataclass(frozen=True, slots=True)
class Letter:
    ref: str
    recipient: Sequence[str]  # the whole address block, the recipient's name first
    date_line: str
    reference_line: str
    body: str  # the rendered letter.xml.j2


class _LetterStart(Flowable):
    """Zero-size marker: the next page drawn belongs to this letter."""

    def __init__(self, letter: Letter, batch: LetterBatch) -> None:
        super().__init__()
        self.letter = letter
        self.batch = batch

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        return 0, 0

    def draw(self) -> None:
        return None


class LetterBatch:
    """Lays out a batch of letters into one PDF (bytes)."""

    def __init__(self, style: LetterStyle, sender: Sequence[str], logo: Path | None,
                 page_label: str) -> None:
        self.style = style
        self.sender = list(sender)
        self.logo = ImageReader(str(logo)) if logo is not None else None
        self.page_label = page_label
        self._paragraphs: dict[tuple[str, str], Paragraph] = {}
        self._current: Letter | None = None
        self._first_page = 1
        self.pages: list[int] = []  # pages of each letter of the last batch

    def _paragraph(self, kind: str, markup: str) -> Paragraph:
        # The same paragraph text recurs in every letter of a language: laid out once,
        # it is reused (ReportLab re-wraps a flowable each time it is placed), which
        # halves the time per letter.
        key = (kind, markup)
        paragraph = self._paragraphs.get(key)
        if paragraph is None:
            if len(self._paragraphs) >= _CACHE_LIMIT:
                self._paragraphs.clear()
            bullet = "•" if kind == "li" else None
            paragraph = Paragraph(markup, self.style.styles[kind], bulletText=bullet)
            self._paragraphs[key] = paragraph
        # A shallow copy: the parsed markup is shared, while the layout state that
        # platypus keeps on a placed flowable (e.g. `_postponed`) stays per use.
        return copy.copy(paragraph)

    def _flowables(self, body: str) -> list[Flowable]:
        root = ET.fromstring(body)
        story: list[Flowable] = []
        for element in root:
            kind = element.tag if element.tag in self.style.styles else "p"
            inner = (element.text or "") + "".join(
                ET.tostring(child, encoding="unicode") for child in element)
            story.append(self._paragraph(kind, inner.strip()))
        return story

    def render(self, letters: Sequence[Letter]) -> bytes:
        buffer = io.BytesIO()
        doc = BaseDocTemplate(buffer, pagesize=A4, title="", author="", subject="",
                              creator="exposure-client notify", invariant=1)
        first = Frame(MARGIN, MARGIN, PAGE_WIDTH - 2 * MARGIN,
                      PAGE_HEIGHT - BODY_TOP_FIRST - MARGIN, id="first",
                      leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
        later = Frame(MARGIN, MARGIN, PAGE_WIDTH - 2 * MARGIN, PAGE_HEIGHT - 2 * MARGIN,
                      id="later", leftPadding=0, rightPadding=0, topPadding=0,
                      bottomPadding=0)
        doc.addPageTemplates([
            PageTemplate("first", [first], onPage=self._first_page_decor,
                         autoNextPageTemplate="later"),
            PageTemplate("later", [later], onPage=self._later_page_decor),
        ])
        self.pages = []
        story: list[Flowable] = []
        for index, letter in enumerate(letters):
            if index:
                story += [NextPageTemplate("first"), PageBreak()]
            story.append(_LetterStart(letter, self))
            story += self._flowables(letter.body)
            story.append(Spacer(0, 0))
        self._pending = list(letters)
        self._current, self._first_page = None, 1
        doc.build(story)
        self._close_letter(doc.page)
        return buffer.getvalue()

    # Page decorations: each first page starts the next letter of the batch.
    def _close_letter(self, last_page: int) -> None:
        if self._current is not None:
            self.pages.append(last_page - self._first_page + 1)

    def _first_page_decor(self, canvas: Canvas, doc: Any) -> None:
        page = canvas.getPageNumber()
        self._close_letter(page - 1)
        letter = self._pending.pop(0)
        self._current, self._first_page = letter, page
        regular, bold = self.style.regular, self.style.bold
        top = PAGE_HEIGHT - 15 * mm
        if self.logo is not None:
            width, height = self.logo.getSize()
            scale = min(45 * mm / width, 18 * mm / height)
            canvas.drawImage(self.logo, MARGIN, top - height * scale, width * scale,
                             height * scale, mask="auto")
            top -= height * scale + 4 * mm
        y = top - 4 * mm
        for number, line in enumerate(self.sender):
            canvas.setFont(bold if number == 0 else regular, 10 if number == 0 else 9)
            canvas.drawString(MARGIN, y, line)
            y -= 4.2 * mm
        canvas.setFont(regular, 10.5)
        y = PAGE_HEIGHT - ADDRESS_TOP - 4 * mm
        for line in letter.recipient:
            canvas.drawString(ADDRESS_LEFT, y, line)
            y -= 4.6 * mm
        canvas.setFont(regular, 10)
        canvas.drawString(ADDRESS_LEFT, PAGE_HEIGHT - 95 * mm, letter.date_line)
        canvas.drawString(MARGIN, PAGE_HEIGHT - 95 * mm, letter.reference_line)
        canvas.setLineWidth(0.3)
        for fold in _FOLDS:  # fold marks in the left margin
            canvas.line(0, PAGE_HEIGHT - fold, 6 * mm, PAGE_HEIGHT - fold)
        self._footer(canvas, 1)

    def _later_page_decor(self, canvas: Canvas, doc: Any) -> None:
        self._footer(canvas, canvas.getPageNumber() - self._first_page + 1)

    def _footer(self, canvas: Canvas, page: int) -> None:
        canvas.setFont(self.style.regular, 8)
        assert self._current is not None
        canvas.drawRightString(PAGE_WIDTH - MARGIN, 10 * mm,
                               f"{self._current.reference_line} · "
                               f"{self.page_label.format(page=page)}")
