/* hnsw.c - HNSW graph index for cosine similarity on unit float32 vectors.
 *
 * Memory layout
 * -------------
 * Every vector lives in a numbered slot (uint32, 0 <= slot < n <= cap <= 2^31);
 * all per-slot data are flat arrays indexed by slot, so a snapshot can write
 * each array as it stands (fixed-width little-endian) and a loader can map it
 * back without rebuilding the graph:
 *
 *   vecs    float32[cap][vstride]  64-byte aligned; vstride = dim rounded up to
 *                                  a multiple of 16 floats, so every row starts
 *                                  on a cache line. Floats past dim are 0.
 *   codes   int8[cap][cstride]     the vectors as the graph is walked: each row
 *                                  scaled by 127 / its largest |component| and
 *                                  rounded, cstride = dim rounded up to 64
 *                                  (the padding 0), 64-byte aligned; cscale
 *                                  float32[cap] holds the factor back. Derived
 *                                  from vecs, so never saved (see below).
 *   links0  uint32[cap][1 + 2m]    layer-0 adjacency with a fixed stride:
 *                                  word 0 = neighbour count c (<= 2m), words
 *                                  1..c = neighbour slots, the rest undefined
 *                                  (a snapshot should write them as 0).
 *   upper   uint32 *[cap]          NULL for a slot whose level is 0; otherwise
 *                                  its own uint32[level][1 + m]: row l-1 holds
 *                                  layer l (1 <= l <= level) as count + slots,
 *                                  like links0. A snapshot writes these blocks
 *                                  one after another in slot order; the sizes
 *                                  follow from level[], so no pointers are
 *                                  stored.
 *   ids     uint64[cap]            the caller's id of each slot (stale for a
 *                                  dead slot).
 *   level   uint8[cap]             top layer of each slot (0..LEVEL_MAX).
 *   dead    uint8[cap]             1 when the slot's vector is deleted.
 *   freel   uint32[cap]            stack of deleted slots (nfree entries);
 *                                  freel[nfree - 1] is the next slot reused.
 *   scalars dim, m, ef_construction, ef_search, rng (splitmix64 state),
 *           n, live, nfree, entry slot and top level (-1 when n == 0).
 *
 * Only rows below n are meaningful; cap starts at 64, doubles to 256, then
 * grows by half again when full, and hnsw_memory counts the allocated cap.
 * Levels are drawn as floor(-ln U / ln m) from splitmix64(rng) for fresh
 * slots only; a reused slot keeps its level.
 *
 * The id -> slot map is derived data (rebuilt from ids and dead on load):
 * open addressing with linear probing over struct mslot { uint64 key; uint32
 * slot; uint32 pad }, slot == NONE marking an empty cell, load factor <= 1/2,
 * and backward-shift deletion, so lookups never wade through tombstones.
 *
 * Invariants (hnsw_check verifies them, as a snapshot loader must): every
 * count is within its cap (2m on layer 0, m above); every neighbour is a slot
 * < n whose level reaches that layer; no list holds its own slot or a slot
 * twice; the entry's level is top, the highest level of any slot; live slots
 * are exactly those with dead == 0, each in the map under its id, and the
 * nfree slots on the free stack are exactly the dead ones.
 *
 * Scores are similarities (dot products): larger is closer. Links may point at
 * deleted slots; such slots keep routing until an insert reuses them.
 *
 * Two precisions. Walking the graph (searches, and choosing neighbours) is
 * where an index spends its time, nearly all of it waiting for rows that are
 * not in cache: a 484-d float row is 31 cache lines, and a partition of 40k
 * of them is 80 MB. So the walk compares int8 codes (a quarter of the bytes,
 * and integer products that no kernel rounds differently), and hnsw_search
 * scores the best 2k + 8 of the ef slots it found again with the float
 * vectors before it picks the best k: what a caller sees is exact. A code's
 * error moves a similarity by about 1e-3, which reorders near ties during
 * the walk and nothing else.
 */
#include "cache/index/hnsw.h"

#include "cache/base/le.h"
#include "cache/base/prefetch.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HNSW_X86 1
#endif

#define LEVEL_MAX  16 /* P(level > 16) at m = 2 is 2^-17; deeper layers only cost memory */
#define NONE       UINT32_MAX
#define ROW_ALIGN  64u
#define RESCORE(k) (2 * (k) + 8) /* of a search's ef, rescored in floats */

typedef float (*dot_fn)(const float *a, const float *b, unsigned dim);
typedef int32_t (*idot_fn)(const int8_t *a, const int8_t *b, unsigned n);

/* A vector as the walk sees it: its code and the factor back to floats. */
struct qv {
    const int8_t *c;
    float s;
};

struct cand {
    float sim;
    uint32_t node;
};

struct mslot {
    uint64_t key;
    uint32_t slot;
    uint32_t pad;
};

struct hnsw {
    unsigned dim, vstride; /* floats per vector, floats per row */
    unsigned cstride;      /* bytes per code row */
    unsigned m, m0;        /* link caps on upper layers and on layer 0 */
    unsigned efc, efs;
    double ml; /* level multiplier 1/ln(m) */
    uint64_t rng;
    dot_fn dot;
    idot_fn idot;

    uint32_t n, cap, live, nfree;
    uint32_t entry;
    int top;

    void *vbase; /* block holding vecs; vecs is its first 64-byte boundary */
    float *vecs;
    void *cbase; /* the same for codes */
    int8_t *codes;
    float *cscale;
    uint32_t *links0;
    uint32_t **upper;
    uint64_t *ids;
    uint8_t *level;
    uint8_t *dead;
    uint32_t *freel;
    size_t abytes[9]; /* bytes allocated for each array above, vecs first */
    size_t upper_bytes;

    struct mslot *map;
    size_t mcap; /* power of two, or 0 before the first insert */

    /* Changes with every insert and delete, and differs between indexes (one
     * counter for the process), so a plan made on one state of one index is
     * recognised as current only on exactly that state. */
    uint64_t gen;

    /* Writer scratch (inserts are exclusive, so one set per index suffices). */
    struct cand *sorted; /* a list being re-chosen (reselect): SORTED_CAP */
    uint32_t *sel;       /* neighbours chosen by the heuristic: m0 */
};

/* ---- distance kernels --------------------------------------------------- */

/* Eight independent sums break the add dependency chain, and a size_t index
 * lets the compiler prove the lanes contiguous: gcc -O2 and clang turn the
 * inner loop into vector multiplies and adds without any intrinsics. */
float hnsw_dot_scalar(const float *a, const float *b, unsigned dim)
{
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0, n = dim;

    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; i < n; i++)
        t += a[i] * b[i];
    return t;
}

/* Code rows are a whole number of 64-byte lines (n % 64 == 0, the padding
 * 0). Integer sums are exact, so every kernel returns the same number and a
 * graph does not depend on the CPU that built it. A product is at most
 * 127 * 127, so n up to HNSW_DIM_MAX cannot overflow. */
int32_t hnsw_idot_scalar(const int8_t *a, const int8_t *b, unsigned n)
{
    int32_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};

    for (size_t i = 0; i < n; i += 8)
        for (size_t j = 0; j < 8; j++)
            s[j] += (int32_t)a[i + j] * b[i + j];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

#ifdef HNSW_X86
/* Four accumulators cover the FMA latency (4 cycles, 2 ports) on current
 * cores; loads are unaligned because queries come from the caller. */
__attribute__((target("avx2,fma"))) float hnsw_dot_avx2(const float *a, const float *b,
                                                        unsigned dim)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    unsigned i = 0;

    for (; i + 32 <= dim; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= dim; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    float t = _mm_cvtss_f32(x);
    for (; i < dim; i++)
        t += a[i] * b[i];
    return t;
}

/* Cores with full-width 512-bit FMA units (Zen 4/5, recent Xeons) do twice
 * the work per instruction; building the 100k x 384-d test index ran about a
 * fifth faster with this kernel than with the AVX2 one. */
__attribute__((target("avx512f"))) float hnsw_dot_avx512(const float *a, const float *b,
                                                         unsigned dim)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    unsigned i = 0;

    for (; i + 64 <= dim; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= dim; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    float t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < dim; i++)
        t += a[i] * b[i];
    return t;
}

int hnsw_cpu_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int hnsw_cpu_avx512(void)
{
    return __builtin_cpu_supports("avx512f");
}

/* Sixteen bytes widened to sixteen int16, multiplied and summed in pairs
 * (vpmaddwd): eight int32 lanes per instruction. */
__attribute__((target("avx2"))) int32_t hnsw_idot_avx2(const int8_t *a, const int8_t *b, unsigned n)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();

    for (unsigned i = 0; i < n; i += 32) {
        __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(a + i)));
        __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(b + i)));
        __m256i a1 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(a + i + 16)));
        __m256i b1 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(b + i + 16)));
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(a0, b0));
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(a1, b1));
    }
    s0 = _mm256_add_epi32(s0, s1);
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(s0), _mm256_extracti128_si256(s0, 1));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4e));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xb1));
    return _mm_cvtsi128_si32(x);
}

/* The same, thirty-two bytes at a time. */
__attribute__((target("avx512f,avx512bw"))) int32_t hnsw_idot_avx512(const int8_t *a,
                                                                     const int8_t *b, unsigned n)
{
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();

    for (unsigned i = 0; i < n; i += 64) {
        __m512i a0 =
            _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(a + i)));
        __m512i b0 =
            _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(b + i)));
        __m512i a1 =
            _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(a + i + 32)));
        __m512i b1 =
            _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(b + i + 32)));
        s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(a0, b0));
        s1 = _mm512_add_epi32(s1, _mm512_madd_epi16(a1, b1));
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
}

int hnsw_cpu_avx512bw(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

/* With VNNI, vpdpbusd multiplies unsigned by signed bytes and sums each
 * four into an int32 lane: a sixty-four-byte block in one instruction. The
 * codes are signed, so a's are lifted to unsigned (a ^ 0x80 is a + 128) and
 * the 128 * sum(b) this adds is taken off again; a second vpdpbusd against
 * ones keeps that sum. Both stay far inside int32 (255 * 127 * n for n up to
 * HNSW_DIM_MAX rounded up), so the result is the same integer. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int32_t
hnsw_idot_vnni(const int8_t *a, const int8_t *b, unsigned n)
{
    const __m512i lift = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
    __m512i t0 = _mm512_setzero_si512(), t1 = _mm512_setzero_si512();
    unsigned i = 0;

    for (; i + 128 <= n; i += 128) {
        __m512i b0 = _mm512_loadu_si512((const void *)(b + i));
        __m512i b1 = _mm512_loadu_si512((const void *)(b + i + 64));
        __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(a + i)), lift);
        __m512i a1 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(a + i + 64)), lift);
        s0 = _mm512_dpbusd_epi32(s0, a0, b0);
        s1 = _mm512_dpbusd_epi32(s1, a1, b1);
        t0 = _mm512_dpbusd_epi32(t0, ones, b0);
        t1 = _mm512_dpbusd_epi32(t1, ones, b1);
    }
    if (i < n) {
        __m512i b0 = _mm512_loadu_si512((const void *)(b + i));
        __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(a + i)), lift);
        s0 = _mm512_dpbusd_epi32(s0, a0, b0);
        t0 = _mm512_dpbusd_epi32(t0, ones, b0);
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1)) -
           128 * _mm512_reduce_add_epi32(_mm512_add_epi32(t0, t1));
}

int hnsw_cpu_avx512vnni(void)
{
    return hnsw_cpu_avx512bw() && __builtin_cpu_supports("avx512vnni");
}
#else
float hnsw_dot_avx2(const float *a, const float *b, unsigned dim)
{
    return hnsw_dot_scalar(a, b, dim);
}

float hnsw_dot_avx512(const float *a, const float *b, unsigned dim)
{
    return hnsw_dot_scalar(a, b, dim);
}

int hnsw_cpu_avx2(void)
{
    return 0;
}

int hnsw_cpu_avx512(void)
{
    return 0;
}

int hnsw_cpu_avx512bw(void)
{
    return 0;
}

int hnsw_cpu_avx512vnni(void)
{
    return 0;
}
#endif

static idot_fn pick_ikernel(void)
{
#ifdef HNSW_X86
    if (hnsw_cpu_avx512vnni())
        return hnsw_idot_vnni;
    if (hnsw_cpu_avx512bw())
        return hnsw_idot_avx512;
    if (hnsw_cpu_avx2())
        return hnsw_idot_avx2;
#endif
    return hnsw_idot_scalar;
}

/* Chosen on first use; racing first callers store the same pointer. */
static _Atomic(dot_fn) kernel;
static atomic_uint_fast64_t gens;

static void bump(struct hnsw *h)
{
    h->gen = atomic_fetch_add_explicit(&gens, 1, memory_order_relaxed) + 1;
}

static dot_fn pick_kernel(void)
{
    dot_fn f = atomic_load_explicit(&kernel, memory_order_relaxed);

    if (!f) {
        if (hnsw_cpu_avx512())
            f = hnsw_dot_avx512;
        else if (hnsw_cpu_avx2())
            f = hnsw_dot_avx2;
        else
            f = hnsw_dot_scalar;
        atomic_store_explicit(&kernel, f, memory_order_relaxed);
    }
    return f;
}

float hnsw_dot(const float *a, const float *b, unsigned dim)
{
    return pick_kernel()(a, b, dim);
}

/* ---- per-thread search scratch ------------------------------------------ */

/* A visited set that is cleared by bumping an epoch instead of a memset, and
 * the two heaps of a layer search. Owned by one thread, so concurrent readers
 * of the same index never write to shared memory. */
struct scratch {
    uint32_t *tags; /* tags[slot] == epoch: visited in the current layer search */
    size_t ntags;
    uint32_t epoch;
    struct cand *c; /* max-heap: frontier still to expand */
    size_t ccap;
    struct cand *w; /* min-heap: best ef found so far */
    size_t wcap;
    bool registered;
};

static _Thread_local struct scratch tls;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static bool key_ok;

static void scratch_clear(struct scratch *s)
{
    free(s->tags);
    free(s->c);
    free(s->w);
    memset(s, 0, sizeof(*s));
}

static void scratch_dtor(void *p)
{
    scratch_clear(p);
}

static void key_init(void)
{
    key_ok = pthread_key_create(&key, scratch_dtor) == 0;
}

void hnsw_thread_release(void)
{
    if (tls.registered && key_ok)
        pthread_setspecific(key, NULL);
    scratch_clear(&tls);
}

/* Make room for an index of nodes slots and a result heap of ef; 0 or -ENOMEM.
 * Only grows, so a thread that has seen the index at this size allocates
 * nothing on later calls. */
static int scratch_reserve(struct scratch *s, size_t nodes, size_t ef)
{
    if (s->ntags < nodes) {
        size_t n = s->ntags + s->ntags / 2;
        if (n < nodes)
            n = nodes;
        uint32_t *t = realloc(s->tags, n * sizeof(*t));
        if (!t)
            return -ENOMEM;
        memset(t + s->ntags, 0, (n - s->ntags) * sizeof(*t));
        s->tags = t;
        s->ntags = n;
    }
    if (s->wcap < ef + 1) {
        struct cand *w = realloc(s->w, (ef + 1) * sizeof(*w));
        if (!w)
            return -ENOMEM;
        s->w = w;
        s->wcap = ef + 1;
    }
    if (s->ccap < 256) {
        struct cand *c = realloc(s->c, 256 * sizeof(*c));
        if (!c)
            return -ENOMEM;
        s->c = c;
        s->ccap = 256;
    }
    if (!s->registered) {
        pthread_once(&key_once, key_init);
        if (key_ok && pthread_setspecific(key, s) == 0)
            s->registered = true;
    }
    return 0;
}

/* Start a new visited set. On wrap-around the tags are really cleared, so an
 * old tag can never alias a new epoch. */
static uint32_t next_epoch(struct scratch *s)
{
    if (++s->epoch == 0) {
        memset(s->tags, 0, s->ntags * sizeof(*s->tags));
        s->epoch = 1;
    }
    return s->epoch;
}

/* ---- heaps ------------------------------------------------------------- */

static void maxheap_push(struct cand *a, size_t *n, struct cand x)
{
    size_t i = (*n)++;

    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (a[p].sim >= x.sim)
            break;
        a[i] = a[p];
        i = p;
    }
    a[i] = x;
}

static struct cand maxheap_pop(struct cand *a, size_t *n)
{
    struct cand top = a[0], x = a[--*n];
    size_t i = 0, len = *n;

    for (;;) {
        size_t l = 2 * i + 1, b;
        if (l >= len)
            break;
        b = (l + 1 < len && a[l + 1].sim > a[l].sim) ? l + 1 : l;
        if (a[b].sim <= x.sim)
            break;
        a[i] = a[b];
        i = b;
    }
    if (len > 0)
        a[i] = x;
    return top;
}

static void minheap_push(struct cand *a, size_t *n, struct cand x)
{
    size_t i = (*n)++;

    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (a[p].sim <= x.sim)
            break;
        a[i] = a[p];
        i = p;
    }
    a[i] = x;
}

/* Put x where the root was and sift it down: a pop and a push in one pass. */
static void minheap_sift(struct cand *a, size_t len, struct cand x)
{
    size_t i = 0;

    for (;;) {
        size_t l = 2 * i + 1, b;
        if (l >= len)
            break;
        b = (l + 1 < len && a[l + 1].sim < a[l].sim) ? l + 1 : l;
        if (a[b].sim >= x.sim)
            break;
        a[i] = a[b];
        i = b;
    }
    a[i] = x;
}

static struct cand minheap_pop(struct cand *a, size_t *n)
{
    struct cand top = a[0];

    if (--*n > 0)
        minheap_sift(a, *n, a[*n]);
    return top;
}

/* Empty the min-heap into out, best first. */
static void minheap_drain(struct cand *a, size_t n, struct cand *out)
{
    while (n > 0) {
        size_t at = n - 1;
        out[at] = minheap_pop(a, &n);
    }
}

/* Sort a short list best first; lists here hold at most 2*m0 + 1 entries. */
static void sort_desc(struct cand *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct cand x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1].sim < x.sim) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* ---- slot accessors ---------------------------------------------------- */

static inline const float *vec(const struct hnsw *h, uint32_t s)
{
    return h->vecs + (size_t)s * h->vstride;
}

static inline const int8_t *code(const struct hnsw *h, uint32_t s)
{
    return h->codes + (size_t)s * h->cstride;
}

/* The similarity the walk uses: q's code against slot s's. */
static inline float qsim(const struct hnsw *h, const struct qv *q, uint32_t s)
{
    return (float)h->idot(q->c, code(h, s), h->cstride) * (q->s * h->cscale[s]);
}

static inline struct qv slot_qv(const struct hnsw *h, uint32_t s)
{
    struct qv q = {code(h, s), h->cscale[s]};
    return q;
}

/* v's code into out[0..stride), padding 0; returns the factor back to
 * floats. Each component is scaled by 127 / the largest |component| and
 * rounded to nearest, so the largest lands on +-127 and none past it. */
static float quantize(const float *v, unsigned dim, unsigned stride, int8_t *out)
{
    float mx = 0, f;

    for (unsigned i = 0; i < dim; i++)
        if (fabsf(v[i]) > mx)
            mx = fabsf(v[i]);
    memset(out + dim, 0, stride - dim);
    if (mx == 0) {
        memset(out, 0, dim);
        return 0;
    }
    f = 127.0f / mx;
    for (unsigned i = 0; i < dim; i++)
        out[i] = (int8_t)lrintf(v[i] * f);
    return mx / 127.0f;
}

/* Slot s's code from its float row. */
static void encode_slot(struct hnsw *h, uint32_t s)
{
    h->cscale[s] = quantize(vec(h, s), h->dim, h->cstride, h->codes + (size_t)s * h->cstride);
}

static inline uint32_t *links(const struct hnsw *h, uint32_t s, unsigned layer)
{
    if (layer == 0)
        return h->links0 + (size_t)s * (h->m0 + 1);
    return h->upper[s] + (size_t)(layer - 1) * (h->m + 1);
}

static inline unsigned cap_of(const struct hnsw *h, unsigned layer)
{
    return layer == 0 ? h->m0 : h->m;
}

/* Start the first (up to four) lines of a row on their way before its dot
 * product; the hardware stream prefetcher carries on with the rest.
 * Prefetching all 24 lines of a 384-d float row measured slower: rows near
 * the query are often cached already, and the extra instructions cost more
 * than they hid. */
static inline void prefetch_lines(const void *row, size_t bytes)
{
    const char *p = row;
    size_t lines = bytes / 64 < 4 ? bytes / 64 : 4;

    for (size_t i = 0; i < lines; i++)
        prefetch_read(p + 64 * i);
}

/* A code row, before the walk compares it. */
static inline void prefetch_row(const struct hnsw *h, uint32_t s)
{
    prefetch_lines(code(h, s), h->cstride);
}

/* ---- id map ------------------------------------------------------------ */

static inline size_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x;
}

static uint32_t map_find(const struct hnsw *h, uint64_t id)
{
    if (h->mcap == 0)
        return NONE;
    size_t mask = h->mcap - 1;
    for (size_t i = mix64(id) & mask;; i = (i + 1) & mask) {
        if (h->map[i].slot == NONE)
            return NONE;
        if (h->map[i].key == id)
            return h->map[i].slot;
    }
}

/* Caller guarantees id is absent and the table has a free cell. */
static void map_put(struct mslot *map, size_t mcap, uint64_t id, uint32_t slot)
{
    size_t mask = mcap - 1, i = mix64(id) & mask;

    while (map[i].slot != NONE)
        i = (i + 1) & mask;
    map[i].key = id;
    map[i].slot = slot;
}

/* Remove id, shifting later members of its probe run back into the hole so
 * that every key stays reachable from its home cell. */
static void map_del(struct hnsw *h, uint64_t id)
{
    size_t mask = h->mcap - 1, i = mix64(id) & mask;

    while (h->map[i].key != id || h->map[i].slot == NONE)
        i = (i + 1) & mask;
    for (size_t j = (i + 1) & mask; h->map[j].slot != NONE; j = (j + 1) & mask) {
        size_t home = mix64(h->map[j].key) & mask;
        /* j may move to i only if its home is not in (i, j] cyclically. */
        if (((j - home) & mask) < ((j - i) & mask))
            continue;
        h->map[i] = h->map[j];
        i = j;
    }
    h->map[i].slot = NONE;
}

/* Keep the load factor at or under 1/2 for want live ids; 0 or -ENOMEM. */
static int map_reserve(struct hnsw *h, size_t want)
{
    size_t ncap = h->mcap ? h->mcap : 64;

    while (ncap / 2 < want)
        ncap *= 2; /* want <= 2^31, so this stops at 2^32 at most */
    if (ncap == h->mcap)
        return 0;
    struct mslot *nm = malloc(ncap * sizeof(*nm));
    if (!nm)
        return -ENOMEM;
    for (size_t i = 0; i < ncap; i++)
        nm[i].slot = NONE;
    for (size_t i = 0; i < h->mcap; i++)
        if (h->map[i].slot != NONE)
            map_put(nm, ncap, h->map[i].key, h->map[i].slot);
    free(h->map);
    h->map = nm;
    h->mcap = ncap;
    return 0;
}

/* ---- options, creation ------------------------------------------------- */

void hnsw_opts_default(struct hnsw_opts *o, unsigned dim)
{
    o->dim = dim;
    o->m = 16;
    o->ef_construction = 200;
    o->ef_search = 64;
    o->seed = 0x70617272u; /* "parr" */
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Level with P(level >= l) = m^-l: floor(-ln(U) * mL), U uniform in (0, 1]. */
static unsigned draw_level(const struct hnsw *h, uint64_t *state)
{
    double u = (double)((splitmix64(state) >> 11) + 1) * 0x1p-53;
    double l = -log(u) * h->ml;

    return l >= LEVEL_MAX ? LEVEL_MAX : (unsigned)l;
}

/* reselect's candidates: a list (at most m0) plus the others offered, one
 * back-link or a reused slot's list, which never brings the sum past
 * 2 * m0 - 1. An insert's own candidates live in its plan. */
#define SORTED_CAP(h) (2 * (size_t)(h)->m0 + 1)

int hnsw_new(const struct hnsw_opts *o, struct hnsw **out)
{
    struct hnsw *h;

    if (!o || !out || o->dim < 1 || o->dim > HNSW_DIM_MAX || o->m < 2 || o->m > HNSW_M_MAX ||
        o->ef_construction < 1 || o->ef_construction > HNSW_EF_MAX || o->ef_search < 1 ||
        o->ef_search > HNSW_EF_MAX)
        return -EINVAL;
    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->dim = o->dim;
    h->vstride = (o->dim + 15u) & ~15u;
    h->cstride = (o->dim + 63u) & ~63u;
    h->m = o->m;
    h->m0 = 2 * o->m;
    h->efc = o->ef_construction;
    h->efs = o->ef_search;
    h->ml = 1.0 / log((double)o->m);
    h->rng = o->seed;
    h->dot = pick_kernel();
    h->idot = pick_ikernel();
    h->top = -1;
    h->entry = NONE;
    bump(h);
    h->sorted = malloc(SORTED_CAP(h) * sizeof(*h->sorted));
    h->sel = malloc(h->m0 * sizeof(*h->sel));
    if (!h->sorted || !h->sel)
        goto fail;
    *out = h;
    return 0;
fail:
    hnsw_free(h);
    return -ENOMEM;
}

void hnsw_free(struct hnsw *h)
{
    if (!h)
        return;
    if (h->upper)
        for (uint32_t i = 0; i < h->n; i++)
            free(h->upper[i]);
    free(h->vbase);
    free(h->cbase);
    free(h->cscale);
    free(h->links0);
    free(h->upper);
    free(h->ids);
    free(h->level);
    free(h->dead);
    free(h->freel);
    free(h->map);
    free(h->sorted);
    free(h->sel);
    free(h);
}

/* Bytes per slot across the flat arrays. */
static size_t slot_bytes(const struct hnsw *h)
{
    return (size_t)h->vstride * sizeof(float) + h->cstride + sizeof(float) +
           (size_t)(h->m0 + 1) * sizeof(uint32_t) + sizeof(uint32_t *) + sizeof(uint64_t) +
           2 * sizeof(uint8_t) + sizeof(uint32_t);
}

/* Grow a block to at least want bytes with realloc, which for large blocks
 * is mremap on glibc: no copy, no second round of page faults and no moment
 * with two copies resident, all while the writer holds the index lock.
 * Returns the block, or NULL with the old block and *bytes untouched. */
static void *grow_array(void *p, size_t *bytes, size_t want)
{
    void *n;

    if (want <= *bytes)
        return p;
    n = realloc(p, want);
    if (n)
        *bytes = want;
    return n;
}

/* The same for vecs and codes, whose rows must start on 64-byte
 * boundaries: *base, a block with 64 bytes of slack, holds the rows from
 * *rows on; if realloc moved it to a different alignment, the used bytes
 * slide to the new boundary. */
static int grow_rows(void **base, void **rows, size_t *bytes, size_t used, size_t want)
{
    size_t old_off = *base ? (size_t)((char *)*rows - (char *)*base) : 0;
    char *b = grow_array(*base, bytes, want + ROW_ALIGN);
    size_t off;

    if (!b)
        return -ENOMEM;
    *base = b;
    off = (ROW_ALIGN - (uintptr_t)b % ROW_ALIGN) % ROW_ALIGN;
    if (off != old_off && used > 0)
        memmove(b + off, b + old_off, used);
    *rows = b + off;
    return 0;
}

/* Grow the slot arrays to hold need slots: 64 at first, doubled up to 256
 * (a small cache's budget counts every slot allocated), then by half again
 * each time. An array grown before another failed stays grown (and
 * counted); cap moves only when all have room. 0, -ENOMEM or -E2BIG. */
static int grow_slots(struct hnsw *h, size_t need)
{
    size_t ncap = !h->cap ? 64 : h->cap < 256 ? (size_t)h->cap * 2 : (size_t)h->cap + h->cap / 2;
    uint32_t *l0, **up, *fl;
    uint64_t *ids;
    uint8_t *lv, *dd;
    float *cs;

    if (need <= h->cap)
        return 0;
    if (need > HNSW_NODES_MAX)
        return -E2BIG;
    if (ncap < need)
        ncap = need;
    if (ncap > HNSW_NODES_MAX)
        ncap = HNSW_NODES_MAX;
    if (ncap > (SIZE_MAX - ROW_ALIGN) / slot_bytes(h))
        return -ENOMEM;
    void *rows = h->vecs;
    if (grow_rows(&h->vbase, &rows, &h->abytes[0], (size_t)h->n * h->vstride * sizeof(float),
                  ncap * h->vstride * sizeof(float)) < 0)
        return -ENOMEM;
    h->vecs = rows;
    rows = h->codes;
    if (grow_rows(&h->cbase, &rows, &h->abytes[7], (size_t)h->n * h->cstride, ncap * h->cstride) <
        0)
        return -ENOMEM;
    h->codes = rows;
    if (!(cs = grow_array(h->cscale, &h->abytes[8], ncap * sizeof(*cs))))
        return -ENOMEM;
    h->cscale = cs;
    if (!(l0 = grow_array(h->links0, &h->abytes[1], ncap * (h->m0 + 1) * sizeof(*l0))))
        return -ENOMEM;
    h->links0 = l0;
    if (!(up = grow_array(h->upper, &h->abytes[2], ncap * sizeof(*up))))
        return -ENOMEM;
    h->upper = up;
    if (!(ids = grow_array(h->ids, &h->abytes[3], ncap * sizeof(*ids))))
        return -ENOMEM;
    h->ids = ids;
    if (!(lv = grow_array(h->level, &h->abytes[4], ncap)))
        return -ENOMEM;
    h->level = lv;
    if (!(dd = grow_array(h->dead, &h->abytes[5], ncap)))
        return -ENOMEM;
    h->dead = dd;
    if (!(fl = grow_array(h->freel, &h->abytes[6], ncap * sizeof(*fl))))
        return -ENOMEM;
    h->freel = fl;
    h->cap = (uint32_t)ncap;
    return 0;
}

/* ---- search ------------------------------------------------------------ */

/* A NaN in a vector would make every comparison false and scramble the heaps. */
static bool all_finite(const float *v, unsigned dim)
{
    for (unsigned i = 0; i < dim; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

/* Greedy walk on one layer: move to any better neighbour until none is. */
static struct cand greedy(const struct hnsw *h, const struct qv *q, struct cand cur, unsigned layer)
{
    bool moved = true;

    while (moved) {
        const uint32_t *nb = links(h, cur.node, layer);
        uint32_t cnt = nb[0];

        moved = false;
        for (uint32_t i = 1; i <= cnt; i++)
            prefetch_row(h, nb[i]);
        for (uint32_t i = 1; i <= cnt; i++) {
            float d = qsim(h, q, nb[i]);
            if (d > cur.sim) {
                cur.sim = d;
                cur.node = nb[i];
                moved = true;
            }
        }
    }
    return cur;
}

/* Push onto the frontier heap, doubling it when full. It holds at most one
 * entry per visited slot, so it is bounded by the index size. */
static bool frontier_push(struct scratch *s, size_t *nc, struct cand e)
{
    if (*nc == s->ccap) {
        size_t ncap = s->ccap ? s->ccap * 2 : 256;
        struct cand *g = realloc(s->c, ncap * sizeof(*g));
        if (!g)
            return false;
        s->c = g;
        s->ccap = ncap;
    }
    maxheap_push(s->c, nc, e);
    return true;
}

/* Best-first search of one layer from eps (Algorithm 2 of the paper). Leaves
 * the best ef slots found in s->w as a min-heap and returns how many. With
 * live_only, deleted slots are walked through but kept out of the results.
 * If the frontier cannot grow the search stops early with what it has. */
static size_t search_layer(const struct hnsw *h, struct scratch *s, const struct qv *q,
                           const struct cand *eps, size_t neps, size_t ef, unsigned layer,
                           bool live_only)
{
    uint32_t epoch = next_epoch(s), todo[2 * HNSW_M_MAX];
    uint32_t *tags = s->tags;
    struct cand *w = s->w;
    size_t nc = 0, nw = 0;

    for (size_t i = 0; i < neps; i++) {
        struct cand e = eps[i];
        if (tags[e.node] == epoch)
            continue;
        tags[e.node] = epoch;
        if (!frontier_push(s, &nc, e))
            goto out;
        if (live_only && h->dead[e.node])
            continue;
        if (nw < ef)
            minheap_push(w, &nw, e);
        else if (e.sim > w[0].sim)
            minheap_sift(w, nw, e);
    }
    while (nc > 0) {
        struct cand c = maxheap_pop(s->c, &nc);
        if (nw == ef && c.sim < w[0].sim)
            break; /* nothing left on the frontier can improve the results */

        const uint32_t *nb = links(h, c.node, layer);
        uint32_t cnt = nb[0], nt = 0;
        for (uint32_t i = 1; i <= cnt; i++) {
            uint32_t v = nb[i];
            if (tags[v] != epoch) {
                tags[v] = epoch;
                todo[nt++] = v;
            }
        }
        if (nt > 0)
            prefetch_row(h, todo[0]);
        for (uint32_t i = 0; i < nt; i++) {
            uint32_t v = todo[i];
            if (i + 1 < nt)
                prefetch_row(h, todo[i + 1]);
            float d = qsim(h, q, v);
            if (nw == ef && d <= w[0].sim)
                continue;
            struct cand e = {d, v};
            if (!frontier_push(s, &nc, e))
                goto out;
            if (live_only && h->dead[v])
                continue;
            if (nw < ef)
                minheap_push(w, &nw, e);
            else
                minheap_sift(w, nw, e);
        }
    }
out:
    return nw;
}

/* Greedy descent from the entry point through the layers above lx. */
static struct cand descend(const struct hnsw *h, const struct qv *q, unsigned lx)
{
    struct cand cur = {qsim(h, q, h->entry), h->entry};

    for (int l = h->top; l > (int)lx; l--)
        cur = greedy(h, q, cur, (unsigned)l);
    return cur;
}

/* Best first, and the lower slot first between equal scores. */
static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;

    if (x->sim != y->sim)
        return x->sim < y->sim ? 1 : -1;
    return (x->node > y->node) - (x->node < y->node);
}

size_t hnsw_search(const struct hnsw *h, const float *q, size_t k, unsigned ef,
                   struct hnsw_hit *out)
{
    struct scratch *s = &tls;
    int8_t qc[HNSW_DIM_MAX] __attribute__((aligned(64)));
    struct qv qq;
    size_t nw, eff;

    if (!h || !q || !out || k == 0 || h->live == 0 || !all_finite(q, h->dim))
        return 0;
    if (k > h->live)
        k = h->live;
    eff = ef ? ef : h->efs;
    if (eff < k)
        eff = k;
    if (eff > h->live)
        eff = h->live; /* the result heap never holds more than the live slots */
    if (scratch_reserve(s, h->n, eff) < 0)
        return 0;

    qq.c = qc;
    qq.s = quantize(q, h->dim, h->cstride, qc);
    struct cand cur = descend(h, &qq, 0);
    nw = search_layer(h, s, &qq, &cur, 1, eff, 0, true);
    /* The best of the ef found are scored again in floats: the order the
     * caller sees. Their rows are cold (a 484-d row is 31 cache lines), so
     * only the first RESCORE(k) by code are; a code's error is far smaller
     * than what separates the k-th from the (2k+8)-th. Recall measured the
     * same with and without: 100k x 384-d (k 10, ef 16-256) to three
     * places, 50k questions' 484-d vectors (k 16, ef 32-128) to four;
     * QPS at ef 64 +5-12% (docs/bench.md, session 15). */
    if (nw > RESCORE(k)) {
        qsort(s->w, nw, sizeof(*s->w), cand_cmp);
        nw = RESCORE(k);
    }
    for (size_t i = 0; i < nw; i++) {
        if (i + 1 < nw) /* +4-8% QPS at 100k x 384-d: these rows are cold */
            prefetch_lines(vec(h, s->w[i + 1].node), h->vstride * sizeof(float));
        s->w[i].sim = h->dot(q, vec(h, s->w[i].node), h->dim);
    }
    qsort(s->w, nw, sizeof(*s->w), cand_cmp);
    if (nw > k)
        nw = k;
    for (size_t i = 0; i < nw; i++) {
        out[i].id = h->ids[s->w[i].node];
        out[i].sim = s->w[i].sim;
    }
    return nw;
}

/* ---- linking ----------------------------------------------------------- */

/* The paper's neighbour heuristic (Algorithm 4): walking c best first, keep a
 * candidate only if it is closer to the base than to every neighbour kept so
 * far. Near-duplicates of a kept neighbour are dropped in favour of links in
 * other directions, which is what keeps clustered data navigable. With no
 * more candidates than room, all are kept. If fewer than fill survive, the
 * best of the dropped ones top the list up to fill. Returns how many went to
 * out (at most max). */
static unsigned select_neighbours(const struct hnsw *h, const struct cand *c, size_t nc,
                                  unsigned max, unsigned fill, uint32_t *out)
{
    unsigned ns = 0;

    if (nc <= max) {
        for (size_t i = 0; i < nc; i++)
            out[ns++] = c[i].node;
        return ns;
    }
    for (size_t i = 0; i < nc && ns < max; i++) {
        struct qv v = slot_qv(h, c[i].node);
        bool keep = true;
        for (unsigned j = 0; j < ns; j++) {
            if (qsim(h, &v, out[j]) > c[i].sim) {
                keep = false;
                break;
            }
        }
        if (keep)
            out[ns++] = c[i].node;
    }
    if (fill > max)
        fill = max;
    for (size_t i = 0; i < nc && ns < fill; i++) {
        unsigned j = 0;
        while (j < ns && out[j] != c[i].node)
            j++;
        if (j == ns)
            out[ns++] = c[i].node;
    }
    return ns;
}

static void set_links(uint32_t *l, const uint32_t *sel, unsigned n)
{
    memcpy(l + 1, sel, n * sizeof(*sel));
    l[0] = n;
}

/* Re-choose u's neighbours on layer from its current list plus extra (which
 * may overlap it), by the same heuristic as a fresh insert, topped up to fill
 * links if the heuristic keeps fewer. */
static void reselect(struct hnsw *h, struct scratch *s, uint32_t u, unsigned layer,
                     const uint32_t *extra, unsigned nextra, unsigned fill)
{
    uint32_t *ul = links(h, u, layer);
    uint32_t epoch = next_epoch(s);
    struct qv uv = slot_qv(h, u);
    struct cand *c = h->sorted;
    size_t nc = 0;

    s->tags[u] = epoch;
    for (uint32_t i = 1; i <= ul[0]; i++) {
        s->tags[ul[i]] = epoch;
        c[nc].sim = qsim(h, &uv, ul[i]);
        c[nc++].node = ul[i];
    }
    for (unsigned i = 0; i < nextra; i++) {
        if (s->tags[extra[i]] == epoch)
            continue;
        s->tags[extra[i]] = epoch;
        c[nc].sim = qsim(h, &uv, extra[i]);
        c[nc++].node = extra[i];
    }
    sort_desc(c, nc);
    set_links(ul, h->sel, select_neighbours(h, c, nc, cap_of(h, layer), fill, h->sel));
}

/* Offer u a link to v (similarity sim) on layer. A full list is re-chosen by
 * the heuristic with v among the candidates, so back-links obey the same
 * diversity rule as forward links and a hub's list never exceeds its cap. */
static void add_backlink(struct hnsw *h, struct scratch *s, uint32_t u, uint32_t v, unsigned layer)
{
    uint32_t *ul = links(h, u, layer);
    uint32_t cnt = ul[0];

    for (uint32_t i = 1; i <= cnt; i++)
        if (ul[i] == v)
            return; /* a reused slot can still be linked from its old life */
    if (cnt < cap_of(h, layer)) {
        ul[cnt + 1] = v;
        ul[0] = cnt + 1;
        return;
    }
    reselect(h, s, u, layer, &v, 1, 0);
}

/* Before slot x takes a new vector, every neighbour that linked back to it
 * drops that link and re-chooses its list from what it had plus x's own
 * neighbours, which were its two-hop routes through x. The list is topped up
 * to its old length: the heuristic alone would thin the graph a little more
 * with every reuse, and recall under churn with it. Links to x from slots x
 * does not link to stay (about one in eight: a search for them doubled the
 * cost of a reuse for no measurable recall); they only cost those slots one
 * useful neighbour. */
static void unlink_slot(struct hnsw *h, struct scratch *s, uint32_t x)
{
    for (unsigned layer = 0; layer <= h->level[x]; layer++) {
        const uint32_t *xl = links(h, x, layer);
        for (uint32_t i = 1; i <= xl[0]; i++) {
            uint32_t u = xl[i];
            uint32_t *ul = links(h, u, layer);
            uint32_t j = 1;
            while (j <= ul[0] && ul[j] != x)
                j++;
            if (j > ul[0])
                continue;
            uint32_t had = ul[0];
            ul[j] = ul[had];
            ul[0] = had - 1;
            reselect(h, s, u, layer, xl + 1, xl[0], had);
        }
    }
}

/* The ef_construction slots nearest q on layer, starting from eps, into out
 * best first, leaving out x (a reused slot can meet itself); returns how
 * many. Only reads the graph. */
static size_t layer_cands(const struct hnsw *h, struct scratch *s, const struct qv *q, uint32_t x,
                          const struct cand *eps, size_t neps, unsigned layer, struct cand *out)
{
    size_t nw = search_layer(h, s, q, eps, neps, h->efc, layer, false), nc = 0;

    minheap_drain(s->w, nw, out);
    for (size_t i = 0; i < nw; i++)
        if (out[i].node != x)
            out[nc++] = out[i];
    return nc;
}

/* Give x its neighbours on layer, chosen from c[0..nc) (best first), and
 * offer each of them the link back. */
static void link_layer(struct hnsw *h, struct scratch *s, uint32_t x, unsigned layer,
                       const struct cand *c, size_t nc)
{
    uint32_t *xl = links(h, x, layer);

    if (nc == 0) {
        xl[0] = 0; /* x is alone on this layer */
        return;
    }
    set_links(xl, h->sel, select_neighbours(h, c, nc, h->m, 0, h->sel));
    for (unsigned i = 0; i < xl[0]; i++)
        add_backlink(h, s, xl[i + 1], x, layer);
}

/* An insert's searches (hnsw_plan): the candidates of every layer the new
 * vector will be linked on, found while only reading the graph. */
struct hnsw_plan {
    const struct hnsw *h;
    uint64_t gen; /* h->gen when planned: the plan holds while it is unchanged */
    int top;      /* the highest layer planned */
    size_t n[LEVEL_MAX + 1];
    struct cand c[]; /* layer l's candidates at c + l * efc */
};

/* Plan the insert of q as it would run now: into the slot a delete left
 * (the top of the free stack, keeping its level, searched for while its old
 * vector and links still route and left out of its own candidates) or
 * into a fresh slot (the level the generator will draw). *out is NULL for
 * an empty index, which has nothing to search. 0 or -ENOMEM. */
static int plan_make(const struct hnsw *h, const float *v, struct hnsw_plan **out)
{
    struct scratch *s = &tls;
    int8_t qc[HNSW_DIM_MAX] __attribute__((aligned(64)));
    struct qv q;
    struct hnsw_plan *p;
    uint32_t x = NONE;
    unsigned lx;
    int top;

    *out = NULL;
    if (h->top < 0)
        return 0;
    if (h->nfree > 0) {
        x = h->freel[h->nfree - 1];
        lx = h->level[x];
    } else {
        uint64_t rng = h->rng;
        lx = draw_level(h, &rng);
    }
    top = (int)lx < h->top ? (int)lx : h->top;
    /* calloc: a few kilobytes, and the analyser cannot follow the heap
     * drain that fills each layer's list before it is read. */
    p = calloc(1, sizeof(*p) + (size_t)(top + 1) * h->efc * sizeof(struct cand));
    if (!p || scratch_reserve(s, h->n, h->efc) < 0) {
        free(p);
        return -ENOMEM;
    }
    p->h = h;
    p->gen = h->gen;
    p->top = top;

    q.c = qc;
    q.s = quantize(v, h->dim, h->cstride, qc);
    struct cand cur = descend(h, &q, lx);
    const struct cand *eps = &cur;
    size_t neps = 1;
    for (int l = top; l >= 0; l--) {
        struct cand *c = p->c + (size_t)l * h->efc;
        p->n[l] = layer_cands(h, s, &q, x, eps, neps, (unsigned)l, c);
        if (p->n[l] > 0) {
            eps = c;
            neps = p->n[l];
        }
    }
    *out = p;
    return 0;
}

/* Link slot x, whose vector and level are already set, into the graph
 * (Algorithm 1) with the candidates p found for it. */
static void link_slot(struct hnsw *h, struct scratch *s, uint32_t x, const struct hnsw_plan *p)
{
    unsigned lx = h->level[x];

    if (!p) {
        h->entry = x; /* the first slot */
        h->top = (int)lx;
        return;
    }
    for (int l = p->top; l >= 0; l--)
        link_layer(h, s, x, (unsigned)l, p->c + (size_t)l * h->efc, p->n[l]);
    if ((int)lx > h->top) {
        h->entry = x;
        h->top = (int)lx;
    }
}

struct hnsw_plan *hnsw_plan(const struct hnsw *h, const float *vec_in)
{
    struct hnsw_plan *p = NULL;

    if (h && vec_in && all_finite(vec_in, h->dim))
        (void)plan_make(h, vec_in, &p);
    return p;
}

void hnsw_plan_free(struct hnsw_plan *p)
{
    free(p);
}

int hnsw_insert(struct hnsw *h, uint64_t id, const float *vec_in)
{
    return hnsw_insert_planned(h, id, vec_in, NULL);
}

int hnsw_insert_planned(struct hnsw *h, uint64_t id, const float *vec_in,
                        const struct hnsw_plan *plan)
{
    struct scratch *s = &tls;
    struct hnsw_plan *own = NULL;
    uint64_t rng = 0;
    unsigned lvl = 0;
    uint32_t *up = NULL;
    uint32_t x;
    int err;

    if (!h || !vec_in || !all_finite(vec_in, h->dim))
        return -EINVAL;
    if (map_find(h, id) != NONE)
        return -EEXIST;
    if (h->nfree == 0 && h->n >= HNSW_NODES_MAX)
        return -E2BIG;
    /* A plan made on this very state of the index searched for what the
     * searches would find now (the same slot, the same level); any other
     * is done again here. Either way the graph comes out the same. */
    if (!plan || plan->h != h || plan->gen != h->gen) {
        if ((err = plan_make(h, vec_in, &own)) < 0)
            return err;
        plan = own;
    }
    if ((err = map_reserve(h, (size_t)h->live + 1)) < 0 ||
        (err = scratch_reserve(s, (size_t)h->n + 1, h->efc)) < 0)
        goto out;
    if (h->nfree == 0) {
        if ((err = grow_slots(h, (size_t)h->n + 1)) < 0)
            goto out;
        rng = h->rng;
        lvl = draw_level(h, &rng);
        if (lvl > 0) {
            up = calloc((size_t)lvl * (h->m + 1), sizeof(*up));
            if (!up) {
                err = -ENOMEM;
                goto out;
            }
        }
    }
    /* Nothing below can fail, so an error above left the graph untouched. */
    if (h->nfree > 0) {
        x = h->freel[--h->nfree];
        unlink_slot(h, s, x);
    } else {
        x = h->n++;
        h->rng = rng;
        h->level[x] = (uint8_t)lvl;
        h->upper[x] = up;
        h->upper_bytes += (size_t)lvl * (h->m + 1) * sizeof(*up);
        h->links0[(size_t)x * (h->m0 + 1)] = 0;
    }
    float *row = h->vecs + (size_t)x * h->vstride;
    memcpy(row, vec_in, (size_t)h->dim * sizeof(float));
    memset(row + h->dim, 0, (size_t)(h->vstride - h->dim) * sizeof(float));
    encode_slot(h, x);
    h->ids[x] = id;
    h->dead[x] = 0;
    link_slot(h, s, x, plan);
    map_put(h->map, h->mcap, id, x);
    h->live++;
    bump(h);
    err = 0;
out:
    free(own);
    return err;
}

int hnsw_delete(struct hnsw *h, uint64_t id)
{
    uint32_t x;

    if (!h)
        return -EINVAL;
    x = map_find(h, id);
    if (x == NONE)
        return -ENOENT;
    map_del(h, id);
    h->dead[x] = 1;
    h->freel[h->nfree++] = x;
    h->live--;
    bump(h);
    return 0;
}

/* One adjacency list: count within cap, every entry a slot < n other than
 * s that reaches layer, none twice (tags marks this list's entries). */
static bool list_ok(const struct hnsw *h, struct scratch *sc, uint32_t s, unsigned layer)
{
    const uint32_t *l = links(h, s, layer);
    uint32_t epoch = next_epoch(sc);

    if (l[0] > cap_of(h, layer))
        return false;
    for (uint32_t i = 1; i <= l[0]; i++) {
        uint32_t v = l[i];
        if (v >= h->n || v == s || h->level[v] < layer || sc->tags[v] == epoch)
            return false;
        sc->tags[v] = epoch;
    }
    return true;
}

int hnsw_check(const struct hnsw *h)
{
    struct scratch *sc = &tls;
    size_t dead = 0, mapped = 0;
    int top = -1;

    if (!h)
        return -EINVAL;
    if (h->n > h->cap || (size_t)h->live + h->nfree != h->n ||
        (h->n == 0) != (h->top < 0 && h->entry == NONE))
        return -EUCLEAN;
    if (h->n == 0)
        return 0;
    if (h->entry >= h->n || h->level[h->entry] != h->top)
        return -EUCLEAN;
    if (scratch_reserve(sc, h->n, 1) < 0)
        return -ENOMEM;
    for (uint32_t s = 0; s < h->n; s++) {
        if (h->level[s] > LEVEL_MAX || (h->level[s] > 0) != (h->upper[s] != NULL))
            return -EUCLEAN;
        if (h->level[s] > top)
            top = h->level[s];
        for (unsigned l = 0; l <= h->level[s]; l++)
            if (!list_ok(h, sc, s, l))
                return -EUCLEAN;
        if (h->dead[s] > 1)
            return -EUCLEAN;
        if (h->dead[s])
            dead++;
        else if (map_find(h, h->ids[s]) != s)
            return -EUCLEAN;
    }
    if (top != h->top || dead != h->nfree)
        return -EUCLEAN;
    uint32_t epoch = next_epoch(sc);
    for (uint32_t i = 0; i < h->nfree; i++) {
        uint32_t s = h->freel[i];
        if (s >= h->n || !h->dead[s] || sc->tags[s] == epoch)
            return -EUCLEAN;
        sc->tags[s] = epoch;
    }
    for (size_t i = 0; i < h->mcap; i++)
        mapped += h->map[i].slot != NONE;
    return mapped == h->live ? 0 : -EUCLEAN;
}

unsigned hnsw_dim(const struct hnsw *h)
{
    return h->dim;
}

size_t hnsw_count(const struct hnsw *h)
{
    return h ? h->live : 0;
}

size_t hnsw_memory(const struct hnsw *h)
{
    size_t bytes;

    if (!h)
        return 0;
    bytes = sizeof(*h) + h->upper_bytes + h->mcap * sizeof(*h->map) +
            SORTED_CAP(h) * sizeof(*h->sorted) + h->m0 * sizeof(*h->sel);
    for (size_t i = 0; i < sizeof(h->abytes) / sizeof(h->abytes[0]); i++)
        bytes += h->abytes[i];
    return bytes;
}

/* ---- save and load ----------------------------------------------------- */

/* The serialised graph is the flat arrays of the layout above, in this order
 * (all little-endian, through cache/base/le.h):
 *
 *   u32 magic "HNSW" (0x57534e48), u32 version (1)
 *   u32 dim, u32 m, u32 ef_construction, u32 ef_search, u64 rng
 *   u32 n, u32 live, u32 nfree, u32 entry (0xffffffff when n == 0), u32 top + 1
 *   (52 header bytes so far)
 *   u8  level[n], u8 dead[n], u64 ids[n], u32 freel[nfree]
 *   f32 vecs[n][dim]                 (the row padding is not written)
 *   u32 links0[n][1 + 2m]            (unused words written as 0)
 *   u32 upper[level][1 + m] for each slot with level > 0, in slot order
 *
 * The map, the writer scratch and cap are derived and rebuilt on load. */
#define SAVE_MAGIC   0x57534e48u
#define SAVE_VERSION 1u
#define SAVE_HEADER  52u
#define CHUNK_WORDS  4096u /* words converted per call of the stream function */

static int put_words(hnsw_write_fn w, void *ud, const uint32_t *a, size_t n)
{
    uint8_t b[CHUNK_WORDS * 4];

    while (n > 0) {
        size_t k = n < CHUNK_WORDS ? n : CHUNK_WORDS;
        for (size_t i = 0; i < k; i++)
            le_put32(b + 4 * i, a[i]);
        int rc = w(ud, b, 4 * k);
        if (rc)
            return rc;
        a += k;
        n -= k;
    }
    return 0;
}

static int get_words(hnsw_read_fn r, void *ud, uint32_t *a, size_t n)
{
    uint8_t b[CHUNK_WORDS * 4];

    while (n > 0) {
        size_t k = n < CHUNK_WORDS ? n : CHUNK_WORDS;
        int rc = r(ud, b, 4 * k);
        if (rc)
            return rc;
        for (size_t i = 0; i < k; i++)
            a[i] = le_get32(b + 4 * i);
        a += k;
        n -= k;
    }
    return 0;
}

/* A list's words as they are saved: count, neighbours, then zeros. */
static int put_list(hnsw_write_fn w, void *ud, const uint32_t *l, unsigned cap)
{
    uint32_t row[2 * HNSW_M_MAX + 1] = {0};

    memcpy(row, l, (size_t)(1 + (l[0] <= cap ? l[0] : cap)) * sizeof(*l));
    return put_words(w, ud, row, cap + 1);
}

int hnsw_save(const struct hnsw *h, hnsw_write_fn w, void *ud)
{
    uint8_t hd[SAVE_HEADER];
    int rc;

    if (!h || !w)
        return -EINVAL;
    le_put32(hd, SAVE_MAGIC);
    le_put32(hd + 4, SAVE_VERSION);
    le_put32(hd + 8, h->dim);
    le_put32(hd + 12, h->m);
    le_put32(hd + 16, h->efc);
    le_put32(hd + 20, h->efs);
    le_put64(hd + 24, h->rng);
    le_put32(hd + 32, h->n);
    le_put32(hd + 36, h->live);
    le_put32(hd + 40, h->nfree);
    le_put32(hd + 44, h->entry);
    le_put32(hd + 48, (uint32_t)(h->top + 1));
    if ((rc = w(ud, hd, sizeof(hd))) != 0 || (rc = w(ud, h->level, h->n)) != 0 ||
        (rc = w(ud, h->dead, h->n)) != 0)
        return rc;
    for (uint32_t s = 0; s < h->n; s++) {
        uint8_t b[8];
        le_put64(b, h->ids[s]);
        if ((rc = w(ud, b, 8)) != 0)
            return rc;
    }
    if ((rc = put_words(w, ud, h->freel, h->nfree)) != 0)
        return rc;
    for (uint32_t s = 0; s < h->n; s++) {
        _Static_assert(sizeof(float) == sizeof(uint32_t), "IEEE-754 binary32 floats");
        if ((rc = put_words(w, ud, (const uint32_t *)(const void *)vec(h, s), h->dim)) != 0)
            return rc;
    }
    for (uint32_t s = 0; s < h->n; s++)
        if ((rc = put_list(w, ud, links(h, s, 0), h->m0)) != 0)
            return rc;
    for (uint32_t s = 0; s < h->n; s++)
        for (unsigned l = 1; l <= h->level[s]; l++)
            if ((rc = put_list(w, ud, links(h, s, l), h->m)) != 0)
                return rc;
    return 0;
}

/* Bytes the saved form of n slots takes at least (with no upper layers and
 * no free slots): a header claiming more slots than the input holds is
 * refused before anything that size is allocated. */
static uint64_t min_saved_bytes(uint64_t n, unsigned dim, unsigned m0)
{
    return SAVE_HEADER + n * (2 + 8 + 4 * (uint64_t)dim + 4 * (uint64_t)(m0 + 1));
}

/* The slot arrays of a saved graph of n > 0 slots into h, whose arrays have
 * room for them; upper blocks are allocated as they come. */
static int load_slots(struct hnsw *h, hnsw_read_fn r, void *ud, uint32_t n, uint32_t nfree)
{
    int rc;

    if ((rc = r(ud, h->level, n)) != 0 || (rc = r(ud, h->dead, n)) != 0)
        return rc;
    for (uint32_t s = 0; s < n; s++) {
        uint8_t b[8];
        if ((rc = r(ud, b, 8)) != 0)
            return rc;
        h->ids[s] = le_get64(b);
    }
    if ((rc = get_words(r, ud, h->freel, nfree)) != 0)
        return rc;
    for (uint32_t s = 0; s < n; s++) {
        float *row = h->vecs + (size_t)s * h->vstride;
        if ((rc = get_words(r, ud, (uint32_t *)(void *)row, h->dim)) != 0)
            return rc;
        memset(row + h->dim, 0, (size_t)(h->vstride - h->dim) * sizeof(float));
        if (!all_finite(row, h->dim))
            return -EBADMSG;
        encode_slot(h, s);
    }
    if ((rc = get_words(r, ud, h->links0, (size_t)n * (h->m0 + 1))) != 0)
        return rc;
    for (uint32_t s = 0; s < n; s++) {
        size_t words = (size_t)h->level[s] * (h->m + 1);
        if (h->level[s] > LEVEL_MAX)
            return -EBADMSG;
        if (words == 0)
            continue;
        if (!(h->upper[s] = malloc(words * sizeof(uint32_t))))
            return -ENOMEM;
        h->upper_bytes += words * sizeof(uint32_t);
        if ((rc = get_words(r, ud, h->upper[s], words)) != 0)
            return rc;
    }
    return 0;
}

int hnsw_load(hnsw_read_fn r, void *ud, uint64_t avail, struct hnsw **out)
{
    struct hnsw_opts o;
    struct hnsw *h = NULL;
    uint8_t hd[SAVE_HEADER];
    uint32_t n, live, nfree, entry, top1;
    uint64_t rng;
    int rc;

    if (!r || !out)
        return -EINVAL;
    *out = NULL;
    if ((rc = r(ud, hd, sizeof(hd))) != 0)
        return rc;
    if (le_get32(hd) != SAVE_MAGIC || le_get32(hd + 4) != SAVE_VERSION)
        return -EBADMSG;
    o.dim = le_get32(hd + 8);
    o.m = le_get32(hd + 12);
    o.ef_construction = le_get32(hd + 16);
    o.ef_search = le_get32(hd + 20);
    rng = le_get64(hd + 24);
    o.seed = rng;
    n = le_get32(hd + 32);
    live = le_get32(hd + 36);
    nfree = le_get32(hd + 40);
    entry = le_get32(hd + 44);
    top1 = le_get32(hd + 48);
    if ((rc = hnsw_new(&o, &h)) != 0)
        return rc == -EINVAL ? -EBADMSG : rc;
    rc = -EBADMSG;
    if (n > HNSW_NODES_MAX || (uint64_t)live + nfree != n || top1 > LEVEL_MAX + 1 ||
        min_saved_bytes(n, h->dim, h->m0) + 4 * (uint64_t)nfree > avail)
        goto fail;
    if (n > 0) {
        if ((rc = grow_slots(h, n)) != 0)
            goto fail;
        memset(h->upper, 0, (size_t)n * sizeof(*h->upper));
    }
    h->n = n; /* from here hnsw_free releases what was loaded */
    if (n > 0 && (rc = load_slots(h, r, ud, n, nfree)) != 0)
        goto fail;
    h->live = live;
    h->nfree = nfree;
    h->entry = entry;
    h->top = (int)top1 - 1;
    h->rng = rng;
    if ((rc = map_reserve(h, live)) != 0)
        goto fail;
    rc = -EBADMSG;
    for (uint32_t s = 0, mapped = 0; s < n; s++) {
        if (h->dead[s])
            continue;
        if (++mapped > live || map_find(h, h->ids[s]) != NONE)
            goto fail; /* more live slots than claimed, or an id twice */
        map_put(h->map, h->mcap, h->ids[s], s);
    }
    /* The invariants bound every index a search follows: with them checked
     * no corrupt input can send one out of the arrays. */
    rc = hnsw_check(h);
    if (rc != 0)
        goto fail;
    *out = h;
    return 0;
fail:
    hnsw_free(h);
    return rc == -EUCLEAN ? -EBADMSG : rc;
}

const float *hnsw_vector(const struct hnsw *h, uint64_t id)
{
    uint32_t s = h ? map_find(h, id) : NONE;

    return s == NONE ? NULL : vec(h, s);
}
