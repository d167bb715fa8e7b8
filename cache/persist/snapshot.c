/* snapshot.c - write and load cache snapshots; see snapshot.h.
 *
 * On-disk format, version 1 (little-endian, fixed width, through cache/base/le.h)
 * ---------------------------------------------------------------------------
 * File header, 64 bytes:
 *    off size field
 *      0    8  magic     "PARROTSN"
 *      8    4  version   1
 *     12    4  hdr_size  64
 *     16    8  salt      random, new for every file
 *     24    8  created   Unix milliseconds (signed)
 *     32    8  wal_seq   the file reflects every WAL record with seq <= wal_seq
 *     40    4  dim       vector dimension of every vector in the file
 *     44    4  graphs    number of GRAPH sections
 *     48    8  entries   number of ENTRY sections
 *     56    4  embedder  CRC32C of the name of the embedder that made the
 *                        vectors (e.g. "builtin:384", "openai:MODEL:1536")
 *     60    4  hdr_crc   CRC32C of bytes 0..59
 * Then `graphs` GRAPH sections, then `entries` ENTRY sections, then the end
 * of the file (anything after the last section is damage). A section:
 *      0    4  type      1 GRAPH, 2 ENTRY
 *      4    4  reserved  0
 *      8    8  len       payload bytes
 *     16  len  payload
 *   16+len  4  crc       CRC32C of the salt (8 bytes), then bytes 0..15, then
 *                        the payload
 * GRAPH payload: 32-byte key, then the graph as hnsw_save writes it (format
 * at the end of cache/index/hnsw.c). The key is a partition's, or that of a
 * group of one (cache/index/store.h); each appears once.
 * ENTRY payload:
 *      0    8  id        the entry's store id (the graph's ids refer to it)
 *      8   32  partition
 *     40    1  vec       0: no vector; 1: dim float32 follow; 2: the vector
 *                        is the one the partition's graph holds under id;
 *                        3: the one the graph under the key that follows
 *                        holds under id (the entry's group)
 *     41  4*dim (vec 1 only) the vector
 *     41   32 (vec 3 only) the group's graph key
 *      ..  rest            the caller's record (snap_codec; the cache writes a
 *                          log's PUT payload, see cache/persist/records.h)
 *
 * A file whose dim or embedder differs from the running parrot's is loaded
 * without its vectors: graphs are read (and checked) but dropped, and every
 * entry is restored with no vector, for the caller to embed again; vectors of
 * two embedders never meet in one index.
 *
 * Why: the salt ties every section CRC to this file, as in the WAL; counts
 * in the header make a file cut at a section boundary detectable; vectors of
 * indexed entries are written once (in the graph) rather than twice.
 */
#include "cache/persist/snapshot.h"

#include "cache/index/hnsw.h"
#include "cache/base/le.h"
#include "cache/base/crc32c.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define HDR_SIZE    64u
#define SEC_HDR     16u
#define SEC_GRAPH   1u
#define SEC_ENTRY   2u
#define ENTRY_FIXED 41u
#define FLUSH_AT    (1u << 20) /* write out the output buffer past this */
#define RD_CHUNK    (1u << 20)
#define BUF_MAX     SIZE_MAX

enum vec_kind { VEC_NONE, VEC_INLINE, VEC_GRAPH, VEC_GROUP };

static const uint8_t magic[8] = {'P', 'A', 'R', 'R', 'O', 'T', 'S', 'N'};

static int path_of(const char *dir, const char *name, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

static void msg(struct snap_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void msg(struct snap_report *rep, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(rep->message, sizeof(rep->message), fmt, ap);
    va_end(ap);
}

/* ---- writing ----------------------------------------------------------- */

struct writer {
    uint64_t salt;
    struct buf graphs; /* GRAPH sections, serialised under the store's read lock */
    uint32_t ngraphs;
    int err;
};

static size_t section_begin(struct buf *b)
{
    static const uint8_t zero[SEC_HDR];
    size_t at = b->len;

    return buf_append(b, zero, SEC_HDR, BUF_MAX) == 0 ? at : SIZE_MAX;
}

static int section_end(struct buf *b, size_t at, uint32_t type, uint64_t salt)
{
    uint8_t s[8], c[4];
    uint8_t *h = (uint8_t *)b->p + at;
    uint32_t crc;

    le_put32(h, type);
    le_put64(h + 8, b->len - at - SEC_HDR);
    le_put64(s, salt);
    crc = crc32c(crc32c(0, s, 8), h, b->len - at);
    le_put32(c, crc);
    return buf_append(b, c, 4, BUF_MAX);
}

static int buf_sink(void *ud, const void *p, size_t n)
{
    return buf_append(ud, p, n, BUF_MAX);
}

/* Under the store's read lock: one GRAPH section into memory. */
static int capture_graph(void *ud, const uint8_t *key, const struct hnsw *idx)
{
    struct writer *w = ud;
    size_t at = section_begin(&w->graphs);
    int rc;

    if (at == SIZE_MAX)
        return -ENOMEM;
    rc = buf_append(&w->graphs, key, STORE_KEY_LEN, BUF_MAX);
    if (rc == 0)
        rc = hnsw_save(idx, buf_sink, &w->graphs);
    if (rc == 0)
        rc = section_end(&w->graphs, at, SEC_GRAPH, w->salt);
    w->ngraphs += rc == 0;
    return rc;
}

static int encode_entry(const struct snap_opts *o, const struct snap_codec *c, uint64_t salt,
                        const struct store_snap_item *it, struct buf *out)
{
    const float *v = store_entry_vec(it->e);
    uint8_t fixed[ENTRY_FIXED];
    size_t at = section_begin(out);
    int rc;

    if (at == SIZE_MAX)
        return -ENOMEM;
    le_put64(fixed, store_entry_id(it->e));
    memcpy(fixed + 8, it->partition, STORE_KEY_LEN);
    fixed[40] = !v                                                     ? VEC_NONE
                : !it->indexed                                         ? VEC_INLINE
                : memcmp(it->graph, it->partition, STORE_KEY_LEN) == 0 ? VEC_GRAPH
                                                                       : VEC_GROUP;
    rc = buf_append(out, fixed, sizeof(fixed), BUF_MAX);
    if (rc == 0 && fixed[40] == VEC_GROUP)
        rc = buf_append(out, it->graph, STORE_KEY_LEN, BUF_MAX);
    for (unsigned i = 0; rc == 0 && fixed[40] == VEC_INLINE && i < o->dim; i++) {
        uint8_t f[4];
        uint32_t bits;
        memcpy(&bits, &v[i], 4);
        le_put32(f, bits);
        rc = buf_append(out, f, 4, BUF_MAX);
    }
    if (rc == 0)
        rc = c->encode(c->ud, it->e, it->partition, out);
    if (rc == 0)
        rc = section_end(out, at, SEC_ENTRY, salt);
    return rc;
}

static int flush(struct vfs *v, struct vfs_file *f, struct buf *b, uint64_t *off)
{
    int rc = vfs_write_full(v, f, b->p, b->len, *off);

    if (rc == 0) {
        *off += b->len;
        buf_reset(b);
    }
    return rc;
}

static int write_file(const struct snap_opts *o, struct vfs *v, struct vfs_file *f,
                      struct writer *w, const struct store_snap_item *items, size_t n,
                      uint64_t wal_seq, const struct snap_codec *c, uint64_t *size)
{
    struct buf out = {0};
    uint8_t h[HDR_SIZE] = {0};
    uint64_t off = 0;
    int rc;

    memcpy(h, magic, sizeof(magic));
    le_put32(h + 8, SNAP_VERSION);
    le_put32(h + 12, HDR_SIZE);
    le_put64(h + 16, w->salt);
    le_put64(h + 24, (uint64_t)o->now_ms);
    le_put64(h + 32, wal_seq);
    le_put32(h + 40, o->dim);
    le_put32(h + 44, w->ngraphs);
    le_put32(h + 56, o->embedder);
    le_put64(h + 48, n);
    le_put32(h + 60, crc32c(0, h, 60));
    rc = vfs_write_full(v, f, h, sizeof(h), off);
    off += sizeof(h);
    if (rc == 0 && w->graphs.len > 0)
        rc = flush(v, f, &w->graphs, &off);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = encode_entry(o, c, w->salt, &items[i], &out);
        if (rc == 0 && out.len >= FLUSH_AT)
            rc = flush(v, f, &out, &off);
    }
    if (rc == 0 && out.len > 0)
        rc = flush(v, f, &out, &off);
    if (rc == 0)
        rc = v->sync(v, f);
    buf_free(&out);
    *size = off;
    return rc;
}

int snap_write(const struct snap_opts *o, struct store *s, uint64_t wal_seq,
               const struct snap_codec *c, struct snap_report *rep)
{
    struct snap_report tmp;
    struct vfs *v = o->vfs ? o->vfs : vfs_os();
    char path[1024], tpath[1024];
    struct writer w = {0};
    struct store_snap_item *items = NULL;
    struct vfs_file *f = NULL;
    size_t n = 0;
    int rc;

    if (!rep)
        rep = &tmp;
    memset(rep, 0, sizeof(*rep));
    if ((rc = path_of(o->dir, SNAP_NAME, path, sizeof(path))) != 0 ||
        (rc = path_of(o->dir, SNAP_TMP_NAME, tpath, sizeof(tpath))) != 0)
        return rc;
    snprintf(rep->path, sizeof(rep->path), "%s", path);
    if (getrandom(&w.salt, sizeof(w.salt), 0) != (ssize_t)sizeof(w.salt))
        w.salt = (uint64_t)o->now_ms * 0x9e3779b97f4a7c15ULL;
    rc = store_capture(s, capture_graph, &w, &items, &n);
    if (rc == 0)
        rc = v->open(v, tpath, VFS_RDWR | VFS_CREATE | VFS_TRUNC, &f);
    if (rc == 0) {
        rc = write_file(o, v, f, &w, items, n, wal_seq, c, &rep->bytes);
        int crc = v->close(v, f);
        rc = rc ? rc : crc;
        if (rc == 0)
            rc = v->rename(v, tpath, path);
        if (rc == 0)
            rc = v->sync_dir(v, o->dir);
        else
            v->unlink(v, tpath);
    }
    rep->wal_seq = wal_seq;
    rep->entries = n;
    rep->graphs = w.ngraphs;
    store_capture_free(items, n);
    buf_free(&w.graphs);
    if (rc)
        msg(rep,
            "snapshot %s: not written: %s; the previous snapshot and the write-ahead log "
            "still hold the cache",
            path, strerror(-rc));
    else
        msg(rep,
            "snapshot %s: %" PRIu64 " entries, %" PRIu64 " graphs, %" PRIu64
            " bytes, covers log records up to %" PRIu64,
            path, rep->entries, rep->graphs, rep->bytes, wal_seq);
    return rc;
}

/* ---- loading ----------------------------------------------------------- */

struct rd {
    struct vfs *v;
    struct vfs_file *f;
    uint64_t size, off; /* file size, next byte to hand out */
    uint64_t limit;     /* the current section's payload ends here */
    uint8_t *buf;       /* file bytes [boff, boff + blen) */
    uint64_t boff;
    size_t blen;
    uint32_t crc; /* of the current section so far */
    int ioerr;    /* a read error, as opposed to running past the limit */
};

/* The next n bytes of the current section, checksummed as they pass. */
static int rd_read(void *ud, void *dst, size_t n)
{
    struct rd *r = ud;
    uint8_t *d = dst;

    if (n > r->limit - r->off)
        return -EBADMSG;
    while (n > 0) {
        if (r->off < r->boff || r->off >= r->boff + r->blen) {
            ssize_t got = vfs_read_full(r->v, r->f, r->buf, RD_CHUNK, r->off);
            if (got <= 0) {
                r->ioerr = got < 0 ? (int)got : -EBADMSG;
                return r->ioerr;
            }
            r->boff = r->off;
            r->blen = (size_t)got;
        }
        size_t at = (size_t)(r->off - r->boff), k = r->blen - at;
        if (k > n)
            k = n;
        memcpy(d, r->buf + at, k);
        r->crc = crc32c(r->crc, d, k);
        d += k;
        r->off += k;
        n -= k;
    }
    return 0;
}

struct graph {
    uint8_t key[STORE_KEY_LEN]; /* its partition's or group's */
    struct hnsw *h;
};

static int graph_cmp(const void *a, const void *b)
{
    return memcmp(((const struct graph *)a)->key, ((const struct graph *)b)->key, STORE_KEY_LEN);
}

struct loader {
    const struct snap_opts *o;
    const struct snap_codec *c;
    struct snap_report *rep;
    struct rd r;
    uint64_t salt;
    struct graph *graphs;
    size_t ngraphs;
    const char *why; /* what was wrong at rep->bad_offset */
    uint8_t *rec;    /* the current entry section's payload */
    size_t rcap;
    unsigned dim; /* the file's vector dimension */
    bool foreign; /* its vectors come from another embedder: unused */
    bool check;   /* snap_check: no store and no codec; every vector is checked */
};

/* Read a section header; sets the read limit to its payload. */
static int section_open(struct loader *L, uint32_t want)
{
    uint8_t h[SEC_HDR], s[8];
    uint64_t len;
    int rc;

    L->rep->bad_offset = L->r.off;
    le_put64(s, L->salt);
    L->r.crc = crc32c(0, s, 8);
    L->r.limit = L->r.size;
    if ((rc = rd_read(&L->r, h, SEC_HDR)) != 0) {
        L->why = "the file ends inside a section header";
        return rc;
    }
    len = le_get64(h + 8);
    if (le_get32(h) != want || le_get32(h + 4) != 0) {
        L->why = "unexpected section type";
        return -EBADMSG;
    }
    if (len > L->r.size - L->r.off || L->r.size - L->r.off - len < 4) {
        L->why = "a section runs past the end of the file";
        return -EBADMSG;
    }
    L->r.limit = L->r.off + len;
    return 0;
}

/* The payload must be used up exactly; then the CRC must match. */
static int section_close(struct loader *L)
{
    uint32_t crc = L->r.crc;
    uint8_t c[4];

    if (L->r.off != L->r.limit) {
        L->why = "a section holds more bytes than its contents";
        return -EBADMSG;
    }
    L->r.limit += 4;
    if (rd_read(&L->r, c, 4) != 0 || le_get32(c) != crc) {
        L->why = "section checksum mismatch";
        return -EBADMSG;
    }
    return 0;
}

static int load_graphs(struct loader *L, uint32_t n)
{
    int rc;

    L->graphs = calloc(n ? n : 1, sizeof(*L->graphs));
    if (!L->graphs)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        struct graph *g = &L->graphs[i];
        if ((rc = section_open(L, SEC_GRAPH)) != 0)
            return rc;
        if ((rc = rd_read(&L->r, g->key, STORE_KEY_LEN)) != 0) {
            L->why = "graph section too short";
            return rc;
        }
        rc = hnsw_load(rd_read, &L->r, L->r.limit - L->r.off, &g->h);
        L->ngraphs = i + 1;
        if (rc == -EBADMSG && !L->r.ioerr)
            L->why = "invalid graph";
        if (rc == 0 && hnsw_dim(g->h) != L->dim) {
            L->why = "graph of another vector dimension";
            rc = -EBADMSG;
        }
        if (rc == 0)
            rc = section_close(L);
        if (rc)
            return L->r.ioerr ? L->r.ioerr : rc;
    }
    qsort(L->graphs, n, sizeof(*L->graphs), graph_cmp);
    for (uint32_t i = 1; i < n; i++) {
        if (graph_cmp(&L->graphs[i - 1], &L->graphs[i]) == 0) {
            L->why = "two graphs under one key";
            return -EBADMSG;
        }
    }
    return 0;
}

static struct graph *graph_of(struct loader *L, const uint8_t *key)
{
    struct graph g;

    memcpy(g.key, key, STORE_KEY_LEN);
    return bsearch(&g, L->graphs, L->ngraphs, sizeof(*L->graphs), graph_cmp);
}

static int load_entry(struct loader *L, float *vec)
{
    uint64_t len, id;
    uint8_t *rec;
    const float *v = NULL;
    struct graph *g = NULL;
    size_t vbytes;
    int rc;

    if ((rc = section_open(L, SEC_ENTRY)) != 0)
        return rc;
    len = L->r.limit - L->r.off;
    if (len < ENTRY_FIXED || len > SNAP_MAX_ENTRY) {
        L->why = "entry section of impossible size";
        return -EBADMSG;
    }
    if (len > L->rcap) {
        uint8_t *p = realloc(L->rec, len);
        if (!p)
            return -ENOMEM;
        L->rec = p;
        L->rcap = len;
    }
    rec = L->rec;
    if ((rc = rd_read(&L->r, rec, len)) != 0 || (rc = section_close(L)) != 0)
        return rc;
    id = le_get64(rec);
    vbytes = rec[40] == VEC_INLINE ? 4 * (size_t)L->dim : rec[40] == VEC_GROUP ? STORE_KEY_LEN : 0;
    if (id == 0 || rec[40] > VEC_GROUP || len < ENTRY_FIXED + vbytes) {
        L->why = "invalid entry";
        return -EBADMSG;
    }
    if (L->foreign) {
        v = NULL;
    } else if (rec[40] == VEC_INLINE) {
        for (unsigned i = 0; i < L->dim; i++) {
            uint32_t bits = le_get32(rec + ENTRY_FIXED + 4 * i);
            memcpy(&vec[i], &bits, 4);
            if (!isfinite(vec[i])) {
                L->why = "entry with a non-finite vector";
                return -EBADMSG;
            }
        }
        v = vec;
    } else if (rec[40] == VEC_GRAPH || rec[40] == VEC_GROUP) {
        g = graph_of(L, rec[40] == VEC_GRAPH ? rec + 8 : rec + ENTRY_FIXED);
        v = g ? hnsw_vector(g->h, id) : NULL;
        if (!v) {
            L->why = "entry whose vector is not in its graph";
            return -EBADMSG;
        }
        memcpy(vec, v, sizeof(float) * L->dim); /* the graph may lose it below */
        v = vec;
    }
    if (L->check) {
        L->rep->loaded++;
        return 0;
    }
    rc = L->c->restore(L->c->ud, id, v, rec + ENTRY_FIXED + vbytes, len - ENTRY_FIXED - vbytes);
    if (rc == -EEXIST) {
        L->why = "an entry id twice";
        return -EBADMSG;
    }
    if (rc < 0)
        return rc;
    if (rc == 1) {
        L->rep->skipped++;
        if (g) /* expired: keep the graph equal to the partition's entries */
            hnsw_delete(g->h, id);
    } else {
        L->rep->loaded++;
    }
    return 0;
}

static int load_file(struct loader *L, struct store *s)
{
    uint8_t h[HDR_SIZE];
    float *vec;
    uint32_t ngraphs;
    int rc;

    L->r.limit = L->r.size;
    L->rep->bad_offset = 0;
    if (rd_read(&L->r, h, HDR_SIZE) != 0) {
        L->why = "the file is shorter than its header";
        return L->r.ioerr ? L->r.ioerr : -EBADMSG;
    }
    if (memcmp(h, magic, sizeof(magic)) != 0) {
        L->why = "not a parrot snapshot (wrong magic)";
        return -EBADMSG;
    }
    if (le_get32(h + 60) != crc32c(0, h, 60) || le_get32(h + 12) != HDR_SIZE) {
        L->why = "damaged header";
        return -EBADMSG;
    }
    if (le_get32(h + 8) != SNAP_VERSION) {
        L->why = "a format version this parrot does not read";
        return -EPROTONOSUPPORT;
    }
    L->salt = le_get64(h + 16);
    L->rep->created_ms = (int64_t)le_get64(h + 24);
    L->rep->wal_seq = le_get64(h + 32);
    ngraphs = le_get32(h + 44);
    L->rep->graphs = ngraphs;
    L->rep->entries = le_get64(h + 48);
    L->dim = le_get32(h + 40);
    if (L->dim == 0 || L->dim > HNSW_DIM_MAX) {
        L->why = "impossible vector dimension";
        return -EBADMSG;
    }
    /* A check has no embedder of its own: it reads every file as native. */
    L->foreign = !L->check && (L->dim != L->o->dim || le_get32(h + 56) != L->o->embedder);
    L->rep->foreign = L->foreign;
    /* Each section takes at least 20 bytes: counts beyond that are damage. */
    if ((uint64_t)ngraphs + L->rep->entries > (L->r.size - HDR_SIZE) / (SEC_HDR + 4)) {
        L->why = "section counts larger than the file";
        return -EBADMSG;
    }
    if (s)
        store_load_begin(s);
    if ((rc = load_graphs(L, ngraphs)) != 0)
        return rc;
    vec = malloc(sizeof(float) * L->dim);
    if (!vec)
        rc = -ENOMEM;
    for (uint64_t i = 0; i < L->rep->entries && rc == 0; i++)
        rc = load_entry(L, vec);
    free(vec);
    if (rc)
        return L->r.ioerr ? L->r.ioerr : rc;
    if (L->r.off != L->r.size) {
        L->rep->bad_offset = L->r.off;
        L->why = "bytes after the last section";
        return -EBADMSG;
    }
    if (!s)
        return 0; /* snap_load's clean-up frees the graphs */
    for (size_t i = 0; i < L->ngraphs; i++) {
        if (L->foreign)
            hnsw_free(L->graphs[i].h);
        else
            store_adopt_index(s, L->graphs[i].key, L->graphs[i].h); /* takes it */
        L->graphs[i].h = NULL;
    }
    size_t built = 0;
    rc = store_load_end(s, &built);
    L->rep->graphs_built = built;
    return rc;
}

/* snap_load, or with s NULL snap_check. */
static int load(const struct snap_opts *o, struct store *s, const struct snap_codec *c,
                struct snap_report *rep)
{
    struct snap_report tmp;
    struct loader L = {.o = o, .c = c, .check = !s};
    char path[1024], tpath[1024];
    int rc;

    if (!rep)
        rep = &tmp;
    memset(rep, 0, sizeof(*rep));
    L.rep = rep;
    L.r.v = o->vfs ? o->vfs : vfs_os();
    if ((rc = path_of(o->dir, SNAP_NAME, path, sizeof(path))) != 0 ||
        (rc = path_of(o->dir, SNAP_TMP_NAME, tpath, sizeof(tpath))) != 0)
        return rc;
    snprintf(rep->path, sizeof(rep->path), "%s", path);
    /* An unfinished write: never renamed, never used. A check leaves it: a
     * running parrot may be writing it right now. */
    if (s)
        L.r.v->unlink(L.r.v, tpath);
    rc = L.r.v->open(L.r.v, path, VFS_RDONLY, &L.r.f);
    if (rc == -ENOENT) {
        msg(rep, "snapshot %s: none", path);
        return 0;
    }
    if (rc) {
        msg(rep, "snapshot %s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    rep->found = true;
    rc = L.r.v->size(L.r.v, L.r.f, &L.r.size);
    L.r.buf = malloc(RD_CHUNK);
    if (rc == 0 && !L.r.buf)
        rc = -ENOMEM;
    rep->bytes = L.r.size;
    if (rc == 0)
        rc = load_file(&L, s);
    if ((rc == -EBADMSG || rc == -EPROTONOSUPPORT) && !L.why)
        L.why = "damaged section"; /* every refusal names its offset */
    L.r.v->close(L.r.v, L.r.f);
    free(L.r.buf);
    for (size_t i = 0; i < L.ngraphs; i++)
        hnsw_free(L.graphs[i].h);
    free(L.graphs);
    free(L.rec);
    if (rc == 0 && !s)
        msg(rep,
            "snapshot %s: valid: %" PRIu64 " entries, %" PRIu64
            " graphs; covers log records up to %" PRIu64,
            path, rep->loaded, rep->graphs, rep->wal_seq);
    else if (rc == 0)
        msg(rep,
            "snapshot %s: %" PRIu64 " entries loaded, %" PRIu64 " left out (expired), %" PRIu64
            " graphs loaded, %" PRIu64 " rebuilt; covers log records up to %" PRIu64 "%s",
            path, rep->loaded, rep->skipped, rep->foreign ? 0 : rep->graphs - rep->graphs_built,
            rep->graphs_built, rep->wal_seq,
            rep->foreign ? "; written by another embedder: its vectors were dropped and the "
                           "entries embedded again"
                         : "");
    else if (L.why)
        msg(rep,
            "snapshot %s: %s at offset %" PRIu64 "; %s. Move it aside (mv %s "
            "%s.bad) and start again to load the write-ahead log alone: entries stored before "
            "the snapshot are then lost and refill from the provider",
            path, L.why, rep->bad_offset, s ? "refusing to start" : "parrot refuses to start", path,
            path);
    else
        msg(rep, "snapshot %s: cannot load: %s", path, strerror(-rc));
    return rc;
}

int snap_load(const struct snap_opts *o, struct store *s, const struct snap_codec *c,
              struct snap_report *rep)
{
    return load(o, s, c, rep);
}

int snap_check(const char *dir, struct vfs *vfs, struct snap_report *rep)
{
    struct snap_opts o = {.dir = dir, .vfs = vfs};

    return load(&o, NULL, NULL, rep);
}
