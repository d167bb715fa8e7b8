/* headers.c - header filters for both directions; see headers.h. */
#include "proxy/headers.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool in(const char *name, size_t len, const char *const *list)
{
    for (; *list; list++)
        if (strlen(*list) == len && strncasecmp(name, *list, len) == 0)
            return true;
    return false;
}

bool hdr_is_hop_by_hop(const char *name, size_t len)
{
    static const char *const hop[] = {
        "connection", "keep-alive",        "proxy-connection", "proxy-authenticate",  "te",
        "trailer",    "transfer-encoding", "upgrade",          "proxy-authorization", NULL};
    return in(name, len, hop);
}

bool hdr_to_upstream(const char *name, size_t len)
{
    /* x-parrot-namespace is parrot's own (it selects a cache scope) and
     * would tell the provider how a client groups its requests. */
    static const char *const drop[] = {
        "host", "content-length", "expect", "accept-encoding", "x-parrot-namespace", NULL};
    /* Proxy-* speaks to a proxy on the way, never to the origin. */
    if (len >= 6 && strncasecmp(name, "proxy-", 6) == 0)
        return false;
    return !hdr_is_hop_by_hop(name, len) && !in(name, len, drop);
}

bool hdr_listed(const char *list, const char *name, size_t len)
{
    while (list && *list) {
        const char *start, *end;

        while (*list == ' ' || *list == '\t' || *list == ',')
            list++;
        start = list;
        while (*list && *list != ',')
            list++;
        end = list;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == len && len && strncasecmp(start, name, len) == 0)
            return true;
    }
    return false;
}

bool hdr_to_client(const char *name, size_t len)
{
    static const char *const drop[] = {"content-length", "date", "server", "x-request-id", NULL};
    return !hdr_is_hop_by_hop(name, len) && !in(name, len, drop);
}

void hdr_parse_cache_control(const char *v, struct hdr_cache_control *cc)
{
    cc->no_cache = cc->no_store = cc->only_if_cached = false;
    cc->max_age = -1;
    while (v && *v) {
        const char *start, *end;
        size_t n;

        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        start = v;
        while (*v && *v != ',' && *v != '=' && *v != ' ' && *v != '\t')
            v++;
        n = (size_t)(v - start);
        while (*v == ' ' || *v == '\t')
            v++;
        if (n == 8 && strncasecmp(start, "no-cache", n) == 0)
            cc->no_cache = true;
        else if (n == 8 && strncasecmp(start, "no-store", n) == 0)
            cc->no_store = true;
        else if (n == 14 && strncasecmp(start, "only-if-cached", n) == 0)
            cc->only_if_cached = true;
        if (*v == '=') {
            const char *val = ++v;
            if (*val == '"')
                val++;
            if (n == 7 && strncasecmp(start, "max-age", n) == 0 && isdigit((unsigned char)*val)) {
                char *e;
                long long a = strtoll(val, &e, 10);
                /* Several max-age directives: the strictest wins. */
                if (cc->max_age < 0 || a < cc->max_age)
                    cc->max_age = a;
            }
            end = strchr(v, ',');
            v = end ? end : v + strlen(v);
        }
    }
}

size_t hdr_fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

size_t hdr_fmt_hex(char *out, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
    out[16] = '\0';
    return 16;
}

size_t hdr_fmt_fixed(char *out, double v, int places)
{
    static const uint64_t pow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000};
    uint64_t scaled, whole, frac;
    size_t n = 0;

    if (places < 0)
        places = 0;
    if (places > 6)
        places = 6;
    if (signbit(v)) { /* "-0.000" for a small negative, as printf */
        out[n++] = '-';
        v = -v;
    }
    scaled = (uint64_t)rint(v * (double)pow10[places]); /* ties to even, as printf */
    whole = scaled / pow10[places];
    frac = scaled % pow10[places];
    n += hdr_fmt_u64(out + n, whole);
    if (places > 0) {
        out[n++] = '.';
        for (int i = places - 1; i >= 0; i--, frac /= 10)
            out[n + (size_t)i] = (char)('0' + frac % 10);
        n += (size_t)places;
    }
    out[n] = '\0';
    return n;
}
