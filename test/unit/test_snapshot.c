/* Unit tests for cache/snapshot.c: a round trip keeps every entry, id and
 * graph (no rebuild); expired entries leave their graph consistent; short
 * writes, ENOSPC, failed syncs and a crash at any byte leave the previous
 * snapshot loadable; damage is refused with the offset and the remedy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/index/hnsw.h"
#include "cache/persist/snapshot.h"
#include "cache/index/store.h"
#include "cache/persist/vfs.h"
#include "test/support/faultvfs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { DIM = 16, BIG = 600, SMALL = 12 };

/* The payload is a malloc'd string; "expired" in it makes restore leave the
 * entry out, as the cache does for an entry whose TTL ran out. */
static int encode(void *ud, const struct store_entry *e, const uint8_t *partition, struct buf *out)
{
    const char *p = store_entry_payload(e);

    (void)ud;
    (void)partition;
    return buf_append(out, p, strlen(p), SIZE_MAX);
}

struct target {
    struct store *s;
    size_t expired;
    bool regroup; /* every odd k of partition 3 into group 9 (a later grouping) */
};

static int restore(void *ud, uint64_t id, const float *vec, const void *rec, size_t len)
{
    struct target *t = ud;
    uint8_t part[STORE_KEY_LEN] = {0}, exact[STORE_KEY_LEN] = {0};
    char *p = strndup(rec, len);
    struct store_put_args a = {.partition = part,
                               .exact = exact,
                               .vec = vec,
                               .payload = p,
                               .payload_size = len,
                               .cost = 1,
                               .now = 1,
                               .id = id};
    uint64_t got;
    unsigned k, big, group = 0;

    if (!p)
        return -ENOMEM;
    if (strstr(p, "expired")) {
        t->expired++;
        free(p);
        return 1;
    }
    if (sscanf(p, "%u %u %u", &big, &k, &group) < 2) {
        free(p);
        return -EBADMSG;
    }
    if (t->regroup && big == 3 && k % 2)
        group = 9;
    a.group = group;
    part[0] = (uint8_t)big;
    memcpy(exact, &k, sizeof(k));
    exact[8] = (uint8_t)big;
    return store_put(t->s, &a, &got);
}

static struct store *mkstore(void)
{
    struct store_opts o = {
        .dim = DIM, .max_memory = 1u << 30, .exact_scan_max = 256, .payload_free = free};
    struct store *s;

    assert_int_equal(store_new(&o, &s), 0);
    return s;
}

static void vec_of(unsigned k, float *v)
{
    double n = 0;

    for (unsigned i = 0; i < DIM; i++) {
        v[i] = (float)sin(k * 0.7 + i * 1.3 + (k % 7) * i);
        n += (double)v[i] * v[i];
    }
    for (unsigned i = 0; i < DIM; i++)
        v[i] = (float)(v[i] / sqrt(n));
}

/* BIG entries in partition 1 (indexed), SMALL in partition 2 (scanned;
 * every third without a vector). mark_expired names entries to tag. */
static void fill(struct store *s, unsigned mark_expired)
{
    for (unsigned big = 1; big <= 2; big++) {
        unsigned n = big == 1 ? BIG : SMALL;
        for (unsigned k = 0; k < n; k++) {
            uint8_t part[STORE_KEY_LEN] = {0}, exact[STORE_KEY_LEN] = {0};
            char text[64];
            float v[DIM];
            uint64_t id;

            part[0] = (uint8_t)big;
            memcpy(exact, &k, sizeof(k));
            exact[8] = (uint8_t)big;
            vec_of(k + 1000 * big, v);
            snprintf(text, sizeof(text), "%u %u%s", big, k,
                     mark_expired && k % mark_expired == 0 ? " expired" : "");
            struct store_put_args a = {.partition = part,
                                       .exact = exact,
                                       .vec = big == 2 && k % 3 == 0 ? NULL : v,
                                       .payload = strdup(text),
                                       .payload_size = strlen(text),
                                       .cost = 1,
                                       .now = 1};
            assert_int_equal(store_put(s, &a, &id), 0);
        }
    }
}

static char dir[] = "/tmp/parrot-snap-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char p[512];

    (void)state;
    snprintf(p, sizeof(p), "%s/%s", dir, SNAP_NAME);
    unlink(p);
    snprintf(p, sizeof(p), "%s/%s", dir, SNAP_TMP_NAME);
    unlink(p);
    rmdir(dir);
    return 0;
}

static int load_into(struct store *s, struct vfs *v, struct snap_report *rep, struct target *t)
{
    struct snap_opts o = {.dir = dir, .vfs = v, .dim = DIM};
    struct snap_codec c = {encode, restore, t};

    t->s = s;
    return snap_load(&o, s, &c, rep);
}

static int write_from(struct store *s, struct vfs *v, uint64_t seq, struct snap_report *rep)
{
    struct snap_opts o = {.dir = dir, .vfs = v, .dim = DIM, .now_ms = 5};
    struct snap_codec c = {encode, restore, NULL};

    return snap_write(&o, s, seq, &c, rep);
}

/* Same entries, same ids, same semantic answers; the graph was loaded. */
static void assert_same(struct store *a, struct store *b, size_t expect_entries)
{
    struct store_stats sa, sb;
    uint8_t part[STORE_KEY_LEN] = {1};

    store_get_stats(b, &sb);
    store_get_stats(a, &sa);
    assert_int_equal(sb.entries, expect_entries);
    assert_int_equal(sb.indexed_partitions, 1);
    for (unsigned k = 0; k < 200; k++) {
        float v[DIM], s1 = 0, s2 = 0;
        vec_of(k * 3 + 1000, v);
        struct store_query q = {.partition = part,
                                .vec = v,
                                .threshold = 0.5f,
                                .now = 2,
                                .max_age = -1,
                                .candidates = 1};
        struct store_entry *x = store_get_semantic(a, &q, &s1);
        struct store_entry *y = store_get_semantic(b, &q, &s2);
        assert_true((x == NULL) == (y == NULL));
        if (x) {
            assert_int_equal(store_entry_id(x), store_entry_id(y));
            assert_string_equal(store_entry_payload(x), store_entry_payload(y));
        }
        store_entry_unref(x);
        store_entry_unref(y);
    }
}

static void test_round_trip(void **state)
{
    struct store *a = mkstore(), *b = mkstore(), *c = mkstore();
    struct snap_report rep;
    struct target t = {0};

    (void)state;
    fill(a, 0);
    assert_int_equal(load_into(c, NULL, &rep, &t), 0); /* no file yet */
    assert_false(rep.found);
    assert_int_equal(write_from(a, NULL, 42, &rep), 0);
    assert_int_equal(rep.entries, BIG + SMALL);
    assert_int_equal(rep.graphs, 1);
    assert_int_equal(load_into(b, NULL, &rep, &t), 0);
    assert_true(rep.found);
    assert_int_equal(rep.wal_seq, 42);
    assert_int_equal(rep.loaded, BIG + SMALL);
    assert_int_equal(rep.graphs_built, 0);
    assert_same(a, b, BIG + SMALL);
    /* An entry without a vector and an exact lookup come back too. */
    uint8_t ex[STORE_KEY_LEN] = {0};
    ex[8] = 2;
    struct store_entry *e = store_get_exact(b, ex, 2, -1);
    assert_non_null(e);
    assert_null(store_entry_vec(e));
    assert_string_equal(store_entry_payload(e), "2 0");
    store_entry_unref(e);
    store_free(a);
    store_free(b);
    store_free(c);
}

/* Entries restore() leaves out are taken out of the graph, which is then
 * still adopted as it is. */
/* Partition 3: GROUPED entries in group 0 and as many in group 7, both
 * indexed; "3 k g" payloads say the group for restore(). */
enum { GROUPED = 300 };

static void fill_groups(struct store *s, bool grouped)
{
    for (unsigned k = 0; k < 2 * GROUPED; k++) {
        uint8_t part[STORE_KEY_LEN] = {3}, exact[STORE_KEY_LEN] = {0};
        unsigned group = grouped && k >= GROUPED ? 7 : 0;
        char text[64];
        float v[DIM];
        uint64_t id;

        memcpy(exact, &k, sizeof(k));
        exact[8] = 3;
        vec_of(k + 5000, v);
        snprintf(text, sizeof(text), "3 %u %u", k, group);
        struct store_put_args a = {.partition = part,
                                   .group = group,
                                   .exact = exact,
                                   .vec = v,
                                   .payload = strdup(text),
                                   .payload_size = strlen(text),
                                   .cost = 1,
                                   .now = 1};
        assert_int_equal(store_put(s, &a, &id), 0);
    }
}

/* The best entry of group in partition 3 for the vector of k, or 0. */
static uint64_t best_in(struct store *s, uint64_t group, unsigned k)
{
    uint8_t part[STORE_KEY_LEN] = {3};
    float v[DIM], sim;
    uint64_t id = 0;

    vec_of(k + 5000, v);
    struct store_query q = {.partition = part,
                            .group = group,
                            .vec = v,
                            .threshold = -1,
                            .now = 2,
                            .max_age = -1,
                            .candidates = 1};
    struct store_entry *e = store_get_semantic(s, &q, &sim);
    if (e)
        id = store_entry_id(e);
    store_entry_unref(e);
    return id;
}

/* A group's graph is saved under its own key and adopted again; a graph
 * saved before its entries were grouped as they are now is built again. */
static void test_group_graphs(void **state)
{
    struct store *a = mkstore(), *b = mkstore(), *c = mkstore(), *d = mkstore();
    struct snap_report rep;
    struct target t = {0};
    struct store_stats st;

    (void)state;
    fill_groups(a, true);
    store_get_stats(a, &st);
    assert_int_equal(st.partitions, 1);
    assert_int_equal(st.indexed_partitions, 2);
    assert_int_equal(write_from(a, NULL, 3, &rep), 0);
    assert_int_equal(rep.graphs, 2);
    assert_int_equal(load_into(b, NULL, &rep, &t), 0);
    assert_int_equal(rep.loaded, 2 * GROUPED);
    assert_int_equal(rep.graphs_built, 0);
    for (unsigned k = 0; k < 2 * GROUPED; k += 7) {
        uint64_t group = k >= GROUPED ? 7 : 0;
        assert_int_not_equal(best_in(a, group, k), 0);
        assert_int_equal(best_in(a, group, k), best_in(b, group, k));
        assert_int_equal(best_in(b, 7 - group, k) == best_in(b, group, k), false);
    }
    /* One group saved, two loaded: its graph does not fit either. */
    fill_groups(c, false);
    assert_int_equal(write_from(c, NULL, 4, &rep), 0);
    assert_int_equal(rep.graphs, 1);
    t.regroup = true;
    assert_int_equal(load_into(d, NULL, &rep, &t), 0);
    assert_int_equal(rep.loaded, 2 * GROUPED);
    assert_int_equal(rep.graphs_built, 2);
    for (unsigned k = 0; k < 2 * GROUPED; k += 7)
        assert_int_equal(best_in(d, k % 2 ? 9 : 0, k), best_in(c, 0, k));
    store_free(a);
    store_free(b);
    store_free(c);
    store_free(d);
}

static void test_expired_keep_graph(void **state)
{
    struct store *a = mkstore(), *b = mkstore();
    struct snap_report rep;
    struct target t = {0};

    (void)state;
    fill(a, 5);
    assert_int_equal(write_from(a, NULL, 7, &rep), 0);
    assert_int_equal(load_into(b, NULL, &rep, &t), 0);
    assert_int_equal(t.expired, BIG / 5 + (SMALL + 4) / 5);
    assert_int_equal(rep.skipped, t.expired);
    assert_int_equal(rep.graphs_built, 0);
    struct store_stats st;
    store_get_stats(b, &st);
    assert_int_equal(st.entries, BIG + SMALL - t.expired);
    assert_int_equal(st.indexed_partitions, 1);
    store_free(a);
    store_free(b);
}

/* Loads the current file and says which of the two fills it holds. */
static unsigned which(struct vfs *v)
{
    struct store *s = mkstore();
    struct snap_report rep;
    struct target t = {0};
    int rc = load_into(s, v, &rep, &t);

    if (rc != 0)
        fail_msg("load after a fault: %s", rep.message);
    store_free(s);
    return (unsigned)rep.wal_seq;
}

static void test_faults(void **state)
{
    struct store *a = mkstore();
    struct snap_report rep;
    struct vfs *v;
    struct vfs_fault_plan plans[] = {
        {.write_nth = 2, .write_count = 3}, /* short writes: retried, succeeds */
        {.write_nth = 3, .write_err = -ENOSPC},
        {.write_nth = 1, .write_count = 1, .write_err = -EIO},
        {.sync_nth = 1, .sync_err = -EIO},
    };

    (void)state;
    fill(a, 0);
    assert_int_equal(vfs_fault_new(&v), 0);
    assert_int_equal(write_from(a, v, 1, &rep), 0);
    for (size_t i = 0; i < sizeof(plans) / sizeof(plans[0]); i++) {
        vfs_fault_set(v, &plans[i]);
        int rc = write_from(a, v, 100 + i, &rep);
        vfs_fault_clear(v);
        if (i == 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(which(v), 100);
            assert_int_equal(write_from(a, v, 1, &rep), 0);
            continue;
        }
        assert_int_not_equal(rc, 0);
        assert_non_null(strstr(rep.message, "not written"));
        assert_int_equal(which(v), 1); /* the previous snapshot, intact */
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, SNAP_TMP_NAME);
        assert_int_not_equal(access(p, F_OK), 0);
    }
    /* Crash at many points of a write, then a power cut: the file is the old
     * snapshot or the whole new one, never a broken one. */
    uint64_t size = rep.bytes, step = size / 23 + 1;
    unsigned saw_new = 0, saw_old = 0;
    for (uint64_t at = 1; at < size + 2 * step; at += step) {
        struct vfs_fault_plan crash = {.crash_at = at};
        vfs_fault_set(v, &crash);
        write_from(a, v, 2, &rep);
        assert_int_equal(vfs_fault_power_loss(v), 0);
        vfs_fault_clear(v);
        unsigned got = which(v);
        assert_true(got == 1 || got == 2);
        saw_new += got == 2;
        saw_old += got == 1;
        assert_int_equal(write_from(a, v, 1, &rep), 0); /* back to the old one */
    }
    assert_true(saw_new > 0 && saw_old > 0);
    vfs_fault_free(v);
    store_free(a);
}

/* Damage anywhere is refused with the file, the offset and the remedy. */
static void test_damage(void **state)
{
    struct store *a = mkstore();
    struct snap_report rep;
    struct target t = {0};
    char p[512];
    FILE *f;
    long size;

    (void)state;
    fill(a, 0);
    assert_int_equal(write_from(a, NULL, 9, &rep), 0);
    snprintf(p, sizeof(p), "%s/%s", dir, SNAP_NAME);
    f = fopen(p, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    for (long at = 3; at < size; at += size / 17) {
        int c;
        fseek(f, at, SEEK_SET);
        c = fgetc(f);
        fseek(f, at, SEEK_SET);
        fputc(c ^ 0x10, f);
        fflush(f);
        struct store *b = mkstore();
        int rc = load_into(b, NULL, &rep, &t);
        assert_true(rc == -EBADMSG);
        assert_non_null(strstr(rep.message, "offset"));
        assert_non_null(strstr(rep.message, ".bad"));
        store_free(b);
        fseek(f, at, SEEK_SET);
        fputc(c, f);
        fflush(f);
    }
    fclose(f);
    assert_int_equal(truncate(p, size - 1), 0);
    struct store *b = mkstore();
    assert_int_equal(load_into(b, NULL, &rep, &t), -EBADMSG);
    store_free(b);
    store_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_expired_keep_graph),
        cmocka_unit_test(test_group_graphs), cmocka_unit_test(test_faults),
        cmocka_unit_test(test_damage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
