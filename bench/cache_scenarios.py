"""Cache scenarios: hits against the registry served directly, cached manifests with wrk, cold
fills against the pass-through relay, and the gateway's peak RSS with fills and hits at once.

Registered after the relay scenarios (bench/scenarios.py), which run with the cache off.
"""

from __future__ import annotations

import subprocess
import time

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
)
from .loadgen import (
    Download,
    cpu_seconds,
    curl_argv,
    curl_download,
    curl_parallel,
    memory,
    parse_curl,
    run_wrk,
)
from .scenarios import RSS_TARGET, wrk_metrics

CACHE_ON = {"cache": {"max_size": "16GiB", "tag_ttl": 3600}}
CACHE_OFF = {"cache": {"enabled": False}}


def curl_each(urls: list[str], max_seconds: float, watch_pid: int) -> tuple[list[Download], int]:
    """One curl per URL, all at once; the downloads and the sampled peak VmRSS of watch_pid."""
    procs = [
        subprocess.Popen(curl_argv(u, max_seconds), stdout=subprocess.PIPE, text=True) for u in urls
    ]
    rss = 0
    deadline = time.monotonic() + max_seconds + 10
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            rss = max(rss, memory(watch_pid).get("VmRSS", 0))
            time.sleep(0.02)
        outputs = [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    return [parse_curl(o) for o in outputs], rss


@scenario("cache-blob-hit", "cached blob: one stream and 8 streams vs the registry directly")
def cache_blob_hit(bench: Bench) -> Outcome:
    out = Outcome()
    size, runs, streams = bench.sizes.single_blob, bench.sizes.runs, bench.sizes.streams
    registry = bench.open_registry()
    repo = "bench/cache-hit"
    digest = push_generated_blob(registry, repo, size, seed=11)
    gateway = bench.start_gateway("gateway-cache-hit", gateway_config(registry, **CACHE_ON))
    urls = {"direct": blob_url(registry.url, repo, digest),
            "gateway": blob_url(gateway.url, repo, digest)}  # fmt: skip
    # The fill doubles as the digest check; afterwards every gateway GET is a hit.
    body_digest, body_size = sha256_of_url(urls["gateway"], size, timeout=600)
    out.check(body_digest == digest and body_size == size, f"fill gave {body_digest}")
    single: dict[str, list[float]] = {"direct": [], "gateway": []}
    multi: dict[str, list[float]] = {"direct": [], "gateway": []}
    max_seconds = max(60.0, streams * size / (10 * MiB))
    for run in range(1, runs + 1):
        for side in ("direct", "gateway"):
            download = curl_download(urls[side], max_seconds)
            if out.check(download.status == 200 and download.size == size, f"{side} {download}"):
                single[side].append(download.speed)
            log(f"  run {run}/{runs} {side:7} x1 {download.speed / MiB:8.1f} MiB/s")
        for side in ("direct", "gateway"):
            result = curl_parallel(urls[side], streams, max_seconds)
            bad = [d for d in result.downloads if d.status != 200 or d.size != size]
            if out.check(not bad, f"{side} run {run}: incomplete {bad}"):
                multi[side].append(result.aggregate)
            log(f"  run {run}/{runs} {side:7} x{streams} {result.aggregate / MiB:8.1f} MiB/s")
    out.details.update(size=size, runs=runs, streams=streams)
    observe_gateway_log(out, gateway)
    out.metrics += [
        Metric(f"cache hit, {size // MiB} MiB x1 (median of {runs})", "MiB/s",
               median_or_none(single["direct"], MiB), median_or_none(single["gateway"], MiB),
               note=pair_ratios(single["direct"], single["gateway"]) + "; target >= 0.95x"),
        Metric(f"cache hit, {size // MiB} MiB x{streams} aggregate (median of {runs})", "MiB/s",
               median_or_none(multi["direct"], MiB), median_or_none(multi["gateway"], MiB),
               note=pair_ratios(multi["direct"], multi["gateway"]) + "; target >= 0.95x"),
    ]  # fmt: skip
    return out


@scenario("cache-manifest", "cached manifest GETs/s (wrk) vs the registry directly")
def cache_manifest(bench: Bench) -> Outcome:
    out = Outcome()
    seconds = bench.sizes.wrk_seconds
    registry = bench.open_registry()
    repo, tag = "bench/cache-manifest", "latest"
    push_small_image(bench, registry, repo, tag)
    gateway = bench.start_gateway("gateway-cache-manifest", gateway_config(registry, **CACHE_ON))
    path = f"/v2/{repo}/manifests/{tag}"
    accept = {"Accept": client.MANIFEST_ACCEPT}
    warm = client.send(gateway.url + path, headers=accept)
    out.check(warm.status == 200, f"warm-up manifest GET: HTTP {warm.status}")
    direct = run_wrk(bench.workdir, registry.url + path, accept, seconds=seconds)
    log(f"  direct  {direct.rate:8.0f} req/s")
    via = run_wrk(bench.workdir, gateway.url + path, accept, seconds=seconds)
    log(f"  gateway {via.rate:8.0f} req/s")
    for side, result in (("direct", direct), ("gateway", via)):
        out.check(result.error_count == 0, f"wrk {side}: errors {result.errors}")
    out.details.update(direct=direct.as_json(), gateway=via.as_json())
    observe_gateway_log(out, gateway)
    out.metrics += wrk_metrics("cached manifest GET by tag (wrk -t2 -c16), target >= 3x", direct,
                               via)  # fmt: skip
    return out


@scenario("cache-cold-fill", "cold fill vs the pass-through relay, same blob size")
def cache_cold_fill(bench: Bench) -> Outcome:
    out = Outcome()
    size, runs = bench.sizes.concurrent_blob, bench.sizes.runs
    registry = bench.open_registry()
    repo = "bench/cold"
    relay = bench.start_gateway("gateway-relay", gateway_config(registry, **CACHE_OFF))
    cached = bench.start_gateway("gateway-fill", gateway_config(registry, **CACHE_ON))
    speeds: dict[str, list[float]] = {"relay": [], "fill": []}
    for run in range(1, runs + 1):
        digest = push_generated_blob(registry, repo, size, seed=100 + run)
        curl_download(blob_url(registry.url, repo, digest), 120)  # page cache, for both sides
        for side, gateway in (("relay", relay), ("fill", cached)):
            download = curl_download(blob_url(gateway.url, repo, digest), 300)
            if out.check(download.status == 200 and download.size == size, f"{side} {download}"):
                speeds[side].append(download.speed)
            log(f"  run {run}/{runs} {side:5} {download.speed / MiB:8.1f} MiB/s")
    observe_gateway_log(out, cached)
    out.metrics.append(
        Metric(f"cold {size // MiB} MiB: pass-through relay (direct col) vs fill", "MiB/s",
               median_or_none(speeds["relay"], MiB), median_or_none(speeds["fill"], MiB),
               note=pair_ratios(speeds["relay"], speeds["fill"]) + "; target >= 1.0x")
    )  # fmt: skip
    return out


FOLLOWERS = 20


@scenario("cache-fill-followers", f"gateway CPU: one cold fill with {FOLLOWERS} callers vs one")
def cache_fill_followers(bench: Bench) -> Outcome:
    out = Outcome()
    size, runs = bench.sizes.concurrent_blob, bench.sizes.runs
    registry = bench.open_registry()
    repo = "bench/followers"
    gateway = bench.start_gateway("gateway-followers", gateway_config(registry, **CACHE_ON))
    pid = gateway.process.pid
    cpu: dict[str, list[float]] = {"one": [], "many": []}
    max_seconds = max(120.0, FOLLOWERS * size / (10 * MiB))
    for run in range(1, runs + 1):
        for side, callers in (("one", 1), ("many", FOLLOWERS)):
            digest = push_generated_blob(registry, repo, size, seed=300 + 2 * run + callers)
            url = blob_url(gateway.url, repo, digest)
            curl_download(blob_url(registry.url, repo, digest), 120)  # page cache
            before = cpu_seconds(pid)
            result = curl_parallel(url, callers, max_seconds)
            used = cpu_seconds(pid) - before
            bad = [d for d in result.downloads if d.status != 200 or d.size != size]
            if out.check(not bad, f"{side} run {run}: incomplete {bad}"):
                cpu[side].append(used)
            log(f"  run {run}/{runs} {callers:2} caller(s) {used:6.2f} CPU s, "
                f"{result.aggregate / MiB:8.1f} MiB/s aggregate")  # fmt: skip
    observe_gateway_log(out, gateway)
    out.details.update(cpu_seconds=cpu)
    out.metrics.append(
        Metric(f"gateway CPU s, cold {size // MiB} MiB fill: 1 caller (direct col) vs "
               f"{FOLLOWERS}", "s", median_or_none(cpu["one"]), median_or_none(cpu["many"]),
               note="target <= 1.3x")
    )  # fmt: skip
    return out


@scenario("cache-rss", "gateway peak RSS: 8 concurrent cold fills and 8 hits at once")
def cache_rss(bench: Bench) -> Outcome:
    out = Outcome()
    size, streams = bench.sizes.concurrent_blob, bench.sizes.streams
    registry = bench.open_registry()
    repo = "bench/rss"
    hit_digest = push_generated_blob(registry, repo, size, seed=200)
    cold = [push_generated_blob(registry, repo, size, seed=201 + i) for i in range(streams)]
    gateway = bench.start_gateway("gateway-cache-rss", gateway_config(registry, **CACHE_ON))
    pid = gateway.process.pid
    curl_download(blob_url(gateway.url, repo, hit_digest), 300)  # cached before the test
    before = memory(pid)
    urls = [blob_url(gateway.url, repo, d) for d in cold]
    urls += [blob_url(gateway.url, repo, hit_digest)] * streams
    downloads, sampled = curl_each(urls, max(120.0, 2 * streams * size / (10 * MiB)), pid)
    after = memory(pid)
    bad = [d for d in downloads if d.status != 200 or d.size != size]
    out.check(not bad, f"incomplete downloads {bad}")
    peak = after.get("VmHWM")
    verdict = "?" if peak is None else ("met" if peak <= RSS_TARGET else "MISSED")
    observe_gateway_log(out, gateway)
    out.details.update(vmrss_sampled_max_mib=in_mib(sampled), rss_target=verdict)
    out.metrics += [
        Metric("gateway VmHWM before", "MiB", None, in_mib(before.get("VmHWM"))),
        Metric(f"gateway peak RSS, {streams} fills + {streams} hits of {size // MiB} MiB",
               "MiB", None, in_mib(peak),
               note=f"target <= {RSS_TARGET // MiB} MiB: {verdict}"),
    ]  # fmt: skip
    return out
