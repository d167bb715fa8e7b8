/* Unit tests for cache/verify.c: the near misses it must catch and the
 * paraphrases it must let through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/verify.h"

#include <string.h>

static enum verify_reason v(const char *a, const char *b)
{
    return verify_texts(a, strlen(a), b, strlen(b));
}

static void test_numbers(void **state)
{
    (void)state;
    assert_int_equal(v("What is 2+2?", "What is 2+3?"), VERIFY_NUMBERS);
    assert_int_equal(v("Book a table for 4 at 7pm", "book a table for 4 at 8pm"), VERIFY_NUMBERS);
    assert_int_equal(v("iPhone 14 battery life", "iPhone 15 battery life"), VERIFY_NUMBERS);
    assert_int_equal(v("convert 3.5 miles", "convert 35 miles"), VERIFY_NUMBERS);
    assert_int_equal(v("top 10 movies", "top movies"), VERIFY_NUMBERS);
    /* Same numbers in another order or spelling of thousands: same question. */
    assert_int_equal(v("from 2 to 3", "to 3 from 2"), VERIFY_OK);
    assert_int_equal(v("send 1,000 dollars", "send 1000 dollars"), VERIFY_OK);
    assert_int_equal(v("What is 2+2?", "what's 2 + 2"), VERIFY_OK);
}

static void test_negation(void **state)
{
    (void)state;
    assert_int_equal(v("Can I return an opened item?", "Can't I return an opened item?"),
                     VERIFY_NEGATION);
    assert_int_equal(v("my card works", "my card does not work"), VERIFY_NEGATION);
    assert_int_equal(v("why dont my payments show", "why do my payments show"), VERIFY_NEGATION);
    assert_int_equal(v("I never got my card", "I didn't get my card"), VERIFY_OK);
    assert_int_equal(v("How do I reset my password?", "how can I reset my password"), VERIFY_OK);
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(verify_reason_name(VERIFY_OK), "ok");
    assert_string_equal(verify_reason_name(VERIFY_NUMBERS), "numbers");
    assert_string_equal(verify_reason_name(VERIFY_NEGATION), "negation");
    assert_string_equal(verify_reason_name(VERIFY_REASONS), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_negation),
        cmocka_unit_test(test_reason_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
