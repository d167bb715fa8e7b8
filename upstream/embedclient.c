/* embedclient.c - the remote embeddings client; see embedclient.h.
 *
 * Texts wait on a FIFO queue (c->head .. c->tail) until the client's thread
 * takes up to `batch` of them and posts
 *     {"model": M, "input": [t1, t2, ...], "encoding_format": "float"}
 * to URL/embeddings. The call's time limit is what is left of its oldest
 * text's deadline. Texts queued behind a call arrived after that call's
 * texts, so their own deadlines are later than its end: no text waits more
 * than timeout_ms, whatever the queue.
 *
 * A text whose deadline passed while it waited is failed (EMBED_TIMEOUT)
 * without being sent. A batch is one unit: if any vector is missing, out of
 * place or of the wrong length, every text of the call fails, and the call
 * counts as one failure for the breaker.
 *
 * The breaker is upstream/balance.c's, the one the provider pool uses, under
 * c->lock. A half-open breaker lets texts queue: the thread makes one call at
 * a time, so the first call is the probe and the texts behind it learn its
 * outcome (an open breaker fails them with EMBED_BREAKER_OPEN unsent).
 */
#include "upstream/embedclient.h"

#include "cache/base/buf.h"
#include "cache/base/clock.h"
#include "cache/base/thread.h"
#include "upstream/balance.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Room for the JSON around the numbers, and per number ("-0.0123456789,"). */
#define RESP_BASE    (1u << 20)
#define RESP_PER_NUM 32
#define RESP_MAX     (256u << 20)
#define REQ_MAX      (64u << 20)

static const double latency_le[EMBED_LATENCY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                         0.25,  0.5,  1,     2.5,  5};

struct job {
    struct job *next;
    char *text;
    size_t len;
    long deadline; /* monotonic ms */
    embed_done_fn done;
    void *ud;
};

struct embed_client {
    char *model;
    long timeout_ms;
    unsigned batch;
    atomic_uint dim;

    /* The client's thread only. */
    struct job **batch_jobs, **late; /* c->batch slots each */
    CURL *easy;
    struct curl_slist *headers;
    struct buf resp;
    size_t resp_max;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* Guarded by lock. */
    struct job *head, *tail;
    size_t queued;
    bool stopping;
    struct bal_breaker breaker;
    uint64_t texts[EMBED_RESULTS], calls, batched, bucket[EMBED_LATENCY_BUCKETS];
    double seconds_sum;
    atomic_bool abort; /* read by curl's progress callback */
};

const char *embed_result_name(enum embed_result r)
{
    static const char *const names[EMBED_RESULTS] = {
        "ok",           "timeout",       "unreachable",  "http_error",
        "bad_response", "bad_dimension", "breaker_open", "cancelled"};

    return (unsigned)r < EMBED_RESULTS ? names[r] : "?";
}

/* ---- the response ------------------------------------------------------- */

static int parse_vector(const cJSON *emb, unsigned *dim, float *out)
{
    const cJSON *x;
    int n = cJSON_GetArraySize(emb);
    double norm = 0;
    unsigned i = 0;

    if (!cJSON_IsArray(emb) || n <= 0)
        return -EBADMSG;
    if (n > EMBED_DIM_MAX || (*dim && (unsigned)n != *dim))
        return -ERANGE;
    *dim = (unsigned)n;
    if (!out)
        return 0;
    cJSON_ArrayForEach(x, emb)
    {
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
            return -EBADMSG;
        out[i++] = (float)x->valuedouble;
        norm += x->valuedouble * x->valuedouble;
    }
    if (!(norm > 0) || !isfinite(norm))
        return -EBADMSG;
    norm = sqrt(norm);
    for (i = 0; i < *dim; i++)
        out[i] = (float)(out[i] / norm);
    return 0;
}

int embed_parse_response(const char *body, size_t len, size_t n, unsigned *dim, float *out)
{
    cJSON *doc = cJSON_ParseWithLength(body, len);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data"), *item;
    bool *seen = calloc(n ? n : 1, sizeof(*seen));
    size_t pos = 0;
    int rc = -EBADMSG;

    if (!doc || !seen || !cJSON_IsArray(data) || (size_t)cJSON_GetArraySize(data) != n)
        goto out;
    cJSON_ArrayForEach(item, data)
    {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(item, "index");
        size_t at = pos++;

        rc = -EBADMSG;
        /* The index says which input a vector belongs to; servers that
         * leave it out answer in input order. */
        if (idx) {
            if (!cJSON_IsNumber(idx) || idx->valuedouble < 0 || idx->valuedouble >= (double)n ||
                idx->valuedouble != (double)(size_t)idx->valuedouble)
                goto out;
            at = (size_t)idx->valuedouble;
        }
        if (seen[at])
            goto out;
        seen[at] = true;
        rc = parse_vector(cJSON_GetObjectItemCaseSensitive(item, "embedding"), dim,
                          out ? out + at * *dim : NULL);
        if (rc != 0)
            goto out;
    }
    rc = n > 0 ? 0 : -EBADMSG;
out:
    free(seen);
    cJSON_Delete(doc);
    return rc;
}

/* ---- the call ------------------------------------------------------------ */

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct embed_client *c = ud;
    size_t n = size * nmemb;

    /* A short count aborts the transfer with CURLE_WRITE_ERROR. */
    return buf_append(&c->resp, p, n, c->resp_max) == 0 ? n : 0;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct embed_client *c = ud;

    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    return atomic_load(&c->abort) ? 1 : 0;
}

/* The JSON request for the texts of jobs[0..n), or NULL. */
static char *request_body(const struct embed_client *c, struct job *const *jobs, size_t n)
{
    cJSON *doc = cJSON_CreateObject(), *input = cJSON_CreateArray();
    char *out = NULL;

    if (!doc || !input) {
        cJSON_Delete(input);
        goto out;
    }
    cJSON_AddItemToObject(doc, "input", input);
    if (!cJSON_AddStringToObject(doc, "model", c->model) ||
        !cJSON_AddStringToObject(doc, "encoding_format", "float"))
        goto out;
    for (size_t i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateString(jobs[i]->text);
        if (!s)
            goto out;
        cJSON_AddItemToArray(input, s);
    }
    out = cJSON_PrintUnformatted(doc);
    if (out && strlen(out) > REQ_MAX) {
        free(out);
        out = NULL;
    }
out:
    cJSON_Delete(doc);
    return out;
}

/* Post jobs[0..n) as one call; vectors into vecs (n * dim). The result
 * applies to every job. */
static enum embed_result call(struct embed_client *c, struct job *const *jobs, size_t n,
                              float **vecs, long budget)
{
    char *body = request_body(c, jobs, n);
    long status = 0;
    unsigned dim = atomic_load(&c->dim);
    CURLcode rc;

    *vecs = NULL;
    if (!body)
        return EMBED_CANCELLED;
    buf_reset(&c->resp);
    c->resp_max = RESP_BASE + n * (dim ? dim : EMBED_DIM_MAX) * (size_t)RESP_PER_NUM;
    if (c->resp_max > RESP_MAX)
        c->resp_max = RESP_MAX;
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, budget > 1 ? budget : 1L);
    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, budget > 1 ? budget : 1L);
    rc = curl_easy_perform(c->easy);
    free(body);
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    switch (rc) {
    case CURLE_OK: break;
    case CURLE_OPERATION_TIMEDOUT: return EMBED_TIMEOUT;
    case CURLE_ABORTED_BY_CALLBACK: return EMBED_CANCELLED;
    case CURLE_WRITE_ERROR: return EMBED_BAD_RESPONSE; /* larger than any valid answer */
    default: return EMBED_UNREACHABLE;
    }
    if (status < 200 || status > 299)
        return EMBED_HTTP_ERROR;
    if (embed_parse_response(c->resp.p, c->resp.len, n, &dim, NULL) != 0) {
        /* Tell a wrong length from garbage: parse again without a fixed
         * dimension. */
        unsigned any = 0;
        return embed_parse_response(c->resp.p, c->resp.len, n, &any, NULL) == 0
                   ? EMBED_BAD_DIM
                   : EMBED_BAD_RESPONSE;
    }
    if (dim == 0) /* cannot be: a parsed answer has vectors */
        return EMBED_BAD_RESPONSE;
    *vecs = malloc(n * dim * sizeof(float));
    if (!*vecs)
        return EMBED_CANCELLED;
    if (embed_parse_response(c->resp.p, c->resp.len, n, &dim, *vecs) != 0) {
        free(*vecs);
        *vecs = NULL;
        return EMBED_BAD_RESPONSE;
    }
    /* The first good answer fixes a dimension that was not configured. */
    atomic_store(&c->dim, dim);
    return EMBED_OK;
}

static void record_latency(struct embed_client *c, double s)
{
    for (unsigned i = 0; i < EMBED_LATENCY_BUCKETS; i++)
        if (s <= latency_le[i])
            c->bucket[i]++;
    c->seconds_sum += s;
}

/* Tell each job its result and free it; counts the results. */
static void deliver(struct embed_client *c, struct job **jobs, size_t n, enum embed_result r,
                    const float *vecs)
{
    unsigned dim = atomic_load(&c->dim);

    pthread_mutex_lock(&c->lock);
    c->texts[r] += n;
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        jobs[i]->done(jobs[i]->ud, r, r == EMBED_OK ? vecs + i * dim : NULL);
        free(jobs[i]->text);
        free(jobs[i]);
    }
}

static void *client_main(void *arg)
{
    struct embed_client *c = arg;
    struct job **batch = c->batch_jobs, **late = c->late;

    for (;;) {
        size_t n = 0, nlate = 0;
        enum embed_result r = EMBED_OK;
        float *vecs = NULL;
        long now, t0, budget = 0;

        pthread_mutex_lock(&c->lock);
        while (!c->stopping && !c->head)
            pthread_cond_wait(&c->wake, &c->lock);
        if (c->stopping) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        now = clock_mono_ms();
        while (c->head && n < c->batch && nlate < c->batch) {
            struct job *j = c->head;
            c->head = j->next;
            c->queued--;
            if (j->deadline <= now) {
                late[nlate++] = j;
                continue;
            }
            if (n == 0)
                budget = j->deadline - now;
            batch[n++] = j;
        }
        if (!c->head)
            c->tail = NULL;
        /* A probe failed while these waited: they would only fail again. */
        if (!bal_breaker_ready(&c->breaker, now))
            r = EMBED_BREAKER_OPEN;
        pthread_mutex_unlock(&c->lock);

        deliver(c, late, nlate, EMBED_TIMEOUT, NULL);
        if (n == 0)
            continue;
        if (r == EMBED_OK) {
            t0 = clock_mono_ms();
            r = call(c, batch, n, &vecs, budget);
            now = clock_mono_ms();
            pthread_mutex_lock(&c->lock);
            c->calls++;
            c->batched += n;
            record_latency(c, (double)(now - t0) / 1000.0);
            if (r == EMBED_OK)
                bal_breaker_success(&c->breaker);
            else if (r != EMBED_CANCELLED)
                bal_breaker_failure(&c->breaker, now);
            pthread_mutex_unlock(&c->lock);
        }
        deliver(c, batch, n, r, vecs);
        free(vecs);
    }
    return NULL;
}

/* ---- the client ---------------------------------------------------------- */

static int setup_easy(struct embed_client *c, const struct embed_client_opts *o)
{
    size_t bl = strlen(o->url), ul = bl + sizeof("/embeddings");
    char *url = malloc(ul), *auth = NULL;
    struct curl_slist *h;
    int rc = -ENOMEM;

    if (!url)
        return -ENOMEM;
    while (bl > 0 && o->url[bl - 1] == '/')
        bl--;
    snprintf(url, ul, "%.*s/embeddings", (int)bl, o->url);
    if (!(c->easy = curl_easy_init()))
        goto out;
    if (!(h = curl_slist_append(NULL, "Content-Type: application/json")))
        goto out;
    c->headers = h;
    /* No 100-continue round trip for a large batch. */
    if (!(h = curl_slist_append(c->headers, "Expect:")))
        goto out;
    c->headers = h;
    if (o->key) {
        size_t al = strlen(o->key) + 32;
        if (!(auth = malloc(al)))
            goto out;
        snprintf(auth, al, "Authorization: Bearer %s", o->key);
        h = curl_slist_append(c->headers, auth);
        /* The key is copied by the list; do not leave it lying around. */
        memset(auth, 0, al);
        if (!h)
            goto out;
        c->headers = h;
    }
    curl_easy_setopt(c->easy, CURLOPT_URL, url);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c->easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c->easy, CURLOPT_XFERINFODATA, c);
    rc = 0;
out:
    free(url);
    free(auth);
    return rc;
}

int embed_client_new(const struct embed_client_opts *o, struct embed_client **out)
{
    struct embed_client *c;
    int rc;

    if (!o->url || !o->model || o->batch == 0 || o->timeout_ms <= 0 || o->dim > EMBED_DIM_MAX)
        return -EINVAL;
    if (!(c = calloc(1, sizeof(*c))))
        return -ENOMEM;
    c->timeout_ms = o->timeout_ms;
    c->batch = o->batch;
    bal_breaker_init(&c->breaker, o->breaker_failures, o->breaker_cooldown_ms);
    atomic_init(&c->dim, o->dim);
    atomic_init(&c->abort, false);
    c->batch_jobs = calloc(o->batch, sizeof(*c->batch_jobs));
    c->late = calloc(o->batch, sizeof(*c->late));
    if (!c->batch_jobs || !c->late || !(c->model = strdup(o->model)) || setup_easy(c, o) != 0) {
        rc = -ENOMEM;
        goto fail;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (thread_start(&c->thread, client_main, c, "parrot-embed") != 0) {
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->lock);
        rc = -ENOMEM;
        goto fail;
    }
    *out = c;
    return 0;
fail:
    curl_slist_free_all(c->headers);
    curl_easy_cleanup(c->easy);
    free(c->batch_jobs);
    free(c->late);
    free(c->model);
    free(c);
    return rc;
}

void embed_client_free(struct embed_client *c)
{
    struct job *j;

    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    atomic_store(&c->abort, true);
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    while ((j = c->head)) {
        c->head = j->next;
        c->texts[EMBED_CANCELLED]++;
        j->done(j->ud, EMBED_CANCELLED, NULL);
        free(j->text);
        free(j);
    }
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    curl_slist_free_all(c->headers);
    curl_easy_cleanup(c->easy);
    buf_free(&c->resp);
    free(c->batch_jobs);
    free(c->late);
    free(c->model);
    free(c);
}

unsigned embed_client_dim(const struct embed_client *c)
{
    return atomic_load(&((struct embed_client *)c)->dim);
}

unsigned embed_client_batch(const struct embed_client *c)
{
    return c->batch;
}

static struct job *job_new(const char *text, size_t len, embed_done_fn done, void *ud, long now,
                           long timeout_ms)
{
    struct job *j = calloc(1, sizeof(*j));

    if (!j || !(j->text = malloc(len + 1))) {
        free(j);
        return NULL;
    }
    memcpy(j->text, text, len);
    j->text[len] = '\0';
    j->len = len;
    j->deadline = now + timeout_ms;
    j->done = done;
    j->ud = ud;
    return j;
}

static void jobs_free(struct job *j)
{
    while (j) {
        struct job *next = j->next;
        free(j->text);
        free(j);
        j = next;
    }
}

/* Queue the n jobs chained from first to last under one lock, so that a
 * waiting call takes them together. Returns 0, or -ECANCELED / -EAGAIN and
 * the jobs are the caller's again. */
static int enqueue(struct embed_client *c, struct job *first, struct job *last, size_t n, long now)
{
    int rc = 0;

    pthread_mutex_lock(&c->lock);
    if (c->stopping) {
        rc = -ECANCELED;
    } else if (!bal_breaker_allow(&c->breaker, now)) {
        c->texts[EMBED_BREAKER_OPEN] += n;
        rc = -EAGAIN;
    } else {
        /* After the cooldown the breaker is half-open: the next call is the
         * probe. */
        if (c->tail)
            c->tail->next = first;
        else
            c->head = first;
        c->tail = last;
        c->queued += n;
        pthread_cond_signal(&c->wake);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int embed_client_submit(struct embed_client *c, const char *text, size_t len, embed_done_fn done,
                        void *ud)
{
    long now = clock_mono_ms();
    struct job *j = job_new(text, len, done, ud, now, c->timeout_ms);
    int rc;

    if (!j)
        return -ENOMEM;
    if ((rc = enqueue(c, j, j, 1, now)) != 0)
        jobs_free(j);
    return rc;
}

/* ---- waiting for texts (start-up) ---------------------------------------- */

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t done;
    size_t left;
    float *out;
    enum embed_result *results;
    unsigned dim;
};

struct wait_slot {
    struct waiter *w;
    size_t i;
};

static void wait_done(void *ud, enum embed_result r, const float *vec)
{
    struct wait_slot *s = ud;
    struct waiter *w = s->w;

    pthread_mutex_lock(&w->lock);
    w->results[s->i] = r;
    if (vec && w->out)
        memcpy(w->out + s->i * w->dim, vec, w->dim * sizeof(float));
    if (--w->left == 0)
        pthread_cond_signal(&w->done);
    pthread_mutex_unlock(&w->lock);
}

size_t embed_client_embed_wait(struct embed_client *c, const char *const *texts, size_t n,
                               float *out, enum embed_result *results)
{
    struct waiter w = {.left = n, .out = out, .results = results, .dim = embed_client_dim(c)};
    struct wait_slot *slots = calloc(n ? n : 1, sizeof(*slots));
    struct job *first = NULL, *last = NULL;
    long now = clock_mono_ms();
    size_t ok = 0;
    int rc = slots ? 0 : -ENOMEM;

    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.done, NULL);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct job *j;
        slots[i] = (struct wait_slot){&w, i};
        j = job_new(texts[i], strlen(texts[i]), wait_done, &slots[i], now, c->timeout_ms);
        if (!j) {
            rc = -ENOMEM;
            break;
        }
        if (last)
            last->next = j;
        else
            first = j;
        last = j;
    }
    /* All in one go: one call carries up to `batch` of them. */
    if (rc == 0 && n > 0)
        rc = enqueue(c, first, last, n, now);
    if (rc != 0 || n == 0) {
        jobs_free(first);
        for (size_t i = 0; i < n; i++)
            results[i] = rc == -EAGAIN ? EMBED_BREAKER_OPEN : EMBED_CANCELLED;
        w.left = 0;
    }
    pthread_mutex_lock(&w.lock);
    while (w.left > 0)
        pthread_cond_wait(&w.done, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_cond_destroy(&w.done);
    pthread_mutex_destroy(&w.lock);
    free(slots);
    for (size_t i = 0; i < n; i++)
        ok += results[i] == EMBED_OK;
    return ok;
}

void embed_client_stats(struct embed_client *c, struct embed_client_stats *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&c->lock);
    memcpy(st->texts, c->texts, sizeof(st->texts));
    st->calls = c->calls;
    st->batched = c->batched;
    st->queued = c->queued;
    st->breaker = (int)bal_breaker_state(&c->breaker);
    memcpy(st->bucket, c->bucket, sizeof(st->bucket));
    st->seconds_sum = c->seconds_sum;
    pthread_mutex_unlock(&c->lock);
    st->bucket_le = latency_le;
}
