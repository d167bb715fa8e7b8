/* Unit tests for cache/flight.c: one leader per key, every waiter woken once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/flight.h"

#include <string.h>

static int leader_woken;

/* A leader is never woken: only waiters are. */
static void wake(struct flight_waiter *w)
{
    (void)w;
    leader_woken++;
}

struct waiter {
    struct flight_waiter w; /* first member: the callback casts back */
    int n;
};

static void wake_counted(struct flight_waiter *w)
{
    ((struct waiter *)w)->n++;
}

static void test_leader_and_waiters(void **state)
{
    struct flight_table *t;
    uint8_t a[FLIGHT_KEY_LEN], b[FLIGHT_KEY_LEN];
    struct waiter ws[5];
    struct flight_waiter lead = {.wake = wake};

    (void)state;
    memset(a, 1, sizeof(a));
    memset(b, 2, sizeof(b));
    memset(ws, 0, sizeof(ws));
    assert_int_equal(flight_new(&t), 0);
    assert_int_equal(flight_join(t, a, &lead), 1);
    for (int i = 0; i < 5; i++) {
        ws[i].w.wake = wake_counted;
        assert_int_equal(flight_join(t, a, &ws[i].w), 0);
    }
    /* Another key has its own leader. */
    assert_int_equal(flight_join(t, b, &lead), 1);
    assert_int_equal(flight_open(t), 2);
    flight_done(t, a);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ws[i].n, 1);
    assert_int_equal(flight_open(t), 1);
    /* After done, the next request for the key leads again. */
    assert_int_equal(flight_join(t, a, &lead), 1);
    flight_done(t, a);
    flight_done(t, b);
    flight_done(t, b); /* closing a closed flight is harmless */
    assert_int_equal(flight_open(t), 0);
    assert_int_equal(leader_woken, 0);
    flight_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leader_and_waiters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
