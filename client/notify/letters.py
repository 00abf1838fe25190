"""Printable letters: one merged A4 PDF per batch, for a mail house.

ReportLab lays them out (measured against WeasyPrint on the same two-page letter,
laid out per letter: ~60 letters/s against ~9/s; see bench/notify_bench.py). The body comes from the
Jinja2 template `letter.xml.j2` as a few block elements (h1, h2, p, li, banner,
signature, small) whose inline markup ReportLab's Paragraph reads; the sender, the
recipient's address, the date and the reference are drawn on the first page of each
letter, the address where a French window envelope (DL, window on the right, 45 x
100 mm) shows it once the page is folded in three: 110 mm from the left edge, 50 mm
from the top.
"""

from __future__ import annotations

import io

# The XML parsed is the output of our own letter template, where Jinja2 has escaped
# every member value; it has no DTD (expat refuses entity bombs since 2.4.1 anyway).
import xml.etree.ElementTree as ET  # nosec B405
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Frame, Paragraph

__all__ = ["Letter", "LetterBatch", "LetterStyle", "register_fonts"]

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN: Final = 20 * mm
ADDRESS_LEFT: Final = 110 * mm
ADDRESS_TOP: Final = 50 * mm
ADDRESS_WIDTH: Final = 85 * mm
BODY_TOP_FIRST: Final = 105 * mm  # below the address window and the date line
_HEADINGS: Final = ("h1", "h2")  # kept with the block that follows
_FOLDS: Final = (99 * mm, 198 * mm)  # folded in three for a DL envelope

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
    sender: Sequence[str] = ()  # the insurer's name and address, in the letter's language


class LayoutError(Exception):
    """A block of the letter template is taller than a page."""


class LetterBatch:
    """Lays out a batch of letters into one PDF (bytes).

    Letters whose rendered body is the same text (most of them: the body names the
    breaches and the data, and the recipient only in the address block) share their
    pages: each distinct body is laid out once per batch into PDF form XObjects, one
    per page, and every letter draws its own address block, date, reference and page
    footer over them. This is what makes hundreds of letters a second (platypus per
    letter: ~60/s), and it keeps a batch file small.
    """

    def __init__(self, style: LetterStyle, sender: Sequence[str], logo: Path | None,
                 page_label: str, title: str = "") -> None:
        self.style = style
        self.sender = list(sender)
        self.logo = ImageReader(str(logo)) if logo is not None else None
        self.page_label = page_label
        self.title = title
        self.pages: list[int] = []  # pages of each letter of the last batch

    def _flowables(self, body: str) -> list[Paragraph]:
        root = ET.fromstring(body)  # nosec B314: our template's output, see the import
        story: list[Paragraph] = []
        for element in root:
            kind = element.tag if element.tag in self.style.styles else "p"
            inner = (element.text or "") + "".join(
                ET.tostring(child, encoding="unicode") for child in element)
            story.append(Paragraph(inner.strip(), self.style.styles[kind],
                                   bulletText="•" if kind == "li" else None))
        return story

    def _fill(self, frame: Frame, flowables: list[Paragraph], canvas: Canvas) -> int:
        """Place flowables from the front of the list until the frame is full."""
        width = frame._getAvailableWidth()
        placed = 0
        while flowables:
            head = flowables[0]
            room = frame._y - frame._y1p
            if head.style.name in _HEADINGS and len(flowables) > 1 and placed:
                # A heading needs its own height and two lines of what follows.
                need = (head.wrap(width, room)[1] + head.getSpaceBefore()
                        + head.getSpaceAfter() + 2 * flowables[1].style.leading)
                if need > room:
                    return placed
            if frame.add(head, canvas, trySplit=0):
                del flowables[0]
                placed += 1
                continue
            parts = frame.split(head, canvas) if head.style.name not in _HEADINGS else []
            if len(parts) < 2:
                return placed
            flowables[0:1] = parts
        return placed

    def _layout(self, canvas: Canvas, body: str, prefix: str) -> list[str]:
        """Lay the body out over as many page forms as it needs; their names."""
        flowables = self._flowables(body)
        names: list[str] = []
        while flowables:
            name = f"{prefix}p{len(names) + 1}"
            top = BODY_TOP_FIRST if not names else MARGIN
            frame = Frame(MARGIN, MARGIN, PAGE_WIDTH - 2 * MARGIN, PAGE_HEIGHT - top - MARGIN,
                          leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
            canvas.beginForm(name)
            placed = self._fill(frame, flowables, canvas)
            canvas.endForm()
            if placed == 0:
                raise LayoutError("a block of the letter template does not fit on a page")
            names.append(name)
        return names

    def render(self, letters: Sequence[Letter]) -> bytes:
        buffer = io.BytesIO()
        canvas = Canvas(buffer, pagesize=A4, invariant=1, pageCompression=1)
        canvas.setCreator("exposure-client notify")
        canvas.setTitle(self.title)
        forms: dict[str, list[str]] = {}
        self.pages = []
        for letter in letters:
            names = forms.get(letter.body)
            if names is None:
                names = forms[letter.body] = self._layout(canvas, letter.body,
                                                          f"body{len(forms)}")
            for page, name in enumerate(names, start=1):
                if page == 1:
                    self._first_page(canvas, letter)
                canvas.doForm(name)
                self._footer(canvas, letter, page)
                canvas.showPage()
            self.pages.append(len(names))
        canvas.save()
        return buffer.getvalue()

    def _first_page(self, canvas: Canvas, letter: Letter) -> None:
        regular, bold = self.style.regular, self.style.bold
        top = PAGE_HEIGHT - 15 * mm
        if self.logo is not None:
            width, height = self.logo.getSize()
            scale = min(45 * mm / width, 18 * mm / height)
            canvas.drawImage(self.logo, MARGIN, top - height * scale, width * scale,
                             height * scale, mask="auto")
            top -= height * scale + 4 * mm
        y = top - 4 * mm
        for number, line in enumerate(letter.sender or self.sender):
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

    def _footer(self, canvas: Canvas, letter: Letter, page: int) -> None:
        canvas.setFont(self.style.regular, 8)
        canvas.drawRightString(PAGE_WIDTH - MARGIN, 10 * mm,
                               f"{letter.reference_line} · {self.page_label.format(page=page)}")
