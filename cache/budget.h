/* budget.h - per-partition audit tallies and the error budget: the
 * semantic threshold each partition runs at.
 *
 * Every audited semantic hit (docs/audit.md) is recorded here with the
 * judge's verdict. A partition keeps its totals (for the estimate and its
 * Clopper-Pearson bound) and a window: the audits since its threshold last
 * moved, which describe the hits the current threshold lets through.
 *
 * The rule, after each audit of partition p, with P the budget
 * (max-wrong-hit-rate) and UB(k, n) the 95% Clopper-Pearson upper bound:
 *   - raise: p has at least min_audits audits in total, its window holds a
 *     disagreement and UB(window) > P: the threshold rises by BUDGET_STEP
 *     (at most 1, where only identical texts hit) and the window restarts;
 *   - decay: the window holds no disagreement, the threshold is above the
 *     base and UB(0, window) <= P (183 agreeing audits in a row for P =
 *     0.02): it falls by BUDGET_STEP / 2 (never below the base) and the
 *     window restarts.
 * A partition with fewer audits runs at the base (the configured
 * threshold).
 *
 * At most BUDGET_MAX_PARTS partitions are tracked; audits of others count
 * in the totals only. Threads: every function may be called from any
 * thread (a rwlock; budget_threshold takes no lock while no partition is
 * raised).
 */
#ifndef PARROT_BUDGET_H
#define PARROT_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BUDGET_KEY_LEN   32
#define BUDGET_STEP      0.02f
#define BUDGET_MAX_PARTS 65536
#define BUDGET_CONF      0.95
/* Audits a partition needs before its threshold may rise (the server's
 * min_audits): fewer say too little about a partition's own traffic. */
#define BUDGET_MIN_AUDITS 5

struct budget;

/* One partition's state, as logged (cache/persist/records.h) and listed. */
struct budget_part {
    uint8_t partition[BUDGET_KEY_LEN];
    float threshold;          /* the partition's (the base until raised) */
    uint64_t audits, wrong;   /* all audits, and those judged different */
    uint64_t waudits, wwrong; /* the same since the threshold last moved */
};

struct budget_opts {
    float base;          /* the configured semantic threshold */
    double max_rate;     /* P, 0..1 */
    unsigned min_audits; /* before a partition's threshold may rise */
};

int budget_new(const struct budget_opts *o, struct budget **out); /* 0 or -ENOMEM */
void budget_free(struct budget *b);                               /* NULL is a no-op */

/* The threshold a semantic lookup in partition uses: its raised one, or
 * the base. */
float budget_threshold(struct budget *b, const uint8_t *partition);

/* Record one audit of partition, different or not. *after gets the
 * partition's state after it (tracked is false when the table is full).
 * Returns true when the partition's threshold moved. */
bool budget_record(struct budget *b, const uint8_t *partition, bool different,
                   struct budget_part *after, bool *tracked);

/* Set a partition's state, as read back from the log (replaces it). 0 or
 * -ENOMEM / -ENOSPC (the table is full). */
int budget_restore(struct budget *b, const struct budget_part *p);

/* Copy up to max partitions' states into out (those with most audits
 * first when there are more); returns how many were copied. */
size_t budget_list(struct budget *b, struct budget_part *out, size_t max);

struct budget_totals {
    uint64_t audits, wrong; /* every audit recorded or restored */
    size_t partitions;      /* tracked */
    size_t raised;          /* running above the base */
    float max_threshold;    /* the highest threshold in use (the base when none is raised) */
};
void budget_get_totals(struct budget *b, struct budget_totals *t);

#endif
