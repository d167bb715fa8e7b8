/* headers.c - header filters for both directions; see headers.h. */
#include "proxy/headers.h"

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
    static const char *const drop[] = {"host", "content-length", "expect", "accept-encoding", NULL};
    return !hdr_is_hop_by_hop(name, len) && !in(name, len, drop);
}

bool hdr_to_client(const char *name, size_t len)
{
    static const char *const drop[] = {"content-length", "date", "server", "x-request-id", NULL};
    return !hdr_is_hop_by_hop(name, len) && !in(name, len, drop);
}
