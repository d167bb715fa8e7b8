/* thread.h - starting one of parrot's threads, named.
 *
 * Every thread parrot starts carries a name of its work ("parrot-worker",
 * "parrot-store", "parrot-wal", ...), the one top -H, ps -L, perf and
 * bench/scaling.sh read from /proc/PID/task/TID/comm. It is given by the
 * thread that starts it, before the new thread runs: a thread is named
 * from its first instant, and a server that says it is ready has every
 * thread named. Linux keeps 15 bytes of a name.
 */
#ifndef PARROT_THREAD_H
#define PARROT_THREAD_H

#include <pthread.h>

/* pthread_create(t, NULL, fn, arg), then the name; returns 0 or the error
 * pthread_create gave (a name that cannot be set is no error). */
static inline int thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
    int rc = pthread_create(t, NULL, fn, arg);

    if (rc == 0)
        (void)pthread_setname_np(*t, name);
    return rc;
}

#endif
