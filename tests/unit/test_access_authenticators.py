"""gateway.access.authenticators and gatekeeper.decide: each mode as a table, without a server.

The authenticators read only a Caller (Authorization value, address); the gatekeeper turns
their outcome and the access rules into a Decision whose error is what the caller gets.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.access.authenticators import (
    Authentication,
    BasicAuth,
    Caller,
    NoAuth,
    TokenAuth,
)
from gateway.access.gatekeeper import Gatekeeper
from gateway.access.htpasswd import Htpasswd
from gateway.access.logins import Logins
from gateway.access.passwords import PasswordChecker
from gateway.access.policy import Policy
from gateway.access.ratelimit import LoginLimiter
from gateway.access.signing import generate_signing_key
from gateway.access.tokens import TokenService
from gateway.metrics import Metrics
from gateway.oci.scope import Scope
from gateway.routing import Router, Target
from gateway.settings import AccessRule, ClientsSettings, Settings
from tests.access.identities import ISSUER, SERVICE, make_settings, write_htpasswd

ADDRESS = "192.0.2.7"
RULES = (
    AccessRule(("anonymous",), ("docker.io/library/*",), ("pull",)),
    AccessRule(("alice",), ("docker.io/*",), ("pull",)),
)
KEY = generate_signing_key()
TOKENS = TokenService(KEY, service=SERVICE, issuer=ISSUER, ttl=300, refresh_ttl=600)
ALPINE = Target("docker.io", "library/alpine", "alpine", "default")
PRIVATE = Target("docker.io", "team/app", "team/app", "default")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Issued:
    """A bearer token signed when the test runs, not when the table is collected."""

    def __init__(self, subject: str, *names: str) -> None:
        self.subject, self.names = subject, names

    def __repr__(self) -> str:
        return f"bearer({self.subject!r}, {', '.join(self.names)})"

    def header(self) -> str:
        scopes = [Scope("repository", name, ("pull",)) for name in self.names]
        return "Bearer " + TOKENS.issue_access(self.subject, scopes).token


def bearer(subject: str, *names: str) -> Issued:
    return Issued(subject, *names)


def header_of(value: str | Issued | None) -> str | None:
    return value.header() if isinstance(value, Issued) else value


@pytest.fixture
def users(tmp_path: Path) -> Htpasswd:
    return Htpasswd(write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"}))


@pytest.fixture
def policy() -> Policy:
    return Policy(ClientsSettings(auth="basic", access=RULES))


def logins(users: Htpasswd, policy: Policy, **checker: int) -> Logins:
    passwords = PasswordChecker(users, **checker) if checker else None
    return Logins(users, policy, LoginLimiter(2, 60), tokens=TOKENS, passwords=passwords)


async def test_no_auth_makes_everyone_anonymous() -> None:
    """NoAuth reads nothing: any header, even a valid one, gives the anonymous principal."""
    for header in (None, basic("alice", "alice-pw"), "\udcff"):
        outcome = await NoAuth().authenticate(Caller(header, ADDRESS))
        assert outcome.principal.name is None and outcome.failure is None


@pytest.mark.parametrize(
    ("header", "principal", "failure", "reason"),
    [
        (None, None, "missing", "no credentials"),
        ("Basic Og==", None, "missing", "no credentials"),
        (basic("alice", "alice-pw"), "alice", None, "credentials accepted"),
        (basic("alice", "wrong"), None, "invalid", "wrong user name or password"),
        (basic("mallory", "x"), None, "invalid", "wrong user name or password"),
        ("Basic \udcff\udcfe", None, "invalid", "malformed credentials"),
        ("Basic ééé", None, "invalid", "malformed credentials"),
        ("Bearer abc", None, "invalid", "malformed credentials"),
        ("Basic " + base64.b64encode(b"alice:\xff").decode(), None, "invalid",
         "malformed credentials"),
    ],
)  # fmt: skip
async def test_basic_auth(
    users: Htpasswd,
    policy: Policy,
    header: str | None,
    principal: str | None,
    failure: str | None,
    reason: str,
) -> None:
    """BasicAuth: absent is anonymous, unusable or wrong is invalid, right is the user."""
    outcome = await BasicAuth(logins(users, policy)).authenticate(Caller(header, ADDRESS))
    assert (outcome.principal.name, outcome.failure, outcome.reason) == (
        principal,
        failure,
        reason,
    )


async def test_basic_auth_limits_an_address_after_failures(users: Htpasswd, policy: Policy) -> None:
    """After login_limit failures an address is limited, even with the right password."""
    auth = BasicAuth(logins(users, policy))
    for _ in range(2):
        assert (await auth.authenticate(Caller(basic("alice", "no"), ADDRESS))).failure == "invalid"
    limited = await auth.authenticate(Caller(basic("alice", "alice-pw"), ADDRESS))
    assert limited.failure == "limited" and limited.retry_after is not None
    other = await auth.authenticate(Caller(basic("alice", "alice-pw"), "192.0.2.8"))
    assert other.principal.name == "alice"


async def test_bcrypt_queue_full_is_busy_not_a_wrong_password(
    users: Htpasswd, policy: Policy
) -> None:
    """With the bcrypt queue full a login is refused as busy (503), not counted as a failure."""
    auth = BasicAuth(logins(users, policy, max_pending=0))
    for _ in range(3):
        outcome = await auth.authenticate(Caller(basic("alice", "alice-pw"), ADDRESS))
        assert outcome.failure == "busy" and outcome.retry_after == 1
    assert auth.logins.limiter.retry_after(ADDRESS) is None


@pytest.mark.parametrize(
    ("header", "principal", "failure", "covers"),
    [
        (None, None, "missing", None),
        (basic("alice", "alice-pw"), None, "missing", None),
        ("Bearer", None, "missing", None),
        ("Bearer abc.def.ghi", None, "invalid", None),
        ("Bearer jeton-é", None, "invalid", None),
        ("Bearer \udcff\udcfe", None, "invalid", None),
        (bearer("alice", "alpine"), "alice", None, "alpine"),
        (bearer("", "alpine"), None, None, "alpine"),
    ],
)
async def test_token_auth(
    policy: Policy,
    header: str | Issued | None,
    principal: str | None,
    failure: str | None,
    covers: str | None,
) -> None:
    """TokenAuth: no bearer token is missing, a bad one invalid, a good one its subject."""
    outcome = await TokenAuth(TOKENS, policy).authenticate(Caller(header_of(header), ADDRESS))
    assert (outcome.principal.name, outcome.failure) == (principal, failure)
    if covers is not None:
        assert outcome.claims is not None and outcome.claims.covers(covers, "pull")
    else:
        assert outcome.claims is None


def test_authentication_result_labels() -> None:
    """The client_auth metric result: invalid for bad credentials, denied for refusals."""
    anonymous = Authentication(Policy(ClientsSettings()).principal(None))
    assert anonymous.result == "granted"
    assert Authentication(anonymous.principal, "invalid").result == "invalid"
    assert Authentication(anonymous.principal, "limited").result == "denied"
    assert Authentication(anonymous.principal, "busy").result == "denied"


def gatekeeper(tmp_path: Path, mode: str, **checker: int) -> Gatekeeper:
    write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
    clients = {
        "auth": mode,
        "htpasswd": "htpasswd",
        "access": [{"users": list(r.users), "repositories": list(r.repositories)} for r in RULES],
    }
    settings: Settings = make_settings(
        tmp_path, {"docker.io": {"url": "https://registry.test"}}, clients, default="docker.io"
    )
    router = Router(upstreams=frozenset({"docker.io"}), hosts={}, default="docker.io")
    users = Htpasswd(tmp_path / "htpasswd")
    gate = Gatekeeper(settings, metrics=Metrics(), router=router, users=users, tokens=TOKENS)
    if checker and gate.logins is not None:
        gate.logins.passwords = PasswordChecker(users, **checker)
    return gate


REALM = "https://gateway.test/token"


@pytest.mark.parametrize(
    ("mode", "header", "target", "status", "challenge"),
    [
        ("basic", None, None, 401, 'Basic realm="registry-gateway"'),
        ("basic", None, ALPINE, None, None),
        ("basic", None, PRIVATE, 401, "Basic "),
        ("basic", basic("alice", "alice-pw"), PRIVATE, None, None),
        ("basic", basic("alice", "no"), ALPINE, 401, "Basic "),
        ("basic", "Basic \udcff", ALPINE, 401, "Basic "),
        ("token", None, None, 401, f'Bearer realm="{REALM}",service="registry-gateway"'),
        ("token", None, ALPINE, 401, 'scope="repository:alpine:pull"'),
        ("token", "Bearer \udcff", ALPINE, 401, 'error="invalid_token"'),
        ("token", "Bearer x.y.z", None, 401, 'error="invalid_token"'),
        ("token", bearer("alice", "alpine"), ALPINE, None, None),
        ("token", bearer("alice", "alpine"), PRIVATE, 401, 'error="insufficient_scope"'),
        ("token", bearer("", "team/app"), PRIVATE, 401, 'error="insufficient_scope"'),
        ("token", bearer("", "alpine"), ALPINE, None, None),
    ],
)  # fmt: skip
async def test_gatekeeper_decides(
    tmp_path: Path,
    mode: str,
    header: str | Issued | None,
    target: Target | None,
    status: int | None,
    challenge: str | None,
) -> None:
    """decide() maps each authentication and rule outcome to the answer the spec wants."""
    decision = await gatekeeper(tmp_path, mode).decide(
        Caller(header_of(header), ADDRESS), target, "pull", realm=REALM
    )
    if status is None:
        assert decision.error is None
        return
    assert decision.error is not None and decision.error.status == status
    assert challenge is not None and challenge in decision.error.headers["WWW-Authenticate"]


async def test_gatekeeper_denies_an_authenticated_user_with_403(tmp_path: Path) -> None:
    """A known user the rules do not allow gets 403 DENIED, not a challenge."""
    gate = gatekeeper(tmp_path, "basic")
    other = Target("gcr.io", "x", "gcr.io/x", "prefix")
    decision = await gate.decide(Caller(basic("alice", "alice-pw"), ADDRESS), other, "pull",
                                 realm=REALM)  # fmt: skip
    assert decision.error is not None and decision.error.code == "DENIED"


async def test_gatekeeper_answers_busy_with_503_and_retry_after(tmp_path: Path) -> None:
    """A full bcrypt queue is 503 UNAVAILABLE with Retry-After: the gateway's capacity."""
    gate = gatekeeper(tmp_path, "basic", max_pending=0)
    decision = await gate.decide(Caller(basic("alice", "alice-pw"), ADDRESS), ALPINE, "pull",
                                 realm=REALM)  # fmt: skip
    assert decision.error is not None
    assert (decision.error.status, decision.error.code) == (503, "UNAVAILABLE")
    assert decision.error.headers["Retry-After"] == "1"
