/* sha256.c - see sha256.h. */
#include "cache/base/sha256.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_MD *md; /* held for the life of the process */

static void fetch(void)
{
    md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void sha256(const void *p, size_t n, uint8_t *out)
{
    pthread_once(&once, fetch);
    /* Without a fetched algorithm (an OpenSSL that cannot load its default
     * provider), the one-shot call still gives the same digest. */
    if (!md || !EVP_Digest(p, n, out, NULL, md, NULL))
        SHA256(p, n, out);
}
