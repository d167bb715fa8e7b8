/* balance.h - choosing a provider and keeping it out while it is failing:
 * smooth weighted round-robin with a tried-set, and a circuit breaker per
 * provider. Both upstream clients use it (the provider pool in upstream.c and
 * the remote embedder in embedclient.c), so there is one breaker to reason
 * about.
 *
 * Choice (as nginx's ngx_http_upstream_round_robin.c): every pick adds each
 * candidate's weight to its `current`, takes the largest (the first on a
 * tie) and subtracts the candidates' total from it. Weights 5:1:1 give
 * a a b a c a a, spread out rather than bunched. Candidates are the peers not
 * in the caller's tried-set whose breaker lets traffic through; failing
 * that, the untried ones; failing that, all of them: an attempt always goes
 * somewhere, and the caller's own retry budget bounds the damage.
 *
 * Breaker: closed -> open after `failures` consecutive failures; open ->
 * half-open once `cooldown_ms` has passed, which lets one probe through; the
 * probe's success closes it, its failure opens it again for another
 * cooldown. An outcome that says nothing about the peer's health (a relayed
 * 429, a cancelled call) is reported with bal_breaker_release(): it frees
 * the probe slot and changes nothing else.
 *
 * Time is passed in (`now`, monotonic milliseconds) so that tests control it.
 *
 * Threads: a struct bal or a lone struct bal_breaker belongs to one thread
 * (or to whoever holds its owner's lock). bal_breaker_state() and
 * bal_breaker_ready() / bal_ready() may be called from any thread: they read
 * only the atomic fields and never change anything.
 */
#ifndef PARROT_UPSTREAM_BALANCE_H
#define PARROT_UPSTREAM_BALANCE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BAL_MAX 64 /* peers; a tried-set is a uint64_t */

enum bal_state { BAL_CLOSED = 0, BAL_HALF_OPEN = 1, BAL_OPEN = 2 };

struct bal_breaker {
    atomic_int state;       /* enum bal_state; read by any thread */
    atomic_long open_until; /* while open: when a probe may go; read by any thread */
    unsigned fails;         /* consecutive failures */
    bool probing;           /* half-open and the probe is out */
    unsigned threshold;     /* failures that open it, >= 1 */
    long cooldown_ms;
};

struct bal_peer {
    int weight;  /* >= 1 */
    int current; /* smooth weighted round-robin state */
    struct bal_breaker br;
};

struct bal {
    struct bal_peer peer[BAL_MAX];
    size_t n;
    unsigned failures; /* for each peer's breaker */
    long cooldown_ms;
};

/* A closed breaker; failures 0 counts as 1. */
void bal_breaker_init(struct bal_breaker *br, unsigned failures, long cooldown_ms);

/* May an attempt go now? Moves an open breaker whose cooldown has passed to
 * half-open; a half-open one allows only while its probe is not out. */
bool bal_breaker_allow(struct bal_breaker *br, long now);

/* An attempt starts: in half-open it is the probe, and others wait for it. */
void bal_breaker_begin(struct bal_breaker *br);

/* Outcomes of an attempt. */
void bal_breaker_success(struct bal_breaker *br);
void bal_breaker_failure(struct bal_breaker *br, long now);
void bal_breaker_release(struct bal_breaker *br); /* no verdict on the peer */

/* Any thread: the state, and whether the breaker is not (or no longer) open.
 * A stale read only delays the answer until the owner's next step. */
enum bal_state bal_breaker_state(const struct bal_breaker *br);
bool bal_breaker_ready(const struct bal_breaker *br, long now);

/* No peers yet; their breakers will open after `failures` consecutive
 * failures for cooldown_ms. */
void bal_init(struct bal *b, unsigned failures, long cooldown_ms);

/* Add a peer of the given weight (0 counts as 1). Returns its index, or
 * -ENOSPC past BAL_MAX. */
int bal_add(struct bal *b, unsigned weight);

/* The peer for the next attempt of a request that has tried the peers in
 * `tried` (bit i: peer i); -1 only when there are no peers. The pick begins
 * an attempt on that peer's breaker (bal_breaker_begin): report its outcome
 * with bal_breaker_success / _failure / _release on b->peer[i].br. */
int bal_pick(struct bal *b, uint64_t tried, long now);

/* Any thread: whether some peer's breaker is not open (or its cooldown has
 * passed, so a probe may go). */
bool bal_ready(const struct bal *b, long now);

#endif
