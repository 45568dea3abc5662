"""Post jobs: fanning new posts and stories out to the author's followers."""

from bsn.services import posts


def fan_out(event: str, data: dict, author_id: int) -> int:
    return posts.fan_out(event, data, author_id)
