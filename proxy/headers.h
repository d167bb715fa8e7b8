/* headers.h - which HTTP headers cross the proxy, in each direction, and
 * the numbers in the values parrot writes.
 *
 * Pure functions; any thread.
 */
#ifndef PARROT_HEADERS_H
#define PARROT_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Connection-level headers (RFC 9110 7.6.1) that never cross a proxy. */
bool hdr_is_hop_by_hop(const char *name, size_t len);

/* A client request header parrot forwards to the provider. Host, length and
 * framing are curl's to set; Accept-Encoding is dropped so the provider
 * answers in identity encoding, which parrot must read to cache it. */
bool hdr_to_upstream(const char *name, size_t len);

/* True when name is one of the tokens of a comma-separated header value
 * (case-insensitive, white space around tokens ignored; NULL: none). The
 * headers a Connection header names are hop-by-hop too (RFC 9110 7.6.1). */
bool hdr_listed(const char *list, const char *name, size_t len);

/* A provider response header relayed to the client. Framing and Date are
 * libmicrohttpd's to set; x-request-id is parrot's own (the provider's is
 * relayed as x-upstream-request-id). */
bool hdr_to_client(const char *name, size_t len);

/* The request's cache controls (RFC 9111 5.2.1 and parrot's own header). */
struct hdr_cache_control {
    bool no_cache;       /* skip the lookup, still store the answer */
    bool no_store;       /* do not store the answer */
    bool only_if_cached; /* answer 504 instead of calling the provider */
    long long max_age;   /* only entries at most this old, in seconds; -1: any */
};

/* Parse a Cache-Control request header (NULL: none). Unknown directives are
 * ignored, as RFC 9111 asks. */
void hdr_parse_cache_control(const char *value, struct hdr_cache_control *cc);

/* Numbers in header values, written without printf: a hit's headers
 * (Server-Timing, Age, x-parrot-similarity, x-parrot-entry) took 9% of its
 * instructions through snprintf, most of them formatting floats. Each
 * writes at out, which has room for HDR_NUM_MAX bytes, a NUL-terminated
 * value, and returns its length. */
#define HDR_NUM_MAX 32

/* v in decimal. */
size_t hdr_fmt_u64(char *out, uint64_t v);

/* v as 16 lower-case hex digits ("%016" PRIx64). */
size_t hdr_fmt_hex(char *out, uint64_t v);

/* v rounded to places decimals (0..6), as "%.<places>f" writes it; v's
 * magnitude must be below 1e12 (times and similarities are). */
size_t hdr_fmt_fixed(char *out, double v, int places);

#endif
