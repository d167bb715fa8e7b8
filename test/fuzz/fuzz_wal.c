/* fuzz_wal.c - fuzz target for the WAL reader in cache/wal.c; see
 * test/fuzz/README.md.
 *
 * The input is a WAL file: its first byte picks fix-ups, the rest is the
 * file. Checksums would stop random bytes at the header, so the fix-ups
 * recompute, as the writer would, the header CRC (bit 0), each record's
 * sequence number (bit 1) and each record's CRC (bit 2) before the bytes are
 * written to a scratch directory. Then:
 *   - wal_check: its report must be self-consistent and agree with an
 *     independent reference parser (written here from the format description
 *     at the top of wal.c) on the header verdict, the number of valid records
 *     and where they end;
 *   - wal_open with a replay callback: it opens exactly when check found the
 *     file clean, torn or empty, replays exactly the records check counted,
 *     with sequence numbers counting up from the file's first one, and
 *     refuses everything else with check's error without replaying a thing;
 *     after an append and a close, the file checks clean with one more record;
 *   - wal_repair on a damaged file: afterwards it checks clean and holds the
 *     records before the damage.
 * ASan and UBSan catch the rest, LeakSanitizer any leak.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cache/base/crc32c.h"
#include "cache/persist/wal.h"
#include "test/fuzz/fuzz.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static char path[300];

static void cleanup(void)
{
    char tmp[320];

    unlink(path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    rmdir(dir);
}

static void init_dir(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

    if (dir[0])
        return;
    snprintf(dir, sizeof(dir), "%s/fuzz-wal-XXXXXX", base);
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/%s", dir, WAL_DEFAULT_NAME);
    atexit(cleanup);
}

static void put_file(const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");

    CHECK(f != NULL);
    CHECK(fwrite(b, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rec_crc(const uint8_t *salt, const uint8_t *rec, uint32_t len)
{
    uint32_t c = crc32c_portable(0, salt, 8);

    c = crc32c_portable(c, rec + 4, WAL_RECORD_HEADER - 4);
    return crc32c_portable(c, rec + WAL_RECORD_HEADER, len);
}

/* What the writer would have written around the bytes the fuzzer chose. */
static void fix_up(uint8_t *b, size_t n, unsigned mode)
{
    uint64_t seq, off = WAL_HEADER_SIZE;

    if (n < WAL_HEADER_SIZE)
        return;
    if (mode & 1)
        put32(b + 44, crc32c_portable(0, b, 44));
    seq = get64(b + 32);
    while (n - off >= WAL_RECORD_HEADER) {
        uint8_t *r = b + off;
        uint32_t len = get32(r + 4);

        if (len > WAL_MAX_PAYLOAD || n - off - WAL_RECORD_HEADER < len)
            break;
        if (mode & 2)
            put64(r + 8, seq++);
        if (mode & 4)
            put32(r, rec_crc(b + 16, r, len));
        off += WAL_RECORD_HEADER + len;
    }
}

/* The reference reader. */
struct ref {
    bool header_ok;
    uint64_t base, records, end;
};

static void ref_scan(const uint8_t *b, size_t n, struct ref *r)
{
    uint64_t off = WAL_HEADER_SIZE, seq;

    memset(r, 0, sizeof(*r));
    if (n < WAL_HEADER_SIZE || memcmp(b, "PARROTWL", 8) != 0 || get32(b + 8) != 1 ||
        get32(b + 12) != WAL_HEADER_SIZE || get32(b + 40) != 0 ||
        get32(b + 44) != crc32c_portable(0, b, 44) || get64(b + 32) == 0 ||
        get64(b + 32) >= 1ull << 63)
        return;
    r->header_ok = true;
    r->base = seq = get64(b + 32);
    while (n - off >= WAL_RECORD_HEADER) {
        const uint8_t *p = b + off;
        uint32_t len = get32(p + 4);

        if (len > WAL_MAX_PAYLOAD || n - off - WAL_RECORD_HEADER < len)
            break;
        if (seq == 0 || get64(p + 8) != seq || p[16] == 0 || p[17] || p[18] || p[19])
            break;
        if (get32(p) != rec_crc(b + 16, p, len))
            break;
        off += WAL_RECORD_HEADER + len;
        seq++;
        r->records++;
    }
    r->end = off;
}

struct replay_ctx {
    uint64_t n, next;
    bool bad;
};

static int on_record(uint8_t type, uint64_t seq, const void *payload, size_t len, void *ud)
{
    struct replay_ctx *c = ud;

    if (type == 0 || len > WAL_MAX_PAYLOAD || (len && !payload) || seq != c->next)
        c->bad = true;
    c->n++;
    c->next = seq + 1;
    return 0;
}

static bool damaged(enum wal_state s)
{
    return s == WAL_STATE_TORN_TAIL || s == WAL_STATE_CORRUPT;
}

static void check_report(const struct wal_report *rep, int rc, size_t size, const struct ref *ref)
{
    switch (rep->state) {
    case WAL_STATE_CLEAN: CHECK(rc == 0); break;
    case WAL_STATE_MISSING: CHECK(rc == 0 && size == 0); break;
    case WAL_STATE_TORN_TAIL:
    case WAL_STATE_CORRUPT:
    case WAL_STATE_NOT_WAL:
    case WAL_STATE_BAD_HEADER: CHECK(rc == -EBADMSG); break;
    case WAL_STATE_TOO_NEW:
    case WAL_STATE_TOO_OLD: CHECK(rc == -EPROTONOSUPPORT); break;
    }
    CHECK(strlen(rep->message) > 0);
    CHECK(ref->header_ok == (rep->state == WAL_STATE_CLEAN || damaged(rep->state)));
    if (!ref->header_ok)
        return;
    CHECK(rep->file_size == size);
    CHECK(rep->base_seq == ref->base);
    CHECK(rep->records == ref->records);
    CHECK(rep->valid_end == ref->end);
    CHECK(rep->valid_end >= WAL_HEADER_SIZE && rep->valid_end <= size);
    if (rep->records) {
        CHECK(rep->first_seq == rep->base_seq);
        CHECK(rep->last_seq - rep->first_seq + 1 == rep->records);
    }
    if (rep->state == WAL_STATE_CLEAN) {
        CHECK(rep->valid_end == size);
        return;
    }
    CHECK(rep->bad_offset == rep->valid_end && rep->bad_offset < size);
    CHECK(rep->dropped_bytes == size - rep->valid_end);
    if (rep->state == WAL_STATE_CORRUPT) {
        CHECK(rep->resume_offset > rep->bad_offset && rep->resume_offset < size);
        CHECK(rep->records_after >= 1);
        CHECK(strstr(rep->message, WAL_REPAIR_COMMAND) != NULL);
    } else {
        CHECK(rep->records_after == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wal_opts o = {.policy = WAL_SYNC_OFF};
    struct wal_report rep, rep2;
    struct replay_ctx ctx = {0};
    struct ref ref;
    struct wal *w = NULL;
    uint8_t *b;
    uint64_t seq;
    int rc, rc2;

    if (size < 1 || size > (1u << 20))
        return 0;
    init_dir();
    o.dir = dir;
    b = malloc(size);
    CHECK(b != NULL);
    memcpy(b, data + 1, size - 1);
    size--;
    fix_up(b, size, data[0]);
    ref_scan(b, size, &ref);

    put_file(b, size);
    rc = wal_check(&o, &rep);
    check_report(&rep, rc, size, &ref);

    ctx.next = rep.base_seq;
    rc2 = wal_open(&o, on_record, &ctx, &rep2, &w);
    if (rep.state == WAL_STATE_CLEAN || rep.state == WAL_STATE_TORN_TAIL ||
        rep.state == WAL_STATE_MISSING) {
        CHECK(rc2 == 0 && w != NULL);
        CHECK(!ctx.bad && ctx.n == rep.records);
        CHECK(rep2.truncated == (rep.state == WAL_STATE_TORN_TAIL));
        CHECK(rep2.created == (rep.state == WAL_STATE_MISSING));
        CHECK(wal_append(w, 7, "fuzz", 4, &seq) == 0);
        CHECK(seq == (rep.records ? rep.last_seq + 1 : rep2.created ? 1 : rep.base_seq));
        CHECK(wal_close(w) == 0);
        CHECK(wal_check(&o, &rep2) == 0);
        CHECK(rep2.state == WAL_STATE_CLEAN && rep2.records == rep.records + 1);
        CHECK(rep2.last_seq == seq);
    } else {
        CHECK(rc2 == rc && w == NULL && ctx.n == 0);
        CHECK(rep2.state == rep.state);
    }

    if (damaged(rep.state)) {
        put_file(b, size);
        CHECK(wal_repair(&o, &rep2) == 0 && rep2.repaired);
        CHECK(wal_check(&o, &rep2) == 0);
        CHECK(rep2.state == WAL_STATE_CLEAN && rep2.records == rep.records);
        CHECK(rep2.base_seq == rep.base_seq && rep2.last_seq == rep.last_seq);
    }
    free(b);
    return 0;
}
