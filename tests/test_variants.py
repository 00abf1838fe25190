"""The typing differences of the synthetic member file (indexer/build/variants.py).

Each function is checked against what its kind promises, on any name hypothesis
draws: one edit is exactly one Damerau-Levenshtein step, a sound-alike is another
spelling, a split double name gives back its two halves.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_synth import edits

from indexer.build.variants import (
    EDITS,
    fold,
    one_edit,
    sound_alike,
    split_double,
    swap_day_month,
)

folded_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=20)
draws = st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), min_size=2,
                 max_size=2)


@given(folded_names, st.sampled_from(EDITS), draws)
def test_one_edit_is_one_step_away(name: str, edit: str, r: list[float]) -> None:
    made = one_edit(name, edit, r)
    if made is None:  # too short to delete from, or no two neighbours differ
        assert (edit == "delete" and len(name) < 3) or (
            edit == "transpose" and len(set(name)) == 1)
        return
    assert made.isalpha() and made.isupper() and made == fold(made)
    assert edits(made, name) == 1
    assert len(made) - len(name) == {"insert": 1, "delete": -1}.get(edit, 0)


@given(folded_names, draws)
def test_a_sound_alike_is_another_spelling(name: str, r: list[float]) -> None:
    made = sound_alike(name, r)
    if made is not None:
        assert made != name and made == fold(made) and len(made) >= 2
        assert edits(made, name) <= 3


def test_sound_alikes_of_known_names() -> None:
    assert sound_alike("LEFEBVRE", [0.0, 0.0]) is not None
    options = {sound_alike("LEFEBVRE", [0.0, k / 50]) for k in range(50)}
    assert "LEFEUVRE" in options
    assert "DUPOND" in {sound_alike("DUPONT", [0.0, k / 50]) for k in range(50)}
    assert sound_alike("A", [0.0, 0.0]) is None


def test_fold_and_split_double() -> None:
    assert fold("Lætitia") == fold("LAETITIA") == "LAETITIA"
    assert fold("D'Artagnan") == "DARTAGNAN" and fold("Strauß") == "STRAUSS"
    known = {"DUPONT", "MARTIN", "LEGALL"}
    assert split_double("Dupont-Martin", known) == ("Dupont", "Martin")
    assert split_double("Le Gall Martin", known) == ("Le Gall", "Martin")
    assert split_double("Le Gall", known) is None  # one name with a particle
    assert split_double("Saint-Jean", known) is None


def test_swap_day_month() -> None:
    assert swap_day_month("1980-03-04") == "1980-04-03"
    assert swap_day_month("1980-03-03") is None  # the same both ways
    assert swap_day_month("1980-03-13") is None  # 13 is no month
