/* front.c - request-target normalisation and header checks; see front.h. */
#include "proxy/front.h"

#include <string.h>
#include <strings.h>

static bool alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool unreserved(unsigned char c)
{
    return alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 3986 pchar, less pct-encoded (handled by the caller). */
static bool pchar(unsigned char c)
{
    return unreserved(c) || (c && strchr("!$&'()*+,;=:@", c));
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The byte of a "%XX" escape at p, or -1 when it is not one. */
static int escape(const char *p)
{
    int hi, lo;

    if (p[0] != '%')
        return -1;
    hi = hexval((unsigned char)p[1]);
    lo = hi < 0 ? -1 : hexval((unsigned char)p[2]);
    return lo < 0 ? -1 : hi * 16 + lo;
}

/* Bytes that must never reach the provider in a path, even encoded: they
 * let a path mean one thing here and another there (dot segments, another
 * separator, a string's end). */
static bool forbidden_escape(int c)
{
    return c == '.' || c == '/' || c == '\\' || c < 0x20 || c == 0x7f;
}

static const char *segment_check(const char *seg, size_t n)
{
    if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
        return "The request path must not contain '.' or '..' segments.";
    return NULL;
}

int front_target(const char *target, char *out, size_t *path_len, const char **why)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *p = target;
    size_t n = 0, seg = 1;

    *why = "The request target must be a path starting with '/' (origin form).";
    if (!p || *p != '/')
        return -1;
    out[n++] = '/';
    p++;
    /* The path: one byte of output per step, three for a kept escape; out
     * has room for FRONT_TARGET_MAX bytes and the NUL. */
    while (*p && *p != '?') {
        unsigned char c = (unsigned char)*p;
        int e;

        if (n >= FRONT_TARGET_MAX) {
            *why = "The request target is too long.";
            return -1;
        }
        if (c == '/') {
            if ((*why = segment_check(out + seg, n - seg)))
                return -1;
            if (out[n - 1] != '/')
                out[n++] = '/';
            seg = n;
            p++;
            continue;
        }
        if (c == '%') {
            e = escape(p);
            if (e < 0) {
                *why = "The request path holds a '%' that is not a percent-escape.";
                return -1;
            }
            if (forbidden_escape(e)) {
                *why = "The request path must not hold encoded dots, slashes, backslashes or "
                       "control bytes.";
                return -1;
            }
            if (unreserved((unsigned char)e)) {
                out[n++] = (char)e;
            } else if (n + 3 > FRONT_TARGET_MAX) {
                *why = "The request target is too long.";
                return -1;
            } else {
                out[n++] = '%';
                out[n++] = hex[e >> 4];
                out[n++] = hex[e & 15];
            }
            p += 3;
            continue;
        }
        if (!pchar(c)) {
            *why = c == '#' ? "The request target must not hold a fragment ('#')."
                            : "The request path holds a byte that must be percent-encoded.";
            return -1;
        }
        out[n++] = (char)c;
        p++;
    }
    if ((*why = segment_check(out + seg, n - seg)))
        return -1;
    *path_len = n;
    /* The query is the provider's to read: kept as sent, once it is
     * well-formed. */
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        int e = c == '%' ? escape(p) : 0;

        if (n + 1 > FRONT_TARGET_MAX) {
            *why = "The request target is too long.";
            return -1;
        }
        if (e < 0 || (c == '%' && (e < 0x20 || e == 0x7f)) ||
            (c != '%' && c != '/' && c != '?' && !pchar(c))) {
            *why = "The query string holds a byte that must be percent-encoded.";
            return -1;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    *why = NULL;
    return 0;
}

/* ---- headers ------------------------------------------------------------ */

/* RFC 9110 5.6.2 tchar. */
static bool tchar(unsigned char c)
{
    return alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool named(const char *name, size_t nlen, const char *what)
{
    return strlen(what) == nlen && strncasecmp(name, what, nlen) == 0;
}

static bool refuse(struct front_head *h, int status, const char *code, const char *why)
{
    h->status = status;
    h->code = code;
    h->why = why;
    return false;
}

void front_head_init(struct front_head *h, const char *tenant_header)
{
    memset(h, 0, sizeof(*h));
    h->tenant_header = tenant_header;
}

/* The value with optional white space around it removed. */
static void trim(const char **v, size_t *n)
{
    while (*n && (**v == ' ' || **v == '\t'))
        (*v)++, (*n)--;
    while (*n && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
        (*n)--;
}

bool front_head_add(struct front_head *h, const char *name, size_t nlen, const char *value,
                    size_t vlen)
{
    if (nlen == 0)
        return refuse(h, 400, "invalid_header", "A request header has an empty name.");
    for (size_t i = 0; i < nlen; i++)
        if (!tchar((unsigned char)name[i]))
            return refuse(h, 400, "invalid_header",
                          "A request header name holds a space, a control byte or a separator.");
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return refuse(h, 400, "invalid_header",
                          "A request header value holds CR, LF, NUL or a control byte.");
    }
    if (named(name, nlen, "content-length")) {
        trim(&value, &vlen);
        h->content_length++;
        if (vlen == 0 || vlen > 19)
            h->bad_cl = true;
        for (size_t i = 0; i < vlen; i++)
            if (value[i] < '0' || value[i] > '9')
                h->bad_cl = true;
    } else if (named(name, nlen, "transfer-encoding")) {
        trim(&value, &vlen);
        h->transfer_encoding++;
        h->chunked = named(value, vlen, "chunked");
    } else if (named(name, nlen, "host")) {
        h->host++;
    }
    if (h->tenant_header && named(name, nlen, h->tenant_header))
        h->tenant++;
    if (named(name, nlen, "x-parrot-namespace"))
        h->ns++;
    return true;
}

bool front_head_done(struct front_head *h, bool http11)
{
    if (h->transfer_encoding && h->content_length)
        return refuse(h, 400, "ambiguous_framing",
                      "The request has both Content-Length and Transfer-Encoding.");
    if (h->content_length > 1)
        return refuse(h, 400, "ambiguous_framing",
                      "The request has more than one Content-Length header.");
    if (h->bad_cl)
        return refuse(h, 400, "ambiguous_framing",
                      "The request's Content-Length is not a decimal number.");
    if (h->transfer_encoding > 1)
        return refuse(h, 400, "ambiguous_framing",
                      "The request has more than one Transfer-Encoding header.");
    if (h->transfer_encoding && !h->chunked)
        return refuse(h, 501, "unsupported_transfer_encoding",
                      "The only transfer coding parrot accepts is chunked.");
    if (h->host > 1)
        return refuse(h, 400, "invalid_header", "The request has more than one Host header.");
    if (http11 && h->host == 0)
        return refuse(h, 400, "invalid_header", "An HTTP/1.1 request must carry a Host header.");
    if (h->tenant > 1)
        return refuse(h, 400, "invalid_header", "The request has more than one tenant header.");
    if (h->ns > 1)
        return refuse(h, 400, "invalid_header",
                      "The request has more than one x-parrot-namespace header.");
    return true;
}

bool front_namespace_ok(const char *v)
{
    size_t n = 0;

    for (; v[n]; n++)
        if (n >= FRONT_NAMESPACE_MAX || !tchar((unsigned char)v[n]))
            return false;
    return n > 0;
}
