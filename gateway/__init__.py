"""registry-gateway: a pull-through gateway in front of OCI / Docker registries.

Request flow::

    caller ──► middlewares (request id, log line, metrics, error envelope)
           ──► routes (the URL table: one handler per endpoint)
           ──► handlers.manifests / blobs / tags / referrers, through handlers.pull:
               ──► routing (ns → Host → path prefix → default; never a caller-named host)
               ──► access (who is calling, may they pull this name)
               ──► cache (manifests and blobs: answer from the store, or one fill per digest;
                   with cluster, one fill per digest across replicas)
               ──► upstream.client (drives upstream.auth: credentials, token flow, redirects)
               ──► upstream.relay (header policy, streaming with backpressure)  ──► caller
           ──► handlers.uploads / writes (the push API), through handlers.push:
               the same routing and access (action push or delete, push: true upstreams),
               push.sessions (upload ids sealed to the caller), upstream.client with the
               caller's body streamed, push.headers (Location in the caller's terms)

Each step returns a value (a target, an open upstream response, a relay outcome); only the
handler records what the request line needs, and no module imports one above it.

Glossary: *upstream* is the registry behind us, *caller* whoever calls us, *principal* the
caller's identity, *name* a repository name as the upstream knows it, *reference* a tag or
digest, *scope* a Docker token scope (``repository:<name>:pull``), *realm* a token server URL,
*upload id* the sealed stand-in for an upstream upload location.
"""

__version__ = "0.1.0"
