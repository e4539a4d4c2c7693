"""Pushing through the gateway: upload sessions bound to their caller, and the write relay.

A push reads like a pull (handler → access → routing → upstream → relay) with two differences:

- **Upload sessions** (``sessions``). The upstream answers ``POST …/blobs/uploads/`` with a
  ``Location`` only the gateway may use: it carries the upstream's own upload state and the
  gateway holds the credentials that go with it. The caller gets an opaque *upload id* in the
  gateway's path space instead, sealed with AES-GCM (principal, tenant, upstream, repository,
  upstream location, expiry). Any replica with the same key opens it; nobody else's request
  does: another principal, another repository, an expired or altered id is
  ``BLOB_UPLOAD_UNKNOWN``. No server-side state, nothing to share between replicas.
- **The write relay** (``relay``). Request bodies stream to the upstream chunk by chunk with
  backpressure; a body is never read whole (manifests excepted: they are bounded by
  ``limits.max_manifest_size``). A streamed body can be sent only once, so a write that
  streams is preceded by a body-less request that makes sure the upstream token for the push
  scope is at hand. A caller that hangs up mid-body makes the upstream request fail, never end:
  the upstream cannot commit a blob from half a body.

Glossary: *upload id* — the sealed token in ``/v2/<name>/blobs/uploads/<id>``; *upstream
location* — the upstream's own upload URL, which never reaches the caller or a log line.
"""
