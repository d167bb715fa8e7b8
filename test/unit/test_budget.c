/* Unit tests for cache/budget.c: when a partition's threshold rises, when
 * it decays, and that partitions are independent and bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/budget.h"

#include <string.h>

static const uint8_t pa[BUDGET_KEY_LEN] = {1}, pb[BUDGET_KEY_LEN] = {2};

static struct budget *make(void)
{
    struct budget_opts o = {.base = 0.70f, .max_rate = 0.02, .min_audits = 5};
    struct budget *b = NULL;

    assert_int_equal(budget_new(&o, &b), 0);
    return b;
}

static bool record(struct budget *b, const uint8_t *p, bool different, struct budget_part *after)
{
    bool tracked;
    bool moved = budget_record(b, p, different, after, &tracked);

    assert_true(tracked);
    return moved;
}

static void test_rise_needs_audits_and_a_disagreement(void **state)
{
    struct budget *b = make();
    struct budget_part after;
    struct budget_totals t;

    (void)state;
    /* Four disagreements: too few audits to move a fresh partition. */
    for (int i = 0; i < 4; i++)
        assert_false(record(b, pa, true, &after));
    assert_float_equal(budget_threshold(b, pa), 0.70f, 0);
    /* The fifth moves it one step; the window restarts. */
    assert_true(record(b, pa, true, &after));
    assert_float_equal(after.threshold, 0.72f, 1e-6);
    assert_int_equal(after.waudits, 0);
    assert_float_equal(budget_threshold(b, pa), 0.72f, 1e-6);
    /* Agreement right after a rise moves nothing: 1 audit bounds nothing. */
    assert_false(record(b, pa, false, &after));
    /* Every later disagreement while the bound is above P: another step. */
    assert_true(record(b, pa, true, &after));
    assert_float_equal(after.threshold, 0.74f, 1e-6);
    /* Another partition is untouched. */
    assert_float_equal(budget_threshold(b, pb), 0.70f, 0);
    budget_get_totals(b, &t);
    assert_int_equal(t.audits, 7);
    assert_int_equal(t.wrong, 6);
    assert_int_equal(t.raised, 1);
    assert_float_equal(t.max_threshold, 0.74f, 1e-6);
    budget_free(b);
}

static void test_cap_and_slow_decay(void **state)
{
    struct budget *b = make();
    struct budget_part after;
    int moves = 0;

    (void)state;
    for (int i = 0; i < 40; i++)
        record(b, pa, true, &after);
    assert_float_equal(budget_threshold(b, pa), 1.0f, 0); /* capped */
    /* 182 agreeing audits bound the rate at just over 2%: no decay yet. */
    for (int i = 0; i < 182; i++)
        moves += record(b, pa, false, &after);
    assert_int_equal(moves, 0);
    /* The 183rd brings the bound under 2%: half a step down. */
    assert_true(record(b, pa, false, &after));
    assert_float_equal(after.threshold, 0.99f, 1e-6);
    budget_free(b);
}

static void test_decay_stops_at_base_and_restore(void **state)
{
    struct budget *b = make();
    struct budget_part p = {.threshold = 0.705f, .audits = 10, .wrong = 2};
    struct budget_part after, list[2];
    struct budget_totals t;

    (void)state;
    memcpy(p.partition, pb, BUDGET_KEY_LEN);
    assert_int_equal(budget_restore(b, &p), 0);
    assert_float_equal(budget_threshold(b, pb), 0.705f, 1e-6);
    for (int i = 0; i < 183; i++)
        record(b, pb, false, &after);
    assert_float_equal(budget_threshold(b, pb), 0.70f, 0);
    budget_get_totals(b, &t);
    assert_int_equal(t.raised, 0);
    assert_int_equal(t.audits, 193);
    /* A state logged under a lower base runs at this base. */
    p.threshold = 0.5f;
    memcpy(p.partition, pa, BUDGET_KEY_LEN);
    assert_int_equal(budget_restore(b, &p), 0);
    assert_float_equal(budget_threshold(b, pa), 0.70f, 0);
    /* Most audited first. */
    assert_int_equal(budget_list(b, list, 2), 2);
    assert_memory_equal(list[0].partition, pb, BUDGET_KEY_LEN);
    budget_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rise_needs_audits_and_a_disagreement),
        cmocka_unit_test(test_cap_and_slow_decay),
        cmocka_unit_test(test_decay_stops_at_base_and_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
