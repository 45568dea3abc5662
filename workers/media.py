"""Media jobs: purging expired stories and their files."""

from bsn.services import media


def purge_stories() -> int:
    return media.purge_stories()
