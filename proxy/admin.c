/* admin.c - the admin API; see admin.h.
 *
 * Selection (listing and invalidation alike) is one pass over the store
 * under its read lock that only collects the ids and exact keys of the
 * matching entries; the JSON is built, and the removals made, after the lock
 * is released, so an admin call never holds lookups up for long.
 */
#include "proxy/admin.h"

#include "proxy/openai/canon.h"
#include "cache/base/map.h"
#include "cache/cache.h"
#include "config/config.h"
#include "proxy/audit.h"
#include "proxy/auth.h"
#include "proxy/chat.h"
#include "proxy/openai/completion.h"
#include "proxy/log.h"
#include "proxy/openai/oai.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_DEFAULT     100
#define LIST_MAX         1000
#define PARTITIONS_SHOWN 100

/* Which entries a call is about; every criterion set must hold. */
struct filter {
    bool all; /* invalidate: everything */
    bool has_partition;
    uint8_t partition[CACHE_KEY_LEN];
    const char *model;
    int64_t created_before; /* ms; 0: any age */
    float *vec;             /* text criterion: its embedding, or NULL */
    unsigned dim;
    const struct cache *cache; /* for the similarity of two vectors */
    double radius;
    uint64_t after; /* listing cursor: ids above it */
};

/* The matching entries, collected under the store's lock. */
struct picked {
    const struct filter *f;
    struct cache_ref *refs;
    size_t n, cap;
};

struct ctx {
    const struct admin *ad;
    const struct admin_call *c;
    int64_t now;
    struct admin_reply *out;
    struct log_rec lr;
    long long count; /* for the log line: entries listed or removed */
};

static int reply_json(struct ctx *x, int status, cJSON *doc)
{
    char *s = doc ? cJSON_PrintUnformatted(doc) : NULL;

    cJSON_Delete(doc);
    if (!s)
        return -ENOMEM;
    x->out->status = status;
    x->out->body = s;
    x->out->len = strlen(s);
    return 0;
}

static int reply_error(struct ctx *x, int status, const char *type, const char *param,
                       const char *code, const char *msg)
{
    struct oai_error e;

    oai_error_set(&e, status, type, param, code, "%s", msg);
    x->out->body = oai_error_json(&e, &x->out->len);
    if (!x->out->body)
        return -ENOMEM;
    x->out->status = status;
    return 0;
}

static int bad_request(struct ctx *x, const char *param, const char *msg)
{
    return reply_error(x, 400, "invalid_request_error", param, "invalid_value", msg);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A partition key as 64 hex digits. */
static bool parse_key(const char *s, uint8_t *out)
{
    if (strlen(s) != 2 * CACHE_KEY_LEN)
        return false;
    for (size_t i = 0; i < CACHE_KEY_LEN; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* An entry id as the x-parrot-entry header shows it: 1 to 16 hex digits. */
static bool parse_id(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        int d = hexval(s[i]);
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return v != 0;
}

static const char *model_of(const struct cache_entry_info *in)
{
    const struct cmpl_rendered *cr = in->payload;

    return cr && cr->model ? cr->model : "";
}

static bool matches(const struct filter *f, const struct cache_entry_info *in)
{
    if (in->id <= f->after)
        return false;
    if (f->has_partition &&
        (!in->partition || memcmp(in->partition, f->partition, CACHE_KEY_LEN) != 0))
        return false;
    if (f->model && strcmp(model_of(in), f->model) != 0)
        return false;
    if (f->created_before && in->created >= f->created_before)
        return false;
    if (f->vec && (!in->vec || (double)cache_similarity(f->cache, f->vec, in->vec) < f->radius))
        return false;
    return true;
}

static int pick(void *ud, const struct cache_entry *e)
{
    struct picked *p = ud;
    struct cache_entry_info in;

    cache_entry_describe(e, &in);
    if (!matches(p->f, &in))
        return 0;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        struct cache_ref *nr = realloc(p->refs, nc * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        p->refs = nr;
        p->cap = nc;
    }
    p->refs[p->n].id = in.id;
    memcpy(p->refs[p->n].exact, in.exact, CACHE_KEY_LEN);
    p->n++;
    return 0;
}

static int select_entries(struct ctx *x, const struct filter *f, struct picked *p)
{
    *p = (struct picked){.f = f};
    if (cache_scan(x->ad->cache, pick, p) != 0) {
        free(p->refs);
        p->refs = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void add_hex_id(cJSON *o, const char *name, uint64_t id)
{
    char s[17];

    snprintf(s, sizeof(s), "%016" PRIx64, id);
    cJSON_AddStringToObject(o, name, s);
}

/* One entry as JSON; the prompt only when the operator allowed it. */
static cJSON *entry_json(const struct ctx *x, const struct cache_entry *e)
{
    struct cache_entry_info in;
    const struct cmpl_rendered *cr;
    char hex[2 * CACHE_KEY_LEN + 1];
    int64_t created_s, expires_s, age_s;
    cJSON *o = cJSON_CreateObject();

    if (!o)
        return NULL;
    cache_entry_describe(e, &in);
    cr = in.payload;
    add_hex_id(o, "id", in.id);
    cJSON_AddStringToObject(o, "object", "parrot.cache_entry");
    if (in.partition) {
        canon_hex(in.partition, CACHE_KEY_LEN, hex);
        cJSON_AddStringToObject(o, "partition", hex);
    }
    cJSON_AddStringToObject(o, "model", model_of(&in));
    /* Whole seconds, as OpenAI's "created". */
    created_s = in.created / 1000;
    expires_s = in.expires / 1000;
    age_s = (x->now - in.created) / 1000;
    cJSON_AddNumberToObject(o, "created", (double)created_s);
    if (in.expires)
        cJSON_AddNumberToObject(o, "expires_at", (double)expires_s);
    else
        cJSON_AddNullToObject(o, "expires_at");
    cJSON_AddNumberToObject(o, "age_seconds", (double)age_s);
    cJSON_AddNumberToObject(o, "hits", (double)in.hits);
    cJSON_AddNumberToObject(o, "bytes", (double)in.size);
    cJSON_AddNumberToObject(o, "prompt_tokens", cr ? (double)cr->prompt_tokens : 0);
    cJSON_AddNumberToObject(o, "completion_tokens", cr ? (double)cr->completion_tokens : 0);
    cJSON_AddBoolToObject(o, "semantic", in.vec != NULL);
    cJSON_AddBoolToObject(o, "disputed", in.disputed);
    if (x->ad->cfg->admin_show_prompts) {
        if (in.text)
            cJSON_AddStringToObject(o, "prompt", in.text);
        else
            cJSON_AddNullToObject(o, "prompt");
    }
    return o;
}

static int cmp_ref(const void *a, const void *b)
{
    uint64_t x = ((const struct cache_ref *)a)->id, y = ((const struct cache_ref *)b)->id;

    return x < y ? -1 : x > y;
}

/* The listing's partition and model arguments into *f. Returns 1 to go on,
 * 0 after an error reply, or -ENOMEM. */
static int filter_args(struct ctx *x, struct filter *f)
{
    const char *p = x->c->arg(x->c->arg_ud, "partition");

    f->model = x->c->arg(x->c->arg_ud, "model");
    log_str(&x->lr, "model", f->model);
    log_str(&x->lr, "partition", p);
    if (p) {
        if (!parse_key(p, f->partition))
            return bad_request(x, "partition", "partition must be 64 hex digits, as listed.");
        f->has_partition = true;
    }
    return 1;
}

static int list_entries(struct ctx *x)
{
    struct filter f = {0};
    struct picked p;
    const char *lim = x->c->arg(x->c->arg_ud, "limit"), *after = x->c->arg(x->c->arg_ud, "after");
    long limit = LIST_DEFAULT;
    size_t shown = 0, i;
    uint64_t first = 0, last = 0;
    cJSON *doc, *data;
    int rc;

    if ((rc = filter_args(x, &f)) != 1)
        return rc;
    if (lim) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (*lim == '\0' || *end || limit < 1 || limit > LIST_MAX)
            return bad_request(x, "limit", "limit must be a whole number from 1 to 1000.");
    }
    if (after && !parse_id(after, &f.after))
        return bad_request(x, "after", "after must be an entry id (16 hex digits).");
    log_int(&x->lr, "limit", limit);
    log_str(&x->lr, "after", after);
    if (select_entries(x, &f, &p) != 0)
        return -ENOMEM;
    if (p.n > 1) /* qsort's base must not be NULL, even for no elements */
        qsort(p.refs, p.n, sizeof(*p.refs), cmp_ref);
    doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "object", "list");
    data = cJSON_AddArrayToObject(doc, "data");
    for (i = 0; data && i < p.n && shown < (size_t)limit; i++) {
        struct cache_entry *e = cache_get_id(x->ad->cache, p.refs[i].id);
        if (!e)
            continue; /* removed since the scan */
        cJSON_AddItemToArray(data, entry_json(x, e));
        cache_entry_unref(e);
        if (shown++ == 0)
            first = p.refs[i].id;
        last = p.refs[i].id;
    }
    if (shown) {
        add_hex_id(doc, "first_id", first);
        add_hex_id(doc, "last_id", last);
    } else {
        cJSON_AddNullToObject(doc, "first_id");
        cJSON_AddNullToObject(doc, "last_id");
    }
    /* Page on with ?after=<last_id>. */
    cJSON_AddBoolToObject(doc, "has_more", i < p.n);
    free(p.refs);
    x->count = (long long)shown;
    return reply_json(x, 200, doc);
}

/* The entry named by the path's last part, with a reference, or an error
 * reply (then NULL and *rc set). */
static struct cache_entry *entry_at(struct ctx *x, const char *idtext, int *rc)
{
    uint64_t id;
    struct cache_entry *e = NULL;

    log_str(&x->lr, "id", idtext);
    if (!parse_id(idtext, &id)) {
        *rc = bad_request(x, "id", "An entry id is 16 hex digits (see x-parrot-entry).");
        return NULL;
    }
    e = cache_get_id(x->ad->cache, id);
    if (!e)
        *rc = reply_error(x, 404, "invalid_request_error", "id", "entry_not_found",
                          "No cache entry has this id.");
    return e;
}

static int get_entry(struct ctx *x, const char *idtext)
{
    int rc = 0;
    struct cache_entry *e = entry_at(x, idtext, &rc);
    cJSON *o;

    if (!e)
        return rc;
    o = entry_json(x, e);
    cache_entry_unref(e);
    x->count = 1;
    return reply_json(x, 200, o);
}

/* Remove what p picked; the reply says how many and whether it was logged. */
static int remove_picked(struct ctx *x, struct picked *p, size_t *removed, bool *logged)
{
    int rc = cache_delete(x->ad->cache, p->refs, p->n, removed, logged);

    free(p->refs);
    p->refs = NULL;
    x->count = (long long)*removed;
    log_bool(&x->lr, "logged", *logged);
    return rc;
}

static int delete_entry(struct ctx *x, const char *idtext)
{
    int rc = 0;
    struct cache_entry *e = entry_at(x, idtext, &rc);
    struct cache_entry_info in;
    struct picked p = {0};
    size_t removed;
    bool logged;
    cJSON *o;

    if (!e)
        return rc;
    cache_entry_describe(e, &in);
    p.refs = malloc(sizeof(*p.refs));
    if (!p.refs) {
        cache_entry_unref(e);
        return -ENOMEM;
    }
    p.n = 1;
    p.refs[0].id = in.id;
    memcpy(p.refs[0].exact, in.exact, CACHE_KEY_LEN);
    cache_entry_unref(e);
    if (remove_picked(x, &p, &removed, &logged) != 0)
        return -ENOMEM;
    if (removed == 0) /* another call removed it first */
        return reply_error(x, 404, "invalid_request_error", "id", "entry_not_found",
                           "No cache entry has this id.");
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", idtext);
    cJSON_AddStringToObject(o, "object", "parrot.cache_entry.deleted");
    cJSON_AddBoolToObject(o, "deleted", true);
    cJSON_AddBoolToObject(o, "logged", logged);
    return reply_json(x, 200, o);
}

/* The invalidation criteria in body into *f (which points into body).
 * Returns 1 to go on, 0 after an error reply, or -ENOMEM. */
static int invalidation_filter(struct ctx *x, const cJSON *body, struct filter *f)
{
    static const char *const known[] = {"all",  "partition", "model", "older_than",
                                        "text", "radius",    NULL};
    const cJSON *it, *v;
    bool any = false;

    if (!cJSON_IsObject(body))
        return bad_request(x, NULL,
                           "The body must be a JSON object such as {\"model\":\"gpt-4o\"}.");
    cJSON_ArrayForEach(it, body)
    {
        size_t i = 0;
        while (known[i] && strcmp(known[i], it->string) != 0)
            i++;
        if (!known[i])
            return reply_error(x, 400, "invalid_request_error", it->string, "unknown_parameter",
                               "Unknown invalidation criterion; use all, partition, model, "
                               "older_than, or text with radius.");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "all"))) {
        if (!cJSON_IsTrue(v))
            return bad_request(x, "all", "all must be true (or left out).");
        f->all = any = true;
        log_bool(&x->lr, "all", true);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "partition"))) {
        if (!cJSON_IsString(v) || !parse_key(v->valuestring, f->partition))
            return bad_request(x, "partition", "partition must be 64 hex digits, as listed.");
        f->has_partition = any = true;
        log_str(&x->lr, "partition", v->valuestring);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "model"))) {
        if (!cJSON_IsString(v) || !*v->valuestring)
            return bad_request(x, "model", "model must be a non-empty string.");
        f->model = v->valuestring;
        any = true;
        log_str(&x->lr, "model", f->model);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "older_than"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 1e12)
            return bad_request(x, "older_than", "older_than is a number of seconds >= 0.");
        f->created_before = x->now - (int64_t)(v->valuedouble * 1000);
        any = true;
        log_ms(&x->lr, "older_than_s", v->valuedouble);
    }
    it = cJSON_GetObjectItemCaseSensitive(body, "text");
    v = cJSON_GetObjectItemCaseSensitive(body, "radius");
    if (it || v) {
        const char *why;
        char msg[200];
        int rc;
        if (!it || !cJSON_IsString(it) || !*it->valuestring)
            return bad_request(x, "text", "text must be a non-empty string (used with radius).");
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 1)
            return bad_request(x, "radius",
                               "radius is the cosine similarity from which entries are removed, "
                               "a number in (0, 1], e.g. 0.9.");
        f->radius = v->valuedouble;
        f->cache = x->ad->cache;
        rc = cache_embed_text(x->ad->cache, it->valuestring, strlen(it->valuestring), &f->vec,
                              &f->dim, &why);
        if (rc == -ENOMEM)
            return rc;
        if (rc == -ENODATA)
            return reply_error(x, 400, "invalid_request_error", "text", "invalid_value",
                               "text has nothing the embedder can use.");
        if (rc != 0) {
            log_str(&x->lr, "embed", why);
            snprintf(msg, sizeof(msg),
                     "The embedder could not embed text (%s); nothing was removed. Try again, "
                     "or invalidate by partition, model or age.",
                     why);
            return reply_error(x, 503, "server_error", "text", "embedder_unavailable", msg);
        }
        any = true;
        /* The text is a prompt: log its size, never its words. */
        log_int(&x->lr, "text_bytes", (long long)strlen(it->valuestring));
        log_ms(&x->lr, "radius", f->radius);
    }
    if (!any)
        return bad_request(x, NULL,
                           "Give at least one criterion: partition, model, older_than, text with "
                           "radius, or all: true.");
    if (f->all && (f->has_partition || f->model || f->created_before || f->vec))
        return bad_request(x, "all", "all: true cannot be combined with other criteria.");
    return 1;
}

static int invalidate(struct ctx *x)
{
    struct filter f = {0};
    struct picked p;
    size_t removed = 0;
    bool logged = true;
    cJSON *body = cJSON_ParseWithLength(x->c->body ? x->c->body : "", x->c->body_len), *o;
    int rc = invalidation_filter(x, body, &f);

    if (rc == 1) {
        rc = select_entries(x, &f, &p);
        if (rc == 0)
            rc = remove_picked(x, &p, &removed, &logged);
        if (rc == 0) {
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "object", "parrot.invalidation");
            cJSON_AddNumberToObject(o, "removed", (double)removed);
            cJSON_AddBoolToObject(o, "logged", logged);
            rc = reply_json(x, 200, o);
        }
    }
    free(f.vec);
    cJSON_Delete(body);
    return rc;
}

/* Entries and bytes per partition, gathered in one scan. */
struct part_count {
    uint8_t key[CACHE_KEY_LEN];
    size_t entries, bytes;
};

struct part_tally {
    struct map index; /* partition key -> struct part_count */
    struct part_count **v;
    size_t n, cap;
};

static int tally(void *ud, const struct cache_entry *e)
{
    struct part_tally *t = ud;
    struct cache_entry_info in;
    struct part_count *pc;
    void *old;

    cache_entry_describe(e, &in);
    if (!in.partition)
        return 0;
    pc = map_get(&t->index, in.partition);
    if (!pc) {
        if (t->n == t->cap) {
            size_t nc = t->cap ? t->cap * 2 : 16;
            struct part_count **nv = realloc(t->v, nc * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            t->v = nv;
            t->cap = nc;
        }
        pc = calloc(1, sizeof(*pc));
        if (!pc)
            return -ENOMEM;
        memcpy(pc->key, in.partition, CACHE_KEY_LEN);
        if (map_put(&t->index, pc->key, pc, &old) != 0) {
            free(pc);
            return -ENOMEM;
        }
        t->v[t->n++] = pc;
    }
    pc->entries++;
    pc->bytes += in.size;
    return 0;
}

static int cmp_count(const void *a, const void *b)
{
    const struct part_count *x = *(struct part_count *const *)a,
                            *y = *(struct part_count *const *)b;

    return x->entries < y->entries ? 1 : x->entries > y->entries ? -1 : 0;
}

static int stats(struct ctx *x)
{
    struct cache *s = x->ad->cache;
    struct cache_stats st;
    struct chat_stats cc;
    struct part_tally t = {.n = 0};
    cJSON *doc, *hits, *parts;
    uint64_t nhits;
    int rc = 0;

    map_init(&t.index);
    if (cache_scan(s, tally, &t) != 0)
        rc = -ENOMEM;
    cache_get_stats(s, &st);
    chat_get_stats(x->ad->chat, &cc);
    nhits = cc.hits_exact + cc.hits_semantic + cc.hits_coalesced;
    doc = rc ? NULL : cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "object", "parrot.stats");
    cJSON_AddNumberToObject(doc, "entries", (double)st.entries);
    cJSON_AddNumberToObject(doc, "partitions", (double)st.partitions);
    cJSON_AddNumberToObject(doc, "indexed_partitions", (double)st.indexed_partitions);
    cJSON_AddNumberToObject(doc, "memory_bytes", (double)st.memory);
    cJSON_AddNumberToObject(doc, "max_memory_bytes", (double)x->ad->cfg->cache_max_memory);
    cJSON_AddNumberToObject(doc, "evictions", (double)st.evictions);
    cJSON_AddNumberToObject(doc, "expirations", (double)st.expirations);
    cJSON_AddNumberToObject(doc, "replaced", (double)st.replaced);
    hits = cJSON_AddObjectToObject(doc, "hits");
    cJSON_AddNumberToObject(hits, "exact", (double)cc.hits_exact);
    cJSON_AddNumberToObject(hits, "semantic", (double)cc.hits_semantic);
    cJSON_AddNumberToObject(hits, "coalesced", (double)cc.hits_coalesced);
    cJSON_AddNumberToObject(doc, "misses", (double)cc.misses);
    cJSON_AddNumberToObject(doc, "bypasses", (double)cc.bypasses);
    cJSON_AddNumberToObject(doc, "refused", (double)cc.refused);
    /* Hits over lookups that could have hit (bypasses never could). */
    cJSON_AddNumberToObject(doc, "hit_ratio",
                            nhits + cc.misses ? (double)nhits / (double)(nhits + cc.misses) : 0);
    cJSON_AddNumberToObject(doc, "stores", (double)cc.stores);
    cJSON_AddNumberToObject(doc, "store_skipped", (double)cc.store_skipped);
    cJSON_AddNumberToObject(doc, "store_dropped", (double)cc.store_dropped);
    cJSON_AddNumberToObject(doc, "store_queued", (double)cc.store_queued);
    cJSON_AddNumberToObject(doc, "wal_dropped", (double)cc.log_errors);
    if (t.n > 1) /* qsort's base must not be NULL, even for no elements */
        qsort(t.v, t.n, sizeof(*t.v), cmp_count);
    parts = cJSON_AddArrayToObject(doc, "by_partition");
    for (size_t i = 0; parts && i < t.n && i < PARTITIONS_SHOWN; i++) {
        char hex[2 * CACHE_KEY_LEN + 1];
        cJSON *o = cJSON_CreateObject();
        canon_hex(t.v[i]->key, CACHE_KEY_LEN, hex);
        cJSON_AddStringToObject(o, "partition", hex);
        cJSON_AddNumberToObject(o, "entries", (double)t.v[i]->entries);
        cJSON_AddNumberToObject(o, "bytes", (double)t.v[i]->bytes);
        cJSON_AddItemToArray(parts, o);
    }
    /* The largest PARTITIONS_SHOWN; "partitions" has the full count. */
    cJSON_AddBoolToObject(doc, "by_partition_truncated", t.n > PARTITIONS_SHOWN);
    if (doc && audit_summary_json(x->ad->audit, s, x->ad->cfg->max_wrong_hit_rate,
                                  cJSON_AddObjectToObject(doc, "audit")) != 0) {
        cJSON_Delete(doc);
        doc = NULL;
        rc = -ENOMEM;
    }
    for (size_t i = 0; i < t.n; i++)
        free(t.v[i]);
    free(t.v);
    map_fini(&t.index);
    x->count = (long long)st.entries;
    return rc ? rc : reply_json(x, 200, doc);
}

/* GET /admin/audits: the audit summary and the latest disagreements. */
static int audits(struct ctx *x)
{
    cJSON *doc = cJSON_CreateObject();

    if (!doc || !cJSON_AddStringToObject(doc, "object", "parrot.audits") ||
        audit_summary_json(x->ad->audit, x->ad->cache, x->ad->cfg->max_wrong_hit_rate, doc) != 0 ||
        audit_recent_json(x->ad->audit, doc, "disagreements") != 0) {
        cJSON_Delete(doc);
        return -ENOMEM;
    }
    x->count = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "disagreements"));
    return reply_json(x, 200, doc);
}

static int method_not_allowed(struct ctx *x, const char *allowed)
{
    char msg[160];

    snprintf(msg, sizeof(msg), "Method %s is not allowed on %s; use %s.", x->c->method, x->c->path,
             allowed);
    return reply_error(x, 405, "invalid_request_error", NULL, "method_not_allowed", msg);
}

/* POST /admin/snapshot: write one now (the timer, the log size and SIGTERM
 * also do); 409 when persistence is off, 500 when the write failed (the log
 * still holds every entry). */
static int snapshot(struct ctx *x)
{
    char msg[1024];
    int rc = cache_snapshot(x->ad->cache, msg, sizeof(msg));
    cJSON *doc;

    log_int(&x->lr, "result", rc);
    if (rc == -EINVAL)
        return reply_error(x, 409, "invalid_request_error", NULL, "persistence_off",
                           "Snapshots need persistence (persist true and a data-dir).");
    if (rc != 0)
        return reply_error(x, 500, "server_error", NULL, "snapshot_failed", msg);
    doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "object", "parrot.snapshot");
    cJSON_AddStringToObject(doc, "detail", msg);
    return reply_json(x, 200, doc);
}

static bool is(const struct ctx *x, const char *method)
{
    return strcmp(x->c->method, method) == 0;
}

/* Route an authorised call; sets the log's action. */
static int dispatch(struct ctx *x)
{
    const char *path = x->c->path;
    static const char entries[] = "/admin/entries/";

    if (strcmp(path, "/admin/stats") == 0) {
        log_str(&x->lr, "action", "stats");
        return is(x, "GET") ? stats(x) : method_not_allowed(x, "GET");
    }
    if (strcmp(path, "/admin/audits") == 0) {
        log_str(&x->lr, "action", "audits");
        return is(x, "GET") ? audits(x) : method_not_allowed(x, "GET");
    }
    if (strcmp(path, "/admin/entries") == 0) {
        log_str(&x->lr, "action", "list");
        return is(x, "GET") ? list_entries(x) : method_not_allowed(x, "GET");
    }
    if (strncmp(path, entries, sizeof(entries) - 1) == 0) {
        const char *id = path + sizeof(entries) - 1;
        if (is(x, "GET")) {
            log_str(&x->lr, "action", "get");
            return get_entry(x, id);
        }
        log_str(&x->lr, "action", "delete");
        return is(x, "DELETE") ? delete_entry(x, id) : method_not_allowed(x, "GET or DELETE");
    }
    if (strcmp(path, "/admin/invalidate") == 0) {
        log_str(&x->lr, "action", "invalidate");
        return is(x, "POST") ? invalidate(x) : method_not_allowed(x, "POST");
    }
    if (strcmp(path, "/admin/snapshot") == 0) {
        log_str(&x->lr, "action", "snapshot");
        return is(x, "POST") ? snapshot(x) : method_not_allowed(x, "POST");
    }
    log_str(&x->lr, "action", "unknown");
    return reply_error(x, 404, "invalid_request_error", NULL, "unknown_url",
                       "Unknown admin endpoint; see docs/admin.md.");
}

int admin_handle(const struct admin *ad, const struct admin_call *c, int64_t now,
                 struct admin_reply *out)
{
    struct ctx x = {.ad = ad, .c = c, .now = now, .out = out};
    int rc;

    memset(out, 0, sizeof(*out));
    log_begin(&x.lr, LOG_INFO, "admin");
    log_str(&x.lr, "method", c->method);
    log_str(&x.lr, "path", c->path);
    if (!auth_has_admin_key(ad->auth)) {
        log_str(&x.lr, "action", "denied");
        rc = reply_error(&x, 403, "invalid_request_error", NULL, "admin_disabled",
                         "The admin API is off: set admin-key (PARROT_ADMIN_KEY or the config "
                         "file) to turn it on.");
    } else if (!auth_admin(ad->auth, c->authorization)) {
        log_str(&x.lr, "action", "denied");
        rc = reply_error(&x, 401, "invalid_request_error", NULL, "invalid_api_key",
                         "The admin API needs Authorization: Bearer <admin-key>.");
    } else if (!ad->cache) {
        log_str(&x.lr, "action", "unavailable");
        rc = reply_error(&x, 409, "invalid_request_error", NULL, "cache_disabled",
                         "The cache is off (cache = false): there is nothing to administer.");
    } else {
        rc = dispatch(&x);
    }
    log_int(&x.lr, "status", rc == 0 ? out->status : 500);
    log_int(&x.lr, "count", x.count);
    log_end(&x.lr);
    if (rc != 0) {
        free(out->body);
        memset(out, 0, sizeof(*out));
        return -ENOMEM;
    }
    return 0;
}
