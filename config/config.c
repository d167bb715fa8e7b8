/* config.c - the option table and its three loaders (file, environment, flags).
 *
 * Adding an option means adding one row to `options` and one field to
 * struct cfg: help, --print-config, the environment name and validation all
 * come from the row.
 *
 * It stays one file (over 1,000 lines) because every part of it is driven by
 * that table: the value parsers are its column types (enum opt_type), the
 * three loaders and the printers walk its rows, and the cross-option checks
 * read the struct it fills. Splitting it would spread one table's meaning
 * over several files.
 */
#include "config/config.h"

#include "config/version.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum opt_type {
    T_STR,
    T_URL,
    T_UPSTREAMS,
    T_PRICES,
    T_ADDR,
    T_SIZE,
    T_DUR,
    T_INT,
    T_BOOL,
    T_LEVEL,
    T_FLOAT
};

#define O_SECRET   0x1 /* masked when printed; never accepted as a flag */
#define O_OPTIONAL 0x2 /* an empty string means "not set" */

struct option {
    const char *name; /* long flag and config-file key */
    enum opt_type type;
    size_t off; /* offset of the field in struct cfg */
    const char *def;
    long min, max; /* for T_INT and T_FLOAT; for T_SIZE when max > 0 */
    unsigned flags;
    const char *help;
};

#define F(field) offsetof(struct cfg, field)

static const struct option options[] = {
    {"listen", T_ADDR, F(listen), "127.0.0.1:8080", 0, 0, 0,
     "address to serve on: HOST:PORT or [V6]:PORT (port 0 picks a free one)"},
    {"upstream", T_UPSTREAMS, F(upstream), "https://api.openai.com/v1", 0, 0, 0,
     "provider base URL including /v1, as URL[;weight=N][;key-env=VAR]; repeat the flag "
     "(or separate with commas) for several providers"},
    {"upstream-key", T_STR, F(upstream_key), NULL, 0, 0, O_SECRET | O_OPTIONAL,
     "API key sent upstream instead of the client's (file or env only)"},
    {"data-dir", T_STR, F(data_dir), "parrot-data", 0, 0, 0,
     "directory for the write-ahead log and snapshots"},
    {"max-body-size", T_SIZE, F(max_body_size), "32m", 0, 0, 0,
     "largest request body accepted (413 above it)"},
    {"header-buffer", T_SIZE, F(header_buffer), "16k", 8192, 1048576, 0,
     "memory per connection for a request's line and headers, 8k..1m (a head of more than "
     "about 60% of it gets 431); zeroed before every request, so more costs throughput"},
    {"connect-timeout", T_DUR, F(connect_timeout_ms), "10s", 0, 0, 0,
     "time allowed to connect to the upstream"},
    {"upstream-timeout", T_DUR, F(upstream_timeout_ms), "10m", 0, 0, 0,
     "time allowed for a whole upstream exchange (504 before the first byte)"},
    {"first-byte-timeout", T_DUR, F(first_byte_timeout_ms), "0", 0, 0, 0,
     "time allowed until the provider's response headers, per attempt (0 = no separate limit)"},
    {"retries", T_INT, F(retries), "2", 0, 10, 0,
     "extra attempts after a connection error, timeout, 408, 409, 429 or 5xx"},
    {"retry-max-delay", T_DUR, F(retry_max_delay_ms), "60s", 0, 0, 0,
     "longest wait before a retry; a longer Retry-After is relayed instead"},
    {"breaker-failures", T_INT, F(breaker_failures), "5", 1, 1000, 0,
     "consecutive failures that open a provider's circuit breaker"},
    {"breaker-cooldown", T_DUR, F(breaker_cooldown_ms), "10s", 0, 0, 0,
     "how long an open breaker keeps a provider out before a probe"},
    {"upstream-http2", T_BOOL, F(upstream_http2), "false", 0, 0, 0,
     "talk HTTP/2 to https providers (multiplexed); HTTP/1.1 keep-alive otherwise"},
    {"idle-timeout", T_DUR, F(idle_timeout_ms), "5m", 0, 0, 0,
     "longest silence allowed from the upstream while it answers"},
    {"client-timeout", T_DUR, F(client_timeout_ms), "60s", 0, 0, 0,
     "idle client connections are closed after this"},
    {"header-timeout", T_DUR, F(header_timeout_ms), "10s", 0, 0, 0,
     "time a client has to send the whole request head; the body must then arrive at 16 KiB/s "
     "on average (slow clients are cut off)"},
    {"shutdown-timeout", T_DUR, F(shutdown_timeout_ms), "30s", 0, 0, 0,
     "on SIGTERM, how long in-flight requests may take to finish"},
    {"log-level", T_LEVEL, F(log_level), "info", 0, 0, 0, "debug, info, warn or error"},
    {"threads", T_INT, F(threads), "0", 0, 256, 0, "HTTP worker threads (0 = one per CPU)"},
    {"max-connections", T_INT, F(max_connections), "8192", 1, 1000000, 0,
     "most concurrent client connections"},
    {"insecure-open", T_BOOL, F(insecure_open), "false", 0, 0, 0,
     "allow listening on a non-loopback address"},
    {"cache", T_BOOL, F(cache), "true", 0, 0, 0,
     "answer repeated and paraphrased chat completions from the cache"},
    {"cache-ttl", T_DUR, F(cache_ttl_ms), "24h", 0, 0, 0,
     "how long an answer is served (0 = until evicted); x-parrot-ttl overrides"},
    {"cache-max-memory", T_SIZE, F(cache_max_memory), "256m", 0, 0, 0,
     "memory for cached answers, vectors and indexes; beyond it entries are evicted"},
    {"store-queue", T_INT, F(store_queue), "4096", 1, 1000000, 0,
     "most answers waiting to be stored after their clients have them; new misses wait for "
     "their turn from half of it (at most 64), and beyond it an answer is served but not "
     "stored, and counted"},
    {"similarity-threshold", T_FLOAT, F(similarity_threshold), "0", 0, 1, 0,
     "cosine similarity for a semantic hit, 0..1 (0 = the embedder's calibrated default)"},
    {"persist", T_BOOL, F(persist), "true", 0, 0, 0,
     "keep cached answers across restarts in a write-ahead log under data-dir"},
    {"wal-fsync", T_STR, F(wal_fsync), "everysec", 0, 0, 0,
     "when the log is synced to disk: always, batch, everysec or off"},
    {"snapshot-interval", T_DUR, F(snapshot_interval_ms), "1h", 0, 0, 0,
     "write a snapshot of the cache this often so that a restart loads it instead of "
     "replaying the whole log (0 = only on the other triggers)"},
    {"snapshot-wal-size", T_SIZE, F(snapshot_wal_size), "256m", 0, 0, 0,
     "also write a snapshot once the write-ahead log grows past this (0 = no size trigger)"},
    {"snapshot-on-shutdown", T_BOOL, F(snapshot_on_shutdown), "true", 0, 0, 0,
     "write a snapshot on SIGTERM so that the next start is fast"},
    {"rate-limit-rpm", T_INT, F(rate_limit_rpm), "0", 0, 100000000, 0,
     "requests per minute per client that reach the provider (0 = no limit; hits are free)"},
    {"rate-limit-tpm", T_INT, F(rate_limit_tpm), "0", 0, 2000000000, 0,
     "provider tokens per minute per client, from each answer's usage (0 = no limit)"},
    {"verifier", T_BOOL, F(verifier), "true", 0, 0, 0,
     "check numbers and negation before serving a semantic hit"},
    {"audit-rate", T_FLOAT, F(audit_rate), "0.01", 0, 1, 0,
     "share of semantic hits asked again of the provider in the background and judged, "
     "0..1 (0 = no audits; docs/audit.md)"},
    {"audit-max-inflight", T_INT, F(audit_max_inflight), "4", 1, 1024, 0,
     "most audits at once; more are dropped and counted"},
    {"max-wrong-hit-rate", T_FLOAT, F(max_wrong_hit_rate), "0.02", 0, 1, 0,
     "error budget: while a partition's 95% upper bound on wrong hits is above this, its "
     "similarity threshold rises in steps"},
    {"prices", T_PRICES, F(prices), NULL, 0, 0, O_OPTIONAL,
     "price table for the money-saved metric: MODEL=IN/OUT,... in USD per 1M input/output "
     "tokens (unset: tokens saved are counted, money is not)"},
    {"log-prompts", T_BOOL, F(log_prompts), "false", 0, 0, 0,
     "put the question (last user message) in the request log line"},
    {"word-vectors", T_STR, F(word_vectors), "/usr/share/parrot/word-vectors.bin", 0, 0, O_OPTIONAL,
     "word-vector table for the built-in embedder (deploy/fetch-vectors.sh); missing or empty: "
     "lexical features only"},
    {"wordnet", T_STR, F(wordnet), "/usr/share/parrot/wordnet.bin", 0, 0, O_OPTIONAL,
     "WordNet table for the hit verifier (deploy/fetch-wordnet.sh); missing or empty: the "
     "verifier runs without it"},
    {"tenant-header", T_STR, F(tenant_header), NULL, 0, 0, O_OPTIONAL,
     "take the tenant from this request header instead of a hash of Authorization"},
    {"shared-tenant", T_STR, F(shared_tenant), NULL, 0, 0, O_OPTIONAL,
     "put every client in this one cache scope (only if you vouch for all clients)"},
    {"client-keys-file", T_STR, F(client_keys_file), NULL, 0, 0, O_OPTIONAL,
     "file of 'KEY TENANT' lines (mode o-rwx): /v1/* then needs one of these keys as "
     "Authorization: Bearer KEY, and the key's tenant selects the cache"},
    {"client-keys", T_STR, F(client_keys), NULL, 0, 0, O_SECRET | O_OPTIONAL,
     "client keys as 'KEY TENANT' entries separated by commas or newlines (file or env only)"},
    {"admin-key", T_STR, F(admin_key), NULL, 0, 0, O_SECRET | O_OPTIONAL,
     "key for the /admin/ API, sent as Authorization: Bearer KEY; unset = admin API off "
     "(file or env only)"},
    {"metrics-open", T_BOOL, F(metrics_open), "false", 0, 0, 0,
     "serve /metrics without the admin key to clients that are not on loopback"},
    {"admin-show-prompts", T_BOOL, F(admin_show_prompts), "false", 0, 0, 0,
     "let /admin/entries show each entry's prompt text"},
    {"embedder", T_STR, F(embedder), "builtin", 0, 0, 0,
     "how lookup texts become vectors: builtin (in-process) or openai (a remote "
     "OpenAI-compatible /v1/embeddings endpoint, see embed-url)"},
    {"embed-url", T_URL, F(embed_url), NULL, 0, 0, O_OPTIONAL,
     "base URL of the embeddings endpoint including /v1 (required with embedder=openai)"},
    {"embed-model", T_STR, F(embed_model), "text-embedding-3-small", 0, 0, 0,
     "model asked for embeddings (embedder=openai)"},
    {"embed-key", T_STR, F(embed_key), NULL, 0, 0, O_SECRET | O_OPTIONAL,
     "API key for the embeddings endpoint, sent as a Bearer token (file or env only)"},
    {"embed-timeout", T_DUR, F(embed_timeout_ms), "2s", 0, 0, 0,
     "longest a request waits for its embedding before it is served as a miss"},
    {"embed-dim", T_INT, F(embed_dim), "0", 0, 16384, 0,
     "dimension of the remote embeddings (0 = ask the endpoint once at start-up)"},
    {"embed-batch", T_INT, F(embed_batch), "64", 1, 2048, 0,
     "most texts sent in one embeddings call"},
    {"redis", T_STR, F(redis), NULL, 0, 0, O_OPTIONAL,
     "share the cache with the other replicas on this Redis: redis://[user@]host:port[/db] "
     "(docs/scale-out.md); unset: this process's cache is its own"},
    {"redis-password", T_STR, F(redis_password), NULL, 0, 0, O_SECRET | O_OPTIONAL,
     "password for the Redis user (file or env only)"},
    {"redis-namespace", T_STR, F(redis_namespace), "parrot", 0, 0, 0,
     "replicas with the same Redis and namespace share one cache (letters, digits, . _ -)"},
    {"redis-queue", T_INT, F(redis_queue), "100000", 1, 10000000, 0,
     "changes waiting to be written to Redis, at most (more are counted and not replicated)"},
    {"redis-stream-maxlen", T_INT, F(redis_stream_maxlen), "100000", 16, 1000000000, 0,
     "changes the Redis stream keeps, about; a replica further behind re-seeds from the entries"},
    {"redis-stream-max-age", T_DUR, F(redis_stream_age_ms), "24h", 0, 0, 0,
     "changes older than this are trimmed from the stream (0 = by length only)"},
    {"redis-flight-wait", T_DUR, F(redis_flight_wait_ms), "30s", 0, 0, 0,
     "a miss that another replica is already asking the provider waits this long for its "
     "answer, then asks itself (0 = no cross-replica single-flight)"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))
_Static_assert(N_OPTIONS <= CFG_MAX_OPTIONS, "raise CFG_MAX_OPTIONS");

/* String options that take one of a few words: checked with the other
 * values, so that a typo is a configuration error and not a failure after
 * start-up. */
static const struct {
    const char *name, *words; /* "a|b|c" */
} choice_lists[] = {
    {"wal-fsync", "always|batch|everysec|off"},
    {"embedder", "builtin|openai"},
};

static const char *choices_of(const struct option *o)
{
    for (size_t i = 0; i < sizeof(choice_lists) / sizeof(choice_lists[0]); i++)
        if (strcmp(choice_lists[i].name, o->name) == 0)
            return choice_lists[i].words;
    return NULL;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static const char *const source_names[] = {"default", "file", "env", "flag"};

/* max-body-size -> MAX_BODY_SIZE (the part after PARROT_). */
static void env_suffix(const char *name, char *out, size_t outlen)
{
    size_t j;

    for (j = 0; name[j] && j + 1 < outlen; j++)
        out[j] = name[j] == '-' ? '_' : (char)toupper((unsigned char)name[j]);
    out[j] = '\0';
}

static const struct option *find(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].name) == len && memcmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

int cfg_parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v, mul = 1;

    if (!s || !isdigit((unsigned char)*s))
        return CFG_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return CFG_EINVAL;
    switch (tolower((unsigned char)*end)) {
    case '\0': break;
    case 'k':
        mul = 1ULL << 10;
        end++;
        break;
    case 'm':
        mul = 1ULL << 20;
        end++;
        break;
    case 'g':
        mul = 1ULL << 30;
        end++;
        break;
    default: return CFG_EINVAL;
    }
    if ((*end == 'b' || *end == 'B'))
        end++;
    if (*end != '\0' || v > SIZE_MAX / mul)
        return CFG_EINVAL;
    *out = (size_t)(v * mul);
    return 0;
}

int cfg_parse_duration(const char *s, long *out_ms)
{
    char *end;
    unsigned long long v, mul;

    if (!s || !isdigit((unsigned char)*s))
        return CFG_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return CFG_EINVAL;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mul = 3600 * 1000;
    else
        return CFG_EINVAL;
    if (v > (unsigned long long)LONG_MAX / mul)
        return CFG_EINVAL;
    *out_ms = (long)(v * mul);
    return 0;
}

int cfg_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[64];
    const char *colon, *hs, *he;
    char *end;
    unsigned long port;

    if (!s)
        return CFG_EINVAL;
    if (s[0] == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (!he || he[1] != ':')
            return CFG_EINVAL;
        colon = he + 1;
    } else {
        hs = s;
        colon = strrchr(s, ':');
        if (!colon)
            return CFG_EINVAL;
        he = colon;
    }
    if ((size_t)(he - hs) >= sizeof(host) || !isdigit((unsigned char)colon[1]))
        return CFG_EINVAL;
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (errno || *end || port > 65535)
        return CFG_EINVAL;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    if (host[0] == '\0' || strcmp(host, "*") == 0)
        strcpy(host, "0.0.0.0");
    else if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");

    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return CFG_EINVAL;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            return CFG_EINVAL;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof(*a4);
    }
    return 0;
}

bool cfg_addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)ss;
        return (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
        const uint8_t *b = a6->sin6_addr.s6_addr;
        /* ::ffff:127.x.y.z, as a dual-stack socket reports an IPv4 peer. */
        return IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr) && b[12] == 127);
    }
    return false;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on") || !strcmp(s, "1"))
        *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off") || !strcmp(s, "0"))
        *out = false;
    else
        return CFG_EINVAL;
    return 0;
}

static int parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    long v;

    if (!s || !*s)
        return CFG_EINVAL;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return CFG_EINVAL;
    *out = (int)v;
    return 0;
}

/* A size (cfg_parse_size) from min to max; no bounds when max is 0. */
static int parse_size(const char *s, long min, long max, size_t *out)
{
    size_t v;

    if (cfg_parse_size(s, &v) != 0 || (max > 0 && (v < (size_t)min || v > (size_t)max)))
        return CFG_EINVAL;
    *out = v;
    return 0;
}

static int parse_float(const char *s, double min, double max, double *out)
{
    char *end;
    double v;

    if (!s || !*s)
        return CFG_EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !(v >= min && v <= max))
        return CFG_EINVAL;
    *out = v;
    return 0;
}

static int parse_url(const char *s, size_t n)
{
    size_t skip;

    if (n >= 7 && strncmp(s, "http://", 7) == 0)
        skip = 7;
    else if (n >= 8 && strncmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return CFG_EINVAL;
    if (n == skip || s[skip] == '/')
        return CFG_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == ',' || s[i] == ';')
            return CFG_EINVAL;
    return 0;
}

/* Appends [p, p + n) to out (outlen bytes, *o used), as much as fits. */
static void put(char *out, size_t outlen, size_t *o, const char *p, size_t n)
{
    if (!out || *o + 1 >= outlen)
        return;
    if (n > outlen - 1 - *o)
        n = outlen - 1 - *o;
    memcpy(out + *o, p, n);
    *o += n;
    out[*o] = '\0';
}

bool cfg_url_redact(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    bool masked = false;

    if (out && outlen)
        out[0] = '\0';
    for (;;) {
        const char *sep = strstr(s, "://"), *auth, *at;
        size_t alen;

        if (!sep) {
            put(out, outlen, &o, s, strlen(s));
            return masked;
        }
        auth = sep + 3;
        put(out, outlen, &o, s, (size_t)(auth - s));
        /* The authority ends where the path, query, fragment or the next
         * list entry begins; its last '@' ends the userinfo. */
        alen = strcspn(auth, "/?#,; \t");
        at = memrchr(auth, '@', alen);
        s = auth;
        if (at) {
            put(out, outlen, &o, "***@", 4);
            s = at + 1;
            masked = true;
        }
    }
}

char *cfg_url_redact_dup(const char *s)
{
    /* Each masked userinfo ("://" and "@" at least: 4 bytes) grows by 3 bytes
     * at most ("***@"). */
    size_t len = strlen(s) * 2 + 1;
    char *out = malloc(len);

    if (out)
        cfg_url_redact(s, out, len);
    return out;
}

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* The end of [p, end) without its trailing blanks. */
static const char *skip_space_back(const char *p, const char *end)
{
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return end;
}

/* One "URL;weight=N;key-env=VAR" entry in [p, end). */
static int parse_upstream(const char *p, const char *end, struct cfg_upstream *u, char *err,
                          size_t errlen)
{
    const char *semi;

    p = skip_space(p, end);
    end = skip_space_back(p, end);
    memset(u, 0, sizeof(*u));
    u->weight = 1;
    semi = memchr(p, ';', (size_t)(end - p));
    if (!semi)
        semi = end;
    if (parse_url(p, (size_t)(semi - p)) != 0 || (size_t)(semi - p) >= sizeof(u->url)) {
        char raw[sizeof(u->url)], shown[sizeof(u->url)];
        snprintf(raw, sizeof(raw), "%.*s", (int)(semi - p), p);
        cfg_url_redact(raw, shown, sizeof(shown));
        snprintf(err, errlen, "invalid upstream URL '%s' (expected http:// or https://)", shown);
        return CFG_EINVAL;
    }
    memcpy(u->url, p, (size_t)(semi - p));
    while (semi < end) {
        const char *a = semi + 1, *eq, *next = memchr(a, ';', (size_t)(end - a));
        size_t vl;

        if (!next)
            next = end;
        eq = memchr(a, '=', (size_t)(next - a));
        if (!eq)
            goto bad;
        vl = (size_t)(next - eq - 1);
        if ((size_t)(eq - a) == 6 && memcmp(a, "weight", 6) == 0) {
            char num[16], *e;
            long w;
            if (vl == 0 || vl >= sizeof(num))
                goto bad;
            memcpy(num, eq + 1, vl);
            num[vl] = '\0';
            w = strtol(num, &e, 10);
            if (*e || w < 1 || w > 1000)
                goto bad;
            u->weight = (unsigned)w;
        } else if ((size_t)(eq - a) == 7 && memcmp(a, "key-env", 7) == 0) {
            if (vl == 0 || vl >= sizeof(u->key_env))
                goto bad;
            memcpy(u->key_env, eq + 1, vl);
        } else {
            goto bad;
        }
        semi = next;
        continue;
    bad:
        snprintf(err, errlen,
                 "invalid upstream parameter '%.*s' (expected weight=1..1000 or key-env=VAR)",
                 (int)(next - a), a);
        return CFG_EINVAL;
    }
    return 0;
}

int cfg_parse_redis(const char *url, struct cfg_redis *out, char *err, size_t errlen)
{
    const char *p = url, *at, *colon, *slash, *end;
    char *num_end;
    long v;

    memset(out, 0, sizeof(*out));
    if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(err, errlen,
                 "redis: rediss:// (TLS) is not supported: Debian 12's libhiredis 0.14 has no TLS; "
                 "reach Redis over a private network or a TLS tunnel (docs/scale-out.md)");
        return CFG_EINVAL;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "redis must look like redis://[user@]host:port[/db]");
        return CFG_EINVAL;
    }
    p += 8;
    slash = strchr(p, '/');
    end = slash ? slash : p + strlen(p);
    at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        /* The password is a secret: never a flag, never in a URL that
         * --print-config and ps show. */
        if (memchr(p, ':', (size_t)(at - p))) {
            snprintf(err, errlen,
                     "redis: put the password in PARROT_REDIS_PASSWORD or the config file's "
                     "redis-password, not in the URL");
            return CFG_EINVAL;
        }
        if (at == p || (size_t)(at - p) >= sizeof(out->user)) {
            snprintf(err, errlen, "redis: the user name is empty or too long");
            return CFG_EINVAL;
        }
        memcpy(out->user, p, (size_t)(at - p));
        p = at + 1;
    }
    colon = memchr(p, ':', (size_t)(end - p));
    if (!colon || colon == p || (size_t)(colon - p) >= sizeof(out->host)) {
        snprintf(err, errlen, "redis must look like redis://[user@]host:port[/db]");
        return CFG_EINVAL;
    }
    memcpy(out->host, p, (size_t)(colon - p));
    errno = 0;
    v = strtol(colon + 1, &num_end, 10);
    if (num_end != end || colon + 1 == end || errno || v < 1 || v > 65535) {
        snprintf(err, errlen, "redis: the port must be 1..65535");
        return CFG_EINVAL;
    }
    out->port = (int)v;
    if (slash && slash[1]) {
        v = strtol(slash + 1, &num_end, 10);
        if (*num_end || v < 0 || v > 1000000) {
            snprintf(err, errlen, "redis: the database must be a number");
            return CFG_EINVAL;
        }
        out->db = (int)v;
    }
    return 0;
}

int cfg_parse_upstreams(const char *spec, struct cfg_upstream *out, size_t max, size_t *n,
                        char *err, size_t errlen)
{
    const char *p = spec, *end = spec + strlen(spec);

    *n = 0;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        if (!comma)
            comma = end;
        if (skip_space(p, comma) < comma) {
            if (*n == max) {
                snprintf(err, errlen, "too many upstreams (at most %zu)", max);
                return CFG_EINVAL;
            }
            if (parse_upstream(p, comma, &out[*n], err, errlen) != 0)
                return CFG_EINVAL;
            (*n)++;
        }
        p = comma + 1;
    }
    if (*n == 0) {
        snprintf(err, errlen, "no upstream given");
        return CFG_EINVAL;
    }
    return 0;
}

/* A price in USD per million tokens ("2.5", "0.075") as millionths. */
static int parse_price(const char *p, const char *end, unsigned long long *out)
{
    unsigned long long v = 0;
    int frac = -1;

    if (p == end)
        return CFG_EINVAL;
    for (; p < end; p++) {
        if (*p == '.' && frac < 0) {
            frac = 0;
        } else if (isdigit((unsigned char)*p) && frac < 6 && v < 1000000000000ULL) {
            v = v * 10 + (unsigned long long)(*p - '0');
            if (frac >= 0)
                frac++;
        } else {
            return CFG_EINVAL;
        }
    }
    for (frac = frac < 0 ? 0 : frac; frac < 6; frac++)
        v *= 10;
    /* Up to a million dollars per million tokens: room for any real price,
     * and token counts times it stay far from overflowing. */
    if (v > 1000000000000ULL)
        return CFG_EINVAL;
    *out = v;
    return 0;
}

int cfg_parse_prices(const char *spec, struct cfg_price *out, size_t max, size_t *n, char *err,
                     size_t errlen)
{
    const char *p = spec, *end = spec + strlen(spec);

    *n = 0;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p)), *eq, *slash, *e;
        struct cfg_price pr;

        if (!comma)
            comma = end;
        p = skip_space(p, comma);
        e = skip_space_back(p, comma);
        if (p == e) {
            p = comma + 1;
            continue;
        }
        if (*n == max) {
            snprintf(err, errlen, "too many prices (at most %zu)", max);
            return CFG_EINVAL;
        }
        eq = memchr(p, '=', (size_t)(e - p));
        slash = eq ? memchr(eq, '/', (size_t)(e - eq)) : NULL;
        memset(&pr, 0, sizeof(pr));
        if (!eq || eq == p || (size_t)(eq - p) >= sizeof(pr.model) || !slash ||
            memchr(p, ' ', (size_t)(eq - p)) || parse_price(eq + 1, slash, &pr.input_pusd) ||
            parse_price(slash + 1, e, &pr.output_pusd)) {
            snprintf(err, errlen,
                     "invalid price '%.*s' (expected MODEL=IN/OUT in USD per 1M tokens, "
                     "e.g. gpt-4o-mini=0.15/0.60)",
                     (int)(e - p), p);
            return CFG_EINVAL;
        }
        memcpy(pr.model, p, (size_t)(eq - p));
        out[(*n)++] = pr;
        p = comma + 1;
    }
    return 0;
}

static const char *expect(enum opt_type t)
{
    switch (t) {
    case T_UPSTREAMS: return "URL[;weight=N][;key-env=VAR], comma-separated";
    case T_PRICES: return "MODEL=IN/OUT in USD per 1M tokens, comma-separated";
    case T_ADDR: return "HOST:PORT, [V6]:PORT or :PORT";
    case T_SIZE: return "a size such as 4096, 64k, 32m or 1g";
    case T_DUR: return "a duration such as 500ms, 10s, 5m or 1h";
    case T_INT: return "a whole number";
    case T_BOOL: return "true or false";
    case T_LEVEL: return "debug, info, warn or error";
    case T_FLOAT: return "a number";
    case T_STR: return "a string";
    case T_URL: return "an http:// or https:// URL";
    }
    return "?";
}

/* Whether v is one of the '|'-separated words of choices. */
static bool is_choice(const char *choices, const char *v)
{
    size_t vl = strlen(v);

    for (const char *p = choices; *p;) {
        size_t n = strcspn(p, "|");
        if (n == vl && memcmp(p, v, n) == 0)
            return true;
        p += n + (p[n] == '|');
    }
    return false;
}

static int set_opt(struct cfg *c, const struct option *o, const char *v, enum cfg_source src,
                   char *err, size_t errlen)
{
    char *field = (char *)c + o->off;
    int rc = 0;

    switch (o->type) {
    case T_STR:
    case T_URL:
    case T_UPSTREAMS:
    case T_PRICES:
    case T_ADDR: {
        char *dup, *joined = NULL;
        if (o->type == T_PRICES) {
            struct cfg_price ps[CFG_MAX_PRICES];
            size_t n;
            if (cfg_parse_prices(v, ps, CFG_MAX_PRICES, &n, err, errlen) != 0)
                return CFG_EINVAL;
        }
        if (o->type == T_UPSTREAMS) {
            struct cfg_upstream us[CFG_MAX_UPSTREAMS];
            size_t n;
            if (cfg_parse_upstreams(v, us, CFG_MAX_UPSTREAMS, &n, err, errlen) != 0)
                return CFG_EINVAL;
            /* A list option given twice in one layer (a repeated flag)
             * accumulates; a higher layer replaces a lower one. */
            if (c->source[o - options] == src && src != CFG_SRC_DEFAULT && *(char **)field) {
                size_t jl = strlen(*(char **)field) + strlen(v) + 2;
                joined = malloc(jl);
                if (!joined) {
                    snprintf(err, errlen, "out of memory");
                    return CFG_EINVAL;
                }
                snprintf(joined, jl, "%s,%s", *(char **)field, v);
                if (cfg_parse_upstreams(joined, us, CFG_MAX_UPSTREAMS, &n, err, errlen) != 0) {
                    free(joined);
                    return CFG_EINVAL;
                }
                v = joined;
            }
        }
        if (o->type == T_ADDR) {
            struct sockaddr_storage ss;
            socklen_t len;
            rc = cfg_parse_addr(v, &ss, &len);
        }
        if (o->type == T_URL && *v != '\0')
            rc = parse_url(v, strlen(v));
        if (rc == 0 && (o->type == T_STR || o->type == T_URL) && *v == '\0' &&
            !(o->flags & O_OPTIONAL))
            rc = CFG_EINVAL;
        if (rc == 0 && choices_of(o) && !is_choice(choices_of(o), v))
            rc = CFG_EINVAL;
        if (rc)
            break;
        dup = strdup(v);
        free(joined);
        if (!dup) {
            snprintf(err, errlen, "out of memory");
            return CFG_EINVAL;
        }
        free(*(char **)field);
        *(char **)field = dup;
        /* An empty optional string means "not set". */
        if (*dup == '\0') {
            free(dup);
            *(char **)field = NULL;
        }
        break;
    }
    case T_SIZE: rc = parse_size(v, o->min, o->max, (size_t *)field); break;
    case T_DUR: rc = cfg_parse_duration(v, (long *)field); break;
    case T_INT: rc = parse_int(v, o->min, o->max, (int *)field); break;
    case T_FLOAT: rc = parse_float(v, (double)o->min, (double)o->max, (double *)field); break;
    case T_BOOL: rc = parse_bool(v, (bool *)field); break;
    case T_LEVEL:
        rc = CFG_EINVAL;
        for (int i = 0; i < 4; i++)
            if (strcmp(v, level_names[i]) == 0) {
                *(int *)field = i;
                rc = 0;
            }
        break;
    }
    if (rc) {
        char shown[256];

        cfg_url_redact(v, shown, sizeof(shown));
        if (o->flags & O_SECRET)
            snprintf(shown, sizeof(shown), "***");
        if (o->type == T_INT || o->type == T_FLOAT || (o->type == T_SIZE && o->max > 0))
            snprintf(err, errlen, "invalid value for %s: '%s' (expected %s from %ld to %ld)",
                     o->name, shown, expect(o->type), o->min, o->max);
        else if (choices_of(o))
            snprintf(err, errlen, "invalid value for %s: '%s' (expected one of %s)", o->name, shown,
                     choices_of(o));
        else
            snprintf(err, errlen, "invalid value for %s: '%s' (expected %s)", o->name, shown,
                     expect(o->type));
        return CFG_EINVAL;
    }
    c->source[o - options] = src;
    return 0;
}

int cfg_set(struct cfg *c, const char *name, const char *value, enum cfg_source src, char *err,
            size_t errlen)
{
    const struct option *o = find(name, strlen(name));

    if (!o) {
        snprintf(err, errlen, "unknown option '%s'", name);
        return CFG_EINVAL;
    }
    return set_opt(c, o, value, src, err, errlen);
}

int cfg_init(struct cfg *c)
{
    char err[256];

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].def &&
            set_opt(c, &options[i], options[i].def, CFG_SRC_DEFAULT, err, sizeof(err)) != 0)
            return CFG_EINVAL;
    return 0;
}

void cfg_fini(struct cfg *c)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        enum opt_type t = options[i].type;
        if (t == T_STR || t == T_URL || t == T_UPSTREAMS || t == T_PRICES || t == T_ADDR) {
            char **p = (char **)((char *)c + options[i].off);
            free(*p);
            *p = NULL;
        }
    }
    free(c->config_file);
    c->config_file = NULL;
}

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* The value after a key's '=' (v, NUL-terminated, not yet trimmed) without
 * its comment and blanks, unquoted. A '#' starts a comment where it begins
 * the value or follows a blank, so "1h # one hour" is "1h" while a '#' inside
 * a word (a URL's fragment) stays. A double-quoted value keeps its blanks and
 * '#'s; its closing quote is the first '"' followed only by blanks or a
 * comment. Returns the value, or NULL for an unterminated quote. */
static char *value_of(char *v)
{
    char *e;

    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '"') {
        for (char *q = strchr(v + 1, '"'); q; q = strchr(q + 1, '"')) {
            const char *after = q + 1;
            while (*after == ' ' || *after == '\t' || *after == '\n' || *after == '\r')
                after++;
            if (*after == '\0' || *after == '#') {
                *q = '\0';
                return v + 1;
            }
        }
        return NULL;
    }
    for (e = v; *e; e++)
        if (*e == '#' && (e == v || e[-1] == ' ' || e[-1] == '\t')) {
            *e = '\0';
            break;
        }
    return trim(v);
}

/* Whether setting o to v puts a secret into the file: a secret option, or a
 * URL with credentials in it. */
static bool holds_secret(const struct option *o, const char *v)
{
    if (*v == '\0')
        return false;
    if (o->flags & O_SECRET)
        return true;
    return (o->type == T_URL || o->type == T_UPSTREAMS) && cfg_url_redact(v, NULL, 0);
}

/* Reads "key = value" lines; '#' starts a comment (see value_of). A file
 * that holds a secret must be private to its owner, as the client keys file
 * must: anyone who can read it can spend the provider credits. */
static int load_file(struct cfg *c, const char *path, char *err, size_t errlen)
{
    char line[4096], msg[256];
    const char *secret = NULL;
    unsigned lineno = 0;
    FILE *f = fopen(path, "r");
    struct stat st;
    int rc = 0;

    if (!f) {
        snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return CFG_EIO;
    }
    while (fgets(line, sizeof(line), f)) {
        const struct option *o;
        char *k, *v, *eq;

        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            rc = CFG_EINVAL;
            break;
        }
        k = trim(line);
        if (*k == '\0' || *k == '#')
            continue;
        eq = strchr(k, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
            rc = CFG_EINVAL;
            break;
        }
        *eq = '\0';
        k = trim(k);
        if (!(v = value_of(eq + 1))) {
            snprintf(err, errlen, "%s:%u: %s: the quoted value has no closing '\"'", path, lineno,
                     k);
            rc = CFG_EINVAL;
            break;
        }
        if (cfg_set(c, k, v, CFG_SRC_FILE, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, msg);
            rc = CFG_EINVAL;
            break;
        }
        o = find(k, strlen(k));
        if (!secret && holds_secret(o, v))
            secret = o->name;
    }
    /* fstat on the open file: the mode checked is the mode of what was read. */
    if (rc == 0 && secret && fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
        snprintf(err, errlen,
                 "config file %s holds a secret (%s) but other users may access it (mode %03o): "
                 "run chmod 600 %s",
                 path, secret, (unsigned)(st.st_mode & 0777), path);
        rc = CFG_EINVAL;
    }
    fclose(f);
    if (rc == 0) {
        free(c->config_file);
        c->config_file = strdup(path);
    }
    return rc;
}

/* PARROT_MAX_BODY_SIZE -> max-body-size. Returns false if it does not fit. */
static bool env_to_name(const char *env, size_t len, char *out, size_t outlen)
{
    if (len >= outlen)
        return false;
    for (size_t i = 0; i < len; i++)
        out[i] = env[i] == '_' ? '-' : (char)tolower((unsigned char)env[i]);
    out[len] = '\0';
    return true;
}

static int load_env(struct cfg *c, char **envp, char *err, size_t errlen)
{
    char name[64];

    for (char **e = envp; e && *e; e++) {
        const char *eq;
        if (strncmp(*e, "PARROT_", 7) != 0)
            continue;
        eq = strchr(*e, '=');
        if (!eq)
            continue;
        if (strncmp(*e, "PARROT_CONFIG=", 14) == 0)
            continue;
        if (!env_to_name(*e + 7, (size_t)(eq - *e - 7), name, sizeof(name)) ||
            !find(name, strlen(name))) {
            snprintf(err, errlen, "unknown environment variable %.*s", (int)(eq - *e), *e);
            return CFG_EINVAL;
        }
        if (cfg_set(c, name, eq + 1, CFG_SRC_ENV, err, errlen) != 0)
            return CFG_EINVAL;
    }
    return 0;
}

/* Rules that span options, checked once every layer is in, so that a bad
 * combination is refused like a bad value (before anything starts). */
static int check_combination(const struct cfg *c, char *err, size_t errlen)
{
    struct cfg_redis r;

    if (c->redis && cfg_parse_redis(c->redis, &r, err, errlen) != 0)
        return CFG_EINVAL;
    if (c->redis && !c->cache) {
        snprintf(err, errlen, "redis shares the cache between replicas: it needs cache = true");
        return CFG_EINVAL;
    }
    for (const char *p = c->redis_namespace; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p)) {
            snprintf(err, errlen, "redis-namespace may hold letters, digits, '.', '_' and '-'");
            return CFG_EINVAL;
        }
    if (!*c->redis_namespace || strlen(c->redis_namespace) > 64) {
        snprintf(err, errlen, "redis-namespace must be 1 to 64 characters");
        return CFG_EINVAL;
    }
    if (strcmp(c->embedder, "openai") == 0 && !c->embed_url) {
        snprintf(err, errlen,
                 "embedder=openai needs embed-url, the embeddings base URL including /v1 "
                 "(e.g. https://api.openai.com/v1)");
        return CFG_EINVAL;
    }
    return 0;
}

int cfg_flag_arity(const char *arg, const char *next)
{
    const struct option *o;
    bool ignored;

    if (strncmp(arg, "--", 2) != 0 || strchr(arg, '='))
        return 1;
    if (strcmp(arg + 2, "config") == 0)
        return next ? 2 : 1;
    o = find(arg + 2, strlen(arg + 2));
    if (!o || !next)
        return 1;
    /* As cfg_load reads them: a bool takes the next word only when it is one. */
    if (o->type == T_BOOL)
        return parse_bool(next, &ignored) == 0 ? 2 : 1;
    return 2;
}

int cfg_load(struct cfg *c, int argc, char **argv, char **envp, enum cfg_action *action, char *err,
             size_t errlen)
{
    const char *file = NULL;
    int rc;

    *action = CFG_RUN;
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, "PARROT_CONFIG=", 14) == 0 && (*e)[14])
            file = *e + 14;
    /* --config is read first so that flags given before it still win. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--config needs a file name");
                return CFG_EINVAL;
            }
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
    }
    if (file && (rc = load_file(c, file, err, errlen)) != 0)
        return rc;
    if ((rc = load_env(c, envp, err, errlen)) != 0)
        return rc;

    for (int i = 1; i < argc && argv[i]; i++) {
        const char *a = argv[i], *val = NULL, *eq;
        const struct option *o;
        size_t nl;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *action = CFG_HELP;
            continue;
        }
        if (strcmp(a, "--print-config") == 0) {
            *action = CFG_PRINT;
            continue;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            *action = CFG_VERSION;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return CFG_EINVAL;
        }
        a += 2;
        eq = strchr(a, '=');
        nl = eq ? (size_t)(eq - a) : strlen(a);
        if (nl == 6 && memcmp(a, "config", 6) == 0) {
            i += eq ? 0 : 1;
            continue;
        }
        o = find(a, nl);
        if (!o) {
            snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nl, a);
            return CFG_EINVAL;
        }
        if (o->flags & O_SECRET) {
            char env[64];
            env_suffix(o->name, env, sizeof(env));
            snprintf(err, errlen,
                     "--%s is a secret and is not accepted on the command line; set "
                     "PARROT_%s or put it in the config file",
                     o->name, env);
            return CFG_EINVAL;
        }
        if (eq) {
            val = eq + 1;
        } else if (o->type == T_BOOL) {
            /* "--cache false" as well as "--insecure-open" alone. */
            bool ignored;
            val = (i + 1 < argc && argv[i + 1] && parse_bool(argv[i + 1], &ignored) == 0)
                      ? argv[++i]
                      : "true";
        } else if (i + 1 < argc)
            val = argv[++i];
        else {
            snprintf(err, errlen, "--%s needs a value (%s)", o->name, expect(o->type));
            return CFG_EINVAL;
        }
        if (set_opt(c, o, val, CFG_SRC_FLAG, err, errlen) != 0)
            return CFG_EINVAL;
    }
    return check_combination(c, err, errlen);
}

/* n with the largest unit that divides it exactly, e.g. 3600000 ms as "1h":
 * what a person would have written, and what the parsers read back. */
static void with_unit(unsigned long long n, const char *const *units, const unsigned long long *per,
                      size_t nunits, char *buf, size_t len)
{
    size_t u = 0;

    for (size_t i = 1; i < nunits && n; i++)
        if (n % per[i] == 0)
            u = i;
    snprintf(buf, len, "%llu%s", n / per[u], n ? units[u] : "");
}

/* o's value in c as a config file spells it: a string option's own text
 * (NULL when unset), anything else formatted into buf. */
static const char *value_text(const struct cfg *c, const struct option *o, char *buf, size_t len)
{
    static const char *const sizes[] = {"", "k", "m", "g"};
    static const unsigned long long size_per[] = {1, 1ull << 10, 1ull << 20, 1ull << 30};
    static const char *const durs[] = {"ms", "s", "m", "h"};
    static const unsigned long long dur_per[] = {1, 1000, 60000, 3600000};
    const char *field = (const char *)c + o->off;

    switch (o->type) {
    case T_STR:
    case T_URL:
    case T_UPSTREAMS:
    case T_PRICES:
    case T_ADDR: return *(char *const *)field;
    case T_SIZE: with_unit(*(const size_t *)field, sizes, size_per, 4, buf, len); break;
    case T_DUR:
        with_unit((unsigned long long)*(const long *)field, durs, dur_per, 4, buf, len);
        break;
    case T_INT: snprintf(buf, len, "%d", *(const int *)field); break;
    case T_BOOL: snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false"); break;
    case T_LEVEL: snprintf(buf, len, "%s", level_names[*(const int *)field]); break;
    case T_FLOAT: {
        /* The fewest digits that read back as the same double. */
        double v = *(const double *)field;
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
        break;
    }
    }
    return buf;
}

/* One option as a config-file line, its source in a trailing comment. */
static void print_option(const struct cfg *c, const struct option *o, FILE *out)
{
    const char *src = source_names[c->source[o - options]];
    char buf[64], *shown;
    const char *v = value_text(c, o, buf, sizeof(buf));
    size_t vl;

    if (!v) {
        fprintf(out, "%s =  # %s (unset)\n", o->name, src);
        return;
    }
    /* Printing a secret would put it on a terminal, in a ticket or in a
     * shell history; the line is left commented out for the same reason. */
    if (o->flags & O_SECRET) {
        fprintf(out, "# %s = ********  # %s (set; a secret, not printed)\n", o->name, src);
        return;
    }
    if (cfg_url_redact(v, NULL, 0)) {
        shown = cfg_url_redact_dup(v);
        fprintf(out, "# %s = %s  # %s (holds credentials, not printed)\n", o->name,
                shown ? shown : "***", src);
        free(shown);
        return;
    }
    if (strpbrk(v, "\r\n")) {
        fprintf(out, "# %s: the %s value holds a line break, which a config file cannot\n", o->name,
                src);
        return;
    }
    vl = strlen(v);
    /* Quoted when the bare value would not read back the same. */
    if (v[0] == ' ' || v[0] == '\t' || v[0] == '"' || strchr(v, '#') ||
        (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')))
        fprintf(out, "%s = \"%s\"  # %s\n", o->name, v, src);
    else
        fprintf(out, "%s = %s  # %s\n", o->name, v, src);
}

void cfg_print(const struct cfg *c, FILE *out)
{
    fprintf(out,
            "# parrot %s: the configuration in effect, as a config file (--config).\n"
            "# The comment after each value says where it came from: default, file, env\n"
            "# or flag. Secrets and URLs holding credentials are commented out.\n",
            cfg_version());
    if (c->config_file)
        fprintf(out, "# config file: %s\n", c->config_file);
    for (size_t i = 0; i < N_OPTIONS; i++)
        print_option(c, &options[i], out);
}

const char *cfg_version(void)
{
    return PARROT_VERSION;
}

const char *cfg_git_rev(void)
{
#ifdef PARROT_GIT_REV
    return PARROT_GIT_REV;
#else
    return "";
#endif
}

void cfg_print_version(FILE *out)
{
    /* The version stays the last word: `make deb` reads it with awk. */
    if (*cfg_git_rev())
        fprintf(out, "parrot (git %s) %s\n", cfg_git_rev(), cfg_version());
    else
        fprintf(out, "parrot %s\n", cfg_version());
}

void cfg_usage(FILE *out, const char *argv0)
{
    fprintf(out,
            "parrot %s: a semantic caching reverse proxy for OpenAI-compatible APIs.\n\n"
            "usage: %s [--config FILE] [--OPTION VALUE ...] [--print-config]\n"
            "       %s wal check [--data-dir DIR] [--config FILE]\n"
            "       %s wal repair [--data-dir DIR] [--config FILE]\n"
            "       %s replay [--json] [--OPTION VALUE ...] FILE...\n"
            "       %s --version | --help\n\n"
            "  wal check    check the write-ahead log and the snapshot in data-dir (read-only)\n"
            "  wal repair   keep the log's valid records before any damage (the original is\n"
            "               kept as a backup); refused while a parrot uses data-dir\n"
            "  replay       run request logs (JSON Lines) through an in-memory cache with these\n"
            "               options and report what it would have saved (docs/audit.md)\n"
            "  --print-config  print the configuration in effect as a config file\n"
            "  --version, -V   print the version\n\n"
            "Each option is also read from the config file (\"name = value\", '#' starts a\n"
            "comment) and from the environment (PARROT_NAME); flags win over the environment,\n"
            "which wins over the file. PARROT_CONFIG names a config file too. A config file\n"
            "that holds a secret must be private (chmod 600).\n\noptions:\n",
            cfg_version(), argv0, argv0, argv0, argv0, argv0);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        char env[64];

        env_suffix(o->name, env, sizeof(env));
        if (o->flags & O_SECRET)
            fprintf(out, "  %-22s env PARROT_%s or file only\n", o->name, env);
        else
            fprintf(out, "  --%-20s env PARROT_%s\n", o->name, env);
        fprintf(out, "      %s", o->help);
        if (o->def)
            fprintf(out, " [default: %s]", o->def);
        fputc('\n', out);
    }
}
