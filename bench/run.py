#!/usr/bin/env python3
"""Benchmark: one docker-registry served directly vs through the gateway, in one run.

Run from the repo root: ``python bench/run.py [--quick] [--scenarios a,b] [--list]``.
Prints a table of absolute numbers and gateway/direct ratios to stdout (progress on stderr)
and writes the same data to bench/results/latest.json. Exit status 1 when a check failed
(wrong digest, HTTP errors, unexpected token fetches), 2 for bad arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # bench, tests.components and gateway import from the checkout, whatever the cwd.
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import bench.cache_scenarios  # noqa: E402  (the cache's, after the relay's)
import bench.scenarios  # noqa: E402, F401  (registers the scenarios)
from bench.harness import FULL, QUICK, SCENARIOS, Bench, Outcome, log  # noqa: E402
from bench.loadgen import cpu_busy, tool_version  # noqa: E402

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "latest.json"
BUSY_SHARE = 0.15  # of all CPUs, measured while the bench itself is idle
GIT = ("git", "-C", str(REPO_ROOT))


def extract_gateway(ref: str, into: Path) -> str:
    """``git archive REF gateway`` unpacked under ``into``; return the full commit id.

    Others edit gateway/ in this checkout: a ref pins what is measured.
    """
    commit = subprocess.run(
        [*GIT, "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        [*GIT, "archive", "--format=tar", commit, "gateway"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit


def gateway_version(src: Path) -> str:
    """``__version__`` read from the source, without importing a possibly half-edited tree."""
    found = re.search(r'__version__ = "([^"]+)"', (src / "gateway" / "__init__.py").read_text())
    return found.group(1) if found else "?"


def environment(gateway_src: Path | None, commit: str | None) -> dict[str, Any]:
    if commit is None:
        source = "working tree"
        commit = tool_version([*GIT, "rev-parse", "HEAD"])
        dirty = tool_version([*GIT, "status", "--porcelain", "--", "gateway"]) not in ("", "?")
    else:
        source, dirty = "git archive", False
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gateway_source": source,
        "gateway_version": gateway_version(gateway_src or REPO_ROOT),
        "git_commit": commit[:12],
        "gateway_tree_dirty": dirty,
        "curl": tool_version(["curl", "--version"]),
        "wrk": tool_version(["wrk", "--version"]),
        "docker_registry": tool_version(["docker-registry", "--version"]),
    }


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "count" or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def render_table(outcomes: Mapping[str, Outcome]) -> str:
    header = ("scenario", "metric", "unit", "direct", "gateway", "gw/direct", "note")
    rows: list[tuple[str, ...]] = [header]
    for name, outcome in outcomes.items():
        if not outcome.metrics:
            rows.append((name, "(no result: see problems)", "", "", "", "", ""))
        for index, metric in enumerate(outcome.metrics):
            ratio = "-" if metric.ratio is None else f"{metric.ratio:.2f}x"
            rows.append(
                (
                    name if index == 0 else "",
                    metric.name,
                    metric.unit,
                    fmt(metric.direct, metric.unit),
                    fmt(metric.gateway, metric.unit),
                    ratio,
                    metric.note,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right_aligned = {3, 4, 5}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right_aligned else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def run_scenarios(names: Sequence[str], bench: Bench) -> dict[str, Outcome]:
    """Run each scenario in its own scope; one that crashes is reported, the rest still run."""
    outcomes: dict[str, Outcome] = {}
    for name in names:
        log(f"== {name}: {SCENARIOS[name].summary}")
        background = cpu_busy()
        started = time.monotonic()
        try:
            with bench.scenario_scope():
                outcome = SCENARIOS[name].run(bench)
        except Exception as exc:
            traceback.print_exc()
            outcome = Outcome(problems=[f"scenario failed: {type(exc).__name__}: {exc}"])
        outcome.seconds = time.monotonic() - started
        outcome.details["background_cpu_before"] = round(background, 3)
        if background > BUSY_SHARE:
            # Other processes competed for the same cores: both sides suffer, but not alike.
            outcome.notes.append(
                f"machine busy: other processes used {background:.0%} of all CPUs just before"
            )
        outcomes[name] = outcome
    return outcomes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="256 MiB single stream, 64 MiB x8, 5 s wrk runs"
    )
    parser.add_argument(
        "--runs", type=int, help="alternating direct/gateway runs per blob scenario (default 3)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated names to run, in this order (default: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--gateway-ref",
        metavar="REF",
        help="run the gateway from this git commit/branch (git archive) instead of the "
        "working tree, e.g. HEAD while gateway/ has uncommitted edits",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="the JSON results file")
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep the temp dir (logs, configs) afterwards"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for item in SCENARIOS.values():
            print(f"{item.name:18} {item.summary}")
        return 0
    names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        log(f"unknown scenario(s) {given}; known: {', '.join(SCENARIOS)}")
        return 2
    sizes = QUICK if args.quick else FULL
    if args.runs is not None:
        if not 1 <= args.runs <= 20:
            log("--runs must be between 1 and 20")
            return 2
        sizes = dataclasses.replace(sizes, runs=args.runs)
    started_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.keep_workdir:
            workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
            log(f"workdir (kept): {workdir}")
        else:
            temp = tempfile.TemporaryDirectory(prefix="gateway-bench-", ignore_cleanup_errors=True)
            workdir = Path(stack.enter_context(temp))
        gateway_src, commit = None, None
        if args.gateway_ref:
            gateway_src = workdir / "gateway-src"
            try:
                commit = extract_gateway(args.gateway_ref, gateway_src)
            except subprocess.CalledProcessError as exc:
                stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr
                log(f"--gateway-ref {args.gateway_ref}: {(stderr or '').strip() or exc}")
                return 2
            log(f"gateway from {args.gateway_ref} = {commit[:12]} (git archive)")
        env = environment(gateway_src, commit)  # before the run: others may commit meanwhile
        bench = Bench(workdir, sizes, gateway_src)
        stack.callback(bench.close)
        outcomes = run_scenarios(names, bench)
    total = time.monotonic() - started

    mode = "quick" if args.quick else "full"
    report = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "mode": mode,
        "seconds": round(total, 1),
        "sizes": dataclasses.asdict(sizes),
        "environment": env,
        "scenarios": {
            name: {
                "seconds": round(outcome.seconds, 1),
                "metrics": [metric.as_json() for metric in outcome.metrics],
                "details": outcome.details,
                "problems": outcome.problems,
                "notes": outcome.notes,
            }
            for name, outcome in outcomes.items()
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    dirty = " + uncommitted gateway/ changes" if env["gateway_tree_dirty"] else ""
    print(
        f"\nregistry-gateway bench: {mode}, {env['cpus']} CPUs, {total:.0f} s, "
        f"gateway {env['git_commit']}{dirty}; ratios against the same docker-registry direct"
    )
    print(render_table(outcomes))
    problems = [f"{name}: {p}" for name, outcome in outcomes.items() for p in outcome.problems]
    notes = [f"{name}: {n}" for name, outcome in outcomes.items() for n in outcome.notes]
    for title, items in (("notes", notes), ("problems (failed checks)", problems)):
        if items:
            print(f"\n{title}:")
            print("\n".join(f"  - {item}" for item in items))
    print(f"\nresults: {args.output}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
