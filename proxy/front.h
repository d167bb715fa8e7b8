/* front.h - the front door: what a request head must look like before
 * parrot routes it, reads its body or forwards anything of it.
 *
 * parrot holds the operator's provider key and shares keep-alive
 * connections to the provider between clients, so a request that one party
 * reads differently from another (parrot, curl, a lenient provider) can
 * spend or steal what belongs to others. These checks make parrot strict
 * where libmicrohttpd is lenient: one reading of the path, one reading of
 * the framing, and only well-formed headers (docs/security.md).
 *
 * Pure functions over bytes; any thread.
 */
#ifndef PARROT_FRONT_H
#define PARROT_FRONT_H

#include <stdbool.h>
#include <stddef.h>

/* The longest request target accepted (path and query); libmicrohttpd's
 * connection pool bounds it anyway. */
#define FRONT_TARGET_MAX 8192

/* Normalise a request target as received ("/v1/x?y") into out, which holds
 * FRONT_TARGET_MAX + 1 bytes: repeated slashes become one, percent-encoded
 * unreserved characters are decoded and other escapes upper-cased, and the
 * query is kept as sent. The result is what parrot routes on *and* what it
 * forwards, so the two can never disagree. Refused, returning -1 with *why
 * set to a sentence for the client: anything but an origin-form target, dot
 * segments, encoded dots, slashes, backslashes or control bytes, raw bytes
 * outside RFC 3986, a fragment, or a target longer than the limit. On
 * success returns 0 and the length of the path part (before '?') in
 * *path_len. */
int front_target(const char *target, char *out, size_t *path_len, const char **why);

/* One request head's headers, fed one at a time. */
struct front_head {
    const char *tenant_header; /* configured tenant header name, or NULL */
    unsigned content_length;   /* how many Content-Length headers */
    unsigned transfer_encoding;
    unsigned host;
    unsigned tenant;
    unsigned ns;      /* x-parrot-namespace headers */
    bool chunked;     /* the Transfer-Encoding is exactly "chunked" */
    bool bad_cl;      /* a Content-Length that is not a plain decimal */
    int status;       /* when refused: 400 or 501 */
    const char *code; /* when refused: the error code for the client */
    const char *why;  /* when refused: a sentence for the client */
};

void front_head_init(struct front_head *h, const char *tenant_header);

/* Feed one header as received (value of vlen bytes, which may hold a NUL).
 * Returns false, with h->status and h->why set, when it alone makes the
 * request malformed: a name that is not an RFC 9110 token, or a value with
 * CR, LF, NUL or another control byte but tab. */
bool front_head_add(struct front_head *h, const char *name, size_t nlen, const char *value,
                    size_t vlen);

/* After the last header: refuses (false, h->status and h->why set)
 * ambiguous framing (RFC 9112 6.3: Content-Length with Transfer-Encoding,
 * more than one of either, a malformed length; 501 for a transfer coding
 * other than chunked), a missing Host on HTTP/1.1, more than one Host, more
 * than one tenant header and more than one x-parrot-namespace. */
bool front_head_done(struct front_head *h, bool http11);

/* The longest cache namespace (x-parrot-namespace) accepted. */
#define FRONT_NAMESPACE_MAX 64

/* Whether v is a valid x-parrot-namespace value: 1 to FRONT_NAMESPACE_MAX
 * RFC 9110 token characters (no ':', so a namespace can prefix a tenant
 * unambiguously). */
bool front_namespace_ok(const char *v);

#endif
