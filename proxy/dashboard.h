/* dashboard.h - the /dashboard page and the JSON it polls.
 *
 * The page is one self-contained HTML document (inline CSS and JS, no
 * external assets), kept in proxy/dashboard.html and compiled in from the
 * generated proxy/dashboard_html.inc (sh proxy/dashboard_html.sh). Every
 * couple of seconds it fetches /dashboard/stats.json and shows hit rate,
 * savings, latency, top misses and each provider's health.
 *
 * Any thread.
 */
#ifndef PARROT_DASHBOARD_H
#define PARROT_DASHBOARD_H

#include <stddef.h>

struct chat;
struct metrics;
struct up_pool;

/* The page: static, NUL-terminated, len bytes. */
const char *dashboard_page(size_t *len);

/* The stats document: cache counters (ch may be NULL when the cache is
 * off), the audits (a, with the error budget max_rate; proxy/audit.h),
 * per-provider health, this process's metrics. A malloc'd JSON text of
 * *len bytes, or NULL when out of memory. */
struct audit;
char *dashboard_stats(struct chat *ch, struct audit *a, double max_rate, struct up_pool *pool,
                      struct metrics *m, size_t inflight, size_t *len);

#endif
