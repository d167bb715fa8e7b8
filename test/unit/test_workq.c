/* Unit tests for cache/base/workq.c: jobs run in push order on the queue's
 * thread, a full queue refuses (and counts) instead of blocking, and
 * freeing the queue runs what is still waiting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/base/workq.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <string.h>

#define CAP 4

static int order[64];
static int nrun;
static sem_t gate;    /* the first job waits here until the test opens it */
static sem_t started; /* posted when the first job has begun */

struct job {
    int n;
    int gated;
};

static void run(void *arg)
{
    struct job *j = arg;

    if (j->gated) {
        sem_post(&started);
        sem_wait(&gate);
    }
    order[nrun++] = j->n; /* one thread runs jobs: no lock needed */
}

static void test_order_full_and_drain(void **state)
{
    struct workq *q;
    struct workq_stats st;
    struct job jobs[2 + CAP];

    (void)state;
    nrun = 0;
    sem_init(&gate, 0, 0);
    sem_init(&started, 0, 0);
    for (int i = 0; i < 2 + CAP; i++)
        jobs[i] = (struct job){.n = i, .gated = i == 0};
    assert_int_equal(workq_new(CAP, run, "test-workq", &q), 0);

    /* The first job is running (and held); CAP more fill the queue. */
    assert_int_equal(workq_push(q, &jobs[0]), 0);
    sem_wait(&started);
    for (int i = 1; i <= CAP; i++)
        assert_int_equal(workq_push(q, &jobs[i]), 0);
    /* Full: refused at once, counted, and the caller keeps the job. */
    assert_int_equal(workq_push(q, &jobs[1 + CAP]), -EAGAIN);
    workq_get_stats(q, &st);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.waiting, CAP);
    assert_int_equal(st.cap, CAP);
    assert_int_equal(st.done, 0);

    /* Released, then freed: everything queued runs, in push order. */
    sem_post(&gate);
    workq_free(q);
    assert_int_equal(nrun, 1 + CAP);
    for (int i = 0; i <= CAP; i++)
        assert_int_equal(order[i], i);
    sem_destroy(&gate);
    sem_destroy(&started);
}

struct pusher {
    struct workq *q;
    struct job jobs[200];
    int refused;
};

static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static int counted;

static void run_counted(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&count_mu);
    counted++;
    pthread_mutex_unlock(&count_mu);
}

static void *push_all(void *arg)
{
    struct pusher *p = arg;

    for (int i = 0; i < 200; i++)
        if (workq_push(p->q, &p->jobs[i]) != 0)
            p->refused++;
    return NULL;
}

/* Four threads push at once: every job is either run or refused, never
 * lost, and the counts agree with the queue's. */
static void test_many_pushers(void **state)
{
    struct workq *q;
    struct workq_stats st;
    static struct pusher ps[4];
    pthread_t t[4];
    int refused = 0;

    (void)state;
    counted = 0;
    assert_int_equal(workq_new(8, run_counted, "test-workq", &q), 0);
    for (int i = 0; i < 4; i++) {
        memset(&ps[i], 0, sizeof(ps[i]));
        ps[i].q = q;
        assert_int_equal(pthread_create(&t[i], NULL, push_all, &ps[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        refused += ps[i].refused;
    }
    workq_get_stats(q, &st);
    assert_int_equal(st.dropped, (uint64_t)refused);
    workq_free(q);
    assert_int_equal(counted + refused, 4 * 200);
}

static int sizes[64]; /* of each batch, in the order they ran */
static int nbatch;

static void run_batch(void **jobs, size_t n)
{
    sizes[nbatch++] = (int)n;
    for (size_t i = 0; i < n; i++)
        run(jobs[i]);
}

/* Batched: the thread takes what is waiting, up to the batch size, and
 * hands it over in push order; a full queue still refuses. */
static void test_batches(void **state)
{
    struct workq *q;
    struct workq_stats st;
    struct job jobs[2 + 2 * CAP];

    (void)state;
    nrun = nbatch = 0;
    sem_init(&gate, 0, 0);
    sem_init(&started, 0, 0);
    for (int i = 0; i < 2 + 2 * CAP; i++)
        jobs[i] = (struct job){.n = i, .gated = i == 0};
    assert_int_equal(workq_new_batched(2 * CAP, 3, run_batch, "test-workq", &q), 0);

    /* The first job runs alone and is held; 2 * CAP more fill the queue. */
    assert_int_equal(workq_push(q, &jobs[0]), 0);
    sem_wait(&started);
    for (int i = 1; i <= 2 * CAP; i++)
        assert_int_equal(workq_push(q, &jobs[i]), 0);
    assert_int_equal(workq_push(q, &jobs[1 + 2 * CAP]), -EAGAIN);
    workq_get_stats(q, &st);
    assert_int_equal(st.waiting, 2 * CAP);
    assert_int_equal(st.dropped, 1);

    sem_post(&gate);
    workq_free(q);
    assert_int_equal(nrun, 1 + 2 * CAP);
    for (int i = 0; i <= 2 * CAP; i++)
        assert_int_equal(order[i], i);
    /* 1, then 2 * CAP = 8 in threes: 3, 3, 2. */
    assert_int_equal(nbatch, 4);
    assert_int_equal(sizes[0], 1);
    assert_int_equal(sizes[1], 3);
    assert_int_equal(sizes[2], 3);
    assert_int_equal(sizes[3], 2);
    sem_destroy(&gate);
    sem_destroy(&started);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_full_and_drain),
        cmocka_unit_test(test_batches),
        cmocka_unit_test(test_many_pushers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
