"""Live index swap: a new generation is picked up without a restart or a failed request;
a generation that fails verification is refused and the old one keeps serving.

Every test builds its own index in `tmp_path` (it publishes into it). Waits are
bounded polls on /readyz, never timing assertions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import agrees_with_ground_truth, build_breach
from service_support import MARIE, NEWCOMER, STRANGER, Crafted, build_crafted

from indexer.build.local import BuildOptions, build_index
from service.app import create_app
from service.resources.apikeys import KeyStore
from service.settings import Settings

Client = TestClient[web.Request, web.Application]
NEW_PERSON_ROW = "175119912345611;NOUVEAU;;Paul;01/11/1975;1;Alptis;marié(e);PHAR\r\n"


async def readyz(client: Client) -> dict[str, Any]:
    response = await client.get("/readyz")
    body: dict[str, Any] = await response.json()
    return body


async def wait_until(client: Client, predicate: Callable[[dict[str, Any]], bool]) -> \
        dict[str, Any]:
    """Poll /readyz until `predicate` holds (bounded: a stuck watcher fails the test)."""
    for _ in range(2400):
        state = await readyz(client)
        if predicate(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz never got there: {state}")


async def app_for(aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings],
                  index_dir: Path, pepper_file: Path) -> Client:
    settings = make_settings(index_dir=index_dir, pepper_file=pepper_file,
                             index_poll_seconds=0.05)
    client: Client = await aiohttp_client(create_app(settings))
    return client


async def found(client: Client, person: dict[str, str]) -> bool:
    response = await client.post("/v1/check", json=person)
    assert response.status == 200, await response.text()
    return bool((await response.json())["found"])


def flip_a_byte(generation: Path) -> Path:
    shard = max((generation / "shards").glob("*.fp"), key=lambda p: p.stat().st_size)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    return shard


def point_current_at(index_dir: Path, generation_name: str) -> None:
    """Publish by hand, as the indexer does: a fresh link renamed over `current`."""
    tmp_link = index_dir / ".current-by-hand"
    os.symlink(generation_name, tmp_link)
    os.replace(tmp_link, index_dir / "current")


# --------------------------------------------------------------------- a good new generation


async def test_new_generation_is_served_while_requests_run(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    breach = build_breach(tmp_path / "breach", records=2000)
    client = await app_for(aiohttp_client, make_settings, breach.index_dir, breach.pepper_file)
    store = KeyStore(make_settings().keys_db)
    try:
        _, token = store.create("Swap insurer")
    finally:
        store.close()
    old = await readyz(client)
    members_csv = (breach.dir / "members.csv").read_text(encoding="utf-8")
    header, *rows = members_csv.splitlines(keepends=True)
    half = len(rows) // 2
    newcomer = f"new-1;{NEW_PERSON_ROW.split(';')[0]};Nouveau;Paul;1975-11-01\n"
    gate = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield (header + "".join(rows[:half]) + newcomer.replace("new-1", "new-before")).encode()
        await gate.wait()  # the batch stays open across the swap
        yield (newcomer.replace("new-1", "new-after") + "".join(rows[half:])).encode()

    statuses: list[int] = []
    stop = asyncio.Event()

    async def hammer() -> None:
        while not stop.is_set():
            for person in (MARIE, STRANGER, {"nir": "1"}):
                response = await client.post("/v1/check", json=person)
                statuses.append(response.status)
                await response.read()
            await asyncio.sleep(0.01)

    hammering = asyncio.create_task(hammer())
    response = await client.post("/v1/check/batch", data=body(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
    assert response.status == 200
    first_answers = [await response.content.readline() for _ in range(half + 1)]

    # Publish a second generation: the same dumps plus one new person.
    with (breach.dir / "viamedis.csv").open("ab") as dump:
        dump.write(NEW_PERSON_ROW.encode("cp1252"))
    await asyncio.to_thread(build_index, breach.sources_toml, breach.index_dir,
                            breach.pepper_file.read_bytes(), BuildOptions(shards=4, workers=1))
    new = await wait_until(client, lambda s: s["generation"] != old["generation"])
    gate.set()
    rest = await response.read()
    stop.set()
    await hammering

    assert new["status"] == "ready" and new["detail"] is None
    assert new["generation"] == (breach.index_dir / "current").resolve().name
    assert set(statuses) <= {200, 422} and statuses.count(200) >= 2
    answers = [orjson.loads(line) for line in [*first_answers, *rest.splitlines()] if line]
    *lines, summary = answers
    by_ref = {a["ref"]: a for a in lines}
    assert by_ref["new-before"]["found"] is False  # answered by the old generation
    assert by_ref["new-after"]["found"] is True  # answered by the new one
    expected = breach.expected()
    for ref, want in expected.items():
        got = by_ref[ref]
        listed = "|".join(s["id"] for s in got.get("sources", ()))
        assert agrees_with_ground_truth(want, bool(got.get("found")), got.get("match"), listed,
                                        refused="error" in got), ref
    assert summary["summary"]["lines"] == len(expected) + 2
    assert summary["summary"]["errors"] == sum("error" in a for a in lines)
    # The new generation answers single checks too, and /v1/sources and /metrics say so.
    assert await found(client, {"nir": "175119912345611", "birth_date": "01/11/1975"})
    assert (await (await client.get("/v1/sources")).json())["generation"] == new["generation"]
    metrics = await (await client.get("/metrics")).text()
    assert f'exposure_index_info{{generation="{new["generation"]}"}} 1.0' in metrics
    assert old["generation"] not in metrics
    assert f"exposure_index_fingerprints {float(new['fingerprints'])}" in metrics


async def test_a_build_of_the_same_dumps_swaps_without_changing_answers(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    crafted = build_crafted(tmp_path)
    client = await app_for(aiohttp_client, make_settings, crafted.index_dir, crafted.pepper_file)
    before = await readyz(client)
    assert await found(client, MARIE) and not await found(client, NEWCOMER)
    await asyncio.to_thread(crafted.publish, extra_row=True)
    after = await wait_until(client, lambda s: s["generation"] != before["generation"])
    assert after["fingerprints"] > before["fingerprints"]
    assert await found(client, MARIE) and await found(client, NEWCOMER)


# --------------------------------------------------------------------- refused generations


async def publish_corrupted(crafted: Crafted, scratch: Path) -> str:
    """A generation built elsewhere, damaged, then moved in and pointed at by hand."""
    await asyncio.to_thread(crafted.publish, extra_row=True, index_dir=scratch)
    generation = (scratch / "current").resolve()
    flip_a_byte(generation)
    shutil.move(str(generation), str(crafted.index_dir / generation.name))
    point_current_at(crafted.index_dir, generation.name)
    return generation.name


async def test_corrupted_generation_is_refused_and_the_old_one_serves(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path,
    caplog: pytest.LogCaptureFixture
) -> None:
    crafted = build_crafted(tmp_path / "served")
    client = await app_for(aiohttp_client, make_settings, crafted.index_dir, crafted.pepper_file)
    before = await readyz(client)
    bad = await publish_corrupted(crafted, tmp_path / "scratch")
    state = await wait_until(client, lambda s: s["detail"] is not None)
    assert state["status"] == "ready"
    assert state["generation"] == before["generation"]
    assert bad in state["detail"] and "checksum" in state["detail"]
    refusals = [r for r in caplog.records if r.getMessage() == "index generation refused"]
    assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
    metrics = await (await client.get("/metrics")).text()
    assert "exposure_index_swap_failures_total 1.0" in metrics
    assert f'exposure_index_info{{generation="{before["generation"]}"}} 1.0' in metrics
    assert bad not in metrics  # the refused generation never becomes a label
    # The old generation still answers, and does not know the new person.
    assert await found(client, MARIE)
    assert not await found(client, NEWCOMER)
    await asyncio.sleep(0.3)  # a few more polls: the refused link is not retried
    metrics = await (await client.get("/metrics")).text()
    assert "exposure_index_swap_failures_total 1.0" in metrics

    # A sound generation published afterwards is taken, and the refusal is cleared.
    await asyncio.to_thread(crafted.publish, extra_row=True)
    state = await wait_until(client, lambda s: s["generation"] not in (before["generation"],))
    assert state["detail"] is None
    assert await found(client, NEWCOMER)


async def test_generation_under_another_pepper_is_refused(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    crafted = build_crafted(tmp_path / "served")
    other = build_crafted(tmp_path / "other")  # same dumps, its own pepper
    client = await app_for(aiohttp_client, make_settings, crafted.index_dir, crafted.pepper_file)
    before = await readyz(client)
    generation = (other.index_dir / "current").resolve()
    shutil.move(str(generation), str(crafted.index_dir / generation.name))
    point_current_at(crafted.index_dir, generation.name)
    state = await wait_until(client, lambda s: s["detail"] is not None)
    assert state["generation"] == before["generation"]
    assert "another pepper" in state["detail"]
    assert await found(client, MARIE)


@pytest.mark.parametrize("damage", ["truncate", "manifest", "missing_shard"])
async def test_other_damage_is_refused_too(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path,
    damage: str
) -> None:
    crafted = build_crafted(tmp_path / "served")
    client = await app_for(aiohttp_client, make_settings, crafted.index_dir, crafted.pepper_file)
    before = await readyz(client)
    scratch = tmp_path / "scratch"
    await asyncio.to_thread(crafted.publish, extra_row=True, index_dir=scratch)
    generation = (scratch / "current").resolve()
    if damage == "truncate":
        shard = max((generation / "shards").glob("*.meta"), key=lambda p: p.stat().st_size)
        shard.write_bytes(shard.read_bytes()[:-1])
    elif damage == "manifest":
        (generation / "manifest.json").write_text("{not json")
    else:
        next((generation / "shards").glob("*.bloom")).unlink()
    shutil.move(str(generation), str(crafted.index_dir / generation.name))
    point_current_at(crafted.index_dir, generation.name)
    state = await wait_until(client, lambda s: s["detail"] is not None)
    assert state["generation"] == before["generation"]
    assert await found(client, MARIE)
    assert "exposure_index_swap_failures_total 1.0" in await (await client.get("/metrics")).text()


async def test_a_corrupted_first_generation_leaves_the_service_not_ready_until_a_good_one(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    crafted = build_crafted(tmp_path)
    flip_a_byte((crafted.index_dir / "current").resolve())
    client = await app_for(aiohttp_client, make_settings, crafted.index_dir, crafted.pepper_file)
    response = await client.get("/readyz")
    assert response.status == 503
    assert "checksum" in (await response.json())["detail"]
    assert (await client.post("/v1/check", json=MARIE)).status == 503
    await asyncio.to_thread(crafted.publish)
    await wait_until(client, lambda s: s["status"] == "ready")
    assert await found(client, MARIE)


async def test_a_removed_link_keeps_the_loaded_generation(
    aiohttp_client: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    crafted = build_crafted(tmp_path)
    client = await app_for(aiohttp_client, make_settings, crafted.index_dir, crafted.pepper_file)
    (crafted.index_dir / "current").unlink()
    await asyncio.sleep(0.3)
    assert (await readyz(client))["status"] == "ready"
    assert await found(client, MARIE)
