/* hash.h - FNV-1a over bytes, and a finaliser for tables indexed by the low
 * bits.
 *
 * One definition for every hash in cache/: the embedder's feature and word
 * tables, the lexical terms, the word-vector table (whose file checksum is
 * FNV-1a 64 as well, so this must never change) and the verifier's word
 * sets.
 */
#ifndef PARROT_HASH_H
#define PARROT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_OFFSET 0xcbf29ce484222325ULL

/* Continue FNV-1a hash h over p[0..n). Start with HASH_FNV_OFFSET. */
static inline uint64_t hash_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* hash_fnv() over the NUL-terminated s, in one pass. */
static inline uint64_t hash_fnv_str(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* FNV's low bits are weak for short keys: mix every bit into them
 * (MurmurHash3's 64-bit finaliser). */
static inline uint64_t hash_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

#endif
