/* rand.h - unpredictable 64-bit numbers for ids that clients see.
 *
 * Entry ids and the ids of hit answers are shown to every tenant; from a
 * counter, two of them would tell a client how many entries (or hits) other
 * tenants made in between. These come from the kernel's CSPRNG, read 32 at a
 * time into a per-thread buffer so that a hit does not pay a system call.
 *
 * Any thread; each has its own buffer.
 */
#ifndef PARROT_RAND_H
#define PARROT_RAND_H

#include "cache/base/hash.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>

#define RAND_BUF_WORDS 32

/* A uniformly random 64-bit number. */
static inline uint64_t rand_u64(void)
{
    static _Thread_local uint64_t buf[RAND_BUF_WORDS];
    static _Thread_local unsigned left;

    if (left == 0) {
        if (getrandom(buf, sizeof(buf), 0) == (ssize_t)sizeof(buf)) {
            left = RAND_BUF_WORDS;
        } else {
            /* getrandom() does not fail on a kernel parrot runs on (3.17+,
             * booted); should it, a clock-seeded mix is still no counter. */
            struct timespec ts;

            clock_gettime(CLOCK_MONOTONIC, &ts);
            return hash_mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                            (uint64_t)(uintptr_t)&ts);
        }
    }
    return buf[--left];
}

#endif
