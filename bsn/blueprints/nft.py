"""REST: NFT collections, minting, trading, gifts and provenance."""

from flask_smorest import Blueprint

from bsn.auth import current_caller, login_required
from bsn.dbtools import cursor_id, encode_cursor
from bsn.schemas.common import PageArgsSchema, page
from bsn.schemas.nft import (
    CollectionCreateSchema,
    CollectionPageSchema,
    CollectionSchema,
    Erc721MetadataSchema,
    GiftSchema,
    ListingPageSchema,
    ListingSchema,
    ListSchema,
    MintSchema,
    NftPageSchema,
    NftSchema,
    NftTransferPageSchema,
)
from bsn.services import nft

blp = Blueprint("nft", __name__, url_prefix="/api/nft", description="NFT collections and trading")
SECURITY = [{"bearer": []}]


def _paged(fetch, args, *ids):
    before = cursor_id(args)
    rows, more = fetch(*ids, args["limit"], before)
    return page(rows, encode_cursor(rows[-1].id) if more else None)


@blp.route("/collections/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, CollectionPageSchema)
def collections(args):
    """All collections, newest first."""
    return _paged(nft.collections, args)


@blp.route("/collections/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(CollectionCreateSchema)
@blp.response(201, CollectionSchema)
def create_collection(body):
    """Create a collection (royalty at most 1000 basis points, 10%)."""
    return nft.create_collection(current_caller(), **body)


@blp.route("/collections/<int:collection_id>/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, CollectionSchema)
def collection(collection_id):
    return nft.get_collection(collection_id)


@blp.route("/collections/<int:collection_id>/mint/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(MintSchema)
@blp.response(201, NftSchema)
def mint(body, collection_id):
    """Mint the next token of one's own collection (metadata: name, description, https image, attributes)."""
    return nft.mint(current_caller(), collection_id, body)


@blp.route("/collections/<int:collection_id>/tokens/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, NftPageSchema)
def collection_tokens(args, collection_id):
    return _paged(nft.collection_tokens, args, collection_id)


@blp.route("/tokens/<int:nft_id>/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, NftSchema)
def token(nft_id):
    return nft.get_token(nft_id)


@blp.route("/tokens/<int:nft_id>/metadata", methods=["GET"])
@blp.response(200, Erc721MetadataSchema)
def metadata(nft_id):
    """ERC-721 metadata JSON (public, as wallets and marketplaces fetch it without a token)."""
    return nft.erc721_metadata(nft_id)


@blp.route("/tokens/<int:nft_id>/history/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, NftTransferPageSchema)
def history(args, nft_id):
    """Owners and trades of one NFT, newest first."""
    return _paged(nft.history, args, nft_id)


@blp.route("/tokens/<int:nft_id>/transfer/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(GiftSchema)
@blp.response(200, NftSchema)
def gift(body, nft_id):
    """Give an NFT to another user (not while it is listed)."""
    return nft.gift(current_caller(), nft_id, body["to_user_id"])


@blp.route("/tokens/<int:nft_id>/list/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(ListSchema)
@blp.response(201, ListingSchema)
def list_for_sale(body, nft_id):
    """Offer an owned NFT for a price in BSN."""
    return nft.list_for_sale(current_caller(), nft_id, body["price"])


@blp.route("/listings/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, ListingPageSchema)
def listings(args):
    """Open listings, newest first."""
    return _paged(nft.open_listings, args)


@blp.route("/listings/<int:listing_id>/cancel/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, ListingSchema)
def cancel(listing_id):
    return nft.cancel_listing(current_caller(), listing_id)


@blp.route("/listings/<int:listing_id>/buy/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, ListingSchema)
def buy(listing_id):
    """Buy a listed NFT: 409 listing_closed when someone was faster, insufficient_balance without the funds."""
    return nft.buy(current_caller(), listing_id)


@blp.route("/users/<int:user_id>/holdings/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, NftPageSchema)
def holdings(args, user_id):
    """The NFTs a user owns."""
    return _paged(nft.holdings, args, user_id)
