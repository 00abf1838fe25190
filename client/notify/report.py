"""The report for the data protection officer: HTML and PDF, counts only.

It documents the run for the breach register (GDPR art. 33(5)): how many people per
match level, per breach and per data class, the notices produced, the rows that could
not be used, and the date and index generation checked against when known. It never
holds a ref, a name or any other cell of the input files.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from client.notify.texts import SOURCES, Texts, long_date, make_environment

if TYPE_CHECKING:
    from client.notify.run import NotifyOptions, Tally

__all__ = ["render_report"]


@dataclass
class Section:
    title: str
    label: str
    value: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    empty: str = ""
    chart: bool = False


def _day(text: str, texts: Texts) -> str:
    try:
        return long_date(dt.date.fromisoformat(text), texts.table)
    except ValueError:
        return text


def _text(value: str) -> str:
    """Plain text for ReportLab's paragraph markup."""
    return html.escape(value, quote=False)


def _n(value: int) -> str:
    return f"{value:,}".replace(",", "\u202f")


def _sections(options: NotifyOptions, tally: Tally, texts: Texts) -> list[Section]:
    r = texts.table["report"]
    reasons = texts.table["reasons"]
    labels = r["class_labels"]
    results_day = dt.date.fromtimestamp(options.results.stat().st_mtime)
    config = options.config
    context = Section(r["context_title"], r["what"], r["value"], [
        (r["run_date"], long_date(dt.date.today(), texts.table)),
        (r["results_date"], long_date(results_day, texts.table)),
        (r["checked_on"], _day(config.checked_on, texts) or r["not_given"]),
        (r["index_generation"], config.index_generation or r["not_given"]),
    ])
    levels = Section(r["levels_title"], r["what"], r["count"], [
        (r["level_strong"], _n(tally.levels["strong"])),
        (r["level_weak"], _n(tally.levels["weak"])),
        (r["level_similar"], _n(tally.levels["similar"])),
        (r["level_not_found"], _n(tally.levels["not_found"])),
        (r["level_check_error"], _n(tally.levels["check_error"])),
        (r["level_total"], _n(tally.results)),
    ], chart=True)
    breaches = Section(r["breaches_title"], r["what"], r["count"], [
        (SOURCES[source][0] if source in SOURCES else source, _n(count))
        for source, count in sorted(tally.breaches.items())
    ], empty="0")
    classes = Section(r["classes_title"], r["what"], r["count"], [
        (labels.get(name, name), _n(tally.classes[name]))
        for name in (*labels, *sorted(set(tally.classes) - set(labels)))
        if tally.classes[name]
    ], empty="0")
    notices = Section(r["notices_title"], r["what"], r["count"], [
        (r["notices_emails"], _n(tally.emails)),
        (r["notices_letters"], _n(tally.letters)),
        (r["notices_batches"], _n(tally.batches)),
        (r["notices_english"], _n(tally.english)),
        (r["notices_review"], _n(tally.review)),
        (r["notices_no_address"], _n(tally.no_address)),
        (r["notices_resumed"], _n(tally.resumed)),
    ])
    errors = Section(r["errors_title"], r["reason"], r["count"], [
        (reasons.get(reason, reason), _n(count))
        for reason, count in sorted(tally.errors.items(), key=lambda item: -item[1])
    ], empty=r["errors_none"])
    return [context, levels, breaches, classes, notices, errors]


def _chart(tally: Tally, texts: Texts) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.figure import Figure

    r = texts.table["report"]
    level_names = ["strong", "weak", "similar", "not_found", "check_error"]
    level_labels = ["strong", "weak", "similar", "not found", "error"] if (
        texts.language == "en") else ["fort", "faible", "proche", "non trouvé", "erreur"]
    sources = sorted(tally.breaches)
    figure: Figure = plt.figure(figsize=(8, 3.2), dpi=120)
    try:
        left, right = figure.subplots(1, 2)
        values = [tally.levels[name] for name in level_names]
        left.barh(level_labels[::-1], values[::-1], color="#1f5fa8")
        left.set_title(r["chart_levels"], fontsize=10)
        titles = [SOURCES[s][0] if s in SOURCES else s for s in sources]
        right.barh(titles[::-1] or ["-"], [tally.breaches[s] for s in sources][::-1] or [0],
                   color="#b35900")
        right.set_title(r["chart_breaches"], fontsize=10)
        for axes in (left, right):
            axes.tick_params(labelsize=8)
            axes.xaxis.get_major_locator().set_params(integer=True)
            for patch in axes.patches:
                width = patch.get_width()
                axes.annotate(f"{int(width):,}".replace(",", " "),
                              (width, patch.get_y() + patch.get_height() / 2),
                              xytext=(3, 0), textcoords="offset points", va="center",
                              fontsize=7)
            axes.margins(x=0.25)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(figure)


def _pdf(sections: list[Section], texts: Texts, chart: bytes, draft: bool) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    from client.notify.letters import register_fonts

    regular, bold = register_fonts()
    r = texts.table["report"]
    body = ParagraphStyle("body", fontName=regular, fontSize=9.5, leading=13, spaceAfter=6)
    h1 = ParagraphStyle("h1", fontName=bold, fontSize=14, leading=18, spaceAfter=8)
    h2 = ParagraphStyle("h2", fontName=bold, fontSize=11, leading=14, spaceBefore=8,
                        spaceAfter=4)
    draft_style = ParagraphStyle("draft", parent=body, fontName=bold, textColor="#a00000")
    story: list[Any] = [Paragraph(_text(r["title"]), h1), Paragraph(_text(r["lead"]), body)]
    if draft:
        story.append(Paragraph(_text(r["draft"]), draft_style))
    for section in sections:
        story.append(Paragraph(_text(section.title), h2))
        if section.rows:
            data = [[Paragraph(_text(label), body), value] for label, value in section.rows]
            table = Table(data, colWidths=[120 * mm, 40 * mm])
            table.setStyle(TableStyle([
                ("FONT", (0, 0), (-1, -1), regular, 9.5),
                ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#767676")),
            ]))
            story.append(table)
        else:
            story.append(Paragraph(_text(section.empty), body))
        if section.chart:
            story += [Spacer(0, 4 * mm), Image(io.BytesIO(chart), width=170 * mm,
                                                 height=68 * mm)]
    story += [Spacer(0, 6 * mm), Paragraph(_text(r["footer"]), body)]
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, title=r["title"], author="", subject="",
                      creator="exposure-client notify", invariant=1,
                      leftMargin=20 * mm, rightMargin=20 * mm).build(story)
    return buffer.getvalue()


def render_report(options: NotifyOptions, tally: Tally, texts: Texts) -> tuple[bytes, bytes]:
    sections = _sections(options, tally, texts)
    chart = _chart(tally, texts)
    environment = make_environment(options.templates)
    page = environment.get_template("report.html.j2").render(
        lang=texts.language, r=texts.table["report"], draft=texts.draft, sections=sections,
        chart=base64.b64encode(chart).decode("ascii"))
    return page.encode("utf-8"), _pdf(sections, texts, chart, texts.draft)
