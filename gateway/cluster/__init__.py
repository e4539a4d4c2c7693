"""Coordination between replicas through Redis (``cluster.redis``); absent = each one alone.

- ``coordinator``: the Redis connection, its health (a replica whose Redis is down or slow
  goes on alone: no 5xx, one log line per change, ``registry_gateway_cluster_up``), fill
  leases, shared tag answers and shared counters (token buckets).
- ``fills``: how a blob miss uses a lease: one replica fills, the others wait for the object.
"""
