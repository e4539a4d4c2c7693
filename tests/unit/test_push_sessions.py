"""Upload ids (gateway.push.sessions), write header policy and byte sizes: pure functions."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.errors import BlobUploadUnknown
from gateway.handlers.push import write_scopes
from gateway.push.headers import (
    location_path,
    split_location,
    write_request_headers,
    write_response_headers,
)
from gateway.push.sessions import SessionSealer, derive_key
from gateway.settings import ConfigError, parse_settings
from gateway.settings.sizes import byte_size

OWNER = {"principal": "alice", "tenant": "team-a", "upstream": "push.test", "name": "team-a/app"}
LOCATION = "/v2/team-a/app/blobs/uploads/0b1c?_state=abc%3D%3D"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def sealed(sealer: SessionSealer) -> str:
    return sealer.seal(sealer.start("alice", "team-a", "push.test", "team-a/app", LOCATION))


def test_an_id_opens_for_its_owner_with_the_upstream_location() -> None:
    """Sealing then opening with the same principal, tenant, upstream and name round-trips."""
    sealer = SessionSealer(None, 60)
    session = sealer.open(sealed(sealer), **OWNER)
    assert session.location == LOCATION and session.principal == "alice"


def test_the_id_does_not_show_the_upstream_location() -> None:
    """The id is ciphertext: neither the location nor the principal can be read from it."""
    upload_id = sealed(SessionSealer(None, 60))
    raw = base64.urlsafe_b64decode(upload_id + "=" * (-len(upload_id) % 4))
    assert b"_state" not in raw and b"alice" not in raw and b"uploads" not in raw


@pytest.mark.parametrize(
    "field, value",
    [("principal", "bob"), ("principal", None), ("tenant", "team-b"), ("tenant", None),
     ("upstream", "other.test"), ("name", "team-a/other")],
)  # fmt: skip
def test_anyone_else_gets_blob_upload_unknown(field: str, value: str | None) -> None:
    """Another principal, tenant, upstream or repository cannot open the id."""
    sealer = SessionSealer(None, 60)
    with pytest.raises(BlobUploadUnknown):
        sealer.open(sealed(sealer), **{**OWNER, field: value})


def test_every_altered_character_is_refused() -> None:
    """Changing any one character of the id fails authentication (AES-GCM)."""
    sealer = SessionSealer(None, 60)
    upload_id = sealed(sealer)
    for index in range(0, len(upload_id), 7):
        replacement = "A" if upload_id[index] != "A" else "B"
        altered = upload_id[:index] + replacement + upload_id[index + 1 :]
        with pytest.raises(BlobUploadUnknown):
            sealer.open(altered, **OWNER)


@pytest.mark.parametrize("upload_id", ["", "x", "!!!!", "A" * 5000, "AQ", "Ag" + "A" * 60])
def test_garbage_ids_are_unknown(upload_id: str) -> None:
    """Anything that is not a sealed id is BLOB_UPLOAD_UNKNOWN, never another exception."""
    with pytest.raises(BlobUploadUnknown):
        SessionSealer(None, 60).open(upload_id, **OWNER)


def test_an_id_expires_after_the_ttl() -> None:
    """Valid until ttl seconds after the start, unknown from then on."""
    clock = Clock()
    sealer = SessionSealer(None, 60, clock=clock)
    upload_id = sealed(sealer)
    clock.now += 59
    sealer.open(upload_id, **OWNER)
    clock.now += 2
    with pytest.raises(BlobUploadUnknown):
        sealer.open(upload_id, **OWNER)


def test_replicas_with_the_same_key_material_share_ids() -> None:
    """The key is derived from the key file's bytes: same file, same key; another, none."""
    material = b"-----BEGIN PRIVATE KEY-----\nexample\n-----END PRIVATE KEY-----\n"
    upload_id = sealed(SessionSealer(derive_key(material), 60))
    assert SessionSealer(derive_key(material), 60).open(upload_id, **OWNER).location == LOCATION
    with pytest.raises(BlobUploadUnknown):
        SessionSealer(derive_key(material + b"x"), 60).open(upload_id, **OWNER)


@pytest.mark.parametrize(
    "location, upstream_url, kept",
    [
        ("/v2/a/blobs/uploads/u?_state=s", "http://r:5000", "/v2/a/blobs/uploads/u?_state=s"),
        ("http://r:5000/v2/a/blobs/uploads/u", "http://r:5000", "/v2/a/blobs/uploads/u"),
        ("https://evil.example/v2/a/blobs/uploads/u", "http://r:5000", "/v2/a/blobs/uploads/u"),
        ("https://r/pre/v2/a/blobs/uploads/u?x=1", "https://r/pre", "/v2/a/blobs/uploads/u?x=1"),
    ],
)  # fmt: skip
def test_only_path_and_query_of_an_upstream_location_are_kept(
    location: str, upstream_url: str, kept: str
) -> None:
    """The host a Location names is dropped; the configured upstream is always the one dialled."""
    assert location_path(location, URL(upstream_url)) == kept


def test_a_kept_location_splits_into_path_and_query() -> None:
    """The query (the upstream's upload state) survives intact, decoded once."""
    path, query = split_location(LOCATION)
    assert path == "/v2/team-a/app/blobs/uploads/0b1c" and query == [("_state", "abc==")]


def test_write_headers_pass_only_the_body_description() -> None:
    """Content-Type/Range go up, Content-Length only with a streamed body, never Authorization."""
    caller = CIMultiDictProxy(CIMultiDict({
        "Content-Type": "application/octet-stream", "Content-Range": "0-9",
        "Content-Length": "10", "Authorization": "Bearer caller", "Cookie": "c",
    }))  # fmt: skip
    streamed = write_request_headers(caller, "ua", streamed=True)
    assert streamed["Content-Length"] == "10" and streamed["Content-Range"] == "0-9"
    assert "Authorization" not in streamed and "Cookie" not in streamed
    assert "Content-Length" not in write_request_headers(caller, "ua", streamed=False)


def test_write_answers_relay_range_but_not_location_or_upload_uuid() -> None:
    """Range and the digest pass; Location and Docker-Upload-UUID are the gateway's to set."""
    upstream = CIMultiDictProxy(CIMultiDict({
        "Range": "0-99", "Location": "http://r/v2/a/blobs/uploads/u", "Docker-Upload-UUID": "u",
        "Docker-Content-Digest": "sha256:" + "0" * 64, "WWW-Authenticate": "Bearer x",
        "OCI-Subject": "sha256:" + "1" * 64,
    }))  # fmt: skip
    headers = write_response_headers(upstream)
    assert headers["Range"] == "0-99" and headers["OCI-Subject"] == "sha256:" + "1" * 64
    assert "Location" not in headers and "Docker-Upload-UUID" not in headers
    assert "WWW-Authenticate" not in headers


def test_writes_ask_the_upstream_for_push_or_delete_only() -> None:
    """Pushes ask pull,push; deletes ask delete (pulls keep their pull-only scope)."""
    assert write_scopes("a/b", "push") == ["repository:a/b:pull,push"]
    assert write_scopes("a/b", "delete") == ["repository:a/b:delete"]


@pytest.mark.parametrize(
    "value, size",
    [(4096, 4096), ("4MiB", 4 << 20), ("1.5 GiB", 3 << 29), ("10KiB", 10240), ("7", 7),
     ("4MB", None), ("", None), (True, None), ("-1MiB", None)],
)  # fmt: skip
def test_byte_sizes(value: object, size: int | None) -> None:
    """Sizes are bytes or a number with a binary unit; anything else is no size."""
    assert byte_size(value) == size


def test_push_settings_are_parsed_and_bad_values_name_their_key() -> None:
    """upstreams.<key>.push, limits.max_manifest_size and upload_session_ttl; problems name
    the key path."""
    good = parse_settings(
        {"upstreams": {"a.test": {"url": "http://a", "push": True}},
         "limits": {"max_manifest_size": "8MiB", "upload_session_ttl": 600}},
        environ={}, base_dir=Path("."), source="t",
    )  # fmt: skip
    assert good.upstreams["a.test"].push is True
    assert (good.limits.max_manifest_size, good.limits.upload_session_ttl) == (8 << 20, 600)
    default = parse_settings(
        {"upstreams": {"a.test": {"url": "http://a"}}}, environ={}, base_dir=Path("."), source="t"
    )
    assert default.upstreams["a.test"].push is False
    assert default.limits.max_manifest_size == 4 << 20
    with pytest.raises(ConfigError) as raised:
        parse_settings(
            {"upstreams": {"a.test": {"url": "http://a", "push": "yes"}},
             "limits": {"max_manifest_size": "big", "upload_session_ttl": 0}},
            environ={}, base_dir=Path("."), source="t",
        )  # fmt: skip
    problems = "\n".join(raised.value.problems)
    assert "upstreams.a.test.push" in problems
    assert "limits.max_manifest_size" in problems and "limits.upload_session_ttl" in problems
