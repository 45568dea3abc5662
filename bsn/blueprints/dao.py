"""REST: DAO proposals, votes and live results."""

from flask_smorest import Blueprint

from bsn.auth import current_caller, login_required
from bsn.dbtools import cursor_id, encode_cursor, get_or_404
from bsn.models import Proposal
from bsn.schemas.common import PageArgsSchema, page
from bsn.schemas.dao import (
    ProposalCreateSchema,
    ProposalDetailSchema,
    ProposalListArgsSchema,
    ProposalPageSchema,
    ProposalSchema,
    VoteArgsSchema,
    VotePageSchema,
    VoteSchema,
)
from bsn.services import dao

blp = Blueprint("dao", __name__, url_prefix="/api/dao", description="DAO governance")
SECURITY = [{"bearer": []}]


@blp.route("/proposals/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(ProposalListArgsSchema, location="query")
@blp.response(200, ProposalPageSchema)
def proposals(args):
    rows, more = dao.proposals(args.get("status"), args["limit"], cursor_id(args))
    return page(rows, encode_cursor(rows[-1].id) if more else None)


@blp.route("/proposals/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(ProposalCreateSchema)
@blp.response(201, ProposalDetailSchema)
def create(body):
    """Open a proposal (needs DAO_PROPOSAL_MIN_BALANCE tokens). Quorum in basis points of the supply."""
    proposal = dao.create_proposal(current_caller(), **body)
    return _detail(proposal)


@blp.route("/proposals/<int:proposal_id>/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, ProposalDetailSchema)
def proposal(proposal_id):
    """A proposal with its results: live while open, recorded once closed."""
    return _detail(get_or_404(Proposal, proposal_id, "proposal"))


@blp.route("/proposals/<int:proposal_id>/vote/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(VoteArgsSchema)
@blp.response(200, VoteSchema)
def vote(body, proposal_id):
    """Vote for an option (by index); changeable until the end. Weight: your balance when the vote started."""
    return dao.vote(current_caller(), proposal_id, body["option"])


@blp.route("/proposals/<int:proposal_id>/votes/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, VotePageSchema)
def votes(args, proposal_id):
    rows, more = dao.votes(proposal_id, args["limit"], cursor_id(args))
    return page(rows, encode_cursor(rows[-1].id) if more else None)


def _detail(proposal: Proposal) -> dict:
    fields = ProposalSchema._declared_fields
    return {**{name: getattr(proposal, name) for name in fields}, "results": dao.results(proposal)}
