/* Unit tests for proxy/chat.c's store queue (chat_store_later): an answer
 * is stored on the store thread after its client has it, the requests
 * waiting behind it are released only once it is stored, and a full queue
 * drops the store (counted), never the answer. Read-your-writes: a lookup
 * that a queued answer could serve (a paraphrase, the same question) waits
 * for it and hits; an unrelated one never waits. Back-pressure: a queue
 * behind makes new misses wait their turn instead of dropping stores. */
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

/* chat_await's callback: r->owner is a semaphore. */
static void stored_wake(struct chat_req *r)
{
    sem_post(r->owner);
}

/* Queue an answer to r, a new question that leads its flight. */
static void queue_answer(struct chat *ch, struct chat_req *r, struct done_rec *d, bool held)
{
    assert_false(chat_flight_join(ch, r, never_woken));
    rec_init(d, ch, r, held);
    assert_true(chat_store_later(ch, r, 200, false, ANSWER, strlen(ANSWER), NOW, done, d));
}

/* Hold the store thread inside the done of the answer to first (stored
 * already), so that the answers queued after it stay queued. */
static void hold_store_thread(struct chat *ch, struct chat_req *first, struct done_rec *d)
{
    struct chat_counters cc;

    assert_true(req_for(ch, first, "What is the capital of France?"));
    queue_answer(ch, first, d, true);
    while (chat_get_counters(ch, &cc), cc.stores == 0)
        ;
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

/* The end of a test that held the store thread in first's done (d0) with
 * r's answer queued behind it (d1), released since: both have run, r's
 * answer is stored, and everything is freed. */
static void end_held(struct chat *ch, struct cache *cache, struct chat_req *first,
                     struct done_rec *d0, struct chat_req *r, struct done_rec *d1)
{
    sem_wait(&d0->ran);
    sem_wait(&d1->ran);
    assert_true(d1->stored);
    chat_req_fini(first);
    chat_req_fini(r);
    rec_fini(d0);
    rec_fini(d1);
    chat_free(ch);
    cache_free(cache);
}

/* A paraphrase and a repeat of a queued answer wait for it and hit; an
 * unrelated question, in the same partition, never waits. (Not the
 * question done() probes: r leads its flight meanwhile.) */
static void test_read_your_writes(void **state)
{
    struct cache *cache;
    struct chat *ch = new_chat(8, &cache);
    struct chat_req first, r, para, same, other;
    struct done_rec d0, d1;
    sem_t woken;

    (void)state;
    sem_init(&woken, 0, 0);
    hold_store_thread(ch, &first, &d0);
    assert_true(req_for(ch, &r, "How can I cancel my subscription?"));
    queue_answer(ch, &r, &d1, false);

    assert_true(req_for(ch, &para, "how do I cancel my subscription"));
    assert_int_equal(chat_lookup(ch, &para, NOW), CHAT_WAIT);
    para.owner = &woken;
    assert_true(chat_await(ch, &para, stored_wake));
    assert_true(req_for(ch, &same, "How can I cancel my subscription?"));
    assert_int_equal(chat_lookup(ch, &same, NOW), CHAT_WAIT);
    same.owner = &woken;
    assert_true(chat_await(ch, &same, stored_wake));
    /* Near by vector (the same words but two), turned down by the
     * verifier: no wait. */
    assert_true(req_for(ch, &other, "How can I cancel my order?"));
    assert_int_equal(chat_lookup(ch, &other, NOW), CHAT_MISS);
    chat_req_fini(&other);
    assert_true(req_for(ch, &other, "Who wrote Hamlet?"));
    assert_int_equal(chat_lookup(ch, &other, NOW), CHAT_MISS);
    chat_req_fini(&other);

    sem_post(&d0.hold);
    sem_wait(&woken);
    sem_wait(&woken);
    assert_int_equal(chat_lookup(ch, &para, NOW), CHAT_HIT);
    assert_false(para.exact);
    assert_int_equal(chat_lookup(ch, &same, NOW), CHAT_HIT);
    assert_true(same.exact);
    /* Stored already: chat_await declines, and the lookup hits. */
    assert_true(req_for(ch, &other, "how do I cancel my subscription"));
    other.await_seq = same.await_seq;
    assert_false(chat_await(ch, &other, stored_wake));
    chat_req_fini(&other);

    chat_req_fini(&para);
    chat_req_fini(&same);
    sem_destroy(&woken);
    end_held(ch, cache, &first, &d0, &r, &d1);
}

/* A queued answer is compared only with lookups of its group (the same
 * numbers): a paraphrase with them waits for it and hits, one with other
 * numbers does not wait. r looked up first, so the job has the group its
 * lookup worked out, the paraphrase the one its queue scan did. */
static void test_read_your_writes_numbers(void **state)
{
    struct cache *cache;
    struct chat *ch = new_chat(8, &cache);
    struct chat_req first, r, para, other;
    struct done_rec d0, d1;
    sem_t woken;

    (void)state;
    sem_init(&woken, 0, 0);
    hold_store_thread(ch, &first, &d0);
    assert_true(req_for(ch, &r, "How can I cancel my subscription for 2 months?"));
    assert_int_equal(chat_lookup(ch, &r, NOW), CHAT_MISS);
    queue_answer(ch, &r, &d1, false);

    assert_true(req_for(ch, &other, "How can I cancel my subscription for 3 months?"));
    assert_int_equal(chat_lookup(ch, &other, NOW), CHAT_MISS);
    chat_req_fini(&other);
    assert_true(req_for(ch, &para, "how do I cancel my subscription for two months"));
    assert_int_equal(chat_lookup(ch, &para, NOW), CHAT_WAIT);
    para.owner = &woken;
    assert_true(chat_await(ch, &para, stored_wake));

    sem_post(&d0.hold);
    sem_wait(&woken);
    assert_int_equal(chat_lookup(ch, &para, NOW), CHAT_HIT);
    assert_false(para.exact);
    chat_req_fini(&para);
    sem_destroy(&woken);
    end_held(ch, cache, &first, &d0, &r, &d1);
}

/* With half the queue (2 of 4) waiting, a new miss waits until one more is
 * stored, once, then goes on: a full queue is never reached. */
static void test_back_pressure(void **state)
{
    struct cache *cache;
    struct chat *ch = new_chat(4, &cache);
    static const char *const qs[2] = {"Who wrote Hamlet?", "How tall is Mount Everest?"};
    struct chat_req first, r[2], m;
    struct done_rec d0, d[2];
    struct chat_counters cc;
    sem_t woken;

    (void)state;
    sem_init(&woken, 0, 0);
    hold_store_thread(ch, &first, &d0);
    for (int i = 0; i < 2; i++) {
        assert_true(req_for(ch, &r[i], qs[i]));
        queue_answer(ch, &r[i], &d[i], false);
    }
    assert_true(req_for(ch, &m, "How do I reset my password?"));
    assert_int_equal(chat_lookup(ch, &m, NOW), CHAT_WAIT);
    assert_int_equal(m.await_seq, 2); /* r[0]'s answer */
    m.owner = &woken;
    assert_true(chat_await(ch, &m, stored_wake));
    sem_post(&d0.hold);
    sem_wait(&woken);
    /* Its turn: a miss now, whatever the queue holds. */
    assert_int_equal(chat_lookup(ch, &m, NOW), CHAT_MISS);
    chat_settle(ch);
    chat_get_counters(ch, &cc);
    assert_int_equal(cc.stores, 3);
    assert_int_equal(cc.store_dropped, 0);

    sem_wait(&d0.ran);
    for (int i = 0; i < 2; i++) {
        sem_wait(&d[i].ran);
        assert_true(d[i].stored);
        chat_req_fini(&r[i]);
        rec_fini(&d[i]);
    }
    chat_req_fini(&m);
    chat_req_fini(&first);
    rec_fini(&d0);
    sem_destroy(&woken);
    chat_free(ch);
    cache_free(cache);
}

#define BURST 64

/* A burst of new questions, each answered as soon as it may go to the
 * provider, through a queue of 8: every one is stored, none dropped. The
 * store thread is held at first, so that the burst meets the back-pressure
 * whatever the threads' speeds (a thread sanitizer slows them unevenly);
 * the first wait lets it go. */
static void test_burst_not_dropped(void **state)
{
    struct cache *cache;
    struct chat *ch = new_chat(8, &cache);
    struct chat_req *r = calloc(BURST, sizeof(*r));
    struct done_rec *d = calloc(BURST, sizeof(*d));
    struct chat_req first;
    struct done_rec d0;
    struct chat_counters cc;
    unsigned waits = 0;
    sem_t woken;

    (void)state;
    assert_non_null(r);
    assert_non_null(d);
    sem_init(&woken, 0, 0);
    hold_store_thread(ch, &first, &d0);
    for (int i = 0; i < BURST; i++) {
        char q[64];
        enum chat_verdict v;

        snprintf(q, sizeof(q), "Tell me fact number 1-%d about rivers.", i + 1);
        assert_true(req_for(ch, &r[i], q));
        r[i].owner = &woken;
        while ((v = chat_lookup(ch, &r[i], NOW)) == CHAT_WAIT) {
            if (waits++ == 0)
                sem_post(&d0.hold);
            if (chat_await(ch, &r[i], stored_wake))
                sem_wait(&woken);
        }
        assert_int_equal(v, CHAT_MISS);
        queue_answer(ch, &r[i], &d[i], false);
    }
    assert_true(waits > 0);
    chat_settle(ch);
    chat_get_counters(ch, &cc);
    assert_int_equal(cc.stores, BURST + 1);
    assert_int_equal(cc.store_dropped, 0);
    sem_wait(&d0.ran);
    for (int i = 0; i < BURST; i++) {
        sem_wait(&d[i].ran);
        chat_req_fini(&r[i]);
        rec_fini(&d[i]);
    }
    chat_req_fini(&first);
    rec_fini(&d0);
    free(r);
    free(d);
    sem_destroy(&woken);
    chat_free(ch);
    cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stored_later),
        cmocka_unit_test(test_error_not_queued),
        cmocka_unit_test(test_full_queue_drops),
        cmocka_unit_test(test_read_your_writes),
        cmocka_unit_test(test_read_your_writes_numbers),
        cmocka_unit_test(test_back_pressure),
        cmocka_unit_test(test_burst_not_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
