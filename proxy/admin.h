/* admin.h - the admin API under /admin/ (JSON in and out; see docs/admin.md).
 *
 *   GET    /admin/stats             counters, memory, entries per partition
 *   GET    /admin/entries           list (?partition= &model= &after= &limit=)
 *   GET    /admin/entries/{id}      one entry
 *   DELETE /admin/entries/{id}      remove one entry
 *   POST   /admin/invalidate        remove by partition, model, age, or
 *                                   similarity to a text (criteria AND-ed)
 *
 * Every call needs "Authorization: Bearer <admin-key>" (401 otherwise); with
 * no admin key configured every call answers 403 admin_disabled. Every call
 * is logged as one JSON line {"msg":"admin","action":...} with its
 * parameters, status and count, never a prompt. Removals are written to the
 * write-ahead log (cache/persist/records.h, DEL records), so they survive a restart.
 *
 * No libmicrohttpd here: server.c passes the request in and sends the reply.
 * Threads: any; the state behind struct admin is thread-safe.
 */
#ifndef PARROT_ADMIN_H
#define PARROT_ADMIN_H

#include <stddef.h>
#include <stdint.h>

struct auth;
struct cfg;
struct cache;
struct chat;

/* What the API works on; all borrowed, owned by the server. */
struct admin {
    struct cache *cache; /* NULL when the cache is off */
    struct chat *chat;   /* its request policy, for the verdict counters */
    struct audit *audit; /* audits of semantic hits, or NULL */
    const struct auth *auth;
    const struct cfg *cfg;
};

struct admin_call {
    const char *method;
    const char *path;          /* without the query string */
    const char *authorization; /* the header's value, or NULL */
    const char *body;          /* may be NULL when body_len is 0 */
    size_t body_len;
    /* The decoded query argument `name`, or NULL. */
    const char *(*arg)(void *ud, const char *name);
    void *arg_ud;
};

struct admin_reply {
    int status;
    char *body; /* malloc'd JSON, free() it */
    size_t len;
};

/* Serve one call at wall clock time now (ms). Returns 0 with the reply in
 * *out (errors are OpenAI-shaped bodies), or -ENOMEM with nothing to free. */
int admin_handle(const struct admin *ad, const struct admin_call *c, int64_t now,
                 struct admin_reply *out);

#endif
