/* clock.h - the clocks, in the units parrot uses: wall-clock milliseconds
 * (timestamps that are stored or shown), monotonic milliseconds and
 * nanoseconds (deadlines and durations, which must not jump with the wall
 * clock), and the CLOCK_REALTIME timespec that pthread_cond_timedwait wants
 * for a condition variable made with the default attributes.
 *
 * Code that tests need to steer takes the time as an argument instead (see
 * upstream/balance.h); these are for the edges that read the real clock.
 *
 * Threads: any; nothing here has state.
 */
#ifndef PARROT_CLOCK_H
#define PARROT_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds since the epoch (CLOCK_REALTIME). */
static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds on CLOCK_MONOTONIC (an arbitrary origin). */
static inline int64_t clock_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Nanoseconds on CLOCK_MONOTONIC. */
static inline uint64_t clock_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The CLOCK_REALTIME time ms milliseconds from now, for
 * pthread_cond_timedwait on a condition variable with the default clock. */
static inline struct timespec clock_deadline_ms(long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Milliseconds from a to b (negative when b is earlier), with fractions. */
static inline double clock_ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

#endif
