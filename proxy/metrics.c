/* metrics.c - per-request counters, histograms, savings; see metrics.h. */
#include "proxy/metrics.h"

#include "upstream/upstream.h"

#include "cache/base/beta.h"
#include "cache/cache.h"
#include "cache/replica/replica.h"
#include "proxy/audit.h"
#include "proxy/chat.h"

#include "proxy/openai/canon.h"
#include "config/config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CODES 600 /* status codes 0..599; one counter each per route */
/* Slots of the top-misses table: Space-Saving finds every partition that
 * takes more than 1/TOP_SLOTS of the misses. */
#define TOP_SLOTS    32
#define TOP_SHOWN    10
#define TOP_KEY      8 /* partition hash bytes kept (16 hex digits) */
#define PICO_PER_USD UINT64_C(1000000000000)

/* From a cache hit's tens of microseconds to a long generation's minutes. */
static const double bounds[METRICS_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                               0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                               5,      10,      30,     60,    120};

/* parrot's own share of a request: from a hit's tens of microseconds to a
 * lookup that queued behind a slow embedder or a client that reads slowly. */
static const double overhead_bounds[] = {0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                         0.001,    0.0025,  0.005,  0.01,    0.025,
                                         0.05,     0.1,     0.25,   0.5,     1};
#define OVERHEAD_BUCKETS (sizeof(overhead_bounds) / sizeof(overhead_bounds[0]))
_Static_assert(OVERHEAD_BUCKETS <= METRICS_BUCKETS, "a struct hist holds the overhead's buckets");

const char *const metrics_cache_names[MC_OUTCOMES] = {"hit", "miss", "bypass", "none"};

static const char *const upstream_reasons[MU_REASONS] = {"miss", "bypass", "passthrough", "audit"};

static const char *const route_names[MR_ROUTES] = {"chat",      "v1",    "health", "metrics",
                                                   "dashboard", "admin", "other"};

/* A histogram over up to METRICS_BUCKETS finite bounds; the bounds live
 * in a table of their own (bounds or overhead_bounds). */
struct hist {
    atomic_uint_fast64_t bucket[METRICS_BUCKETS + 1]; /* not cumulative; +Inf after the bounds */
    atomic_uint_fast64_t sum_ns;
};

struct top_slot {
    uint8_t key[TOP_KEY];
    char model[48];
    uint64_t count;
};

struct metrics {
    struct cfg_price *prices;
    size_t nprices;
    int64_t start_time; /* Unix seconds */
    atomic_uint_fast64_t requests[MR_ROUTES][CODES];
    atomic_uint_fast64_t upstream[MU_REASONS];
    struct hist hist[MH_COUNT];
    struct hist overhead[MR_ROUTES][MC_OUTCOMES];
    atomic_uint_fast64_t saved_prompt, saved_completion, saved_pusd;
    pthread_mutex_t top_lock;
    struct top_slot top[TOP_SLOTS];
    size_t ntop;
};

int metrics_new(const char *prices, struct metrics **out)
{
    struct metrics *m = calloc(1, sizeof(*m));
    char err[256];

    if (!m)
        return -ENOMEM;
    if (prices) {
        m->prices = calloc(CFG_MAX_PRICES, sizeof(*m->prices));
        if (!m->prices) {
            free(m);
            return -ENOMEM;
        }
        if (cfg_parse_prices(prices, m->prices, CFG_MAX_PRICES, &m->nprices, err, sizeof(err)) !=
            0) {
            metrics_free(m);
            return -EINVAL;
        }
    }
    pthread_mutex_init(&m->top_lock, NULL);
    m->start_time = (int64_t)time(NULL);
    *out = m;
    return 0;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->top_lock);
    free(m->prices);
    free(m);
}

static bool path_is(const char *path, size_t len, const char *s)
{
    return strlen(s) == len && memcmp(path, s, len) == 0;
}

static bool path_under(const char *path, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);

    return len >= pl && memcmp(path, prefix, pl) == 0 && (len == pl || path[pl] == '/');
}

enum metrics_route metrics_route_of(const char *path, size_t len, const char *method)
{
    if (path_is(path, len, "/v1/chat/completions") && strcmp(method, "POST") == 0)
        return MR_CHAT;
    if (path_under(path, len, "/v1"))
        return MR_V1;
    if (path_is(path, len, "/healthz") || path_is(path, len, "/readyz"))
        return MR_HEALTH;
    if (path_is(path, len, "/metrics"))
        return MR_METRICS;
    if (path_under(path, len, "/dashboard"))
        return MR_DASHBOARD;
    if (path_under(path, len, "/admin"))
        return MR_ADMIN;
    return MR_OTHER;
}

void metrics_request(struct metrics *m, enum metrics_route r, int status)
{
    if (status <= 0 || status >= CODES)
        status = 499;
    atomic_fetch_add_explicit(&m->requests[r][status], 1, memory_order_relaxed);
}

void metrics_upstream(struct metrics *m, enum metrics_upstream r)
{
    atomic_fetch_add_explicit(&m->upstream[r], 1, memory_order_relaxed);
}

/* Count seconds in h, whose finite bounds are le[0..n). */
static void hist_add(struct hist *h, const double *le, size_t n, double seconds)
{
    size_t i = 0;

    if (!(seconds >= 0)) /* also NaN */
        seconds = 0;
    while (i < n && seconds > le[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)(seconds * 1e9), memory_order_relaxed);
}

void metrics_observe(struct metrics *m, enum metrics_hist h, double seconds)
{
    hist_add(&m->hist[h], bounds, METRICS_BUCKETS, seconds);
}

void metrics_overhead(struct metrics *m, enum metrics_route r, enum metrics_cache c, double seconds)
{
    hist_add(&m->overhead[r][c], overhead_bounds, OVERHEAD_BUCKETS, seconds);
}

/* The price row for model: the exact name, else the longest name that the
 * model extends with a dated snapshot suffix ("gpt-4o" for
 * "gpt-4o-2024-08-06", but not for "gpt-4o-mini"). */
static const struct cfg_price *price_of(const struct metrics *m, const char *model)
{
    const struct cfg_price *best = NULL;
    size_t best_len = 0;

    for (size_t i = 0; i < m->nprices; i++) {
        const char *name = m->prices[i].model;
        size_t nl = strlen(name);
        if (strcmp(name, model) == 0)
            return &m->prices[i];
        if (strncmp(name, model, nl) == 0 && model[nl] == '-' &&
            isdigit((unsigned char)model[nl + 1]) && nl > best_len) {
            best = &m->prices[i];
            best_len = nl;
        }
    }
    return best;
}

/* a * b, saturating instead of wrapping. */
static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t metrics_price(const struct metrics *m, const char *model, int64_t prompt_tokens,
                       int64_t completion_tokens)
{
    const struct cfg_price *p = model ? price_of(m, model) : NULL;

    if (!p)
        return 0;
    return add_sat(
        mul_sat(prompt_tokens > 0 ? (uint64_t)prompt_tokens : 0, p->input_pusd),
        mul_sat(completion_tokens > 0 ? (uint64_t)completion_tokens : 0, p->output_pusd));
}

void metrics_saved(struct metrics *m, const char *model, int64_t prompt_tokens,
                   int64_t completion_tokens)
{
    if (prompt_tokens > 0)
        atomic_fetch_add_explicit(&m->saved_prompt, (uint64_t)prompt_tokens, memory_order_relaxed);
    if (completion_tokens > 0)
        atomic_fetch_add_explicit(&m->saved_completion, (uint64_t)completion_tokens,
                                  memory_order_relaxed);
    atomic_fetch_add_explicit(&m->saved_pusd,
                              metrics_price(m, model, prompt_tokens, completion_tokens),
                              memory_order_relaxed);
}

void metrics_miss(struct metrics *m, const uint8_t *partition, const char *model)
{
    struct top_slot *min = NULL;
    const char *mod = model ? model : "";

    pthread_mutex_lock(&m->top_lock);
    for (size_t i = 0; i < m->ntop; i++) {
        struct top_slot *s = &m->top[i];
        if (memcmp(s->key, partition, TOP_KEY) == 0 &&
            strncmp(s->model, mod, sizeof(s->model) - 1) == 0) {
            s->count++;
            pthread_mutex_unlock(&m->top_lock);
            return;
        }
        if (!min || s->count < min->count)
            min = s;
    }
    /* A new key takes a free slot, or replaces the rarest and inherits its
     * count: an overestimate that keeps frequent keys from being pushed out
     * by a stream of one-offs. */
    if (m->ntop < TOP_SLOTS) {
        min = &m->top[m->ntop++];
        min->count = 0;
    }
    memcpy(min->key, partition, TOP_KEY);
    snprintf(min->model, sizeof(min->model), "%s", mod);
    min->count++;
    pthread_mutex_unlock(&m->top_lock);
}

/* A consistent copy of h's buckets; returns the total count. */
static uint64_t hist_load(struct hist *h, uint64_t *b)
{
    uint64_t n = 0;

    for (size_t i = 0; i <= METRICS_BUCKETS; i++) {
        b[i] = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        n += b[i];
    }
    return n;
}

double metrics_quantile(struct metrics *m, enum metrics_hist h, double q)
{
    uint64_t b[METRICS_BUCKETS + 1], n = hist_load(&m->hist[h], b), cum = 0;
    double rank;

    if (n == 0)
        return -1;
    rank = q * (double)n;
    for (size_t i = 0; i < METRICS_BUCKETS; i++) {
        if (b[i] && (double)(cum + b[i]) >= rank) {
            double lo = i ? bounds[i - 1] : 0;
            return lo + (bounds[i] - lo) * (rank - (double)cum) / (double)b[i];
        }
        cum += b[i];
    }
    /* In the +Inf bucket: the largest finite bound is all that is known. */
    return bounds[METRICS_BUCKETS - 1];
}

static int put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int put(struct buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -E2BIG;
    return buf_append(b, line, (size_t)n, 1u << 22);
}

int metrics_family(struct buf *b, const char *name, const char *type, const char *help)
{
    return put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram series over the finite bounds le[0..nle); labels is "" or
 * `key="value",`. */
static int render_hist(struct buf *out, struct hist *h, const double *le, size_t nle,
                       const char *name, const char *labels)
{
    uint64_t b[METRICS_BUCKETS + 1], n = hist_load(h, b), cum = 0;
    int rc = 0;

    for (size_t i = 0; i < nle; i++) {
        cum += b[i];
        rc |= put(out, "%s_bucket{%sle=\"%g\"} %" PRIu64 "\n", name, labels, le[i], cum);
    }
    rc |= put(out, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, n);
    /* Without labels the braces go too: `name_sum{}` is not valid. */
    if (*labels) {
        size_t ll = strlen(labels) - 1; /* without the trailing comma */
        rc |= put(out, "%s_sum{%.*s} %.9f\n", name, (int)ll, labels,
                  (double)atomic_load(&h->sum_ns) / 1e9);
        rc |= put(out, "%s_count{%.*s} %" PRIu64 "\n", name, (int)ll, labels, n);
    } else {
        rc |= put(out, "%s_sum %.9f\n", name, (double)atomic_load(&h->sum_ns) / 1e9);
        rc |= put(out, "%s_count %" PRIu64 "\n", name, n);
    }
    return rc;
}

int metrics_render(struct metrics *m, struct buf *out)
{
    static const char *const chat_kind[] = {"hit", "miss", "bypass"};
    uint64_t usd;
    int rc = 0;

    rc |= metrics_family(out, "parrot_start_time_seconds", "gauge",
                         "When parrot started, in seconds since the Unix epoch.");
    rc |= put(out, "parrot_start_time_seconds %" PRId64 "\n", m->start_time);
    rc |=
        metrics_family(out, "parrot_http_requests_total", "counter",
                       "Requests answered, by route and status code (499: the client left first).");
    for (size_t r = 0; r < MR_ROUTES; r++)
        for (int c = 0; c < CODES; c++) {
            uint64_t v = atomic_load_explicit(&m->requests[r][c], memory_order_relaxed);
            if (v)
                rc |= put(out, "parrot_http_requests_total{route=\"%s\",code=\"%d\"} %" PRIu64 "\n",
                          route_names[r], c, v);
        }
    rc |= metrics_family(out, "parrot_chat_request_duration_seconds", "histogram",
                         "Chat completions from arrival to the last byte sent, by cache outcome.");
    for (size_t i = 0; i < 3; i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "cache=\"%s\",", chat_kind[i]);
        rc |= render_hist(out, &m->hist[MH_HIT + i], bounds, METRICS_BUCKETS,
                          "parrot_chat_request_duration_seconds", labels);
    }
    rc |= metrics_family(out, "parrot_overhead_seconds", "histogram",
                         "parrot's own time per request (arrival to the last byte sent, minus the "
                         "provider's time), by route and cache outcome.");
    /* As for parrot_http_requests_total, only the pairs that happened: most
     * of the routes never meet the cache. */
    for (size_t r = 0; r < MR_ROUTES; r++)
        for (size_t c = 0; c < MC_OUTCOMES; c++) {
            uint64_t b[METRICS_BUCKETS + 1];
            char labels[64];
            if (hist_load(&m->overhead[r][c], b) == 0)
                continue;
            snprintf(labels, sizeof(labels), "route=\"%s\",cache=\"%s\",", route_names[r],
                     metrics_cache_names[c]);
            rc |= render_hist(out, &m->overhead[r][c], overhead_bounds, OVERHEAD_BUCKETS,
                              "parrot_overhead_seconds", labels);
        }
    rc |= metrics_family(out, "parrot_upstream_requests_total", "counter",
                         "Requests sent to the provider pool, by why: a cache miss, a bypass of "
                         "the cache, another /v1 route, or an audit of a semantic hit.");
    for (size_t i = 0; i < MU_REASONS; i++)
        rc |= put(out, "parrot_upstream_requests_total{reason=\"%s\"} %" PRIu64 "\n",
                  upstream_reasons[i], (uint64_t)atomic_load(&m->upstream[i]));
    rc |= metrics_family(out, "parrot_upstream_first_byte_seconds", "histogram",
                         "Time from sending a request upstream to the provider's response headers, "
                         "retries included.");
    rc |= render_hist(out, &m->hist[MH_FIRST_BYTE], bounds, METRICS_BUCKETS,
                      "parrot_upstream_first_byte_seconds", "");
    rc |= metrics_family(out, "parrot_upstream_duration_seconds", "histogram",
                         "Time from sending a request upstream to the end of its answer, retries "
                         "included.");
    rc |= render_hist(out, &m->hist[MH_UPSTREAM], bounds, METRICS_BUCKETS,
                      "parrot_upstream_duration_seconds", "");
    rc |= metrics_family(
        out, "parrot_tokens_saved_total", "counter",
        "Tokens of cache hits' original usage: what the provider was not asked for.");
    rc |= put(out, "parrot_tokens_saved_total{kind=\"prompt\"} %" PRIu64 "\n",
              (uint64_t)atomic_load(&m->saved_prompt));
    rc |= put(out, "parrot_tokens_saved_total{kind=\"completion\"} %" PRIu64 "\n",
              (uint64_t)atomic_load(&m->saved_completion));
    rc |=
        metrics_family(out, "parrot_cost_saved_usd_total", "counter",
                       "Estimated US dollars the cache hits saved, from the prices option (models "
                       "without a price count nothing).");
    /* Printed from the integer picodollars: exact, however small. */
    usd = atomic_load(&m->saved_pusd);
    rc |= put(out, "parrot_cost_saved_usd_total %" PRIu64 ".%012" PRIu64 "\n", usd / PICO_PER_USD,
              usd % PICO_PER_USD);
    return rc ? -ENOMEM : 0;
}

static int cmp_slot(const void *a, const void *b)
{
    const struct top_slot *x = a, *y = b;

    return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

static cJSON *top_json(struct metrics *m)
{
    struct top_slot top[TOP_SLOTS];
    size_t n;
    cJSON *arr = cJSON_CreateArray();

    pthread_mutex_lock(&m->top_lock);
    n = m->ntop;
    memcpy(top, m->top, n * sizeof(top[0]));
    pthread_mutex_unlock(&m->top_lock);
    if (!arr)
        return NULL;
    qsort(top, n, sizeof(top[0]), cmp_slot);
    for (size_t i = 0; i < n && i < TOP_SHOWN; i++) {
        char hex[2 * TOP_KEY + 1];
        cJSON *o = cJSON_CreateObject();
        canon_hex(top[i].key, TOP_KEY, hex);
        if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddStringToObject(o, "partition", hex) ||
            !cJSON_AddStringToObject(o, "model", top[i].model) ||
            !cJSON_AddNumberToObject(o, "count", (double)top[i].count)) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

int metrics_json(struct metrics *m, cJSON *obj)
{
    static const char *const names[MH_COUNT] = {"hit", "miss", "bypass", "first_byte", "upstream"};
    cJSON *lat = cJSON_AddObjectToObject(obj, "latency");
    cJSON *saved = cJSON_AddObjectToObject(obj, "saved");
    cJSON *req = cJSON_AddObjectToObject(obj, "requests");
    cJSON *top;
    uint64_t total = 0, errors = 0;

    if (!lat || !saved || !req)
        return -ENOMEM;
    for (size_t h = 0; h < MH_COUNT; h++) {
        uint64_t b[METRICS_BUCKETS + 1];
        cJSON *o = cJSON_AddObjectToObject(lat, names[h]);
        if (!o || !cJSON_AddNumberToObject(o, "count", (double)hist_load(&m->hist[h], b)) ||
            !cJSON_AddNumberToObject(o, "p50", metrics_quantile(m, h, 0.5)) ||
            !cJSON_AddNumberToObject(o, "p99", metrics_quantile(m, h, 0.99)))
            return -ENOMEM;
    }
    for (size_t r = 0; r < MR_ROUTES; r++)
        for (int c = 0; c < CODES; c++) {
            uint64_t v = atomic_load_explicit(&m->requests[r][c], memory_order_relaxed);
            total += v;
            errors += c >= 500 ? v : 0;
        }
    if (!cJSON_AddNumberToObject(req, "total", (double)total) ||
        !cJSON_AddNumberToObject(req, "server_errors", (double)errors) ||
        !cJSON_AddNumberToObject(saved, "prompt_tokens", (double)atomic_load(&m->saved_prompt)) ||
        !cJSON_AddNumberToObject(saved, "completion_tokens",
                                 (double)atomic_load(&m->saved_completion)) ||
        !cJSON_AddNumberToObject(saved, "usd",
                                 (double)atomic_load(&m->saved_pusd) / (double)PICO_PER_USD) ||
        !cJSON_AddBoolToObject(saved, "priced", m->nprices > 0) ||
        !cJSON_AddNumberToObject(obj, "start_time", (double)m->start_time))
        return -ENOMEM;
    top = top_json(m);
    if (!top)
        return -ENOMEM;
    if (!cJSON_AddItemToObject(obj, "top_misses", top)) {
        cJSON_Delete(top);
        return -ENOMEM;
    }
    return 0;
}

/* ---- the cache (moved from chat.c; consolidated with the rest later) ---- */

/* One sample, after the family's HELP and TYPE when header is set. */
static int metric(struct buf *b, const char *name, const char *type, const char *help,
                  const char *labels, uint64_t v, bool header)
{
    char line[512];

    if (header && metrics_family(b, name, type, help) != 0)
        return -ENOMEM;
    snprintf(line, sizeof(line), "%s%s %" PRIu64 "\n", name, labels, v);
    return buf_puts(b, line, 1u << 20);
}

/* A gauge of milliseconds, exposed in seconds as Prometheus wants units. */
static int gauge_seconds(struct buf *b, const char *name, const char *help, uint64_t ms)
{
    char line[256];

    if (metrics_family(b, name, "gauge", help) != 0)
        return -ENOMEM;
    snprintf(line, sizeof(line), "%s %" PRIu64 ".%03u\n", name, ms / 1000, (unsigned)(ms % 1000));
    return buf_puts(b, line, 1u << 20);
}

/* The remote embedder's counters, latency histogram and breaker. */
static int embed_metrics(const struct embed_client_stats *es, struct buf *b)
{
    const struct embed_client_stats st = *es;
    char labels[64], line[160];
    int rc = 0;

    for (int i = 0; i < EMBED_RESULTS; i++) {
        snprintf(labels, sizeof(labels), "{result=\"%s\"}", embed_result_name(i));
        rc |= metric(b, "parrot_embed_requests_total", "counter",
                     "Lookup texts sent to the embeddings endpoint, by outcome.", labels,
                     st.texts[i], i == 0);
    }
    rc |= metric(b, "parrot_embed_calls_total", "counter", "Calls made to the embeddings endpoint.",
                 "", st.calls, true);
    rc |= metric(b, "parrot_embed_batched_texts_total", "counter",
                 "Texts carried by those calls (divide by the calls for the batch size).", "",
                 st.batched, true);
    rc |= metric(b, "parrot_embed_queue_depth", "gauge",
                 "Texts waiting for the embeddings call in flight to end.", "", st.queued, true);
    rc |= metric(b, "parrot_embed_breaker_state", "gauge",
                 "Embeddings endpoint circuit breaker: 0 closed, 1 half-open, 2 open.", "",
                 (uint64_t)st.breaker, true);
    /* The family's HELP and TYPE name the histogram, not its series. */
    rc |= buf_puts(b,
                   "# HELP parrot_embed_call_duration_seconds Duration of calls to the "
                   "embeddings endpoint.\n# TYPE parrot_embed_call_duration_seconds histogram\n",
                   1u << 20);
    for (int i = 0; i < EMBED_LATENCY_BUCKETS; i++) {
        snprintf(labels, sizeof(labels), "{le=\"%g\"}", st.bucket_le[i]);
        rc |= metric(b, "parrot_embed_call_duration_seconds_bucket", "", "", labels, st.bucket[i],
                     false);
    }
    snprintf(line, sizeof(line),
             "parrot_embed_call_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64
             "\nparrot_embed_call_duration_seconds_sum %.6f\n"
             "parrot_embed_call_duration_seconds_count %" PRIu64 "\n",
             st.calls, st.seconds_sum, st.calls);
    rc |= buf_puts(b, line, 1u << 20);
    return rc;
}

int metrics_cache(struct buf *b, const struct chat_stats *cs, const struct cache_stats *st)
{
    char labels[240];
    int rc = 0;

    rc |= metric(b, "parrot_cache_hits_total", "counter",
                 "Chat completions answered from the cache, by how they matched.",
                 "{kind=\"exact\"}", cs->hits_exact, true);
    rc |= metric(b, "parrot_cache_hits_total", "", "", "{kind=\"semantic\"}", cs->hits_semantic,
                 false);
    rc |= metric(b, "parrot_cache_hits_total", "", "", "{kind=\"coalesced\"}", cs->hits_coalesced,
                 false);
    rc |= metric(b, "parrot_cache_misses_total", "counter",
                 "Chat completions sent to the provider after a cache miss.", "", cs->misses, true);
    for (size_t i = 0; i < CHAT_BYPASS_REASONS; i++) {
        snprintf(labels, sizeof(labels), "{reason=\"%s\"}", chat_bypass_reasons[i]);
        rc |= metric(b, "parrot_cache_bypasses_total", "counter",
                     "Chat completions that skipped the lookup, by reason.", labels, cs->bypass[i],
                     i == 0);
    }
    rc |= metric(b, "parrot_cache_no_store_total", "counter",
                 "Chat completions looked up but not to be stored (Cache-Control: no-store).", "",
                 cs->no_store, true);
    rc |= metric(b, "parrot_cache_refused_total", "counter",
                 "only-if-cached requests that found nothing (504).", "", cs->refused, true);
    rc |= metric(b, "parrot_cache_items_total", "counter",
                 "Inputs of requests cached input by input (embeddings), by outcome.",
                 "{result=\"hit\"}", cs->item_hits, true);
    rc |=
        metric(b, "parrot_cache_items_total", "", "", "{result=\"miss\"}", cs->item_misses, false);
    rc |= metric(b, "parrot_cache_items_total", "", "", "{result=\"bypass\"}", cs->item_bypasses,
                 false);
    rc |= metric(b, "parrot_cache_stores_total", "counter", "Answers stored in the cache.", "",
                 cs->stores, true);
    rc |= metric(b, "parrot_cache_store_skipped_total", "counter",
                 "Answers not stored: error status, truncated, unfinished or unreplayable.", "",
                 cs->store_skipped, true);
    rc |= metric(b, "parrot_cache_stores_dropped_total", "counter",
                 "Answers answered but not stored: the store queue was full (or memory ran out).",
                 "", cs->store_dropped, true);
    rc |= metric(b, "parrot_cache_store_queue", "gauge",
                 "Answers answered and waiting to be stored.", "", cs->store_queued, true);
    for (int i = VERIFY_OK + 1; i < VERIFY_REASONS; i++) {
        snprintf(labels, sizeof(labels), "{reason=\"%s\"}", verify_reason_name(i));
        rc |= metric(b, "parrot_cache_verifier_rejections_total", "counter",
                     "Semantic candidates the hit verifier turned down, by reason.", labels,
                     st->rejected[i], i == VERIFY_OK + 1);
    }
    rc |= metric(b, "parrot_cache_verifier_rejections_total", "", "", "{reason=\"tool_calls\"}",
                 st->rejected_unreusable, false);
    rc |= metric(b, "parrot_cache_verifier_rejections_total", "", "", "{reason=\"disputed\"}",
                 st->rejected_disputed, false);
    snprintf(labels, sizeof(labels), "{name=\"%s\"}", st->embedder_name);
    rc |= metric(b, "parrot_embedder_info", "gauge",
                 "The embedder in use: kind, model and dimension.", labels, 1, true);
    if (st->remote)
        rc |= embed_metrics(&st->embed, b);
    rc |=
        metric(b, "parrot_cache_entries", "gauge", "Entries in the cache.", "", st->entries, true);
    rc |= metric(b, "parrot_cache_partitions", "gauge", "Partitions with at least one entry.", "",
                 st->partitions, true);
    rc |= metric(b, "parrot_cache_memory_bytes", "gauge",
                 "Bytes used by entries, vectors and indexes.", "", st->memory, true);
    rc |= metric(b, "parrot_cache_evictions_total", "counter",
                 "Entries evicted to stay within cache-max-memory.", "", st->evictions, true);
    rc |= metric(b, "parrot_cache_expirations_total", "counter", "Entries dropped after their TTL.",
                 "", st->expirations, true);
    if (st->durable) {
        rc |= metric(b, "parrot_wal_records_total", "counter",
                     "Cache entries appended to the write-ahead log.", "", st->wal_appended, true);
        /* Sequence numbers are for the operator only, never in a client's
         * response: they count every tenant's stores. A record appended
         * before a scrape is durable once durable_seq reaches that scrape's
         * last_seq. */
        rc |= metric(b, "parrot_wal_last_seq", "gauge",
                     "Highest log sequence number handed out (appended, maybe not yet durable).",
                     "", st->wal_last_seq, true);
        rc |= metric(b, "parrot_wal_durable_seq", "gauge",
                     "Highest log sequence number durable under the fsync policy.", "",
                     st->wal_durable_seq, true);
        rc |= metric(b, "parrot_wal_dropped_total", "counter",
                     "Entries served but not logged (disk full, I/O error, log backlog).", "",
                     st->log_errors, true);
        rc |= metric(b, "parrot_wal_degraded", "gauge",
                     "1 while the log cannot write (the cache keeps serving from memory).", "",
                     st->wal_degraded, true);
        rc |= metric(b, "parrot_wal_file_bytes", "gauge",
                     "Size of the write-ahead log (a snapshot compacts it).", "", st->wal_file_size,
                     true);
        rc |= metric(b, "parrot_snapshots_total", "counter", "Snapshots written.", "", st->snaps,
                     true);
        rc |= metric(b, "parrot_snapshot_failures_total", "counter",
                     "Snapshot attempts that failed (disk full, I/O error).", "", st->snap_failures,
                     true);
        rc |= metric(b, "parrot_snapshot_failing", "gauge",
                     "1 while the last snapshot attempt failed.", "", st->snap_failing, true);
        rc |= metric(b, "parrot_snapshot_entries", "gauge", "Entries in the last snapshot.", "",
                     st->snap_last_entries, true);
        rc |= metric(b, "parrot_snapshot_bytes", "gauge", "Size of the last snapshot.", "",
                     st->snap_last_bytes, true);
        rc |= gauge_seconds(b, "parrot_snapshot_duration_seconds",
                            "How long the last snapshot took, capture to log compaction.",
                            st->snap_last_ms_taken);
        rc |=
            gauge_seconds(b, "parrot_cache_load_seconds",
                          "Start-up time to load the snapshot and replay the log.", st->loaded_ms);
    }
    return rc ? -ENOMEM : 0;
}

/* One gauge family over the most audited partitions: their upper bound, or
 * their threshold. */
static int partition_gauges(struct buf *b, const struct budget_part *parts, size_t n,
                            bool threshold)
{
    const char *name = threshold ? "parrot_audit_partition_threshold"
                                 : "parrot_audit_partition_wrong_hit_rate_upper";
    int rc =
        metrics_family(b, name, "gauge",
                       threshold ? "The semantic threshold of the most audited partitions."
                                 : "The wrong-hit upper bound of the most audited partitions.");

    for (size_t i = 0; i < n; i++) {
        char hex[2 * CACHE_KEY_LEN + 1];
        canon_hex(parts[i].partition, CACHE_KEY_LEN, hex);
        rc |= put(b, "%s{partition=\"%.16s\"} %.6f\n", name, hex,
                  threshold ? (double)parts[i].threshold
                            : beta_cp_upper(parts[i].wrong, parts[i].audits, BUDGET_CONF));
    }
    return rc;
}

int metrics_audit(struct buf *b, const struct audit_stats *st, const struct cache_stats *cs,
                  const struct budget_part *parts, size_t n)
{
    uint64_t k = cs->audit.wrong, total = cs->audit.audits;
    int rc = 0;

    rc |= metrics_family(b, "parrot_audit_total", "counter",
                         "Audited semantic hits since start, by the judge's verdict.");
    rc |= put(b, "parrot_audit_total{verdict=\"same\"} %" PRIu64 "\n", st->same);
    rc |= put(b, "parrot_audit_total{verdict=\"different\"} %" PRIu64 "\n", st->different);
    rc |= metrics_family(b, "parrot_audit_dropped_total", "counter",
                         "Sampled audits not judged, by reason: busy (max inflight), provider (no "
                         "breaker closed), failed (the provider call failed), gone (the entry "
                         "left the cache).");
    for (int i = 0; i < AUDIT_DROPS; i++)
        rc |= put(b, "parrot_audit_dropped_total{reason=\"%s\"} %" PRIu64 "\n", audit_drop_names[i],
                  st->dropped[i]);
    rc |= metric(b, "parrot_audit_inflight", "gauge", "Audits waiting for the provider now.", "",
                 st->inflight, true);
    rc |= metrics_family(b, "parrot_audit_wrong_hit_rate", "gauge",
                         "Share of audited semantic hits judged wrong (all audits on record).");
    rc |= put(b, "parrot_audit_wrong_hit_rate %.6f\n", total ? (double)k / (double)total : 0);
    rc |=
        metrics_family(b, "parrot_audit_wrong_hit_rate_upper", "gauge",
                       "95% Clopper-Pearson upper bound on the wrong-hit rate (1 with no audits).");
    rc |= put(b, "parrot_audit_wrong_hit_rate_upper %.6f\n", beta_cp_upper(k, total, BUDGET_CONF));
    rc |= metric(b, "parrot_audit_partitions_raised", "gauge",
                 "Partitions whose semantic threshold the error budget has raised.", "",
                 cs->audit.raised, true);
    rc |= metrics_family(b, "parrot_audit_threshold_max", "gauge",
                         "The highest semantic threshold any partition runs at.");
    rc |= put(b, "parrot_audit_threshold_max %.4f\n", (double)cs->audit.max_threshold);
    rc |= metric(b, "parrot_cache_disputed_total", "counter",
                 "Entries an audit disputed since start (they serve exact hits only).", "",
                 cs->disputes, true);
    rc |= partition_gauges(b, parts, n, false);
    rc |= partition_gauges(b, parts, n, true);
    return rc ? -ENOMEM : 0;
}

int metrics_providers(struct buf *b, const struct up_provider_stats *st, size_t n)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"parrot_upstream_attempts_total", "counter", "Requests sent to each provider."},
        {"parrot_upstream_failures_total", "counter",
         "Attempts that failed: connection error, timeout, 408, 409, 429 or 5xx."},
        {"parrot_upstream_retries_total", "counter", "Attempts that were retries."},
        {"parrot_upstream_failovers_total", "counter",
         "Retries that moved to this provider from another."},
        {"parrot_upstream_breaker_state", "gauge",
         "Circuit breaker: 0 closed, 1 half-open, 2 open."},
    };
    char line[512];
    int rc = 0;

    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        rc |= metrics_family(b, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; i < n; i++) {
            uint64_t v = f == 0   ? st[i].attempts
                         : f == 1 ? st[i].failures
                         : f == 2 ? st[i].retries
                         : f == 3 ? st[i].failovers
                                  : (uint64_t)st[i].breaker;
            snprintf(line, sizeof(line), "%s{provider=\"%.159s\"} %llu\n", fam[f].name, st[i].name,
                     (unsigned long long)v);
            rc |= buf_puts(b, line, 1u << 20);
        }
    }
    return rc ? -ENOMEM : 0;
}

/* A gauge of seconds with microsecond precision. */
static int gauge_f(struct buf *b, const char *name, const char *help, double v)
{
    char line[256];

    if (metrics_family(b, name, "gauge", help) != 0)
        return -ENOMEM;
    snprintf(line, sizeof(line), "%s %.6f\n", name, v);
    return buf_puts(b, line, 1u << 20);
}

int metrics_replica(struct buf *b, const struct replica_stats *st)
{
    int rc = 0;

    rc |= metric(b, "parrot_replica_connected", "gauge",
                 "1 while the connection to Redis works, per thread (writer, tail).",
                 "{thread=\"writer\"}", st->writer_connected, true);
    rc |= metric(b, "parrot_replica_connected", "", "", "{thread=\"tail\"}", st->tail_connected,
                 false);
    rc |= metric(b, "parrot_replica_queue_depth", "gauge",
                 "Changes made here waiting to be written to Redis.", "", st->queued, true);
    rc |= metric(b, "parrot_replica_published_total", "counter",
                 "Changes made here and written to Redis.", "", st->published, true);
    rc |= metric(b, "parrot_replica_dropped_total", "counter",
                 "Changes made here that were not replicated: the queue was full.", "", st->dropped,
                 true);
    rc |= metric(b, "parrot_replica_applied_total", "counter",
                 "Changes made by other replicas and applied here.", "", st->applied, true);
    rc |= metric(b, "parrot_replica_apply_errors_total", "counter",
                 "Stream messages or entries that could not be read or applied.", "",
                 st->apply_errors, true);
    rc |= metric(b, "parrot_replica_reseeds_total", "counter",
                 "Re-seeds from the entry keys (no position yet, or the stream was trimmed past "
                 "it).",
                 "", st->reseeds, true);
    rc |= metric(b, "parrot_replica_reseeded_entries_total", "counter",
                 "Entries applied by re-seeds.", "", st->reseeded, true);
    rc |= metric(b, "parrot_replica_redis_errors_total", "counter",
                 "Failed connections to Redis and failed commands.", "", st->redis_errors, true);
    rc |= metric(b, "parrot_replica_flights_total", "counter",
                 "Cross-replica single-flight waits, by how they ended: this replica led, "
                 "another's answer arrived, or the wait ran out (or Redis went away).",
                 "{result=\"led\"}", st->flights_led, true);
    rc |= metric(b, "parrot_replica_flights_total", "", "", "{result=\"followed\"}",
                 st->flights_followed, false);
    rc |= metric(b, "parrot_replica_flights_total", "", "", "{result=\"timed_out\"}",
                 st->flights_timed_out, false);
    rc |= metric(b, "parrot_replica_replicas", "gauge",
                 "Live replicas of the namespace at the last heartbeat, this one included (the "
                 "rate limits' fallback divides by it).",
                 "", st->replicas, true);
    rc |= gauge_f(b, "parrot_replica_lag_seconds",
                  "Age of the last change applied from another replica, when it was applied.",
                  st->lag_seconds);
    rc |= gauge_f(b, "parrot_replica_redis_rtt_seconds",
                  "The last round trip of a batch of changes to Redis.", st->rtt_seconds);
    return rc ? -ENOMEM : 0;
}

int metrics_server(struct buf *b, size_t inflight, uint64_t slow_cut)
{
    char line[160];
    int rc;

    rc = metrics_family(b, "parrot_build_info", "gauge",
                        "Always 1; the labels say which parrot this is.");
    snprintf(line, sizeof(line), "parrot_build_info{version=\"%.32s\",revision=\"%.40s\"} 1\n",
             cfg_version(), cfg_git_rev());
    rc |= buf_puts(b, line, 1u << 20);
    rc |= metrics_family(b, "parrot_inflight_requests", "gauge", "Requests being served.");
    snprintf(line, sizeof(line), "parrot_inflight_requests %zu\n", inflight);
    rc |= buf_puts(b, line, 1u << 20);
    rc |= metrics_family(b, "parrot_slow_clients_cut_total", "counter",
                         "Connections cut off because a request head or body did not arrive in "
                         "time (header-timeout).");
    snprintf(line, sizeof(line), "parrot_slow_clients_cut_total %llu\n",
             (unsigned long long)slow_cut);
    rc |= buf_puts(b, line, 1u << 20);
    return rc ? -ENOMEM : 0;
}
