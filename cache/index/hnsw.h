/* hnsw.h - approximate nearest-neighbour index (HNSW, Malkov & Yashunin 2016)
 * over L2-normalised float32 vectors, scored by dot product (= cosine).
 *
 * Threads: an index has no lock of its own. hnsw_search, hnsw_count and
 * hnsw_memory only read the index, so any number of threads may run them at
 * once (the caller holds a read lock); hnsw_insert and hnsw_delete change it
 * and need exclusive access (the caller holds the write lock). A search keeps
 * its visited set and heaps in scratch owned by the calling thread, sized to
 * the largest index that thread has searched and reused by every later call;
 * it is freed when the thread exits or calls hnsw_thread_release.
 *
 * Deletes: a deleted vector is only marked. It never appears in results but
 * keeps routing searches through the graph. The next insert reuses the most
 * recently deleted slot (slot reuse, with repair): the new vector's
 * neighbours are searched for while the slot still routes with its old
 * vector (it is left out of its own candidates), then the slot's old
 * neighbours re-choose their lists from what they had plus the slot's own
 * neighbours, then the new vector is linked in as if freshly inserted,
 * keeping the slot's level. So an index under churn stays at the size of its
 * peak live count instead of growing without bound. Dead slots that no insert
 * has reused yet are walked but not counted, so an index that is mostly dead
 * searches more slowly until inserts take the slots back.
 *
 * Precision: the graph is walked with int8 codes of the vectors (a quarter
 * of the memory traffic, which is what a search in a large index waits
 * for); hnsw_search scores the best 2k + 8 of what the walk found again with
 * the float vectors, so the similarities it returns are exact dot products
 * (hnsw.c says more).
 *
 * Reproducibility: levels come from a PRNG seeded with opts.seed, and the
 * walk's integer products are the same on every kernel, so the same seed and
 * the same sequence of inserts and deletes give the same graph whichever
 * SIMD kernel the CPU offers (the float scores of results may differ in the
 * last bit between kernels).
 */
#ifndef PARROT_HNSW_H
#define PARROT_HNSW_H

#include <stddef.h>
#include <stdint.h>

#define HNSW_DIM_MAX   4096u
#define HNSW_M_MAX     128u
#define HNSW_EF_MAX    65536u
#define HNSW_NODES_MAX (1u << 31) /* hard cap on slots; beyond it inserts fail with -E2BIG */

struct hnsw;

struct hnsw_opts {
    unsigned dim;             /* vector dimension, 1..4096 */
    unsigned m;               /* max neighbours per node on layers > 0 (layer 0 gets 2*m);
                                 2..128, default 16 */
    unsigned ef_construction; /* candidate list size while linking; 1..65536, default 200 */
    unsigned ef_search;       /* ef for hnsw_search when ef == 0; 1..65536, default 64 */
    uint64_t seed;            /* level generator seed: same seed + same inserts = same graph */
};

struct hnsw_hit {
    uint64_t id;
    float sim; /* dot product = cosine for unit vectors */
};

/* Fill o with the defaults for vectors of dimension dim. */
void hnsw_opts_default(struct hnsw_opts *o, unsigned dim);

/* Create an empty index; *out is set only on success. 0, -EINVAL or -ENOMEM. */
int hnsw_new(const struct hnsw_opts *o, struct hnsw **out);

/* Free the index and everything it owns; NULL is a no-op. */
void hnsw_free(struct hnsw *h);

/* Add vec (dim finite floats of unit length, copied) under id. 0, -EINVAL
 * (NULL or non-finite), -EEXIST if id is live, -ENOMEM, or -E2BIG past
 * HNSW_NODES_MAX; on error nothing was added. Writer only. */
int hnsw_insert(struct hnsw *h, uint64_t id, const float *vec);

/* A two-phase insert, so that the costly part runs beside searches instead
 * of holding them off. hnsw_plan does the searches an insert of vec would do
 * next (most of its cost) while only reading the index: a reader, under the
 * read lock. hnsw_insert_planned then links vec in under the write lock
 * with the plan's candidates if the index has not changed since the plan
 * (no insert or delete in between), else with searches of its own, exactly
 * as hnsw_insert (which is a plan and its use); the graph is the same
 * either way. vec must be the vector planned for. hnsw_plan returns NULL
 * when there is nothing to plan (an empty index), for a NULL or non-finite
 * vec, or without memory; NULL is a valid plan for hnsw_insert_planned. The
 * caller frees the plan. */
struct hnsw_plan;
struct hnsw_plan *hnsw_plan(const struct hnsw *h, const float *vec);
int hnsw_insert_planned(struct hnsw *h, uint64_t id, const float *vec,
                        const struct hnsw_plan *plan);
void hnsw_plan_free(struct hnsw_plan *p); /* NULL is a no-op */

/* Remove id from results from now on. 0, or -ENOENT if id is not live.
 * Writer only. */
int hnsw_delete(struct hnsw *h, uint64_t id);

/* Write up to k live hits nearest to q into out (room for k), best first, and
 * return how many. ef 0 means opts.ef_search; ef is raised to k if smaller.
 * Returns 0 for a non-finite q or when this thread's scratch cannot be
 * allocated. Any number of readers. */
size_t hnsw_search(const struct hnsw *h, const float *q, size_t k, unsigned ef,
                   struct hnsw_hit *out);

/* Check the graph's invariants (those listed at the top of hnsw.c) in
 * O(n * m); for tests and for vetting a loaded snapshot. 0, -EUCLEAN if any
 * is broken, or -ENOMEM. Any number of readers. */
int hnsw_check(const struct hnsw *h);

/* Serialisation. hnsw_save passes the whole graph (levels, neighbour lists,
 * vectors, ids, free slots, the level generator's state) to w in pieces, in
 * the format described at the end of hnsw.c; w returns 0 or a negative errno,
 * which stops the save and is returned. A reader of a saved graph gets the
 * same search results and, given the same later inserts, the same graph.
 * Any number of readers (the caller holds a read lock). */
typedef int (*hnsw_write_fn)(void *ud, const void *p, size_t n);
int hnsw_save(const struct hnsw *h, hnsw_write_fn w, void *ud);

/* Rebuild a saved graph without relinking anything: r must fill all n bytes
 * or return a negative errno (-EBADMSG for an input that ends early). avail
 * is how many bytes the input holds at most, so that a header claiming more
 * slots than that is refused before they are allocated. Every field is
 * checked (ranges, then hnsw_check's invariants, finite vectors, unique ids),
 * so a corrupt input gives -EBADMSG and can never make a later search read
 * outside the arrays. 0 and *out, -EBADMSG, -ENOMEM or r's error. */
typedef int (*hnsw_read_fn)(void *ud, void *p, size_t n);
int hnsw_load(hnsw_read_fn r, void *ud, uint64_t avail, struct hnsw **out);

/* The stored vector of live id (dim floats), or NULL. Any number of readers. */
const float *hnsw_vector(const struct hnsw *h, uint64_t id);

/* The vector dimension the index was made for. */
unsigned hnsw_dim(const struct hnsw *h);

/* Number of live (inserted and not deleted) vectors. */
size_t hnsw_count(const struct hnsw *h);

/* Bytes the index has allocated, codes included (not counting per-thread
 * search scratch). */
size_t hnsw_memory(const struct hnsw *h);

/* Dot product of two dim-float vectors with the fastest kernel this CPU has
 * (AVX-512F, else AVX2+FMA, else portable; chosen once); the distance used
 * everywhere in the index. The kernels agree to within 1e-5 on unit vectors. */
float hnsw_dot(const float *a, const float *b, unsigned dim);

/* The portable kernel behind hnsw_dot; always available. */
float hnsw_dot_scalar(const float *a, const float *b, unsigned dim);

/* True when the CPU has AVX2 and FMA, i.e. hnsw_dot_avx2 may be called. */
int hnsw_cpu_avx2(void);

/* The AVX2+FMA kernel; call only when hnsw_cpu_avx2() is true (on other
 * architectures it is the portable kernel). */
float hnsw_dot_avx2(const float *a, const float *b, unsigned dim);

/* True when the CPU has AVX-512F, i.e. hnsw_dot_avx512 may be called. */
int hnsw_cpu_avx512(void);

/* The AVX-512F kernel, preferred by hnsw_dot when present; call only when
 * hnsw_cpu_avx512() is true (on other architectures it is the portable one). */
float hnsw_dot_avx512(const float *a, const float *b, unsigned dim);

/* Dot product of two int8 code rows of n bytes, n a multiple of 64: the
 * distance the graph is walked with (hnsw.c has the layout). The kernels
 * return the same integer; hnsw picks the fastest this CPU has. */
int32_t hnsw_idot_scalar(const int8_t *a, const int8_t *b, unsigned n);

/* True when the CPU has AVX-512F and AVX-512BW (always false off x86). */
int hnsw_cpu_avx512bw(void);

/* True when it also has AVX-512 VNNI (always false off x86). */
int hnsw_cpu_avx512vnni(void);

#if defined(__x86_64__) || defined(__i386__)
/* The AVX2 kernel; call only when hnsw_cpu_avx2() is true. */
int32_t hnsw_idot_avx2(const int8_t *a, const int8_t *b, unsigned n);

/* The AVX-512BW kernel; call only when hnsw_cpu_avx512bw() is true. */
int32_t hnsw_idot_avx512(const int8_t *a, const int8_t *b, unsigned n);

/* The AVX-512 VNNI kernel, preferred when present; call only when
 * hnsw_cpu_avx512vnni() is true. */
int32_t hnsw_idot_vnni(const int8_t *a, const int8_t *b, unsigned n);
#endif

/* Free the calling thread's search scratch now rather than at thread exit. */
void hnsw_thread_release(void);

#endif
