"""One notify run: RESULTS.csv + the member file -> e-mails, letters, review, errors, report.

The results of the people to act on (strong, weak, similar) are held by ref; the
member file is then streamed once, in file order, and each member found gets one
notice: an e-mail when the member file has a usable address, else a letter in the
current batch. Nothing here opens a socket, and nothing is logged but counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from markupsafe import escape

from client.notify.config import NotifyConfig
from client.notify.contact import display_name, resolve_contact
from client.notify.emails import Body, EmailComposer, QuotedPrintable
from client.notify.inputs import Member, Result, RowProblem, read_members, read_results
from client.notify.journal import Journal, digest_file
from client.notify.letters import Letter, LetterBatch, LetterStyle
from client.notify.outputs import CsvLog, make_private_dir, write_private
from client.notify.texts import LANGUAGES, Texts, long_date, make_environment

__all__ = ["NotifyOptions", "Tally", "Interrupted", "run_notify"]

ERROR_COLUMNS: Final = ("file", "line", "ref", "column", "reason", "detail")
REVIEW_COLUMNS: Final = ("ref", "member_line", "sources", "exposed", "differences")
_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Interrupted(Exception):
    """Raised by `interrupt_after` (tests: a run stopped part-way)."""


@dataclass(frozen=True)
class NotifyOptions:
    members: Path
    results: Path
    out: Path
    config: NotifyConfig
    templates: Path | None = None
    language: str = "fr"  # for members whose file says nothing
    batch_size: int = 500
    notify_similar: bool = False
    restart: bool = False
    progress: bool = False
    workers: int = 1  # processes making e-mails besides this one (0: all here)
    email_chunk: int = 500  # e-mails per task handed to a worker process


@dataclass
class Tally:
    results: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    breaches: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    emails: int = 0
    letters: int = 0
    letter_pages: int = 0
    batches: int = 0
    english: int = 0
    review: int = 0
    no_address: int = 0
    resumed: int = 0
    members: int = 0
    email_seconds: float = 0.0  # time spent making e-mails and letters (bench/)
    letter_seconds: float = 0.0

    @property
    def notices(self) -> int:
        return self.emails + self.letters


def file_name(ref: str) -> str:
    """The e-mail file of a ref: the ref itself when it is a safe file name."""
    if _SAFE_NAME.fullmatch(ref) and not ref.endswith(".part"):
        return f"{ref}.eml"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", ref)[:40].lstrip("._-") or "ref"
    return f"{safe}~{hashlib.blake2b(ref.encode(), digest_size=5).hexdigest()}.eml"


class _Renderer:
    """The Jinja templates and the texts of both languages, ready for one member."""

    def __init__(self, options: NotifyOptions, today: dt.date) -> None:
        environment = make_environment(options.templates)
        self.texts = {lang: Texts(environment, lang, options.config) for lang in LANGUAGES}
        self.base = {lang: texts.context() for lang, texts in self.texts.items()}
        self.email_text = environment.get_template("email.txt.j2")
        self.email_html = environment.get_template("email.html.j2")
        self.letter = environment.get_template("letter.xml.j2")
        self.dates = {lang: long_date(today, texts.table) for lang, texts in self.texts.items()}
        self._emails: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]],
                           tuple[_Shared, _Shared] | None] = {}
        self.qp = QuotedPrintable()
        self.digest = hashlib.blake2b(digest_size=8)
        for texts in self.texts.values():
            self.digest.update(texts.digest.encode())
        for template in (self.email_text, self.email_html, self.letter):
            assert template.filename is not None
            self.digest.update(Path(template.filename).read_bytes())

    def email(self, lang: str, name: str, result: Result) -> tuple[str, Body, Body, bool]:
        """(subject, text, html, draft) of one e-mail.

        Most members share everything but their name and ref: the two templates are
        rendered once per (language, level, breaches, data) with stand-ins for those
        two, checked once against a real rendering, and split into lines that are
        the same for everyone (quoted-printable encoded once) and the few lines with
        a stand-in (filled and encoded per member; the HTML ones HTML-escaped). A
        template that transforms the name (an insurer's `name|upper`) fails the check
        and is rendered for each member.
        """
        base = self.base[lang]
        subject, draft = base["subject"], base["draft"]
        key = (lang, result.level, result.sources, result.exposed)
        shared = self._emails.get(key)
        personal = not name or _NAME in name or _REF in result.ref
        if shared is not None and not personal:
            text, html = shared
            return subject, text.fill(name, result.ref), html.fill(name, result.ref), draft
        values = self.values(lang, name, result)
        real = (self.email_text.render(values), self.email_html.render(values))
        if key not in self._emails and not personal:
            stand_in = self.values(lang, _NAME, Result(result.line, _REF, result.level,
                                                       result.sources, result.exposed,
                                                       result.differences, ""))
            text = _Shared(self.email_text.render(stand_in), self.qp, html=False)
            html = _Shared(self.email_html.render(stand_in), self.qp, html=True)
            ok = (text.text(name, result.ref), html.text(name, result.ref)) == real
            self._emails[key] = (text, html) if ok else None
        return subject, real[0], real[1], draft

    def values(self, lang: str, name: str, result: Result) -> dict[str, Any]:
        texts = self.texts[lang]
        base = self.base[lang]
        greeting = (base["t"]["greeting"].replace("{name}", name) if name
                    else base["t"]["greeting_anonymous"])
        return {**base, "greeting": greeting, "name": name, "ref": result.ref,
                "weak": result.level != "strong",
                "breaches": texts.breach_lines(result.sources),
                "classes": texts.classes(result.exposed)}


_NAME: Final = "\ue000name\ue000"  # private-use characters: never in a member file
_REF: Final = "\ue000ref\ue000"


class _Shared:
    """A rendered template with stand-ins, as encoded runs of shared lines and the
    lines to fill per member."""

    def __init__(self, rendered: str, qp: QuotedPrintable, *, html: bool) -> None:
        self.rendered = rendered
        self.html = html
        self.parts: list[bytes | str] = []
        run: list[str] = []
        for line in rendered.split("\n"):
            if _NAME in line or _REF in line:
                if run:
                    self.parts.append(qp.encode("\n".join(run)))
                    run = []
                self.parts.append(line)
            else:
                run.append(line)
        if run:
            self.parts.append(qp.encode("\n".join(run)))

    def _value(self, value: str) -> str:
        return str(escape(value)) if self.html else value

    def text(self, name: str, ref: str) -> str:
        return self.rendered.replace(_NAME, self._value(name)).replace(_REF, self._value(ref))

    def fill(self, name: str, ref: str) -> Body:
        name, ref = self._value(name), self._value(ref)
        return tuple(part if isinstance(part, bytes) else
                     part.replace(_NAME, name).replace(_REF, ref) for part in self.parts)


def _results(path: Path, tally: Tally, errors: CsvLog) -> dict[str, Result]:
    actionable: dict[str, Result] = {}
    rows = read_results(path)
    for item in rows:
        if isinstance(item, RowProblem):
            _problem(item, tally, errors)
            continue
        tally.results += 1
        tally.levels[item.level] += 1
        if item.level == "check_error":
            _problem(RowProblem("results", item.line, item.ref, "check_error"), tally, errors,
                     detail=item.error)
        if item.level in ("strong", "weak", "similar"):
            if item.ref in actionable:
                _problem(RowProblem("results", item.line, item.ref, "duplicate_result"),
                         tally, errors)
                continue
            actionable[item.ref] = item
    return actionable


def _problem(problem: RowProblem, tally: Tally, errors: CsvLog, detail: str = "") -> None:
    tally.errors[problem.reason] += 1
    errors.add((problem.file, problem.line, problem.ref, problem.column, problem.reason,
                detail))


class _Run:
    def __init__(self, options: NotifyOptions, interrupt_after: int | None) -> None:
        self.options = options
        self.interrupt_after = interrupt_after
        self.tally = Tally()
        self.out = options.out
        self.emails_dir = self.out / "emails"
        self.letters_dir = self.out / "letters"
        self.today = dt.date.today()
        self.renderer = _Renderer(options, self.today)
        config = options.config
        fingerprint = {
            "members": digest_file(options.members),
            "results": digest_file(options.results),
            "config": config.digest,
            "templates": self.renderer.digest.hexdigest(),
            "language": options.language,
            "batch_size": options.batch_size,
            "notify_similar": options.notify_similar,
        }
        for directory in (self.out, self.emails_dir, self.letters_dir):
            make_private_dir(directory)
        self.journal = Journal(self.out, fingerprint)
        self.journal.open(options.restart)
        if options.restart:
            for old in [*self.emails_dir.glob("*.eml"), *self.letters_dir.glob("batch-*")]:
                old.unlink()
        self.composer = EmailComposer(_sender(config, self.renderer), self.journal.run_key,
                                      self.journal.started, self.renderer.qp)
        self._pool: ProcessPoolExecutor | None = None
        if options.workers > 0:
            # Forked now, before any progress-bar thread exists; fork rather than spawn
            # because spawn re-runs the caller's main module, which may not be a file.
            self._pool = ProcessPoolExecutor(
                options.workers, mp_context=multiprocessing.get_context("fork"),
                initializer=_start_worker,
                initargs=(options, self.today, self.journal.run_key, self.journal.started))
        self._chunk: list[EmailTask] = []
        self._tasks: deque[Future[list[str]]] = deque()
        fr = self.renderer.texts["fr"]
        self.sender_block = [fr.insurer, *fr.address]
        self.letter_style = LetterStyle()
        self.batch: list[tuple[Letter, dict[str, Any]]] = []
        self.batch_number = 0
        self.produced = 0

    # ------------------------------------------------------------------ the run
    def run(self) -> Tally:
        errors = CsvLog(self.out / "errors.csv", ERROR_COLUMNS)
        review = CsvLog(self.out / "review.csv", REVIEW_COLUMNS)
        try:
            members = self._members()  # both headers are checked before any work
            actionable = _results(self.options.results, self.tally, errors)
            remaining = set(actionable)
            seen: set[str] = set()
            for item in members:
                if isinstance(item, RowProblem):
                    _problem(item, self.tally, errors)
                    continue
                self.tally.members += 1
                result = actionable.get(item.ref)
                if item.ref in seen:
                    _problem(RowProblem("members", item.line, item.ref, "duplicate_ref", "ref"),
                             self.tally, errors)
                    continue
                if result is None:
                    continue
                seen.add(item.ref)
                remaining.discard(item.ref)
                if result.level == "similar" and not self.options.notify_similar:
                    self.tally.review += 1
                    review.add((item.ref, item.line, "|".join(result.sources),
                                "|".join(result.exposed), "|".join(result.differences)))
                    continue
                self._notice(item, result, errors)
            self._flush_batch()
            self._drain()
            for ref in sorted(remaining, key=lambda r: actionable[r].line):
                _problem(RowProblem("results", actionable[ref].line, ref, "not_in_members"),
                         self.tally, errors)
        except BaseException:
            errors.abandon()
            review.abandon()
            self._stop_workers()
            self.journal.close()
            raise
        self._stop_workers()
        errors.close()
        review.close()
        self.journal.close()
        return self.tally

    def _members(self) -> Iterator[Member | RowProblem]:
        members = read_members(self.options.members)
        return members if not self.options.progress else self._with_progress(members)

    def _with_progress(self, members: Iterator[Member | RowProblem]
                       ) -> Iterator[Member | RowProblem]:
        from tqdm import tqdm

        total = 0
        with self.options.members.open("rb") as handle:
            while block := handle.read(1 << 20):
                total += block.count(b"\n")
        with tqdm(total=max(0, total - 1), unit="member", unit_scale=True, file=sys.stderr,
                  desc="notify", smoothing=0.05) as bar:
            pending = 0
            for item in members:
                pending += 1
                if pending >= 512:
                    bar.update(pending)
                    pending = 0
                yield item
            bar.update(pending)

    def _notice(self, member: Member, result: Result, errors: CsvLog) -> None:
        contact = resolve_contact(member.fields)
        for reason, column in contact.problems:
            _problem(RowProblem("members", member.line, member.ref, reason, column),
                     self.tally, errors)
        if contact.email is None and contact.postal is None:
            self.tally.no_address += 1
            _problem(RowProblem("members", member.line, member.ref, "no_address"),
                     self.tally, errors)
            return
        self.tally.breaches.update(result.sources)
        self.tally.classes.update(result.exposed)
        lang = contact.language or self.options.language
        self.tally.english += lang == "en"
        name = display_name(member.fields)
        if contact.email is not None:
            self._email(member, result, lang, name, contact.email)
        else:
            assert contact.postal is not None
            self._letter(result, lang, name, contact.postal)
        self.produced += 1
        if self.interrupt_after is not None and self.produced >= self.interrupt_after:
            raise Interrupted(f"stopped after {self.produced} notices")

    def _email(self, member: Member, result: Result, lang: str, name: str,
               address: str) -> None:
        self.tally.emails += 1
        target = file_name(result.ref)
        if target in self.journal.emails:
            self.tally.resumed += 1
            return
        began = time.perf_counter()
        task = (target, name, address, lang, result)
        if self.options.workers < 1:
            make_email(self.renderer, self.composer, self.emails_dir, task)
            self.journal.email_done(target)
        else:
            self._chunk.append(task)
            if len(self._chunk) >= self.options.email_chunk:
                self._submit()
        self.tally.email_seconds += time.perf_counter() - began

    def _submit(self) -> None:
        """Hand the chunk of e-mails to the worker processes; journal finished chunks.

        Rendering an e-mail and creating its file are CPU work (the file system's in
        the kernel): worker processes share that work, where writer threads did not
        help (bench/notify_bench.py)."""
        if self._chunk:
            assert self._pool is not None
            self._tasks.append(self._pool.submit(_make_emails, self._chunk))
            self._chunk = []
        while self._tasks and (len(self._tasks) > 2 * self.options.workers
                               or self._tasks[0].done()):
            self._journal_task()

    def _journal_task(self) -> None:
        for target in self._tasks.popleft().result():
            self.journal.email_done(target)

    def _drain(self) -> None:
        began = time.perf_counter()
        self._submit()
        while self._tasks:
            self._journal_task()
        self.tally.email_seconds += time.perf_counter() - began

    def _stop_workers(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _letter(self, result: Result, lang: str, name: str, postal: tuple[str, ...]) -> None:
        self.tally.letters += 1
        texts = self.renderer.texts[lang]
        values = self.renderer.values(lang, name, result)
        recipient = [name[:38], *postal] if name else list(postal)
        letter = Letter(
            ref=result.ref,
            recipient=recipient[:6],
            date_line=texts.notice("date_line", date=self.renderer.dates[lang]),
            reference_line=texts.notice("reference", ref=result.ref),
            body="",
            sender=[texts.insurer, *texts.address],
        )
        self.batch.append((letter, values))
        if len(self.batch) >= self.options.batch_size:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if not self.batch:
            return
        self.batch_number += 1
        number = self.batch_number
        batch, self.batch = self.batch, []
        self.tally.batches += 1
        if number in self.journal.batches:
            self.tally.resumed += len(batch)
            self.tally.letter_pages += _pages_of(self.letters_dir, number)
            return
        began = time.perf_counter()
        letters = [Letter(letter.ref, letter.recipient, letter.date_line,
                          letter.reference_line, self.renderer.letter.render(values),
                          letter.sender)
                   for letter, values in batch]
        layout = LetterBatch(self.letter_style, self.sender_block, self.options.config.logo,
                             self.renderer.texts["fr"].table["notice"]["page"])
        pdf = layout.render(letters)
        stem = f"batch-{number:04d}"
        rows = ["ref,first_page,pages\n"]
        page = 1
        for letter, pages in zip(letters, layout.pages, strict=True):
            rows.append(f"{_csv_cell(letter.ref)},{page},{pages}\n")
            page += pages
        self.tally.letter_pages += page - 1
        write_private(self.letters_dir / f"{stem}.csv", "".join(rows).encode("utf-8"))
        write_private(self.letters_dir / f"{stem}.pdf", pdf)
        self.journal.batch_done(number)
        self.tally.letter_seconds += time.perf_counter() - began


EmailTask = tuple[str, str, str, str, Result]  # file name, name, address, language, result


def _sender(config: NotifyConfig, renderer: _Renderer) -> str:
    sender = config.sender or config.insurer_email or ""
    name = config.insurer_name or renderer.texts["fr"].insurer
    return f"{name} <{sender}>" if sender and "<" not in sender else sender or name


def make_email(renderer: _Renderer, composer: EmailComposer, directory: Path,
               task: EmailTask) -> None:
    target, name, address, lang, result = task
    subject, text, html, draft = renderer.email(lang, name, result)
    message = composer.compose(ref=result.ref, to_name=name, to_address=address,
                               language=lang, subject=subject, text=text, html=html,
                               draft=draft)
    write_private(directory / target, message)


_worker: tuple[_Renderer, EmailComposer, Path] | None = None


def _start_worker(options: NotifyOptions, today: dt.date, run_key: bytes,
                  started: float) -> None:
    global _worker
    renderer = _Renderer(options, today)
    composer = EmailComposer(_sender(options.config, renderer), run_key, started, renderer.qp)
    _worker = (renderer, composer, options.out / "emails")


def _make_emails(tasks: list[EmailTask]) -> list[str]:
    """In a worker process: make these e-mails; their file names, once all are written."""
    assert _worker is not None
    renderer, composer, directory = _worker
    for task in tasks:
        make_email(renderer, composer, directory, task)
    return [task[0] for task in tasks]


def _csv_cell(value: str) -> str:
    from client.notify.outputs import neutralise

    value = neutralise(value)
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _pages_of(directory: Path, number: int) -> int:
    index = directory / f"batch-{number:04d}.csv"
    try:
        lines = index.read_text(encoding="utf-8").splitlines()[1:]
    except OSError:
        return 0
    return sum(int(line.rsplit(",", 1)[1]) for line in lines if line)


def run_notify(options: NotifyOptions, *, interrupt_after: int | None = None,
               report: bool = True) -> Tally:
    """Make every output of DIR; `interrupt_after` stops after N notices (tests)."""
    run = _Run(options, interrupt_after)
    tally = run.run()
    if report:
        from client.notify.report import render_report

        html, pdf = render_report(options, tally, run.renderer.texts[options.language])
        write_private(options.out / "report.html", html)
        write_private(options.out / "report.pdf", pdf)
    return tally
