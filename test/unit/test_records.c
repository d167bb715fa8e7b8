/* Unit tests for cache/persist/records.c: PUT versions 1 and 2 (the flags
 * byte), and AUDIT records, including the bytes an older parrot wrote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/persist/records.h"

#include <errno.h>
#include <string.h>

static void fill(struct rec_put *p)
{
    memset(p, 0, sizeof(*p));
    p->created = 1700000000000LL;
    p->expires = 0;
    p->cost = 12;
    memset(p->partition, 7, REC_KEY_LEN);
    memset(p->exact, 9, REC_KEY_LEN);
    p->words[0] = 3;
    p->words[1] = 4;
    p->text = "what is the capital of France";
    p->tail = "TAIL";
    p->tail_len = 4;
}

static void test_put_versions(void **state)
{
    struct rec_put in, out;
    struct buf v1 = {0}, v2 = {0};

    (void)state;
    fill(&in);
    assert_int_equal(rec_encode_put(&in, &v1), 0);
    /* No flag: version 1, byte for byte what parrot wrote before flags. */
    assert_int_equal(((const uint8_t *)v1.p)[0], 1);
    assert_int_equal(rec_decode_put(v1.p, v1.len, &out), 0);
    assert_int_equal(out.flags, 0);
    assert_string_equal(out.text, in.text);
    assert_int_equal(out.tail_len, 4);
    rec_put_fini(&out);

    in.flags = REC_FLAG_DISPUTED;
    assert_int_equal(rec_encode_put(&in, &v2), 0);
    assert_int_equal(((const uint8_t *)v2.p)[0], 2);
    assert_int_equal(v2.len, v1.len + 1);
    /* Past the flags byte, version 2 is version 1. */
    assert_memory_equal((const uint8_t *)v2.p + 2, (const uint8_t *)v1.p + 1, v1.len - 1);
    assert_int_equal(rec_decode_put(v2.p, v2.len, &out), 0);
    assert_int_equal(out.flags, REC_FLAG_DISPUTED);
    assert_int_equal(out.cost, 12);
    assert_memory_equal(out.tail, "TAIL", 4);
    rec_put_fini(&out);

    /* Version 2 without a flag, an unknown flag bit, a missing flags byte,
     * a version from the future. */
    ((uint8_t *)v2.p)[1] = 0;
    assert_int_equal(rec_decode_put(v2.p, v2.len, &out), -EBADMSG);
    ((uint8_t *)v2.p)[1] = 0x2;
    assert_int_equal(rec_decode_put(v2.p, v2.len, &out), -EBADMSG);
    assert_int_equal(rec_decode_put(v2.p, 1, &out), -EBADMSG);
    ((uint8_t *)v2.p)[0] = 3;
    assert_int_equal(rec_decode_put(v2.p, v2.len, &out), -EBADMSG);
    buf_free(&v1);
    buf_free(&v2);
}

static void test_audit_records(void **state)
{
    struct rec_audit in = {.threshold = 0.74f, .audits = 40, .wrong = 3, .waudits = 5, .wwrong = 1};
    struct rec_audit out;
    struct buf b = {0};

    (void)state;
    memset(in.partition, 5, REC_KEY_LEN);
    assert_int_equal(rec_encode_audit(&in, &b), 0);
    assert_int_equal(b.len, 1 + REC_KEY_LEN + 4 + 32);
    assert_int_equal(rec_decode_audit(b.p, b.len, &out), 0);
    assert_memory_equal(out.partition, in.partition, REC_KEY_LEN);
    assert_true(out.threshold == in.threshold);
    assert_int_equal(out.audits, 40);
    assert_int_equal(out.wrong, 3);
    assert_int_equal(out.waudits, 5);
    assert_int_equal(out.wwrong, 1);
    assert_int_equal(rec_decode_audit(b.p, b.len - 1, &out), -EBADMSG);
    /* Tallies that contradict each other are damage. */
    in.wwrong = 2;
    in.waudits = 1;
    buf_reset(&b);
    assert_int_equal(rec_encode_audit(&in, &b), 0);
    assert_int_equal(rec_decode_audit(b.p, b.len, &out), -EBADMSG);
    in = (struct rec_audit){.threshold = 1.5f};
    buf_reset(&b);
    assert_int_equal(rec_encode_audit(&in, &b), 0);
    assert_int_equal(rec_decode_audit(b.p, b.len, &out), -EBADMSG);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_versions),
        cmocka_unit_test(test_audit_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
