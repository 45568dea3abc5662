"""REST: register, login, the caller's own account, logout, passwords, e-mail verification, export, deletion."""

from flask import current_app, request
from flask_smorest import Blueprint

from bsn.auth import bearer_token, current_caller, current_caller_or_none, current_user, login_required
from bsn.extensions import limiter
from bsn.schemas.accounts import (
    AcceptedSchema,
    AccountTokenSchema,
    DeleteAccountSchema,
    ExportSchema,
    LoginResultSchema,
    LoginSchema,
    MeSchema,
    PasswordChangeSchema,
    PasswordResetRequestSchema,
    PasswordResetSchema,
    ProfileUpdateSchema,
    RegisterSchema,
    TokenSchema,
)
from bsn.services import accounts, credentials, privacy

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and bearer tokens")


def _login_account_key() -> str:
    # Guessing passwords against one account is stopped whatever addresses the guesses come from.
    body = request.get_json(silent=True)
    ident = body.get("username") if isinstance(body, dict) else None
    return "login-account:" + (str(ident).strip().lower()[:254] if ident else "-")


def _ip_key() -> str:
    return "ip:" + (request.remote_addr or "unknown")


def _reset_address_key() -> str:
    # One address cannot be flooded with reset e-mails from many addresses either.
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return "reset-address:" + (str(email).strip().lower()[:254] if email else "-")


def _user_key() -> str:
    # Limits run before the view: an anonymous call is counted per address, then answered 401 by the view.
    caller = current_caller_or_none()
    return f"user:{caller.id}" if caller is not None else _ip_key()


def _account_email_limit() -> str:
    return current_app.config["RATELIMIT_ACCOUNT_EMAIL"]


def _password_limit() -> str:
    # Checking the current password is a login: guessing it is limited the same way.
    return current_app.config["RATELIMIT_LOGIN_ACCOUNT"]


@blp.route("/register/", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER_IP"], key_func=_ip_key, scope="register")
@blp.arguments(RegisterSchema)
@blp.response(201, LoginResultSchema)
def register(body):
    """Create an account and log it in."""
    user = accounts.register(body["username"], body["email"], body["password"])
    # Accounts made by an operator (`flask bsn create-admin`, the seed) get no e-mail: only this door sends one.
    credentials.send_verification(user)
    return {"token": accounts.issue_token(user), "user": user}


@blp.route("/login/", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN_IP"], key_func=_ip_key, scope="login-ip")
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN_ACCOUNT"], key_func=_login_account_key, scope="login")
@blp.arguments(LoginSchema)
@blp.response(200, LoginResultSchema)
def login(body):
    """Log in with a username or e-mail address; returns a bearer token."""
    token, user = accounts.login(body["username"], body["password"])
    return {"token": token, "user": user}


@blp.route("/user/", methods=["GET"])
@blp.doc(security=[{"bearer": []}])
@login_required
@blp.response(200, MeSchema)
def me():
    """The caller's own account."""
    return accounts.own_account(current_caller())


@blp.route("/user/", methods=["PATCH"])
@blp.doc(security=[{"bearer": []}])
@login_required
@blp.arguments(ProfileUpdateSchema)
@blp.response(200, MeSchema)
def update_me(body):
    """Change display name, bio or avatar URL."""
    return accounts.update_profile(current_user(), body)


@blp.route("/logout/", methods=["POST"])
@blp.doc(security=[{"bearer": []}])
@login_required
@blp.response(204)
def logout():
    """Revoke the token of this request, at once and on every process."""
    accounts.logout(bearer_token())


@blp.route("/user/", methods=["DELETE"])
@blp.doc(security=[{"bearer": []}])
@login_required
@limiter.limit(_password_limit, key_func=_user_key, scope="password-check")
@blp.arguments(DeleteAccountSchema)
@blp.response(204)
def delete_me(body):
    """Delete your account (needs your password). What is removed and what is kept is in the README."""
    privacy.delete_account(current_user(), body["password"])


@blp.route("/user/export/", methods=["GET"])
@blp.doc(security=[{"bearer": []}])
@login_required
@limiter.limit(lambda: current_app.config["RATELIMIT_EXPORT"], key_func=_user_key, scope="export")
@blp.response(200, ExportSchema)
def export_me():
    """Everything stored about you, as JSON, table by table."""
    return privacy.export(current_user()), 200, {"Content-Disposition": 'attachment; filename="bsn-export.json"'}


@blp.route("/password/", methods=["POST"])
@blp.doc(security=[{"bearer": []}])
@login_required
@limiter.limit(_password_limit, key_func=_user_key, scope="password-check")
@blp.arguments(PasswordChangeSchema)
@blp.response(200, TokenSchema)
def change_password(body):
    """Change your password: every session ends, and this answer carries a new token for this client."""
    return {"token": credentials.change_password(current_user(), body["current_password"], body["new_password"])}


@blp.route("/password-reset/", methods=["POST"])
@limiter.limit(_account_email_limit, key_func=_ip_key, scope="reset-ip")
@limiter.limit(_account_email_limit, key_func=_reset_address_key, scope="reset-address")
@blp.arguments(PasswordResetRequestSchema)
@blp.response(202, AcceptedSchema)
def request_password_reset(body):
    """E-mail a single-use reset link. The answer is the same whether or not an account uses the address."""
    credentials.request_password_reset(body["email"])
    return {"message": "If an account uses this address, an e-mail with a reset link is on its way."}


@blp.route("/password-reset/confirm/", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN_IP"], key_func=_ip_key, scope="reset-confirm")
@blp.arguments(PasswordResetSchema)
@blp.response(204)
def reset_password(body):
    """Set a new password with the e-mailed token; every session of the account ends."""
    credentials.reset_password(body["token"], body["password"])


@blp.route("/verify-email/", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN_IP"], key_func=_ip_key, scope="verify-email")
@blp.arguments(AccountTokenSchema)
@blp.response(204)
def verify_email(body):
    """Confirm the e-mail address with the token sent to it (no login needed: the token is the proof)."""
    credentials.verify_email(body["token"])


@blp.route("/verify-email/resend/", methods=["POST"])
@blp.doc(security=[{"bearer": []}])
@login_required
@limiter.limit(_account_email_limit, key_func=_user_key, scope="verify-resend")
@blp.response(202, AcceptedSchema)
def resend_verification():
    """Send a new verification e-mail (the older links stop working)."""
    credentials.send_verification(current_user())
    return {"message": "A verification e-mail is on its way."}
