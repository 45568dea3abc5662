"""NFTs: collections, minting, listings, sales with royalties, gifts, provenance; value moves through the ledger."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bsn import amounts
from bsn.actors import Actor
from bsn.clock import now as clock_now
from bsn.dbtools import get_or_404, lock, newest_first
from bsn.errors import Conflict, Forbidden, NotFound, ValidationError
from bsn.extensions import db
from bsn.models import Nft, NftCollection, NftListing, NftTransfer, User
from bsn.models.nft import MAX_ROYALTY_BPS
from bsn.services import notifications, tokens
from bsn.services.tokens import Posting

log = logging.getLogger(__name__)

ACTIVE, SOLD, CANCELLED = "active", "sold", "cancelled"


def create_collection(creator: Actor, name: str, symbol: str, royalty_bps: int, description: str = "") -> NftCollection:
    if not 0 <= royalty_bps <= MAX_ROYALTY_BPS:
        raise ValidationError(fields={"royalty_bps": [f"Between 0 and {MAX_ROYALTY_BPS} (10%)."]})
    symbol = symbol.upper()
    if db.session.scalar(select(NftCollection.id).where(NftCollection.symbol == symbol)):
        raise Conflict("That symbol is taken.", fields={"symbol": ["Already used by another collection."]})
    collection = NftCollection(
        creator_id=creator.id, name=name, symbol=symbol, royalty_bps=royalty_bps, description=description
    )
    db.session.add(collection)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("That symbol is taken.", fields={"symbol": ["Already used by another collection."]}) from None
    return collection


def mint(creator: Actor, collection_id: int, metadata: dict) -> Nft:
    """Mint the next token number of one's own collection, owned by the minter."""
    where = NftCollection.id == collection_id
    collection = lock(select(NftCollection).where(where), NftCollection, where).scalar()
    if collection is None:
        db.session.rollback()
        get_or_404(NftCollection, collection_id, "collection")
    if collection.creator_id != creator.id:
        db.session.rollback()
        raise Forbidden("Only the collection's creator can mint into it.")
    # Numbers come from the locked collection row: unique and gap-free within the collection.
    collection.minted_count += 1
    nft = Nft(
        collection_id=collection.id,
        token_number=collection.minted_count,
        owner_id=creator.id,
        name=metadata["name"],
        description=metadata.get("description", ""),
        image_url=metadata["image"],
        attributes=metadata.get("attributes", []),
    )
    db.session.add(nft)
    db.session.flush()
    db.session.add(NftTransfer(nft_id=nft.id, kind="mint", to_user_id=creator.id))
    db.session.commit()
    return nft


def list_for_sale(seller: Actor, nft_id: int, price: str) -> NftListing:
    units = amounts.to_units(price, "price")
    where = Nft.id == nft_id
    # Locked as a gift locks it, so a listing can never outlive its seller's ownership.
    nft = lock(select(Nft).where(where), Nft, where).unique().scalar()
    if nft is None:
        db.session.rollback()
        raise NotFound("No such NFT.")
    if nft.owner_id != seller.id:
        db.session.rollback()
        raise Forbidden("Only the owner can list this NFT.")
    if _active_listing(nft_id) is not None:
        db.session.rollback()
        raise Conflict("This NFT is already listed.", code="already_listed")
    listing = NftListing(nft_id=nft_id, seller_id=seller.id, price=units, status=ACTIVE)
    db.session.add(listing)
    try:
        db.session.commit()
    except IntegrityError:
        # The partial unique index stops a second listing racing this one.
        db.session.rollback()
        raise Conflict("This NFT is already listed.", code="already_listed") from None
    return listing


def cancel_listing(seller: Actor, listing_id: int) -> NftListing:
    listing = _locked_listing(listing_id)
    if listing.seller_id != seller.id:
        db.session.rollback()
        raise Forbidden("Only the seller can cancel this listing.")
    if listing.status != ACTIVE:
        db.session.rollback()
        raise Conflict("The listing is not open.", code="listing_closed")
    listing.status, listing.closed_at = CANCELLED, clock_now()
    db.session.commit()
    return listing


def buy(buyer: Actor, listing_id: int) -> NftListing:
    """In one transaction: the buyer pays, the creator gets the royalty, the seller the rest, ownership moves.

    The listing row is locked first, so of two buyers racing for it exactly one finds it open; the
    other gets 409 and, as every failure here rolls back, keeps every token.
    """
    listing = _locked_listing(listing_id)
    try:
        if listing.status != ACTIVE:
            raise Conflict("This listing is no longer open.", code="listing_closed")
        if listing.seller_id == buyer.id:
            raise Conflict("You cannot buy your own listing.", code="own_listing")
        nft = listing.nft
        creator_id = nft.collection.creator_id
        royalty = listing.price * nft.collection.royalty_bps // 10_000 if creator_id != listing.seller_id else 0
        reference = f"nft_listing:{listing.id}"
        postings = [
            Posting(buyer.id, -listing.price, "nft_purchase", reference, listing.seller_id),
            Posting(listing.seller_id, listing.price - royalty, "nft_sale", reference, buyer.id),
        ]
        if royalty:
            postings.append(Posting(creator_id, royalty, "nft_royalty", reference, buyer.id))
        tokens.post_many(postings)
        # The owner check guards against an owner change that bypassed the listing (a gift).
        moved = db.session.execute(
            update(Nft)
            .where(Nft.id == nft.id, Nft.owner_id == listing.seller_id)
            .values(owner_id=buyer.id)
            .execution_options(synchronize_session="fetch")
        ).rowcount
        if moved != 1:
            raise Conflict("The seller no longer owns this NFT.", code="listing_closed")
        listing.status, listing.buyer_id, listing.closed_at = SOLD, buyer.id, clock_now()
        db.session.add(
            NftTransfer(
                nft_id=nft.id,
                kind="sale",
                from_user_id=listing.seller_id,
                to_user_id=buyer.id,
                price=listing.price,
                royalty=royalty,
                listing_id=listing.id,
            )
        )
        sold = {"nft_id": listing.nft_id, "listing_id": listing.id, "price": amounts.to_str(listing.price)}
        notifications.notify(listing.seller_id, "nft_sold", buyer.id, sold)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return listing


def gift(owner: Actor, nft_id: int, to_user_id: int) -> Nft:
    where = Nft.id == nft_id
    nft = lock(select(Nft).where(where), Nft, where).unique().scalar()
    try:
        if nft is None:
            get_or_404(Nft, nft_id, "NFT")
        if nft.owner_id != owner.id:
            raise Forbidden("Only the owner can give this NFT away.")
        if to_user_id == owner.id:
            raise ValidationError(fields={"to_user_id": ["Must be another user."]})
        if db.session.get(User, to_user_id) is None:
            raise ValidationError("No such user.", fields={"to_user_id": ["No such user."]})
        if _active_listing(nft_id) is not None:
            raise Conflict("Cancel the listing before giving the NFT away.", code="already_listed")
        nft.owner_id = to_user_id
        db.session.add(NftTransfer(nft_id=nft.id, kind="gift", from_user_id=owner.id, to_user_id=to_user_id))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return nft


def get_collection(collection_id: int) -> NftCollection:
    return get_or_404(NftCollection, collection_id, "collection")


def get_token(nft_id: int) -> Nft:
    return get_or_404(Nft, nft_id, "NFT")


def _active_listing(nft_id: int) -> NftListing | None:
    return db.session.scalar(select(NftListing).where(NftListing.nft_id == nft_id, NftListing.status == ACTIVE))


def _locked_listing(listing_id: int) -> NftListing:
    where = NftListing.id == listing_id
    stmt = select(NftListing).where(where).execution_options(populate_existing=True)
    listing = lock(stmt, NftListing, where).unique().scalar()
    if listing is None:
        db.session.rollback()
        get_or_404(NftListing, listing_id, "listing")
    return listing


def collections(limit: int, before_id: int | None):
    return newest_first(select(NftCollection), NftCollection.id, limit, before_id)


def collection_tokens(collection_id: int, limit: int, before_id: int | None):
    get_or_404(NftCollection, collection_id, "collection")
    return newest_first(select(Nft).where(Nft.collection_id == collection_id), Nft.id, limit, before_id)


def holdings(user_id: int, limit: int, before_id: int | None):
    get_or_404(User, user_id, "user")
    return newest_first(select(Nft).where(Nft.owner_id == user_id), Nft.id, limit, before_id)


def open_listings(limit: int, before_id: int | None):
    return newest_first(select(NftListing).where(NftListing.status == ACTIVE), NftListing.id, limit, before_id)


def history(nft_id: int, limit: int, before_id: int | None):
    get_or_404(Nft, nft_id, "NFT")
    return newest_first(select(NftTransfer).where(NftTransfer.nft_id == nft_id), NftTransfer.id, limit, before_id)


def erc721_metadata(nft_id: int) -> dict:
    """The usual ERC-721 metadata JSON shape."""
    nft = get_or_404(Nft, nft_id, "NFT")
    return {
        "name": nft.name,
        "description": nft.description,
        "image": nft.image_url,
        "attributes": [{"trait_type": a["trait_type"], "value": a["value"]} for a in nft.attributes],
    }
