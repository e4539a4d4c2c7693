"""Who is calling and what they may pull (CONTRACT.md "Clients of the gateway").

::

    /v2/ request ──► gatekeeper.Gatekeeper.check ──► Decision (principal, tenant, error)
                        │ basic: passwords.PasswordChecker (htpasswd.Htpasswd, bcrypt off-loop,
                        │        verified pairs cached by keyed hash) + ratelimit.LoginLimiter
                        │ token: tokens.TokenService.verify_access (JWT, pinned algorithm)
                        └──────► policy.Policy.allowed(principal, "<upstream>/<name>")
    /token request ──► handlers.token ──► the same passwords / limiter / policy ──► tokens.issue

Names. Scopes (in challenges, token requests and a token's ``access`` claim) name a repository
exactly as the caller wrote it in the ``/v2/<name>/...`` path. Access rules match
``<upstream>/<name>`` after routing (``ns`` → Host → path prefix → default, ``library/`` added
for docker.io). A token grants an action on a scope name when a rule allows it on some
upstream that name can route to; every request then needs both its path name covered by the
token and the rules allowing the action on the request's own ``<upstream>/<name>``.
"""
