"""Post jobs: fanning new posts and stories out to the author's followers."""

from bsn.services import posts


def fan_out(event: str, data: dict, author_id: int) -> int:
    return posts.fan_out(event, data, author_id)


def fan_out_posts(created: list) -> int:
    """post_created to the followers of each author, for posts a group commit stored together ([post id, author id]
    each): one job per batch, not per post."""
    return sum(
        posts.fan_out("post_created", {"post_id": post_id, "author_id": author_id}, author_id)
        for post_id, author_id in created
    )
