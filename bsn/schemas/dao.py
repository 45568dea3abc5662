"""Schemas of DAO proposals, votes and results."""

from marshmallow import Schema, fields, validate

from bsn.schemas.common import Amount, Timestamp
from bsn.schemas.nft import page_of
from bsn.services.dao import KINDS


class ProposalCreateSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=3, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=10000))
    kind = fields.String(load_default="general", validate=validate.OneOf(KINDS))
    options = fields.List(
        fields.String(validate=validate.Length(min=1, max=100)),
        load_default=lambda: ["yes", "no"],
        validate=validate.Length(min=2, max=10),
        metadata={"description": "the first option is the proposal as written (e.g. yes)"},
    )
    starts_at = fields.AwareDateTime(load_default=None, allow_none=True)
    ends_at = fields.AwareDateTime(required=True)
    quorum_bps = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=10000), metadata={"description": "of supply"}
    )


class ResultsSchema(Schema):
    weights = fields.List(Amount())
    cast = Amount()
    voters = fields.Integer()
    supply_at_start = Amount(allow_none=True)
    quorum = Amount(allow_none=True)
    outcome = fields.String(allow_none=True)
    leading = fields.String(allow_none=True, metadata={"description": "the outcome if the vote ended now"})


class ProposalSchema(Schema):
    id = fields.Integer()
    author_id = fields.Integer()
    title = fields.String()
    description = fields.String()
    kind = fields.String()
    options = fields.List(fields.String())
    starts_at = Timestamp()
    ends_at = Timestamp()
    quorum_bps = fields.Integer()
    status = fields.String()
    outcome = fields.String(allow_none=True)
    closed_at = Timestamp(allow_none=True)
    created_at = Timestamp()


class ProposalDetailSchema(ProposalSchema):
    results = fields.Nested(ResultsSchema)


class ProposalListArgsSchema(Schema):
    status = fields.String(validate=validate.OneOf(["open", "closed"]))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(max=500))


class VoteArgsSchema(Schema):
    option = fields.Integer(required=True, strict=True)


class VoteSchema(Schema):
    id = fields.Integer()
    proposal_id = fields.Integer()
    voter_id = fields.Integer()
    option = fields.Integer()
    weight = Amount()
    created_at = Timestamp()
    updated_at = Timestamp()


ProposalPageSchema = page_of(ProposalSchema)
VotePageSchema = page_of(VoteSchema)
