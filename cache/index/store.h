/* store.h - the entry store: exact and semantic lookup, TTL, eviction.
 *
 * Entries live in partitions (see proxy/openai/canon.h); a semantic lookup only ever
 * searches the one partition its request belongs to, so a similar question
 * from another tenant, model or conversation can never be a candidate.
 * Within a partition, entries are grouped by a key their caller gives
 * (the numbers and special tokens of the question), and a lookup searches
 * its own group only. A group is scanned exhaustively while it is small
 * and gets its own HNSW index once it grows past exact_scan_max entries.
 *
 * Eviction is cost-aware (GreedyDual-Size-Frequency): an entry's priority is
 * L + hits * cost / size, where cost is the provider tokens a hit saves and L
 * the priority of the last entry evicted, which ages everything that is not
 * hit again. A cheap-to-recompute, rarely hit, large answer goes first; a
 * popular long answer stays. Victims are chosen from a random sample (as
 * Redis does), so hits never take the write lock to update a heap.
 *
 * Threads: lookups take a read lock and may run in parallel; put and delete
 * take the write lock. A put into an indexed partition first does its graph
 * searches under the read lock (hnsw_plan), so the write lock is held only
 * to link the new vector in. A returned entry is reference counted and stays valid
 * until store_entry_unref(), even if it is evicted meanwhile.
 */
#ifndef PARROT_STORE_H
#define PARROT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_KEY_LEN 32

struct store;
struct store_entry;
struct embed_word;

struct store_opts {
    unsigned dim;          /* embedder dimension */
    size_t max_memory;     /* bytes for entries, vectors and indexes */
    size_t exact_scan_max; /* partitions up to this size are scanned, not indexed */
    unsigned hnsw_m, hnsw_ef_construction, hnsw_ef_search;
    /* Share of the lexical score in a semantic lookup's score: the TF-IDF
     * cosine of word n-grams under the partition's own document counts
     * (cache/terms.h). 0: the vector similarity alone. */
    float lexical_weight;
    void (*payload_free)(void *payload);
};

struct store_put_args {
    const uint8_t *partition; /* STORE_KEY_LEN bytes */
    const uint8_t *exact;     /* STORE_KEY_LEN bytes */
    uint64_t group;           /* within the partition: see store_query.group */
    const float *vec;         /* dim floats, or NULL: exact lookups only */
    const char *text;         /* the lookup text (copied), or NULL */
    void *payload;            /* taken over by the store, freed with payload_free */
    size_t payload_size;      /* bytes, for accounting */
    double cost;              /* what a hit saves, e.g. tokens; >= 1 */
    int64_t now;              /* wall clock, milliseconds */
    int64_t ttl;              /* milliseconds; 0 = no expiry */
    /* 0: a new random one; else this one. An entry with this id and the
     * same exact key is replaced; -EEXIST when another key holds it. */
    uint64_t id;
    bool disputed; /* as store_dispute() left it (a logged or snapshotted entry) */
};

struct store_stats {
    size_t entries, partitions, indexed_partitions;
    size_t memory;
    uint64_t evictions, expirations, replaced;
};

/* Candidate filter for semantic lookups (the hit verifier): return true to
 * accept e at similarity sim. Called under the read lock; must not block. */
typedef bool (*store_accept_fn)(void *ud, const struct store_entry *e, float sim);

int store_new(const struct store_opts *o, struct store **out);
void store_free(struct store *s); /* NULL is a no-op; entries still referenced stay valid */

/* Insert an entry; an entry with the same exact key is replaced. Evicts
 * until the store fits in max_memory again. Returns 0 and the new id, or
 * -ENOMEM (the payload is then freed). */
int store_put(struct store *s, struct store_put_args *a, uint64_t *id);

/* The live entry stored under exact, no older than max_age milliseconds
 * (negative: any age), or NULL. The caller owns a reference. Times are wall
 * clock milliseconds throughout. */
struct store_entry *store_get_exact(struct store *s, const uint8_t *exact, int64_t now,
                                    int64_t max_age);

/* A semantic lookup. */
struct store_query {
    const uint8_t *partition; /* STORE_KEY_LEN bytes */
    /* Only entries stored with the same group are candidates (0 is a group
     * too). The verifier's verify_group(): questions whose numbers differ
     * can never be served for each other, so they are not searched, and
     * the candidates a lookup may take are all ones that could pass. */
    uint64_t group;
    const float *vec; /* dim floats */
    const char *text; /* the lookup text, for the lexical score; NULL: none */
    size_t text_len;
    const struct embed_word *words; /* text already split (embed_split), or NULL */
    size_t nwords;
    float threshold;        /* on the score */
    int64_t now, max_age;   /* as store_get_exact */
    unsigned candidates;    /* nearest entries (by vector) looked at, 1..16 */
    store_accept_fn accept; /* NULL: any candidate */
    void *ud;
    /* When not NULL: set to the vector similarity of the farthest of the
     * candidates when the partition had that many, else to -1. An entry
     * less similar would not have been a candidate. */
    float *last_sim;
};

/* The live entry of q->partition with the best score >= q->threshold that
 * q->accept agrees to, or NULL; *score gets its score. The score of a
 * candidate is its vector similarity or, with a lexical weight w and a
 * query text, (1 - w) * similarity + w * the lexical cosine. The
 * candidates are the q->candidates nearest entries by vector, tried best
 * score first. The caller owns a reference. */
struct store_entry *store_get_semantic(struct store *s, const struct store_query *q, float *score);

/* Remove the entry with this id. 0 or -ENOENT. */
int store_delete(struct store *s, uint64_t id);

/* An entry as the admin API names it: its id now, and its exact key, which
 * is what the write-ahead log knows it by (ids are not stable across
 * restarts). */
struct store_ref {
    uint64_t id;
    uint8_t exact[STORE_KEY_LEN];
};

/* Remove the entry stored under r->exact, only if its id is r->id (0: any
 * id). The id check keeps a delete decided on an old entry from removing
 * the newer answer that replaced it meanwhile. 0 or -ENOENT. */
int store_remove(struct store *s, const struct store_ref *r);

/* Mark the entry stored under r->exact (only if its id is r->id; 0: any)
 * as disputed: an audit found a semantic hit on it wrong. The flag stays
 * for the entry's life; the cache serves such entries on exact hits only.
 * 0 or -ENOENT. */
int store_dispute(struct store *s, const struct store_ref *r);
bool store_entry_disputed(const struct store_entry *e);

/* Everything about one entry, for listing. Pointers stay valid while the
 * caller holds the entry (a reference, or the scan's lock). */
struct store_entry_info {
    uint64_t id;
    const uint8_t *partition, *exact; /* STORE_KEY_LEN bytes each */
    int64_t created, expires;         /* wall clock ms; expires 0 = never */
    uint64_t hits;
    size_t size; /* bytes accounted */
    double cost;
    const float *vec; /* dim floats, or NULL */
    const char *text; /* may be NULL */
    const void *payload;
    bool disputed;
};

void store_entry_describe(const struct store_entry *e, struct store_entry_info *out);

/* Call visit on every entry, in no particular order, under the read lock
 * (visit must not block or call back into the store); a non-zero return
 * stops the scan and is returned. */
typedef int (*store_visit_fn)(void *ud, const struct store_entry *e);
int store_scan(struct store *s, store_visit_fn visit, void *ud);

/* The entry with this id, or NULL; the caller owns a reference. Unlike a
 * lookup it does not count as a hit. */
struct store_entry *store_get_id(struct store *s, uint64_t id);

void store_entry_unref(struct store_entry *e);
uint64_t store_entry_id(const struct store_entry *e);
int64_t store_entry_created(const struct store_entry *e);  /* milliseconds */
const char *store_entry_text(const struct store_entry *e); /* may be NULL */
void *store_entry_payload(const struct store_entry *e);

int64_t store_entry_expires(const struct store_entry *e); /* milliseconds; 0 = never */
double store_entry_cost(const struct store_entry *e);
const uint8_t *store_entry_exact(const struct store_entry *e); /* STORE_KEY_LEN bytes */
const float *store_entry_vec(const struct store_entry *e);     /* dim floats, or NULL */

void store_get_stats(struct store *s, struct store_stats *st);

/* ---- snapshots (cache/snapshot.c) ----
 *
 * Capture: store_capture takes the read lock once, takes a reference to every
 * entry (entries never change after insertion, so they can be written out
 * after the lock is gone) and calls graph() for each indexed partition or
 * group, with the key of its graph (see store_snap_item.graph), so that the
 * caller can serialise the HNSW graph while no writer changes it.
 * Lookups go on meanwhile; store_put and store_delete wait. */
struct store_snap_item {
    struct store_entry *e; /* a reference: store_capture_free drops it */
    uint8_t partition[STORE_KEY_LEN];
    uint8_t graph[STORE_KEY_LEN]; /* the key of its group's graph: partition for group 0 */
    bool indexed;                 /* e's vector is in that graph */
};
struct hnsw;
typedef int (*store_graph_fn)(void *ud, const uint8_t *key, const struct hnsw *idx);
int store_capture(struct store *s, store_graph_fn graph, void *ud, struct store_snap_item **items,
                  size_t *n);
void store_capture_free(struct store_snap_item *items, size_t n);

/* Restore: after store_load_begin, store_put (with the snapshot's ids)
 * indexes no partition; store_adopt_index then hands a loaded graph to the
 * partition or group under key (taking idx) if the graph's live ids are
 * exactly its vectors, else frees it and returns -ESTALE (so a graph saved
 * before its entries were grouped as they are now is built again);
 * store_load_end builds an index for every partition or group that needs
 * one and has none (*built counts them: a snapshot load that had to
 * rebuild). 0 or -ENOMEM. */
void store_load_begin(struct store *s);
int store_adopt_index(struct store *s, const uint8_t *key, struct hnsw *idx);
int store_load_end(struct store *s, size_t *built);

#endif
