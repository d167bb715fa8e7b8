/* workq.h - a bounded FIFO of jobs, run in order by one thread of its own.
 *
 * For work that must happen but not while somebody waits for it: storing
 * an answer after its client has it. The queue is bounded so that a burst
 * costs a counted drop instead of unbounded memory; the pusher keeps a job
 * the queue refused and decides what dropping it means.
 *
 * Threads: workq_push and workq_get_stats from any thread; the jobs run on
 * the queue's thread, one at a time, in push order.
 */
#ifndef PARROT_WORKQ_H
#define PARROT_WORKQ_H

#include <stddef.h>
#include <stdint.h>

struct workq;

/* Runs one job (on the queue's thread); owns it from then on. */
typedef void workq_fn(void *job);

/* Runs jobs[0..n) (on the queue's thread), in order; owns each. */
typedef void workq_batch_fn(void **jobs, size_t n);

/* A queue of at most cap waiting jobs (cap >= 1), each run by run on a
 * thread named name (cache/base/thread.h). Returns 0, -ENOMEM, or the
 * error pthread_create gave. */
int workq_new(size_t cap, workq_fn *run, const char *name, struct workq **out);

/* The same, but the thread takes up to batch (>= 1) waiting jobs at once
 * and hands them to run together: for jobs that share a cost per run
 * (a lock, a wake-up of another thread). */
int workq_new_batched(size_t cap, size_t batch, workq_batch_fn *run, const char *name,
                      struct workq **out);

/* Queue job (not NULL). Returns 0, or -EAGAIN when cap jobs are already
 * waiting: the job is not queued, the caller still owns it, and the drop
 * is counted. Never blocks on a running job. */
int workq_push(struct workq *q, void *job);

/* Run every job still waiting, stop the thread and free q. Nothing may be
 * pushed once this has begun. NULL is a no-op. */
void workq_free(struct workq *q);

struct workq_stats {
    uint64_t done;    /* jobs run */
    uint64_t dropped; /* pushes refused because the queue was full */
    size_t waiting;   /* queued, not yet started */
    size_t cap;
};

void workq_get_stats(struct workq *q, struct workq_stats *out);

#endif
