"""OCI grammar: repository names, tags, digests, references (distribution-spec)."""

from __future__ import annotations

import pytest

from gateway.oci.names import is_valid_digest, is_valid_name, is_valid_reference, is_valid_tag

HEX64 = "a" * 64


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("alpine", True),
        ("library/alpine", True),
        ("a/b/c/d", True),
        ("my-org/my_repo", True),
        ("my__repo", True),
        ("a.b-c", True),
        ("a---b", True),
        ("Alpine", False),
        ("", False),
        ("/alpine", False),
        ("alpine/", False),
        ("a//b", False),
        ("-alpine", False),
        ("a_-b", False),
        ("a___b", False),
        ("../etc", False),
        ("a b", False),
        ("a:5000/b", False),
        ("x" * 256, False),
        ("x" * 255, True),
    ],
)
def test_name_grammar(name: str, valid: bool) -> None:
    """Names follow the spec regex and the 255-character limit."""
    assert is_valid_name(name) is valid


@pytest.mark.parametrize(
    ("tag", "valid"),
    [("latest", True), ("v1.2.3", True), ("_x", True), ("A-b_c.d", True),
     (".x", False), ("-x", False), ("", False), ("a" * 128, True), ("a" * 129, False),
     ("a/b", False), ("a:b", False)],
)  # fmt: skip
def test_tag_grammar(tag: str, valid: bool) -> None:
    """Tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}."""
    assert is_valid_tag(tag) is valid


@pytest.mark.parametrize(
    ("digest", "valid"),
    [
        (f"sha256:{HEX64}", True),
        (f"sha512:{'b' * 128}", True),
        (f"sha256:{'A' * 64}", False),  # sha256 hex is lower-case
        (f"sha256:{HEX64[:-1]}", False),
        (f"sha256:{HEX64}0", False),
        (f"md5:{HEX64}", False),  # grammatical but not an algorithm we can verify
        ("sha256:", False),
        (HEX64, False),
        (f"sha256:{HEX64}/../x", False),
    ],
)
def test_digest_grammar(digest: str, valid: bool) -> None:
    """Digests follow the image-spec grammar and a known algorithm's encoding."""
    assert is_valid_digest(digest) is valid


def test_reference_is_tag_or_digest() -> None:
    """A reference with a colon must be a valid digest, without one a valid tag."""
    assert is_valid_reference("latest")
    assert is_valid_reference(f"sha256:{HEX64}")
    assert not is_valid_reference("sha256:nothex")
    assert not is_valid_reference("bad tag")
