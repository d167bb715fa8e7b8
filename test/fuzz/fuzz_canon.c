/* fuzz_canon.c - fuzz target for cache/canon.c; see test/fuzz/README.md.
 *
 * Any bytes that cJSON parses go through canon_json and, when they are an
 * object, canon_request and canon_partition_form. Beyond "no crash, no leak,
 * no undefined behaviour" it checks:
 *   - the canonical form parses, holds no NUL, and is a fixed point: parsed
 *     and canonicalised again it comes out byte for byte the same;
 *   - the cap is exact: max = len succeeds, anything less (len - 1, or a cut
 *     at some point picked from the input) gives -E2BIG and leaves earlier
 *     output alone;
 *   - the keys of a request and of its canonical form are the same, the
 *     partition is the SHA-256 of the partition form, which is itself
 *     canonical, and the lookup text is what it claims to be.
 *
 * Built with libFuzzer by make fuzz, and with test/fuzz/replay.c as a corpus
 * replay that make test runs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "proxy/openai/canon.h"
#include "test/fuzz/fuzz.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE "/v1/chat/completions"

/* Canonical JSON of v in a fresh buffer; the check fails on any error (fuzz
 * inputs are far below CANON_MAX and cJSON nests at most 1000 deep). */
static char *canon_new(const cJSON *v, size_t *len)
{
    char *buf = NULL;
    size_t cap = 0;

    *len = 0;
    CHECK(canon_json(v, &buf, len, &cap, CANON_MAX) == 0);
    CHECK(buf && strlen(buf) == *len);
    return buf;
}

/* Parses a canonical form and checks that it is a fixed point. */
static cJSON *check_fixed_point(const char *form, size_t len)
{
    cJSON *again = cJSON_ParseWithLength(form, len);
    char *form2;
    size_t len2;

    CHECK(again != NULL);
    form2 = canon_new(again, &len2);
    CHECK(len2 == len && memcmp(form2, form, len) == 0);
    free(form2);
    return again;
}

/* With "pre" already in the buffer, a cap of exactly the room needed works,
 * and a smaller one (one byte short, or cut anywhere, picked by seed) fails
 * without touching *len. */
static void check_cap(const cJSON *v, size_t need, size_t seed)
{
    const size_t short_by[] = {1, need / 2 + 1, seed % need + 1, need};
    char *buf = malloc(4);
    size_t len = 3, cap = 4;

    CHECK(buf != NULL);
    memcpy(buf, "pre", 4);
    for (size_t i = 0; i < sizeof(short_by) / sizeof(short_by[0]); i++) {
        CHECK(canon_json(v, &buf, &len, &cap, 3 + need - short_by[i]) == -E2BIG);
        CHECK(len == 3 && memcmp(buf, "pre", 3) == 0);
    }
    CHECK(canon_json(v, &buf, &len, &cap, 3 + need) == 0);
    CHECK(len == 3 + need && buf[len] == '\0');
    free(buf);
}

static bool all_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\n\v\f\r", s[i]))
            return false;
    return true;
}

/* exact = SHA-256(partition || 0x00 || lookup text with whitespace runs made
 * one space and trimmed), computed here independently. */
static void check_exact(const struct canon_key *k)
{
    size_t n = k->lookup_len, m = CANON_HASH_LEN + 1;
    unsigned char *msg = malloc(m + n), h[CANON_HASH_LEN];
    bool gap = false;

    CHECK(msg != NULL);
    memcpy(msg, k->partition, CANON_HASH_LEN);
    msg[CANON_HASH_LEN] = 0x00;
    for (size_t i = 0; i < n; i++) {
        if (strchr(" \t\n\v\f\r", k->lookup_text[i])) {
            gap = m > CANON_HASH_LEN + 1;
        } else {
            if (gap)
                msg[m++] = ' ';
            gap = false;
            msg[m++] = (unsigned char)k->lookup_text[i];
        }
    }
    CHECK(SHA256(msg, m, h) != NULL);
    CHECK(memcmp(h, k->exact, CANON_HASH_LEN) == 0);
    free(msg);
}

/* With its source text, a request keys deterministically, with the same
 * lookup text; only its partition may differ (integers no double holds). */
static void check_request_src(const cJSON *req, const char *src, size_t len,
                              const struct canon_key *k)
{
    struct canon_key a, b;

    CHECK(canon_request_src(req, src, len, "tenant", ROUTE, &a) == 0);
    CHECK(canon_request_src(req, src, len, "tenant", ROUTE, &b) == 0);
    CHECK(memcmp(&a, &b, 2 * CANON_HASH_LEN) == 0);
    CHECK((a.lookup_text == NULL) == (k->lookup_text == NULL));
    CHECK(!a.lookup_text || strcmp(a.lookup_text, k->lookup_text) == 0);
    CHECK(memcmp(a.partition, k->partition, CANON_HASH_LEN) != 0 ||
          memcmp(a.exact, k->exact, CANON_HASH_LEN) == 0);
    canon_key_fini(&a);
    canon_key_fini(&b);
}

static void check_request(const cJSON *req, const cJSON *canonical, size_t seed, const char *src,
                          size_t srclen)
{
    struct canon_key k, k2, k3;
    char *form = NULL, *small = NULL;
    size_t len = 0, cap = 0, small_len = 0, small_cap = 0;
    uint8_t h[CANON_HASH_LEN];
    cJSON *again;

    CHECK(canon_request(req, "tenant", ROUTE, &k) == 0);
    if (k.lookup_text) {
        CHECK(k.lookup_len == strlen(k.lookup_text));
        CHECK(!all_space(k.lookup_text, k.lookup_len));
    } else {
        CHECK(k.lookup_len == 0);
    }

    /* Deterministic, and blind to spelling: the canonical form has the same keys. */
    CHECK(canon_request(req, "tenant", ROUTE, &k2) == 0);
    CHECK(canon_request(canonical, "tenant", ROUTE, &k3) == 0);
    CHECK(memcmp(&k.partition, &k2.partition, CANON_HASH_LEN) == 0);
    CHECK(memcmp(&k.exact, &k2.exact, CANON_HASH_LEN) == 0);
    CHECK(memcmp(&k.partition, &k3.partition, CANON_HASH_LEN) == 0);
    CHECK(memcmp(&k.exact, &k3.exact, CANON_HASH_LEN) == 0);
    CHECK((k.lookup_text == NULL) == (k3.lookup_text == NULL));
    CHECK(!k.lookup_text || strcmp(k.lookup_text, k3.lookup_text) == 0);

    /* The partition is the hash of a form that is canonical JSON itself. */
    CHECK(canon_partition_form(req, "tenant", ROUTE, &form, &len, &cap, CANON_MAX) == 0);
    CHECK(SHA256((const unsigned char *)form, len, h) != NULL);
    CHECK(memcmp(h, k.partition, CANON_HASH_LEN) == 0);
    again = check_fixed_point(form, len);
    CHECK(cJSON_GetArraySize(again) == 5);
    CHECK(!k.lookup_text || cJSON_IsTrue(cJSON_GetArrayItem(again, 3)));
    cJSON_Delete(again);
    check_exact(&k);
    check_request_src(req, src, srclen, &k);
    for (size_t i = 0; i < 2; i++) {
        size_t max = i == 0 ? len - 1 : seed % len;

        CHECK(canon_partition_form(req, "tenant", ROUTE, &small, &small_len, &small_cap, max) ==
              -E2BIG);
        CHECK(small_len == 0);
    }
    free(small);

    /* A tenant is never confused with another. */
    canon_key_fini(&k2);
    CHECK(canon_request(req, "tenant2", ROUTE, &k2) == 0);
    CHECK(memcmp(&k.partition, &k2.partition, CANON_HASH_LEN) != 0);

    free(form);
    canon_key_fini(&k);
    canon_key_fini(&k2);
    canon_key_fini(&k3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *doc, *canonical;
    char *form;
    size_t len, seed;

    /* Escaping grows a byte to at most 6 (a raw control byte becomes \u00xx)
     * and a number at most 4x ("9e15"), so smaller inputs never hit the cap. */
    if (size > CANON_MAX / 8)
        return 0;
    doc = cJSON_ParseWithLength((const char *)data, size);
    if (!doc)
        return 0;
    form = canon_new(doc, &len);
    canonical = check_fixed_point(form, len);
    seed = size > 1 ? (size_t)data[0] << 8 | data[1] : size;
    check_cap(doc, len, seed);
    if (cJSON_IsObject(doc))
        check_request(doc, canonical, seed, (const char *)data, size);
    free(form);
    cJSON_Delete(canonical);
    cJSON_Delete(doc);
    return 0;
}
