"""`exposure-client notify` on the results of a real check against a real service.

The synthetic breach's member file (with its contact columns) is checked by the real
`exposure-client check` against a real `exposure-serve`; `notify` then turns the
results into e-mails, letters, review and error lists and the DPO report. The
e-mails are parsed back with the standard library's `email` package, the letters are
read with poppler's `pdftotext` (the address block cropped at the envelope window)
and looked at as pictures rendered by `pdftoppm`, and the HTML e-mail goes through
axe-core in headless Chromium.
"""

from __future__ import annotations

import csv
import email
import email.policy
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import live_server

from client.bulk import detect_layout
from client.bulk import main as client_main
from client.bulk import read_members as bulk_read_members
from client.notify.config import load_config
from client.notify.contact import MAX_LINE, resolve_contact
from client.notify.inputs import InputError, read_members, read_results
from client.notify.run import NotifyOptions, file_name, run_notify
from indexer.core.matchkeys import QUERY_FIELDS
from service.resources.apikeys import KeyStore

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "client" / "notify" / "templates"
PDFTOTEXT = shutil.which("pdftotext")
PDFTOPPM = shutil.which("pdftoppm")
needs_poppler = pytest.mark.skipif(
    (PDFTOTEXT is None or PDFTOPPM is None) and not os.environ.get("CI"),
    reason="poppler-utils is missing: `apt-get install poppler-utils` (CI installs it)")
MM = 72 / 25.4  # PDF points per millimetre

CONFIG = """\
[insurer]
name = "Mutuelle Exemple"
address = ["12 rue de la Paix", "75002 Paris"]
phone = "01 23 45 67 89"
email = "contact@mutuelle-exemple.example"
website = "https://www.mutuelle-exemple.example"
logo = "logo.png"
sender = "Mutuelle Exemple <information@mutuelle-exemple.example>"

[dpo]
name = "Délégué à la protection des données"
email = "dpo@mutuelle-exemple.example"

[signature]
name = "Marie Martin"
title = "Directrice générale"

[notice]
measures = ["Nous surveillons les demandes inhabituelles sur les contrats concernés."]

[check]
index_generation = "g-test-0001"
checked_on = "2026-12-01"
"""


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Checked:
    members: Path
    results: Path
    rows: list[dict[str, str]]  # the member file
    verdicts: dict[str, dict[str, str]]  # RESULTS.csv by ref


@pytest.fixture(scope="module")
def checked(breach: Any, tmp_path_factory: pytest.TempPathFactory) -> Checked:
    """The synthetic member file checked by the real client against a real service."""
    work = tmp_path_factory.mktemp("notify-check")
    keys_db = work / "keys.sqlite"
    store = KeyStore(keys_db)
    try:
        _, token = store.create("Notify test insurer")
    finally:
        store.close()
    key_file = work / "api-key"
    key_file.write_text(token, encoding="utf-8")
    key_file.chmod(0o600)
    results = work / "results.csv"
    members = breach.dir / "members.csv"
    with live_server(breach.index_dir, breach.pepper_file, work, "--keys-db", str(keys_db),
                     "--anon-rate", "0") as server:
        status = client_main(["check", str(members), "--url", f"http://127.0.0.1:{server.port}",
                              "--out", str(results), "--api-key-file", str(key_file),
                              "--no-progress"])
    assert status == 0
    with members.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter=";"))
    with results.open(encoding="utf-8", newline="") as stream:
        verdicts = {row["ref"]: row for row in csv.DictReader(stream)}
    return Checked(members, results, rows, verdicts)


def write_config(directory: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    figure = plt.figure(figsize=(2, 0.6), dpi=100)
    figure.text(0.05, 0.3, "Mutuelle Exemple", fontsize=12, color="#1f5fa8")
    figure.savefig(directory / "logo.png")
    plt.close(figure)
    path = directory / "notify.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def notify(*args: str | Path) -> int:
    return client_main(["notify", *(str(a) for a in args), "--no-progress"])


@pytest.fixture(scope="module")
def notified(checked: Checked, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notify-out")
    config = write_config(root / "config")
    out = root / "out"
    assert notify(checked.members, checked.results, "--out", out, "--config", config,
                  "--batch-size", "20") == 0
    return out


@pytest.fixture(scope="module")
def drafted(checked: Checked, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("notify-draft") / "out"
    assert notify(checked.members, checked.results, "--out", out) == 0
    return out


@dataclass(frozen=True)
class Expected:
    emails: dict[str, dict[str, str]]  # ref -> member row
    letters: dict[str, dict[str, str]]
    no_address: set[str]
    similar: set[str]


def expected_notices(checked: Checked) -> Expected:
    """Who should get what, worked out here from the member file and the results."""
    emails: dict[str, dict[str, str]] = {}
    letters: dict[str, dict[str, str]] = {}
    no_address: set[str] = set()
    similar: set[str] = set()
    for row in checked.rows:
        verdict = checked.verdicts[row["ref"]]
        if verdict["match"] == "similar":
            similar.add(row["ref"])
        if verdict["match"] not in ("strong", "weak"):
            continue
        if re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", row["email"]):
            emails[row["ref"]] = row
        elif row["address_1"] and re.fullmatch(r"\d{5}", row["postcode"]) and row["city"]:
            letters[row["ref"]] = row
        else:
            no_address.add(row["ref"])
    return Expected(emails, letters, no_address, similar)


def parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    content: str = part.get_content()  # type: ignore[attr-defined]
    return content


def pdftotext(pdf: Path, *args: str) -> str:
    assert PDFTOTEXT is not None
    done = subprocess.run([PDFTOTEXT, "-enc", "UTF-8", *args, str(pdf), "-"],
                          capture_output=True, check=True, timeout=60)
    return done.stdout.decode("utf-8")


def letter_index(out: Path) -> dict[str, tuple[Path, int, int]]:
    """ref -> (batch PDF, first page, pages), from the batches' CSV indexes."""
    index: dict[str, tuple[Path, int, int]] = {}
    for listing in sorted((out / "letters").glob("batch-*.csv")):
        with listing.open(encoding="utf-8", newline="") as stream:
            for row in csv.DictReader(stream):
                assert row["ref"] not in index, "a letter made twice"
                index[row["ref"]] = (listing.with_suffix(".pdf"), int(row["first_page"]),
                                     int(row["pages"]))
    return index


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


# --------------------------------------------------------------------------- the run


def test_every_member_found_gets_exactly_one_notice(checked: Checked, notified: Path) -> None:
    want = expected_notices(checked)
    assert want.emails and want.letters, "the synthetic member file reaches both paths"
    emails = {path.name for path in (notified / "emails").iterdir()}
    assert emails == {file_name(ref) for ref in want.emails}
    assert set(letter_index(notified)) == set(want.letters)
    errors = read_csv(notified / "errors.csv")
    assert {row["ref"] for row in errors if row["reason"] == "no_address"} == want.no_address
    assert {row["ref"] for row in read_csv(notified / "review.csv")} == want.similar
    # Nobody the check did not find is written to.
    found = {ref for ref, v in checked.verdicts.items() if v["found"] == "true"}
    assert set(want.emails) | set(want.letters) <= found


def test_check_still_sends_only_the_identity_fields(checked: Checked) -> None:
    layout = detect_layout(checked.members)
    assert set(layout.columns) <= {"ref", *QUERY_FIELDS}
    assert "email" in checked.rows[0] and "postcode" in checked.rows[0]
    for member in bulk_read_members(layout, layout.data_offset):
        assert set(member.query) <= set(QUERY_FIELDS)


def test_emails_parse_back_as_multipart_text_and_html(checked: Checked, notified: Path) -> None:
    want = expected_notices(checked)
    ids = set()
    for ref, row in want.emails.items():
        message = parse(notified / "emails" / file_name(ref))
        assert not message.defects
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain",
                                                                         "text/html"]
        assert message["To"].addresses[0].addr_spec == row["email"]
        assert message["From"].addresses[0].addr_spec == "information@mutuelle-exemple.example"
        ids.add(message["Message-ID"])
        english = row["language"] == "en"
        assert message["Content-Language"] == ("en" if english else "fr")
        assert message["Subject"] == ("Your personal data were stolen in a cyberattack"
                                      if english else
                                      "Vos données personnelles ont été volées lors d’une "
                                      "cyberattaque")
        text, html = body(message, "plain"), body(message, "html")
        verdict = checked.verdicts[ref]
        for part in (text, html):
            assert "Mutuelle Exemple" in part and "À COMPLÉTER" not in part
            assert "33700" in part and "signal-spam.fr" in part
            assert "cybermalveillance.gouv.fr" in part and "dpo@mutuelle-exemple.example" in part
            for source in verdict["sources"].split("|"):
                assert {"viamedis-2024": "Viamedis", "almerys-2024": "Almerys"}[source] in part
            if "nir" in verdict["exposed"].split("|"):
                assert ("social security number" if english else
                        "numéro de sécurité sociale") in part
        assert ("very likely you" in text if english else "très probablement de vous" in text) \
            == (verdict["match"] == "weak")
        assert ref not in message["Message-ID"]
        assert "X-Notify-Draft" not in message
    assert len(ids) == len(want.emails)


def test_the_english_path_is_exercised(checked: Checked) -> None:
    want = expected_notices(checked)
    assert any(row["language"] == "en" for row in [*want.emails.values(),
                                                  *want.letters.values()]) or \
        len(want.emails) + len(want.letters) < 40


@needs_poppler
def test_letters_put_the_address_in_the_envelope_window(checked: Checked,
                                                        notified: Path) -> None:
    want = expected_notices(checked)
    index = letter_index(notified)
    # The window of a French DL envelope, on the A4 page folded in three.
    window = ["-x", str(round(108 * MM)), "-y", str(round(47 * MM)), "-W", str(round(90 * MM)),
              "-H", str(round(42 * MM))]
    for ref, (pdf, first, pages) in index.items():
        row = want.letters[ref]
        shown = pdftotext(pdf, "-f", str(first), "-l", str(first), *window).split("\n")
        shown = [line for line in shown if line.strip()]
        city = row["city"].upper().replace("É", "E").replace("-", " ")
        assert shown[0].endswith(row["last_name"].upper())
        assert shown[-1] == f"{row['postcode']} {city}"
        assert all(len(line) <= MAX_LINE for line in shown)
        assert row["address_1"] in shown
        whole = pdftotext(pdf, "-f", str(first), "-l", str(first + pages - 1))
        english = row["language"] == "en"
        assert ("What you can do" if english else "Ce que vous pouvez faire") in whole
        assert "33700" in whole and "Marie Martin" in whole and "BROUILLON" not in whole
        assert f"{'Our reference' if english else 'Notre référence'}" in whole


@needs_poppler
def test_a_letter_page_rendered_to_png(notified: Path, tmp_path: Path) -> None:
    from PIL import Image

    pdf = sorted((notified / "letters").glob("batch-*.pdf"))[0]
    assert PDFTOPPM is not None
    subprocess.run([PDFTOPPM, "-r", "50", "-f", "1", "-l", "1", "-png", str(pdf),
                    str(tmp_path / "page")], check=True, timeout=60)
    (png,) = tmp_path.glob("page*.png")
    image = Image.open(png).convert("L")
    width, height = image.size
    assert abs(width / height - 210 / 297) < 0.01  # A4 portrait

    def ink(left_mm: float, top_mm: float, right_mm: float, bottom_mm: float) -> int:
        box = tuple(round(v * width / 210) for v in (left_mm, top_mm, right_mm, bottom_mm))
        return sum(image.crop(box).histogram()[:128])  # dark pixels

    assert ink(110, 50, 195, 85) > 50  # the recipient's address, where the window is
    assert ink(20, 50, 100, 85) == 0  # nothing left of the window at that height
    assert ink(20, 105, 190, 200) > 500  # the body of the letter
    assert ink(20, 28, 80, 45) > 20  # the sender, under the logo


def test_outputs_are_private_files(notified: Path) -> None:
    for path in [notified, *notified.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    assert not list(notified.rglob("*.part"))


@needs_poppler
def test_report_holds_counts_only(checked: Checked, notified: Path) -> None:
    want = expected_notices(checked)
    html = (notified / "report.html").read_text(encoding="utf-8")
    text = pdftotext(notified / "report.pdf")
    levels = {name: sum(1 for v in checked.verdicts.values() if v["match"] == name)
              for name in ("strong", "weak")}
    for content in (html, text):
        assert "g-test-0001" in content and "1er décembre 2026" in content
        assert re.search(rf"fiable\)\s*(</th><td class=\"count\">)?\s*{levels['strong']}\b",
                         content), "strong count"
        assert str(len(want.emails)) in content and str(len(want.letters)) in content
    assert 'alt="Diagramme en barres' in html and "data:image/png;base64," in html
    secrets = set()
    for row in checked.rows:
        secrets |= {row["ref"], row["nir"], row["email"], row["last_name"]} - {""}
    for content in (html, text):
        leaked = [value for value in secrets if len(value) > 3 and value in content]
        assert not leaked


def test_without_config_every_output_says_it_is_a_draft(drafted: Path) -> None:
    for path in (drafted / "emails").iterdir():
        message = parse(path)
        assert message["X-Notify-Draft"]
        assert "BROUILLON" in body(message, "plain") or "DRAFT" in body(message, "plain")
        assert "COMPLÉTER" in body(message, "html") or "COMPLETED" in body(message, "html")
    if PDFTOTEXT:
        for pdf in (drafted / "letters").glob("*.pdf"):
            assert "À COMPLÉTER : nom de l’assureur" in pdftotext(pdf, "-l", "1")
        assert "notify.toml" in pdftotext(drafted / "report.pdf")
    assert "notify.toml" in (drafted / "report.html").read_text(encoding="utf-8")


def test_bad_contact_cells_go_to_errors_csv_never_a_crash(tmp_path: Path) -> None:
    members = tmp_path / "members.csv"
    members.write_text(
        "ref;nom;prenom;courriel;adresse_1;code_postal;ville;langue\n"
        "a1;Dupont;Jeanne;jeanne@example.org;;;;klingon\n"
        '"=HYPERLINK(""x"")";Martin;Paul;"p@example.org\r\nBcc: x@example.org";'
        "3 rue Haute;7500;Paris;\n"
        "a3;Durand;Léa;not-an-address;;;;\n"
        "a4;Petit;Luc;;1 rue Basse;69003;Lyon;en\n"
        "a4;Petit;Luc;;1 rue Basse;69003;Lyon;en\n"
        "a5;Roux;Max;max@example.org;;;;\n"
        "-a9;Roux;Eva;eva@example.org;;;;\n",
        encoding="utf-8")
    results = tmp_path / "results.csv"
    results.write_text(
        "ref,found,match,sources,exposed,error\n"
        "a1,true,strong,viamedis-2024,name|nir,\n"
        '"=HYPERLINK(""x"")",true,weak,almerys-2024,name,\n'
        "a3,true,strong,viamedis-2024,name,\n"
        "a4,true,strong,viamedis-2024|almerys-2024,name|birth_date,\n"
        "a5,true,bogus,viamedis-2024,name,\n"
        "a6,true,strong,viamedis-2024,name,\n"
        "a7,true,similar,viamedis-2024,name,\n"
        "a8,,,,,nir:invalid_checksum\n"
        "\"'-a9\",true,strong,viamedis-2024,name,\n"
        "broken\n",
        encoding="utf-8")
    out = tmp_path / "out"
    assert notify(members, results, "--out", out) == 0
    errors = read_csv(out / "errors.csv")
    reasons = {(row["ref"], row["reason"]) for row in errors}
    assert ("a1", "language_unknown") in reasons
    assert ("'=HYPERLINK(\"x\")", "email_header") in reasons  # neutralised for spreadsheets
    assert ("'=HYPERLINK(\"x\")", "postcode_invalid") in reasons
    assert ("'=HYPERLINK(\"x\")", "no_address") in reasons
    assert ("a3", "email_invalid") in reasons and ("a3", "no_address") in reasons
    assert ("a4", "duplicate_ref") in reasons
    assert ("a5", "match_unknown") in reasons and ("a6", "not_in_members") in reasons
    assert ("a8", "check_error") in reasons and ("broken", "result_malformed") in reasons
    # A ref that check neutralised in RESULTS.csv ('-a9) still finds its member (-a9).
    assert {path.name for path in (out / "emails").iterdir()} == {
        "a1.eml", file_name("-a9")}
    assert file_name("-a9").startswith("a9~")  # never a name that starts like an option
    assert set(letter_index(out)) == {"a4"}
    # a7 is `similar` but not in the member file: reported, not reviewed.
    assert ("a7", "not_in_members") in reasons
    for row in errors:
        assert not {"Dupont", "Martin", "Jeanne", "3 rue Haute", "p@example.org"} & set(
            row.values())


@pytest.mark.parametrize("workers", [0, 1], ids=["one-process", "worker-process"])
def test_resumes_after_an_interruption_without_duplicates(checked: Checked, tmp_path: Path,
                                                          workers: int) -> None:
    want = expected_notices(checked)
    total = len(want.emails) + len(want.letters)
    options = NotifyOptions(checked.members, checked.results, tmp_path / "out",
                            load_config(None), batch_size=5, workers=workers, email_chunk=4)
    stop = int(total * 0.6)
    with pytest.raises(Exception, match="stopped after"):
        run_notify(options, interrupt_after=stop)
    made = len(list((tmp_path / "out" / "emails").iterdir()))
    assert 0 < made < len(want.emails)
    assert not (tmp_path / "out" / "report.html").exists()
    tally = run_notify(options)
    # The letter batch and the e-mail chunks open at the interruption are made again.
    assert tally.resumed >= stop - 5 - 4 * (2 * workers + 2)
    assert {p.name for p in (tmp_path / "out" / "emails").iterdir()} == {
        file_name(ref) for ref in want.emails}
    assert set(letter_index(tmp_path / "out")) == set(want.letters)
    pages = sum(pages for _, _, pages in letter_index(tmp_path / "out").values())
    assert tally.letter_pages == pages
    # Other inputs in the same folder: refused, unless --restart.
    other = tmp_path / "results-other.csv"
    other.write_text(checked.results.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert notify(checked.members, other, "--out", tmp_path / "out") == 2
    assert notify(checked.members, other, "--out", tmp_path / "out", "--restart") == 0


def test_insurer_templates_replace_the_package_files(checked: Checked, tmp_path: Path) -> None:
    own = tmp_path / "templates"
    own.mkdir()
    texts = (TEMPLATES / "texts.fr.toml").read_text(encoding="utf-8")
    (own / "texts.fr.toml").write_text(
        texts.replace('subject = "Vos données', 'subject = "Information importante : vos données'),
        encoding="utf-8")
    html = (TEMPLATES / "email.html.j2").read_text(encoding="utf-8")
    (own / "email.html.j2").write_text(html.replace("<p>{{ greeting }}</p>",
                                                    "<p>{{ name|upper }}</p>"),
                                       encoding="utf-8")
    out = tmp_path / "out"
    assert notify(checked.members, checked.results, "--out", out, "--templates", own) == 0
    want = expected_notices(checked)
    for ref, row in want.emails.items():
        message = parse(out / "emails" / file_name(ref))
        if row["language"] != "en":
            assert message["Subject"].startswith("Information importante")
            first = row["first_name"]
            assert f"{(first.title() if first.islower() or first.isupper() else first).upper()} " \
                   f"{row['last_name'].upper()}" in body(message, "html")


def test_notify_opens_no_network_connection(checked: Checked, tmp_path: Path) -> None:
    guard = (
        "import socket, sys\n"
        "def refuse(*args, **kwargs):\n"
        "    raise SystemExit('notify tried the network')\n"
        "socket.socket.connect = refuse\n"
        "socket.socket.connect_ex = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "socket.create_connection = refuse\n"
        "from client.bulk import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run(
        [sys.executable, "-c", guard, "notify", str(checked.members), str(checked.results),
         "--out", str(tmp_path / "out"), "--no-progress"],
        capture_output=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    log = done.stderr.decode()
    assert "notices" in log
    for row in checked.rows[:50]:
        assert row["last_name"] not in log and row["ref"] not in log


def test_help_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        client_main(["notify", "--help"])
    assert exit_info.value.code == 0
    assert "window envelope" in capsys.readouterr().out
    assert notify(tmp_path / "missing.csv", tmp_path / "r.csv", "--out", tmp_path / "o") == 2
    (tmp_path / "m.csv").write_text("ref;nom\n1;X\n", encoding="utf-8")
    (tmp_path / "r.csv").write_text("ref,found\n", encoding="utf-8")
    assert notify(tmp_path / "m.csv", tmp_path / "r.csv", "--out", tmp_path / "o") == 2
    assert "contact column" in capsys.readouterr().err
    (tmp_path / "m.csv").write_text("ref;email\n1;a@example.org\n", encoding="utf-8")
    (tmp_path / "r.csv").write_text("ref,found,match,sources,exposed,error\n"
                                    "1,true,strong,viamedis-2024,name,\n", encoding="utf-8")
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    assert notify(tmp_path / "m.csv", tmp_path / "r.csv", "--out", tmp_path / "a-file" / "o") == 1
    assert "cannot write into" in capsys.readouterr().err
    assert client_main(["notify", "--example-config"]) == 0
    assert "[dpo]" in capsys.readouterr().out


def test_french_and_english_texts_have_the_same_keys() -> None:
    import tomllib

    def keys(table: dict[str, Any], prefix: str = "") -> set[str]:
        found = set()
        for key, value in table.items():
            found.add(prefix + key)
            if isinstance(value, dict):
                found |= keys(value, f"{prefix}{key}.")
        return found

    french, english = (tomllib.loads((TEMPLATES / f"texts.{lang}.toml").read_text("utf-8"))
                       for lang in ("fr", "en"))
    assert keys(french) == keys(english)
    assert french["meta"]["code"] == "fr" and english["meta"]["code"] == "en"


# --------------------------------------------------------------------------- fuzzing

cells = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["email", "address_1", "address_2", "address_3",
                                        "postcode", "city", "country", "language"]), cells))
def test_contact_cells_never_raise_and_never_inject(fields: dict[str, str]) -> None:
    contact = resolve_contact(fields)
    if contact.email is not None:
        assert not re.search(r"[\x00-\x1f\x7f]", contact.email) and contact.email.isascii()
    if contact.postal is not None:
        assert len(contact.postal) <= 5 and all(len(line) <= MAX_LINE for line in contact.postal)
        assert all("\n" not in line and "\r" not in line for line in contact.postal)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600), st.sampled_from([b"ref;email;adresse_1;code_postal;ville\n",
                                                 b"ref,found,match,sources,exposed,error\n",
                                                 b""]))
def test_member_and_result_readers_never_crash(tmp_path_factory: pytest.TempPathFactory,
                                               data: bytes, header: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "input.csv"
    path.write_bytes(header + data)
    for reader in (read_members, read_results):
        try:
            items = list(reader(path))
        except InputError:
            continue
        for item in items:
            assert item.line >= 2


# --------------------------------------------------------------------------- browser


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists() and not os.environ.get("CI"),
                    reason="/usr/bin/chromium is missing: `apt-get install chromium`")
async def test_html_email_passes_axe_core(browser: Any, notified: Path, drafted: Path,
                                          tmp_path: Path) -> None:
    axe = REPO / "tests" / "vendor" / "axe.min.js"
    violations: list[dict[str, Any]] = []
    samples: list[Path] = []
    for out in (notified, drafted):
        samples += sorted((out / "emails").iterdir())[:2]
    english = [p for p in (notified / "emails").iterdir()
               if parse(p)["Content-Language"] == "en"][:1]
    for path in [*samples, *english, notified / "report.html"]:
        html = (body(parse(path), "html") if path.suffix == ".eml"
                else path.read_text(encoding="utf-8"))
        page = await browser.new_page()
        try:
            await page.set_content(html)
            await page.add_script_tag(path=str(axe))
            report = await page.evaluate("axe.run()")
        finally:
            await page.close()
        violations += [{"file": path.name, "id": v["id"], "help": v["help"]}
                       for v in report["violations"]]
    (tmp_path / "axe.json").write_text(json.dumps(violations, indent=1))
    assert violations == []


# --------------------------------------------------------------------------- synth


def test_synthetic_contact_columns_cover_every_path() -> None:
    from indexer.build.synth_contacts import CONTACT_HEADER, with_contacts

    rows = [f"1850175123456{n % 10};Dupont-{n};Jean;01/02/1980" for n in range(5000)]
    contacts = with_contacts(rows, seed=3, before=0)
    assert contacts == with_contacts(rows, seed=3, before=0)  # a function of the seed
    assert contacts != with_contacts(rows, seed=3, before=5000)
    table = [dict(zip(CONTACT_HEADER, row.split(";")[4:], strict=True)) for row in contacts]
    share = {name: sum(1 for t in table if t[name]) / len(table) for name in CONTACT_HEADER}
    assert 0.7 < share["email"] < 0.8 and 0.9 < share["address_1"] < 0.96
    languages = {t["language"] for t in table}
    assert languages == {"", "fr", "en"}
    assert any(t["email"].endswith("@") for t in table)  # a truncated address
    assert any(len(t["postcode"]) == 4 for t in table)  # a postcode that lost its 0
    assert all(t["email"].split("@")[-1] in ("", "example.org", "example.net", "example.com")
               for t in table)
    problems = [resolve_contact(t).problems for t in table]
    assert sum(1 for p in problems if p) < len(table) * 0.05
