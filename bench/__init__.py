"""Benchmarks: the same docker-registry served directly vs through the gateway, in one run.

- ``run.py``: the command line, the table and ``results/latest.json``;
- ``harness.py``: the Bench (components per scenario), results (Metric, Outcome), the
  ``@scenario`` registry and the upstream/gateway set-up shared by scenarios;
- ``loadgen.py``: the load generators (curl for bodies, wrk for request rates) and /proc reads;
- ``scenarios.py``: one function per scenario.
"""
