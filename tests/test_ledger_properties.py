"""Property test: any sequence of transfers, listings, sales, cancellations and gifts keeps the ledger exact."""

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bsn.actors import Caller
from bsn.errors import BSNError
from bsn.extensions import db
from bsn.models import NftListing, Wallet
from bsn.services import accounts, nft, tokens

PEOPLE = 4
names = itertools.count()

amount = st.decimals(min_value="0.00000001", max_value="60", places=8).map(str)
person = st.integers(0, PEOPLE - 1)
operation = st.one_of(
    st.tuples(st.just("transfer"), person, person, amount),
    st.tuples(st.just("list"), person, st.integers(0, 5), amount),
    st.tuples(st.just("buy"), person, st.integers(0, 5)),
    st.tuples(st.just("cancel"), person, st.integers(0, 5)),
    st.tuples(st.just("gift"), person, st.integers(0, 5), person),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, max_size=25), royalty=st.integers(0, 1000))
def test_the_ledger_stays_exact_under_random_trading(ctx, ops, royalty):
    run = next(names)
    people = []
    for i in range(PEOPLE):
        user = accounts.register(f"p{run}x{i}", f"p{run}x{i}@example.com", "correct horse battery")
        tokens.post(user.id, 100 * 10**8, "grant")
        people.append(Caller(user.id))
    db.session.commit()
    collection = nft.create_collection(people[0], "Prop", f"P{run}", royalty)
    minted = [nft.mint(people[0], collection.id, {"name": f"n{i}", "image": "https://x/y.png"}) for i in range(3)]
    listings: list[int] = []
    for op in ops:
        try:
            if op[0] == "transfer":
                tokens.transfer(people[op[1]], people[op[2]].id, op[3])
            elif op[0] == "list":
                listings.append(nft.list_for_sale(people[op[1]], minted[op[2] % 3].id, op[3]).id)
            elif op[0] == "buy" and listings:
                nft.buy(people[op[1]], listings[op[2] % len(listings)])
            elif op[0] == "cancel" and listings:
                nft.cancel_listing(people[op[1]], listings[op[2] % len(listings)])
            elif op[0] == "gift":
                nft.gift(people[op[1]], minted[op[2] % 3].id, people[op[3]].id)
        except BSNError:
            db.session.rollback()  # a refusal must change nothing; the checks below prove it
    ids = [p.id for p in people]
    assert tokens.audit() == []
    total = db.session.scalar(select(func.sum(Wallet.balance)).where(Wallet.user_id.in_(ids)))
    assert total == PEOPLE * 100 * 10**8
    assert db.session.scalar(select(func.min(Wallet.balance)).where(Wallet.user_id.in_(ids))) >= 0
    for token in minted:
        db.session.refresh(token)
        open_listings = db.session.scalars(
            select(NftListing).where(NftListing.nft_id == token.id, NftListing.status == "active")
        ).all()
        assert len(open_listings) <= 1
        # Gifts refuse listed NFTs and a sale closes its listing: an open listing is always the owner's.
        for listing in open_listings:
            assert listing.seller_id == token.owner_id
