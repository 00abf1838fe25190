"""A first end-to-end pass: real index, real app, one strong match and one miss."""

from __future__ import annotations

from typing import Any

from conftest import Breach


async def test_member_in_breach_is_found_and_stranger_is_not(client: Any, breach: Breach) -> None:
    expected = breach.expected()
    members = breach.members()
    found = next(m for m in members
                 if m["nir"] and expected[m["ref"]]["match"] == "strong")
    missing = next(m for m in members if expected[m["ref"]]["in_breach"] == "false" and m["nir"])
    for member, want in ((found, True), (missing, False)):
        body = {k: member[k] for k in ("nir", "birth_date")}
        response = await client.post("/v1/check", json=body)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        answer = await response.json()
        assert answer["found"] is want
        if want:
            assert answer["match"] == "strong"
            assert {s["id"] for s in answer["sources"]} == set(
                expected[member["ref"]]["sources"].split("|"))
