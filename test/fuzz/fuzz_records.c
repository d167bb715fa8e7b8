/* fuzz_records.c - fuzz target for the cache's log record decoder
 * (cache/persist/records.c, with the OpenAI payload codec); see test/fuzz/README.md.
 *
 * Any bytes as a PUT (versions 1 and 2), a DEL (and DISPUTE) and an AUDIT
 * payload. Checks: a payload that decodes
 * re-encodes to exactly the same bytes (the format has one spelling per
 * record), and one that does not decode leaves nothing allocated.
 */
#include "cache/cache.h"
#include "cache/persist/records.h"
#include "proxy/openai/stored.h"
#include "test/fuzz/fuzz.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rec_put p;
    struct rec_audit a;
    struct buf out = {0}, tail = {0};
    const uint8_t(*keys)[REC_KEY_LEN];
    void *payload;
    int rc;
    size_t n;

    if (rec_decode_del(data, size, &keys, &n) == 0) {
        CHECK(rec_encode_del(keys, n, &out) == 0);
        CHECK(out.len == size && memcmp(out.p, data, size) == 0);
        buf_free(&out);
    }
    if (rec_decode_audit(data, size, &a) == 0) {
        CHECK(rec_encode_audit(&a, &out) == 0);
        CHECK(out.len == size && memcmp(out.p, data, size) == 0);
        buf_free(&out);
    }
    if (rec_decode_put(data, size, &p) != 0)
        return 0;
    rc = stored_codec.decode(p.words, p.tail, p.tail_len, &payload);
    if (rc == 0) {
        /* A record the cache accepts writes back to the same bytes. */
        CHECK(stored_codec.encode(payload, p.words, &tail) == 0);
        p.tail = tail.p;
        p.tail_len = tail.len;
        CHECK(rec_encode_put(&p, &out) == 0);
        CHECK(out.len == size && memcmp(out.p, data, size) == 0);
        stored_codec.free(payload);
    }
    buf_free(&tail);
    buf_free(&out);
    rec_put_fini(&p);
    return 0;
}
