"""REST: the caller's balance, ledger entries and transfers."""

from flask_smorest import Blueprint

from bsn.auth import current_caller, login_required
from bsn.dbtools import cursor_id, encode_cursor
from bsn.schemas.common import PageArgsSchema, page
from bsn.schemas.tokens import BalanceSchema, LedgerEntrySchema, LedgerPageSchema, TransferSchema
from bsn.services import tokens

blp = Blueprint("tokens", __name__, url_prefix="/api/tokens", description="Token balance and ledger")
SECURITY = [{"bearer": []}]


@blp.route("/balance/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, BalanceSchema)
def balance():
    return {"balance": tokens.balance(current_caller().id)}


@blp.route("/transactions/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, LedgerPageSchema)
def transactions(args):
    """The caller's ledger entries, newest first."""
    before = cursor_id(args)
    rows, more = tokens.transactions(current_caller().id, args["limit"], before)
    return page(rows, encode_cursor(rows[-1].id) if more else None)


@blp.route("/transfer/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(TransferSchema)
@blp.response(201, LedgerEntrySchema)
def transfer(body):
    """Send tokens to another user (amount as a decimal string)."""
    return tokens.transfer(current_caller(), body["to_user_id"], body["amount"])
