"""The scenarios, one function each, in the order they run. Add one with ``@scenario``.

Each compares the same upstream served directly and through a gateway started for it; see
bench/README.md for what each measures and why it is measured that way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.parse
from pathlib import Path

import bcrypt

from tests.components import client

from .harness import (
    Bench,
    Metric,
    MiB,
    Outcome,
    blob_chunks,
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
from .loadgen import (
    WrkResult,
    child_pids,
    cpu_seconds,
    curl_download,
    curl_parallel,
    curl_upload,
    memory,
    run_ab_head,
    run_wrk,
)

RSS_TARGET = 150 * MiB
PUSH_RSS_GROWTH_TARGET = 64 * MiB
PUSH_RATIO_TARGET = 0.6
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


def write_generated_file(path: Path, size: int, seed: int) -> str:
    """Write ``size`` generated bytes to ``path``; their sha256 digest."""
    hasher = hashlib.sha256()
    with path.open("wb") as handle:
        for chunk in blob_chunks(size, seed):
            hasher.update(chunk)
            handle.write(chunk)
    return f"sha256:{hasher.hexdigest()}"


@scenario("blob-push", "one large layer PUT through an upload session; gateway RSS growth")
def blob_push(bench: Bench) -> Outcome:
    out = Outcome()
    size, runs = bench.sizes.single_blob, bench.sizes.runs
    registry = bench.open_registry()
    config = gateway_config(registry)
    config["upstreams"][registry.host]["push"] = True
    gateway = bench.start_gateway("gateway-push", config)
    pid = gateway.process.pid
    layer = bench.workdir / "push-layer.bin"
    digest = write_generated_file(layer, size, seed=3)
    log(f"  wrote a {size / MiB:.0f} MiB layer {digest[:19]}…")
    before = memory(pid)
    speeds: dict[str, list[float]] = {"direct": [], "gateway": []}
    rss_sampled = 0
    max_seconds = max(60.0, size / (10 * MiB))
    for run in range(1, runs + 1):
        for side, base in (("direct", registry.url), ("gateway", gateway.url)):
            repo = f"bench/push-{side}-{run}"
            started = client.send(f"{base}/v2/{repo}/blobs/uploads/", method="POST")
            if not out.check(started.status == 202, f"{side} POST uploads: {started.status}"):
                continue
            location = urllib.parse.urljoin(f"{base}/", started.headers["Location"])
            separator = "&" if "?" in location else "?"
            upload, rss = curl_upload(
                f"{location}{separator}digest={digest}", layer, max_seconds,
                watch_pid=pid if side == "gateway" else None,
            )  # fmt: skip
            rss_sampled = max(rss_sampled, rss)
            log(f"  run {run}/{runs} {side:7} {upload.speed / MiB:8.1f} MiB/s")
            stored = client.send(f"{registry.url}/v2/{repo}/blobs/{digest}", method="HEAD")
            if out.check(
                upload.status == 201 and upload.size == size and stored.status == 200,
                f"{side} run {run}: HTTP {upload.status}, {upload.size} of {size} bytes sent, "
                f"registry HEAD {stored.status}",
            ):
                speeds[side].append(upload.speed)
    after = memory(pid)
    growth = None
    if "VmHWM" in after and "VmHWM" in before:
        growth = after["VmHWM"] - before["VmHWM"]
    verdict = "?" if growth is None else ("met" if growth <= PUSH_RSS_GROWTH_TARGET else "MISSED")
    direct, via = median_or_none(speeds["direct"], MiB), median_or_none(speeds["gateway"], MiB)
    ratio = via / direct if direct and via else None
    ratio_verdict = "?" if ratio is None else ("met" if ratio >= PUSH_RATIO_TARGET else "MISSED")
    out.details.update(
        size=size, runs=runs, digest=digest,
        speeds_mib_s={side: [v / MiB for v in values] for side, values in speeds.items()},
        vmhwm_before_mib=in_mib(before.get("VmHWM")), vmhwm_after_mib=in_mib(after.get("VmHWM")),
        vmhwm_growth_mib=in_mib(growth), vmrss_sampled_max_mib=in_mib(rss_sampled),
        rss_growth_target_mib=PUSH_RSS_GROWTH_TARGET / MiB, rss_growth_target=verdict,
        ratio_target=PUSH_RATIO_TARGET, ratio=ratio, ratio_verdict=ratio_verdict,
    )  # fmt: skip
    observe_gateway_log(out, gateway)
    out.metrics += [
        Metric(
            f"push throughput, {size // MiB} MiB x1 (median of {runs})", "MiB/s", direct, via,
            note=f"{pair_ratios(speeds['direct'], speeds['gateway'])}; target >= "
            f"{PUSH_RATIO_TARGET}x: {ratio_verdict}",
        ),
        Metric(
            "gateway peak RSS growth (VmHWM) during the push", "MiB", None, in_mib(growth),
            note=f"target <= {PUSH_RSS_GROWTH_TARGET // MiB} MiB: {verdict}",
        ),
    ]  # fmt: skip
    layer.unlink()
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


@scenario("manifest-peers", "manifest GET and HEAD/s (wrk -c4, warm token): direct, nginx, gateway")
def manifest_peers(bench: Bench) -> Outcome:
    """The gateway's request path against the registry alone and against nginx proxy_pass.

    Token-mode registry, warm token everywhere: direct and nginx carry a token the bench fetched
    (nginx passes it through), the gateway uses the upstream token it cached on the warm-up.
    The three runs of each method go back to back, so drift on a shared box hits all three.
    """
    out = Outcome()
    seconds = bench.sizes.wrk_seconds
    registry = bench.start_registry("registry-peers", "token")
    repo, tag = "bench/peers", "latest"
    manifest_digest = push_small_image(bench, registry, repo, tag)
    credentials = {"username": registry.username, "password": registry.password}
    gateway = bench.start_gateway(
        "gateway-peers", gateway_config(registry, credentials, **RELAY_ONLY)
    )
    nginx = bench.start_nginx("nginx-peers", registry)
    path = f"/v2/{repo}/manifests/{tag}"
    accept = {"Accept": client.MANIFEST_ACCEPT}
    token = client.fetch_token(registry, client.pull_scope(repo))
    with_token = {**accept, "Authorization": f"Bearer {token}"}
    sides = {
        "direct": (registry.url + path, with_token),
        "nginx": (nginx.url + path, with_token),
        "gateway": (gateway.url + path, accept),
    }
    for side, (url, headers) in sides.items():  # warm-up; the gateway caches its token here
        warm = client.send(url, headers=headers)
        digest = f"sha256:{hashlib.sha256(warm.body).hexdigest()}"
        out.check(warm.status == 200, f"warm-up manifest GET via {side}: HTTP {warm.status}")
        out.check(digest == manifest_digest, f"{side} manifest {digest} != {manifest_digest}")
    tokens_before = upstream_tokens(gateway)
    results: dict[str, dict[str, WrkResult]] = {}
    cpu_us: dict[str, dict[str, float]] = {}
    relay_pids = {"nginx": nginx.process.pid, "gateway": gateway.process.pid}
    for method in ("GET", "HEAD"):
        results[method], cpu_us[method] = {}, {}
        for side, (url, headers) in sides.items():
            pid = relay_pids.get(side)
            cpu_before = cpu_seconds(pid) if pid else 0.0
            if method == "GET":
                result = run_wrk(bench.workdir, url, headers, seconds=seconds, threads=1,
                                 connections=4)  # fmt: skip
            else:
                result = run_ab_head(url, headers, seconds=seconds, connections=4)
            log(f"  {method:4} {side:7} {result.rate:8.0f} req/s, "
                f"p50 {result.latency_ms('p50'):.2f} ms")  # fmt: skip
            out.check(result.error_count == 0, f"{method} {side}: errors {result.errors}")
            out.check(result.requests > 0, f"{method} {side}: no request completed")
            results[method][side] = result
            if pid and result.requests:
                cpu_us[method][side] = (cpu_seconds(pid) - cpu_before) / result.requests * 1e6
    tokens_after = upstream_tokens(gateway)
    fetched = tokens_after["fetched"] - tokens_before["fetched"]
    out.check(fetched == 0, f"gateway fetched {fetched:g} upstream tokens during the warm runs")
    for method, by_side in results.items():
        label = f"manifest {method} ({'wrk -t1' if method == 'GET' else 'ab -k'} -c4)"
        direct, via_nginx, via = by_side["direct"], by_side["nginx"], by_side["gateway"]
        out.metrics += [
            Metric(f"{label} rate", "req/s", direct.rate, via.rate),
            Metric(
                f"{label} rate vs nginx",
                "req/s",
                via_nginx.rate,
                via.rate,
                note="direct column = nginx proxy_pass",
            ),
            Metric(f"{label} latency p50", "ms", direct.latency_ms("p50"), via.latency_ms("p50")),
            Metric(
                f"{label} latency p50 vs nginx",
                "ms",
                via_nginx.latency_ms("p50"),
                via.latency_ms("p50"),
                note="direct column = nginx proxy_pass",
            ),
            Metric(
                f"{label} relay CPU per request",
                "us",
                cpu_us[method].get("nginx"),
                cpu_us[method].get("gateway"),
                note="direct column = nginx; user+sys of the relay process",
            ),
        ]
    out.details.update(
        wrk={"threads": 1, "connections": 4, "seconds": seconds},
        runs={m: {side: r.as_json() for side, r in by.items()} for m, by in results.items()},
        relay_cpu_us_per_request=cpu_us,
        upstream_tokens_before=tokens_before,
        upstream_tokens_after=tokens_after,
    )
    observe_gateway_log(out, gateway)
    return out
