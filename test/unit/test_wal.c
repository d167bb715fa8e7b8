/* Unit tests for cache/persist/wal.c and vfs.c: CRC32C, round trips under every
 * policy, sequence numbers across reopen, concurrent appenders, torn tails at
 * every byte, mid-file corruption, check and repair, bad headers, injected
 * ENOSPC / EIO / short writes / crashes at byte N (with and without losing
 * unsynced data), the batch cap, and rotation under concurrent appends.
 *
 * Files live in a fresh directory under /dev/shm when it exists (fsync costs
 * nothing there; crashes and disk errors are simulated by the fault VFS, not
 * by the disk), else under $TMPDIR or /tmp. No test asserts on timing.
 *
 * One file (over 1,000 lines) for one module: every section below (CRC32C,
 * round trips, concurrency, damage, injected faults, rotation) uses the same
 * fixtures (the scratch directory, the fault VFS, the record and file
 * builders at the top), and `make tsan` runs it as one threaded test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/base/crc32c.h"
#include "cache/persist/datadir.h"
#include "cache/persist/vfs.h"
#include "test/support/faultvfs.h"
#include "test/support/tmpdir.h"
#include "cache/persist/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fixtures ---- */

static char dir[256];

static void make_dir(void)
{
    assert_int_equal(tmpdir_make(dir, sizeof(dir), "parrot-wal"), 0);
}

static void remove_dir(void)
{
    tmpdir_remove(dir);
}

static int setup(void **state)
{
    (void)state;
    make_dir();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    remove_dir();
    return 0;
}

static char *wal_path(void)
{
    static char p[512];

    snprintf(p, sizeof(p), "%s/%s", dir, WAL_DEFAULT_NAME);
    return p;
}

static struct wal_opts opts(enum wal_policy policy, struct vfs *v)
{
    struct wal_opts o = {.dir = dir, .policy = policy, .vfs = v, .retry_ms = 2};

    return o;
}

static uint8_t *read_path(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *b;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint8_t *read_file(size_t *len)
{
    return read_path(wal_path(), len);
}

static void write_file(const uint8_t *b, size_t len)
{
    FILE *f = fopen(wal_path(), "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint64_t file_size(void)
{
    struct stat st;

    assert_int_equal(stat(wal_path(), &st), 0);
    return (uint64_t)st.st_size;
}

/* Record i (its key) has a type, a length and bytes derived from i. */
static uint8_t gen_type(uint64_t i)
{
    return (uint8_t)(1 + i % 250);
}

static size_t gen_len(uint64_t i)
{
    return (size_t)((i * 2654435761u) % 300);
}

static void gen_fill(uint8_t *p, size_t n, uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ull + 0x1234567;

    for (size_t k = 0; k < n; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[k] = (uint8_t)x;
    }
}

static int append_gen(struct wal *w, uint64_t i, uint64_t *seq)
{
    uint8_t buf[512];
    size_t n = gen_len(i);

    gen_fill(buf, n, i);
    return wal_append(w, gen_type(i), buf, n, seq);
}

/* What a replay saw: per record its sequence number and key check. */
struct col {
    size_t n, cap;
    uint64_t *seq;
    uint64_t *key; /* the key each seq should have; NULL: key == seq */
    size_t nkey;
    unsigned bad; /* records whose type, length or bytes were wrong */
    unsigned out_of_order;
    int fail_at; /* return -ECANCELED at this record (1-based); 0: never */
};

static int collect(uint8_t type, uint64_t seq, const void *payload, size_t len, void *ud)
{
    struct col *c = ud;
    uint64_t key = seq;
    uint8_t buf[512];

    if (c->n && seq != c->seq[c->n - 1] + 1)
        c->out_of_order++;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->seq = realloc(c->seq, c->cap * sizeof(*c->seq));
        assert_non_null(c->seq);
    }
    c->seq[c->n++] = seq;
    if (c->key) {
        if (seq >= c->nkey) {
            c->bad++;
            return 0;
        }
        key = c->key[seq];
    }
    gen_fill(buf, gen_len(key), key);
    if (type != gen_type(key) || len != gen_len(key) || (len && memcmp(buf, payload, len) != 0))
        c->bad++;
    if (c->fail_at && c->n == (size_t)c->fail_at)
        return -ECANCELED;
    return 0;
}

static void col_fini(struct col *c)
{
    free(c->seq);
    memset(c, 0, sizeof(*c));
}

/* Opens with the OS VFS, expecting success; c gets the replay. */
static struct wal *open_ok(enum wal_policy p, struct col *c, struct wal_report *rep)
{
    struct wal_opts o = opts(p, NULL);
    struct wal *w = NULL;

    assert_int_equal(wal_open(&o, collect, c, rep, &w), 0);
    assert_int_equal(c->bad, 0);
    assert_int_equal(c->out_of_order, 0);
    return w;
}

/* Reopens, checks that records first..last (keys = seqs) come back and
 * nothing else, and closes. */
static void expect_records(uint64_t first, uint64_t last)
{
    struct col c = {0};
    struct wal_report rep;
    struct wal *w = open_ok(WAL_SYNC_ALWAYS, &c, &rep);

    assert_int_equal(c.n, last >= first ? last - first + 1 : 0);
    if (c.n) {
        assert_int_equal(c.seq[0], first);
        assert_int_equal(c.seq[c.n - 1], last);
    }
    assert_int_equal(wal_last_seq(w), last >= first ? last : first - 1);
    assert_int_equal(wal_close(w), 0);
    col_fini(&c);
}

/* Polls until seq is durable, riding out a degraded spell. */
static int wait_durable(struct wal *w, uint64_t seq)
{
    for (int i = 0; i < 20000; i++) {
        if (wal_durable_seq(w) >= seq)
            return 0;
        usleep(500);
    }
    return -ETIMEDOUT;
}

/* ---- CRC32C ---- */

static void test_crc32c(void **state)
{
    uint8_t buf[1024 + 8];

    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc32c_portable(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc32c(0, "", 0), 0);
    memset(buf, 0, 32);
    assert_int_equal(crc32c_portable(0, buf, 32), 0x8a9136aau); /* RFC 3720 B.4 */
    memset(buf, 0xff, 32);
    assert_int_equal(crc32c(0, buf, 32), 0x62a8ab43u);
    gen_fill(buf, sizeof(buf), 7);
    /* Every alignment and length, both implementations, and chaining. */
    for (size_t a = 0; a < 8; a++) {
        for (size_t n = 0; n <= 1024; n += (n < 64 ? 1 : 37)) {
            uint32_t hw = crc32c(0, buf + a, n), sw = crc32c_portable(0, buf + a, n);
            size_t cut = n / 3;

            assert_int_equal(hw, sw);
            assert_int_equal(crc32c(crc32c(0, buf + a, cut), buf + a + cut, n - cut), hw);
            assert_int_equal(
                crc32c_portable(crc32c_portable(0, buf + a, cut), buf + a + cut, n - cut), hw);
        }
    }
    print_message("crc32c: %s\n", crc32c_hw() ? "sse4.2" : "portable");
}

/* ---- round trips ---- */

static void roundtrip(enum wal_policy p)
{
    struct wal_opts o = opts(p, NULL);
    struct wal_report rep;
    struct wal_status st;
    struct wal *w = NULL;
    uint64_t seq = 0;

    remove_dir();
    make_dir();
    assert_int_equal(wal_open(&o, NULL, NULL, &rep, &w), 0);
    assert_true(rep.created);
    for (uint64_t i = 1; i <= 1500; i++) {
        assert_int_equal(append_gen(w, i, &seq), 0);
        assert_int_equal(seq, i);
        if (i % 500 == 0 && (p == WAL_SYNC_ALWAYS || p == WAL_SYNC_BATCH || p == WAL_SYNC_OFF))
            assert_int_equal(wal_wait(w, i, -1), 0);
    }
    assert_int_equal(wal_wait(w, seq, 10000), 0);
    assert_true(wal_durable_seq(w) >= 1500);
    wal_status(w, &st);
    assert_int_equal(st.error, 0);
    assert_int_equal(st.appended, 1500);
    assert_int_equal(st.last_seq, 1500);
    assert_int_equal(st.policy, p ? p : WAL_DEFAULT_POLICY);
    assert_int_equal(wal_close(w), 0);
    expect_records(1, 1500);

    /* Appending after a reopen goes on with the next sequence number. */
    assert_int_equal(wal_open(&o, NULL, NULL, &rep, &w), 0);
    assert_false(rep.created);
    assert_int_equal(rep.state, WAL_STATE_CLEAN);
    assert_int_equal(rep.records, 1500);
    for (uint64_t i = 1501; i <= 2000; i++) {
        assert_int_equal(append_gen(w, i, &seq), 0);
        assert_int_equal(seq, i);
    }
    assert_int_equal(wal_close(w), 0); /* close flushes (and syncs) what is pending */
    expect_records(1, 2000);
}

static void test_roundtrip_policies(void **state)
{
    (void)state;
    roundtrip(WAL_SYNC_ALWAYS);
    roundtrip(WAL_SYNC_BATCH);
    roundtrip(WAL_SYNC_EVERYSEC);
    roundtrip(WAL_SYNC_OFF);
    roundtrip(WAL_SYNC_DEFAULT);
}

/* Appends under wal_hold stay pending until wal_release, which has them
 * written and synced as one batch: durable, in order, across a reopen. */
static void test_hold(void **state)
{
    struct wal_opts o = opts(WAL_SYNC_ALWAYS, NULL);
    struct wal_report rep;
    struct wal_status st0, st;
    struct wal *w = NULL;
    uint64_t seq = 0;

    (void)state;
    assert_int_equal(wal_open(&o, NULL, NULL, &rep, &w), 0);
    wal_status(w, &st0);
    wal_hold(w);
    wal_hold(w); /* holds nest */
    for (uint64_t i = 1; i <= 100; i++)
        assert_int_equal(append_gen(w, i, &seq), 0);
    wal_release(w);
    /* Still held: nothing woke the writer, so nothing is durable. */
    assert_int_equal(wal_wait(w, seq, 50), -ETIMEDOUT);
    assert_int_equal(wal_durable_seq(w), 0);
    wal_release(w);
    assert_int_equal(wal_wait(w, seq, -1), 0);
    wal_status(w, &st);
    assert_int_equal(st.writes - st0.writes, 1);
    assert_int_equal(st.syncs - st0.syncs, 1);
    assert_int_equal(wal_close(w), 0);
    expect_records(1, 100);
}

static void test_reopen_sequence(void **state)
{
    struct wal_opts o = opts(WAL_SYNC_BATCH, NULL);
    struct col c = {0};
    struct wal *w = NULL;
    uint64_t seq, next = 1;

    (void)state;
    for (int round = 0; round < 6; round++) {
        col_fini(&c);
        assert_int_equal(wal_open(&o, collect, &c, NULL, &w), 0);
        assert_int_equal(c.n, next - 1);
        assert_int_equal(c.bad + c.out_of_order, 0);
        for (size_t k = 0; k < c.n; k++)
            assert_int_equal(c.seq[k], k + 1);
        /* round 3 appends nothing: an empty session must not disturb anything */
        for (int k = 0; round != 3 && k < 50 + round * 10; k++) {
            assert_int_equal(append_gen(w, next, &seq), 0);
            assert_int_equal(seq, next);
            next++;
        }
        assert_int_equal(wal_close(w), 0);
    }
    col_fini(&c);

    /* A replay callback's error stops the open and is returned. */
    c.fail_at = 10;
    assert_int_equal(wal_open(&o, collect, &c, NULL, &w), -ECANCELED);
    assert_null(w);
    col_fini(&c);
}

static void test_invalid_args(void **state)
{
    struct wal_opts o = opts(WAL_SYNC_ALWAYS, NULL);
    struct wal_opts bad = {0};
    struct wal *w = NULL;
    uint8_t b = 0;
    enum wal_policy p;

    (void)state;
    assert_int_equal(wal_open(&bad, NULL, NULL, NULL, &w), -EINVAL);
    bad.dir = "/nonexistent/parrot/dir";
    assert_int_equal(wal_open(&bad, NULL, NULL, NULL, &w), -ENOENT);
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    assert_int_equal(wal_append(w, 0, &b, 1, NULL), -EINVAL);
    assert_int_equal(wal_append(w, 1, NULL, 1, NULL), -EINVAL);
    assert_int_equal(wal_append(w, 1, &b, (size_t)WAL_MAX_PAYLOAD + 1, NULL), -EMSGSIZE);
    assert_int_equal(wal_wait(w, 1, 0), -EINVAL); /* never handed out */
    assert_int_equal(wal_wait(w, 0, 0), 0);
    assert_int_equal(wal_rotate(w, 1), -EINVAL);
    assert_int_equal(wal_append(w, 1, NULL, 0, NULL), 0); /* empty payloads are fine */
    assert_int_equal(wal_close(w), 0);
    assert_int_equal(wal_close(NULL), 0);

    assert_int_equal(wal_policy_parse("everysec", &p), 0);
    assert_int_equal(p, WAL_SYNC_EVERYSEC);
    assert_int_equal(wal_policy_parse("sometimes", &p), -EINVAL);
    assert_string_equal(wal_policy_name(WAL_SYNC_BATCH), "batch");
}

static void test_max_payload(void **state)
{
    struct wal_opts o = opts(WAL_SYNC_ALWAYS, NULL);
    size_t n = WAL_MAX_PAYLOAD;
    uint8_t *big = malloc(n), *file;
    struct wal_report rep;
    struct wal *w = NULL;
    uint64_t seq;
    size_t len;

    (void)state;
    assert_non_null(big);
    gen_fill(big, n, 99);
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    assert_int_equal(wal_append(w, 9, big, n, &seq), 0);
    assert_int_equal(append_gen(w, 2, &seq), 0);
    assert_int_equal(wal_close(w), 0);
    assert_int_equal(file_size(), WAL_HEADER_SIZE + 2 * WAL_RECORD_HEADER + n + gen_len(2));
    free(big);

    /* A record that claims more than the maximum is damage, not a huge read. */
    file = read_file(&len);
    file[WAL_HEADER_SIZE + WAL_RECORD_HEADER + n + 4 + 3] = 0x7f; /* len of record 2 */
    write_file(file, len);
    assert_int_equal(wal_check(&o, &rep), -EBADMSG);
    assert_int_equal(rep.state, WAL_STATE_TORN_TAIL);
    assert_int_equal(rep.records, 1);
    assert_int_equal(rep.bad_offset, WAL_HEADER_SIZE + WAL_RECORD_HEADER + n);
    free(file);
}

/* ---- concurrency ---- */

#define THREADS    8
#define PER_THREAD 5000

struct worker {
    struct wal *w;
    unsigned id;
    uint64_t *seq_of; /* [i]: the seq record i got */
};

static uint64_t key_of(unsigned thread, unsigned i)
{
    return (uint64_t)thread * 1000000 + i;
}

static void *appender(void *arg)
{
    struct worker *wk = arg;

    for (unsigned i = 0; i < PER_THREAD; i++) {
        int rc;

        do
            rc = append_gen(wk->w, key_of(wk->id, i), &wk->seq_of[i]);
        while (rc == -ENOBUFS && usleep(100) == 0);
        if (rc)
            return (void *)(intptr_t)rc;
    }
    return NULL;
}

static void test_concurrent_appenders(void **state)
{
    struct wal_opts o = opts(WAL_SYNC_BATCH, NULL);
    struct worker wk[THREADS];
    pthread_t th[THREADS];
    struct col c = {0};
    struct wal *w = NULL;
    uint64_t total = (uint64_t)THREADS * PER_THREAD;
    uint8_t *seen;

    (void)state;
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    for (unsigned t = 0; t < THREADS; t++) {
        wk[t].w = w;
        wk[t].id = t;
        wk[t].seq_of = calloc(PER_THREAD, sizeof(uint64_t));
        assert_non_null(wk[t].seq_of);
        assert_int_equal(pthread_create(&th[t], NULL, appender, &wk[t]), 0);
    }
    for (unsigned t = 0; t < THREADS; t++) {
        void *rc;

        assert_int_equal(pthread_join(th[t], &rc), 0);
        assert_null(rc);
    }
    assert_int_equal(wal_close(w), 0);

    /* Map each sequence number back to the record that got it. */
    c.nkey = total + 1;
    c.key = calloc(c.nkey, sizeof(uint64_t));
    assert_non_null(c.key);
    for (unsigned t = 0; t < THREADS; t++) {
        for (unsigned i = 0; i < PER_THREAD; i++) {
            uint64_t s = wk[t].seq_of[i];

            assert_true(s >= 1 && s <= total);
            assert_int_equal(c.key[s], 0); /* no sequence number handed out twice */
            c.key[s] = key_of(t, i);
            /* one thread's records keep their order */
            if (i)
                assert_true(s > wk[t].seq_of[i - 1]);
        }
    }
    w = open_ok(WAL_SYNC_BATCH, &c, NULL);
    assert_int_equal(c.n, total);
    seen = calloc(total + 1, 1);
    assert_non_null(seen);
    for (size_t k = 0; k < c.n; k++) {
        assert_int_equal(seen[c.seq[k]], 0);
        seen[c.seq[k]] = 1;
    }
    assert_int_equal(wal_close(w), 0);
    free(seen);
    free(c.key);
    col_fini(&c);
    for (unsigned t = 0; t < THREADS; t++)
        free(wk[t].seq_of);
}

/* ---- damage ---- */

/* Writes records 1..n and returns the file and each record's offset. */
static uint8_t *make_log(unsigned n, uint64_t *offs, size_t *len)
{
    struct wal_opts o = opts(WAL_SYNC_OFF, NULL);
    struct wal *w = NULL;
    uint64_t off = WAL_HEADER_SIZE;

    remove_dir();
    make_dir();
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    for (unsigned i = 1; i <= n; i++) {
        assert_int_equal(append_gen(w, i, NULL), 0);
        offs[i] = off;
        off += WAL_RECORD_HEADER + gen_len(i);
    }
    offs[n + 1] = off;
    assert_int_equal(wal_close(w), 0);
    assert_int_equal(file_size(), off);
    return read_file(len);
}

static void test_torn_tail_every_byte(void **state)
{
    struct wal_opts o = opts(WAL_SYNC_ALWAYS, NULL);
    uint64_t offs[12];
    size_t len;
    uint8_t *orig;

    (void)state;
    /* gen_len(6) is 66: record 6 takes 86 bytes. */
    orig = make_log(6, offs, &len);
    assert_true(len - offs[6] == WAL_RECORD_HEADER + 66);
    for (uint64_t cut = offs[6]; cut < len; cut++) {
        struct wal_report rep;
        struct col c = {0};
        struct wal *w;
        uint64_t seq;

        write_file(orig, cut);
        if (cut == offs[6]) {
            assert_int_equal(wal_check(&o, &rep), 0);
            assert_int_equal(rep.state, WAL_STATE_CLEAN);
        } else {
            assert_int_equal(wal_check(&o, &rep), -EBADMSG);
            assert_int_equal(rep.state, WAL_STATE_TORN_TAIL);
            assert_int_equal(rep.bad_offset, offs[6]);
            assert_int_equal(rep.dropped_bytes, cut - offs[6]);
            assert_int_equal(file_size(), cut); /* check is read-only */
        }
        assert_int_equal(rep.records, 5);
        w = open_ok(WAL_SYNC_ALWAYS, &c, &rep);
        assert_int_equal(c.n, 5);
        assert_int_equal(rep.truncated, cut != offs[6]);
        assert_int_equal(file_size(), offs[6]);
        /* The log goes on where the intact part ended. */
        assert_int_equal(append_gen(w, 6, &seq), 0);
        assert_int_equal(seq, 6);
        assert_int_equal(wal_close(w), 0);
        col_fini(&c);
        expect_records(1, 6);
    }

    /* A damaged byte anywhere in the last record, nothing after it: torn too. */
    for (uint64_t at = offs[6]; at < len; at++) {
        struct wal_report rep;
        struct col c = {0};
        struct wal *w;

        orig[at] ^= 0x10;
        write_file(orig, len);
        orig[at] ^= 0x10;
        w = open_ok(WAL_SYNC_ALWAYS, &c, &rep);
        assert_int_equal(rep.state, WAL_STATE_TORN_TAIL);
        assert_true(rep.truncated);
        assert_int_equal(c.n, 5);
        assert_int_equal(wal_close(w), 0);
        col_fini(&c);
    }
    free(orig);
}

static void test_corrupt_middle(void **state)
{
    struct wal_opts o = opts(WAL_SYNC_ALWAYS, NULL);
    /* payload byte, length field, sequence number, crc, type */
    const unsigned where[] = {WAL_RECORD_HEADER + 3, 5, 9, 1, 16};
    uint64_t offs[12];
    size_t len;
    uint8_t *orig = make_log(10, offs, &len);

    (void)state;
    for (size_t k = 0; k < sizeof(where) / sizeof(where[0]); k++) {
        struct wal_report rep;
        struct col c = {0};
        struct wal *w = NULL;
        char cmd[400];
        uint8_t *now;
        size_t now_len;
        uint64_t seq;

        orig[offs[5] + where[k]] ^= 0x04;
        write_file(orig, len);
        orig[offs[5] + where[k]] ^= 0x04;

        assert_int_equal(wal_open(&o, collect, &c, &rep, &w), -EBADMSG);
        assert_null(w);
        assert_int_equal(c.n, 0); /* a refused file never reaches the callback */
        assert_int_equal(rep.state, WAL_STATE_CORRUPT);
        assert_int_equal(rep.bad_offset, offs[5]);
        assert_int_equal(rep.resume_offset, offs[6]);
        assert_int_equal(rep.records, 4);
        assert_int_equal(rep.records_after, 5);
        assert_int_equal(rep.dropped_bytes, len - offs[5]);
        snprintf(cmd, sizeof(cmd), "%s %s", WAL_REPAIR_COMMAND, dir);
        assert_non_null(strstr(rep.message, cmd));
        snprintf(cmd, sizeof(cmd), "offset %llu", (unsigned long long)offs[5]);
        assert_non_null(strstr(rep.message, cmd));
        assert_non_null(strstr(rep.message, wal_path()));

        assert_int_equal(wal_check(&o, &rep), -EBADMSG);
        assert_int_equal(rep.state, WAL_STATE_CORRUPT);
        assert_int_equal(rep.records, 4);
        assert_int_equal(rep.last_seq, 4);
        assert_int_equal(rep.bad_offset, offs[5]);
        now = read_file(&now_len);
        assert_int_equal(now_len, len);
        free(now);

        assert_int_equal(wal_repair(&o, &rep), 0);
        assert_true(rep.repaired);
        assert_int_equal(rep.records, 4);
        assert_int_equal(rep.dropped_records, 5);
        assert_int_equal(rep.dropped_bytes, len - offs[5]);
        /* The damaged original is kept, byte for byte, and named. */
        assert_int_equal(strncmp(rep.backup, wal_path(), strlen(wal_path())), 0);
        assert_string_equal(rep.backup + strlen(rep.backup) - 4, ".bak");
        assert_non_null(strstr(rep.message, rep.backup));
        orig[offs[5] + where[k]] ^= 0x04;
        now = read_path(rep.backup, &now_len);
        assert_int_equal(now_len, len);
        assert_memory_equal(now, orig, len);
        orig[offs[5] + where[k]] ^= 0x04;
        free(now);
        assert_int_equal(unlink(rep.backup), 0);
        assert_int_equal(wal_check(&o, &rep), 0);
        assert_int_equal(rep.state, WAL_STATE_CLEAN);
        assert_int_equal(rep.records, 4);
        assert_int_equal(file_size(), offs[5]);
        assert_int_equal(access(wal_path(), F_OK), 0);

        w = open_ok(WAL_SYNC_ALWAYS, &c, &rep);
        assert_int_equal(c.n, 4);
        assert_int_equal(append_gen(w, 5, &seq), 0);
        assert_int_equal(seq, 5);
        assert_int_equal(wal_close(w), 0);
        col_fini(&c);
        expect_records(1, 5);
        /* A clean file is left alone. */
        assert_int_equal(wal_repair(&o, &rep), 0);
        assert_false(rep.repaired);
    }
    free(orig);
}

static void test_bad_headers(void **state)
{
    struct wal_opts o = opts(WAL_SYNC_ALWAYS, NULL);
    struct wal_report rep;
    struct col c = {0};
    struct wal *w = NULL;
    uint64_t offs[6];
    size_t len;
    uint8_t *orig = make_log(3, offs, &len), *b = malloc(len);
    char *out = NULL;
    size_t out_len = 0;
    FILE *mf;

    (void)state;
    assert_non_null(b);

    memcpy(b, orig, len);
    b[0] = 'X';
    write_file(b, len);
    assert_int_equal(wal_open(&o, collect, &c, &rep, &w), -EBADMSG);
    assert_int_equal(rep.state, WAL_STATE_NOT_WAL);
    assert_int_equal(wal_check(&o, &rep), -EBADMSG);
    assert_int_equal(rep.state, WAL_STATE_NOT_WAL);
    assert_int_equal(wal_repair(&o, &rep), -EBADMSG);
    assert_false(rep.repaired);
    assert_int_equal(file_size(), len);

    memcpy(b, orig, len);
    b[8] = 2; /* version 2: refused before its header is even looked at */
    write_file(b, len);
    assert_int_equal(wal_open(&o, collect, &c, &rep, &w), -EPROTONOSUPPORT);
    assert_int_equal(rep.state, WAL_STATE_TOO_NEW);
    assert_int_equal(rep.version, 2);
    assert_non_null(strstr(rep.message, "newer"));
    assert_int_equal(wal_repair(&o, &rep), -EPROTONOSUPPORT);

    memcpy(b, orig, len);
    b[8] = 0;
    write_file(b, len);
    assert_int_equal(wal_open(&o, collect, &c, &rep, &w), -EPROTONOSUPPORT);
    assert_int_equal(rep.state, WAL_STATE_TOO_OLD);

    memcpy(b, orig, len);
    b[20] ^= 1; /* salt: header checksum fails */
    write_file(b, len);
    assert_int_equal(wal_open(&o, collect, &c, &rep, &w), -EBADMSG);
    assert_int_equal(rep.state, WAL_STATE_BAD_HEADER);

    write_file(orig, 30);
    assert_int_equal(wal_open(&o, collect, &c, &rep, &w), -EBADMSG);
    assert_int_equal(rep.state, WAL_STATE_BAD_HEADER);
    write_file((const uint8_t *)"PARRO", 5);
    assert_int_equal(wal_check(&o, &rep), -EBADMSG);
    assert_int_equal(rep.state, WAL_STATE_BAD_HEADER);
    write_file((const uint8_t *)"hello", 5);
    assert_int_equal(wal_check(&o, &rep), -EBADMSG);
    assert_int_equal(rep.state, WAL_STATE_NOT_WAL);
    assert_null(w);
    assert_int_equal(c.n, 0);

    /* An empty file holds nothing: opening it makes a fresh log. */
    write_file(orig, 0);
    assert_int_equal(wal_check(&o, &rep), 0);
    assert_int_equal(rep.state, WAL_STATE_MISSING);
    w = open_ok(WAL_SYNC_ALWAYS, &c, &rep);
    assert_true(rep.created);
    assert_int_equal(wal_close(w), 0);
    assert_int_equal(file_size(), WAL_HEADER_SIZE);

    /* The report prints. */
    write_file(orig, len - 3);
    assert_int_equal(wal_check(&o, &rep), -EBADMSG);
    mf = open_memstream(&out, &out_len);
    assert_non_null(mf);
    wal_report_print(&rep, mf);
    fclose(mf);
    assert_non_null(strstr(out, "state:     torn tail"));
    assert_non_null(strstr(out, "records:   2 valid (seq 1..2)"));
    free(out);
    free(b);
    free(orig);
    col_fini(&c);
}

/* ---- injected faults ---- */

struct logs {
    pthread_mutex_t mu;
    int degraded, recovered;
};

static void log_cb(void *ud, const char *msg)
{
    struct logs *l = ud;

    pthread_mutex_lock(&l->mu);
    if (strstr(msg, "degraded"))
        l->degraded++;
    if (strstr(msg, "recovered"))
        l->recovered++;
    pthread_mutex_unlock(&l->mu);
}

static void test_enospc(void **state)
{
    struct vfs *v;
    struct wal_opts o;
    struct vfs_fault_plan plan = {.write_nth = 1, .write_err = -ENOSPC}; /* for good */
    struct logs logs = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct wal_status st;
    struct wal *w = NULL;
    uint64_t seq, good;

    (void)state;
    assert_int_equal(vfs_fault_new(&v), 0);
    o = opts(WAL_SYNC_ALWAYS, v);
    o.log = log_cb;
    o.log_ud = &logs;

    /* 1: the disk fills up and stays full until the WAL is closed. */
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    for (uint64_t i = 1; i <= 10; i++)
        assert_int_equal(append_gen(w, i, &seq), 0);
    assert_int_equal(wal_wait(w, 10, -1), 0);
    good = file_size();
    vfs_fault_set(v, &plan);
    assert_int_equal(append_gen(w, 11, &seq), 0);
    assert_int_equal(wal_wait(w, 11, -1), -ENOSPC);
    wal_status(w, &st);
    assert_int_equal(st.error, -ENOSPC);
    assert_true(st.degraded_since_ms > 0);
    assert_true(st.io_failures >= 1);
    assert_int_equal(st.durable_seq, 10);
    assert_int_equal(append_gen(w, 12, &seq), -ENOSPC);
    assert_int_equal(append_gen(w, 13, &seq), -ENOSPC);
    wal_status(w, &st);
    assert_int_equal(st.dropped_records, 2);
    assert_int_equal(st.dropped_bytes, gen_len(12) + gen_len(13));
    assert_int_equal(wal_close(w), -ENOSPC); /* record 11 never made it */
    assert_int_equal(file_size(), good);     /* no half record left behind */
    vfs_fault_clear(v);
    expect_records(1, 10);

    /* 2: space comes back; the WAL recovers by itself and loses nothing it
     * accepted. */
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    vfs_fault_set(v, &plan);
    assert_int_equal(append_gen(w, 11, &seq), 0);
    assert_int_equal(wal_wait(w, 11, -1), -ENOSPC);
    assert_int_equal(append_gen(w, 12, &seq), -ENOSPC);
    vfs_fault_clear(v);
    assert_int_equal(wait_durable(w, 11), 0);
    wal_status(w, &st);
    assert_int_equal(st.error, 0);
    assert_int_equal(st.last_error, -ENOSPC);
    assert_int_equal(st.recoveries, 1);
    for (uint64_t i = 12; i <= 20; i++) {
        assert_int_equal(append_gen(w, i, &seq), 0);
        assert_int_equal(seq, i);
    }
    assert_int_equal(wal_wait(w, 20, -1), 0);
    assert_int_equal(wal_close(w), 0);
    expect_records(1, 20);
    pthread_mutex_lock(&logs.mu);
    assert_true(logs.degraded >= 2);
    assert_int_equal(logs.recovered, 1);
    pthread_mutex_unlock(&logs.mu);

    /* 3: the write fails and so does the truncation that should undo it: the
     * half record stays on disk, and the next open cuts it off as a torn tail. */
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    good = file_size();
    plan.truncate_err = -EIO;
    vfs_fault_set(v, &plan);
    assert_int_equal(append_gen(w, 21, &seq), 0);
    assert_int_equal(wal_wait(w, 21, -1), -ENOSPC);
    assert_int_equal(wal_close(w), -ENOSPC);
    assert_true(file_size() > good);
    vfs_fault_clear(v);
    expect_records(1, 20);
    vfs_fault_free(v);
}

static void test_fsync_eio(void **state)
{
    struct vfs *v;
    struct wal_opts o;
    struct vfs_fault_plan plan = {.sync_nth = 1, .sync_count = 1, .sync_err = -EIO};
    struct vfs_fault_plan stall = {.stall = true};
    struct wal_status st;
    struct wal *w = NULL;
    uint64_t seq;

    (void)state;
    assert_int_equal(vfs_fault_new(&v), 0);
    for (int p = WAL_SYNC_ALWAYS; p <= WAL_SYNC_EVERYSEC; p++) {
        remove_dir();
        make_dir();
        o = opts((enum wal_policy)p, v);
        assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
        for (uint64_t i = 1; i <= 5; i++)
            assert_int_equal(append_gen(w, i, &seq), 0);
        assert_int_equal(wait_durable(w, 5), 0);
        /* Hold writes back while 6..10 are appended, so no sync can fail
         * (and refuse appends) before all five are in; then the next sync
         * fails once. */
        vfs_fault_set(v, &stall);
        for (uint64_t i = 6; i <= 10; i++)
            assert_int_equal(append_gen(w, i, &seq), 0);
        vfs_fault_set(v, &plan);
        assert_int_equal(wait_durable(w, 10), 0); /* rewritten and synced on retry */
        wal_status(w, &st);
        assert_int_equal(st.error, 0);
        assert_int_equal(st.last_error, -EIO);
        assert_int_equal(st.recoveries, 1);
        assert_int_equal(wal_close(w), 0);
        expect_records(1, 10);
    }
    vfs_fault_free(v);
}

static void test_short_write(void **state)
{
    struct vfs *v;
    struct wal_opts o;
    struct vfs_fault_plan plan = {.write_nth = 1, .write_count = 3}; /* three short writes */
    struct vfs_fault_stats fs;
    struct wal_status st;
    struct wal *w = NULL;
    uint64_t seq;

    (void)state;
    assert_int_equal(vfs_fault_new(&v), 0);
    o = opts(WAL_SYNC_ALWAYS, v);
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    vfs_fault_set(v, &plan);
    for (uint64_t i = 1; i <= 30; i++)
        assert_int_equal(append_gen(w, i, &seq), 0);
    assert_int_equal(wal_wait(w, 30, -1), 0);
    vfs_fault_get_stats(v, &fs);
    assert_int_equal(fs.faults, 3);
    wal_status(w, &st);
    assert_int_equal(st.error, 0);
    assert_int_equal(wal_close(w), 0);
    expect_records(1, 30);

    /* Writes that make no progress at all are an error like any other. */
    plan.write_count = 0;
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    vfs_fault_set(v, &plan);
    assert_int_equal(append_gen(w, 31, &seq), 0);
    assert_int_equal(wal_wait(w, 31, -1), -EIO);
    assert_int_equal(wal_close(w), -EIO);
    vfs_fault_clear(v);
    expect_records(1, 30);
    vfs_fault_free(v);
}

/* Appends groups of records, waiting for each group, until the VFS crashes
 * at byte n. Returns the last sequence number acknowledged as durable. */
static uint64_t run_until_crash(struct vfs *v, uint64_t n, uint64_t *appended)
{
    struct wal_opts o = opts(WAL_SYNC_ALWAYS, v);
    struct vfs_fault_plan plan = {.crash_at = n};
    struct wal *w = NULL;
    uint64_t acked = 0, seq = 0;

    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    vfs_fault_set(v, &plan);
    *appended = 0;
    for (unsigned g = 0; g < 8; g++) {
        int rc = 0;

        for (unsigned k = 0; k < 3 && rc == 0; k++) {
            rc = append_gen(w, seq + 1, &seq);
            if (rc == 0)
                *appended = seq;
        }
        if (rc == 0)
            rc = wal_wait(w, seq, -1);
        if (rc)
            break;
        acked = seq;
    }
    assert_int_not_equal(wal_close(w), 0); /* it did crash */
    return acked;
}

static void test_crash_at_byte(void **state)
{
    struct vfs *v;
    uint64_t total = 0;

    (void)state;
    assert_int_equal(vfs_fault_new(&v), 0);
    for (uint64_t i = 1; i <= 24; i++)
        total += WAL_RECORD_HEADER + gen_len(i);
    for (int lose = 0; lose <= 1; lose++) {
        for (uint64_t n = 1; n < total; n += 11) {
            struct col c = {0};
            struct wal_report rep;
            struct wal *w;
            uint64_t appended, acked;

            remove_dir();
            make_dir();
            acked = run_until_crash(v, n, &appended);
            if (lose)
                assert_int_equal(vfs_fault_power_loss(v), 0);
            vfs_fault_clear(v);
            /* Every acknowledged record is there, in order and intact;
             * nothing that was not appended is. */
            w = open_ok(WAL_SYNC_ALWAYS, &c, &rep);
            assert_true(c.n >= acked);
            assert_true(c.n <= appended);
            for (size_t k = 0; k < c.n; k++)
                assert_int_equal(c.seq[k], k + 1);
            assert_int_equal(wal_close(w), 0);
            col_fini(&c);
        }
    }
    vfs_fault_free(v);
}

static void test_enobufs(void **state)
{
    struct vfs *v;
    struct wal_opts o;
    struct vfs_fault_plan stall = {.stall = true};
    struct vfs_fault_stats fs;
    struct wal_status st;
    struct wal *w = NULL;
    uint8_t kib[2048] = {0};
    uint64_t seq = 0, accepted = 0;
    int rc;

    (void)state;
    assert_int_equal(vfs_fault_new(&v), 0);
    o = opts(WAL_SYNC_ALWAYS, v);
    o.max_pending = 8 * 1024;
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    vfs_fault_set(v, &stall);
    assert_int_equal(wal_append(w, 1, kib, 1024, &seq), 0);
    do { /* until the writer is stuck in its write */
        usleep(200);
        vfs_fault_get_stats(v, &fs);
    } while (fs.stalled == 0);
    while ((rc = wal_append(w, 1, kib, 1024, &seq)) == 0)
        accepted++;
    assert_int_equal(rc, -ENOBUFS);
    assert_true(accepted >= 5 && accepted <= 7); /* 8 KiB minus what the writer holds */
    assert_int_equal(wal_append(w, 1, kib, 2000, NULL), -ENOBUFS);
    wal_status(w, &st);
    assert_int_equal(st.nobufs_records, 2);
    assert_int_equal(st.nobufs_bytes, 1024 + 2000);
    assert_true(st.pending_bytes <= o.max_pending);
    assert_int_equal(st.error, 0); /* a full batch is not a degraded WAL */
    vfs_fault_clear(v);            /* the disk catches up */
    assert_int_equal(wal_wait(w, seq, -1), 0);
    assert_int_equal(wal_append(w, 1, kib, 1024, &seq), 0);
    assert_int_equal(seq, accepted + 2);
    assert_int_equal(wal_close(w), 0);
    vfs_fault_free(v);
    {
        struct wal_report rep;
        struct wal_opts oo = opts(WAL_SYNC_ALWAYS, NULL);

        assert_int_equal(wal_check(&oo, &rep), 0);
        assert_int_equal(rep.records, accepted + 2);
    }
}

/* ---- rotation ---- */

struct rot_worker {
    struct wal *w;
    uint64_t n;
    uint64_t *key_of_seq; /* [seq] = key */
    size_t cap;
    atomic_int done;
};

static void *rot_appender(void *arg)
{
    struct rot_worker *rw = arg;

    for (uint64_t i = 1; i <= rw->n; i++) {
        uint64_t key = 500000 + i, seq;
        int rc;

        while ((rc = append_gen(rw->w, key, &seq)) == -ENOBUFS)
            usleep(100);
        if (rc || seq >= rw->cap)
            return (void *)1;
        rw->key_of_seq[seq] = key;
        if (i % 500 == 0)
            usleep(300); /* spread the appends over several rotations */
    }
    atomic_store(&rw->done, 1);
    return NULL;
}

static void test_rotate(void **state)
{
    struct wal_opts o = opts(WAL_SYNC_BATCH, NULL);
    struct wal_report rep;
    struct wal_status st;
    struct col c = {0};
    struct wal *w = NULL;
    uint64_t seq, before;
    struct rot_worker rw = {0};
    pthread_t th;
    void *ret;

    (void)state;
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    for (uint64_t i = 1; i <= 100; i++)
        assert_int_equal(append_gen(w, i, &seq), 0);
    assert_int_equal(wal_wait(w, 100, -1), 0);
    before = file_size();
    assert_int_equal(wal_rotate(w, 60), 0);
    assert_true(file_size() < before);
    assert_int_equal(wal_last_seq(w), 100);
    for (uint64_t i = 101; i <= 120; i++) {
        assert_int_equal(append_gen(w, i, &seq), 0);
        assert_int_equal(seq, i);
    }
    wal_status(w, &st);
    assert_int_equal(st.rotations, 1);
    assert_int_equal(wal_close(w), 0);
    expect_records(61, 120);
    assert_int_equal(wal_check(&o, &rep), 0);
    assert_int_equal(rep.base_seq, 61);

    /* Everything covered: an empty file that still knows the next seq. */
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    assert_int_equal(wal_rotate(w, 120), 0);
    assert_int_equal(wal_close(w), 0);
    assert_int_equal(file_size(), WAL_HEADER_SIZE);
    assert_int_equal(wal_check(&o, &rep), 0);
    assert_int_equal(rep.base_seq, 121);
    assert_int_equal(rep.records, 0);
    assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
    assert_int_equal(wal_last_seq(w), 120);
    assert_int_equal(append_gen(w, 121, &seq), 0);
    assert_int_equal(seq, 121);

    /* Rotations while another thread appends: every record after the last
     * rotation point survives, in order, intact. */
    rw.w = w;
    rw.n = 20000;
    rw.cap = 200000;
    rw.key_of_seq = calloc(rw.cap, sizeof(uint64_t));
    assert_non_null(rw.key_of_seq);
    for (uint64_t s = 1; s <= 121; s++)
        rw.key_of_seq[s] = s;
    atomic_init(&rw.done, 0);
    assert_int_equal(pthread_create(&th, NULL, rot_appender, &rw), 0);
    do {
        uint64_t upto = wal_durable_seq(w);

        assert_int_equal(wal_rotate(w, upto), 0);
        before = upto;
        usleep(1000);
    } while (!atomic_load(&rw.done));
    assert_int_equal(pthread_join(th, &ret), 0);
    wal_status(w, &st);
    assert_true(st.rotations >= 1);
    assert_null(ret);
    assert_int_equal(wal_close(w), 0);
    c.key = rw.key_of_seq;
    c.nkey = rw.cap;
    w = open_ok(WAL_SYNC_BATCH, &c, &rep);
    assert_int_equal(c.n, 121 + rw.n - before);
    if (c.n) {
        assert_int_equal(c.seq[0], before + 1);
        assert_int_equal(c.seq[c.n - 1], 121 + rw.n);
    }
    assert_int_equal(wal_close(w), 0);
    col_fini(&c);
    free(rw.key_of_seq);
}

/* A crash in the middle of a rotation leaves the old file or the new one,
 * and either holds every record after the rotation point. */
static void test_rotate_crash(void **state)
{
    struct vfs *v;
    uint64_t total = WAL_HEADER_SIZE;

    (void)state;
    assert_int_equal(vfs_fault_new(&v), 0);
    for (uint64_t i = 21; i <= 40; i++)
        total += WAL_RECORD_HEADER + gen_len(i);
    for (uint64_t n = 1; n <= total + 1; n += 7) {
        struct wal_opts o = opts(WAL_SYNC_ALWAYS, v);
        struct vfs_fault_plan plan = {.crash_at = n};
        struct col c = {0};
        struct wal *w = NULL;

        remove_dir();
        make_dir();
        assert_int_equal(wal_open(&o, NULL, NULL, NULL, &w), 0);
        for (uint64_t i = 1; i <= 40; i++)
            assert_int_equal(append_gen(w, i, NULL), 0);
        assert_int_equal(wal_wait(w, 40, -1), 0);
        vfs_fault_set(v, &plan);
        if (wal_rotate(w, 20) == 0)
            assert_true(n > total); /* only when the crash point lies beyond it */
        wal_close(w);
        assert_int_equal(vfs_fault_power_loss(v), 0);
        vfs_fault_clear(v);
        w = open_ok(WAL_SYNC_ALWAYS, &c, NULL);
        assert_true(c.n == 40 || c.n == 20);
        assert_int_equal(c.seq[c.n - 1], 40);
        assert_int_equal(wal_close(w), 0);
        col_fini(&c);
    }
    vfs_fault_free(v);
}

/* One holder per data directory, even inside one process; the message
 * names the holder's pid; the lock is free again once released. */
static void test_datadir_lock(void **state)
{
    struct datadir_lock *a = NULL, *b = NULL;
    char err[512], pid[32];

    (void)state;
    assert_int_equal(datadir_lock(dir, &a, err, sizeof(err)), 0);
    assert_non_null(a);
    assert_int_equal(datadir_lock(dir, &b, err, sizeof(err)), -EWOULDBLOCK);
    assert_null(b);
    snprintf(pid, sizeof(pid), "pid %ld ", (long)getpid());
    assert_non_null(strstr(err, pid));
    assert_non_null(strstr(err, dir));
    datadir_unlock(a);
    assert_int_equal(datadir_lock(dir, &b, err, sizeof(err)), 0);
    datadir_unlock(b);
    datadir_unlock(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test_setup_teardown(test_roundtrip_policies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appenders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_at_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enobufs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datadir_lock, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
