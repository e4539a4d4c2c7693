"""The scenarios, one function each, in the order they run. Add one with ``@scenario``.

Each compares the same upstream served directly and through a gateway started for it; see
bench/README.md for what each measures and why it is measured that way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import bcrypt

from tests.components import client

from .harness import (
    Bench,
    Metric,
    MiB,
    Outcome,
    blob_url,
    gateway_config,
    in_mib,
    log,
    median_or_none,
    observe_gateway_log,
    pair_ratios,
    push_generated_blob,
    push_small_image,
    scenario,
    sha256_of_url,
    upstream_tokens,
)
from .loadgen import WrkResult, child_pids, curl_download, curl_parallel, memory, run_wrk

RSS_TARGET = 150 * MiB
# These scenarios measure the relay: the cache (on by default) would answer repeats itself.
RELAY_ONLY = {"cache": {"enabled": False}}


@scenario("blob-single", "one curl stream of a large blob, median of alternating runs")
def blob_single(bench: Bench) -> Outcome:
    out = Outcome()
    size, runs = bench.sizes.single_blob, bench.sizes.runs
    registry = bench.open_registry()
    repo = "bench/single"
    digest = push_generated_blob(registry, repo, size, seed=1)
    gateway = bench.start_gateway("gateway-single", gateway_config(registry, **RELAY_ONLY))
    urls = {
        "direct": blob_url(registry.url, repo, digest),
        "gateway": blob_url(gateway.url, repo, digest),
    }

    # The check doubles as the warm-up: page cache and the gateway's upstream pool are hot after.
    started = time.monotonic()
    body_digest, body_size = sha256_of_url(urls["gateway"], size, timeout=300)
    out.details["verify"] = {
        "digest": digest,
        "body_sha256": body_digest,
        "body_size": body_size,
        "ok": body_digest == digest and body_size == size,
        "seconds": round(time.monotonic() - started, 2),
    }
    out.check(body_digest == digest, f"gateway body sha256 {body_digest} != digest {digest}")
    out.check(body_size == size, f"gateway body has {body_size} bytes, not {size}")

    speeds: dict[str, list[float]] = {"direct": [], "gateway": []}
    max_seconds = max(60.0, size / (20 * MiB))
    for run in range(1, runs + 1):
        for side in ("direct", "gateway"):  # alternating, so drift hits both sides alike
            download = curl_download(urls[side], max_seconds)
            log(f"  run {run}/{runs} {side:7} {download.speed / MiB:8.1f} MiB/s")
            if out.check(
                download.status == 200 and download.size == size,
                f"{side} run {run}: HTTP {download.status}, {download.size} of {size} bytes",
            ):
                speeds[side].append(download.speed)
    out.details.update(
        size=size,
        runs=runs,
        speeds_mib_s={side: [v / MiB for v in values] for side, values in speeds.items()},
    )
    observe_gateway_log(out, gateway)
    out.metrics.append(
        Metric(
            f"throughput, {size // MiB} MiB x1 (median of {runs})",
            "MiB/s",
            median_or_none(speeds["direct"], MiB),
            median_or_none(speeds["gateway"], MiB),
            note=pair_ratios(speeds["direct"], speeds["gateway"]),
        )
    )
    return out


@scenario("blob-concurrent", "8 concurrent curl streams of one blob; gateway peak RSS")
def blob_concurrent(bench: Bench) -> Outcome:
    out = Outcome()
    size, streams, runs = bench.sizes.concurrent_blob, bench.sizes.streams, bench.sizes.runs
    registry = bench.open_registry()
    repo = "bench/concurrent"
    digest = push_generated_blob(registry, repo, size, seed=2)
    gateway = bench.start_gateway("gateway-concurrent", gateway_config(registry, **RELAY_ONLY))
    pid = gateway.process.pid
    urls = {
        "direct": blob_url(registry.url, repo, digest),
        "gateway": blob_url(gateway.url, repo, digest),
    }
    # Warm the page cache through the registry only: the gateway's memory counts from its start.
    curl_download(urls["direct"], 120)

    before = memory(pid)
    aggregates: dict[str, list[float]] = {"direct": [], "gateway": []}
    rss_sampled = 0
    max_seconds = max(60.0, streams * size / (10 * MiB))
    for run in range(1, runs + 1):
        for side in ("direct", "gateway"):
            watch = pid if side == "gateway" else None
            result = curl_parallel(urls[side], streams, max_seconds, watch_pid=watch)
            rss_sampled = max(rss_sampled, result.rss_sampled_max)
            log(
                f"  run {run}/{runs} {side:7} {result.aggregate / MiB:8.1f} MiB/s "
                f"aggregate, {result.seconds:.2f}s"
            )
            bad = [d for d in result.downloads if d.status != 200 or d.size != size]
            if out.check(not bad, f"{side} run {run}: incomplete downloads {bad}"):
                aggregates[side].append(result.aggregate)
    after = memory(pid)
    children = child_pids(pid)
    out.check(not children, f"gateway has child processes {children}: VmHWM misses them")

    peak = after.get("VmHWM")
    verdict = "?" if peak is None else ("met" if peak <= RSS_TARGET else "MISSED")
    out.details.update(
        size=size,
        streams=streams,
        runs=runs,
        aggregate_mib_s={side: [v / MiB for v in values] for side, values in aggregates.items()},
        gateway_pid=pid,
        vmhwm_before_mib=in_mib(before.get("VmHWM")),
        vmrss_before_mib=in_mib(before.get("VmRSS")),
        vmhwm_after_mib=in_mib(peak),
        vmrss_after_mib=in_mib(after.get("VmRSS")),
        vmrss_sampled_max_mib=in_mib(rss_sampled),
        rss_target_mib=RSS_TARGET / MiB,
        rss_target=verdict,
    )
    observe_gateway_log(out, gateway)
    out.metrics += [
        Metric(
            f"aggregate throughput, {size // MiB} MiB x{streams} (median of {runs})",
            "MiB/s",
            median_or_none(aggregates["direct"], MiB),
            median_or_none(aggregates["gateway"], MiB),
            note=pair_ratios(aggregates["direct"], aggregates["gateway"]),
        ),
        Metric("gateway VmHWM before the test", "MiB", None, in_mib(before.get("VmHWM"))),
        Metric(
            "gateway peak RSS (VmHWM) during",
            "MiB",
            None,
            in_mib(peak),
            note=f"target <= {RSS_TARGET // MiB} MiB: {verdict}",
        ),
        Metric("gateway VmRSS after", "MiB", None, in_mib(after.get("VmRSS"))),
    ]
    return out


def wrk_metrics(label: str, direct: WrkResult, via: WrkResult) -> list[Metric]:
    """Rate and latency rows for a wrk comparison; reusable by any request-rate scenario."""
    return [
        Metric(f"{label} rate", "req/s", direct.rate, via.rate),
        Metric(f"{label} latency p50", "ms", direct.latency_ms("p50"), via.latency_ms("p50")),
        Metric(f"{label} latency p99", "ms", direct.latency_ms("p99"), via.latency_ms("p99")),
    ]


@scenario("manifest-token", "manifest GETs/s (wrk) through a warm upstream token cache")
def manifest_token(bench: Bench) -> Outcome:
    out = Outcome()
    seconds = bench.sizes.wrk_seconds
    registry = bench.start_registry("registry-token", "token")
    repo, tag = "bench/manifest", "latest"
    manifest_digest = push_small_image(bench, registry, repo, tag)
    credentials = {"username": registry.username, "password": registry.password}
    gateway = bench.start_gateway(
        "gateway-token", gateway_config(registry, credentials, **RELAY_ONLY)
    )
    path = f"/v2/{repo}/manifests/{tag}"
    accept = {"Accept": client.MANIFEST_ACCEPT}

    # Direct: the caller fetches one token itself and reuses it for every request.
    token = client.fetch_token(registry, client.pull_scope(repo))
    direct_headers = {**accept, "Authorization": f"Bearer {token}"}
    probe = client.send(registry.url + path, headers=direct_headers)
    out.check(probe.status == 200, f"direct manifest GET with a token: HTTP {probe.status}")
    direct = run_wrk(bench.workdir, registry.url + path, direct_headers, seconds=seconds)
    log(f"  direct  {direct.rate:8.0f} req/s, p50 {direct.latency_ms('p50'):.2f} ms")

    # Gateway: one GET warms the upstream token cache; the timed run must not fetch again.
    warm = client.send(gateway.url + path, headers=accept)
    out.check(warm.status == 200, f"warm-up manifest GET via gateway: HTTP {warm.status}")
    warm_digest = f"sha256:{hashlib.sha256(warm.body).hexdigest()}"
    out.check(
        warm_digest == manifest_digest, f"gateway manifest {warm_digest} != {manifest_digest}"
    )
    tokens_before, issued_before = upstream_tokens(gateway), registry.token_count()
    via = run_wrk(bench.workdir, gateway.url + path, accept, seconds=seconds)
    tokens_after, issued_after = upstream_tokens(gateway), registry.token_count()
    log(f"  gateway {via.rate:8.0f} req/s, p50 {via.latency_ms('p50'):.2f} ms")

    for side, result in (("direct", direct), ("gateway", via)):
        out.check(result.error_count == 0, f"wrk {side}: errors {result.errors}")
    fetched = tokens_after["fetched"] - tokens_before["fetched"]
    issued = issued_after - issued_before
    out.check(fetched == 0, f"gateway fetched {fetched:g} upstream tokens during the warm run")
    out.check(issued == 0, f"token server issued {issued} tokens during the warm run")
    out.details.update(
        wrk={"threads": 2, "connections": 16, "seconds": seconds},
        direct=direct.as_json(),
        gateway=via.as_json(),
        upstream_tokens_before=tokens_before,
        upstream_tokens_after=tokens_after,
        token_server_issued_before=issued_before,
        token_server_issued_after=issued_after,
    )
    observe_gateway_log(out, gateway)
    out.metrics += [
        *wrk_metrics("manifest GET (wrk -t2 -c16)", direct, via),
        Metric("upstream tokens fetched, before run", "count", None, tokens_before["fetched"]),
        Metric(
            "upstream tokens fetched, after run",
            "count",
            None,
            tokens_after["fetched"],
            note="must equal before: one token serves the run",
        ),
        Metric(
            "upstream tokens cached during run",
            "count",
            None,
            tokens_after["cached"] - tokens_before["cached"],
            note=f"gateway requests: {via.requests}",
        ),
        Metric(
            "token server token_count() during run",
            "count",
            None,
            issued,
            note=f"total {issued_after}: pushes, warm-up, direct",
        ),
    ]
    return out


@scenario("manifest-auth", "warm manifest GET latency: anonymous vs basic vs token callers")
def manifest_auth(bench: Bench) -> Outcome:
    """The cost of caller authentication: the same gateway config with clients none/basic/token.

    The upstream is the open registry, so only the gateway's own work differs between rows.
    One connection (wrk -t1 -c1) so the latency is per request, not queueing.
    """
    out = Outcome()
    seconds = bench.sizes.wrk_seconds
    registry = bench.open_registry()
    repo, tag = "bench/auth", "latest"
    push_small_image(bench, registry, repo, tag)
    path = f"/v2/{repo}/manifests/{tag}"
    accept = {"Accept": client.MANIFEST_ACCEPT}
    user, password = "bench", "bench-password"
    htpasswd = bench.workdir / "bench-htpasswd"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    htpasswd.write_text(f"{user}:{hashed}\n")
    basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def clients(mode: str) -> dict[str, object]:
        return {"auth": mode, "htpasswd": str(htpasswd), "token": {"ttl": 3600}}

    anonymous = bench.start_gateway("gateway-anon", gateway_config(registry, **RELAY_ONLY))
    results: dict[str, WrkResult] = {}
    for mode in ("none", "basic", "token"):
        gateway = anonymous
        headers = dict(accept)
        if mode != "none":
            gateway = bench.start_gateway(
                f"gateway-{mode}", gateway_config(registry, clients=clients(mode), **RELAY_ONLY)
            )
            headers["Authorization"] = basic
        if mode == "token":
            answer = client.send(
                f"{gateway.url}/token?service=registry-gateway&scope=repository:{repo}:pull",
                headers={"Authorization": basic},
            )
            out.check(answer.status == 200, f"token service: HTTP {answer.status}")
            headers["Authorization"] = "Bearer " + json.loads(answer.body)["token"]
        warm = client.send(gateway.url + path, headers=headers)  # pays bcrypt once for basic
        out.check(warm.status == 200, f"warm-up GET ({mode}): HTTP {warm.status}")
        results[mode] = run_wrk(
            bench.workdir, gateway.url + path, headers, seconds=seconds, threads=1, connections=1
        )
        log(
            f"  {mode:6} {results[mode].rate:8.0f} req/s, "
            f"p50 {results[mode].latency_ms('p50'):.3f} ms"
        )
        out.check(results[mode].error_count == 0, f"wrk {mode}: errors {results[mode].errors}")
        observe_gateway_log(out, gateway)
    for mode in ("basic", "token"):
        added = results[mode].latency_ms("p50") - results["none"].latency_ms("p50")
        out.metrics += [
            *wrk_metrics(f"{mode} vs anonymous (wrk -t1 -c1)", results["none"], results[mode]),
            Metric(
                f"{mode}: added p50 latency",
                "ms",
                None,
                round(added, 3),
                note="direct column = anonymous caller",
            ),
        ]
    out.details.update({mode: result.as_json() for mode, result in results.items()})
    return out
