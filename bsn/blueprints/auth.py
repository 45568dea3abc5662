"""REST: register, login, the caller's own account, logout."""

from flask import current_app, request
from flask_smorest import Blueprint

from bsn.auth import bearer_token, current_caller, current_user, login_required
from bsn.extensions import limiter
from bsn.schemas.accounts import LoginResultSchema, LoginSchema, MeSchema, ProfileUpdateSchema, RegisterSchema
from bsn.services import accounts

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and bearer tokens")


def _login_account_key() -> str:
    # Guessing passwords against one account is stopped whatever addresses the guesses come from.
    body = request.get_json(silent=True)
    ident = body.get("username") if isinstance(body, dict) else None
    return "login-account:" + (str(ident).strip().lower()[:254] if ident else "-")


def _ip_key() -> str:
    return "ip:" + (request.remote_addr or "unknown")


@blp.route("/register/", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER_IP"], key_func=_ip_key, scope="register")
@blp.arguments(RegisterSchema)
@blp.response(201, LoginResultSchema)
def register(body):
    """Create an account and log it in."""
    user = accounts.register(body["username"], body["email"], body["password"])
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
