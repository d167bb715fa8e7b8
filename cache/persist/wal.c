/* wal.c - the write-ahead log; see wal.h and docs/wal.md.
 *
 * ON-DISK FORMAT, VERSION 1
 *
 * All integers are little-endian, written and read byte by byte through
 * put32/put64/get32/get64 (never a struct). A file is a header followed by
 * records, back to back, with no padding:
 *
 *   File header (48 bytes)
 *   offset size  field
 *        0    8  magic     "PARROTWL" (50 41 52 52 4f 54 57 4c)
 *        8    4  version   1
 *       12    4  hdr_size  48: bytes in this header
 *       16    8  salt      random, new for every file this code creates
 *       24    8  created   creation time, Unix milliseconds (signed)
 *       32    8  base_seq  sequence number of the first record, 1 .. 2^63-1
 *       40    4  flags     0 (reserved)
 *       44    4  hdr_crc   CRC32C of bytes 0..43
 *
 *   Record (20 + len bytes)
 *   offset size  field
 *        0    4  crc       CRC32C of: the salt as 8 little-endian bytes,
 *                          then bytes 4..19 of this record, then the payload
 *        4    4  len       payload bytes, 0..16777216 (WAL_MAX_PAYLOAD)
 *        8    8  seq       sequence number: base_seq for the first record,
 *                          then one more for each record
 *       16    1  type      1..255, chosen by the caller (0 is never valid)
 *       17    3  reserved  0
 *       20  len  payload
 *
 * CRC32C is the Castagnoli CRC (reflected polynomial 0x82F63B78, initial
 * value and final xor 0xFFFFFFFF; crc32c("123456789") = 0xE3069283).
 *
 * Why each piece is there:
 * - The salt makes a record valid in one file only. Records left over from an
 *   older file (before a rotation or a repair), or bytes that happen to look
 *   like a record (a payload that contains one), do not pass the check.
 * - seq must be exactly one more than the previous record's, so a stale but
 *   well-formed record can never be replayed out of order.
 * - type 0, a length over the maximum and non-zero reserved bytes are
 *   rejected before the CRC is computed: a zeroed or garbage block fails
 *   cheaply, and a corrupt length never makes us read 4 GiB.
 *
 * Reading: records are checked one after the other. The first one that does
 * not check out (cut short by the end of the file, bad field, bad CRC) is the
 * damage. If some later offset holds a record that checks out with this
 * file's salt and a plausible sequence number (between the expected one and
 * the expected one plus the number of 20-byte records that could fit in
 * between), the damage is in the middle (corrupt: refuse); if not, it is a
 * torn tail (cut it off). A reader for another version would sit beside
 * v1_header/v1_record in the formats[] table; writing always uses the
 * current version.
 *
 * THREADS AND BUFFERS
 *
 * Appenders copy a record (header with crc 0, then payload) into `pending`
 * under `mu` and return. The writer thread swaps `pending` with an empty
 * buffer under `mu`, then, without the lock, fills in the CRCs (it alone knows
 * the salt of the file it writes to, which keeps rotation simple), appends
 * the batch to `un` (bytes written or to be written but not yet synced) and
 * writes and syncs. Appends therefore only ever wait for a memcpy, never for
 * the disk. `un` is kept until it is synced, so a failed write or sync can be
 * redone from memory after cutting the file back to `good_off`; memory is
 * capped by counting pending + un against max_pending.
 */
#include "cache/persist/wal.h"

#include "cache/base/clock.h"
#include "cache/base/crc32c.h"
#include "cache/base/le.h"
#include "cache/base/thread.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MAGIC_LEN    8
#define V1_HDR       48
#define V1_REC       20
#define RD_CHUNK     (1u << 20) /* read-ahead when scanning */
#define NF_CHUNK     (1u << 20) /* write-behind when copying into a new file */
#define SEEK_STRIDE  (1u << 20) /* one seek index entry per this many file bytes */
#define BUF_KEEP     (4u << 20) /* buffers bigger than this are freed when emptied */
#define SYNC_EVERY   1000000000ull
#define NS_PER_MS    1000000ull
#define DEF_DELAY_US 2000
#define DEF_GROUP    256
#define DEF_RETRY_MS 1000
#define SEQ_LIMIT    (1ull << 63) /* base_seq lies below: sequence numbers never wrap */
#define BAK_TRIES    100          /* repair backups with one timestamp */

static const uint8_t magic[MAGIC_LEN] = {'P', 'A', 'R', 'R', 'O', 'T', 'W', 'L'};

/* ---- small helpers ---- */

/* Waits on cv (which uses CLOCK_MONOTONIC) until due_ns at the latest. */
static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t due_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(due_ns / 1000000000ull),
                          .tv_nsec = (long)(due_ns % 1000000000ull)};

    pthread_cond_timedwait(cv, mu, &ts);
}

static int cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    int rc;

    if (pthread_condattr_init(&a) != 0)
        return -ENOMEM;
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return -rc;
}

/* A salt from the kernel's random pool, never equal to avoid. */
static uint64_t new_salt(uint64_t avoid)
{
    uint64_t s = avoid;

    while (s == avoid) {
        if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
            /* No entropy source (seccomp, ancient kernel): a salt only has
             * to differ from the old file's, so time and pid will do. */
            s = clock_mono_ns() * 0x9e3779b97f4a7c15ull ^ (uint64_t)clock_wall_ms() ^
                (uint64_t)getpid();
        }
    }
    return s;
}

static char *path_join(const char *dir, const char *name, const char *suffix)
{
    size_t n = strlen(dir) + 1 + strlen(name) + strlen(suffix) + 1;
    char *p = malloc(n);

    if (p)
        snprintf(p, n, "%s/%s%s", dir, name, suffix);
    return p;
}

static const char *err_name(int err)
{
    const char *s = strerrorname_np(err < 0 ? -err : err);

    return s ? s : "error";
}

/* A growable byte buffer for records: reserve-ahead with a soft limit and a
 * reset that gives big blocks back, which cache/base/buf (append with a hard
 * cap) does not do; hence its own name. */
struct bytes {
    uint8_t *p;
    size_t len, cap;
};

/* Room for extra more bytes, growing by doubling but not beyond limit (unless
 * the bytes themselves need more); 0 or -ENOMEM. */
static int bytes_reserve(struct bytes *b, size_t extra, size_t limit)
{
    size_t need = b->len + extra, cap = b->cap ? b->cap : 64 * 1024;
    uint8_t *p;

    if (need <= b->cap)
        return 0;
    while (cap < need)
        cap *= 2;
    if (cap > limit)
        cap = need > limit ? need : limit;
    p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Empties b, giving a big allocation back. */
static void bytes_reset(struct bytes *b)
{
    if (b->cap > BUF_KEEP) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
    b->len = 0;
}

static void bytes_swap(struct bytes *a, struct bytes *b)
{
    struct bytes t = *a;

    *a = *b;
    *b = t;
}

/* Sparse map from sequence numbers to file offsets (one entry per
 * SEEK_STRIDE bytes), so a rotation finds its first record without reading
 * the whole file. A hint only: when memory runs out, entries are skipped. */
struct seek {
    uint64_t seq, off;
};

struct seekidx {
    struct seek *v;
    size_t n, cap;
};

static void seek_note(struct seekidx *x, uint64_t seq, uint64_t off)
{
    if (x->n && (seq <= x->v[x->n - 1].seq || off - x->v[x->n - 1].off < SEEK_STRIDE))
        return;
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 64;
        struct seek *v = realloc(x->v, cap * sizeof(*v));

        if (!v)
            return;
        x->v = v;
        x->cap = cap;
    }
    x->v[x->n].seq = seq;
    x->v[x->n].off = off;
    x->n++;
}

/* The last entry at or before seq, if any. */
static const struct seek *seek_find(const struct seekidx *x, uint64_t seq)
{
    size_t lo = 0, hi = x->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (x->v[mid].seq <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? &x->v[lo - 1] : NULL;
}

/* ---- reading ---- */

/* A read window over a file. */
struct rd {
    struct vfs *vfs;
    struct vfs_file *f;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t off; /* buf holds file bytes [off, off + len) */
    size_t len;
};

/* Points *p at file bytes [off, off + n). 0, -ENODATA when the file ends
 * first, or an I/O error. *p stays valid until the next call. */
static int rd_get(struct rd *r, uint64_t off, size_t n, const uint8_t **p)
{
    size_t want = n > RD_CHUNK ? n : RD_CHUNK;
    ssize_t got;

    if (off > r->size || n > r->size - off)
        return -ENODATA;
    if (off >= r->off && off - r->off + n <= r->len) {
        *p = r->buf + (off - r->off);
        return 0;
    }
    if (want > r->size - off)
        want = (size_t)(r->size - off);
    if (want > r->cap) {
        uint8_t *b = realloc(r->buf, want);

        if (!b)
            return -ENOMEM;
        r->buf = b;
        r->cap = want;
    }
    r->len = 0;
    got = vfs_read_full(r->vfs, r->f, r->buf, want, off);
    if (got < 0)
        return (int)got;
    if ((size_t)got < n)
        return -EIO; /* the file shrank under us */
    r->off = off;
    r->len = (size_t)got;
    *p = r->buf;
    return 0;
}

/* A file header, whatever its version. */
struct hdr {
    uint32_t version, size;
    uint64_t salt;
    uint32_t salt_crc; /* CRC32C state after the 8 salt bytes */
    int64_t created_ms;
    uint64_t base_seq;
};

struct rec {
    uint64_t seq;
    uint32_t len;
    uint8_t type;
    const uint8_t *payload; /* into the read window */
};

static void hdr_set_salt(struct hdr *h, uint64_t salt)
{
    uint8_t b[8];

    le_put64(b, salt);
    h->salt = salt;
    h->salt_crc = crc32c(0, b, 8);
}

/* What parsing a header found; *why says what was wrong. */
enum hdr_verdict { HDR_OK, HDR_BAD, HDR_NOT_WAL, HDR_TOO_NEW, HDR_TOO_OLD };

static enum hdr_verdict v1_header(const uint8_t *p, size_t n, struct hdr *h, const char **why)
{
    if (n < V1_HDR) {
        *why = "file shorter than its header";
        return HDR_BAD;
    }
    if (le_get32(p + 44) != crc32c(0, p, 44)) {
        *why = "header checksum mismatch";
        return HDR_BAD;
    }
    if (le_get32(p + 12) != V1_HDR || le_get32(p + 40) != 0) {
        *why = "header size or flags not those of version 1";
        return HDR_BAD;
    }
    h->size = V1_HDR;
    hdr_set_salt(h, le_get64(p + 16));
    h->created_ms = (int64_t)le_get64(p + 24);
    h->base_seq = le_get64(p + 32);
    if (h->base_seq == 0 || h->base_seq >= SEQ_LIMIT) {
        *why = "first sequence number out of range";
        return HDR_BAD;
    }
    return HDR_OK;
}

/* 0: a valid record at off with lo <= seq <= hi, in *out; 1: none there (*why
 * says why); or a negative I/O error. */
static int v1_record(struct rd *r, const struct hdr *h, uint64_t off, uint64_t lo, uint64_t hi,
                     struct rec *out, const char **why)
{
    const uint8_t *p;
    uint32_t crc, len, c;
    uint64_t seq;
    int rc;

    rc = rd_get(r, off, V1_REC, &p);
    if (rc) {
        *why = "record header cut short by the end of the file";
        return rc == -ENODATA ? 1 : rc;
    }
    crc = le_get32(p);
    len = le_get32(p + 4);
    seq = le_get64(p + 8);
    if (len > WAL_MAX_PAYLOAD) {
        *why = "record length over the maximum";
        return 1;
    }
    if (p[16] == 0 || (p[17] | p[18] | p[19]) != 0) {
        *why = "record type 0 or reserved bytes set";
        return 1;
    }
    if (seq == 0 || seq < lo || seq > hi) {
        *why = "unexpected sequence number";
        return 1;
    }
    out->seq = seq;
    out->len = len;
    out->type = p[16];
    c = crc32c(h->salt_crc, p + 4, V1_REC - 4);
    rc = rd_get(r, off, V1_REC + (size_t)len, &p);
    if (rc) {
        *why = "record cut short by the end of the file";
        return rc == -ENODATA ? 1 : rc;
    }
    if (crc32c(c, p + V1_REC, len) != crc) {
        *why = "record checksum mismatch";
        return 1;
    }
    out->payload = p + V1_REC;
    return 0;
}

/* One reader per format version this code understands. */
struct fmt {
    uint32_t version;
    size_t rec_min; /* smallest record */
    enum hdr_verdict (*header)(const uint8_t *p, size_t n, struct hdr *h, const char **why);
    int (*record)(struct rd *r, const struct hdr *h, uint64_t off, uint64_t lo, uint64_t hi,
                  struct rec *out, const char **why);
};

static const struct fmt formats[] = {
    {1, V1_REC, v1_header, v1_record},
};

/* What a scan of a file found. */
struct scan {
    enum wal_state state;
    const struct fmt *fmt;
    struct hdr h;
    uint64_t size;
    uint64_t records, first_seq, last_seq, valid_end;
    uint64_t bad_offset, resume_offset, records_after;
    const char *why;
};

/* Reads and checks the header. 0, or -EBADMSG / -EPROTONOSUPPORT with
 * s->state saying why, or an I/O error. */
static int scan_header(struct rd *r, struct scan *s)
{
    const uint8_t *p;
    size_t n = s->size < 64 ? (size_t)s->size : 64;
    enum hdr_verdict v = HDR_NOT_WAL;
    uint32_t version;
    int rc;

    rc = rd_get(r, 0, n, &p);
    if (rc)
        return rc;
    if (memcmp(p, magic, n < MAGIC_LEN ? n : MAGIC_LEN) != 0) {
        s->state = WAL_STATE_NOT_WAL;
        s->why = "bad magic";
        return -EBADMSG;
    }
    if (n < MAGIC_LEN + 4) {
        s->state = WAL_STATE_BAD_HEADER;
        s->why = "file shorter than its header";
        return -EBADMSG;
    }
    version = le_get32(p + MAGIC_LEN);
    s->h.version = version;
    if (version > WAL_VERSION) {
        s->state = WAL_STATE_TOO_NEW;
        s->why = "format version newer than this parrot";
        return -EPROTONOSUPPORT;
    }
    v = HDR_TOO_OLD;
    s->why = "no reader for this format version";
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (formats[i].version == version) {
            s->fmt = &formats[i];
            v = formats[i].header(p, n, &s->h, &s->why);
            s->h.version = version;
            break;
        }
    }
    switch (v) {
    case HDR_OK: return 0;
    case HDR_TOO_OLD: s->state = WAL_STATE_TOO_OLD; return -EPROTONOSUPPORT;
    case HDR_TOO_NEW: s->state = WAL_STATE_TOO_NEW; return -EPROTONOSUPPORT;
    case HDR_NOT_WAL: s->state = WAL_STATE_NOT_WAL; return -EBADMSG;
    case HDR_BAD: break;
    }
    s->state = WAL_STATE_BAD_HEADER;
    return -EBADMSG;
}

/* Damage at off, where a record with sequence number expect should be: finds
 * the valid records after it, if any (torn tail or corrupt middle). */
static int scan_damage(struct rd *r, struct scan *s, uint64_t off, uint64_t expect)
{
    uint64_t from = off, p = off + 1, lo = expect;
    size_t min = s->fmt->rec_min;
    const char *why;
    struct rec rec;

    s->bad_offset = off;
    s->state = WAL_STATE_TORN_TAIL;
    while (p <= s->size && s->size - p >= min) {
        /* Every record between from and p takes at least min bytes. */
        uint64_t hi = lo + (p - from) / min;
        int rc = s->fmt->record(r, &s->h, p, lo, hi, &rec, &why);

        if (rc < 0)
            return rc;
        if (rc > 0) {
            p++;
            continue;
        }
        if (s->state == WAL_STATE_TORN_TAIL) {
            s->state = WAL_STATE_CORRUPT;
            s->resume_offset = p;
        }
        s->records_after++;
        lo = rec.seq + 1;
        p += min + rec.len;
        from = p;
    }
    return 0;
}

/* Checks a whole file. 0 when it is clean or damaged (see s->state), else
 * an error: -EBADMSG or -EPROTONOSUPPORT for the header, or an I/O error. */
static int scan_file(struct rd *r, struct scan *s)
{
    uint64_t off, next;
    const char *why = NULL;
    struct rec rec;
    int rc;

    rc = scan_header(r, s);
    if (rc)
        return rc;
    off = s->h.size;
    next = s->h.base_seq;
    s->valid_end = off;
    for (;;) {
        if (off == s->size) {
            s->state = WAL_STATE_CLEAN;
            return 0;
        }
        rc = s->fmt->record(r, &s->h, off, next, next, &rec, &why);
        if (rc < 0)
            return rc;
        if (rc > 0)
            break;
        if (!s->records)
            s->first_seq = rec.seq;
        s->records++;
        s->last_seq = rec.seq;
        off += s->fmt->rec_min + rec.len;
        s->valid_end = off;
        next = rec.seq + 1;
    }
    s->why = why;
    return scan_damage(r, s, off, next);
}

/* ---- reports ---- */

static void msg_set(struct wal_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void msg_set(struct wal_report *rep, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(rep->message, sizeof(rep->message), fmt, ap);
    va_end(ap);
}

/* Fills rep from a scan of path in dir and writes its message. */
static void report_scan(struct wal_report *rep, const char *dir, const char *path,
                        const struct scan *s)
{
    const char *why = s->why ? s->why : "";

    memset(rep, 0, sizeof(*rep));
    snprintf(rep->path, sizeof(rep->path), "%s", path);
    rep->state = s->state;
    rep->version = s->h.version;
    rep->salt = s->h.salt;
    rep->created_ms = s->h.created_ms;
    rep->base_seq = s->h.base_seq;
    rep->file_size = s->size;
    rep->records = s->records;
    rep->first_seq = s->first_seq;
    rep->last_seq = s->last_seq;
    rep->valid_end = s->valid_end;
    if (s->state == WAL_STATE_TORN_TAIL || s->state == WAL_STATE_CORRUPT) {
        rep->bad_offset = s->bad_offset;
        rep->resume_offset = s->resume_offset;
        rep->records_after = s->records_after;
        rep->dropped_bytes = s->size - s->valid_end;
        rep->dropped_records = s->records_after;
    }
    switch (s->state) {
    case WAL_STATE_CLEAN:
        msg_set(rep,
                "wal %s: clean: %" PRIu64 " records (seq %" PRIu64 "..%" PRIu64 "), %" PRIu64
                " bytes",
                path, s->records, s->first_seq, s->last_seq, s->size);
        break;
    case WAL_STATE_MISSING: msg_set(rep, "wal %s: no WAL file yet", path); break;
    case WAL_STATE_TORN_TAIL:
        msg_set(rep,
                "wal %s: torn tail at offset %" PRIu64 " (%s): the last %" PRIu64
                " bytes are an incomplete record; %" PRIu64 " records before it are intact",
                path, s->bad_offset, why, rep->dropped_bytes, s->records);
        break;
    case WAL_STATE_CORRUPT:
        msg_set(rep,
                "wal %s: corrupt record at offset %" PRIu64 " (%s), followed by %" PRIu64
                " valid records from offset %" PRIu64
                "; refusing to use it. Run `" WAL_REPAIR_COMMAND " %s` to keep the %" PRIu64
                " records before offset %" PRIu64 " and drop the %" PRIu64 " bytes after it",
                path, s->bad_offset, why, s->records_after, s->resume_offset, dir, s->records,
                s->bad_offset, rep->dropped_bytes);
        break;
    case WAL_STATE_NOT_WAL:
        msg_set(rep,
                "wal %s: not a parrot WAL file (bad magic); move it away or point the data "
                "directory elsewhere",
                path);
        break;
    case WAL_STATE_BAD_HEADER:
        msg_set(rep,
                "wal %s: damaged file header (%s); no record in it can be trusted: move the "
                "file away to start with an empty WAL",
                path, why);
        break;
    case WAL_STATE_TOO_NEW:
        msg_set(rep,
                "wal %s: format version %" PRIu32 " is newer than this parrot reads (%d); run "
                "the newer parrot that wrote it, or move the file away to start empty",
                path, s->h.version, WAL_VERSION);
        break;
    case WAL_STATE_TOO_OLD:
        msg_set(rep,
                "wal %s: format version %" PRIu32 " has no reader in this parrot; move the "
                "file away to start empty",
                path, s->h.version);
        break;
    }
}

const char *wal_state_name(enum wal_state s)
{
    switch (s) {
    case WAL_STATE_CLEAN: return "clean";
    case WAL_STATE_MISSING: return "missing";
    case WAL_STATE_TORN_TAIL: return "torn tail";
    case WAL_STATE_CORRUPT: return "corrupt";
    case WAL_STATE_NOT_WAL: return "not a WAL";
    case WAL_STATE_BAD_HEADER: return "bad header";
    case WAL_STATE_TOO_NEW: return "version too new";
    case WAL_STATE_TOO_OLD: return "version too old";
    }
    return "?";
}

void wal_report_print(const struct wal_report *rep, FILE *out)
{
    fprintf(out, "file:      %s\n", rep->path);
    fprintf(out, "state:     %s\n", wal_state_name(rep->state));
    if (rep->state != WAL_STATE_MISSING && rep->state != WAL_STATE_NOT_WAL) {
        time_t t = (time_t)(rep->created_ms / 1000);
        struct tm tm;
        char when[32] = "?";

        if (gmtime_r(&t, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        fprintf(out, "version:   %" PRIu32 "\n", rep->version);
        fprintf(out, "created:   %s\n", when);
        fprintf(out, "salt:      %016" PRIx64 "\n", rep->salt);
        fprintf(out, "size:      %" PRIu64 " bytes\n", rep->file_size);
    }
    if (rep->records)
        fprintf(out,
                "records:   %" PRIu64 " valid (seq %" PRIu64 "..%" PRIu64 "), ending at %" PRIu64
                "\n",
                rep->records, rep->first_seq, rep->last_seq, rep->valid_end);
    else if (rep->state != WAL_STATE_MISSING)
        fprintf(out, "records:   none (next seq %" PRIu64 ")\n", rep->base_seq);
    if (rep->state == WAL_STATE_TORN_TAIL || rep->state == WAL_STATE_CORRUPT)
        fprintf(out, "damage:    at offset %" PRIu64 "\n", rep->bad_offset);
    if (rep->state == WAL_STATE_CORRUPT)
        fprintf(out, "after it:  %" PRIu64 " valid records, from offset %" PRIu64 "\n",
                rep->records_after, rep->resume_offset);
    if (rep->dropped_bytes)
        fprintf(out, "%s %" PRIu64 " records, %" PRIu64 " bytes\n",
                rep->truncated || rep->repaired ? "dropped:  " : "to drop:  ", rep->dropped_records,
                rep->dropped_bytes);
    if (rep->backup[0])
        fprintf(out, "backup:    %s\n", rep->backup);
    fprintf(out, "%s\n", rep->message);
}

const char *wal_policy_name(enum wal_policy p)
{
    switch (p) {
    case WAL_SYNC_DEFAULT: return wal_policy_name(WAL_DEFAULT_POLICY);
    case WAL_SYNC_ALWAYS: return "always";
    case WAL_SYNC_BATCH: return "batch";
    case WAL_SYNC_EVERYSEC: return "everysec";
    case WAL_SYNC_OFF: return "off";
    }
    return "?";
}

int wal_policy_parse(const char *s, enum wal_policy *p)
{
    static const enum wal_policy all[] = {WAL_SYNC_ALWAYS, WAL_SYNC_BATCH, WAL_SYNC_EVERYSEC,
                                          WAL_SYNC_OFF};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(s, wal_policy_name(all[i])) == 0) {
            *p = all[i];
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- writing a new file: tmp, sync, rename, sync dir ---- */

static void v1_header_encode(uint8_t *p, const struct hdr *h)
{
    memcpy(p, magic, MAGIC_LEN);
    le_put32(p + 8, WAL_VERSION);
    le_put32(p + 12, V1_HDR);
    le_put64(p + 16, h->salt);
    le_put64(p + 24, (uint64_t)h->created_ms);
    le_put64(p + 32, h->base_seq);
    le_put32(p + 40, 0);
    le_put32(p + 44, crc32c(0, p, 44));
}

/* Fills in the crc of every record in p[0..len) for a file with h's salt. */
static void v1_seal(uint8_t *p, size_t len, const struct hdr *h)
{
    size_t off = 0;

    while (off < len) {
        uint8_t *r = p + off;
        uint32_t plen = le_get32(r + 4);
        uint32_t c = crc32c(h->salt_crc, r + 4, V1_REC - 4);

        le_put32(r, crc32c(c, r + V1_REC, plen));
        off += V1_REC + (size_t)plen;
    }
}

/* Record header with a zero crc (v1_seal fills it in). */
static void v1_rec_encode(uint8_t *p, uint8_t type, uint64_t seq, uint32_t len)
{
    le_put32(p, 0);
    le_put32(p + 4, len);
    le_put64(p + 8, seq);
    p[16] = type;
    p[17] = p[18] = p[19] = 0;
}

struct newfile {
    struct vfs *vfs;
    const char *dir, *path;
    char *tmp;
    struct vfs_file *f;
    struct hdr h;
    uint64_t off;   /* bytes written so far */
    struct bytes b; /* staged after off */
    struct seekidx idx;
    bool renamed; /* tmp is now path */
};

static void nf_fini(struct newfile *nf)
{
    if (nf->f)
        nf->vfs->close(nf->vfs, nf->f);
    if (nf->tmp && !nf->renamed)
        nf->vfs->unlink(nf->vfs, nf->tmp);
    free(nf->tmp);
    free(nf->b.p);
    free(nf->idx.v);
    memset(nf, 0, sizeof(*nf));
}

/* Creates path's ".tmp" sibling with a header (fresh salt, base_seq). */
static int nf_begin(struct newfile *nf, struct vfs *vfs, const char *dir, const char *path,
                    uint64_t base_seq, int64_t now_ms, uint64_t old_salt)
{
    int rc;

    memset(nf, 0, sizeof(*nf));
    nf->vfs = vfs;
    nf->dir = dir;
    nf->path = path;
    nf->tmp = malloc(strlen(path) + sizeof(".tmp"));
    if (!nf->tmp)
        return -ENOMEM;
    memcpy(nf->tmp, path, strlen(path));
    memcpy(nf->tmp + strlen(path), ".tmp", sizeof(".tmp"));
    vfs->unlink(vfs, nf->tmp); /* a leftover from a crash */
    rc = vfs->open(vfs, nf->tmp, VFS_RDWR | VFS_CREATE | VFS_TRUNC, &nf->f);
    if (rc) {
        nf->f = NULL;
        return rc;
    }
    nf->h.version = WAL_VERSION;
    nf->h.size = V1_HDR;
    nf->h.created_ms = now_ms;
    nf->h.base_seq = base_seq;
    hdr_set_salt(&nf->h, new_salt(old_salt));
    rc = bytes_reserve(&nf->b, V1_HDR, SIZE_MAX);
    if (rc)
        return rc;
    v1_header_encode(nf->b.p, &nf->h);
    nf->b.len = V1_HDR;
    return 0;
}

static int nf_flush(struct newfile *nf)
{
    int rc = vfs_write_full(nf->vfs, nf->f, nf->b.p, nf->b.len, nf->off);

    if (rc == 0) {
        nf->off += nf->b.len;
        nf->b.len = 0;
    }
    return rc;
}

/* Appends a copy of rec, sealed with the new file's salt. */
static int nf_add(struct newfile *nf, const struct rec *rec)
{
    uint8_t *p;
    int rc = bytes_reserve(&nf->b, V1_REC + (size_t)rec->len, SIZE_MAX);

    if (rc)
        return rc;
    seek_note(&nf->idx, rec->seq, nf->off + nf->b.len);
    p = nf->b.p + nf->b.len;
    v1_rec_encode(p, rec->type, rec->seq, rec->len);
    if (rec->len)
        memcpy(p + V1_REC, rec->payload, rec->len);
    v1_seal(p, V1_REC + (size_t)rec->len, &nf->h);
    nf->b.len += V1_REC + (size_t)rec->len;
    return nf->b.len >= NF_CHUNK ? nf_flush(nf) : 0;
}

/* Writes what is staged, syncs, renames over path and syncs the directory.
 * *renamed tells whether path is now the new file (even if the directory
 * sync then failed). nf->f stays open. */
static int nf_commit(struct newfile *nf, bool *renamed)
{
    int rc = nf_flush(nf);

    *renamed = false;
    if (rc == 0)
        rc = nf->vfs->sync(nf->vfs, nf->f);
    if (rc == 0)
        rc = nf->vfs->rename(nf->vfs, nf->tmp, nf->path);
    if (rc == 0) {
        nf->renamed = *renamed = true;
        rc = nf->vfs->sync_dir(nf->vfs, nf->dir);
    }
    return rc;
}

/* Copies the records of r (checked against h) between from (with sequence
 * number seq) and to, those with a sequence number >= min only. */
static int copy_records(struct rd *r, const struct fmt *fmt, const struct hdr *h, uint64_t from,
                        uint64_t seq, uint64_t to, uint64_t min, struct newfile *nf)
{
    const char *why;
    struct rec rec;

    while (from < to) {
        int rc = fmt->record(r, h, from, seq, seq, &rec, &why);

        if (rc)
            return rc < 0 ? rc : -EIO; /* it checked out before: the file changed */
        if (rec.seq >= min) {
            rc = nf_add(nf, &rec);
            if (rc)
                return rc;
        }
        from += fmt->rec_min + rec.len;
        seq++;
    }
    return 0;
}

/* ---- the log ---- */

struct wal {
    /* Set by wal_open, read-only afterwards. */
    char *dir, *name, *path;
    struct vfs *vfs;
    enum wal_policy policy;
    size_t cap;
    uint64_t delay_ns, retry_ns;
    unsigned group_max;
    int64_t (*now_ms)(void);
    void (*log)(void *ud, const char *msg);
    void *log_ud;
    uint64_t min_seq; /* records up to it are covered by a snapshot */
    pthread_t thread;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;    /* the writer waits here for work */
    pthread_cond_t durable_cv; /* wal_wait and wal_rotate wait here */

    /* Under mu. */
    struct bytes pending;   /* records not yet taken by the writer, crc 0 */
    uint64_t pending_recs;  /* how many */
    uint64_t pending_since; /* mono_ns when the first of them came */
    uint64_t next_seq;      /* the next sequence number to hand out */
    size_t held;            /* bytes the writer holds that are not yet durable */
    int err;                /* degraded by this error; 0: healthy */
    int64_t degraded_since;
    bool wake_waiters;    /* durable moved: wake a waiter once mu is released */
    uint64_t durable_gen; /* bumped by each publish() that has waiters to wake */
    uint64_t relayed_gen; /* the last generation a waiter relayed to the others */
    bool writer_waiting;  /* the writer sleeps on work_cv ... */
    uint64_t wake_at;     /* ... until pending_recs reaches this */
    unsigned holds;       /* wal_holds not yet released: appends wait for them */
    unsigned waiters;     /* threads on durable_cv */
    bool stop;
    struct {
        bool active, requested, done;
        uint64_t upto;
        int rc;
    } rot;
    struct wal_status st; /* counters; the rest is filled in by wal_status */
    _Atomic uint64_t durable;

    /* Writer thread only (and wal_open/wal_close before and after it). */
    struct vfs_file *f;
    struct hdr h;
    const struct fmt *fmt; /* of the file: always formats[0] once written to */
    uint64_t good_off;     /* file bytes known good: synced, or written under "off" */
    struct bytes un;       /* taken records not yet durable; they go at good_off */
    size_t un_written;     /* bytes of un in the file (not yet synced) */
    struct bytes spare;    /* empty; swapped with pending to take a batch */
    uint64_t un_last;      /* sequence number of the last record in un */
    uint64_t last_group;   /* records in the last batch taken */
    uint64_t last_sync;    /* mono_ns */
    uint64_t retry_at;     /* mono_ns */
    struct seekidx idx;
    char logmsg[256]; /* to hand to log() once mu is released */
};

static int64_t now_ms(const struct wal *w)
{
    return w->now_ms ? w->now_ms() : clock_wall_ms();
}

/* Under mu, in any thread that just woke on durable_cv: passes a wake-up from
 * the writer on to every waiter. Waking 50 threads costs the kernel some
 * 200 us; the writer only wakes one (see unlock_and_wake) and goes on with
 * the next write and sync, while the first waiter to run wakes the rest.
 * Whatever woke a waiter, it relays, so none is left asleep: a waiter that
 * was asleep at publish() is either the one woken or is woken by the relay. */
static void relay(struct wal *w)
{
    if (w->relayed_gen != w->durable_gen) {
        w->relayed_gen = w->durable_gen;
        pthread_cond_broadcast(&w->durable_cv);
    }
}

/* Under mu: wake the writer when it sleeps until enough records are
 * pending, they are, and no wal_hold keeps them back. */
static void wake_writer(struct wal *w)
{
    if (w->writer_waiting && !w->holds && w->pending_recs >= w->wake_at) {
        w->writer_waiting = false;
        pthread_cond_signal(&w->work_cv);
    }
}

int wal_append(struct wal *w, uint8_t type, const void *data, size_t len, uint64_t *seq)
{
    size_t need = V1_REC + len;
    uint8_t *p;
    int rc = 0;

    if (type == 0 || (len && !data))
        return -EINVAL;
    if (len > WAL_MAX_PAYLOAD)
        return -EMSGSIZE;
    pthread_mutex_lock(&w->mu);
    if (w->stop) {
        rc = -ESHUTDOWN;
    } else if (w->err) {
        rc = w->err;
        w->st.dropped_records++;
        w->st.dropped_bytes += len;
    } else if (w->next_seq == UINT64_MAX) {
        rc = -EOVERFLOW; /* 2^63 records after the largest base_seq: not in this universe */
    } else if (w->pending.len + w->held + need > w->cap) {
        rc = -ENOBUFS;
    } else {
        rc = bytes_reserve(&w->pending, need, w->cap);
    }
    if (rc == -ENOBUFS || rc == -ENOMEM) {
        rc = -ENOBUFS;
        w->st.nobufs_records++;
        w->st.nobufs_bytes += len;
    }
    if (rc) {
        pthread_mutex_unlock(&w->mu);
        return rc;
    }
    p = w->pending.p + w->pending.len;
    v1_rec_encode(p, type, w->next_seq, (uint32_t)len);
    if (len)
        memcpy(p + V1_REC, data, len);
    w->pending.len += need;
    if (w->pending_recs++ == 0)
        w->pending_since = clock_mono_ns();
    if (seq)
        *seq = w->next_seq;
    w->next_seq++;
    w->st.appended++;
    wake_writer(w);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void wal_hold(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    w->holds++;
    pthread_mutex_unlock(&w->mu);
}

void wal_release(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    w->holds--;
    wake_writer(w);
    pthread_mutex_unlock(&w->mu);
}

uint64_t wal_durable_seq(struct wal *w)
{
    return atomic_load_explicit(&w->durable, memory_order_acquire);
}

uint64_t wal_last_seq(struct wal *w)
{
    uint64_t s;

    pthread_mutex_lock(&w->mu);
    s = w->next_seq - 1;
    pthread_mutex_unlock(&w->mu);
    return s;
}

int wal_wait(struct wal *w, uint64_t seq, int timeout_ms)
{
    uint64_t due = 0;
    int rc = 0;

    pthread_mutex_lock(&w->mu);
    if (seq >= w->next_seq) {
        pthread_mutex_unlock(&w->mu);
        return seq == 0 ? 0 : -EINVAL;
    }
    if (timeout_ms >= 0)
        due = clock_mono_ns() + (uint64_t)timeout_ms * NS_PER_MS;
    w->waiters++;
    while (wal_durable_seq(w) < seq) {
        if (w->err) {
            rc = w->err;
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&w->durable_cv, &w->mu);
        } else if (clock_mono_ns() >= due) {
            rc = -ETIMEDOUT;
            break;
        } else {
            wait_until(&w->durable_cv, &w->mu, due);
        }
        relay(w);
    }
    w->waiters--;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void wal_status(struct wal *w, struct wal_status *st)
{
    pthread_mutex_lock(&w->mu);
    *st = w->st;
    st->policy = w->policy;
    st->error = w->err;
    st->degraded_since_ms = w->err ? w->degraded_since : 0;
    st->last_seq = w->next_seq - 1;
    st->durable_seq = wal_durable_seq(w);
    st->pending_bytes = w->pending.len + w->held;
    pthread_mutex_unlock(&w->mu);
}

/* Writer: under mu, hands what is pending to the writer (into spare). */
static void take(struct wal *w)
{
    size_t n = w->pending.len;
    uint64_t at = w->good_off + w->un.len + w->spare.len; /* where these records go */

    if (!w->pending_recs)
        return;
    if (!w->spare.len) {
        bytes_swap(&w->pending, &w->spare);
    } else {
        /* absorb() ran out of memory last time and spare still holds older
         * records: these go after them, never before. */
        if (bytes_reserve(&w->spare, n, w->cap) != 0)
            return; /* leave them pending for the next round */
        memcpy(w->spare.p + w->spare.len, w->pending.p, n);
        w->spare.len += n;
        w->pending.len = 0;
    }
    w->held += n;
    w->un_last = w->next_seq - 1;
    w->last_group = w->pending_recs;
    seek_note(&w->idx, w->next_seq - w->pending_recs, at);
    w->pending_recs = 0;
    w->st.writes++;
}

/* Writer, without mu: seals what take() handed over and adds it to un. */
static int absorb(struct wal *w)
{
    if (!w->spare.len)
        return 0;
    v1_seal(w->spare.p, w->spare.len, &w->h);
    if (!w->un.len) {
        bytes_swap(&w->un, &w->spare);
        return 0;
    }
    if (bytes_reserve(&w->un, w->spare.len, w->cap))
        return -ENOMEM;
    memcpy(w->un.p + w->un.len, w->spare.p, w->spare.len);
    w->un.len += w->spare.len;
    bytes_reset(&w->spare);
    return 0;
}

/* Writer, without mu: cuts the file back to good_off after a failure, so no
 * part of a batch that failed stays on disk. */
static void cut_back(struct wal *w, int *failures)
{
    w->un_written = 0;
    if (w->vfs->truncate(w->vfs, w->f, w->good_off) != 0)
        (*failures)++;
}

/* Writer, without mu: writes what of un is not in the file yet and syncs if
 * asked. After a failed sync nothing unsynced can be trusted (the kernel may
 * have dropped the pages), so any failure cuts the file back to good_off and
 * the next attempt writes all of un again. On success with sync (or with
 * policy off) un is durable: good_off moves past it and un is emptied. */
static int flush(struct wal *w, bool sync, int *failures)
{
    int rc = absorb(w);

    if (rc == 0 && w->un_written < w->un.len)
        rc = vfs_write_full(w->vfs, w->f, w->un.p + w->un_written, w->un.len - w->un_written,
                            w->good_off + w->un_written);
    if (rc == 0)
        w->un_written = w->un.len;
    if (rc == 0 && sync)
        rc = w->vfs->sync(w->vfs, w->f);
    if (rc) {
        (*failures)++;
        cut_back(w, failures);
        return rc;
    }
    if (sync)
        w->last_sync = clock_mono_ns();
    if (sync || w->policy == WAL_SYNC_OFF) {
        w->good_off += w->un.len;
        w->un_written = 0;
        bytes_reset(&w->un);
    }
    return 0;
}

/* Writer, under mu: makes the outcome of a flush visible. */
static void publish(struct wal *w, int rc, bool synced, int failures)
{
    w->st.io_failures += (uint64_t)failures;
    if (rc == 0) {
        if (synced)
            w->st.syncs++;
        if (!w->un.len)
            atomic_store_explicit(&w->durable, w->un_last, memory_order_release);
        w->held = w->un.len;
        if (w->err) {
            snprintf(w->logmsg, sizeof(w->logmsg),
                     "wal %s: recovered after %" PRId64 " ms; %" PRIu64 " appends were dropped "
                     "while degraded",
                     w->path, now_ms(w) - w->degraded_since, w->st.dropped_records);
            w->err = 0;
            w->st.recoveries++;
        }
    } else {
        w->held = w->un.len + w->spare.len;
        w->st.last_error = rc;
        w->retry_at = clock_mono_ns() + w->retry_ns;
        if (!w->err) {
            w->err = rc;
            w->degraded_since = now_ms(w);
            snprintf(w->logmsg, sizeof(w->logmsg),
                     "wal %s: write failed (%s); degraded: appends fail until it works again, "
                     "retrying every %" PRIu64 " ms",
                     w->path, err_name(rc), (uint64_t)(w->retry_ns / NS_PER_MS));
        }
    }
    if (w->waiters) {
        w->wake_waiters = true;
        w->durable_gen++;
    }
}

/* Writer: releases mu, then wakes one of the waiters publish() found (it
 * relays to the rest). Doing it after the unlock, with the next batch already
 * taken, keeps the writer from queueing for mu behind them. */
static void unlock_and_wake(struct wal *w)
{
    bool wake = w->wake_waiters;

    w->wake_waiters = false;
    pthread_mutex_unlock(&w->mu);
    if (wake)
        pthread_cond_signal(&w->durable_cv);
}

/* Writer, under mu: sleeps on work_cv (until due_ns; 0: no limit), waking a
 * waiter first. */
static void writer_sleep(struct wal *w, uint64_t due_ns)
{
    if (w->wake_waiters) {
        w->wake_waiters = false;
        pthread_cond_signal(&w->durable_cv);
    }
    w->writer_waiting = true;
    if (due_ns)
        wait_until(&w->work_cv, &w->mu, due_ns);
    else
        pthread_cond_wait(&w->work_cv, &w->mu);
    w->writer_waiting = false;
}

/* Writer, under mu: hands logmsg to the log callback without holding mu. */
static void emit_log(struct wal *w)
{
    char msg[sizeof(w->logmsg)];

    if (!w->logmsg[0])
        return;
    memcpy(msg, w->logmsg, sizeof(msg));
    w->logmsg[0] = '\0';
    if (!w->log)
        return;
    unlock_and_wake(w);
    w->log(w->log_ud, msg);
    pthread_mutex_lock(&w->mu);
}

/* Writer, without mu: the file work of a rotation (see wal_rotate). On
 * success, or once the rename happened, the WAL continues in the new file. */
static int rotate_io(struct wal *w, uint64_t upto)
{
    uint64_t base = upto + 1 > w->h.base_seq ? upto + 1 : w->h.base_seq;
    const struct seek *sk = seek_find(&w->idx, base);
    uint64_t from = sk ? sk->off : w->h.size, seq = sk ? sk->seq : w->h.base_seq;
    struct rd r = {.vfs = w->vfs, .f = w->f, .size = w->good_off};
    struct newfile nf;
    bool renamed = false;
    int rc;

    rc = nf_begin(&nf, w->vfs, w->dir, w->path, base, now_ms(w), w->h.salt);
    if (rc == 0)
        rc = copy_records(&r, w->fmt, &w->h, from, seq, w->good_off, base, &nf);
    if (rc == 0)
        rc = nf_commit(&nf, &renamed);
    free(r.buf);
    if (renamed) {
        w->vfs->close(w->vfs, w->f);
        w->f = nf.f;
        w->h = nf.h;
        w->fmt = &formats[0];
        w->good_off = nf.off;
        free(w->idx.v);
        w->idx = nf.idx;
        memset(&nf.idx, 0, sizeof(nf.idx));
        nf.f = NULL;
    }
    nf_fini(&nf);
    return rc;
}

static void rotation_done(struct wal *w, int rc)
{
    w->rot.requested = false;
    w->rot.done = true;
    w->rot.rc = rc;
    pthread_cond_broadcast(&w->durable_cv);
}

/* Writer, under mu: a rotation. Everything appended so far is written and
 * synced to the old file first, so every record after upto is in it. */
static void rotate(struct wal *w)
{
    uint64_t upto = w->rot.upto;
    int failures = 0, rc;

    take(w);
    unlock_and_wake(w);
    rc = flush(w, true, &failures);
    pthread_mutex_lock(&w->mu);
    publish(w, rc, true, failures);
    if (rc) {
        rotation_done(w, rc);
        return;
    }
    unlock_and_wake(w);
    rc = rotate_io(w, upto);
    pthread_mutex_lock(&w->mu);
    if (rc == 0)
        w->st.rotations++;
    else
        w->st.last_error = rc;
    w->st.file_size = w->good_off;
    rotation_done(w, rc);
}

/* Writer: whether a batch just written must be synced now. */
static bool sync_now(struct wal *w, uint64_t now)
{
    switch (w->policy) {
    case WAL_SYNC_OFF: return false;
    case WAL_SYNC_EVERYSEC:
        return w->stop || now >= w->last_sync + SYNC_EVERY || w->un.len + w->spare.len > w->cap / 2;
    default: return true;
    }
}

static void *writer_main(void *arg)
{
    struct wal *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        uint64_t now = clock_mono_ns();
        bool sync;
        int failures = 0, rc;

        emit_log(w);
        if (w->err) {
            /* Degraded: retry now and then; appends are refused meanwhile. */
            if (w->rot.requested)
                rotation_done(w, w->err);
            if (!w->stop && now < w->retry_at) {
                writer_sleep(w, w->retry_at);
                continue;
            }
            take(w);
            sync = w->policy != WAL_SYNC_OFF;
            unlock_and_wake(w);
            cut_back(w, &failures);
            rc = flush(w, sync, &failures);
            pthread_mutex_lock(&w->mu);
            publish(w, rc, sync, failures);
            w->st.file_size = w->good_off + w->un.len;
            if (rc && w->stop)
                break; /* what is left is lost; wal_close reports it */
            continue;
        }
        if (w->rot.requested) {
            rotate(w);
            continue;
        }
        if ((!w->pending_recs || (w->holds && !w->stop)) && !(w->un.len && sync_now(w, now))) {
            /* Nothing to write (or what is pending is held back until
             * wal_release), and no sync due (everysec) yet. */
            if (w->stop && !w->un.len)
                break;
            w->wake_at = 1;
            writer_sleep(w, w->un.len ? w->last_sync + SYNC_EVERY : 0);
            continue;
        }
        if (w->pending_recs && w->policy == WAL_SYNC_BATCH && !w->stop) {
            /* Gather a group about as big as the last one (the writers it
             * woke are likely to come back), for at most the delay. */
            uint64_t target = w->last_group ? w->last_group : 1;
            uint64_t due = w->pending_since + w->delay_ns;

            if (target > w->group_max)
                target = w->group_max;
            if (w->pending_recs < target && now < due) {
                w->wake_at = target;
                writer_sleep(w, due);
                continue;
            }
        }
        take(w);
        sync = sync_now(w, now);
        unlock_and_wake(w);
        rc = flush(w, sync, &failures);
        pthread_mutex_lock(&w->mu);
        publish(w, rc, sync, failures);
        w->st.file_size = w->good_off + w->un.len;
    }
    w->writer_waiting = false;
    emit_log(w);
    unlock_and_wake(w);
    return NULL;
}

static void wal_free(struct wal *w)
{
    if (!w)
        return;
    if (w->f)
        w->vfs->close(w->vfs, w->f);
    free(w->pending.p);
    free(w->un.p);
    free(w->spare.p);
    free(w->idx.v);
    free(w->dir);
    free(w->name);
    free(w->path);
    free(w);
}

/* wal_open's second pass: replays [hdr, end) of a file that checked out. */
static int replay_all(struct wal *w, struct rd *r, const struct scan *s, wal_replay_fn replay,
                      void *ud)
{
    uint64_t off = s->h.size, seq = s->h.base_seq;
    const char *why;
    struct rec rec;

    while (off < s->valid_end) {
        int rc = s->fmt->record(r, &s->h, off, seq, seq, &rec, &why);

        if (rc)
            return rc < 0 ? rc : -EIO; /* changed since the first pass */
        seek_note(&w->idx, rec.seq, off);
        if (replay && rec.seq > w->min_seq) {
            rc = replay(rec.type, rec.seq, rec.payload, rec.len, ud);
            if (rc)
                return rc;
        }
        off += s->fmt->rec_min + rec.len;
        seq++;
    }
    return 0;
}

/* Opens path, creating a fresh file when it is missing or empty, checks it,
 * cuts a torn tail, and replays it. Fills w->f, w->h, w->good_off. */
static int open_file(struct wal *w, wal_replay_fn replay, void *ud, struct wal_report *rep)
{
    struct scan s = {0};
    struct rd r = {.vfs = w->vfs};
    struct newfile nf;
    bool renamed;
    int rc;

    rc = w->vfs->open(w->vfs, w->path, VFS_RDWR, &w->f);
    if (rc == 0)
        rc = w->vfs->size(w->vfs, w->f, &s.size);
    if (rc == 0 && s.size > 0) {
        r.f = w->f;
        r.size = s.size;
        rc = scan_file(&r, &s);
        report_scan(rep, w->dir, w->path, &s);
        if (rc == 0 && s.state == WAL_STATE_CORRUPT)
            rc = -EBADMSG;
        if (rc == 0 && s.state == WAL_STATE_TORN_TAIL) {
            rc = w->vfs->truncate(w->vfs, w->f, s.valid_end);
            if (rc == 0)
                rc = w->vfs->sync(w->vfs, w->f);
            rep->truncated = rc == 0;
            if (rc == 0) {
                size_t n = strlen(rep->message);

                snprintf(rep->message + n, sizeof(rep->message) - n, "; cut %" PRIu64 " bytes",
                         rep->dropped_bytes);
            }
        }
        if (rc == 0)
            rc = replay_all(w, &r, &s, replay, ud);
        free(r.buf);
        if (rc)
            return rc;
        w->h = s.h;
        w->fmt = s.fmt;
        w->good_off = s.valid_end;
        w->next_seq = s.records ? s.last_seq + 1 : s.h.base_seq;
        if (w->next_seq > w->min_seq)
            return 0;
        /* The snapshot covers every record here (it was taken after they
         * were numbered, before they all reached this file): numbering must
         * go on after the snapshot, in a fresh file. */
    }
    if (rc && rc != -ENOENT)
        return rc;
    /* Missing, empty or all covered: a new file, made whole before it gets
     * its name (over the old one). */
    if (w->f) {
        w->vfs->close(w->vfs, w->f);
        w->f = NULL;
    }
    free(w->idx.v); /* offsets in the old file */
    memset(&w->idx, 0, sizeof(w->idx));
    if (s.size == 0) {
        s.state = WAL_STATE_MISSING;
        report_scan(rep, w->dir, w->path, &s);
    }
    rc = nf_begin(&nf, w->vfs, w->dir, w->path, w->min_seq + 1, now_ms(w), 0);
    if (rc == 0)
        rc = nf_commit(&nf, &renamed);
    if (rc == 0) {
        w->f = nf.f;
        nf.f = NULL;
        w->h = nf.h;
        w->fmt = &formats[0];
        w->good_off = nf.off;
        w->next_seq = w->min_seq + 1;
        rep->created = true;
        rep->base_seq = w->next_seq;
        msg_set(rep, "wal %s: created (first sequence number %" PRIu64 ")", w->path, w->next_seq);
    }
    nf_fini(&nf);
    return rc;
}

int wal_open(const struct wal_opts *o, wal_replay_fn replay, void *ud, struct wal_report *rep,
             struct wal **out)
{
    struct wal_report tmp;
    struct wal *w;
    int rc = -ENOMEM, made = 0;

    *out = NULL;
    if (!rep)
        rep = &tmp;
    memset(rep, 0, sizeof(*rep));
    if (!o || !o->dir || (unsigned)o->policy > WAL_SYNC_OFF || o->min_seq >= SEQ_LIMIT - 1)
        return -EINVAL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->vfs = o->vfs ? o->vfs : vfs_os();
    w->policy = o->policy ? o->policy : WAL_DEFAULT_POLICY;
    w->cap = o->max_pending ? o->max_pending : WAL_DEFAULT_PENDING;
    w->delay_ns = (uint64_t)(o->batch_delay_us ? o->batch_delay_us : DEF_DELAY_US) * 1000;
    w->group_max = o->batch_max_records ? o->batch_max_records : DEF_GROUP;
    w->retry_ns = (uint64_t)(o->retry_ms ? o->retry_ms : DEF_RETRY_MS) * NS_PER_MS;
    w->now_ms = o->now_ms;
    w->log = o->log;
    w->log_ud = o->log_ud;
    w->min_seq = o->min_seq;
    w->dir = strdup(o->dir);
    w->name = strdup(o->name ? o->name : WAL_DEFAULT_NAME);
    if (!w->dir || !w->name)
        goto fail;
    w->path = path_join(w->dir, w->name, "");
    if (!w->path)
        goto fail;
    snprintf(rep->path, sizeof(rep->path), "%s", w->path);
    rc = open_file(w, replay, ud, rep);
    if (rc)
        goto fail;
    atomic_init(&w->durable, w->next_seq - 1);
    w->st.file_size = w->good_off;
    w->last_sync = 0; /* the first sync under everysec is due at once */
    rc = -ENOMEM;
    if (pthread_mutex_init(&w->mu, NULL) != 0)
        goto fail;
    made = 1;
    if (cond_init_mono(&w->work_cv) != 0)
        goto fail;
    made = 2;
    if (cond_init_mono(&w->durable_cv) != 0)
        goto fail;
    made = 3;
    rc = -thread_start(&w->thread, writer_main, w, "parrot-wal");
    if (rc)
        goto fail;
    *out = w;
    return 0;
fail:
    if (made >= 3)
        pthread_cond_destroy(&w->durable_cv);
    if (made >= 2)
        pthread_cond_destroy(&w->work_cv);
    if (made >= 1)
        pthread_mutex_destroy(&w->mu);
    wal_free(w);
    return rc;
}

int wal_close(struct wal *w)
{
    int rc;

    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->work_cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    rc = w->err;
    if (w->f) {
        int crc = w->vfs->close(w->vfs, w->f);

        w->f = NULL;
        if (rc == 0)
            rc = crc;
    }
    pthread_cond_destroy(&w->durable_cv);
    pthread_cond_destroy(&w->work_cv);
    pthread_mutex_destroy(&w->mu);
    wal_free(w);
    return rc;
}

int wal_rotate(struct wal *w, uint64_t upto)
{
    int rc;

    pthread_mutex_lock(&w->mu);
    w->waiters++;
    while (w->rot.active) {
        pthread_cond_wait(&w->durable_cv, &w->mu);
        relay(w);
    }
    if (upto >= w->next_seq) {
        rc = -EINVAL;
    } else if (w->err) {
        rc = w->err;
    } else {
        w->rot.active = true;
        w->rot.requested = true;
        w->rot.done = false;
        w->rot.upto = upto;
        w->writer_waiting = false;
        pthread_cond_signal(&w->work_cv);
        while (!w->rot.done) {
            pthread_cond_wait(&w->durable_cv, &w->mu);
            relay(w);
        }
        rc = w->rot.rc;
        w->rot.active = false;
        pthread_cond_broadcast(&w->durable_cv);
    }
    w->waiters--;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* ---- off-line check and repair ---- */

/* Opens and scans o's file read-only; *f stays open on success. */
static int check_file(const struct wal_opts *o, struct vfs *vfs, char **dir, char **path,
                      struct rd *r, struct scan *s, struct wal_report *rep)
{
    int rc;

    memset(rep, 0, sizeof(*rep));
    memset(s, 0, sizeof(*s));
    if (!o || !o->dir)
        return -EINVAL;
    *dir = strdup(o->dir);
    *path = path_join(o->dir, o->name ? o->name : WAL_DEFAULT_NAME, "");
    if (!*dir || !*path)
        return -ENOMEM;
    snprintf(rep->path, sizeof(rep->path), "%s", *path);
    r->vfs = vfs;
    rc = vfs->open(vfs, *path, VFS_RDONLY, &r->f);
    if (rc == -ENOENT) {
        r->f = NULL;
        s->state = WAL_STATE_MISSING;
        report_scan(rep, *dir, *path, s);
        return 0;
    }
    if (rc) {
        r->f = NULL;
        return rc;
    }
    rc = vfs->size(vfs, r->f, &s->size);
    if (rc)
        return rc;
    r->size = s->size;
    if (s->size == 0) {
        s->state = WAL_STATE_MISSING;
        report_scan(rep, *dir, *path, s);
        msg_set(rep, "wal %s: empty file; opening it makes a new WAL", *path);
        return 0;
    }
    rc = scan_file(r, s);
    report_scan(rep, *dir, *path, s);
    return rc;
}

/* Releases what check_file() handed out. */
static void check_done(struct vfs *vfs, struct rd *r, char *dir, char *path)
{
    if (r->f)
        vfs->close(vfs, r->f);
    free(r->buf);
    free(dir);
    free(path);
}

int wal_check(const struct wal_opts *o, struct wal_report *rep)
{
    struct vfs *vfs = o && o->vfs ? o->vfs : vfs_os();
    struct rd r = {0};
    struct scan s;
    char *dir = NULL, *path = NULL;
    int rc = check_file(o, vfs, &dir, &path, &r, &s, rep);

    if (rc == 0 && (s.state == WAL_STATE_TORN_TAIL || s.state == WAL_STATE_CORRUPT))
        rc = -EBADMSG;
    check_done(vfs, &r, dir, path);
    return rc;
}

/* Copies the file r reads (dir/name) to a new "dir/name.<UTC time>.bak"
 * (".<UTC time>.<n>.bak" when that exists) and syncs the copy; its name
 * goes to rep->backup. An existing copy is never overwritten. */
static int backup(struct vfs *vfs, struct rd *r, const char *dir, const char *name, int64_t now,
                  struct wal_report *rep)
{
    time_t t = (time_t)(now / 1000);
    struct tm tm;
    char stamp[32] = "unknown", suffix[64], *bak = NULL;
    struct vfs_file *f = NULL;
    uint8_t *chunk = malloc(RD_CHUNK);
    int rc;

    if (gmtime_r(&t, &tm))
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
    rc = chunk ? -EEXIST : -ENOMEM;
    for (int n = 0; n < BAK_TRIES && rc == -EEXIST; n++) {
        if (n == 0)
            snprintf(suffix, sizeof(suffix), ".%s.%03dZ.bak", stamp, (int)(now % 1000));
        else
            snprintf(suffix, sizeof(suffix), ".%s.%03dZ.%d.bak", stamp, (int)(now % 1000), n);
        free(bak);
        if (!(bak = path_join(dir, name, suffix)))
            rc = -ENOMEM;
        else if ((rc = vfs->open(vfs, bak, VFS_RDWR | VFS_CREATE | VFS_EXCL, &f)) != 0)
            f = NULL;
    }
    if (rc)
        goto out;
    for (uint64_t off = 0; rc == 0 && off < r->size;) {
        ssize_t got = vfs_read_full(vfs, r->f, chunk, RD_CHUNK, off);

        if (got <= 0)
            rc = got < 0 ? (int)got : -EIO; /* the file shrank under us */
        else if ((rc = vfs_write_full(vfs, f, chunk, (size_t)got, off)) == 0)
            off += (uint64_t)got;
    }
    if (rc == 0)
        rc = vfs->sync(vfs, f);
    if (rc == 0)
        snprintf(rep->backup, sizeof(rep->backup), "%s", bak);
    else
        vfs->unlink(vfs, bak);
out:
    if (f)
        vfs->close(vfs, f);
    free(chunk);
    free(bak);
    return rc;
}

int wal_repair(const struct wal_opts *o, struct wal_report *rep)
{
    struct vfs *vfs = o && o->vfs ? o->vfs : vfs_os();
    int64_t now = o && o->now_ms ? o->now_ms() : clock_wall_ms();
    struct rd r = {0};
    struct scan s;
    struct newfile nf = {0};
    char *dir = NULL, *path = NULL;
    bool renamed = false;
    int rc = check_file(o, vfs, &dir, &path, &r, &s, rep);

    if (rc || (s.state != WAL_STATE_TORN_TAIL && s.state != WAL_STATE_CORRUPT)) {
        if (rc == 0)
            msg_set(rep, "wal %s: %s; nothing to repair", path, wal_state_name(s.state));
        goto out;
    }
    /* What the repair drops may still be wanted (a record after damage that
     * a later version could read, or evidence of what damaged it): keep the
     * original before replacing it. The directory sync of the commit below
     * makes the copy's name durable too. */
    rc = backup(vfs, &r, dir, o->name ? o->name : WAL_DEFAULT_NAME, now, rep);
    if (rc) {
        msg_set(rep,
                "wal %s: repair refused: cannot keep a backup of the original (%s); the "
                "file was left as it was",
                path, err_name(rc));
        goto out;
    }
    rc = nf_begin(&nf, vfs, dir, path, s.h.base_seq, now, s.h.salt);
    if (rc == 0)
        rc = copy_records(&r, s.fmt, &s.h, s.h.size, s.h.base_seq, s.valid_end, 0, &nf);
    if (rc == 0)
        rc = nf_commit(&nf, &renamed);
    rep->repaired = renamed;
    if (renamed)
        msg_set(rep,
                "wal %s: repaired: kept %" PRIu64 " records (seq %" PRIu64 "..%" PRIu64
                "), dropped %" PRIu64 " valid records and %" PRIu64 " bytes from offset %" PRIu64
                "; the original is kept as %s%s",
                path, s.records, s.first_seq, s.last_seq, s.records_after, s.size - s.valid_end,
                s.bad_offset, rep->backup, rc ? " (directory sync failed)" : "");
    else
        msg_set(rep,
                "wal %s: repair failed (%s); the file was left as it was (a copy is in %s: "
                "remove it)",
                path, err_name(rc), rep->backup);
out:
    nf_fini(&nf);
    check_done(vfs, &r, dir, path);
    return rc;
}
