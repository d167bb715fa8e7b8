/* lookup_bench.c - in-process latency of the hit path, without HTTP.
 *
 * Measures what a hit costs parrot itself: validating and parsing the body,
 * building the partition and exact keys (canonical JSON + SHA-256),
 * embedding, the lookup, and rendering the answer (JSON or SSE). Prints
 * p50/p99 per kind of hit in microseconds.
 *
 * Usage: build/bench/lookup_bench [N [WORD-VECTORS WORDNET [ROW]]]
 * With the two tables (build/word-vectors.bin, build/wordnet.bin) it runs in
 * the default mode `make run` serves; without them, lexical-only. The last
 * two rows are the question and paraphrase bench/http.sh sends, so the
 * in-process cost of its semantic hit can be read beside the HTTP numbers
 * (for a repeatable count, run it under valgrind --tool=callgrind). ROW
 * (a row's name, "http.sh semantic") runs that row alone: callgrind's totals
 * of two runs with different N, subtracted, are the row's instructions for
 * the difference in requests.
 */
#include "config/config.h"
#include "proxy/assemble.h"
#include "proxy/chat.h"
#include "proxy/openai/oai.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char ANSWER[] =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o-mini\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"To reset your "
    "password, open Settings, choose Security, then Reset password and follow the link we email "
    "you.\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":"
    "{\"prompt_tokens\":31,\"completion_tokens\":24,\"total_tokens\":55}}";

static char *request(const char *q, int stream)
{
    static char buf[2048];

    snprintf(buf, sizeof(buf),
             "{\"model\":\"gpt-4o-mini\",\"temperature\":0,%s\"messages\":[{\"role\":\"system\","
             "\"content\":\"You are the support assistant of Example Corp. Answer briefly.\"},"
             "{\"role\":\"user\",\"content\":\"%s\"}]}",
             stream ? "\"stream\":true," : "", q);
    return buf;
}

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One request through the hit path; returns 1 on a hit. */
static int one(struct chat *ch, const char *body)
{
    struct oai_error err;
    struct chat_req r;
    cJSON *doc = NULL;
    size_t len = 0;
    int hit = 0;

    if (oai_chat_parse("application/json", body, strlen(body), &doc, &err) != 0)
        return 0;
    chat_req_init(ch, &r, doc, NULL, 0, &(struct chat_scope){.authorization = "Bearer sk-bench"},
                  NULL, NULL);
    cJSON_Delete(doc);
    if (chat_lookup(ch, &r, time(NULL)) == CHAT_HIT) {
        char *out = chat_hit_body(&r, time(NULL), &len);
        hit = out != NULL && len > 0;
        free(out);
    }
    chat_req_fini(&r);
    return hit;
}

static const char *only; /* the row to run, or NULL: all */

static void run(struct chat *ch, const char *name, const char *body, int n, double *lat)
{
    int hits = 0;

    if (only && strcmp(only, name) != 0)
        return;
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        hits += one(ch, body);
        lat[i] = now_us() - t0;
    }
    qsort(lat, (size_t)n, sizeof(*lat), cmp);
    printf("| %-16s | %7d | %7.1f | %7.1f | %7.1f |\n", name, hits, lat[n / 2],
           lat[(int)(n * 0.99)], lat[n - 1]);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    char cerr[256];
    struct cfg c;
    struct chat *ch;
    struct cache *cache;
    struct chat_req r;
    struct oai_error err;
    cJSON *doc;
    double *lat = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    const char *q = "How do I reset my password?";
    const char *fr = "What is the capital of France? Please answer in one or two sentences and "
                     "mention one landmark there.";

    if (n <= 0 || !lat || cfg_init(&c) != 0)
        return 1;
    only = argc > 4 ? argv[4] : NULL;
    if (argc > 3 && (cfg_set(&c, "word-vectors", argv[2], CFG_SRC_FLAG, cerr, sizeof(cerr)) ||
                     cfg_set(&c, "wordnet", argv[3], CFG_SRC_FLAG, cerr, sizeof(cerr)))) {
        fprintf(stderr, "lookup_bench: %s\n", cerr);
        return 1;
    }
    if (assemble_cache(&c, &cache) != 0 || chat_new(&c, cache, &ch) != 0)
        return 1;
    /* Warm: two stored answers, as a miss would store them. */
    for (const char *const *w = (const char *const[]){q, fr, NULL}; *w; w++) {
        if (oai_chat_parse("application/json", request(*w, 0), strlen(request(*w, 0)), &doc, &err))
            return 1;
        chat_req_init(ch, &r, doc, NULL, 0,
                      &(struct chat_scope){.authorization = "Bearer sk-bench"}, NULL, NULL);
        cJSON_Delete(doc);
        chat_lookup(ch, &r, time(NULL));
        chat_store(ch, &r, 200, false, ANSWER, strlen(ANSWER), time(NULL));
        chat_req_fini(&r);
    }

    printf("in-process hit path, %d requests each, microseconds\n\n", n);
    printf("| %-16s | %7s | %7s | %7s | %7s |\n", "kind", "hits", "p50", "p99", "max");
    printf("|------------------|---------|---------|---------|---------|\n");
    run(ch, "exact, JSON", request(q, 0), n, lat);
    run(ch, "exact, SSE", request(q, 1), n, lat);
    run(ch, "semantic, JSON", request("how can I reset my password", 0), n, lat);
    run(ch, "miss", request("Where is my parcel?", 0), n, lat);
    run(ch, "http.sh exact", request(fr, 0), n, lat);
    run(ch, "http.sh semantic",
        request("What's the capital of France? Please answer in one or two sentences and cite "
                "one landmark there.",
                0),
        n, lat);
    chat_free(ch);
    cache_free(cache);
    cfg_fini(&c);
    free(lat);
    return 0;
}
