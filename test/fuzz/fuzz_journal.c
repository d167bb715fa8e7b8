/* fuzz_journal.c - fuzz target for the cache's WAL record decoder
 * (proxy/journal.c); see test/fuzz/README.md.
 *
 * Any bytes as a PUT and as a DEL payload. Checks: a payload that decodes
 * re-encodes to exactly the same bytes (the format has one spelling per
 * record), and one that does not decode leaves nothing allocated.
 */
#include "proxy/journal.h"
#include "test/fuzz/fuzz.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct journal_put p;
    struct buf out = {0};
    const uint8_t(*keys)[JOURNAL_KEY_LEN];
    size_t n;

    if (journal_decode_del(data, size, &keys, &n) == 0) {
        CHECK(journal_encode_del(keys, n, &out) == 0);
        CHECK(out.len == size && memcmp(out.p, data, size) == 0);
        buf_free(&out);
    }
    if (journal_decode_put(data, size, &p) != 0)
        return 0;
    CHECK(journal_encode_put(&p, &out) == 0);
    CHECK(out.len == size && memcmp(out.p, data, size) == 0);
    buf_free(&out);
    journal_put_fini(&p);
    return 0;
}
