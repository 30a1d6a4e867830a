"""Real PostgreSQL and Redis from their pip wheels, for ``taskledger up`` and the tests.

Nothing here imports the rest of taskledger: the servers are plain processes
with a data folder and a unix socket, and ``embedded.stack`` writes down
where they listen so that every other process can find them.
"""

from embedded.postgres import EmbeddedPostgres
from embedded.redis import EmbeddedRedis

__all__ = ["EmbeddedPostgres", "EmbeddedRedis"]
