/* prefetch.h - a cache-line prefetch the compiler keeps.
 *
 * GCC 12 at -O2 may delete a loop whose body is nothing but
 * __builtin_prefetch() calls, as if the loop had no effect: seen once such
 * a loop is inlined into its caller, and in a noinline helper too (a loop
 * in a function of its own, called from another file, was kept). That
 * removed every prefetch of
 * the HNSW walk (prefetch_row() in hnsw.c) and the lexical table's
 * (terms.c), found in session 15 by reading the object code: one
 * prefetcht0 was left in hnsw.o. An empty asm statement that takes the
 * address as an input is an effect the compiler must keep, and it costs
 * no instruction.
 */
#ifndef PARROT_PREFETCH_H
#define PARROT_PREFETCH_H

/* Ask for the line holding p, for reading, to be kept in every level. */
static inline void prefetch_read(const void *p)
{
    __builtin_prefetch(p, 0, 3);
    __asm__ volatile("" : : "r"(p));
}

#endif
