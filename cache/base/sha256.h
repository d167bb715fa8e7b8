/* sha256.h - SHA-256 through OpenSSL, with the algorithm looked up once.
 *
 * OpenSSL 3's one-shot SHA256() fetches the algorithm by name on every call
 * (EVP_Q_digest -> EVP_MD_fetch: a lock, a property query); for the short
 * texts parrot hashes (a key, a tenant, a canonical request) that lookup cost
 * as much as the hashing: 600-850 ns against 420-500 ns for a 300-byte text
 * with the algorithm fetched once. A request hashes four or five times.
 *
 * Threads: any thread; the algorithm is fetched once under pthread_once.
 */
#ifndef PARROT_SHA256_H
#define PARROT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

/* The SHA-256 digest of p[0..n) into out[SHA256_LEN]. */
void sha256(const void *p, size_t n, uint8_t *out);

#endif
