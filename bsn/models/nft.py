"""NFTs: collections, tokens minted into them, listings for sale, and the history of every owner change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bsn.extensions import db
from bsn.models.base import UTCDateTime, utcnow
from bsn.models.tokens import BigId

MAX_ROYALTY_BPS = 1000  # 10%


class NftCollection(db.Model):
    __tablename__ = "nft_collections"

    id: Mapped[int] = mapped_column(primary_key=True)
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    symbol: Mapped[str] = mapped_column(String(10), unique=True)
    royalty_bps: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(2000), default="")
    minted_count: Mapped[int] = mapped_column(Integer, default=0)  # the last token number handed out
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (CheckConstraint(f"royalty_bps >= 0 AND royalty_bps <= {MAX_ROYALTY_BPS}", name="royalty_range"),)


class Nft(db.Model):
    __tablename__ = "nfts"

    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("nft_collections.id", ondelete="CASCADE"))
    token_number: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(2000), default="")
    image_url: Mapped[str] = mapped_column(String(500))
    attributes: Mapped[list] = mapped_column(JSON, default=list)
    minted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    collection: Mapped[NftCollection] = relationship(lazy="joined")

    __table_args__ = (UniqueConstraint("collection_id", "token_number", name="uq_nfts_collection_id_token_number"),)


class NftListing(db.Model):
    __tablename__ = "nft_listings"

    id: Mapped[int] = mapped_column(primary_key=True)
    nft_id: Mapped[int] = mapped_column(ForeignKey("nfts.id", ondelete="CASCADE"))
    seller_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    price: Mapped[int] = mapped_column(BigInteger)  # base units
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, sold, cancelled
    buyer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    nft: Mapped[Nft] = relationship(lazy="joined")

    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        # At most one open listing per NFT, enforced by the database.
        Index(
            "uq_nft_listings_active_nft_id",
            "nft_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_nft_listings_status_id", "status", "id"),
    )


class NftTransfer(db.Model):
    """Append-only: the provenance of each NFT (mint, sale, gift)."""

    __tablename__ = "nft_transfers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    nft_id: Mapped[int] = mapped_column(ForeignKey("nfts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # mint, sale, gift
    from_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    to_user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    price: Mapped[int | None] = mapped_column(BigInteger)
    royalty: Mapped[int | None] = mapped_column(BigInteger)
    listing_id: Mapped[int | None] = mapped_column(ForeignKey("nft_listings.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_nft_transfers_nft_id_id", "nft_id", "id"),)
