/* assemble.c - the cache from the options; see assemble.h. */
#include "proxy/assemble.h"

#include "cache/cache.h"
#include "cache/match/embed.h"
#include "cache/replica/replica.h"
#include "config/config.h"
#include "proxy/log.h"
#include "proxy/openai/stored.h"
#include "upstream/embedclient.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Default threshold of the openai embedder. Not calibrated on the dev sets
 * (that needs the real model): paraphrases typically score 0.85-0.95 with
 * OpenAI's text-embedding-3-small, so 0.90 keeps to the safe end and leaves
 * the rest to the hit verifier. See docs/embedders.md. */
#define OPENAI_THRESHOLD 0.90f

/* What building the embedder decided. */
struct emb_built {
    unsigned dim;
    char name[200]; /* kind, model and dimension: vectors of two names never meet */
    float threshold;
};

/* The openai embedder from c: its client, and its dimension, asked of the
 * endpoint when not configured. Logs why it cannot start. */
static int remote_new(const struct cfg *c, struct embed_client **ec, struct emb_built *b)
{
    struct embed_client_opts o = {.url = c->embed_url,
                                  .model = c->embed_model,
                                  .key = c->embed_key,
                                  .timeout_ms = c->embed_timeout_ms,
                                  .dim = (unsigned)c->embed_dim,
                                  .batch = (unsigned)c->embed_batch,
                                  .breaker_failures = (unsigned)c->breaker_failures,
                                  .breaker_cooldown_ms = c->breaker_cooldown_ms};
    const char *probe = "parrot";
    enum embed_result r;
    char msg[160];
    int rc;

    if (!c->embed_url) {
        log_msg(LOG_ERROR, "embedder=openai needs embed-url", "e.g. https://api.openai.com/v1");
        return -EINVAL;
    }
    if (c->embed_timeout_ms <= 0) {
        log_msg(LOG_ERROR, "embed-timeout must be above 0", NULL);
        return -EINVAL;
    }
    if ((rc = embed_client_new(&o, ec)) != 0)
        return rc;
    if (!o.dim && embed_client_embed_wait(*ec, &probe, 1, NULL, &r) != 1) {
        snprintf(msg, sizeof(msg), "%s: %s; set embed-dim to start without asking", c->embed_url,
                 embed_result_name(r));
        log_msg(LOG_ERROR, "cannot learn the embedding dimension", msg);
        return -EHOSTUNREACH;
    }
    b->dim = embed_client_dim(*ec);
    snprintf(b->name, sizeof(b->name), "openai:%.120s:%u", c->embed_model, b->dim);
    /* The name is a metric label value: keep it free of quoting. */
    for (char *p = b->name; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < ' ')
            *p = '_';
    b->threshold = OPENAI_THRESHOLD;
    return 0;
}

/* The embedder c names. Logs why it cannot start. */
static int embedder_new(const struct cfg *c, struct embedder **emb, struct embed_client **ec,
                        struct emb_built *b)
{
    char err[256] = "";
    struct embed_builtin_opts eo = {
        .word_vectors = c->word_vectors, .wordnet = c->wordnet, .err = err, .err_len = sizeof(err)};
    struct log_rec lr;
    int rc;

    if (c->embedder && strcmp(c->embedder, "openai") == 0)
        return remote_new(c, ec, b);
    if (c->embedder && strcmp(c->embedder, "builtin") != 0) {
        log_msg(LOG_ERROR, "unknown embedder (builtin or openai)", c->embedder);
        return -EINVAL;
    }
    if ((rc = embed_builtin_new_opts(&eo, emb)) != 0) {
        log_msg(LOG_ERROR, "word-vector or WordNet table rejected", err);
        return rc;
    }
    /* Which mode the embedder is in: with a table it finds synonyms. */
    log_begin(&lr, LOG_INFO, "embedder");
    log_str(&lr, "name", embedder_name(*emb));
    log_int(&lr, "dim", embedder_dim(*emb));
    log_str(&lr, "word_vectors",
            embedder_word_vectors(*emb) ? c->word_vectors : "none (lexical features only)");
    log_str(&lr, "wordnet",
            embedder_wordnet(*emb) ? c->wordnet : "none (the verifier runs without WordNet)");
    log_end(&lr);
    b->dim = embedder_dim(*emb);
    snprintf(b->name, sizeof(b->name), "%s:%u", embedder_name(*emb), b->dim);
    b->threshold = embedder_threshold(*emb);
    return 0;
}

/* The cache service's reports, into the log. */
static void cache_log(enum cache_log level, const char *msg, const char *detail)
{
    static const enum log_level map[] = {LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR};

    log_msg(map[level], msg, detail);
}

int assemble_cache(const struct cfg *c, struct cache **out)
{
    struct emb_built b = {0};
    struct embedder *emb = NULL;
    struct embed_client *ec = NULL;
    struct cache_opts o = {0};
    int rc;

    if ((rc = embedder_new(c, &emb, &ec, &b)) != 0) {
        embedder_free(emb);
        embed_client_free(ec);
        return rc;
    }
    o.codec = &stored_codec;
    o.emb = emb;
    o.ec = ec;
    o.embedder_name = b.name;
    o.threshold = c->similarity_threshold > 0 ? (float)c->similarity_threshold : b.threshold;
    o.verifier = c->verifier;
    o.max_wrong_rate = c->max_wrong_hit_rate;
    o.audit_min = BUDGET_MIN_AUDITS;
    o.max_memory = c->cache_max_memory;
    o.snap_interval = c->snapshot_interval_ms;
    o.snap_wal_size = c->snapshot_wal_size;
    o.snap_on_shutdown = c->snapshot_on_shutdown;
    o.log = cache_log;
    return cache_new(&o, out);
}

int assemble_replica(const struct cfg *c, struct cache *cache, struct replica **out)
{
    struct replica_opts o = {0};
    struct cfg_redis r;
    char err[256], state[4096];
    int rc;

    if (cfg_parse_redis(c->redis, &r, err, sizeof(err)) != 0) {
        log_msg(LOG_ERROR, "redis", err); /* cfg_load checked it already */
        return -EINVAL;
    }
    o.host = r.host;
    o.port = r.port;
    o.user = r.user;
    o.password = c->redis_password;
    o.db = r.db;
    o.ns = c->redis_namespace;
    /* The stream position is only worth keeping beside a log that holds
     * what was applied up to it. */
    if (c->persist) {
        snprintf(state, sizeof(state), "%s/replica-position", c->data_dir);
        o.state_file = state;
    }
    o.queue_max = (size_t)c->redis_queue;
    o.stream_maxlen = c->redis_stream_maxlen;
    o.stream_max_age = c->redis_stream_age_ms;
    o.flight_wait = c->redis_flight_wait_ms;
    o.cache = cache;
    o.log = cache_log;
    if ((rc = replica_start(&o, out)) != 0)
        return rc;
    cache_set_change_hook(cache, replica_publish, *out);
    return 0;
}
