"""Schemas of accounts and the user object of CONTRACT.md."""

from marshmallow import Schema, fields, validate

from bsn.schemas.common import Timestamp

USERNAME = validate.Regexp(r"^[A-Za-z0-9_]{3,30}$", error="3 to 30 letters, digits or underscores.")


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    username = fields.String(dump_only=True)
    display_name = fields.String(dump_only=True)
    avatar_url = fields.String(dump_only=True, allow_none=True)


class MeSchema(UserSchema):
    email = fields.String(dump_only=True)
    bio = fields.String(dump_only=True)
    role = fields.String(dump_only=True)
    email_verified = fields.Boolean(dump_only=True)
    created_at = Timestamp(dump_only=True)


class RegisterSchema(Schema):
    username = fields.String(required=True, validate=USERNAME)
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=128))


class LoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))


class LoginResultSchema(Schema):
    token = fields.String()
    user = fields.Nested(MeSchema)


class ProfileUpdateSchema(Schema):
    display_name = fields.String(validate=validate.Length(max=50))
    bio = fields.String(validate=validate.Length(max=500))
    avatar_url = fields.Url(allow_none=True, schemes={"https", "http"}, validate=validate.Length(max=500))


class PasswordChangeSchema(Schema):
    current_password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))
    new_password = fields.String(required=True, load_only=True, validate=validate.Length(max=128))


class TokenSchema(Schema):
    token = fields.String()


class PasswordResetRequestSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))


class PasswordResetSchema(Schema):
    token = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=200))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=128))


class AccountTokenSchema(Schema):
    token = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=200))


class DeleteAccountSchema(Schema):
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))


class ExportSchema(Schema):
    exported_at = fields.String()
    user_id = fields.Integer()
    data = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.Dict()),
        metadata={"description": "rows per table; amounts in base units of 1e-8 token"},
    )


class AcceptedSchema(Schema):
    message = fields.String()
