/* workq.c - a bounded FIFO of jobs run by one thread; see workq.h.
 *
 * A ring of cap pointers under one mutex. The thread takes one job at a
 * time, or up to batch of them, and runs them with the mutex released, so
 * a push waits at most for another push or a pop, never for a job. A push
 * signals the condition only when the thread sleeps on it: under load the
 * thread finds the next job without a wake-up, and the pusher pays no
 * system call.
 */
#include "cache/base/workq.h"

#include "cache/base/thread.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct workq {
    pthread_mutex_t mu; /* everything below but run, cap and thread */
    pthread_cond_t cv;
    void **ring;
    size_t cap, head, n; /* jobs ring[head], ring[head + 1], ... (mod cap), n of them */
    bool sleeping;       /* the thread waits on cv */
    bool stop;           /* run what is left, then end */
    uint64_t done, dropped;
    workq_fn *run;             /* one job at a time, or ... */
    workq_batch_fn *run_batch; /* ... up to batch of them */
    size_t batch;
    void **taken; /* batch slots: the jobs being run (the thread's) */
    pthread_t thread;
};

static void *workq_main(void *arg)
{
    struct workq *q = arg;

    pthread_mutex_lock(&q->mu);
    for (;;) {
        size_t n;

        while (q->n == 0 && !q->stop) {
            q->sleeping = true;
            pthread_cond_wait(&q->cv, &q->mu);
            q->sleeping = false;
        }
        if (q->n == 0)
            break; /* stopping, and nothing is left */
        n = q->n < q->batch ? q->n : q->batch;
        for (size_t i = 0; i < n; i++) {
            q->taken[i] = q->ring[q->head];
            q->head = (q->head + 1) % q->cap;
        }
        q->n -= n;
        pthread_mutex_unlock(&q->mu);
        if (q->run_batch)
            q->run_batch(q->taken, n);
        else
            q->run(q->taken[0]);
        pthread_mutex_lock(&q->mu);
        q->done += n;
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static int start(size_t cap, size_t batch, workq_fn *run, workq_batch_fn *run_batch,
                 const char *name, struct workq **out)
{
    struct workq *q = calloc(1, sizeof(*q));
    int rc = -ENOMEM;

    if (!q || cap == 0 || batch == 0)
        goto fail;
    q->ring = calloc(cap, sizeof(*q->ring));
    q->taken = calloc(batch, sizeof(*q->taken));
    if (!q->ring || !q->taken)
        goto fail;
    q->cap = cap;
    q->batch = batch;
    q->run = run;
    q->run_batch = run_batch;
    if (pthread_mutex_init(&q->mu, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&q->cv, NULL) != 0) {
        pthread_mutex_destroy(&q->mu);
        goto fail;
    }
    rc = thread_start(&q->thread, workq_main, q, name);
    if (rc != 0) {
        rc = -rc;
        pthread_cond_destroy(&q->cv);
        pthread_mutex_destroy(&q->mu);
        goto fail;
    }
    *out = q;
    return 0;
fail:
    if (q) {
        free(q->ring);
        free(q->taken);
    }
    free(q);
    return rc;
}

int workq_new(size_t cap, workq_fn *run, const char *name, struct workq **out)
{
    return start(cap, 1, run, NULL, name, out);
}

int workq_new_batched(size_t cap, size_t batch, workq_batch_fn *run, const char *name,
                      struct workq **out)
{
    return start(cap, batch, NULL, run, name, out);
}

int workq_push(struct workq *q, void *job)
{
    bool wake;

    pthread_mutex_lock(&q->mu);
    if (q->n == q->cap) {
        q->dropped++;
        pthread_mutex_unlock(&q->mu);
        return -EAGAIN;
    }
    q->ring[(q->head + q->n) % q->cap] = job;
    q->n++;
    wake = q->sleeping;
    pthread_mutex_unlock(&q->mu);
    if (wake)
        pthread_cond_signal(&q->cv);
    return 0;
}

void workq_free(struct workq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q->ring);
    free(q->taken);
    free(q);
}

void workq_get_stats(struct workq *q, struct workq_stats *out)
{
    pthread_mutex_lock(&q->mu);
    *out = (struct workq_stats){
        .done = q->done, .dropped = q->dropped, .waiting = q->n, .cap = q->cap};
    pthread_mutex_unlock(&q->mu);
}
