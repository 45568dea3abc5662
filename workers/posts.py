"""Post jobs: fanning new posts and stories out to the author's followers."""

import logging

from rq import get_current_job

from bsn.extensions import db
from bsn.services import posts

log = logging.getLogger(__name__)


def fan_out(event: str, data: dict, author_id: int) -> int:
    return posts.fan_out(event, data, author_id)


def fan_out_posts(created: list) -> int:
    """post_created to the followers of each author, for posts a group commit stored together ([post id, author id]
    each): one job per batch, not per post.

    One post's failure does not stop the others: the job fails naming the posts it could not tell, after telling
    the rest, and its retry (RQ runs the same job again) tells only those; the posts told are kept in its meta.
    """
    job = get_current_job()
    told = set(job.meta.get("told", ())) if job is not None else set()
    failed, count = [], 0
    for post_id, author_id in created:
        if post_id in told:
            continue
        try:
            count += posts.fan_out("post_created", {"post_id": post_id, "author_id": author_id}, author_id)
        except Exception:
            log.exception("fan-out of post %s failed", post_id)
            db.session.rollback()
            failed.append(post_id)
            continue
        told.add(post_id)
    if job is not None and failed:
        job.meta["told"] = sorted(told)
        job.save_meta()
    if failed:
        raise RuntimeError(f"the fan-out of posts {failed} failed; the other {len(told)} were told")
    return count
