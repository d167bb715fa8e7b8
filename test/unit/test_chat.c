/* Unit tests for proxy/chat.c's store queue (chat_store_later): an answer
 * is stored on the store thread after its client has it, the requests
 * waiting behind it are released only once it is stored, and a full queue
 * drops the store (counted), never the answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/config.h"
#include "proxy/assemble.h"
#include "proxy/chat.h"
#include "proxy/openai/oai.h"

#include <cjson/cJSON.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ANSWER[] =
    "{\"id\":\"chatcmpl-q\",\"object\":\"chat.completion\",\"created\":1700000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"an answer\"},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":5,\"total_tokens\":25}}";

#define NOW 1700000000000LL

/* A keyed request for question. No cmocka assertion here: done() calls it
 * on the store thread, where a failed assertion could not unwind. */
static bool req_for(struct chat *ch, struct chat_req *r, const char *question)
{
    char body[512];
    cJSON *doc = NULL;
    struct oai_error err;

    snprintf(body, sizeof(body),
             "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
             question);
    if (oai_chat_parse("application/json", body, strlen(body), &doc, &err) != 0)
        return false;
    chat_req_init(ch, r, doc, body, strlen(body),
                  &(struct chat_scope){.authorization = "Bearer test-chat"}, NULL, NULL);
    cJSON_Delete(doc);
    return r->keyed && r->store;
}

struct done_rec {
    sem_t ran;  /* posted by done */
    sem_t hold; /* done waits here when held */
    bool held;
    bool stored;
    uint64_t seq;
    int flight_open; /* could a new request lead r's key when done ran? (1 = yes) */
    struct chat *ch;
    struct chat_req *r;
};

static void never_woken(struct flight_waiter *w)
{
    (void)w; /* no test here has waiters; the flight's state is what is checked */
}

static void done(void *ud, bool stored, uint64_t seq)
{
    struct done_rec *d = ud;
    struct chat_req probe;

    d->stored = stored;
    d->seq = seq;
    /* The flight must be closed before done runs: a request for the same
     * key now leads instead of waiting. */
    if (req_for(d->ch, &probe, "How do I reset my password?")) {
        d->flight_open = chat_flight_join(d->ch, &probe, never_woken) ? 0 : 1;
        chat_flight_done(d->ch, &probe);
    } else {
        d->flight_open = -1;
    }
    chat_req_fini(&probe);
    if (d->held)
        sem_wait(&d->hold);
    sem_post(&d->ran);
}

static struct chat *new_chat(int store_queue, struct cache **cache)
{
    struct cfg c;
    struct chat *ch;

    assert_int_equal(cfg_init(&c), 0);
    c.store_queue = store_queue;
    free(c.word_vectors);
    c.word_vectors = NULL;
    free(c.wordnet);
    c.wordnet = NULL;
    assert_int_equal(assemble_cache(&c, cache), 0);
    assert_int_equal(chat_new(&c, *cache, &ch), 0);
    cfg_fini(&c);
    return ch;
}

static void rec_init(struct done_rec *d, struct chat *ch, struct chat_req *r, bool held)
{
    memset(d, 0, sizeof(*d));
    sem_init(&d->ran, 0, 0);
    sem_init(&d->hold, 0, 0);
    d->held = held;
    d->ch = ch;
    d->r = r;
}

static void rec_fini(struct done_rec *d)
{
    sem_destroy(&d->ran);
    sem_destroy(&d->hold);
}

/* Stored after the answer, then found by the next request; the leader's
 * flight closes before done runs. */
static void test_stored_later(void **state)
{
    struct cache *cache;
    struct chat *ch = new_chat(8, &cache);
    struct chat_req r, again;
    struct done_rec d;
    struct chat_counters cc;

    (void)state;
    assert_true(req_for(ch, &r, "How do I reset my password?"));
    assert_int_equal(chat_lookup(ch, &r, NOW), CHAT_MISS);
    assert_false(chat_flight_join(ch, &r, never_woken)); /* r leads */
    rec_init(&d, ch, &r, false);
    assert_true(chat_store_later(ch, &r, 200, false, ANSWER, strlen(ANSWER), NOW, done, &d));
    sem_wait(&d.ran);
    assert_true(d.stored);
    assert_int_equal(d.flight_open, 1);
    chat_get_counters(ch, &cc);
    assert_int_equal(cc.stores, 1);
    assert_int_equal(cc.store_dropped, 0);

    assert_true(req_for(ch, &again, "How do I reset my password?"));
    assert_int_equal(chat_lookup(ch, &again, NOW), CHAT_HIT);
    assert_true(again.exact);
    chat_req_fini(&again);
    chat_req_fini(&r);
    rec_fini(&d);
    chat_free(ch);
    cache_free(cache);
}

/* An error answer queues nothing: counted as skipped, flight closed. */
static void test_error_not_queued(void **state)
{
    struct cache *cache;
    struct chat *ch = new_chat(8, &cache);
    struct chat_req r, again;
    struct chat_counters cc;

    (void)state;
    assert_true(req_for(ch, &r, "How do I reset my password?"));
    assert_false(chat_flight_join(ch, &r, never_woken));
    assert_false(chat_store_later(ch, &r, 500, false, "{}", 2, NOW, done, NULL));
    chat_get_counters(ch, &cc);
    assert_int_equal(cc.store_skipped, 1);
    assert_true(req_for(ch, &again, "How do I reset my password?"));
    assert_false(chat_flight_join(ch, &again, never_woken)); /* the flight is closed */
    chat_flight_done(ch, &again);
    chat_req_fini(&again);
    chat_req_fini(&r);
    chat_free(ch);
    cache_free(cache);
}

/* With room for one waiting answer: one runs (held), one waits, the third
 * is dropped and counted, and its flight is closed at once. */
static void test_full_queue_drops(void **state)
{
    struct cache *cache;
    struct chat *ch = new_chat(1, &cache);
    static const char *const qs[3] = {"What is the capital of France?", "Who wrote Hamlet?",
                                      "How tall is Mount Everest?"};
    struct chat_req r[3], probe;
    struct done_rec d[3];
    struct chat_counters cc;

    (void)state;
    for (int i = 0; i < 3; i++) {
        assert_true(req_for(ch, &r[i], qs[i]));
        assert_false(chat_flight_join(ch, &r[i], never_woken));
        rec_init(&d[i], ch, &r[i], i == 0);
    }
    assert_true(chat_store_later(ch, &r[0], 200, false, ANSWER, strlen(ANSWER), NOW, done, &d[0]));
    /* Wait until the store thread is inside job 0's done (held there). */
    while (chat_get_counters(ch, &cc), cc.stores == 0)
        ;
    assert_true(chat_store_later(ch, &r[1], 200, false, ANSWER, strlen(ANSWER), NOW, done, &d[1]));
    assert_false(chat_store_later(ch, &r[2], 200, false, ANSWER, strlen(ANSWER), NOW, done, &d[2]));
    chat_get_counters(ch, &cc);
    assert_int_equal(cc.store_dropped, 1);
    /* With r[1] still queued, an exact hit on r[0]'s answer is served
     * without waiting, and holds one reference (the leak checker sees a
     * second one). */
    assert_true(req_for(ch, &probe, qs[0]));
    assert_int_equal(chat_lookup(ch, &probe, NOW), CHAT_HIT);
    assert_true(probe.exact);
    chat_req_fini(&probe);
    assert_true(req_for(ch, &probe, qs[2]));
    assert_false(chat_flight_join(ch, &probe, never_woken)); /* dropped: flight closed */
    chat_flight_done(ch, &probe);
    chat_req_fini(&probe);

    sem_post(&d[0].hold);
    sem_wait(&d[0].ran);
    sem_wait(&d[1].ran);
    assert_true(d[0].stored && d[1].stored);
    chat_get_counters(ch, &cc);
    assert_int_equal(cc.stores, 2);
    assert_int_equal(cc.store_queued, 0);
    for (int i = 0; i < 3; i++) {
        chat_req_fini(&r[i]);
        rec_fini(&d[i]);
    }
    chat_free(ch);
    cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stored_later),
        cmocka_unit_test(test_error_not_queued),
        cmocka_unit_test(test_full_queue_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
