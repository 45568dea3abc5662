"""CPU per request of the four benchmark calls, in process (Flask test client, no gunicorn), with a cProfile option.

    BENCH_DATA_DIR=/work/shared/bench/rest/data/u10000-p100000-f500000-l1000000-s42 \\
    DATABASE_URL=postgresql://bsn:bsn@127.0.0.1:5432/bench_rest_bsn_default \\
    .venv/bin/python bench/rest/cpu.py [--n 400] [--profile feed] [--no-cache]

Against a database the harness seeded (seed.py). Users and ids are drawn as the harness's wrk script draws
them (1,000 tokens, page 1 then page 2 as the same user), so cache hit rates are alike. Prints CPU µs per
request (process time, so other load on the machine counts far less than in wall-clock figures).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--profile", default="")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--calls", default="feed,posts,user,create")
    args = parser.parse_args()

    from tokens import data_set_tokens

    from bsn import create_app
    from bsn.devredis import PrivateRedis
    from bsn.extensions import db

    redis_dir = tempfile.mkdtemp(prefix="bsn-rest-profile-")
    redis = PrivateRedis(redis_dir, persist=False).start()
    os.environ.update(
        BSN_ENV="production",
        SECRET_KEY="profile-throwaway-secret-key",
        LOG_LEVEL="WARNING",
        REDIS_URL=redis.url,
        RATELIMIT_USER="100000000 per minute",
        RATELIMIT_ANON="100000000 per minute",
        CACHE_TTL="0" if args.no_cache else os.environ.get("CACHE_TTL", "30"),
    )
    try:
        app = create_app()
        client = app.test_client()
        tokens = data_set_tokens(1000)
        rng = random.Random(42)

        def requests(call: str):
            while True:
                headers = {"Authorization": "Bearer " + rng.choice(tokens)}
                if call in ("feed", "posts"):
                    path = "/api/feed/?limit=20" if call == "feed" else "/api/posts/?limit=20"
                    page = client.get(path, headers=headers)
                    yield page
                    cursor = page.get_json().get("next_cursor")
                    if cursor:
                        yield client.get(f"{path}&cursor={cursor}", headers=headers)
                elif call == "user":
                    yield client.get(f"/api/users/{rng.randint(1, 10000)}/", headers=headers)
                else:
                    yield client.post("/api/posts/", json={"body": "a post written by the profiler"}, headers=headers)

        for call in args.calls.split(","):
            gen = requests(call)
            for _ in range(50):  # warm-up: compiled statements, pools, token cache
                next(gen)
            profiler = cProfile.Profile(time.process_time) if call == args.profile else None
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            for _ in range(args.n):
                response = next(gen)
                assert response.status_code in (200, 201), response.data
            if profiler:
                profiler.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"{call:7} {cpu / args.n * 1e6:8.0f} µs CPU/request  {wall / args.n * 1e3:6.2f} ms wall")
            if profiler and os.environ.get("DUMP"):
                profiler.dump_stats(os.environ["DUMP"])
            if profiler:
                pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(
                    int(os.environ.get("TOP", "45"))
                )
        with app.app_context():
            db.session.remove()
    finally:
        redis.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
