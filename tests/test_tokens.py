"""The token ledger: exact amounts, transfers, history, the audit."""

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from bsn.amounts import to_str, to_units
from bsn.errors import ValidationError
from bsn.extensions import db
from bsn.models import Wallet
from bsn.services import tokens
from tests.conftest import auth


@pytest.fixture
def funded(ctx, make_user):
    """Two users; the first holds 100 tokens through a real ledger entry."""
    alice_id, alice = make_user()
    bob_id, bob = make_user()
    tokens.post(alice_id, to_units("100"), "grant")
    db.session.commit()
    return (alice_id, alice), (bob_id, bob)


@pytest.mark.parametrize(
    ("text_", "units"),
    [("12.5", 1_250_000_000), ("0.00000001", 1), ("1", 100_000_000), ("1.000000000", 100_000_000)],
)
def test_amounts_parse_exactly(text_, units):
    assert to_units(text_) == units


@pytest.mark.parametrize(
    "bad", ["abc", "-1", "0", "1.123456789", "NaN", "Infinity", 1.5, True, "1e30", "", "1e1000000", "-1e1000000"]
)
def test_bad_amounts_are_refused(bad):
    with pytest.raises(ValidationError) as caught:
        to_units(bad)
    assert "amount" in caught.value.fields


def test_amounts_format_as_shortest_exact_strings():
    assert [to_str(u) for u in (1_250_000_000, 1, 0, 100_000_000, -50_000_000)] == [
        "12.5",
        "0.00000001",
        "0",
        "1",
        "-0.5",
    ]


def test_transfer_moves_tokens_and_records_both_sides(client, funded):
    (alice_id, alice), (bob_id, bob) = funded
    response = client.post("/api/tokens/transfer/", json={"to_user_id": bob_id, "amount": "12.5"}, headers=auth(alice))
    assert response.status_code == 201
    body = response.get_json()
    assert body["amount"] == "-12.5" and body["balance_after"] == "87.5" and body["kind"] == "transfer_out"
    assert client.get("/api/tokens/balance/", headers=auth(bob)).get_json() == {"balance": "12.5"}
    received = client.get("/api/tokens/transactions/", headers=auth(bob)).get_json()["results"]
    assert [(e["kind"], e["amount"], e["counterparty_id"]) for e in received] == [("transfer_in", "12.5", alice_id)]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"amount": "1"}, 422, "to_user_id"),
        ({"to_user_id": "BOB", "amount": 1.5}, 422, "amount"),
        ({"to_user_id": "BOB", "amount": "-3"}, 422, "amount"),
        ({"to_user_id": "BOB", "amount": "0"}, 422, "amount"),
        ({"to_user_id": "BOB", "amount": "0.000000001"}, 422, "amount"),
        ({"to_user_id": "2", "amount": "1"}, 422, "to_user_id"),
        ({"to_user_id": "ALICE", "amount": "1"}, 422, "to_user_id"),
        ({"to_user_id": 999_999, "amount": "1"}, 404, "to_user_id"),
    ],
)
def test_bad_transfers_are_refused_and_change_nothing(client, funded, body, status, field):
    (alice_id, alice), (bob_id, _) = funded
    body = {k: {"ALICE": alice_id, "BOB": bob_id}.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    response = client.post("/api/tokens/transfer/", json=body, headers=auth(alice))
    assert response.status_code == status
    assert field in response.get_json()["error"]["fields"]
    assert client.get("/api/tokens/balance/", headers=auth(alice)).get_json()["balance"] == "100"
    assert len(client.get("/api/tokens/transactions/", headers=auth(alice)).get_json()["results"]) == 1


def test_a_transfer_over_the_balance_is_409_and_changes_nothing(client, funded):
    (_, alice), (bob_id, bob) = funded
    response = client.post(
        "/api/tokens/transfer/", json={"to_user_id": bob_id, "amount": "100.00000001"}, headers=auth(alice)
    )
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "insufficient_balance"
    assert client.get("/api/tokens/balance/", headers=auth(alice)).get_json()["balance"] == "100"
    assert client.get("/api/tokens/balance/", headers=auth(bob)).get_json()["balance"] == "0"
    assert client.get("/api/tokens/transactions/", headers=auth(bob)).get_json()["results"] == []


def test_transactions_are_paginated_newest_first(client, funded):
    (_, alice), (bob_id, _) = funded
    for _ in range(5):
        client.post("/api/tokens/transfer/", json={"to_user_id": bob_id, "amount": "1"}, headers=auth(alice))
    seen, cursor = [], None
    while True:
        url = "/api/tokens/transactions/?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth(alice)).get_json()
        assert len(page["results"]) <= 2
        seen += page["results"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6
    assert [e["id"] for e in seen] == sorted((e["id"] for e in seen), reverse=True)
    assert [e["balance_after"] for e in seen][:2] == ["95", "96"]
    assert client.get("/api/tokens/transactions/?limit=1000", headers=auth(alice)).status_code == 422


def test_the_database_refuses_a_negative_balance(funded):
    (alice_id, _), _ = funded
    with pytest.raises(IntegrityError):
        db.session.execute(update(Wallet).where(Wallet.user_id == alice_id).values(balance=-1))
        db.session.flush()
    db.session.rollback()


def test_the_audit_is_clean_and_finds_a_tampered_balance(app, funded):
    (alice_id, _), _ = funded
    runner = app.test_cli_runner()
    clean = runner.invoke(args=["bsn", "audit-ledger"])
    assert clean.exit_code == 0 and "clean" in clean.output
    db.session.execute(text("UPDATE wallets SET balance = balance + 1 WHERE user_id = :u"), {"u": alice_id})
    db.session.commit()
    dirty = runner.invoke(args=["bsn", "audit-ledger"])
    assert dirty.exit_code == 1 and f"user {alice_id}" in dirty.output
    assert tokens.audit() == [{"user_id": alice_id, "balance": 10_000_000_001, "entries_sum": 10_000_000_000}]


def test_the_audit_job_reports_differences(funded):
    from workers.tokens import audit_ledger

    assert audit_ledger() == {"differences": 0, "sample": []}


@pytest.mark.parametrize("cursor", ["W3sieCI6MX1d", "WyJhYmMiXQ", "W3RydWVd", "W10", "!!"])
def test_a_forged_cursor_is_a_422(client, funded, cursor):
    (_, alice), _ = funded
    response = client.get(f"/api/tokens/transactions/?cursor={cursor}", headers=auth(alice))
    assert response.status_code == 422 and "cursor" in response.get_json()["error"]["fields"]
