"""Who is calling and what they may pull (CONTRACT.md "Clients of the gateway").

::

    /v2/ request ──► gatekeeper.Gatekeeper.check (the aiohttp edge: Caller = Authorization
                        │                         value + address) ──► decide ──► Decision
                        │ authenticators: NoAuth | BasicAuth | TokenAuth (one per clients.auth)
                        │   basic: logins.Logins (passwords.PasswordChecker: bcrypt off-loop,
                        │          bounded queue; ratelimit.LoginLimiter per address)
                        │   token: tokens.TokenService.verify_access (JWT, pinned algorithm)
                        └──────► policy.Policy.verdict(principal, "<upstream>/<name>")
    /token request ──► handlers.token (HTTP) ──► grants.TokenGrants (form grammar, bounds,
                        the same logins and policy, audit) ──► tokens.issue_access

``files`` reads the htpasswd file and the signing key once (settings record only paths);
the ``Authorization`` grammar itself is pure protocol, in ``gateway.oci.authorization``.

Names. Scopes (in challenges, token requests and a token's ``access`` claim) name a repository
exactly as the caller wrote it in the ``/v2/<name>/...`` path. Access rules match
``<upstream>/<name>`` after routing (``ns`` → Host → path prefix → default, ``library/`` added
for docker.io). A token grants an action on a scope name when a rule allows it on some
upstream that name can route to; every request then needs both its path name covered by the
token and the rules allowing the action on the request's own ``<upstream>/<name>``.
"""
