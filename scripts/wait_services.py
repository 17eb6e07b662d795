"""Fail loudly (exit 1, saying what and where) when PostgreSQL or Redis cannot be reached."""

import sys
from urllib.parse import urlsplit

import psycopg
import redis


def main(database_url: str, redis_url: str) -> int:
    problems = []
    parts = urlsplit(database_url)
    try:
        # the test database is created by the suite; reaching the server's own database is enough
        with psycopg.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
                             password=parts.password, dbname="postgres", connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        problems.append(f"PostgreSQL at {parts.hostname}:{parts.port or 5432}: {exc}")
    try:
        redis.Redis.from_url(redis_url, socket_timeout=5).ping()
    except Exception as exc:
        problems.append(f"Redis at {redis_url}: {exc}")
    for problem in problems:
        print(f"cannot reach {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
