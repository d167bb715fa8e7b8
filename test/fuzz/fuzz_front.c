/* fuzz_front.c - fuzz target for the front door (proxy/front.c) and the
 * header-forwarding filter (proxy/headers.c); see test/fuzz/README.md.
 *
 * The first line of the input is a request target, the rest are header
 * lines "name:value" (values may hold any byte, NUL included). Checks: a
 * target that normalises has no dot segment, no empty segment, no escape of
 * a dot, slash, backslash or control byte, only RFC 3986 bytes, and
 * normalises to itself; a header that passes the syntax check and the
 * forwarding filter has a token name, a value with no CR, LF or NUL, and is
 * never a framing or hop-by-hop header.
 */
#include "proxy/front.h"
#include "proxy/headers.h"
#include "test/fuzz/fuzz.h"

#include <string.h>
#include <strings.h>

static bool allowed(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-._~!$&'()*+,;=:@/?%", c));
}

static void check_target(const char *t)
{
    static char out[FRONT_TARGET_MAX + 1], again[FRONT_TARGET_MAX + 1];
    const char *why = NULL;
    size_t plen = 0, plen2 = 0, n;

    if (front_target(t, out, &plen, &why) != 0) {
        CHECK(why != NULL);
        return;
    }
    n = strlen(out);
    CHECK(n <= FRONT_TARGET_MAX && plen <= n && out[0] == '/');
    CHECK(out[plen] == '\0' || out[plen] == '?');
    for (size_t i = 0; i < n; i++)
        CHECK(allowed((unsigned char)out[i]));
    for (size_t i = 0; i < plen; i++) {
        CHECK(!(out[i] == '/' && i + 1 < plen && out[i + 1] == '/'));
        if (out[i] == '%') {
            CHECK(i + 2 < plen);
            CHECK(strncasecmp(out + i, "%2e", 3) != 0 && strncasecmp(out + i, "%2f", 3) != 0 &&
                  strncasecmp(out + i, "%5c", 3) != 0 && strncmp(out + i, "%0", 2) != 0 &&
                  strncmp(out + i, "%1", 2) != 0 && strncasecmp(out + i, "%7f", 3) != 0);
        }
        if (out[i] == '/') {
            const char *seg = out + i + 1;
            size_t sl = strcspn(seg, "/?");
            if (seg + sl > out + plen)
                sl = (size_t)(out + plen - seg);
            CHECK(!(sl == 1 && seg[0] == '.') && !(sl == 2 && seg[0] == '.' && seg[1] == '.'));
        }
    }
    memcpy(again, out, n + 1);
    CHECK(front_target(again, out, &plen2, &why) == 0);
    CHECK(strcmp(again, out) == 0 && plen2 == plen);
}

static void check_header(const char *line, size_t len, struct front_head *h, const char *conn)
{
    static const char *const never[] = {
        "content-length", "transfer-encoding", "host",   "connection", "te",
        "trailer",        "upgrade",           "expect", "keep-alive", NULL};
    const char *colon = memchr(line, ':', len);
    size_t nl, vl;
    const char *v;

    if (!colon)
        return;
    nl = (size_t)(colon - line);
    v = colon + 1;
    vl = len - nl - 1;
    if (!front_head_add(h, line, nl, v, vl)) {
        CHECK(h->status == 400 && h->why && h->code);
        front_head_init(h, "x-tenant");
        return;
    }
    if (!hdr_to_upstream(line, nl) || hdr_listed(conn, line, nl))
        return;
    /* It would be forwarded: it must be harmless. */
    CHECK(nl > 0);
    for (size_t i = 0; i < nl; i++)
        CHECK(line[i] > 0x20 && line[i] < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", line[i]));
    for (size_t i = 0; i < vl; i++)
        CHECK(v[i] != '\r' && v[i] != '\n' && v[i] != '\0');
    for (size_t i = 0; never[i]; i++)
        CHECK(!(strlen(never[i]) == nl && strncasecmp(line, never[i], nl) == 0));
    CHECK(!(nl >= 6 && strncasecmp(line, "proxy-", 6) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *nl = memchr(p, '\n', size);
    size_t tl = nl ? (size_t)(nl - p) : size;
    static char target[FRONT_TARGET_MAX * 2];
    struct front_head h;

    if (tl >= sizeof(target))
        tl = sizeof(target) - 1;
    memcpy(target, p, tl);
    target[tl] = '\0';
    check_target(target);

    front_head_init(&h, "x-tenant");
    /* The Connection header's value, if a line names it, for the filter. */
    static char conn[256];
    conn[0] = '\0';
    for (p = nl ? nl + 1 : end; p < end;) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        size_t len = e ? (size_t)(e - p) : (size_t)(end - p);
        if (len > 11 && strncasecmp(p, "connection:", 11) == 0 && len - 11 < sizeof(conn) &&
            !memchr(p + 11, '\0', len - 11)) {
            memcpy(conn, p + 11, len - 11);
            conn[len - 11] = '\0';
        }
        check_header(p, len, &h, conn);
        p = e ? e + 1 : end;
    }
    (void)front_head_done(&h, true);
    return 0;
}
