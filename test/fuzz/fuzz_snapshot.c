/* fuzz_snapshot.c - fuzz target for the snapshot reader (cache/snapshot.c)
 * and the graph loader behind it (hnsw_load); see test/fuzz/README.md.
 *
 * The input is a snapshot file. Its first byte picks fix-ups, the rest is
 * the file, written to a scratch directory: random bytes would never get past
 * the CRCs, so bit 0 recomputes the header CRC and bit 1 each section's CRC
 * (walking the sections by their length fields), as the writer would have.
 * Checks: snap_load returns 0, -EBADMSG or -EPROTONOSUPPORT (never reads
 * outside what it allocated: ASan); a failure names the offset; on success
 * the store holds exactly the entries it reports, every partition can be
 * searched, and writing the loaded store out and loading that again gives
 * the same number of entries and rebuilds no graph.
 */
#include "cache/base/le.h"
#include "cache/persist/snapshot.h"
#include "cache/base/crc32c.h"
#include "test/fuzz/fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIM 4

/* Payload "P K": partition P, exact key K, as the seeds were written. */
static int encode(void *ud, const struct store_entry *e, const uint8_t *partition, struct buf *out)
{
    const char *p = store_entry_payload(e);

    (void)ud;
    (void)partition;
    return buf_append(out, p, strlen(p), SIZE_MAX);
}

static int restore(void *ud, uint64_t id, const float *vec, const void *rec, size_t len)
{
    uint8_t part[STORE_KEY_LEN] = {0}, exact[STORE_KEY_LEN] = {0};
    unsigned p, k;
    uint64_t got;
    char *text = strndup(rec, len);

    if (!text)
        return -ENOMEM;
    if (sscanf(text, "%u %u", &p, &k) != 2) {
        free(text);
        return 1; /* a record this version cannot read: left out */
    }
    part[0] = (uint8_t)p;
    memcpy(exact, &k, sizeof(k));
    struct store_put_args a = {.partition = part,
                               .exact = exact,
                               .vec = vec,
                               .payload = text,
                               .payload_size = len,
                               .cost = 1,
                               .now = 1,
                               .id = id};
    return store_put(ud, &a, &got);
}

static struct store *mkstore(void)
{
    struct store_opts o = {
        .dim = DIM, .max_memory = 64u << 20, .exact_scan_max = 4, .payload_free = free};
    struct store *s = NULL;

    CHECK(store_new(&o, &s) == 0);
    return s;
}

static const char *scratch(void)
{
    static char dir[64];

    if (!dir[0]) {
        struct stat st;
        snprintf(dir, sizeof(dir), "%s/parrot-fuzz-snap-%d",
                 stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        mkdir(dir, 0700);
    }
    return dir;
}

static void fixup(uint8_t *f, size_t n, unsigned flags)
{
    if (n < 64)
        return;
    if (flags & 1)
        le_put32(f + 60, crc32c(0, f, 60));
    if (!(flags & 2))
        return;
    uint8_t salt[8];
    memcpy(salt, f + 16, 8);
    for (size_t at = 64; n - at >= 20;) {
        uint64_t len = le_get64(f + at + 8);
        if (len > n - at - 20)
            break;
        uint32_t crc = crc32c(crc32c(0, salt, 8), f + at, 16 + len);
        le_put32(f + at + 16 + len, crc);
        at += 20 + len;
    }
}

static void search_all(struct store *s)
{
    float q[DIM] = {0.5f, 0.5f, 0.5f, 0.5f}, sim;

    for (unsigned p = 0; p < 256; p++) {
        uint8_t part[STORE_KEY_LEN] = {(uint8_t)p};
        struct store_query sq = {.partition = part,
                                 .vec = q,
                                 .threshold = -1.0f,
                                 .now = 2,
                                 .max_age = -1,
                                 .candidates = 4};
        store_entry_unref(store_get_semantic(s, &sq, &sim));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = scratch();
    char path[128];
    struct snap_opts o = {.dir = dir, .dim = DIM};
    struct snap_codec c = {encode, restore, NULL};
    struct snap_report rep;
    struct store_stats st;
    struct store *s;
    uint8_t *f;
    FILE *fp;
    int rc;

    if (size < 1)
        return 0;
    f = malloc(size);
    CHECK(f);
    memcpy(f, data + 1, size - 1);
    fixup(f, size - 1, data[0]);
    snprintf(path, sizeof(path), "%s/%s", dir, SNAP_NAME);
    fp = fopen(path, "wb");
    CHECK(fp);
    CHECK(fwrite(f, 1, size - 1, fp) == size - 1);
    fclose(fp);
    free(f);

    s = mkstore();
    c.ud = s;
    rc = snap_load(&o, s, &c, &rep);
    CHECK(rc == 0 || rc == -EBADMSG || rc == -EPROTONOSUPPORT);
    if (rc != 0) {
        CHECK(strstr(rep.message, "offset") != NULL);
        store_free(s);
        return 0;
    }
    store_get_stats(s, &st);
    CHECK(rep.found && st.entries <= rep.loaded && rep.loaded + rep.skipped == rep.entries);
    search_all(s);

    /* Round trip what was loaded. */
    CHECK(snap_write(&o, s, rep.wal_seq, &c, &rep) == 0);
    struct store *t = mkstore();
    c.ud = t;
    CHECK(snap_load(&o, t, &c, &rep) == 0);
    struct store_stats st2;
    store_get_stats(t, &st2);
    CHECK(st2.entries == st.entries && rep.graphs_built == 0);
    search_all(t);
    store_free(t);
    store_free(s);
    return 0;
}
