"""The rules of an Idempotency-Key, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.v1 import public_api_pb2
from pixelrelay_gateway.core.idempotency import Claim, IdempotencyStore, fingerprint, key_digest

A, KEY = "acct_1", key_digest("3f9a1c2e-retry-me")


def claim(store: IdempotencyStore, task_id: str, now_ms: int, fp: str = "body-1") -> Claim:
    return store.claim(account_id=A, key_sha256=KEY, fingerprint=fp, task_id=task_id, now_ms=now_ms)


def refusal(store: IdempotencyStore, task_id: str, now_ms: int, fp: str = "body-1") -> ErrorKind:
    with pytest.raises(ApiError) as refused:
        claim(store, task_id, now_ms, fp)
    return refused.value.kind


def test_a_repeat_gets_the_first_task_once_it_is_done(database: Database) -> None:
    store = IdempotencyStore(database.engine, in_flight_ms=60_000)
    first = claim(store, "task_1", 1_000)
    assert (first.task_id, first.done) == ("task_1", False)
    assert refusal(store, "task_2", 2_000) is E.IDEMPOTENCY_IN_FLIGHT
    store.finish(account_id=A, key_sha256=KEY)
    again = claim(store, "task_3", 3_000)
    assert (again.task_id, again.done) == ("task_1", True)
    assert refusal(store, "task_4", 4_000, fp="body-2") is E.IDEMPOTENCY_KEY_REUSED
    # another account's identical key is its own
    other = store.claim(
        account_id="acct_2", key_sha256=KEY, fingerprint="body-1", task_id="task_5", now_ms=1
    )
    assert other.task_id == "task_5"


def test_a_submit_that_died_is_taken_over_once_with_its_task_id(database: Database) -> None:
    store = IdempotencyStore(database.engine, in_flight_ms=60_000)
    claim(store, "task_1", 1_000)
    resumed = claim(store, "task_2", 61_000)
    assert (resumed.task_id, resumed.resumed) == ("task_1", True)
    assert refusal(store, "task_3", 62_000) is E.IDEMPOTENCY_IN_FLIGHT  # taken over: in flight


def test_a_refused_submit_frees_its_key_and_old_keys_expire(database: Database) -> None:
    store = IdempotencyStore(database.engine, in_flight_ms=60_000, ttl_ms=100_000)
    claim(store, "task_1", 1_000)
    store.forget(account_id=A, key_sha256=KEY)
    assert claim(store, "task_2", 2_000).task_id == "task_2"
    store.finish(account_id=A, key_sha256=KEY)
    store.forget(account_id=A, key_sha256=KEY)  # a finished key is never forgotten
    assert claim(store, "task_3", 3_000).task_id == "task_2"
    assert claim(store, "task_4", 200_000).task_id == "task_4"
    assert store.purge(now_ms=200_000) == 0 and store.purge(now_ms=400_000) == 1


def test_the_fingerprint_is_the_request_without_its_key() -> None:
    body = public_api_pb2.CreateGenerationRequest(model="gpt-image-2", prompt="a fox", n=1)
    keyed = public_api_pb2.CreateGenerationRequest()
    keyed.CopyFrom(body)
    keyed.idempotency_key = "k"
    other = public_api_pb2.CreateGenerationRequest(model="gpt-image-2", prompt="a fox", n=2)
    assert fingerprint(body) == fingerprint(keyed) != fingerprint(other)


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
def test_a_malformed_key_is_refused(key: str) -> None:
    with pytest.raises(ApiError) as refused:
        key_digest(key)
    assert refused.value.param == "idempotency_key"
