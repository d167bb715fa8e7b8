/* beta.c - incomplete beta, its quantile, Clopper-Pearson; see beta.h. */
#include "cache/base/beta.h"

#include <math.h>

#define CF_ITER 300   /* continued-fraction terms; a few dozen suffice below n = 1e6 */
#define CF_EPS  1e-15 /* stop once a term changes the value by less than this */
#define TINY    1e-300
#define BISECT  64 /* halvings of [0, 1]: far below double precision */

/* The continued fraction of I_x(a, b) (its even and odd terms, evaluated
 * by the modified Lentz method); converges fast for x < (a + 1) / (a + b + 2). */
static double beta_cf(double a, double b, double x)
{
    double c = 1, d = 1 - (a + b) * x / (a + 1), h;

    d = 1 / (fabs(d) < TINY ? TINY : d);
    h = d;
    for (int m = 1; m <= CF_ITER; m++) {
        double m2 = 2.0 * m;
        double even = m * (b - m) * x / ((a - 1 + m2) * (a + m2));
        double odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1 + m2));
        double step;

        d = 1 + even * d;
        c = 1 + even / c;
        d = 1 / (fabs(d) < TINY ? TINY : d);
        c = fabs(c) < TINY ? TINY : c;
        h *= d * c;
        d = 1 + odd * d;
        c = 1 + odd / c;
        d = 1 / (fabs(d) < TINY ? TINY : d);
        c = fabs(c) < TINY ? TINY : c;
        step = d * c;
        h *= step;
        if (fabs(step - 1) < CF_EPS)
            break;
    }
    return h;
}

double beta_inc(double a, double b, double x)
{
    int sa, sb, sab;
    double front;

    if (x <= 0)
        return 0;
    if (x >= 1)
        return 1;
    /* x^a (1-x)^b / (a B(a, b)), in logs: the gammas overflow early. */
    front = exp(lgamma_r(a + b, &sab) - lgamma_r(a, &sa) - lgamma_r(b, &sb) + a * log(x) +
                b * log1p(-x));
    /* The fraction converges on the side below the mean; the symmetry
     * I_x(a, b) = 1 - I_{1-x}(b, a) covers the other. */
    if (x < (a + 1) / (a + b + 2))
        return front * beta_cf(a, b, x) / a;
    return 1 - front * beta_cf(b, a, 1 - x) / b;
}

double beta_quantile(double p, double a, double b)
{
    double lo = 0, hi = 1;

    if (p <= 0)
        return 0;
    if (p >= 1)
        return 1;
    /* I_x is increasing in x: bisection cannot miss and needs no derivative. */
    for (int i = 0; i < BISECT; i++) {
        double mid = (lo + hi) / 2;
        if (beta_inc(a, b, mid) < p)
            lo = mid;
        else
            hi = mid;
    }
    return (lo + hi) / 2;
}

double beta_cp_upper(uint64_t k, uint64_t n, double conf)
{
    double tail = (1 - conf) / 2;

    if (n == 0 || k >= n)
        return 1;
    if (k == 0) /* the closed form: I_x(1, n) = 1 - (1 - x)^n */
        return 1 - pow(tail, 1.0 / (double)n);
    return beta_quantile(1 - tail, (double)k + 1, (double)(n - k));
}
