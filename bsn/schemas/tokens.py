"""Schemas of the token ledger."""

from marshmallow import Schema, fields

from bsn.schemas.common import Amount, Timestamp


class BalanceSchema(Schema):
    balance = Amount()


class TransferSchema(Schema):
    to_user_id = fields.Integer(required=True, strict=True)
    amount = fields.String(required=True, metadata={"example": "12.5"})


class LedgerEntrySchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    amount = Amount(metadata={"description": "signed: negative for money going out"})
    balance_after = Amount()
    reference = fields.String(allow_none=True)
    counterparty_id = fields.Integer(allow_none=True)
    created_at = Timestamp()


class LedgerPageSchema(Schema):
    results = fields.List(fields.Nested(LedgerEntrySchema))
    next_cursor = fields.String(allow_none=True)
