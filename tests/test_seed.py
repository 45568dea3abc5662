"""`flask bsn seed` fills an empty database consistently (small volume here; the defaults are the real volume)."""

from sqlalchemy import func, select

from bsn.extensions import db
from bsn.models import Follow, Post, PostLike, User
from bsn.services import accounts
from tests.conftest import auth


def test_seed_fills_an_empty_database_consistently(app, ctx, client):
    result = app.test_cli_runner().invoke(
        args=["bsn", "seed", "--users", "50", "--posts", "200", "--follows", "300", "--likes", "600"]
    )
    assert result.exit_code == 0, result.output
    counts = [db.session.scalar(select(func.count()).select_from(m)) for m in (User, Post, Follow, PostLike)]
    assert counts == [50, 200, 300, 600]
    per_post = dict(db.session.execute(select(PostLike.post_id, func.count()).group_by(PostLike.post_id)).all())
    assert all(post.like_count == per_post.get(post.id, 0) for post in db.session.scalars(select(Post)))
    # New rows after the seeded ids work (sequences moved past them), and the feed answers.
    token = accounts.issue_token(db.session.get(User, 1))
    assert client.post("/api/posts/", json={"body": "after the seed"}, headers=auth(token)).status_code == 201
    assert client.get("/api/feed/", headers=auth(token)).status_code == 200
    again = app.test_cli_runner().invoke(
        args=["bsn", "seed", "--users", "5", "--posts", "5", "--follows", "5", "--likes", "5"]
    )
    assert again.exit_code != 0 and "already has users" in again.output
