/* auth.h - client keys (each mapped to a tenant) and the admin key.
 *
 * Client keys come from client-keys-file (one "KEY TENANT" per line) and/or
 * the client-keys option (environment or config file only: entries
 * separated by newlines or commas). When any is configured, every request
 * under /v1 must present one as "Authorization: Bearer KEY", and the key's
 * tenant, not the key, selects the cache partition: two keys of one tenant
 * share answers, different tenants never do.
 *
 * Only SHA-256 digests of the keys are kept. A presented key is hashed and
 * compared with every stored digest with CRYPTO_memcmp, without stopping at
 * a match, so the time taken does not depend on which key (if any) matched
 * or on how much of it was right.
 *
 * Threads: built once before the server starts, then read-only; any thread
 * may call the lookups.
 */
#ifndef PARROT_AUTH_H
#define PARROT_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct cfg;
struct auth;

#define AUTH_KEY_MIN    16   /* characters: shorter client keys are refused */
#define AUTH_KEYS_MAX   4096 /* client keys */
#define AUTH_TENANT_MAX 128  /* characters in a tenant name */
#define AUTH_HEADER_MAX 1024 /* decoded Basic credentials longer than this are refused */

/* Load the keys named by c. Returns 0, or -1 with a reason in err that
 * names the file and line but never a key. The file must not be readable or
 * writable by "others" (mode o-rwx), as ssh insists for its keys. */
int auth_new(const struct cfg *c, struct auth **out, char *err, size_t errlen);
void auth_free(struct auth *a); /* NULL is a no-op */

/* True when client keys are configured (then every /v1 request needs one). */
bool auth_has_client_keys(const struct auth *a);

/* The tenant of the client key in an "Authorization: Bearer KEY" header
 * value, or NULL when the header is missing or the key unknown. */
const char *auth_client(const struct auth *a, const char *authorization);

/* True when an admin key is configured. */
bool auth_has_admin_key(const struct auth *a);

/* True when authorization carries the admin key, as "Bearer KEY" or as the
 * password of "Basic" credentials (what a browser sends for the dashboard). */
bool auth_admin(const struct auth *a, const char *authorization);

/* The token of an "Authorization: Bearer TOKEN" value (scheme
 * case-insensitive as RFC 9110 says, white space around the token ignored)
 * with its length in *len, or NULL. Two spellings of one credential give the
 * same token. */
const char *auth_bearer(const char *authorization, size_t *len);

#endif
