# registry-gateway: what the gateway's Vault/OpenBao token may do, and nothing more.
#
#   bao policy write registry-gateway config/vault/gateway-policy.hcl
#
# Attach it to the gateway's token or auth role (token_policies=registry-gateway). The gateway
# never lists, writes or deletes secrets and never creates tokens.

# Read the upstream credentials. KV v2 puts "data/" after the mount (secret/ here); keep the
# path in step with `credentials: {vault: {path: registries/...}}` and `vault.kv_mount`.
# A `{tenant}` path such as registries/{tenant}/ghcr.io is covered by the same glob.
path "secret/data/registries/*" {
  capabilities = ["read"]
}

# KV v1 has no "data/" segment: use this instead with `vault.kv_version: 1` (mount kv/).
# path "kv/registries/*" {
#   capabilities = ["read"]
# }

# Keep the gateway's own token alive: lookup-self when it starts with a given token,
# renew-self at two thirds of each lease. Vault's built-in `default` policy grants the same;
# these lines make the policy complete for roles created with token_no_default_policy=true.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
