/* Unit tests for the cache service's policies, through cache/cache.h only:
 * TTL and max-age against a clock the test passes in, exact hits before
 * semantic ones, semantic candidates the verifier or the codec refuses,
 * the order in which puts and deletes come back from the log, what a
 * snapshot and the log rotation after it keep across a reopen,
 * single-flight, audits: disputed entries and raised thresholds across
 * a reopen, a snapshot and a crash, and replication through the change
 * hook and cache_apply_put / cache_apply_del.
 *
 * The payload is a malloc'd string; one that starts with '!' is tied to its
 * question (not reusable). Durable caches live in a fresh directory per
 * test and are closed without a shutdown snapshot unless a test asks for
 * one, so that a reopen reads exactly what the test wrote.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test/support/tmpdir.h"
#include "cache/base/buf.h"
#include "cache/cache.h"
#include "cache/match/embed.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define T0 1700000000000LL /* wall clock ms of the tests' first put */

/* ---- the test codec: a payload is a NUL-terminated string ---- */

static int str_encode(const void *payload, uint64_t words[2], struct buf *tail)
{
    const char *s = payload;

    words[0] = strlen(s);
    words[1] = 0;
    return buf_append(tail, s, strlen(s), 1 << 20);
}

static int str_decode(const uint64_t words[2], const void *tail, size_t len, void **payload)
{
    char *s;

    if (words[0] != len)
        return -EBADMSG;
    if (!(s = malloc(len + 1)))
        return -ENOMEM;
    memcpy(s, tail, len);
    s[len] = '\0';
    *payload = s;
    return 0;
}

static size_t str_size(const void *payload)
{
    return strlen(payload) + 1;
}

static bool str_reusable(const void *payload)
{
    return ((const char *)payload)[0] != '!';
}

static const struct cache_codec str_codec = {
    .encode = str_encode,
    .decode = str_decode,
    .free = free,
    .size = str_size,
    .reusable = str_reusable,
};

/* ---- fixtures ---- */

static char dir[256];

static void make_dir(void)
{
    assert_int_equal(tmpdir_make(dir, sizeof(dir), "parrot-cache"), 0);
}

static void remove_dir(void)
{
    tmpdir_remove(dir);
}

static int setup(void **state)
{
    (void)state;
    make_dir();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    remove_dir();
    return 0;
}

/* A cache in memory with the builtin embedder (a cache needs one: the
 * store's vectors have its dimension), at a threshold low enough that any
 * related text is a semantic candidate. Lookups without a text are exact
 * only. */
static struct cache *new_cache(bool verifier)
{
    struct cache_opts o = {.codec = &str_codec,
                           .embedder_name = "builtin",
                           .threshold = 0.1f,
                           .verifier = verifier,
                           .max_wrong_rate = 0.02,
                           .audit_min = 3,
                           .max_memory = 64 << 20}; /* 0 would keep one entry */
    struct cache *c = NULL;

    assert_int_equal(embed_builtin_new(&o.emb), 0);
    assert_int_equal(cache_new(&o, &c), 0);
    return c;
}

/* A cache made durable in dir, as of now. */
static struct cache *open_cache(int64_t now)
{
    struct cache *c = new_cache(false);
    char msg[1200];

    assert_int_equal(cache_open(c, dir, "batch", now, msg, sizeof(msg)), 0);
    return c;
}

static void key(uint8_t out[CACHE_KEY_LEN], int n)
{
    memset(out, 0, CACHE_KEY_LEN);
    out[0] = (uint8_t)n;
    out[CACHE_KEY_LEN - 1] = 0xaa;
}

static const uint8_t partition[CACHE_KEY_LEN] = {7};

/* Store the string answer under exact key k with text (may be NULL). */
static void put(struct cache *c, int k, const char *text, const char *answer, int64_t ttl,
                int64_t now)
{
    uint8_t exact[CACHE_KEY_LEN];
    struct cache_query q = {.partition = partition, .exact = exact, .max_age = -1};
    uint64_t seq;

    key(exact, k);
    q.text = text;
    q.text_len = text ? strlen(text) : 0;
    assert_int_equal(cache_put(c, &q, strdup(answer), 1.0, ttl, now, &seq), 0);
    cache_query_fini(&q);
}

/* Look k (and text, when not NULL) up at now: the result, and the answer
 * copied into got ("" on a miss). */
static enum cache_result lookup(struct cache *c, int k, const char *text, int64_t now,
                                int64_t max_age, char *got, size_t gotlen)
{
    uint8_t exact[CACHE_KEY_LEN];
    struct cache_query q = {.partition = partition, .exact = exact, .max_age = max_age};
    enum cache_result r;

    key(exact, k);
    q.text = text;
    q.text_len = text ? strlen(text) : 0;
    r = cache_lookup(c, &q, now);
    snprintf(got, gotlen, "%s", q.hit ? (const char *)cache_entry_payload(q.hit) : "");
    cache_query_fini(&q);
    return r;
}

static void del(struct cache *c, int k)
{
    struct cache_ref ref = {.id = 0};
    size_t removed;
    bool logged;

    key(ref.exact, k);
    assert_int_equal(cache_delete(c, &ref, 1, &removed, &logged), 0);
    assert_int_equal(removed, 1);
    assert_true(logged);
}

/* ---- TTL ---- */

static void test_ttl_expiry(void **state)
{
    struct cache *c = new_cache(false);
    char got[64];

    (void)state;
    put(c, 1, NULL, "one", 1000, T0);
    put(c, 2, NULL, "forever", 0, T0);
    assert_int_equal(lookup(c, 1, NULL, T0 + 999, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_string_equal(got, "one");
    /* Expired at created + ttl exactly, and for every later clock. */
    assert_int_equal(lookup(c, 1, NULL, T0 + 1000, -1, got, sizeof(got)), CACHE_MISS);
    assert_string_equal(got, "");
    assert_int_equal(lookup(c, 2, NULL, T0 + 1000000, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    /* The client's max-age narrows what it accepts; the entry stays. */
    assert_int_equal(lookup(c, 2, NULL, T0 + 500, 100, got, sizeof(got)), CACHE_MISS);
    assert_int_equal(lookup(c, 2, NULL, T0 + 500, 500, got, sizeof(got)), CACHE_HIT_EXACT);
    cache_free(c);
}

/* A reopen drops the logged entries that expired by the time passed in. */
static void test_ttl_expired_at_reopen(void **state)
{
    struct cache *c = open_cache(T0);
    char got[64];

    (void)state;
    put(c, 1, NULL, "short", 1000, T0);
    put(c, 2, NULL, "long", 60000, T0);
    cache_free(c);

    c = open_cache(T0 + 5000);
    assert_int_equal(lookup(c, 1, NULL, T0 + 5000, -1, got, sizeof(got)), CACHE_MISS);
    assert_int_equal(lookup(c, 2, NULL, T0 + 5000, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_string_equal(got, "long");
    cache_free(c);
}

/* ---- verdict order ---- */

static void test_exact_before_semantic(void **state)
{
    struct cache *c = new_cache(false);
    const char *a = "how do I reverse a list in python";
    const char *b = "how do I reverse a linked list in python quickly";
    char got[64];

    (void)state;
    put(c, 1, a, "answer a", 0, T0);
    put(c, 2, b, "answer b", 0, T0);
    /* Key 1 with b's very text: the exact key wins over the closer text. */
    assert_int_equal(lookup(c, 1, b, T0, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_string_equal(got, "answer a");
    /* An unknown key with b's text: the semantic match. */
    assert_int_equal(lookup(c, 3, b, T0, -1, got, sizeof(got)), CACHE_HIT_SEMANTIC);
    assert_string_equal(got, "answer b");
    /* No text: exact only. */
    assert_int_equal(lookup(c, 3, NULL, T0, -1, got, sizeof(got)), CACHE_MISS);
    cache_free(c);
}

/* A candidate above the threshold that the verifier tells apart is a miss,
 * and counted under the verifier's reason. A question with other numbers
 * is not even a candidate: the lookup searches its own group alone. */
static void test_verifier_refusal_is_miss(void **state)
{
    const char *stored = "turn on the lights in the kitchen",
               *asked = "turn off the lights in the kitchen";
    const char *sum = "what is 2 plus 2", *other_sum = "what is 3 plus 3";
    struct cache *plain = new_cache(false), *checked = new_cache(true);
    struct cache_stats st;
    char got[64];

    (void)state;
    put(plain, 1, stored, "on", 0, T0);
    put(checked, 1, stored, "on", 0, T0);
    put(plain, 3, sum, "four", 0, T0);
    put(checked, 3, sum, "four", 0, T0);
    /* Without the verifier the candidates are hits: they are above the threshold. */
    assert_int_equal(lookup(plain, 2, asked, T0, -1, got, sizeof(got)), CACHE_HIT_SEMANTIC);
    assert_string_equal(got, "on");
    assert_int_equal(lookup(plain, 4, other_sum, T0, -1, got, sizeof(got)), CACHE_HIT_SEMANTIC);
    assert_string_equal(got, "four");
    assert_int_equal(lookup(checked, 2, asked, T0, -1, got, sizeof(got)), CACHE_MISS);
    assert_string_equal(got, "");
    assert_int_equal(lookup(checked, 4, other_sum, T0, -1, got, sizeof(got)), CACHE_MISS);
    cache_get_stats(checked, &st);
    assert_int_equal(st.rejected[VERIFY_OPPOSITE], 1);
    assert_int_equal(st.rejected[VERIFY_NUMBERS], 0);
    /* The same numbers in other words are in the group, and served. */
    assert_int_equal(lookup(checked, 5, "what's 2 plus 2", T0, -1, got, sizeof(got)),
                     CACHE_HIT_SEMANTIC);
    assert_string_equal(got, "four");
    cache_free(plain);
    cache_free(checked);
}

/* A query's group is worked out once: the lookup's, the queued-answer
 * scan's and the put's are the same value, verify_group()'s with the
 * verifier on and 0 without. The put files the entry under the query's
 * group as it stands: one set to another group is not found by a lookup
 * of the same text (it would be, were the put to work it out again). */
static void test_query_group(void **state)
{
    const char *text = "what is 2 plus 2";
    struct cache *plain = new_cache(false), *checked = new_cache(true);
    uint8_t exact[CACHE_KEY_LEN];
    struct cache_query q = {.partition = partition, .exact = exact, .max_age = -1};
    uint64_t want = verify_group(text, strlen(text)), seq;
    char got[64];

    (void)state;
    assert_int_not_equal(want, 0);
    key(exact, 1);
    q.text = text;
    q.text_len = strlen(text);
    assert_int_equal(cache_query_group(plain, &q), 0);
    q.group_done = false;
    assert_int_equal(cache_lookup(checked, &q, T0), CACHE_MISS);
    assert_true(q.group_done);
    assert_int_equal(q.group, want);
    assert_int_equal(cache_query_group(checked, &q), want);
    q.group = want + 1; /* as if another question's */
    assert_int_equal(cache_put(checked, &q, strdup("four"), 1.0, 0, T0, &seq), 0);
    cache_query_fini(&q);
    assert_int_equal(lookup(checked, 2, "what's 2 plus 2", T0, -1, got, sizeof(got)), CACHE_MISS);
    put(checked, 3, text, "four", 0, T0);
    assert_int_equal(lookup(checked, 2, "what's 2 plus 2", T0, -1, got, sizeof(got)),
                     CACHE_HIT_SEMANTIC);
    cache_free(plain);
    cache_free(checked);
}

/* A payload the codec calls unreusable answers only its own key. */
static void test_unreusable_is_exact_only(void **state)
{
    struct cache *c = new_cache(false);
    const char *text = "list the files in my home directory";
    struct cache_stats st;
    char got[64];

    (void)state;
    put(c, 1, text, "!tied", 0, T0);
    assert_int_equal(lookup(c, 1, text, T0, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_int_equal(lookup(c, 2, text, T0, -1, got, sizeof(got)), CACHE_MISS);
    cache_get_stats(c, &st);
    assert_int_equal(st.rejected_unreusable, 1);
    cache_free(c);
}

/* ---- replay order ---- */

/* Puts and deletes of one key come back from the log in the order they
 * were made: a put after a delete survives, a delete after a put holds. */
static void test_put_del_replay_order(void **state)
{
    struct cache *c = open_cache(T0);
    struct cache_stats st;
    char got[64];

    (void)state;
    put(c, 1, NULL, "first", 0, T0);
    del(c, 1);
    put(c, 1, NULL, "second", 0, T0 + 1);
    put(c, 2, NULL, "doomed", 0, T0 + 2);
    del(c, 2);
    put(c, 3, NULL, "old", 0, T0 + 3);
    put(c, 3, NULL, "new", 0, T0 + 4); /* replaces, no delete */
    cache_free(c);

    c = open_cache(T0 + 10);
    assert_int_equal(lookup(c, 1, NULL, T0 + 10, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_string_equal(got, "second");
    assert_int_equal(lookup(c, 2, NULL, T0 + 10, -1, got, sizeof(got)), CACHE_MISS);
    assert_int_equal(lookup(c, 3, NULL, T0 + 10, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_string_equal(got, "new");
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 2);
    cache_free(c);
}

/* ---- snapshot, then log rotation ---- */

/* After a snapshot the log holds only what came later: entries put after
 * it survive a reopen, and a delete after it stays deleted although the
 * snapshot still holds the entry. */
static void test_snapshot_then_rotation(void **state)
{
    struct cache *c = open_cache(T0);
    struct cache_stats st;
    char msg[1200], got[64];

    (void)state;
    put(c, 1, NULL, "in snapshot, deleted later", 0, T0);
    put(c, 2, NULL, "in snapshot", 0, T0);
    assert_int_equal(cache_snapshot(c, msg, sizeof(msg)), 0);
    put(c, 3, NULL, "after snapshot", 0, T0 + 1);
    del(c, 1);
    cache_get_stats(c, &st);
    assert_int_equal(st.snaps, 1);
    cache_free(c);

    c = open_cache(T0 + 10);
    assert_int_equal(lookup(c, 1, NULL, T0 + 10, -1, got, sizeof(got)), CACHE_MISS);
    assert_int_equal(lookup(c, 2, NULL, T0 + 10, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_string_equal(got, "in snapshot");
    assert_int_equal(lookup(c, 3, NULL, T0 + 10, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_string_equal(got, "after snapshot");

    /* A second snapshot over the replayed state, then a reopen from it and
     * an empty log: the same three answers. */
    assert_int_equal(cache_snapshot(c, msg, sizeof(msg)), 0);
    cache_free(c);
    c = open_cache(T0 + 20);
    assert_int_equal(lookup(c, 1, NULL, T0 + 20, -1, got, sizeof(got)), CACHE_MISS);
    assert_int_equal(lookup(c, 2, NULL, T0 + 20, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_int_equal(lookup(c, 3, NULL, T0 + 20, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 2);
    cache_free(c);
}

/* A memory-only cache has no snapshots to take. */
static void test_snapshot_needs_persistence(void **state)
{
    struct cache *c = new_cache(false);
    char msg[200];

    (void)state;
    assert_int_equal(cache_snapshot(c, msg, sizeof(msg)), -EINVAL);
    cache_free(c);
}

/* ---- single-flight ---- */

struct waiter {
    struct flight_waiter w; /* first member: wake casts back */
    int woken;
};

static void wake(struct flight_waiter *w)
{
    ((struct waiter *)w)->woken++;
}

static void test_single_flight(void **state)
{
    struct cache *c = new_cache(false);
    uint8_t a[CACHE_KEY_LEN], b[CACHE_KEY_LEN];
    struct waiter lead = {.w.wake = wake}, w1 = {.w.wake = wake}, w2 = {.w.wake = wake};
    struct waiter other = {.w.wake = wake};

    (void)state;
    key(a, 1);
    key(b, 2);
    assert_int_equal(cache_flight_join(c, a, &lead.w), 1);
    assert_int_equal(cache_flight_join(c, a, &w1.w), 0);
    assert_int_equal(cache_flight_join(c, a, &w2.w), 0);
    assert_int_equal(cache_flight_join(c, b, &other.w), 1); /* another key leads on its own */
    cache_flight_done(c, a);
    assert_int_equal(w1.woken, 1);
    assert_int_equal(w2.woken, 1);
    assert_int_equal(lead.woken, 0);
    assert_int_equal(other.woken, 0);
    /* The flight is closed: the next request for a leads again. */
    assert_int_equal(cache_flight_join(c, a, &lead.w), 1);
    cache_flight_done(c, a);
    cache_flight_done(c, b);
    assert_int_equal(w1.woken, 1);
    cache_free(c);
}

/* ---- audits ---- */

static const char *const asked = "how can I reverse a list in python";

/* A semantic lookup of key 2 with the paraphrase: the hit's id, or 0. */
static uint64_t semantic_hit(struct cache *c, int64_t now)
{
    uint8_t exact[CACHE_KEY_LEN];
    struct cache_query q = {.partition = partition, .exact = exact, .max_age = -1};
    struct cache_entry_info in;
    uint64_t id = 0;

    key(exact, 2);
    q.text = asked;
    q.text_len = strlen(asked);
    if (cache_lookup(c, &q, now) == CACHE_HIT_SEMANTIC) {
        cache_entry_describe(q.hit, &in);
        id = in.id;
    }
    cache_query_fini(&q);
    return id;
}

/* Three wrong audits of the hit on key 1: the entry is disputed, and the
 * third (audit_min) raises the partition's threshold one step. */
static void audit_wrong(struct cache *c, uint64_t id)
{
    uint8_t exact[CACHE_KEY_LEN];
    struct cache_audit_outcome out;

    key(exact, 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cache_audit_record(c, partition, exact, id, true, &out), 0);
        assert_true(out.disputed);
        assert_true(out.tracked);
        assert_int_equal(out.now.audits, (uint64_t)i + 1);
        assert_int_equal(out.moved, i == 2);
    }
}

/* What survives: key 1 hits exactly but no longer by meaning, and the
 * partition runs one step above the base with its tallies. */
static void check_audited(struct cache *c, int64_t now)
{
    struct budget_part bp;
    struct cache_stats st;
    char got[64];

    assert_int_equal(semantic_hit(c, now), 0);
    assert_int_equal(lookup(c, 1, NULL, now, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_string_equal(got, "reverse it");
    assert_float_equal(cache_threshold(c, partition), 0.1f + BUDGET_STEP, 1e-6);
    assert_int_equal(cache_audit_partitions(c, &bp, 1), 1);
    assert_int_equal(bp.audits, 3);
    assert_int_equal(bp.wrong, 3);
    assert_int_equal(bp.waudits, 0); /* the window restarted when it moved */
    cache_get_stats(c, &st);
    assert_int_equal(st.audit.audits, 3);
    assert_int_equal(st.audit.raised, 1);
    assert_int_equal(st.rejected_disputed, 1);
}

/* In memory: an agreeing audit, and a dispute that comes too late. */
static void test_audit_agree_and_stale(void **state)
{
    struct cache *c = new_cache(false);
    struct cache_audit_outcome out;
    uint8_t exact[CACHE_KEY_LEN];
    uint64_t id;

    (void)state;
    put(c, 1, "how do I reverse a list in python", "reverse it", 0, T0);
    put(c, 3, "what is the boiling point of water", "100 C", 0, T0);
    id = semantic_hit(c, T0);
    assert_true(id != 0);
    /* An agreeing audit changes nothing but the tallies. */
    key(exact, 1);
    assert_int_equal(cache_audit_record(c, partition, exact, id, false, &out), 0);
    assert_false(out.disputed);
    assert_false(out.moved);
    assert_true(semantic_hit(c, T0) == id);
    /* A dispute decided on an older entry spares the one that replaced it. */
    assert_int_equal(cache_audit_record(c, partition, exact, id + 1, true, &out), 0);
    assert_false(out.disputed);
    assert_true(semantic_hit(c, T0) == id);
    assert_int_equal(out.now.audits, 2);
    assert_int_equal(out.now.wrong, 1);
    cache_free(c);
}

static void test_audit_dispute_survives(void **state)
{
    struct cache *c = open_cache(T0);
    char msg[1200];
    uint64_t id;

    (void)state;
    put(c, 1, "how do I reverse a list in python", "reverse it", 0, T0);
    cache_free(c);
    c = open_cache(T0 + 10);
    id = semantic_hit(c, T0 + 10);
    assert_true(id != 0);
    audit_wrong(c, id);
    check_audited(c, T0 + 10);
    cache_free(c);

    /* From the log alone. */
    c = open_cache(T0 + 20);
    check_audited(c, T0 + 20);
    /* Then from a snapshot (the flag) and the compacted log (the tallies). */
    assert_int_equal(cache_snapshot(c, msg, sizeof(msg)), 0);
    cache_free(c);
    c = open_cache(T0 + 30);
    check_audited(c, T0 + 30);
    cache_free(c);
}

/* A process that dies after its audits reached the disk (no shutdown, no
 * snapshot): the restart finds them in the log. */
static void test_audit_crash_restart(void **state)
{
    struct cache *c;
    pid_t pid;
    int status;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct cache_stats st;

        c = open_cache(T0);
        put(c, 1, "how do I reverse a list in python", "reverse it", 0, T0);
        audit_wrong(c, semantic_hit(c, T0));
        do {
            usleep(1000);
            cache_get_stats(c, &st);
        } while (st.wal_durable_seq < st.wal_last_seq);
        _exit(0); /* the crash: no cache_free, nothing flushed on the way out */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    c = open_cache(T0 + 10);
    check_audited(c, T0 + 10);
    cache_free(c);
}

/* ---- replication: the change hook and the apply functions ---- */

/* What the hook saw, applied to another cache as a replica would. */
struct relay {
    struct cache *to;
    int puts, dels;
    uint64_t last_seq;
};

static void relay_change(void *ud, const struct cache_change *ch)
{
    struct relay *r = ud;
    uint64_t seq;
    size_t removed;

    if (ch->kind == CACHE_CHANGE_PUT) {
        r->puts++;
        assert_non_null(ch->exact);
        assert_int_equal(cache_apply_put(r->to, ch->rec, ch->rec_len, T0 + 1, &seq), 0);
    } else {
        r->dels++;
        assert_int_equal(cache_apply_del(r->to, ch->refs, ch->nrefs, &removed, &seq), 0);
        assert_int_equal(removed, ch->nrefs);
    }
    r->last_seq = ch->seq;
}

/* Every entry's id, via the admin API's scan. */
static int collect_id(void *ud, const struct cache_entry *e)
{
    struct cache_entry_info in;
    uint64_t *ids = ud;

    cache_entry_describe(e, &in);
    ids[ids[0] + 1] = in.id;
    ids[0]++;
    return 0;
}

static void test_replication_hook_and_apply(void **state)
{
    struct cache *a = open_cache(T0), *b = new_cache(false);
    struct relay r = {.to = b};
    uint64_t ida[8] = {0}, idb[8] = {0};
    char got[64];

    (void)state;
    cache_set_change_hook(a, relay_change, &r);
    put(a, 1, "how do I reset my password", "answer one", 0, T0);
    put(a, 2, NULL, "answer two", 0, T0);
    assert_int_equal(r.puts, 2);
    assert_true(r.last_seq > 0); /* a is durable: the change carries its log position */
    /* Exact and semantic hits on the replica, under the same ids. */
    assert_int_equal(lookup(b, 2, NULL, T0 + 2, -1, got, sizeof(got)), CACHE_HIT_EXACT);
    assert_string_equal(got, "answer two");
    assert_int_equal(lookup(b, 9, "how can I reset my password", T0 + 2, -1, got, sizeof(got)),
                     CACHE_HIT_SEMANTIC);
    assert_string_equal(got, "answer one");
    cache_scan(a, collect_id, ida);
    cache_scan(b, collect_id, idb);
    assert_int_equal(ida[0], 2);
    assert_int_equal(idb[0], 2);
    assert_true((ida[1] == idb[1] && ida[2] == idb[2]) || (ida[1] == idb[2] && ida[2] == idb[1]));
    /* Applying the same put again is the same entry, not a second one. */
    put(a, 2, NULL, "answer two", 0, T0);
    cache_scan(b, collect_id, (idb[0] = 0, idb));
    assert_int_equal(idb[0], 2);

    del(a, 1);
    assert_int_equal(r.dels, 1);
    assert_int_equal(lookup(b, 1, NULL, T0 + 3, -1, got, sizeof(got)), CACHE_MISS);
    /* Applied changes are not reported again: b has no hook, and a's hook
     * saw only a's own changes. */
    assert_int_equal(r.puts, 3);
    /* A record that is not one is refused. */
    {
        uint64_t seq;
        assert_int_equal(cache_apply_put(b, "junk", 4, T0, &seq), -EBADMSG);
    }
    cache_free(a);
    cache_free(b);
}

/* An entry keeps its id across a restart that replays it from the log. */
static void test_ids_survive_replay(void **state)
{
    struct cache *c = open_cache(T0);
    uint64_t before[4] = {0}, after[4] = {0};

    (void)state;
    put(c, 1, NULL, "kept", 0, T0);
    cache_scan(c, collect_id, before);
    cache_free(c);
    c = open_cache(T0 + 5);
    cache_scan(c, collect_id, after);
    assert_int_equal(after[0], 1);
    assert_int_equal(after[1], before[1]);
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ttl_expiry),
        cmocka_unit_test_setup_teardown(test_ttl_expired_at_reopen, setup, teardown),
        cmocka_unit_test(test_exact_before_semantic),
        cmocka_unit_test(test_verifier_refusal_is_miss),
        cmocka_unit_test(test_query_group),
        cmocka_unit_test(test_unreusable_is_exact_only),
        cmocka_unit_test_setup_teardown(test_put_del_replay_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_then_rotation, setup, teardown),
        cmocka_unit_test(test_snapshot_needs_persistence),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_audit_agree_and_stale),
        cmocka_unit_test_setup_teardown(test_audit_dispute_survives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_crash_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replication_hook_and_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_survive_replay, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
