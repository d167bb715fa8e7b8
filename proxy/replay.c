/* replay.c - replay a request log through an in-memory cache; see
 * replay.h and docs/audit.md.
 *
 * One pass over the log, in order, through a cache built like the server's
 * (partitioning, embedder, verifier, TTL): an exact repeat is an exact hit,
 * a paraphrase whose best verified candidate scores at least the configured
 * threshold a semantic hit, anything else a miss whose answer (the logged
 * one, or an empty stand-in) is stored. The cache itself runs at the lowest
 * threshold of the curve, so each lookup also tells the best candidate's
 * score below the configured threshold: the curve's share at threshold T
 * is the share of requests that were not exact hits and whose best score
 * was at least T, over the cache state of the configured threshold.
 */
#include "proxy/replay.h"

#include "cache/base/beta.h"
#include "cache/base/buf.h"
#include "cache/base/clock.h"
#include "cache/base/map.h"
#include "cache/cache.h"
#include "cache/match/judge.h"
#include "config/config.h"
#include "proxy/assemble.h"
#include "proxy/chat.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/openai/completion.h"
#include "proxy/openai/oai.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CURVE_MIN    0.50f
#define CURVE_STEP   0.05f
#define CURVE_POINTS 10    /* 0.50 .. 0.95 */
#define CLUSTERS     10    /* largest clusters shown */
#define PROGRESS     10000 /* requests between progress lines */
#define LINE_MAX_LEN (32u << 20)
#define MAX_FILES    256
#define TS_MAX       1e11 /* seconds (year 5138): a larger "ts" is not a time */

#define CLUSTER_TEXT 200 /* bytes of a cluster's question kept for the report */

/* The hits one entry answered, and the question it was stored for. */
struct cluster {
    uint64_t id, exact, semantic;
    char text[CLUSTER_TEXT + 1];
};

struct tally {
    uint64_t lines, requests, skipped_json, skipped_request, unkeyable;
    uint64_t exact, semantic, misses;
    uint64_t curve[CURVE_POINTS];
    uint64_t saved_prompt, saved_completion, saved_pusd;
    uint64_t judged, wrong;
    struct map clusters; /* entry id -> struct cluster */
};

struct run {
    struct cfg cfg;
    struct cache *cache;
    struct chat *chat;
    struct metrics *met; /* for the price table */
    float threshold;     /* the configured one */
    bool json;
    const char *files[MAX_FILES];
    size_t nfiles;
    struct tally t;
};

/* Split argv into files, --json and the server's options (into opts,
 * argv[0] first). Returns 0 or 2 with a message printed. */
static int split_args(struct run *rn, int argc, char **argv, char **opts, int *nopts)
{
    *nopts = 0;
    opts[(*nopts)++] = argv[0];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int take;

        if (strcmp(a, "--json") == 0) {
            rn->json = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (rn->nfiles == MAX_FILES) {
                fprintf(stderr, "parrot replay: at most %d files\n", MAX_FILES);
                return 2;
            }
            rn->files[rn->nfiles++] = a;
            continue;
        }
        /* An option and, when it takes one, its value. */
        take = cfg_flag_arity(a, i + 1 < argc ? argv[i + 1] : NULL);
        for (int k = 0; k < take && i < argc; k++)
            opts[(*nopts)++] = argv[i++];
        i--;
    }
    opts[*nopts] = NULL;
    if (rn->nfiles == 0) {
        fprintf(stderr, "usage: %s replay [--json] [server options] FILE...\n", argv[0]);
        return 2;
    }
    return 0;
}

/* What a miss stores when the log holds no answer: an empty one, so that
 * later repeats find it. */
static cJSON *stand_in(const char *model)
{
    cJSON *doc = cJSON_Parse("{\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                             "\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
                             "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":0,"
                             "\"completion_tokens\":0,\"total_tokens\":0}}");

    if (doc && !cJSON_AddStringToObject(doc, "model", model)) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    return doc;
}

static void count_cluster(struct tally *t, uint64_t id, const char *text, bool exact)
{
    uint8_t key[MAP_KEY_LEN];
    struct cluster *c;
    void *old;

    map_id_key(id, key);
    c = map_get(&t->clusters, key);
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c || map_put(&t->clusters, key, c, &old) != 0) {
            free(c);
            return; /* out of memory: the cluster list is shorter, nothing else */
        }
        c->id = id;
        snprintf(c->text, sizeof(c->text), "%s", text ? text : "");
    }
    if (exact)
        c->exact++;
    else
        c->semantic++;
}

/* A hit: the answer's original usage is what it saved; a semantic hit
 * with a logged answer is judged against it. */
static void hit(struct run *rn, struct chat_req *r, bool exact, const cJSON *resp)
{
    const struct cmpl_rendered *cr = chat_hit_answer(r);
    struct cache_entry_info in;
    struct tally *t = &rn->t;

    if (exact)
        t->exact++;
    else
        t->semantic++;
    t->saved_prompt += (uint64_t)(cr->prompt_tokens > 0 ? cr->prompt_tokens : 0);
    t->saved_completion += (uint64_t)(cr->completion_tokens > 0 ? cr->completion_tokens : 0);
    t->saved_pusd += metrics_price(rn->met, cr->model, cr->prompt_tokens, cr->completion_tokens);
    cache_entry_describe(r->q.hit, &in);
    count_cluster(t, in.id, in.text, exact);
    if (!exact && resp && cmpl_content(resp)) {
        cJSON *old = cmpl_rendered_doc(cr);
        const char *ca = cmpl_content(old), *fa = cmpl_content(resp);
        struct judge_result jr;

        /* A stand-in (no logged answer) has nothing to judge. */
        if (ca && *ca) {
            judge_answers(ca, strlen(ca), fa, strlen(fa), cache_verify_tables(rn->cache), &jr);
            t->judged++;
            t->wrong += !jr.same;
        }
        cJSON_Delete(old);
    }
}

/* One log line. */
static void replay_line(struct run *rn, const char *line, size_t len, int64_t *clock)
{
    struct tally *t = &rn->t;
    cJSON *obj = cJSON_ParseWithLength(line, len), *req, *resp, *doc = NULL;
    struct oai_error err;
    struct chat_req r;
    char *raw = NULL;
    const cJSON *ts;
    double secs;
    int64_t now;

    t->lines++;
    if (!cJSON_IsObject(obj)) {
        t->skipped_json++;
        goto out;
    }
    req = cJSON_GetObjectItemCaseSensitive(obj, "request");
    resp = cJSON_GetObjectItemCaseSensitive(obj, "response");
    ts = cJSON_GetObjectItemCaseSensitive(obj, "ts");
    if (!cJSON_IsObject(req)) { /* a bare request body */
        req = obj;
        resp = NULL;
        ts = NULL;
    }
    raw = cJSON_PrintUnformatted(req);
    if (!raw || oai_chat_parse("application/json", raw, strlen(raw), &doc, &err) != 0) {
        t->skipped_request++;
        goto out;
    }
    /* Unix seconds (as OpenAI's "created") when logged; else a millisecond
     * after the request before (the first: now). */
    secs = cJSON_IsNumber(ts) ? cJSON_GetNumberValue(ts) : -1;
    now = secs >= 0 && secs < TS_MAX ? (int64_t)(secs * 1000) : *clock + 1;
    *clock = now;
    t->requests++;
    chat_req_init(rn->chat, &r, doc, raw, strlen(raw),
                  &(struct chat_scope){.authorization = "replay"}, NULL, NULL);
    if (!r.keyed) {
        t->unkeyable++;
        t->misses++;
    } else {
        enum chat_verdict v = chat_lookup(rn->chat, &r, now);
        bool sem = v == CHAT_HIT && !r.exact;

        if (v == CHAT_HIT && (r.exact || r.q.sim >= rn->threshold)) {
            hit(rn, &r, r.exact, cJSON_IsObject(resp) ? resp : NULL);
        } else {
            /* Below the configured threshold: a miss, whose best score
             * feeds the curve. */
            for (int k = 0; sem && k < CURVE_POINTS; k++)
                t->curve[k] += r.q.sim >= CURVE_MIN + CURVE_STEP * (float)k;
            cache_query_fini(&r.q);
            r.q = (struct cache_query){.partition = r.key.partition,
                                       .exact = r.key.exact,
                                       .text = r.key.lookup_text,
                                       .text_len = r.key.lookup_len,
                                       .max_age = -1};
            t->misses++;
            cJSON *answer = cJSON_IsObject(resp) ? cJSON_Duplicate(resp, true) : NULL;
            if (!answer || chat_store_fresh(rn->chat, &r.q, answer, now) != 0) {
                /* No answer logged, or one parrot would not cache. */
                cJSON *blank = stand_in(r.model);
                if (blank)
                    chat_store_fresh(rn->chat, &r.q, blank, now);
            }
        }
        /* Hits count at every curve point at or below the threshold too. */
        for (int k = 0; v == CHAT_HIT && !r.exact && r.q.hit && k < CURVE_POINTS; k++)
            t->curve[k] += r.q.sim >= CURVE_MIN + CURVE_STEP * (float)k;
    }
    chat_req_fini(&r);
out:
    cJSON_Delete(doc);
    cJSON_Delete(obj);
    free(raw);
}

/* One line of f into line (its newline and a CR before it dropped).
 * Returns 1 with a line, 0 at the end, -1 for a line longer than
 * LINE_MAX_LEN (read past, never held). */
static int read_line(FILE *f, struct buf *line)
{
    char chunk[64 * 1024];
    bool over = false, any = false;

    buf_reset(line);
    while (fgets(chunk, sizeof(chunk), f)) {
        size_t n = strlen(chunk);
        bool end = n > 0 && chunk[n - 1] == '\n';

        any = true;
        if (!over && buf_append(line, chunk, n, LINE_MAX_LEN + 2) != 0)
            over = true;
        if (end)
            break;
    }
    if (!any)
        return 0;
    if (over)
        return -1;
    while (line->len > 0 && (line->p[line->len - 1] == '\n' || line->p[line->len - 1] == '\r'))
        line->len--;
    return 1;
}

/* Replay every line of path. 0, or -1 when it cannot be read. */
static int replay_file(struct run *rn, const char *path, int64_t *clock)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    struct buf line = {0};
    int got;

    if (!f) {
        fprintf(stderr, "parrot replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((got = read_line(f, &line)) != 0) {
        if (got < 0) {
            rn->t.lines++;
            rn->t.skipped_json++;
        } else if (line.len > 0) {
            replay_line(rn, line.p, line.len, clock);
        } else {
            continue;
        }
        if (rn->t.lines % PROGRESS == 0)
            fprintf(stderr, "parrot replay: %s: %" PRIu64 " lines, %" PRIu64 " requests\n", path,
                    rn->t.lines, rn->t.requests);
    }
    buf_free(&line);
    if (f != stdin)
        fclose(f);
    return 0;
}

struct top {
    struct cluster c;
};

static int by_size(const void *a, const void *b)
{
    const struct top *x = a, *y = b;
    uint64_t sx = x->c.exact + x->c.semantic, sy = y->c.exact + y->c.semantic;

    return sx < sy ? 1 : sx > sy ? -1 : 0;
}

/* The CLUSTERS largest clusters into out; returns how many. */
static size_t largest(struct tally *t, struct top *out)
{
    size_t n = 0;

    for (size_t i = 0; t->clusters.slots && i <= t->clusters.mask; i++) {
        const struct cluster *c = t->clusters.slots[i].val;
        struct top cand;

        if (!c)
            continue;
        cand = (struct top){.c = *c};
        if (n < CLUSTERS) {
            out[n++] = cand;
        } else if (by_size(&cand, &out[n - 1]) < 0) {
            out[n - 1] = cand;
        } else {
            continue;
        }
        qsort(out, n, sizeof(*out), by_size);
    }
    return n;
}

static double share(uint64_t k, uint64_t n)
{
    return n ? (double)k / (double)n : 0;
}

/* The report as a JSON document (the shape docs/audit.md documents). */
static cJSON *report_json(struct run *rn, const struct top *tops, size_t ntop)
{
    struct tally *t = &rn->t;
    cJSON *doc = cJSON_CreateObject(), *o, *arr;

    cJSON_AddStringToObject(doc, "object", "parrot.replay");
    arr = cJSON_AddArrayToObject(doc, "files");
    for (size_t i = 0; i < rn->nfiles; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(rn->files[i]));
    cJSON_AddNumberToObject(doc, "lines", (double)t->lines);
    cJSON_AddNumberToObject(doc, "requests", (double)t->requests);
    o = cJSON_AddObjectToObject(doc, "skipped");
    cJSON_AddNumberToObject(o, "not_json", (double)t->skipped_json);
    cJSON_AddNumberToObject(o, "not_a_chat_request", (double)t->skipped_request);
    o = cJSON_AddObjectToObject(doc, "exact");
    cJSON_AddNumberToObject(o, "count", (double)t->exact);
    cJSON_AddNumberToObject(o, "share", share(t->exact, t->requests));
    o = cJSON_AddObjectToObject(doc, "semantic");
    cJSON_AddNumberToObject(o, "count", (double)t->semantic);
    cJSON_AddNumberToObject(o, "share", share(t->semantic, t->requests));
    cJSON_AddNumberToObject(o, "threshold", round((double)rn->threshold * 1e4) / 1e4);
    o = cJSON_AddObjectToObject(doc, "misses");
    cJSON_AddNumberToObject(o, "count", (double)t->misses);
    cJSON_AddNumberToObject(o, "share", share(t->misses, t->requests));
    cJSON_AddNumberToObject(o, "unkeyable", (double)t->unkeyable);
    arr = cJSON_AddArrayToObject(doc, "curve");
    for (int k = 0; k < CURVE_POINTS; k++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, p);
        cJSON_AddNumberToObject(p, "threshold",
                                round((double)(CURVE_MIN + CURVE_STEP * (float)k) * 100) / 100);
        cJSON_AddNumberToObject(p, "semantic_share", share(t->curve[k], t->requests));
    }
    o = cJSON_AddObjectToObject(doc, "saved");
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)t->saved_prompt);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)t->saved_completion);
    if (rn->cfg.prices)
        cJSON_AddNumberToObject(o, "usd", (double)t->saved_pusd / 1e12);
    else
        cJSON_AddNullToObject(o, "usd");
    if (t->judged) {
        o = cJSON_AddObjectToObject(doc, "wrong");
        cJSON_AddNumberToObject(o, "judged", (double)t->judged);
        cJSON_AddNumberToObject(o, "different", (double)t->wrong);
        cJSON_AddNumberToObject(o, "share", share(t->wrong, t->judged));
        cJSON_AddNumberToObject(o, "upper", beta_cp_upper(t->wrong, t->judged, BUDGET_CONF));
    } else {
        cJSON_AddNullToObject(doc, "wrong");
    }
    arr = cJSON_AddArrayToObject(doc, "clusters");
    for (size_t i = 0; i < ntop; i++) {
        cJSON *c = cJSON_CreateObject();

        cJSON_AddItemToArray(arr, c);
        cJSON_AddNumberToObject(c, "size", (double)(1 + tops[i].c.exact + tops[i].c.semantic));
        cJSON_AddNumberToObject(c, "exact", (double)tops[i].c.exact);
        cJSON_AddNumberToObject(c, "semantic", (double)tops[i].c.semantic);
        cJSON_AddStringToObject(c, "text", tops[i].c.text);
    }
    return doc;
}

static void pct_row(const char *what, uint64_t k, uint64_t n, const char *note)
{
    printf("%-22s %10" PRIu64 "  %6.2f%%%s\n", what, k, 100 * share(k, n), note);
}

static void report_text(struct run *rn, const cJSON *doc)
{
    struct tally *t = &rn->t;
    const cJSON *c;
    char note[64];

    printf("parrot replay: %zu file%s, %" PRIu64 " requests (%" PRIu64 " lines skipped)\n",
           rn->nfiles, rn->nfiles == 1 ? "" : "s", t->requests,
           t->skipped_json + t->skipped_request);
    pct_row("exact repeats", t->exact, t->requests, "");
    snprintf(note, sizeof(note), "  at threshold %.2f", (double)rn->threshold);
    pct_row("semantic hits", t->semantic, t->requests, note);
    pct_row("misses", t->misses, t->requests, "");
    printf("%-22s %10" PRIu64 "  (prompt %" PRIu64 ", completion %" PRIu64
           "; from logged answers)\n",
           "tokens saved", t->saved_prompt + t->saved_completion, t->saved_prompt,
           t->saved_completion);
    if (rn->cfg.prices)
        printf("%-22s %14.6f USD\n", "money saved", (double)t->saved_pusd / 1e12);
    if (t->judged)
        printf("%-22s %10" PRIu64 "  of %" PRIu64 " judged (%.2f%%; 95%% upper bound %.2f%%)\n",
               "wrong semantic hits", t->wrong, t->judged, 100 * share(t->wrong, t->judged),
               100 * beta_cp_upper(t->wrong, t->judged, BUDGET_CONF));
    printf("\nsemantic-hit share by threshold:\n");
    for (int k = 0; k < CURVE_POINTS; k++)
        printf("  %.2f  %6.2f%%\n", (double)(CURVE_MIN + CURVE_STEP * (float)k),
               100 * share(t->curve[k], t->requests));
    printf("\nlargest repeated clusters:\n   size  exact  semantic  question\n");
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "clusters"))
    {
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "text"));
        printf("  %5.0f  %5.0f  %8.0f  %.80s\n",
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "size")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "exact")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "semantic")),
               text ? text : "");
    }
}

/* The configured threshold as the server would run it: the option, or
 * the embedder's default (which needs the embedder built once). */
static int configured_threshold(struct cfg *c, float *out)
{
    struct cache *probe;
    struct cache_stats st;

    if (c->similarity_threshold > 0) {
        *out = (float)c->similarity_threshold;
        return 0;
    }
    if (assemble_cache(c, &probe) != 0)
        return -1;
    cache_get_stats(probe, &st);
    *out = st.threshold;
    cache_free(probe);
    return 0;
}

int replay_main(int argc, char **argv, char **envp)
{
    static struct run rn; /* large; one per process */
    char **opts = calloc((size_t)argc + 1, sizeof(*opts));
    enum cfg_action action;
    struct top tops[CLUSTERS];
    int64_t clock = clock_wall_ms();
    int nopts, rc = 2;
    char err[512];
    cJSON *doc;

    if (!opts || cfg_init(&rn.cfg) != 0) {
        free(opts);
        return 1;
    }
    if (split_args(&rn, argc, argv, opts, &nopts) != 0)
        goto out;
    if (cfg_load(&rn.cfg, nopts, opts, envp, &action, err, sizeof(err)) != 0) {
        fprintf(stderr, "parrot replay: %s\n", err);
        goto out;
    }
    if (strcmp(rn.cfg.embedder, "builtin") != 0) {
        fprintf(stderr, "parrot replay: runs the builtin embedder only (embedder %s)\n",
                rn.cfg.embedder);
        goto out;
    }
    log_set_level(LOG_WARN);
    rc = 1;
    if (configured_threshold(&rn.cfg, &rn.threshold) != 0)
        goto out;
    /* The cache runs at the curve's lowest point (see the top of the file). */
    rn.cfg.similarity_threshold = rn.threshold < CURVE_MIN ? rn.threshold : CURVE_MIN;
    if (assemble_cache(&rn.cfg, &rn.cache) != 0 || chat_new(&rn.cfg, rn.cache, &rn.chat) != 0 ||
        metrics_new(rn.cfg.prices, &rn.met) != 0)
        goto out;
    map_init(&rn.t.clusters);
    for (size_t i = 0; i < rn.nfiles; i++)
        if (replay_file(&rn, rn.files[i], &clock) != 0)
            goto out;
    doc = report_json(&rn, tops, largest(&rn.t, tops));
    if (rn.json) {
        char *s = cJSON_Print(doc);
        if (s)
            puts(s);
        free(s);
    } else {
        report_text(&rn, doc);
    }
    cJSON_Delete(doc);
    rc = 0;
out:
    for (size_t i = 0; rn.t.clusters.slots && i <= rn.t.clusters.mask; i++)
        free(rn.t.clusters.slots[i].val);
    map_fini(&rn.t.clusters);
    chat_free(rn.chat);
    cache_free(rn.cache);
    metrics_free(rn.met);
    cfg_fini(&rn.cfg);
    free(opts);
    return rc;
}
