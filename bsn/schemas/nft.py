"""Schemas of NFT collections, tokens, listings and provenance."""

from marshmallow import Schema, fields, validate

from bsn.schemas.common import Amount, Timestamp


class CollectionCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    symbol = fields.String(
        required=True, validate=validate.Regexp(r"^[A-Za-z0-9]{1,10}$", error="1 to 10 letters or digits.")
    )
    royalty_bps = fields.Integer(
        load_default=0, strict=True, validate=validate.Range(min=0, max=1000, error="Between 0 and 1000 (10%).")
    )
    description = fields.String(load_default="", validate=validate.Length(max=2000))


class CollectionSchema(Schema):
    id = fields.Integer()
    creator_id = fields.Integer()
    name = fields.String()
    symbol = fields.String()
    royalty_bps = fields.Integer()
    description = fields.String()
    minted_count = fields.Integer()
    created_at = Timestamp()


class AttributeSchema(Schema):
    trait_type = fields.String(required=True, validate=validate.Length(min=1, max=50))
    value = fields.Raw(required=True, validate=lambda v: isinstance(v, str | int) and not isinstance(v, bool))


class MintSchema(Schema):
    """ERC-721 metadata: the image is an https URL."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    image = fields.Url(required=True, schemes={"https"}, validate=validate.Length(max=500))
    attributes = fields.List(fields.Nested(AttributeSchema), load_default=list, validate=validate.Length(max=50))


class NftSchema(Schema):
    id = fields.Integer()
    collection_id = fields.Integer()
    token_number = fields.Integer()
    owner_id = fields.Integer()
    name = fields.String()
    description = fields.String()
    image = fields.String(attribute="image_url")
    attributes = fields.List(fields.Dict())
    minted_at = Timestamp()


class Erc721MetadataSchema(Schema):
    name = fields.String()
    description = fields.String()
    image = fields.String()
    attributes = fields.List(fields.Dict())


class ListSchema(Schema):
    price = fields.String(required=True, metadata={"example": "12.5"})


class GiftSchema(Schema):
    to_user_id = fields.Integer(required=True, strict=True)


class ListingSchema(Schema):
    id = fields.Integer()
    nft_id = fields.Integer()
    seller_id = fields.Integer()
    price = Amount()
    status = fields.String()
    buyer_id = fields.Integer(allow_none=True)
    created_at = Timestamp()
    closed_at = Timestamp(allow_none=True)


class NftTransferSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    from_user_id = fields.Integer(allow_none=True)
    to_user_id = fields.Integer()
    price = Amount(allow_none=True)
    royalty = Amount(allow_none=True)
    listing_id = fields.Integer(allow_none=True)
    created_at = Timestamp()


def page_of(item_schema):
    return type(
        f"{item_schema.__name__.removesuffix('Schema')}PageSchema",
        (Schema,),
        {"results": fields.List(fields.Nested(item_schema)), "next_cursor": fields.String(allow_none=True)},
    )


CollectionPageSchema = page_of(CollectionSchema)
NftPageSchema = page_of(NftSchema)
ListingPageSchema = page_of(ListingSchema)
NftTransferPageSchema = page_of(NftTransferSchema)
