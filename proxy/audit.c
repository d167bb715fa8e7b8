/* audit.c - sampled audits of semantic hits; see audit.h and docs/audit.md.
 *
 * A job's life: audit_offer (a worker) queues it NEW; the audit thread
 * rewrites the body (non-streamed), submits it to the pool (SENT, holding
 * the mutex across the submit so that on_done waits for it) and goes on;
 * the pool's callbacks fill the response and on_done marks it DONE; the
 * audit thread judges it (JUDGING), records the verdict and frees it.
 * Every job sits on one list under mu from the offer to the end, which
 * bounds them by max_inflight and lets audit_free cancel what is in flight.
 */
#include "proxy/audit.h"

#include "cache/base/beta.h"
#include "cache/base/buf.h"
#include "cache/base/clock.h"
#include "cache/base/rand.h"
#include "cache/base/thread.h"
#include "cache/match/judge.h"
#include "proxy/chat.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/openai/canon.h"
#include "proxy/openai/completion.h"
#include "upstream/upstream.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ANSWER_MAX (4u << 20) /* a fresh answer larger than this is not judged */
#define HEADERS    7
#define TEXT_KEPT  1000 /* bytes of each text a listed disagreement keeps */
#define PART_HEX   16   /* partition hash digits shown, as in the top-misses table */
#define REQ_ID_LEN 160  /* the request id (at most 128 bytes) and "-audit" */

const char *const audit_drop_names[AUDIT_DROPS] = {"busy", "provider", "failed", "gone"};

enum jstate { J_NEW, J_SENT, J_DONE, J_JUDGING };

struct job {
    struct job *next;
    struct audit *a;
    enum jstate state;
    char *body; /* the client's request, then the audit's */
    size_t len;
    struct buf heads; /* "Name: value\0" lines */
    char req_id[REQ_ID_LEN];
    uint8_t partition[CACHE_KEY_LEN], exact[CACHE_KEY_LEN];
    char *text;
    size_t text_len;
    uint64_t entry;
    float sim;
    /* Filled on the pool's thread while SENT; read by the audit thread
     * after on_done marked it DONE under mu. */
    struct up_xfer *xfer; /* under mu; NULL once on_done ran */
    long status;
    int err;
    struct buf resp;
    bool too_big;
};

/* A disagreement, as GET /admin/audits lists it. */
struct recent {
    int64_t ts;
    uint64_t entry;
    char partition[PART_HEX + 1];
    float sim, score, threshold;
    const char *why;                 /* static */
    char *question, *cached, *fresh; /* NULL unless log_prompts */
};

struct audit {
    struct audit_opts o;
    struct cache *cache;
    pthread_mutex_t mu; /* jobs, njobs, stop */
    pthread_cond_t cv;
    struct job *jobs;
    unsigned njobs;
    bool stop, thread_on;
    pthread_t thread;
    atomic_uint_fast64_t sampled, sent, same, different;
    atomic_uint_fast64_t dropped[AUDIT_DROPS];
    pthread_mutex_t recent_mu; /* the ring */
    struct recent ring[AUDIT_RECENT];
    size_t nrecent, next;
};

static void *audit_main(void *arg);

int audit_new(const struct audit_opts *o, struct audit **out)
{
    struct audit *a = calloc(1, sizeof(*a));

    if (!a)
        return -ENOMEM;
    a->o = *o;
    a->cache = chat_cache(o->chat);
    if (pthread_mutex_init(&a->mu, NULL) != 0)
        goto fail_a;
    if (pthread_cond_init(&a->cv, NULL) != 0)
        goto fail_mu;
    if (pthread_mutex_init(&a->recent_mu, NULL) != 0)
        goto fail_cv;
    if (o->rate > 0) {
        if (thread_start(&a->thread, audit_main, a, "parrot-audit") != 0)
            goto fail_recent;
        a->thread_on = true;
    }
    *out = a;
    return 0;
fail_recent:
    pthread_mutex_destroy(&a->recent_mu);
fail_cv:
    pthread_cond_destroy(&a->cv);
fail_mu:
    pthread_mutex_destroy(&a->mu);
fail_a:
    free(a);
    return -ENOMEM;
}

static void job_free(struct job *j)
{
    free(j->body);
    free(j->text);
    buf_free(&j->heads);
    buf_free(&j->resp);
    free(j);
}

static void recent_fini(struct recent *r)
{
    free(r->question);
    free(r->cached);
    free(r->fresh);
}

void audit_free(struct audit *a)
{
    if (!a)
        return;
    if (a->thread_on) {
        pthread_mutex_lock(&a->mu);
        a->stop = true;
        for (struct job *j = a->jobs; j; j = j->next)
            if (j->xfer)
                up_xfer_cancel(j->xfer);
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
    }
    for (size_t i = 0; i < a->nrecent; i++)
        recent_fini(&a->ring[i]);
    pthread_mutex_destroy(&a->recent_mu);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ---- offering (HTTP workers) ---- */

static bool coin(double rate)
{
    /* 53 random bits as a double in [0, 1). */
    return rate >= 1 || (double)(rand_u64() >> 11) * 0x1p-53 < rate;
}

static int add_head(struct buf *b, const char *name, const char *value)
{
    int rc = 0;

    if (!value)
        return 0;
    rc |= buf_append(b, name, strlen(name), ANSWER_MAX);
    rc |= buf_append(b, ": ", 2, ANSWER_MAX);
    rc |= buf_append(b, value, strlen(value) + 1, ANSWER_MAX);
    return rc;
}

/* The job for h, or NULL when out of memory. */
static struct job *job_new(struct audit *a, const struct audit_hit *h)
{
    struct job *j = calloc(1, sizeof(*j));
    int rc = 0;

    if (!j)
        return NULL;
    j->a = a;
    j->body = malloc(h->len ? h->len : 1);
    j->text = malloc(h->text_len + 1);
    if (!j->body || !j->text)
        goto fail;
    memcpy(j->body, h->body, h->len);
    j->len = h->len;
    memcpy(j->text, h->text, h->text_len);
    j->text[h->text_len] = '\0';
    j->text_len = h->text_len;
    /* The tenant's own credentials, so the provider answers as it would
     * have answered the client; the marks tell the provider's logs (and the
     * test's fake) that this call is parrot's. */
    snprintf(j->req_id, sizeof(j->req_id), "%s-audit", h->request_id ? h->request_id : "req");
    rc |= add_head(&j->heads, "Authorization", h->authorization);
    rc |= add_head(&j->heads, "OpenAI-Organization", h->organization);
    rc |= add_head(&j->heads, "OpenAI-Project", h->project);
    rc |= add_head(&j->heads, "Content-Type", "application/json");
    rc |= add_head(&j->heads, "x-request-id", j->req_id);
    rc |= add_head(&j->heads, "x-parrot-audit", "1");
    rc |= buf_append(&j->heads, "Expect:", 8, ANSWER_MAX); /* no 100-continue */
    if (rc)
        goto fail;
    memcpy(j->partition, h->partition, CACHE_KEY_LEN);
    memcpy(j->exact, h->exact, CACHE_KEY_LEN);
    j->entry = h->entry;
    j->sim = h->sim;
    return j;
fail:
    job_free(j);
    return NULL;
}

void audit_offer(struct audit *a, const struct audit_hit *h)
{
    struct job *j;

    if (!a || !a->thread_on || !coin(a->o.rate))
        return;
    atomic_fetch_add(&a->sampled, 1);
    /* A provider known to be down would only fail the audit. */
    if (!up_pool_ready(a->o.pool)) {
        atomic_fetch_add(&a->dropped[AUDIT_DROP_PROVIDER], 1);
        return;
    }
    pthread_mutex_lock(&a->mu);
    if (a->stop || a->njobs >= a->o.max_inflight) {
        pthread_mutex_unlock(&a->mu);
        atomic_fetch_add(&a->dropped[AUDIT_DROP_BUSY], 1);
        return;
    }
    a->njobs++; /* the slot is taken before the copy, outside the lock */
    pthread_mutex_unlock(&a->mu);
    j = job_new(a, h);
    pthread_mutex_lock(&a->mu);
    if (!j) {
        a->njobs--;
    } else {
        j->next = a->jobs;
        a->jobs = j;
        pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    if (!j)
        atomic_fetch_add(&a->dropped[AUDIT_DROP_BUSY], 1);
}

/* ---- the provider call (pool thread) ---- */

static void on_head(void *ud, const struct up_head *h)
{
    ((struct job *)ud)->status = h->status;
}

static int on_body(void *ud, const char *p, size_t n)
{
    struct job *j = ud;

    if (!j->too_big && buf_append(&j->resp, p, n, ANSWER_MAX) != 0)
        j->too_big = true;
    return 0;
}

static void on_done(void *ud, int err, const char *detail, const struct up_result *r)
{
    struct job *j = ud;
    struct audit *a = j->a;

    (void)detail;
    (void)r;
    pthread_mutex_lock(&a->mu);
    j->err = err;
    j->xfer = NULL;
    j->state = J_DONE;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static const struct up_handler handler = {on_head, on_body, on_done};

/* ---- the audit thread ---- */

/* The client's body made non-streamed (an audit reads one JSON answer).
 * 0 or -1 when it does not parse. */
static int rewrite_body(struct job *j)
{
    cJSON *doc = cJSON_ParseWithLength(j->body, j->len);
    char *out;

    if (!cJSON_IsObject(doc))
        goto fail;
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "stream");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "stream_options");
    if (!cJSON_AddFalseToObject(doc, "stream"))
        goto fail;
    out = cJSON_PrintUnformatted(doc);
    if (!out)
        goto fail;
    cJSON_Delete(doc);
    free(j->body);
    j->body = out;
    j->len = strlen(out);
    return 0;
fail:
    cJSON_Delete(doc);
    return -1;
}

/* Submit j, under mu (so that on_done, which takes mu, sees j->xfer set).
 * Returns 0, or -1 when it cannot go (then j is still the caller's). */
static int submit(struct audit *a, struct job *j)
{
    const char *lines[HEADERS];
    size_t n = 0;
    struct up_req req;

    for (size_t off = 0; off < j->heads.len && n < HEADERS; n++) {
        lines[n] = j->heads.p + off;
        off += strlen(lines[n]) + 1;
    }
    req = (struct up_req){.method = "POST",
                          .path = "/chat/completions",
                          .headers = lines,
                          .nheaders = n,
                          .body = j->body,
                          .body_len = j->len,
                          .client_fd = -1};
    j->state = J_SENT;
    if (up_pool_submit(a->o.pool, &req, &handler, j, &j->xfer) != 0)
        return -1;
    atomic_fetch_add(&a->sent, 1);
    metrics_upstream(a->o.met, MU_AUDIT);
    return 0;
}

static void unlink_job(struct audit *a, struct job *j)
{
    for (struct job **pp = &a->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            a->njobs--;
            return;
        }
}

static char *kept(const char *s)
{
    return s ? strndup(s, TEXT_KEPT) : NULL;
}

static void remember(struct audit *a, const struct job *j, const char *partition,
                     const struct judge_result *jr, float threshold, const char *cached,
                     const char *fresh)
{
    struct recent r = {.ts = clock_wall_ms(),
                       .entry = j->entry,
                       .sim = j->sim,
                       .score = jr->score,
                       .threshold = threshold,
                       .why = jr->why};

    memcpy(r.partition, partition, PART_HEX);
    r.partition[PART_HEX] = '\0';
    if (a->o.log_prompts) {
        r.question = kept(j->text);
        r.cached = kept(cached);
        r.fresh = kept(fresh);
    }
    pthread_mutex_lock(&a->recent_mu);
    if (a->nrecent == AUDIT_RECENT)
        recent_fini(&a->ring[a->next]);
    else
        a->nrecent++;
    a->ring[a->next] = r;
    a->next = (a->next + 1) % AUDIT_RECENT;
    pthread_mutex_unlock(&a->recent_mu);
}

static void log_verdict(struct audit *a, const struct job *j, const char *partition,
                        const struct judge_result *jr, const struct cache_audit_outcome *out,
                        const char *cached, const char *fresh)
{
    struct log_rec r;
    char id[17];

    snprintf(id, sizeof(id), "%016" PRIx64, j->entry);
    log_begin(&r, LOG_INFO, jr->same ? "audit agreed" : "audit disagreement");
    log_str(&r, "id", j->req_id);
    log_str(&r, "entry", id);
    log_str(&r, "partition", partition);
    log_num(&r, "similarity", j->sim);
    log_num(&r, "score", jr->score);
    log_str(&r, "why", jr->why);
    log_bool(&r, "disputed", out->disputed);
    if (out->tracked) {
        log_num(&r, "threshold", out->now.threshold);
        log_int(&r, "audits", (long long)out->now.audits);
        log_int(&r, "wrong", (long long)out->now.wrong);
    }
    if (a->o.log_prompts) {
        log_str(&r, "question", j->text);
        log_str(&r, "cached", cached);
        log_str(&r, "fresh", fresh);
    }
    log_end(&r);
}

static void drop(struct audit *a, const struct job *j, enum audit_drop why)
{
    struct log_rec r;

    atomic_fetch_add(&a->dropped[why], 1);
    if (!log_enabled(LOG_DEBUG))
        return;
    log_begin(&r, LOG_DEBUG, "audit dropped");
    log_str(&r, "id", j->req_id);
    log_str(&r, "why", audit_drop_names[why]);
    log_int(&r, "status", j->status);
    log_end(&r);
}

/* Judge a finished audit and record its verdict. */
static void finish(struct audit *a, struct job *j)
{
    cJSON *fresh = NULL, *old = NULL;
    struct cache_entry *e = NULL;
    struct cache_entry_info in;
    struct cache_audit_outcome out;
    struct judge_result jr;
    const char *fa, *ca;
    char hex[2 * CACHE_KEY_LEN + 1];

    if (j->err != UP_OK || j->status != 200 || j->too_big ||
        !(fresh = cJSON_ParseWithLength(j->resp.p, j->resp.len)) || !(fa = cmpl_content(fresh))) {
        drop(a, j, AUDIT_DROP_FAILED);
        goto done;
    }
    /* Evicted, expired or deleted meanwhile: nothing left to judge. */
    if (!(e = cache_get_id(a->cache, j->entry)) ||
        !(old = cmpl_rendered_doc(cache_entry_payload(e))) || !(ca = cmpl_content(old))) {
        drop(a, j, AUDIT_DROP_GONE);
        goto done;
    }
    judge_answers(ca, strlen(ca), fa, strlen(fa), cache_verify_tables(a->cache), &jr);
    cache_entry_describe(e, &in);
    cache_audit_record(a->cache, in.partition, in.exact, in.id, !jr.same, &out);
    canon_hex(in.partition, CACHE_KEY_LEN, hex);
    hex[PART_HEX] = '\0';
    log_verdict(a, j, hex, &jr, &out, ca, fa);
    if (!jr.same) {
        struct cache_query q = {.partition = j->partition,
                                .exact = j->exact,
                                .text = j->text,
                                .text_len = j->text_len,
                                .max_age = -1};

        remember(a, j, hex, &jr, out.tracked ? out.now.threshold : 0, ca, fa);
        /* The question deserves its own answer; the store owns the doc. */
        chat_store_fresh(a->o.chat, &q, fresh, clock_wall_ms());
        fresh = NULL;
        cache_query_fini(&q);
    }
    /* Last: whoever reads the counter finds everything else done. */
    atomic_fetch_add(jr.same ? &a->same : &a->different, 1);
done:
    cJSON_Delete(fresh);
    cJSON_Delete(old);
    cache_entry_unref(e);
}

static struct job *next_ready(struct audit *a)
{
    for (struct job *j = a->jobs; j; j = j->next)
        if (j->state == J_NEW || j->state == J_DONE)
            return j;
    return NULL;
}

static void *audit_main(void *arg)
{
    struct audit *a = arg;

    pthread_mutex_lock(&a->mu);
    for (;;) {
        struct job *j = next_ready(a);

        if (!j) {
            if (a->stop && !a->jobs)
                break;
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        if (j->state == J_NEW) {
            /* The rewrite is cheap next to the provider call; held under
             * mu only so that submit() and on_done() are ordered. */
            if (!a->stop && rewrite_body(j) == 0 && submit(a, j) == 0)
                continue;
            drop(a, j, AUDIT_DROP_FAILED);
            unlink_job(a, j);
            job_free(j);
            continue;
        }
        /* J_DONE: the pool is finished with it. It counts as in flight
         * until judged, so a reader that sees none in flight sees every
         * verdict recorded. */
        j->state = J_JUDGING;
        pthread_mutex_unlock(&a->mu);
        finish(a, j);
        pthread_mutex_lock(&a->mu);
        unlink_job(a, j);
        job_free(j);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* ---- reading ---- */

static int add_num(cJSON *o, const char *name, double v)
{
    return cJSON_AddNumberToObject(o, name, v) ? 0 : -1;
}

/* A threshold as configured (0.88, not the float's 0.8799999952). */
static int add_threshold(cJSON *o, const char *name, float t)
{
    return add_num(o, name, round((double)t * 1e4) / 1e4);
}

void audit_get_stats(struct audit *a, struct audit_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!a)
        return;
    st->rate = a->o.rate;
    st->max_inflight = a->o.max_inflight;
    st->sampled = atomic_load(&a->sampled);
    st->sent = atomic_load(&a->sent);
    st->same = atomic_load(&a->same);
    st->different = atomic_load(&a->different);
    for (int i = 0; i < AUDIT_DROPS; i++)
        st->dropped[i] = atomic_load(&a->dropped[i]);
    pthread_mutex_lock(&a->mu);
    st->inflight = a->njobs;
    pthread_mutex_unlock(&a->mu);
}

int audit_recent_json(struct audit *a, cJSON *obj, const char *name)
{
    cJSON *arr = cJSON_AddArrayToObject(obj, name);
    int rc = arr ? 0 : -ENOMEM;

    if (!a || rc)
        return rc;
    pthread_mutex_lock(&a->recent_mu);
    for (size_t k = 0; k < a->nrecent && rc == 0; k++) {
        const struct recent *r = &a->ring[(a->next + AUDIT_RECENT - 1 - k) % AUDIT_RECENT];
        cJSON *o = cJSON_CreateObject();
        char id[17];

        snprintf(id, sizeof(id), "%016" PRIx64, r->entry);
        if (!o || !cJSON_AddItemToArray(arr, o) ||
            !cJSON_AddNumberToObject(o, "ts", (double)r->ts) ||
            !cJSON_AddStringToObject(o, "entry", id) ||
            !cJSON_AddStringToObject(o, "partition", r->partition) ||
            !cJSON_AddNumberToObject(o, "similarity", r->sim) ||
            !cJSON_AddNumberToObject(o, "score", r->score) ||
            !cJSON_AddStringToObject(o, "why", r->why) ||
            add_threshold(o, "threshold", r->threshold) != 0) {
            rc = -ENOMEM;
            break;
        }
        if (r->question && (!cJSON_AddStringToObject(o, "question", r->question) ||
                            !cJSON_AddStringToObject(o, "cached", r->cached ? r->cached : "") ||
                            !cJSON_AddStringToObject(o, "fresh", r->fresh ? r->fresh : "")))
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&a->recent_mu);
    return rc;
}

/* k of n as an estimate and its bound. */
static int add_rate(cJSON *o, uint64_t k, uint64_t n)
{
    int rc = add_num(o, "audits", (double)n);

    rc |= add_num(o, "wrong", (double)k);
    rc |= add_num(o, "wrong_hit_rate", n ? (double)k / (double)n : 0);
    rc |= add_num(o, "wrong_hit_rate_upper", beta_cp_upper(k, n, BUDGET_CONF));
    return rc;
}

int audit_summary_json(struct audit *a, struct cache *c, double max_rate, cJSON *obj)
{
    struct budget_part parts[AUDIT_PARTS_SHOWN];
    struct audit_stats st;
    struct cache_stats cs;
    cJSON *drops, *arr;
    size_t n;
    int rc = 0;

    audit_get_stats(a, &st);
    cache_get_stats(c, &cs);
    rc |= add_num(obj, "rate", st.rate);
    rc |= add_num(obj, "sampled", (double)st.sampled);
    rc |= add_num(obj, "sent", (double)st.sent);
    rc |= add_num(obj, "same", (double)st.same);
    rc |= add_num(obj, "different", (double)st.different);
    rc |= add_num(obj, "inflight", st.inflight);
    rc |= add_num(obj, "max_inflight", st.max_inflight);
    drops = cJSON_AddObjectToObject(obj, "dropped");
    for (int i = 0; drops && i < AUDIT_DROPS; i++)
        rc |= add_num(drops, audit_drop_names[i], (double)st.dropped[i]);
    rc |= add_rate(obj, cs.audit.wrong, cs.audit.audits);
    rc |= add_num(obj, "max_wrong_hit_rate", max_rate);
    rc |= add_num(obj, "disputed", (double)cs.disputes);
    rc |= add_num(obj, "disputed_rejections", (double)cs.rejected_disputed);
    rc |= add_threshold(obj, "threshold", cs.threshold);
    rc |= add_num(obj, "partitions", (double)cs.audit.partitions);
    rc |= add_num(obj, "partitions_raised", (double)cs.audit.raised);
    rc |= add_threshold(obj, "threshold_max", cs.audit.max_threshold);
    arr = cJSON_AddArrayToObject(obj, "by_partition");
    n = cache_audit_partitions(c, parts, AUDIT_PARTS_SHOWN);
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        char hex[2 * CACHE_KEY_LEN + 1];

        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            return -ENOMEM;
        }
        canon_hex(parts[i].partition, CACHE_KEY_LEN, hex);
        rc |= cJSON_AddStringToObject(o, "partition", hex) ? 0 : -1;
        rc |= add_rate(o, parts[i].wrong, parts[i].audits);
        rc |= add_threshold(o, "threshold", parts[i].threshold);
    }
    return rc || !drops || !arr ? -ENOMEM : 0;
}
