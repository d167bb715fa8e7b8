/* workq.c - a bounded FIFO of jobs run by one thread; see workq.h.
 *
 * A ring of cap pointers under one mutex. The thread takes one job at a
 * time and runs it with the mutex released, so a push waits at most for
 * another push or a pop, never for a job. A push signals the condition
 * only when the thread sleeps on it: under load the thread finds the next
 * job without a wake-up, and the pusher pays no system call.
 */
#include "cache/base/workq.h"

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
    workq_fn *run;
    pthread_t thread;
};

static void *workq_main(void *arg)
{
    struct workq *q = arg;

    pthread_mutex_lock(&q->mu);
    for (;;) {
        void *job;

        while (q->n == 0 && !q->stop) {
            q->sleeping = true;
            pthread_cond_wait(&q->cv, &q->mu);
            q->sleeping = false;
        }
        if (q->n == 0)
            break; /* stopping, and nothing is left */
        job = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->n--;
        pthread_mutex_unlock(&q->mu);
        q->run(job);
        pthread_mutex_lock(&q->mu);
        q->done++;
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

int workq_new(size_t cap, workq_fn *run, struct workq **out)
{
    struct workq *q = calloc(1, sizeof(*q));
    int rc = -ENOMEM;

    if (!q || cap == 0)
        goto fail;
    q->ring = calloc(cap, sizeof(*q->ring));
    if (!q->ring)
        goto fail;
    q->cap = cap;
    q->run = run;
    if (pthread_mutex_init(&q->mu, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&q->cv, NULL) != 0) {
        pthread_mutex_destroy(&q->mu);
        goto fail;
    }
    rc = pthread_create(&q->thread, NULL, workq_main, q);
    if (rc != 0) {
        rc = -rc;
        pthread_cond_destroy(&q->cv);
        pthread_mutex_destroy(&q->mu);
        goto fail;
    }
    *out = q;
    return 0;
fail:
    if (q)
        free(q->ring);
    free(q);
    return rc;
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
    free(q);
}

void workq_get_stats(struct workq *q, struct workq_stats *out)
{
    pthread_mutex_lock(&q->mu);
    *out = (struct workq_stats){
        .done = q->done, .dropped = q->dropped, .waiting = q->n, .cap = q->cap};
    pthread_mutex_unlock(&q->mu);
}
