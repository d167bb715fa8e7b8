/* Unit tests for cache/base/buf.c: the hard cap of buf_append, and
 * buf_queue_append, the relay queue between the provider and a streaming
 * client (proxy/exchange.c), which must hold about its unread bytes however
 * much passes through it, and pass every byte on in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/base/buf.h"

#include <errno.h>
#include <string.h>

#define CHUNK  (16u << 10)  /* what curl hands the write callback at most */
#define HIGH   (256u << 10) /* the producer stops above this much unread */
#define STREAM (16u << 20)  /* what passes through the queue */

/* Byte i of the stream: a pattern that a lost, doubled or reordered byte
 * breaks. */
static char pattern(size_t i)
{
    return (char)((i * 7 + i / 251) & 0xff);
}

static void test_append_cap(void **state)
{
    struct buf b = {0};

    (void)state;
    assert_int_equal(buf_append(&b, "abcd", 4, 6), 0);
    assert_int_equal(buf_append(&b, "efg", 3, 6), -E2BIG);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.p, "abcd");
    assert_int_equal(buf_append(&b, "ef", 2, 6), 0);
    assert_string_equal(b.p, "abcdef");
    buf_free(&b);
}

/* Each round the producer appends while fewer than HIGH bytes are unread
 * and the reader then takes all but `keep` of them, so the queue is never
 * read to empty (what a client that keeps up with the stream does). Returns
 * the largest capacity the queue reached. */
static size_t relay(size_t keep)
{
    struct buf b = {0};
    size_t off = 0, in = 0, out = 0, max_cap = 0, wrong = 0;
    char chunk[CHUNK];

    while (out < STREAM) {
        while (in < STREAM && b.len - off < HIGH) {
            size_t n = STREAM - in < CHUNK ? STREAM - in : CHUNK;
            for (size_t i = 0; i < n; i++)
                chunk[i] = pattern(in + i);
            assert_int_equal(buf_queue_append(&b, &off, chunk, n, SIZE_MAX / 2), 0);
            in += n;
            if (b.cap > max_cap)
                max_cap = b.cap;
        }
        size_t take = b.len - off > keep && in < STREAM ? b.len - off - keep : b.len - off;
        for (size_t i = 0; i < take; i++)
            wrong += b.p[off + i] != pattern(out + i);
        off += take;
        out += take;
    }
    assert_int_equal(wrong, 0);
    assert_int_equal(in, STREAM);
    assert_int_equal(off, b.len);
    buf_free(&b);
    return max_cap;
}

static void test_queue_holds_unread_only(void **state)
{
    static const size_t keeps[] = {1, 7, CHUNK - 1, CHUNK, HIGH / 2, HIGH - 1};
    (void)state;
    for (size_t i = 0; i < sizeof(keeps) / sizeof(keeps[0]); i++) {
        size_t max_cap = relay(keeps[i]);
        /* Unread stays under HIGH + CHUNK; the read part is dropped once it
         * is the larger half, so the queue never needs more than twice
         * that, rounded up to buf's power of two. */
        assert_true(max_cap <= 4 * (HIGH + CHUNK));
    }
}

/* Fills b with 255 pattern bytes: exactly full, as buf's first block is
 * 256 bytes with the NUL. */
static void fill(struct buf *b, size_t *off)
{
    char p[255];

    for (size_t i = 0; i < sizeof(p); i++)
        p[i] = pattern(i);
    *off = 0;
    assert_int_equal(buf_queue_append(b, off, p, sizeof(p), SIZE_MAX / 2), 0);
    assert_int_equal(b->cap, 256);
}

static void test_queue_drops_read_bytes(void **state)
{
    struct buf b = {0};
    char unread[64], big[250] = {0};
    size_t off;

    (void)state;
    fill(&b, &off);
    off = 200; /* 200 read, 55 unread, no room: the unread move forward */
    memcpy(unread, b.p + off, 55);
    assert_int_equal(buf_queue_append(&b, &off, "XYZ", 3, SIZE_MAX / 2), 0);
    assert_int_equal(off, 0);
    assert_int_equal(b.cap, 256);
    assert_int_equal(b.len, 58);
    assert_memory_equal(b.p, unread, 55);
    assert_string_equal(b.p + 55, "XYZ");

    off = 40; /* room left: nothing moves */
    assert_int_equal(buf_queue_append(&b, &off, "!", 1, SIZE_MAX / 2), 0);
    assert_int_equal(off, 40);
    assert_int_equal(b.len, 59);

    /* Moved, then refused by the cap: the unread bytes are all there. */
    memcpy(unread, b.p + off, 19);
    assert_int_equal(buf_queue_append(&b, &off, big, sizeof(big), 100), -E2BIG);
    assert_int_equal(b.len - off, 19);
    assert_memory_equal(b.p + off, unread, 19);
    assert_int_equal(b.p[b.len], '\0');
    buf_free(&b);
}

static void test_queue_read_part_smaller_grows(void **state)
{
    struct buf b = {0};
    size_t off;

    (void)state;
    fill(&b, &off);
    off = 100; /* 155 unread: moving would gain little, grow instead */
    assert_int_equal(buf_queue_append(&b, &off, "XYZ", 3, SIZE_MAX / 2), 0);
    assert_int_equal(off, 100);
    assert_int_equal(b.cap, 512);
    assert_int_equal(b.p[100], pattern(100));
    assert_string_equal(b.p + 255, "XYZ");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_cap),
        cmocka_unit_test(test_queue_holds_unread_only),
        cmocka_unit_test(test_queue_drops_read_bytes),
        cmocka_unit_test(test_queue_read_part_smaller_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
