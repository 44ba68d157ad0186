"""The client through real transient failures: answers lost on the way back (a loopback proxy
closes the connection after the server has acted), a server that is down or restarting, and a
busy database (``503 database_unavailable``). Retried writes act once, thanks to the key the
client keeps for every attempt; a write that is not safe to repeat is not sent again."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from lealta_client import (
    APIConnectionError,
    AsyncClient,
    Client,
    Event,
    InternalServerError,
    NewMember,
    Order,
    RetryPolicy,
    ServiceUnavailableError,
)

from lealta.kit.db import Database
from tests.test_client_support import (
    FaultProxy,
    LiveServer,
    at,
    demo_document,
    free_port,
    make_app,
    run_async,
)

FAST = RetryPolicy(max_retries=3, backoff_base=0.05, backoff_max=0.2, max_retry_after=0.2)
PATIENT = RetryPolicy(max_retries=12, backoff_base=0.1, backoff_max=0.5, max_retry_after=0.3)


@pytest.fixture(scope="module")
def live(database_url: str, _session_db: Database) -> Iterator[LiveServer]:
    server = LiveServer(make_app(database_url, _session_db))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proxy(live: LiveServer) -> Iterator[FaultProxy]:
    fault = FaultProxy(live.port)
    yield fault
    fault.close()


@pytest.fixture
def direct(live: LiveServer, server_key: str) -> Iterator[Client]:
    """Straight to the server: to set up and to check what really happened."""
    with Client(live.url, server_key, retry=FAST) as client:
        client.programme.put(demo_document())
        yield client


@pytest.fixture
def via_proxy(proxy: FaultProxy, server_key: str, direct: Client) -> Iterator[Client]:
    with Client(proxy.url, server_key, timeout=15, retry=FAST) as client:
        yield client


def order(order_id: str, total: str) -> Order:
    return Order(id=order_id, total=Decimal(total), currency="EUR")


def test_a_lost_answer_is_retried_with_the_same_key_and_acts_once(
    proxy: FaultProxy, via_proxy: Client, direct: Client
) -> None:
    direct.members.create(NewMember(external_id="ana"))

    proxy.drop_answers = 1
    credit = via_proxy.ledger.adjust("ana", 700, "Welcome gift")
    info = credit.response_info
    assert info is not None and (info.attempts, info.replayed, info.status_code) == (2, True, 200)
    assert proxy.dropped == ["POST /v1/members/ana/adjustments HTTP/1.1"]
    assert direct.members.balance("ana").available == 700

    proxy.drop_answers = 1
    event = Event.order_paid("ana", order("ORD-1", "50.00"), occurred_at=at(1))  # no event id
    earned = via_proxy.events.send(event)
    assert earned.response_info is not None and earned.response_info.replayed
    assert direct.members.balance("ana").available == 750

    proxy.drop_answers = 2
    redemption = via_proxy.rewards.redeem("ana", "coupon-5")
    assert redemption.response_info is not None and redemption.response_info.attempts == 3
    assert direct.members.balance("ana").available == 250
    assert len(direct.rewards.redemptions("ana").items) == 1

    proxy.drop_answers = 1
    member = via_proxy.members.create(NewMember(external_id="bruno", name="Bruno"))
    assert member.response_info is not None and member.response_info.replayed
    assert direct.members.get("bruno").name == "Bruno"

    proxy.drop_answers = 1
    batch = via_proxy.events.send_batch(
        Event.order_paid("bruno", order(f"ORD-B{n}", "10.00"), occurred_at=at(2 + n))
        for n in range(3)
    )
    assert (batch.processed, batch.replayed) == (0, 3)  # the first attempt recorded them
    assert direct.members.balance("bruno").available == 30

    entries = [(e.entry_type, e.points) for e in direct.ledger.iter_history("ana")]
    assert sorted(entries) == [("adjust", 700), ("earn", 50), ("redeem", -500)]


def test_without_retries_the_lost_answer_is_an_error_and_the_key_still_protects(
    proxy: FaultProxy, server_key: str, direct: Client
) -> None:
    direct.members.create(NewMember(external_id="carla"))
    with Client(proxy.url, server_key, max_retries=0) as impatient:
        proxy.drop_answers = 1
        with pytest.raises(APIConnectionError) as lost:
            impatient.ledger.adjust("carla", 40, "Goodwill", idempotency_key="order-77-gw")
        assert lost.value.attempts == 1
        # The shop retries later with its own key: the first effect is replayed.
        again = impatient.ledger.adjust("carla", 40, "Goodwill", idempotency_key="order-77-gw")
    assert again.response_info is not None and again.response_info.replayed
    assert direct.members.balance("carla").available == 40


def test_a_programme_apply_whose_answer_is_lost_is_not_sent_again(
    proxy: FaultProxy, via_proxy: Client, direct: Client
) -> None:
    """PUT /v1/programme stores a version each time and takes no key: not replay-safe."""
    before = len(direct.programme.versions())
    proxy.drop_answers = 1
    with pytest.raises(APIConnectionError) as lost:
        via_proxy.programme.put(demo_document(pending_days=7))
    assert lost.value.attempts == 1
    assert [r for r in proxy.requests if r.startswith("PUT")] == ["PUT /v1/programme HTTP/1.1"]
    assert len(direct.programme.versions()) == before + 1
    # A dry run is safe to repeat, so it is retried.
    proxy.drop_answers = 1
    check = via_proxy.programme.validate(demo_document(pending_days=7))
    assert check.dry_run and check.response_info is not None
    assert check.response_info.attempts == 2


def test_a_server_that_comes_up_late_is_waited_for(
    database_url: str, _session_db: Database, db: Database, server_key: str
) -> None:
    server = LiveServer(make_app(database_url, _session_db))
    starter = threading.Timer(0.6, server.start)
    starter.start()
    try:
        with Client(server.url, server_key, retry=PATIENT) as lealta:
            member = lealta.members.create(NewMember(external_id="dora"))
            assert member.response_info is not None and member.response_info.attempts > 1
            assert lealta.members.get("dora").external_id == "dora"
    finally:
        starter.join()
        server.stop()


def test_a_restart_between_calls_is_ridden_out(
    database_url: str, _session_db: Database, db: Database, server_key: str
) -> None:
    server = LiveServer(make_app(database_url, _session_db))
    server.start()
    restarter: threading.Thread | None = None
    try:
        with Client(server.url, server_key, retry=PATIENT) as lealta:
            lealta.members.create(NewMember(external_id="elena"))  # a kept-alive connection
            server.stop()

            def come_back() -> None:
                time.sleep(0.5)
                server.start()

            restarter = threading.Thread(target=come_back)
            restarter.start()
            credit = lealta.ledger.adjust("elena", 15, "Apology for the outage")
            assert credit.response_info is not None and credit.response_info.attempts > 1
            assert lealta.members.balance("elena").available == 15
            assert [e.points for e in lealta.ledger.iter_history("elena")] == [15]
    finally:
        if restarter is not None:
            restarter.join()
        server.stop()


def test_giving_up_on_a_closed_port_raises_a_connection_error(server_key: str) -> None:
    tries = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.02)
    with (
        Client(f"http://127.0.0.1:{free_port()}", server_key, retry=tries) as lealta,
        pytest.raises(APIConnectionError) as refused,
    ):
        lealta.members.balance("anyone")
    assert refused.value.attempts == 3
    assert "ConnectError" in str(refused.value)


def _hold_write_lock(db: Database) -> Callable[[], None]:
    """Take the lock every points write needs (SQLite: the database's write lock; PostgreSQL:
    the accounts table) on a connection of our own; return the function that releases it
    (safe to call twice, from any thread)."""
    raw: Any = db.engine.raw_connection()
    once = threading.Lock()
    if db.dialect == "sqlite":
        raw.driver_connection.isolation_level = None
        raw.driver_connection.execute("BEGIN IMMEDIATE")
    else:
        with raw.cursor() as cur:
            cur.execute("LOCK TABLE accounts IN EXCLUSIVE MODE")

    def release() -> None:
        if not once.acquire(blocking=False):
            return
        with contextlib.suppress(sqlite3.Error):  # nothing left to roll back
            raw.driver_connection.rollback()
        raw.close()

    return release


@contextmanager
def impatient_server(database_url: str, server_key: str) -> Iterator[LiveServer]:
    """A second server whose statements (lock waits included) time out after 0.3 s, with the
    demo programme and member ``fede``."""
    impatient_db = Database(database_url, pool_size=4, max_overflow=0, statement_timeout=0.3)
    server = LiveServer(make_app(database_url, impatient_db))
    server.start()
    try:
        with Client(server.url, server_key, retry=FAST) as setup:
            setup.programme.put(demo_document())
            setup.members.create(NewMember(external_id="fede"))
        yield server
    finally:
        server.stop()
        impatient_db.dispose()


def test_a_busy_database_is_retried_until_it_clears(
    database_url: str, db: Database, server_key: str
) -> None:
    """While the lock is held every attempt times out and is refused (nothing written); the
    client gives up after its retries, then a patient one gets through once it is free."""
    with impatient_server(database_url, server_key) as server:
        release = _hold_write_lock(db)
        releaser = threading.Timer(1.2, release)
        try:
            with (
                Client(server.url, server_key, retry=FAST) as lealta,
                pytest.raises(ServiceUnavailableError) as busy,
            ):
                lealta.ledger.adjust("fede", 5, "While busy", idempotency_key="busy-1")
            assert busy.value.attempts == FAST.max_retries + 1
            releaser.start()
            with Client(server.url, server_key, retry=PATIENT) as lealta:
                credit = lealta.ledger.adjust("fede", 5, "While busy", idempotency_key="busy-1")
        finally:
            releaser.cancel()
            release()
        assert credit.response_info is not None and credit.response_info.attempts > 1
        assert not credit.response_info.replayed  # the refused attempts wrote nothing
        with Client(server.url, server_key, retry=FAST) as lealta:
            assert lealta.members.balance("fede").available == 5


def test_a_busy_database_is_503_database_unavailable_with_retry_after(
    database_url: str, db: Database, server_key: str
) -> None:
    with impatient_server(database_url, server_key) as server:
        release = _hold_write_lock(db)
        try:
            with (
                Client(server.url, server_key, max_retries=0) as lealta,
                pytest.raises(InternalServerError) as busy,
            ):
                lealta.ledger.adjust("fede", 5, "While busy")
        finally:
            release()
    assert isinstance(busy.value, ServiceUnavailableError)
    assert (busy.value.code, busy.value.retry_after) == ("database_unavailable", "5")


def test_the_async_client_retries_a_lost_answer_once(
    proxy: FaultProxy, server_key: str, direct: Client
) -> None:
    direct.members.create(NewMember(external_id="gus"))

    async def scenario() -> None:
        async with AsyncClient(proxy.url, server_key, retry=FAST) as lealta:
            proxy.drop_answers = 1
            credit = await lealta.ledger.adjust("gus", 12, "Async goodwill")
            assert credit.response_info is not None
            assert (credit.response_info.attempts, credit.response_info.replayed) == (2, True)

    run_async(scenario)
    assert direct.members.balance("gus").available == 12
