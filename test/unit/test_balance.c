/* Unit tests for upstream/balance.c: smooth weighted round-robin with a
 * tried-set, and the circuit breaker, on a clock the tests move by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "upstream/balance.h"

#include <errno.h>
#include <string.h>

#define BIT(i) (UINT64_C(1) << (i))

static void add_peers(struct bal *b, const unsigned *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(bal_add(b, w[i]), (int)i);
}

/* Weights 5:1:1 give nginx's sequence a a b a c a a, and it repeats. */
static void test_smooth_sequence(void **state)
{
    static const unsigned w[] = {5, 1, 1};
    static const char want[] = "aabacaa";
    struct bal b;
    char got[15] = {0};

    (void)state;
    bal_init(&b, 3, 1000);
    add_peers(&b, w, 3);
    for (int i = 0; i < 14; i++)
        got[i] = (char)('a' + bal_pick(&b, 0, 0));
    assert_memory_equal(got, want, 7);
    assert_memory_equal(got + 7, want, 7);
}

/* Over many picks each peer's share is its weight's share, exactly. */
static void test_distribution(void **state)
{
    static const unsigned w[] = {3, 2, 0, 1}; /* 0 counts as 1 */
    unsigned count[4] = {0};
    struct bal b;

    (void)state;
    bal_init(&b, 3, 1000);
    add_peers(&b, w, 4);
    for (int i = 0; i < 7 * 100; i++)
        count[bal_pick(&b, 0, 0)]++;
    assert_int_equal(count[0], 300);
    assert_int_equal(count[1], 200);
    assert_int_equal(count[2], 100);
    assert_int_equal(count[3], 100);
}

/* Tried peers are skipped while an untried one is left; then any will do. */
static void test_tried_set(void **state)
{
    static const unsigned w[] = {5, 1, 1};
    struct bal b;

    (void)state;
    bal_init(&b, 3, 1000);
    add_peers(&b, w, 3);
    for (int i = 0; i < 20; i++) {
        int p = bal_pick(&b, BIT(0), 0);
        assert_true(p == 1 || p == 2);
        assert_int_equal(bal_pick(&b, BIT(0) | BIT(2), 0), 1);
    }
    for (int i = 0; i < 5; i++) {
        int p = bal_pick(&b, BIT(0) | BIT(1) | BIT(2), 0);
        assert_true(p >= 0 && p < 3);
    }
}

static void test_empty_and_full(void **state)
{
    struct bal b;

    (void)state;
    bal_init(&b, 3, 1000);
    assert_int_equal(bal_pick(&b, 0, 0), -1);
    assert_false(bal_ready(&b, 0));
    for (int i = 0; i < BAL_MAX; i++)
        assert_int_equal(bal_add(&b, 1), i);
    assert_int_equal(bal_add(&b, 1), -ENOSPC);
}

/* Closed until `failures` consecutive failures; a success in between starts
 * the count again. */
static void test_breaker_opens_after_n(void **state)
{
    struct bal_breaker br;

    (void)state;
    bal_breaker_init(&br, 3, 1000);
    assert_int_equal(bal_breaker_state(&br), BAL_CLOSED);
    bal_breaker_failure(&br, 10);
    bal_breaker_failure(&br, 20);
    bal_breaker_success(&br);
    bal_breaker_failure(&br, 30);
    bal_breaker_failure(&br, 40);
    assert_int_equal(bal_breaker_state(&br), BAL_CLOSED);
    assert_true(bal_breaker_allow(&br, 40));
    bal_breaker_failure(&br, 50);
    assert_int_equal(bal_breaker_state(&br), BAL_OPEN);
    assert_false(bal_breaker_allow(&br, 50));
    assert_false(bal_breaker_allow(&br, 1049));
    assert_false(bal_breaker_ready(&br, 1049));
    assert_true(bal_breaker_ready(&br, 1050));
    assert_int_equal(bal_breaker_state(&br), BAL_OPEN); /* ready() changes nothing */
}

/* After the cooldown exactly one probe goes; its success closes it. */
static void test_half_open_single_probe_closes(void **state)
{
    struct bal_breaker br;

    (void)state;
    bal_breaker_init(&br, 1, 500);
    bal_breaker_failure(&br, 100);
    assert_false(bal_breaker_allow(&br, 599));
    assert_true(bal_breaker_allow(&br, 600));
    assert_int_equal(bal_breaker_state(&br), BAL_HALF_OPEN);
    bal_breaker_begin(&br);
    assert_false(bal_breaker_allow(&br, 601)); /* the probe is out */
    assert_false(bal_breaker_allow(&br, 10000));
    assert_true(bal_breaker_ready(&br, 601)); /* not open: not unready */
    bal_breaker_success(&br);
    assert_int_equal(bal_breaker_state(&br), BAL_CLOSED);
    assert_true(bal_breaker_allow(&br, 602));
    bal_breaker_begin(&br); /* closed: no probe, no limit */
    assert_true(bal_breaker_allow(&br, 602));
}

/* A failed probe opens it again for a whole new cooldown, whatever the
 * failure count. */
static void test_probe_failure_reopens(void **state)
{
    struct bal_breaker br;

    (void)state;
    bal_breaker_init(&br, 5, 500);
    for (long t = 1; t <= 5; t++)
        bal_breaker_failure(&br, t);
    assert_int_equal(bal_breaker_state(&br), BAL_OPEN);
    assert_true(bal_breaker_allow(&br, 505));
    bal_breaker_begin(&br);
    bal_breaker_failure(&br, 700);
    assert_int_equal(bal_breaker_state(&br), BAL_OPEN);
    assert_false(bal_breaker_allow(&br, 1199));
    assert_true(bal_breaker_allow(&br, 1200));
    assert_int_equal(bal_breaker_state(&br), BAL_HALF_OPEN);
}

/* An outcome with no verdict (a relayed 429) frees the probe slot only. */
static void test_release(void **state)
{
    struct bal_breaker br;

    (void)state;
    bal_breaker_init(&br, 1, 100);
    bal_breaker_failure(&br, 0);
    assert_true(bal_breaker_allow(&br, 100));
    bal_breaker_begin(&br);
    assert_false(bal_breaker_allow(&br, 100));
    bal_breaker_release(&br);
    assert_int_equal(bal_breaker_state(&br), BAL_HALF_OPEN);
    assert_true(bal_breaker_allow(&br, 100));
}

/* The pool's view: an open peer is skipped while another can take the
 * attempt, is probed once after its cooldown, and gets its share back once
 * the probe succeeds. */
static void test_pick_with_breakers(void **state)
{
    static const unsigned w[] = {1, 1};
    struct bal b;
    long now = 0;
    int p;

    (void)state;
    bal_init(&b, 2, 1000);
    add_peers(&b, w, 2);
    bal_breaker_failure(&b.peer[0].br, now);
    bal_breaker_failure(&b.peer[0].br, now);
    for (int i = 0; i < 6; i++)
        assert_int_equal(bal_pick(&b, 0, now), 1);
    assert_true(bal_ready(&b, now));
    /* Both open: not ready, yet a pick still goes somewhere. */
    bal_breaker_failure(&b.peer[1].br, now);
    bal_breaker_failure(&b.peer[1].br, now);
    assert_false(bal_ready(&b, now));
    p = bal_pick(&b, 0, now);
    assert_true(p == 0 || p == 1);
    bal_breaker_success(&b.peer[1].br);
    /* Peer 0's cooldown passes: one pick probes it, then it waits. */
    now = 1000;
    assert_true(bal_ready(&b, now));
    for (int i = 0, probes = 0; i < 6; i++) {
        p = bal_pick(&b, 0, now);
        probes += p == 0;
        assert_true(probes <= 1);
    }
    assert_int_equal(bal_breaker_state(&b.peer[0].br), BAL_HALF_OPEN);
    assert_true(b.peer[0].br.probing);
    bal_breaker_success(&b.peer[0].br);
    {
        unsigned count[2] = {0};
        for (int i = 0; i < 10; i++)
            count[bal_pick(&b, 0, now)]++;
        assert_int_equal(count[0], 5);
        assert_int_equal(count[1], 5);
    }
}

/* A peer whose breaker is open is moved to half-open only when the request
 * could go to it: a tried peer keeps its state. */
static void test_tried_open_peer_untouched(void **state)
{
    static const unsigned w[] = {1, 1};
    struct bal b;

    (void)state;
    bal_init(&b, 1, 100);
    add_peers(&b, w, 2);
    bal_breaker_failure(&b.peer[0].br, 0);
    assert_int_equal(bal_pick(&b, BIT(0), 200), 1);
    assert_int_equal(bal_breaker_state(&b.peer[0].br), BAL_OPEN);
    assert_int_equal(bal_pick(&b, BIT(1), 200), 0);
    assert_int_equal(bal_breaker_state(&b.peer[0].br), BAL_HALF_OPEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smooth_sequence),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_tried_set),
        cmocka_unit_test(test_empty_and_full),
        cmocka_unit_test(test_breaker_opens_after_n),
        cmocka_unit_test(test_half_open_single_probe_closes),
        cmocka_unit_test(test_probe_failure_reopens),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_pick_with_breakers),
        cmocka_unit_test(test_tried_open_peer_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
