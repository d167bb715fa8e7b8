/* beta.h - the regularized incomplete beta function, its inverse, and the
 * Clopper-Pearson bound built on them.
 *
 * The audit of semantic hits (docs/audit.md) estimates a wrong-hit rate from
 * a sample: k disagreements in n audited hits. The Clopper-Pearson interval
 * is the exact binomial one: its upper end is the Beta(k+1, n-k) quantile,
 * so it never understates the rate, however small n is.
 *
 * Pure functions; any thread (lgamma_r, never the global signgam).
 */
#ifndef PARROT_BETA_H
#define PARROT_BETA_H

#include <stdint.h>

/* I_x(a, b), the regularized incomplete beta function, for a, b > 0 and
 * 0 <= x <= 1 (clamped outside). Accurate to about 1e-12. */
double beta_inc(double a, double b, double x);

/* The x in [0, 1] with I_x(a, b) = p (p clamped to [0, 1]): the p-quantile
 * of the Beta(a, b) distribution, by bisection to 1e-12. */
double beta_quantile(double p, double a, double b);

/* The upper end of the two-sided Clopper-Pearson interval at confidence
 * conf (0.95 for the usual 95%) for k failures in n trials: 1 when n is 0
 * or k >= n; 1 - ((1 - conf) / 2)^(1/n) when k is 0. */
double beta_cp_upper(uint64_t k, uint64_t n, double conf);

#endif
