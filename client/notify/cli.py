"""`exposure-client notify`: the command line of the notices (docs/design.md §5).

Added to `exposure-client` next to `check` by `add_parser`; `main` runs it. Exit
status: 0 done, 1 interrupted (run it again to resume), 2 bad arguments or inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "main"]

DESCRIPTION = """\
Make the notices of the people that `exposure-client check` found, on this machine:
nothing is sent anywhere, no network is used.

MEMBERS.csv: the member file given to `check`, with your own contact columns
(names read from last_name/first_name or nom/prenom). Recognised contact headers:
  email (courriel, mail), address_1 (number and street; adresse_1, adresse),
  address_2 (flat, floor, "chez"; complement_adresse), address_3 (building,
  residence), postcode (code_postal, cp), city (ville, commune), country (pays),
  language (langue: fr or en).
RESULTS.csv: what `check` wrote (ref,found,match,sources,exposed,error).

Writes into DIR (folders mode 0700, files mode 0600):
  emails/REF.eml      one e-mail per person found who has an e-mail address
                      (multipart: plain text and accessible HTML), ready to send
  letters/batch-NNNN.pdf  A4 letters for the others, merged per batch, address
                      placed for a French window envelope (DL, window on the right);
                      batch-NNNN.csv lists ref, first page and pages of each letter
  review.csv          `similar` matches: not notified; someone checks them
  errors.csv          rows that could not be used (line, ref, column, reason code)
  report.html, report.pdf  for the data protection officer: counts only

The texts are in French, or in English for members whose language column says
so (or for everyone with --language en). Strong and weak matches are notified.
Without --config, every output holds marked placeholders ("[À COMPLÉTER : ...]")
and says it is a draft. To change the texts, copy any file of the package's
templates folder (shown by --show-templates) into a folder of yours, edit it, and
pass --templates FOLDER: a file there replaces the package's file of that name.

An interrupted run (Ctrl-C, crash, power cut) resumes when the same command is
run again: the notices already made are kept and none is made twice.

exit status: 0 done; 1 interrupted (run again to resume); 2 bad arguments or files."""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "notify", help="make the notices (e-mails, letters) and the DPO report",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=DESCRIPTION,
        epilog="example: exposure-client notify members.csv results.csv --out notices "
        "--config notify.toml")
    parser.add_argument("members", type=Path, metavar="MEMBERS.csv", nargs="?",
                        help="the member file, with contact columns")
    parser.add_argument("results", type=Path, metavar="RESULTS.csv", nargs="?",
                        help="the results written by `exposure-client check`")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for the notices and the report (created)")
    parser.add_argument("--config", type=Path, metavar="notify.toml",
                        help="the insurer's details (name, address, logo, DPO, signature); "
                        "--example-config prints one")
    parser.add_argument("--templates", type=Path, metavar="FOLDER",
                        help="your own templates and texts, replacing the package's files "
                        "of the same name")
    parser.add_argument("--language", choices=("fr", "en"), default="fr",
                        help="language of the notices when the member file does not say "
                        "(default fr) and of the report")
    parser.add_argument("--batch-size", type=int, default=500, metavar="N",
                        help="letters per PDF file (default 500)")
    parser.add_argument("--notify-similar", action="store_true",
                        help="also notify `similar` matches (default: review.csv only)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="processes making e-mails beside the main one, which reads the "
                        "files and lays out the letters (default 1; 0: all in one process)")
    parser.add_argument("--restart", action="store_true",
                        help="discard the notices already in DIR and make them again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--example-config", action="store_true",
                        help="print an example notify.toml and exit (MEMBERS.csv and "
                        "RESULTS.csv are then not read)")
    parser.add_argument("--show-templates", action="store_true",
                        help="print the folder of the package's templates and exit")
    return parser


def _say(message: str) -> None:
    print(f"exposure-client notify: {message}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    from client.notify.config import EXAMPLE_CONFIG, ConfigError, load_config
    from client.notify.inputs import InputError
    from client.notify.journal import JournalMismatch
    from client.notify.run import Interrupted, NotifyOptions, run_notify
    from client.notify.texts import TemplateError

    if args.example_config:
        sys.stdout.write(EXAMPLE_CONFIG)
        return 0
    if args.show_templates:
        print(Path(__file__).parent / "templates")
        return 0
    if args.batch_size < 1 or args.workers < 0:
        _say("--batch-size must be at least 1 and --workers at least 0")
        return 2
    if args.members is None or args.results is None or args.out is None:
        _say("give MEMBERS.csv, RESULTS.csv and --out DIR (see --help)")
        return 2
    for path in (args.members, args.results):
        if not path.is_file():
            _say(f"{path}: no such file")
            return 2
    try:
        config = load_config(args.config)
        options = NotifyOptions(
            members=args.members, results=args.results, out=args.out, config=config,
            templates=args.templates, language=args.language, batch_size=args.batch_size,
            notify_similar=args.notify_similar, restart=args.restart, workers=args.workers,
            progress=sys.stderr.isatty() and not args.no_progress)
        tally = run_notify(options)
    except (ConfigError, InputError, TemplateError, JournalMismatch) as exc:
        _say(str(exc))
        return 2
    except (KeyboardInterrupt, Interrupted):
        _say("interrupted; run the same command again to resume without duplicates")
        return 1
    except OSError as exc:  # a full disk, a folder without write permission...
        _say(f"cannot write into {args.out} ({exc.strerror or type(exc).__name__}); free "
             "space or fix permissions, then run the same command again to resume")
        return 1
    draft = "" if config.present else " (DRAFT: no --config, placeholders to complete)"
    _say(f"{tally.notices:,} notices{draft}: {tally.emails:,} e-mails, {tally.letters:,} "
         f"letters in {tally.batches:,} PDF batches; {tally.review:,} to review; "
         f"{sum(tally.errors.values()):,} rows in errors.csv; report in "
         f"{args.out / 'report.html'} and report.pdf")
    return 0
