"""registry-gateway: a pull-through gateway in front of OCI / Docker registries.

Request flow::

    caller ──► middlewares (request id, log line, metrics, error envelope)
           ──► access (who is calling, may they pull this name)
           ──► handlers (manifests, blobs, tags, referrers)
           ──► upstream.routing (ns → Host → path prefix → default; never a caller-named host)
           ──► upstream.client (credentials, token flow, redirects)
           ──► upstream.relay (header policy, streaming with backpressure)  ──► caller

Glossary: *upstream* is the registry behind us, *caller* whoever calls us, *principal* the
caller's identity, *name* a repository name as the upstream knows it, *reference* a tag or
digest, *scope* a Docker token scope (``repository:<name>:pull``), *realm* a token server URL.
"""

__version__ = "0.1.0"
