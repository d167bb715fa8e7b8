/* Unit tests for cache/base/beta.c: the incomplete beta function against an
 * independent numerical integral, and Clopper-Pearson bounds against the
 * closed form for zero failures and against published tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/base/beta.h"

#include <math.h>

/* I_x(a, b) by Simpson's rule on the density, normalised by the integral
 * over [0, 1]: slow and crude, but shares nothing with the code under test.
 * a, b >= 1 so the density is bounded. */
static double simpson_inc(double a, double b, double x)
{
    const int n = 20000;
    double part = 0, whole = 0;

    for (int i = 0; i <= n; i++) {
        double w = i == 0 || i == n ? 1 : i % 2 ? 4 : 2;
        double t = (double)i / n;
        double f = pow(t, a - 1) * pow(1 - t, b - 1);
        whole += w * f;
        double u = x * t;
        part += w * pow(u, a - 1) * pow(1 - u, b - 1) * x;
    }
    return part / whole;
}

static void test_inc_matches_integral(void **state)
{
    static const double cases[][3] = {{1, 1, 0.3}, {2, 5, 0.1},   {2, 5, 0.6},    {5, 2, 0.9},
                                      {3, 3, 0.5}, {10, 40, 0.2}, {1.5, 7, 0.05}, {30, 3, 0.95}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double a = cases[i][0], b = cases[i][1], x = cases[i][2];
        assert_float_equal(beta_inc(a, b, x), simpson_inc(a, b, x), 1e-6);
    }
    assert_float_equal(beta_inc(2, 3, 0), 0, 0);
    assert_float_equal(beta_inc(2, 3, 1), 1, 0);
    /* Symmetry: I_x(a, b) = 1 - I_{1-x}(b, a). */
    assert_float_equal(beta_inc(4, 9, 0.3), 1 - beta_inc(9, 4, 0.7), 1e-12);
}

static void test_quantile_inverts(void **state)
{
    (void)state;
    for (double p = 0.05; p < 1; p += 0.15) {
        double x = beta_quantile(p, 3, 17);
        assert_float_equal(beta_inc(3, 17, x), p, 1e-10);
    }
    assert_float_equal(beta_quantile(0, 2, 2), 0, 0);
    assert_float_equal(beta_quantile(1, 2, 2), 1, 0);
    assert_float_equal(beta_quantile(0.5, 4, 4), 0.5, 1e-10); /* symmetric: the median is 1/2 */
}

static void test_cp_zero_failures(void **state)
{
    (void)state;
    for (uint64_t n = 1; n <= 1000; n = n * 3 + 1) {
        double closed = 1 - pow(0.025, 1.0 / (double)n);
        assert_float_equal(beta_cp_upper(0, n, 0.95), closed, 1e-12);
        /* The general path (the quantile) agrees with the closed form. */
        assert_float_equal(beta_quantile(0.975, 1, (double)n), closed, 1e-9);
    }
    /* The rule of three's exact cousin: 0 in 183 is just under 2%. */
    assert_true(beta_cp_upper(0, 183, 0.95) < 0.02);
    assert_true(beta_cp_upper(0, 182, 0.95) > 0.02);
}

static void test_cp_tables(void **state)
{
    /* k, n, upper end of the two-sided 95% Clopper-Pearson interval, as
     * tabulated (e.g. Collett's, or R's binom.test). */
    static const double table[][3] = {{1, 10, 0.4450},   {5, 10, 0.8129},  {2, 20, 0.3170},
                                      {10, 100, 0.1762}, {1, 100, 0.0545}, {9, 10, 0.9975}};

    (void)state;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        assert_float_equal(beta_cp_upper((uint64_t)table[i][0], (uint64_t)table[i][1], 0.95),
                           table[i][2], 5e-4);
    assert_float_equal(beta_cp_upper(0, 0, 0.95), 1, 0);
    assert_float_equal(beta_cp_upper(7, 7, 0.95), 1, 0);
    /* More evidence of the same rate tightens the bound. */
    assert_true(beta_cp_upper(10, 1000, 0.95) < beta_cp_upper(1, 100, 0.95));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inc_matches_integral),
        cmocka_unit_test(test_quantile_inverts),
        cmocka_unit_test(test_cp_zero_failures),
        cmocka_unit_test(test_cp_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
