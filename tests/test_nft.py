"""NFTs: collections, minting, listings, buying with royalties, gifts, provenance."""

import pytest

from bsn.amounts import to_units
from bsn.services import tokens
from tests.conftest import auth
from tests.test_concurrency import all_at_once

IMAGE = "https://img.example.com/1.png"


@pytest.fixture
def market(client, make_user, grant):
    """A creator with a 2.5% royalty collection and one minted NFT; a collector and a rich buyer."""
    creator_id, creator = make_user("creator")
    collector_id, collector = make_user("collector")
    buyer_id, buyer = make_user("buyer")
    grant(collector_id, "1000")
    grant(buyer_id, "1000")
    collection = client.post(
        "/api/nft/collections/",
        json={"name": "Cats", "symbol": "cat", "royalty_bps": 250, "description": "cats"},
        headers=auth(creator),
    ).get_json()
    nft = client.post(
        f"/api/nft/collections/{collection['id']}/mint/",
        json={"name": "Cat #1", "image": IMAGE, "attributes": [{"trait_type": "fur", "value": "orange"}]},
        headers=auth(creator),
    ).get_json()

    class Market:
        pass

    m = Market()
    m.creator, m.collector, m.buyer = (creator_id, creator), (collector_id, collector), (buyer_id, buyer)
    m.collection, m.nft = collection, nft
    return m


def balance(client, token):
    return to_units(client.get("/api/tokens/balance/", headers=auth(token)).get_json()["balance"], positive=False)


def list_nft(client, nft_id, token, price):
    return client.post(f"/api/nft/tokens/{nft_id}/list/", json={"price": price}, headers=auth(token))


def test_a_collection_and_its_first_mint(client, market):
    assert market.collection["symbol"] == "CAT" and market.collection["royalty_bps"] == 250
    assert market.nft["token_number"] == 1 and market.nft["owner_id"] == market.creator[0]
    second = client.post(
        f"/api/nft/collections/{market.collection['id']}/mint/",
        json={"name": "Cat #2", "image": IMAGE},
        headers=auth(market.creator[1]),
    ).get_json()
    assert second["token_number"] == 2
    meta = client.get(f"/api/nft/tokens/{market.nft['id']}/metadata").get_json()
    assert meta == {
        "name": "Cat #1",
        "description": "",
        "image": IMAGE,
        "attributes": [{"trait_type": "fur", "value": "orange"}],
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "symbol": "TOO-LONG-SYMBOL", "royalty_bps": 0}, "symbol"),
        ({"name": "X", "symbol": "OK", "royalty_bps": 1001}, "royalty_bps"),
        ({"name": "X", "symbol": "OK", "royalty_bps": -1}, "royalty_bps"),
        ({"name": "", "symbol": "OK"}, "name"),
    ],
)
def test_bad_collections_are_refused(client, make_user, body, field):
    _, token = make_user()
    response = client.post("/api/nft/collections/", json=body, headers=auth(token))
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"]


def test_minting_is_for_the_creator_with_valid_metadata(client, market):
    url = f"/api/nft/collections/{market.collection['id']}/mint/"
    assert client.post(url, json={"name": "X", "image": IMAGE}, headers=auth(market.buyer[1])).status_code == 403
    bad = client.post(url, json={"name": "X", "image": "http://insecure/x.png"}, headers=auth(market.creator[1]))
    assert bad.status_code == 422 and "image" in bad.get_json()["error"]["fields"]
    attrs = client.post(
        url, json={"name": "X", "image": IMAGE, "attributes": [{"trait_type": "a"}]}, headers=auth(market.creator[1])
    )
    assert attrs.status_code == 422
    assert (
        client.post(
            "/api/nft/collections/999999/mint/", json={"name": "X", "image": IMAGE}, headers=auth(market.creator[1])
        ).status_code
        == 404
    )


def test_a_sale_pays_seller_and_creator_exactly_and_moves_ownership(client, market):
    nft_id = market.nft["id"]
    # The creator sells the first sale: no royalty to oneself.
    listing = list_nft(client, nft_id, market.creator[1], "10").get_json()
    bought = client.post(f"/api/nft/listings/{listing['id']}/buy/", headers=auth(market.collector[1]))
    assert bought.status_code == 200 and bought.get_json()["status"] == "sold"
    assert balance(client, market.creator[1]) == to_units("10")
    # The collector resells at a price whose royalty has a remainder: 2.5% of 0.00000123.
    resale = list_nft(client, nft_id, market.collector[1], "0.00000123").get_json()
    assert client.post(f"/api/nft/listings/{resale['id']}/buy/", headers=auth(market.buyer[1])).status_code == 200
    royalty = 123 * 250 // 10_000  # = 3 base units
    assert balance(client, market.creator[1]) == to_units("10") + royalty
    assert balance(client, market.collector[1]) == to_units("990") + 123 - royalty
    assert balance(client, market.buyer[1]) == to_units("1000") - 123
    assert (
        client.get(f"/api/nft/tokens/{nft_id}/", headers=auth(market.buyer[1])).get_json()["owner_id"]
        == market.buyer[0]
    )
    history = client.get(f"/api/nft/tokens/{nft_id}/history/", headers=auth(market.buyer[1])).get_json()["results"]
    assert [(h["kind"], h["to_user_id"], h["price"], h["royalty"]) for h in history] == [
        ("sale", market.buyer[0], "0.00000123", "0.00000003"),
        ("sale", market.collector[0], "10", "0"),
        ("mint", market.creator[0], None, None),
    ]
    holdings = client.get(f"/api/nft/users/{market.buyer[0]}/holdings/", headers=auth(market.buyer[1])).get_json()
    assert [n["id"] for n in holdings["results"]] == [nft_id]


def test_a_buyer_without_funds_gets_409_and_nothing_changes(client, market, make_user):
    _, poor = make_user("poor")
    listing = list_nft(client, market.nft["id"], market.creator[1], "5").get_json()
    response = client.post(f"/api/nft/listings/{listing['id']}/buy/", headers=auth(poor))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "insufficient_balance"
    assert balance(client, market.creator[1]) == 0
    open_listings = client.get("/api/nft/listings/", headers=auth(poor)).get_json()["results"]
    assert [entry["id"] for entry in open_listings] == [listing["id"]]
    assert (
        client.get(f"/api/nft/tokens/{market.nft['id']}/", headers=auth(poor)).get_json()["owner_id"]
        == market.creator[0]
    )


def test_buying_ones_own_listing_is_refused(client, market):
    listing = list_nft(client, market.nft["id"], market.creator[1], "5").get_json()
    response = client.post(f"/api/nft/listings/{listing['id']}/buy/", headers=auth(market.creator[1]))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "own_listing"


def test_listing_rules(client, market):
    nft_id = market.nft["id"]
    assert list_nft(client, nft_id, market.buyer[1], "5").status_code == 403  # not the owner
    assert list_nft(client, nft_id, market.creator[1], "0").status_code == 422
    assert list_nft(client, nft_id, market.creator[1], "abc").status_code == 422
    first = list_nft(client, nft_id, market.creator[1], "5").get_json()
    again = list_nft(client, nft_id, market.creator[1], "6")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_listed"
    assert client.post(f"/api/nft/listings/{first['id']}/cancel/", headers=auth(market.buyer[1])).status_code == 403
    assert client.post(f"/api/nft/listings/{first['id']}/cancel/", headers=auth(market.creator[1])).status_code == 200
    bought = client.post(f"/api/nft/listings/{first['id']}/buy/", headers=auth(market.buyer[1]))
    assert bought.status_code == 409 and bought.get_json()["error"]["code"] == "listing_closed"
    assert list_nft(client, nft_id, market.creator[1], "6").status_code == 201


def test_gifts_move_ownership_but_not_while_listed(client, market):
    nft_id = market.nft["id"]
    url = f"/api/nft/tokens/{nft_id}/transfer/"
    listing = list_nft(client, nft_id, market.creator[1], "5").get_json()
    listed = client.post(url, json={"to_user_id": market.buyer[0]}, headers=auth(market.creator[1]))
    assert listed.status_code == 409
    client.post(f"/api/nft/listings/{listing['id']}/cancel/", headers=auth(market.creator[1]))
    assert client.post(url, json={"to_user_id": market.buyer[0]}, headers=auth(market.collector[1])).status_code == 403
    assert client.post(url, json={"to_user_id": 999_999}, headers=auth(market.creator[1])).status_code == 422
    gift = client.post(url, json={"to_user_id": market.buyer[0]}, headers=auth(market.creator[1]))
    assert gift.status_code == 200 and gift.get_json()["owner_id"] == market.buyer[0]
    history = client.get(f"/api/nft/tokens/{nft_id}/history/", headers=auth(market.buyer[1])).get_json()["results"]
    assert history[0]["kind"] == "gift" and history[0]["price"] is None


def test_two_buyers_racing_for_one_nft_exactly_one_gets_it(app, client, market, make_user, grant):
    racers = []
    for i in range(8):
        user_id, token = make_user(f"racer{i}")
        grant(user_id, "100")
        racers.append(token)
    listing = list_nft(client, market.nft["id"], market.creator[1], "40").get_json()
    answers = all_at_once(
        app, len(racers), lambda c, i: c.post(f"/api/nft/listings/{listing['id']}/buy/", headers=auth(racers[i]))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * (len(racers) - 1)
    assert {a.get_json()["error"]["code"] for a in answers if a.status_code == 409} == {"listing_closed"}
    balances = sorted(balance(client, t) for t in racers)
    assert balances == [to_units("60")] + [to_units("100")] * (len(racers) - 1)
    with app.app_context():
        assert tokens.audit() == []


def test_the_seller_is_notified_of_a_sale(client, market):
    listing = list_nft(client, market.nft["id"], market.creator[1], "5").get_json()
    client.post(f"/api/nft/listings/{listing['id']}/buy/", headers=auth(market.buyer[1]))
    notes = client.get("/api/notifications/", headers=auth(market.creator[1])).get_json()["results"]
    assert [(n["kind"], n["data"]["price"], n["actor"]["id"]) for n in notes] == [("nft_sold", "5", market.buyer[0])]
