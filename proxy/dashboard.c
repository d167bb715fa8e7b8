/* dashboard.c - the dashboard page and its stats document; see dashboard.h. */
#include "proxy/dashboard.h"

#include "cache/cache.h"
#include "proxy/audit.h"
#include "proxy/chat.h"
#include "proxy/metrics.h"
#include "upstream/upstream.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <time.h>

static const char page[] =
#include "proxy/dashboard_html.inc"
    ;

const char *dashboard_page(size_t *len)
{
    *len = sizeof(page) - 1;
    return page;
}

static int add_num(cJSON *o, const char *name, double v)
{
    return cJSON_AddNumberToObject(o, name, v) ? 0 : -1;
}

/* The "cache" object: the request policy's verdicts (chat_get_counters)
 * beside what the cache service holds and turned down (cache_get_stats). */
static int cache_json(struct chat *ch, cJSON *root)
{
    struct chat_counters pc;
    struct cache_stats cs;
    cJSON *o = cJSON_AddObjectToObject(root, "cache");
    uint64_t hits, lookups, rejected;
    int rc = 0;

    if (!o || !cJSON_AddBoolToObject(o, "enabled", ch != NULL))
        return -1;
    if (!ch)
        return 0;
    chat_get_counters(ch, &pc);
    cache_get_stats(chat_cache(ch), &cs);
    hits = pc.hits_exact + pc.hits_semantic + pc.hits_coalesced;
    lookups = hits + pc.misses;
    /* Semantic candidates turned down, by the verifier or as unreusable. */
    rejected = cs.rejected_unreusable;
    for (int i = VERIFY_OK + 1; i < VERIFY_REASONS; i++)
        rejected += cs.rejected[i];
    rc |= add_num(o, "hits_exact", (double)pc.hits_exact);
    rc |= add_num(o, "hits_semantic", (double)pc.hits_semantic);
    rc |= add_num(o, "hits_coalesced", (double)pc.hits_coalesced);
    rc |= add_num(o, "misses", (double)pc.misses);
    rc |= add_num(o, "bypasses", (double)pc.bypasses);
    rc |= add_num(o, "refused", (double)pc.refused);
    rc |= add_num(o, "stores", (double)pc.stores);
    rc |= add_num(o, "verifier_rejections", (double)rejected);
    rc |= add_num(o, "evictions", (double)cs.evictions);
    rc |= add_num(o, "entries", (double)cs.entries);
    rc |= add_num(o, "memory_bytes", (double)cs.memory);
    /* Of the requests that looked the cache up, the share it answered. */
    rc |= add_num(o, "hit_rate", lookups ? (double)hits / (double)lookups : 0);
    return rc;
}

static int providers_json(struct up_pool *pool, cJSON *root)
{
    static const char *const breaker[] = {"closed", "half-open", "open"};
    struct up_provider_stats st[UP_MAX_PROVIDERS];
    size_t n = up_pool_provider_stats(pool, st, UP_MAX_PROVIDERS);
    cJSON *arr = cJSON_AddArrayToObject(root, "providers");
    int rc = 0;

    if (!arr)
        return -1;
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            return -1;
        }
        rc |= cJSON_AddStringToObject(o, "name", st[i].name) ? 0 : -1;
        rc |= cJSON_AddStringToObject(o, "breaker", breaker[st[i].breaker]) ? 0 : -1;
        rc |= add_num(o, "weight", st[i].weight);
        rc |= add_num(o, "attempts", (double)st[i].attempts);
        rc |= add_num(o, "failures", (double)st[i].failures);
        rc |= add_num(o, "retries", (double)st[i].retries);
        rc |= add_num(o, "failovers", (double)st[i].failovers);
    }
    return rc;
}

char *dashboard_stats(struct chat *ch, struct audit *a, double max_rate, struct up_pool *pool,
                      struct metrics *m, size_t inflight, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    char *out = NULL;

    if (!root || add_num(root, "now", (double)time(NULL)) != 0 ||
        add_num(root, "inflight", (double)inflight) != 0 || cache_json(ch, root) != 0 ||
        providers_json(pool, root) != 0 || metrics_json(m, root) != 0)
        goto done;
    if (ch && audit_summary_json(a, chat_cache(ch), max_rate,
                                 cJSON_AddObjectToObject(root, "audit")) != 0)
        goto done;
    out = cJSON_PrintUnformatted(root);
    if (out)
        *len = strlen(out);
done:
    cJSON_Delete(root);
    return out;
}
