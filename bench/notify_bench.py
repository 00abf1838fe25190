"""`exposure-client notify` speed (issue 17): e-mails/s and PDF letters/s, with ceilings.

Makes a synthetic breach of --records rows (1,000,000 gives the 100,000-member file
of the target), writes its RESULTS.csv from the generator's ground truth (the check's
own speed is measured by bench/run.py), then runs notify on the whole file and
reports, side by side (with one e-mail worker process, the default):

- e-mails/s against the target of 2,000/s: the whole run on the member file with its
  postal columns emptied (every notice an e-mail; reading, report and all), against
  the ceiling of this file system: creating as many files of the same size the same
  way (temporary name, rename) with no work at all;
- PDF letters/s against the target of 50/s: the whole run on the member file with its
  e-mail column emptied, and the time spent on letters in the mixed run;
- the alternatives that were measured to choose: the standard library's
  `EmailMessage` for the same e-mail, ReportLab laying out every letter on its own
  (platypus, no shared pages), and WeasyPrint for the same letter in HTML (when it
  is installed: `pip install weasyprint`; it needs Debian's pango).

    python bench/notify_bench.py                       # 100,000 members
    python bench/notify_bench.py --records 100000      # 10,000 members, quicker

The machine may be shared: the 1-minute load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from client.notify.config import load_config  # noqa: E402
from client.notify.run import NotifyOptions, run_notify  # noqa: E402
from indexer.build.synth import write_synthetic_breach  # noqa: E402

EXPOSED = "name|birth_date|nir|insurer|marital_status|tp_guarantee"
TARGET_EMAILS = 2000.0
TARGET_LETTERS = 50.0


def results_from_truth(synth: Path, out: Path) -> None:
    with (synth / "members-expected.csv").open(encoding="utf-8", newline="") as source, \
            out.open("w", encoding="utf-8", newline="") as sink:
        writer = csv.writer(sink, lineterminator="\n")
        writer.writerow(["ref", "found", "match", "sources", "exposed", "error"])
        for row in csv.DictReader(source):
            found = row["in_breach"] == "true"
            writer.writerow([row["ref"], "true" if found else "false", row["match"],
                             row["sources"], EXPOSED if found else "", ""])


def one_channel(members: Path, out: Path, keep: str) -> None:
    """The member file with one channel emptied: every notice is an e-mail (keep="email")
    or a letter (keep="postal"); members without that channel get none."""
    postal = ("address_1", "address_2", "address_3", "postcode", "city")
    with members.open(encoding="utf-8", newline="") as source, \
            out.open("w", encoding="utf-8", newline="") as sink:
        reader = csv.DictReader(source, delimiter=";")
        assert reader.fieldnames is not None
        writer = csv.DictWriter(sink, reader.fieldnames, delimiter=";", lineterminator="\n")
        writer.writeheader()
        for row in reader:
            row.update(dict.fromkeys(postal, "") if keep == "email" else {"email": ""})
            writer.writerow(row)


def whole_run(members: Path, results: Path, out: Path) -> tuple[Any, float]:
    began = time.perf_counter()
    tally = run_notify(NotifyOptions(members, results, out, load_config(None)))
    return tally, time.perf_counter() - began


def file_ceiling(directory: Path, count: int, size: int) -> float:
    """Files/s for creating `count` files of `size` bytes as notify does, doing nothing else."""
    directory.mkdir()
    data = os.urandom(size)
    began = time.perf_counter()
    for n in range(count):
        temp, final = directory / f".{n}.part", directory / f"{n}.eml"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.close(fd)
        os.replace(temp, final)
    rate = count / (time.perf_counter() - began)
    shutil.rmtree(directory)
    return rate


def stdlib_email_rate(sample: Path, count: int = 300) -> float:
    """The same message built with email.message.EmailMessage (the obvious way)."""
    import email
    import email.policy
    from email.message import EmailMessage

    parsed = email.message_from_bytes(sample.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    began = time.perf_counter()
    for n in range(count):
        message = EmailMessage()
        message["From"], message["To"] = parsed["From"], f"member{n}@example.org"
        message["Subject"] = parsed["Subject"]
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        message.as_bytes()
    return count / (time.perf_counter() - began)


def letter_markup(count: int) -> list[str]:
    from client.notify.inputs import Result
    from client.notify.run import _Renderer

    options = NotifyOptions(Path("."), Path("."), Path("."), load_config(None))
    import datetime as dt

    renderer = _Renderer(options, dt.date.today())
    bodies = []
    for n in range(count):
        result = Result(n, f"m-{n}", "strong", ("viamedis-2024", "almerys-2024"),
                        tuple(EXPOSED.split("|")), (), "")
        bodies.append(renderer.letter.render(renderer.values("fr", f"Nom {n}", result)))
    return bodies


def platypus_rate(count: int = 100) -> float:
    """ReportLab laying out each letter on its own (platypus), no shared page forms."""
    import io
    import xml.etree.ElementTree as ET

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    from client.notify.letters import LetterStyle

    style = LetterStyle()
    bodies = letter_markup(count)
    began = time.perf_counter()
    story: list[Any] = []
    for body in bodies:
        for element in ET.fromstring(body):
            kind = element.tag if element.tag in style.styles else "p"
            inner = (element.text or "") + "".join(ET.tostring(c, encoding="unicode")
                                                   for c in element)
            story.append(Paragraph(inner.strip(), style.styles[kind]))
        story.append(PageBreak())
    SimpleDocTemplate(io.BytesIO(), pagesize=A4, topMargin=105 * mm).build(story)
    return count / (time.perf_counter() - began)


def weasyprint_rate(count: int = 20) -> float | None:
    try:
        from weasyprint import HTML  # type: ignore[import-not-found]
    except (ImportError, OSError):
        return None
    import re

    bodies = letter_markup(count)
    pages = []
    for body in bodies:
        html = re.sub(r"<(/?)(letter|banner|signature|small)>", r"<\1div>", body)
        html = html.replace("<li>", "<p>• ").replace("</li>", "</p>")
        pages.append(f'<section style="page-break-after: always; padding-top: 85mm">{html}'
                     "</section>")
    document = ("<html><head><style>@page { size: A4; margin: 20mm } body { font: 10pt "
                "'DejaVu Sans' }</style></head><body>" + "".join(pages) + "</body></html>")
    began = time.perf_counter()
    HTML(string=document).write_pdf()
    return count / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000,
                        help="breach rows; the member file has a tenth as many members, at "
                        "most 100,000 (default 1,000,000)")
    parser.add_argument("--synth", type=Path, help="reuse this synth directory")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one "
                        "under var/, on the project's file system)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    (ROOT / "var").mkdir(exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="notify-bench-", dir=ROOT / "var"))
    try:
        synth = args.synth or work / "synth"
        if args.synth is None:
            write_synthetic_breach(synth, records=args.records, seed=17)
        results = work / "results.csv"
        results_from_truth(synth, results)
        out = work / "out"
        options = NotifyOptions(synth / "members.csv", results, out, load_config(None))
        began = time.perf_counter()
        tally = run_notify(options)
        wall = time.perf_counter() - began
        one_channel(synth / "members.csv", work / "by-email.csv", "email")
        only_tally, only_wall = whole_run(work / "by-email.csv", results, work / "out-e")
        one_channel(synth / "members.csv", work / "by-post.csv", "postal")
        post_tally, post_wall = whole_run(work / "by-post.csv", results, work / "out-p")
        emails = sorted((out / "emails").iterdir())
        size = sum(p.stat().st_size for p in emails[:200]) // max(1, min(200, len(emails)))
        ceiling = file_ceiling(work / "ceiling", max(1000, min(tally.emails, 20_000)), size)
        letter_rate = tally.letters / max(tally.letter_seconds, 1e-9)
        figures: dict[str, Any] = {
            "members": tally.members,
            "emails": tally.emails,
            "letters": tally.letters,
            "letter_pages": tally.letter_pages,
            "batches": tally.batches,
            "wall_seconds": round(wall, 1),
            "emails_only_run_emails": only_tally.emails,
            "emails_only_run_seconds": round(only_wall, 1),
            "emails_only_run_per_second": round(only_tally.emails / only_wall),
            "letters_only_run_letters": post_tally.letters,
            "letters_only_run_seconds": round(post_wall, 1),
            "letters_only_run_per_second": round(post_tally.letters / post_wall),
            "email_file_ceiling_per_second": round(ceiling),
            "letters_per_second": round(letter_rate),
            "stdlib_emailmessage_per_second": round(stdlib_email_rate(emails[0])),
            "reportlab_platypus_per_letter_per_second": round(platypus_rate()),
            "weasyprint_letters_per_second": None,
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
        weasy = weasyprint_rate()
        figures["weasyprint_letters_per_second"] = round(weasy, 1) if weasy else None
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    only_rate = figures["emails_only_run_per_second"]
    figures["emails_only_vs_file_ceiling"] = round(only_rate / ceiling, 2)
    rows = [
        ("members in the file", f"{figures['members']:,}", ""),
        ("e-mails/s, whole run, every notice an e-mail", f"{only_rate:,}",
         f"target {TARGET_EMAILS:,.0f}: {only_rate / TARGET_EMAILS:.2f}x "
         f"({figures['emails_only_run_emails']:,} e-mails in "
         f"{figures['emails_only_run_seconds']} s, reading and report included)"),
        ("  file system ceiling, files/s", f"{figures['email_file_ceiling_per_second']:,}",
         f"the run at {only_rate / ceiling:.0%} of it"),
        ("  stdlib EmailMessage, messages/s", f"{figures['stdlib_emailmessage_per_second']:,}",
         "the obvious way, not used"),
        ("letters/s, whole run, every notice a letter",
         f"{figures['letters_only_run_per_second']:,}",
         f"target {TARGET_LETTERS:.0f}: "
         f"{figures['letters_only_run_per_second'] / TARGET_LETTERS:.1f}x "
         f"({figures['letters_only_run_letters']:,} letters in "
         f"{figures['letters_only_run_seconds']} s)"),
        ("  letters/s, their lay-out in the mixed run", f"{figures['letters_per_second']:,}",
         "shared page forms"),
        ("  ReportLab platypus per letter",
         str(figures["reportlab_platypus_per_letter_per_second"]),
         "each letter laid out on its own"),
        ("  WeasyPrint, letters/s", str(figures["weasyprint_letters_per_second"]),
         "not installed" if weasy is None else "same letter as HTML"),
        ("mixed whole run, seconds", str(figures["wall_seconds"]),
         f"{figures['emails']:,} e-mails, {figures['letters']:,} letters "
         f"({figures['letter_pages']:,} pages, {figures['batches']} PDFs), report"),
        ("load average (1 min)", str(figures["load_average_1min"]), "2 cores"),
    ]
    print("| what | measured | against |\n|---|---:|---|")
    for what, value, against in rows:
        print(f"| {what} | {value} | {against} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
