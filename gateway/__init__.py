"""registry-gateway: a pull-through gateway in front of OCI / Docker registries.

Request flow::

    caller ──► middlewares (request id, log line, metrics, error envelope)
           ──► routes (the URL table: one handler per endpoint)
           ──► handlers.manifests / blobs / tags / referrers, through handlers.pull:
               ──► routing (ns → Host → path prefix → default; never a caller-named host)
               ──► access (who is calling, may they pull this name)
               ──► cache (manifests and blobs: answer from the store, or one fill per digest)
               ──► upstream.client (credentials, token flow, redirects)
               ──► upstream.relay (header policy, streaming with backpressure)  ──► caller

Each step returns a value (a target, an open upstream response, a relay outcome); only the
handler records what the request line needs, and no module imports one above it.

Glossary: *upstream* is the registry behind us, *caller* whoever calls us, *principal* the
caller's identity, *name* a repository name as the upstream knows it, *reference* a tag or
digest, *scope* a Docker token scope (``repository:<name>:pull``), *realm* a token server URL.
"""

__version__ = "0.1.0"
