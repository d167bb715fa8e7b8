/* replica.c - sharing one cache through Redis; see replica.h.
 *
 * In Redis, under the namespace NS (the braces keep a namespace's keys in
 * one hash slot, should Redis Cluster ever be supported):
 *   parrot:{NS}:e:HEX    one entry: its id (u64 little-endian, 8 bytes)
 *                        then its PUT record (cache/persist/records.h);
 *                        PX is the entry's remaining TTL. HEX is its exact
 *                        key, so a newer answer replaces the key's older one.
 *   parrot:{NS}:changes  the stream. Fields: o (the origin: a random id per
 *                        process), s (the change's sequence number in the
 *                        origin's log), k ("p" put, "d" delete, "f" a
 *                        single-flight leader is done), x (the exact key,
 *                        32 bytes; "" for "d") and d (for "p" the PUT record;
 *                        for "d" 40 bytes per removed entry: its id, u64
 *                        little-endian, then its exact key; "" for "f").
 *   parrot:{NS}:f:HEX    the single-flight lock of an exact key: the leading
 *                        origin, PX flight_wait.
 *   parrot:{NS}:rl:HEX   a client's rate-limit buckets (SCRIPT_RL), HEX its
 *                        key; PX two minutes, when it is full again anyway.
 *   parrot:{NS}:replicas the live replicas: origin -> last heartbeat (ms),
 *                        a sorted set; older than REPLICA_TTL_MS is gone.
 * A change is one Lua script (SCRIPT_PUT, SCRIPT_DEL): the entry key and the
 * stream message are written together or not at all, so a re-seed (SCAN of
 * the entry keys) and the stream never disagree about a change.
 *
 * The state file holds "NS ID\n": the last stream id whose changes the
 * local log holds (checkpoints, below).
 */
#include "cache/replica/replica.h"

#include "cache/base/clock.h"
#include "cache/base/le.h"
#include "cache/base/rand.h"
#include "cache/base/thread.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH          64                   /* changes per pipelined round trip */
#define QUEUE_BYTES    (256u * 1024 * 1024) /* beyond it changes are dropped too */
#define DEL_PER_MSG    1024                 /* removed entries per stream message */
#define REF_BYTES      (8 + CACHE_KEY_LEN)  /* one removed entry in a "d" message */
#define READ_COUNT     256                  /* messages per XREAD */
#define BLOCK_MS       500                  /* XREAD BLOCK: how soon a stop is seen */
#define IO_TIMEOUT_MS  3000                 /* longest a command may take */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define TRIM_EVERY_MS  60000
#define STOP_FLUSH_MS  2000
#define ID_LEN         48    /* "ms-seq" of two u64s, and a NUL */
#define BEAT_EVERY_MS  5000  /* replica heartbeats */
#define REPLICA_TTL_MS 15000 /* a replica silent this long is not counted */
#define RL_TIMEOUT_MS  100   /* a rate-limit answer from Redis, at most */
#define RL_RETRY_MS    1000  /* after a failed one, the local limiter decides this long */
#define RL_POOL        8     /* idle connections kept for rate limits */

/* Writes the entry and the message; KEYS: entry, stream; ARGV: id bytes,
 * record, PX (0: no expiry), origin, seq, maxlen, exact key. */
static const char SCRIPT_PUT[] =
    "local v = ARGV[1] .. ARGV[2]\n"
    "if ARGV[3] ~= '0' then redis.call('SET', KEYS[1], v, 'PX', ARGV[3])\n"
    "else redis.call('SET', KEYS[1], v) end\n"
    "return redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', ARGV[6], '*', 'o', ARGV[4], 's', "
    "ARGV[5], 'k', 'p', 'x', ARGV[7], 'd', ARGV[2])\n";

/* A client's token buckets, as proxy/ratelimit.c keeps them locally, timed
 * by Redis' clock; KEYS: the bucket; ARGV: rpm, tpm, "take" or "charge",
 * tokens. Returns {milliseconds to wait (0: allowed), "requests" or
 * "tokens" or ""}. */
static const char SCRIPT_RL[] =
    "local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 'r', 't', 'a')\n"
    "local req, tok, at = tonumber(b[1]) or rpm, tonumber(b[2]) or tpm, tonumber(b[3]) or now\n"
    "local m = (now - at) / 60000\n"
    "if m > 0 then req = math.min(rpm, req + m * rpm); tok = math.min(tpm, tok + m * tpm) end\n"
    "local wait, which = 0, ''\n"
    "if ARGV[3] == 'take' then\n"
    "  if rpm > 0 and req < 1 then wait = math.floor((1 - req) * 60000 / rpm) + 1; which = "
    "'requests'\n"
    "  elseif tpm > 0 and tok <= 0 then wait = math.floor((1 - tok) * 60000 / tpm) + 1; which = "
    "'tokens'\n"
    "  elseif rpm > 0 then req = req - 1 end\n"
    "else tok = tok - tonumber(ARGV[4]) end\n"
    "redis.call('HSET', KEYS[1], 'r', tostring(req), 't', tostring(tok), 'a', now)\n"
    "redis.call('PEXPIRE', KEYS[1], 120000)\n"
    "return {wait, which}\n";

/* A single-flight leader is done: releases its lock (only its own: a lock
 * that expired and was taken by another replica stays) and says so on the
 * stream; KEYS: lock, stream; ARGV: origin, maxlen, exact key. */
static const char SCRIPT_DONE[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'o', ARGV[1], 's', '0', "
    "'k', 'f', 'x', ARGV[3], 'd', '')\n";

/* Removes each entry key whose entry still has the id removed here (or any,
 * for id 0: a newer answer under the key is spared, as in the store) and
 * writes the message; KEYS: entries..., stream; ARGV: origin, seq, maxlen,
 * the "d" payload. */
static const char SCRIPT_DEL[] =
    "local d = ARGV[4]\n"
    "for i = 1, #KEYS - 1 do\n"
    "  local id = string.sub(d, (i - 1) * 40 + 1, (i - 1) * 40 + 8)\n"
    "  if id == string.rep('\\0', 8) or redis.call('GETRANGE', KEYS[i], 0, 7) == id then\n"
    "    redis.call('DEL', KEYS[i])\n"
    "  end\n"
    "end\n"
    "return redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', ARGV[3], '*', 'o', ARGV[1], 's', "
    "ARGV[2], 'k', 'd', 'x', '', 'd', d)\n";

enum change_kind { CH_PUT, CH_DEL, CH_DONE, CH_CHARGE };

/* One queued change. */
struct change {
    struct change *next;
    enum change_kind kind;
    uint64_t seq;
    int64_t expires;              /* put: wall clock ms; 0 = never */
    uint8_t exact[CACHE_KEY_LEN]; /* put, done */
    uint64_t id;                  /* put */
    long rl[3];                   /* charge: rpm, tpm, tokens */
    size_t len;                   /* of data: the record, or n * REF_BYTES */
    uint8_t data[];
};

struct replica {
    struct replica_opts o;
    char *host, *user, *password, *ns, *state_file;
    char origin[17];
    char stream_key[128], entry_prefix[96], flight_prefix[96], rl_prefix[96], replicas_key[96];

    /* The queue: publish() appends, the writer takes from the head. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct change *head, *tail;
    size_t count, bytes;
    bool stop;

    /* Cross-replica single-flight, under mu: begun (SET NX not sent yet),
     * then asked or following (woken by an arrival or a deadline). */
    struct replica_waiter *fl_new, *fl_wait;
    bool fl_closed; /* replica_flight_release ran: no request waits any more */

    pthread_t writer, tailer, flighter;
    bool writer_on, tailer_on, flighter_on;

    /* Rate limits: idle connections for rl_take calls (HTTP workers). */
    pthread_mutex_t rl_mu;
    redisContext *rl_pool[RL_POOL];
    int rl_idle;
    _Atomic int64_t rl_down_until; /* wall ms: until then the local limiter decides */
    atomic_uint replicas;          /* live replicas, from the heartbeats; 0: not known */

    atomic_bool writer_up, tail_up, flight_up;
    atomic_uint_fast64_t flights_led, flights_followed, flights_timed_out;
    atomic_uint_fast64_t published, dropped, applied, apply_errors, reseeds, reseeded, redis_errors,
        queued;
    atomic_uint_fast64_t lag_us, rtt_us;
};

static void say(const struct replica *r, enum cache_log level, const char *msg, const char *detail)
{
    if (r->o.log)
        r->o.log(level, msg, detail);
}

static bool stopping(struct replica *r)
{
    bool s;

    pthread_mutex_lock(&r->mu);
    s = r->stop;
    pthread_mutex_unlock(&r->mu);
    return s;
}

/* Sleep ms, or less when the replica stops. */
static void nap(struct replica *r, long ms)
{
    struct timespec ts = clock_deadline_ms(ms);

    pthread_mutex_lock(&r->mu);
    if (!r->stop)
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    pthread_mutex_unlock(&r->mu);
}

/* ---- connections ---- */

/* A reply that is not an error, or NULL (then *why says what went wrong:
 * hiredis' own text or Redis' error, neither of which holds the password). */
static redisReply *command_ok(redisReply *rep, redisContext *ctx, char *why, size_t whylen)
{
    if (!rep) {
        snprintf(why, whylen, "%s", ctx->errstr[0] ? ctx->errstr : "no reply");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(why, whylen, "%.200s", rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* A connection, authenticated and on the right database, or NULL. The
 * reason is logged once per outage (*quiet is then set; a success clears
 * it). */
static redisContext *connect_redis(struct replica *r, const char *who, bool *quiet)
{
    struct timeval tv = {IO_TIMEOUT_MS / 1000, (IO_TIMEOUT_MS % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(r->host, r->o.port, tv);
    char why[256] = "";
    char detail[400];
    redisReply *rep;

    if (!ctx || ctx->err) {
        snprintf(why, sizeof(why), "%s", ctx ? ctx->errstr : "out of memory");
        goto fail;
    }
    redisSetTimeout(ctx, tv);
    if (r->password) {
        rep = r->user ? redisCommand(ctx, "AUTH %s %s", r->user, r->password)
                      : redisCommand(ctx, "AUTH %s", r->password);
        if (!(rep = command_ok(rep, ctx, why, sizeof(why))))
            goto fail;
        freeReplyObject(rep);
    }
    if (r->o.db) {
        rep = redisCommand(ctx, "SELECT %d", r->o.db);
        if (!(rep = command_ok(rep, ctx, why, sizeof(why))))
            goto fail;
        freeReplyObject(rep);
    }
    if (*quiet)
        say(r, CACHE_LOG_INFO, "redis connected", who);
    *quiet = false;
    return ctx;
fail:
    atomic_fetch_add(&r->redis_errors, 1);
    if (!*quiet) {
        snprintf(detail, sizeof(detail), "%s: %s:%d: %s", who, r->host, r->o.port, why);
        say(r, CACHE_LOG_WARN, "redis unreachable; retrying with backoff", detail);
    }
    *quiet = true;
    redisFree(ctx);
    return NULL;
}

static long backoff_next(long ms)
{
    return ms * 2 < BACKOFF_MAX_MS ? ms * 2 : BACKOFF_MAX_MS;
}

/* ---- publishing: the change hook and the writer thread ---- */

static struct change *change_new(enum change_kind kind, size_t len)
{
    struct change *ch = calloc(1, sizeof(*ch) + len);

    if (ch) {
        ch->kind = kind;
        ch->len = len;
    }
    return ch;
}

/* Append ch to the queue, or count it dropped when the queue is full. */
static void enqueue(struct replica *r, struct change *ch)
{
    pthread_mutex_lock(&r->mu);
    if (r->count >= r->o.queue_max || r->bytes + ch->len > QUEUE_BYTES) {
        pthread_mutex_unlock(&r->mu);
        atomic_fetch_add(&r->dropped, 1);
        free(ch);
        return;
    }
    if (r->tail)
        r->tail->next = ch;
    else
        r->head = ch;
    r->tail = ch;
    r->count++;
    r->bytes += ch->len;
    atomic_store(&r->queued, r->count);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void replica_publish(void *ud, const struct cache_change *c)
{
    struct replica *r = ud;
    struct change *ch;

    if (c->kind == CACHE_CHANGE_PUT) {
        if (!(ch = change_new(CH_PUT, c->rec_len))) {
            atomic_fetch_add(&r->dropped, 1);
            return;
        }
        ch->seq = c->seq;
        ch->expires = c->expires;
        ch->id = c->id;
        memcpy(ch->exact, c->exact, CACHE_KEY_LEN);
        memcpy(ch->data, c->rec, c->rec_len);
        enqueue(r, ch);
        return;
    }
    for (size_t i = 0; i < c->nrefs; i += DEL_PER_MSG) {
        size_t n = c->nrefs - i < DEL_PER_MSG ? c->nrefs - i : DEL_PER_MSG;
        if (!(ch = change_new(CH_DEL, n * REF_BYTES))) {
            atomic_fetch_add(&r->dropped, 1);
            continue;
        }
        ch->seq = c->seq;
        for (size_t j = 0; j < n; j++) {
            le_put64(ch->data + j * REF_BYTES, c->refs[i + j].id);
            memcpy(ch->data + j * REF_BYTES + 8, c->refs[i + j].exact, CACHE_KEY_LEN);
        }
        enqueue(r, ch);
    }
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = 0;
}

/* The key under prefix of an exact key (an entry, a single-flight lock). */
static void key_of(const char *prefix, const uint8_t *exact, char *out, size_t len)
{
    char h[2 * CACHE_KEY_LEN + 1];

    hex(exact, CACHE_KEY_LEN, h);
    snprintf(out, len, "%s%s", prefix, h);
}

#define KEY_LEN 256

/* Append ch's script to ctx's output. Returns 1 when appended, 0 when ch
 * has nothing left to say (an entry that expired while it waited), -1 out
 * of memory. */
static int append_change(struct replica *r, redisContext *ctx, const struct change *ch, int64_t now)
{
    char seq[24], maxlen[24], px[24];
    int rc;

    snprintf(seq, sizeof(seq), "%" PRIu64, ch->seq);
    snprintf(maxlen, sizeof(maxlen), "%ld", r->o.stream_maxlen);
    if (ch->kind == CH_PUT) {
        char key[KEY_LEN];
        uint8_t id[8];
        const char *argv[12];
        size_t argl[12];

        if (ch->expires && ch->expires <= now)
            return 0;
        key_of(r->entry_prefix, ch->exact, key, sizeof(key));
        le_put64(id, ch->id);
        snprintf(px, sizeof(px), "%" PRId64, ch->expires ? ch->expires - now : 0);
        argv[0] = "EVAL", argv[1] = SCRIPT_PUT, argv[2] = "2", argv[3] = key;
        argv[4] = r->stream_key, argv[5] = (const char *)id, argv[6] = (const char *)ch->data;
        argv[7] = px, argv[8] = r->origin, argv[9] = seq, argv[10] = maxlen;
        argv[11] = (const char *)ch->exact;
        /* Three of them are bytes, not strings. */
        for (int i = 0; i < 12; i++)
            argl[i] = i == 5    ? sizeof(id)
                      : i == 6  ? ch->len
                      : i == 11 ? CACHE_KEY_LEN
                                : strlen(argv[i]);
        rc = redisAppendCommandArgv(ctx, 12, argv, argl);
    } else if (ch->kind == CH_CHARGE) {
        char key[KEY_LEN], a[3][24];
        const char *argv[8];

        key_of(r->rl_prefix, ch->exact, key, sizeof(key));
        for (int i = 0; i < 3; i++)
            snprintf(a[i], sizeof(a[i]), "%ld", ch->rl[i]);
        argv[0] = "EVAL", argv[1] = SCRIPT_RL, argv[2] = "1", argv[3] = key;
        argv[4] = a[0], argv[5] = a[1], argv[6] = "charge", argv[7] = a[2];
        rc = redisAppendCommandArgv(ctx, 8, argv, NULL);
    } else if (ch->kind == CH_DONE) {
        char key[KEY_LEN];
        const char *argv[8];
        size_t argl[8];

        key_of(r->flight_prefix, ch->exact, key, sizeof(key));
        argv[0] = "EVAL", argv[1] = SCRIPT_DONE, argv[2] = "2", argv[3] = key;
        argv[4] = r->stream_key, argv[5] = r->origin, argv[6] = maxlen;
        argv[7] = (const char *)ch->exact;
        for (int i = 0; i < 7; i++)
            argl[i] = strlen(argv[i]);
        argl[7] = CACHE_KEY_LEN;
        rc = redisAppendCommandArgv(ctx, 8, argv, argl);
    } else {
        size_t n = ch->len / REF_BYTES, argc = 3 + n + 1 + 4, k = 0;
        const char **argv = calloc(argc, sizeof(*argv));
        size_t *argl = calloc(argc, sizeof(*argl));
        char(*keys)[KEY_LEN] = calloc(n ? n : 1, sizeof(*keys));
        char nkeys[24];

        if (!argv || !argl || !keys) {
            free(argv);
            free(argl);
            free(keys);
            return -1;
        }
        snprintf(nkeys, sizeof(nkeys), "%zu", n + 1);
        argv[k++] = "EVAL", argv[k++] = SCRIPT_DEL, argv[k++] = nkeys;
        for (size_t i = 0; i < n; i++) {
            key_of(r->entry_prefix, ch->data + i * REF_BYTES + 8, keys[i], KEY_LEN);
            argv[k++] = keys[i];
        }
        argv[k++] = r->stream_key, argv[k++] = r->origin, argv[k++] = seq, argv[k++] = maxlen;
        for (size_t i = 0; i < k; i++)
            argl[i] = strlen(argv[i]);
        argv[k] = (const char *)ch->data;
        argl[k++] = ch->len;
        rc = redisAppendCommandArgv(ctx, (int)k, argv, argl);
        free(argv);
        free(argl);
        free(keys);
    }
    return rc == REDIS_OK ? 1 : -1;
}

/* Is this error reply about the change itself ("ERR", "WRONGTYPE": sending
 * it again would fail again), rather than about the moment (LOADING after a
 * restart, OOM, BUSY, READONLY on a replica, NOPERM until an ACL is fixed)? */
static bool refused_for_good(const redisReply *rep)
{
    return strncmp(rep->str, "ERR", 3) == 0 || strncmp(rep->str, "WRONGTYPE", 9) == 0;
}

/* Write batch[0..n) in one pipelined round trip. Returns 0 when Redis took
 * every change (a change refused for good is logged, counted as dropped and
 * skipped), or -1 when the connection failed or Redis could not take a
 * change now: then the caller sends the whole batch again later (a change
 * applied twice is the same change). */
static int write_batch(struct replica *r, redisContext *ctx, struct change **batch, size_t n)
{
    int64_t now = clock_wall_ms();
    uint64_t t0 = clock_mono_ns();
    size_t sent = 0;
    int rc = 0;
    char why[256];

    for (size_t i = 0; i < n; i++) {
        int more = append_change(r, ctx, batch[i], now);
        if (more < 0)
            return -1;
        sent += (size_t)more;
    }
    for (size_t i = 0; i < sent; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(ctx, (void **)&rep) != REDIS_OK)
            return -1;
        if (rep->type != REDIS_REPLY_ERROR) {
            atomic_fetch_add(&r->published, 1);
        } else if (refused_for_good(rep)) {
            snprintf(why, sizeof(why), "%.200s", rep->str);
            atomic_fetch_add(&r->dropped, 1);
            say(r, CACHE_LOG_WARN, "redis refused a change; not replicated", why);
        } else {
            rc = -1; /* every reply is still read, to keep the connection in step */
        }
        freeReplyObject(rep);
    }
    if (sent)
        atomic_store(&r->rtt_us, (clock_mono_ns() - t0) / 1000);
    return rc;
}

/* Trim the stream by age: XADD trims it by length only. */
static void trim_by_age(struct replica *r, redisContext *ctx)
{
    char minid[32];
    redisReply *rep;

    if (r->o.stream_max_age <= 0)
        return;
    snprintf(minid, sizeof(minid), "%" PRId64, clock_wall_ms() - r->o.stream_max_age);
    rep = redisCommand(ctx, "XTRIM %s MINID ~ %s", r->stream_key, minid);
    freeReplyObject(rep);
}

/* The writer: takes up to BATCH changes from the head of the queue, writes
 * them, and only then removes them; on a failed connection it keeps them and
 * tries again after a backoff. On stop it writes what is queued for up to
 * STOP_FLUSH_MS. */
static void *writer_main(void *arg)
{
    struct replica *r = arg;
    redisContext *ctx = NULL;
    struct change *batch[BATCH];
    long backoff = BACKOFF_MIN_MS;
    bool quiet = false;
    int64_t last_trim = 0, deadline = 0;

    for (;;) {
        size_t n = 0;

        pthread_mutex_lock(&r->mu);
        if (!r->head && !r->stop) {
            struct timespec ts = clock_deadline_ms(1000);
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        if (r->stop && !deadline)
            deadline = clock_wall_ms() + STOP_FLUSH_MS;
        for (struct change *c = r->head; c && n < BATCH; c = c->next)
            batch[n++] = c;
        pthread_mutex_unlock(&r->mu);
        if (deadline && (n == 0 || clock_wall_ms() >= deadline))
            break;
        if (!ctx && !(ctx = connect_redis(r, "writer", &quiet))) {
            atomic_store(&r->writer_up, false);
            if (deadline)
                break; /* stopping, and Redis is away: what is queued is lost */
            nap(r, backoff);
            backoff = backoff_next(backoff);
            continue;
        }
        atomic_store(&r->writer_up, true);
        if (n && write_batch(r, ctx, batch, n) != 0) {
            atomic_fetch_add(&r->redis_errors, 1);
            redisFree(ctx);
            ctx = NULL;
            if (deadline)
                break;
            nap(r, backoff);
            backoff = backoff_next(backoff);
            continue;
        }
        backoff = BACKOFF_MIN_MS;
        pthread_mutex_lock(&r->mu);
        for (size_t i = 0; i < n; i++) {
            struct change *c = r->head;
            r->head = c->next;
            r->count--;
            r->bytes -= c->len;
            free(c);
        }
        if (!r->head)
            r->tail = NULL;
        atomic_store(&r->queued, r->count);
        pthread_mutex_unlock(&r->mu);
        if (clock_wall_ms() - last_trim >= TRIM_EVERY_MS) {
            trim_by_age(r, ctx);
            last_trim = clock_wall_ms();
        }
    }
    redisFree(ctx);
    return NULL;
}

/* ---- cross-replica single-flight ---- */

bool replica_flight_begin(struct replica *r, const uint8_t *exact, struct replica_waiter *w)
{
    /* Without a connection, asking would only delay a request that must go
     * to the provider anyway. */
    if (r->o.flight_wait <= 0 || !atomic_load(&r->flight_up))
        return false;
    memcpy(w->exact, exact, CACHE_KEY_LEN);
    w->deadline = 0;
    w->result = REPLICA_TIMEOUT;
    pthread_mutex_lock(&r->mu);
    if (r->fl_closed) {
        pthread_mutex_unlock(&r->mu);
        return false;
    }
    w->next = r->fl_new;
    r->fl_new = w;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return true;
}

void replica_flight_end(struct replica *r, const uint8_t *exact)
{
    struct change *ch = change_new(CH_DONE, 0);

    if (!ch)
        return; /* the lock expires on its own; the followers wait until then */
    memcpy(ch->exact, exact, CACHE_KEY_LEN);
    enqueue(r, ch);
}

/* Take w out of *list; false when it is not there (someone else woke it). */
static bool unlink_waiter(struct replica_waiter **list, struct replica_waiter *w)
{
    for (struct replica_waiter **p = list; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            return true;
        }
    return false;
}

/* Wake the waiters of woken (a list already taken out of the tables). */
static void wake_all(struct replica_waiter *woken)
{
    while (woken) {
        struct replica_waiter *next = woken->next;
        woken->wake(woken);
        woken = next;
    }
}

/* Move the waiters that match (exact, or every one when exact is NULL; or
 * past their deadline when now > 0) from *list to *out with result res. */
static void take_waiters(struct replica_waiter **list, const uint8_t *exact, int64_t now,
                         enum replica_flight res, struct replica_waiter **out)
{
    struct replica_waiter **p = list;

    while (*p) {
        struct replica_waiter *w = *p;
        bool match = now > 0 ? w->deadline && w->deadline <= now
                             : !exact || memcmp(w->exact, exact, CACHE_KEY_LEN) == 0;
        if (!match) {
            p = &w->next;
            continue;
        }
        *p = w->next;
        w->result = res;
        w->next = *out;
        *out = w;
    }
}

/* Another replica's answer for exact arrived, or its leader is done. */
static void arrived(struct replica *r, const uint8_t *exact)
{
    struct replica_waiter *woken = NULL;

    pthread_mutex_lock(&r->mu);
    take_waiters(&r->fl_new, exact, 0, REPLICA_ARRIVED, &woken);
    take_waiters(&r->fl_wait, exact, 0, REPLICA_ARRIVED, &woken);
    pthread_mutex_unlock(&r->mu);
    for (struct replica_waiter *w = woken; w; w = w->next)
        atomic_fetch_add(&r->flights_followed, 1);
    wake_all(woken);
}

/* Wake every waiting request to go alone; with close, none waits again. */
static void wake_every(struct replica *r, bool close)
{
    struct replica_waiter *woken = NULL;

    pthread_mutex_lock(&r->mu);
    r->fl_closed |= close;
    take_waiters(&r->fl_new, NULL, 0, REPLICA_TIMEOUT, &woken);
    take_waiters(&r->fl_wait, NULL, 0, REPLICA_TIMEOUT, &woken);
    pthread_mutex_unlock(&r->mu);
    wake_all(woken);
}

void replica_flight_release(struct replica *r)
{
    if (r)
        wake_every(r, true);
}

/* Ask Redis about batch[0..n) (moved to fl_wait already): SET NX PX on each
 * lock, pipelined. A lock taken means this request leads; a lock held by
 * another replica means it follows, until its deadline. -1: the connection
 * failed (the caller lets them all go alone). */
static int ask_leads(struct replica *r, redisContext *ctx, struct replica_waiter **batch, size_t n)
{
    char key[KEY_LEN], px[24];
    struct replica_waiter *woken = NULL;
    int rc = 0;

    snprintf(px, sizeof(px), "%" PRId64, r->o.flight_wait);
    for (size_t i = 0; i < n; i++) {
        key_of(r->flight_prefix, batch[i]->exact, key, sizeof(key));
        redisAppendCommand(ctx, "SET %s %s NX PX %s", key, r->origin, px);
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *rep = NULL;
        bool lead;
        if (rc == 0 && redisGetReply(ctx, (void **)&rep) != REDIS_OK)
            rc = -1;
        /* OK: the lock is ours. Nil: another replica holds it. An error
         * or a lost connection: nobody can say; go alone. */
        lead = rc != 0 || rep->type != REDIS_REPLY_NIL;
        pthread_mutex_lock(&r->mu);
        if (unlink_waiter(&r->fl_wait, batch[i])) {
            if (lead) {
                batch[i]->result =
                    rc == 0 && rep->type == REDIS_REPLY_STATUS ? REPLICA_LEAD : REPLICA_TIMEOUT;
                batch[i]->next = woken;
                woken = batch[i];
            } else {
                batch[i]->deadline = clock_wall_ms() + r->o.flight_wait;
                batch[i]->next = r->fl_wait;
                r->fl_wait = batch[i];
            }
        }
        pthread_mutex_unlock(&r->mu);
        freeReplyObject(rep);
    }
    for (struct replica_waiter *w = woken; w; w = w->next)
        if (w->result == REPLICA_LEAD)
            atomic_fetch_add(&r->flights_led, 1);
    wake_all(woken);
    return rc;
}

/* The flight thread: asks Redis for every begun flight, and wakes the
 * followers whose deadline passed. */
static void *flight_main(void *arg)
{
    struct replica *r = arg;
    redisContext *ctx = NULL;
    struct replica_waiter *batch[BATCH];
    long backoff = BACKOFF_MIN_MS;
    bool quiet = false;

    while (!stopping(r)) {
        struct replica_waiter *late = NULL;
        size_t n = 0;
        struct timespec ts;

        if (!ctx && !(ctx = connect_redis(r, "single-flight", &quiet))) {
            atomic_store(&r->flight_up, false);
            /* Redis went away: nobody can lead for all replicas now. */
            wake_every(r, false);
            nap(r, backoff);
            backoff = backoff_next(backoff);
            continue;
        }
        atomic_store(&r->flight_up, true);
        backoff = BACKOFF_MIN_MS;
        pthread_mutex_lock(&r->mu);
        if (!r->fl_new && !r->stop) {
            /* Often enough for deadlines to be kept within 50 ms. */
            ts = clock_deadline_ms(50);
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        while (r->fl_new && n < BATCH) {
            struct replica_waiter *w = r->fl_new;
            r->fl_new = w->next;
            batch[n++] = w;
            /* In fl_wait already, so that an answer arriving meanwhile
             * wakes it. */
            w->next = r->fl_wait;
            r->fl_wait = w;
        }
        take_waiters(&r->fl_wait, NULL, clock_wall_ms(), REPLICA_TIMEOUT, &late);
        pthread_mutex_unlock(&r->mu);
        for (struct replica_waiter *w = late; w; w = w->next)
            atomic_fetch_add(&r->flights_timed_out, 1);
        wake_all(late);
        if (n && ask_leads(r, ctx, batch, n) != 0) {
            atomic_fetch_add(&r->redis_errors, 1);
            atomic_store(&r->flight_up, false);
            redisFree(ctx);
            ctx = NULL;
        }
    }
    redisFree(ctx);
    return NULL;
}

/* ---- shared rate limits ---- */

int replica_rl_take(struct replica *r, const uint8_t *key, unsigned rpm, unsigned tpm,
                    int64_t *wait, const char **which)
{
    struct timeval tv = {0, RL_TIMEOUT_MS * 1000};
    redisContext *ctx = NULL;
    redisReply *rep = NULL;
    char k[KEY_LEN], a[2][24];
    const char *argv[8];

    if (clock_wall_ms() < atomic_load(&r->rl_down_until))
        return -EAGAIN;
    pthread_mutex_lock(&r->rl_mu);
    if (r->rl_idle > 0)
        ctx = r->rl_pool[--r->rl_idle];
    pthread_mutex_unlock(&r->rl_mu);
    if (!ctx) {
        /* A short connect: a request must not wait long for its limit. */
        ctx = redisConnectWithTimeout(r->host, r->o.port, tv);
        if (ctx && !ctx->err)
            redisSetTimeout(ctx, tv);
        if (ctx && !ctx->err && r->password) {
            rep = r->user ? redisCommand(ctx, "AUTH %s %s", r->user, r->password)
                          : redisCommand(ctx, "AUTH %s", r->password);
            if (!rep || rep->type == REDIS_REPLY_ERROR)
                ctx->err = REDIS_ERR_OTHER;
            freeReplyObject(rep);
        }
        if (ctx && !ctx->err && r->o.db) {
            rep = redisCommand(ctx, "SELECT %d", r->o.db);
            if (!rep || rep->type == REDIS_REPLY_ERROR)
                ctx->err = REDIS_ERR_OTHER;
            freeReplyObject(rep);
        }
        if (!ctx || ctx->err)
            goto down;
    }
    key_of(r->rl_prefix, key, k, sizeof(k));
    snprintf(a[0], sizeof(a[0]), "%u", rpm);
    snprintf(a[1], sizeof(a[1]), "%u", tpm);
    argv[0] = "EVAL", argv[1] = SCRIPT_RL, argv[2] = "1", argv[3] = k;
    argv[4] = a[0], argv[5] = a[1], argv[6] = "take", argv[7] = "0";
    rep = redisCommandArgv(ctx, 8, argv, NULL);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER)
        goto down;
    *wait = rep->element[0]->integer;
    *which =
        rep->element[1]->type == REDIS_REPLY_STRING && strcmp(rep->element[1]->str, "tokens") == 0
            ? "tokens"
            : "requests";
    freeReplyObject(rep);
    pthread_mutex_lock(&r->rl_mu);
    if (r->rl_idle < RL_POOL) {
        r->rl_pool[r->rl_idle++] = ctx;
        ctx = NULL;
    }
    pthread_mutex_unlock(&r->rl_mu);
    redisFree(ctx);
    return 0;
down:
    freeReplyObject(rep);
    redisFree(ctx);
    atomic_fetch_add(&r->redis_errors, 1);
    atomic_store(&r->rl_down_until, clock_wall_ms() + RL_RETRY_MS);
    return -EAGAIN;
}

void replica_rl_charge(struct replica *r, const uint8_t *key, unsigned rpm, unsigned tpm,
                       int64_t tokens)
{
    struct change *ch = change_new(CH_CHARGE, 0);

    if (!ch) {
        atomic_fetch_add(&r->dropped, 1);
        return;
    }
    memcpy(ch->exact, key, CACHE_KEY_LEN);
    ch->rl[0] = (long)rpm;
    ch->rl[1] = (long)tpm;
    ch->rl[2] = (long)tokens;
    enqueue(r, ch);
}

unsigned replica_count(struct replica *r)
{
    return atomic_load(&r->replicas);
}

/* ---- the tail thread ---- */

struct sid {
    uint64_t ms, seq;
};

static bool sid_parse(const char *s, struct sid *out)
{
    char *end;

    out->ms = strtoull(s, &end, 10);
    if (*end == 0) {
        out->seq = 0;
        return end != s;
    }
    if (*end != '-')
        return false;
    out->seq = strtoull(end + 1, &end, 10);
    return *end == 0;
}

static bool sid_less(const char *a, const char *b)
{
    struct sid x, y;

    if (!sid_parse(a, &x) || !sid_parse(b, &y))
        return true;
    return x.ms < y.ms || (x.ms == y.ms && x.seq < y.seq);
}

/* What the tail thread keeps between its calls. */
struct tail {
    redisContext *ctx;
    char last[ID_LEN]; /* the last id applied; "" : none yet */
    /* Checkpoints: cand is the newest id applied and the highest log
     * sequence number it took; once the log is durable up to that number,
     * cand becomes what the state file says. */
    char cand[ID_LEN];
    uint64_t cand_seq;
    char saved[ID_LEN];
    int64_t last_save;
    int64_t last_beat;
};

static void load_state(struct replica *r, struct tail *t)
{
    FILE *f;
    char ns[80], id[ID_LEN];
    struct sid unused;

    if (!r->state_file || !(f = fopen(r->state_file, "r")))
        return;
    if (fscanf(f, "%79s %47s", ns, id) == 2 && strcmp(ns, r->ns) == 0 && sid_parse(id, &unused)) {
        snprintf(t->last, sizeof(t->last), "%s", id);
        snprintf(t->saved, sizeof(t->saved), "%s", id);
    }
    fclose(f);
}

/* Write the state file (a temporary file renamed over it, so a crash leaves
 * the old one or the new one). */
static void save_state(struct replica *r, const char *id)
{
    char tmp[4200];
    FILE *f;
    bool ok;

    snprintf(tmp, sizeof(tmp), "%s.tmp", r->state_file);
    if (!(f = fopen(tmp, "w")))
        return;
    ok = fprintf(f, "%s %s\n", r->ns, id) > 0;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (ok)
        rename(tmp, r->state_file);
    else
        unlink(tmp);
}

/* Once a second: save the checkpoint when the local log holds it. */
static void checkpoint(struct replica *r, struct tail *t)
{
    struct cache_stats st;
    int64_t now = clock_wall_ms();

    if (!r->state_file || !t->cand[0] || now - t->last_save < 1000)
        return;
    t->last_save = now;
    cache_get_stats(r->o.cache, &st);
    if (st.durable && st.wal_durable_seq < t->cand_seq)
        return;
    if (strcmp(t->cand, t->saved) != 0) {
        save_state(r, t->cand);
        snprintf(t->saved, sizeof(t->saved), "%s", t->cand);
    }
}

static void applied_to(struct tail *t, const char *id, uint64_t seq)
{
    snprintf(t->last, sizeof(t->last), "%s", id);
    snprintf(t->cand, sizeof(t->cand), "%s", id);
    if (seq > t->cand_seq)
        t->cand_seq = seq;
}

/* The value named name in a flat [name, value, ...] reply, or NULL. */
static const redisReply *value_of(const redisReply *arr, const char *name)
{
    if (!arr || arr->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < arr->elements; i += 2)
        if (arr->element[i]->type == REDIS_REPLY_STRING && strcmp(arr->element[i]->str, name) == 0)
            return arr->element[i + 1];
    return NULL;
}

/* The same, when the value is a string. */
static const redisReply *field(const redisReply *arr, const char *name)
{
    const redisReply *v = value_of(arr, name);

    return v && v->type == REDIS_REPLY_STRING ? v : NULL;
}

/* Were messages after id last trimmed (or deleted) from the stream that
 * XINFO STREAM described as info? Redis 7.0's XTRIM does not move
 * max-deleted-entry-id, so the first entry decides too: when it comes after
 * last, what lay between may be gone (or last itself was the only thing
 * trimmed: a re-seed is then merely wasted). */
static bool trimmed_past(const redisReply *info, const char *last)
{
    const redisReply *maxdel = field(info, "max-deleted-entry-id");
    const redisReply *lastgen = field(info, "last-generated-id");
    const redisReply *first = value_of(info, "first-entry");

    if (maxdel && sid_less(last, maxdel->str))
        return true;
    if (first && first->type == REDIS_REPLY_ARRAY && first->elements == 2 &&
        first->element[0]->type == REDIS_REPLY_STRING)
        return sid_less(last, first->element[0]->str);
    /* An empty stream: trimmed past last if anything came after it. */
    return lastgen && sid_less(last, lastgen->str);
}

/* Apply one entry key's value (its id, then its record). */
static void apply_value(struct replica *r, const char *v, size_t len, uint64_t *seq)
{
    uint64_t s = 0;

    if (len <= 8 || cache_apply_put(r->o.cache, v + 8, len - 8, clock_wall_ms(), &s) != 0)
        atomic_fetch_add(&r->apply_errors, 1);
    else
        atomic_fetch_add(&r->reseeded, 1);
    if (s > *seq)
        *seq = s;
}

/* Every entry key into the cache, GETs pipelined per SCAN page. Returns 0,
 * or -1 when the connection failed (the caller re-seeds again). */
static int scan_entries(struct replica *r, struct tail *t, uint64_t *seq)
{
    char cursor[32] = "0", pattern[128];

    snprintf(pattern, sizeof(pattern), "%s*", r->entry_prefix);
    do {
        redisReply *page = redisCommand(t->ctx, "SCAN %s MATCH %s COUNT 256", cursor, pattern);
        const redisReply *keys;
        size_t n;

        if (!page || page->type != REDIS_REPLY_ARRAY || page->elements != 2) {
            freeReplyObject(page);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", page->element[0]->str);
        keys = page->element[1];
        n = keys->elements;
        for (size_t i = 0; i < n; i++)
            redisAppendCommand(t->ctx, "GET %b", keys->element[i]->str, keys->element[i]->len);
        for (size_t i = 0; i < n; i++) {
            redisReply *v = NULL;
            if (redisGetReply(t->ctx, (void **)&v) != REDIS_OK) {
                freeReplyObject(page);
                return -1;
            }
            /* Nil: the entry expired or was removed since the SCAN saw it. */
            if (v->type == REDIS_REPLY_STRING)
                apply_value(r, v->str, v->len, seq);
            freeReplyObject(v);
        }
        freeReplyObject(page);
    } while (strcmp(cursor, "0") != 0 && !stopping(r));
    return 0;
}

/* Every BEAT_EVERY_MS: say this replica is alive and count the live ones
 * (for the rate limits' fallback). -1: the connection failed. */
static int heartbeat(struct replica *r, struct tail *t)
{
    int64_t now = clock_wall_ms();
    redisReply *rep[3] = {NULL, NULL, NULL};
    int rc = 0;

    if (now - t->last_beat < BEAT_EVERY_MS)
        return 0;
    t->last_beat = now;
    redisAppendCommand(t->ctx, "ZADD %s %lld %s", r->replicas_key, (long long)now, r->origin);
    redisAppendCommand(t->ctx, "ZREMRANGEBYSCORE %s -inf %lld", r->replicas_key,
                       (long long)(now - REPLICA_TTL_MS));
    redisAppendCommand(t->ctx, "ZCARD %s", r->replicas_key);
    for (int i = 0; i < 3; i++)
        if (rc == 0 && redisGetReply(t->ctx, (void **)&rep[i]) != REDIS_OK)
            rc = -1;
    if (rc == 0 && rep[2]->type == REDIS_REPLY_INTEGER && rep[2]->integer > 0)
        atomic_store(&r->replicas, (unsigned)rep[2]->integer);
    for (int i = 0; i < 3; i++)
        freeReplyObject(rep[i]);
    return rc;
}

/* After a (re)connection: tail from the last id when every message after it
 * is still in the stream; else re-seed from the entry keys and tail from the
 * stream's last id as it was before the scan. -1: the connection failed. */
static int sync_tail(struct replica *r, struct tail *t)
{
    redisReply *info = redisCommand(t->ctx, "XINFO STREAM %s", r->stream_key);
    const redisReply *lastgen;
    char noted[ID_LEN] = "0-0", detail[200];
    uint64_t seq = 0;

    if (!info)
        return -1;
    /* Any error but a missing stream (LOADING after a restart, NOPERM):
     * try again after a reconnection rather than guess. */
    if (info->type == REDIS_REPLY_ERROR && !strstr(info->str, "no such key")) {
        freeReplyObject(info);
        return -1;
    }
    if (info->type == REDIS_REPLY_ARRAY) {
        lastgen = field(info, "last-generated-id");
        if (lastgen)
            snprintf(noted, sizeof(noted), "%s", lastgen->str);
        if (t->last[0] && !trimmed_past(info, t->last)) {
            freeReplyObject(info);
            return 0;
        }
    } else if (t->last[0]) {
        /* No stream (a new or emptied Redis): whatever comes next is new. */
        freeReplyObject(info);
        return 0;
    }
    freeReplyObject(info);
    snprintf(detail, sizeof(detail), "%s; tail from %s",
             t->last[0] ? "the changes after this replica's last id were trimmed"
                        : "no stream position yet",
             noted);
    say(r, CACHE_LOG_INFO, "re-seeding from redis", detail);
    if (scan_entries(r, t, &seq) != 0)
        return -1;
    atomic_fetch_add(&r->reseeds, 1);
    applied_to(t, noted, seq);
    return 0;
}

/* One stream message. */
/* A "d" message's entries out of the cache. 0, or -1 (counted by the
 * caller) for a payload that is not whole entries, or out of memory. */
static int apply_del(struct replica *r, const redisReply *d, uint64_t *seq)
{
    size_t n = d->len / REF_BYTES, removed;
    struct cache_ref *refs;
    int rc;

    if (d->len % REF_BYTES != 0 || !(refs = calloc(n ? n : 1, sizeof(*refs))))
        return -1;
    for (size_t i = 0; i < n; i++) {
        refs[i].id = le_get64((const uint8_t *)d->str + i * REF_BYTES);
        memcpy(refs[i].exact, d->str + i * REF_BYTES + 8, CACHE_KEY_LEN);
    }
    rc = cache_apply_del(r->o.cache, refs, n, &removed, seq);
    free(refs);
    return rc == 0 ? 0 : -1;
}

/* One stream message: another replica's change applied (and the requests
 * waiting for its key woken), or this replica's own noted. */
static void apply_message(struct replica *r, struct tail *t, const redisReply *msg)
{
    const redisReply *id, *fields, *o, *s, *k, *d, *x;
    uint64_t seq = 0;
    struct sid when;
    int rc = -1;

    if (msg->type != REDIS_REPLY_ARRAY || msg->elements != 2 ||
        (id = msg->element[0])->type != REDIS_REPLY_STRING)
        return;
    fields = msg->element[1];
    o = field(fields, "o"), s = field(fields, "s"), k = field(fields, "k"), d = field(fields, "d");
    x = field(fields, "x");
    if (o && s && k && d && x && strcmp(o->str, r->origin) == 0) {
        /* Ours: applied already; its log sequence number is what a
         * checkpoint past it must wait for. */
        seq = strtoull(s->str, NULL, 10);
        rc = 1;
    } else if (o && s && k && d && x) {
        if (strcmp(k->str, "p") == 0)
            rc = cache_apply_put(r->o.cache, d->str, d->len, clock_wall_ms(), &seq) == 0 ? 0 : -1;
        else if (strcmp(k->str, "d") == 0)
            rc = apply_del(r, d, &seq);
        else if (strcmp(k->str, "f") == 0)
            rc = 1; /* nothing to apply; only the waiters to wake */
        if (rc >= 0 && strcmp(k->str, "d") != 0 && x->len == CACHE_KEY_LEN)
            arrived(r, (const uint8_t *)x->str);
    }
    if (rc < 0)
        atomic_fetch_add(&r->apply_errors, 1);
    else if (rc == 0)
        atomic_fetch_add(&r->applied, 1);
    if (sid_parse(id->str, &when) && (int64_t)when.ms <= clock_wall_ms())
        atomic_store(&r->lag_us, (uint64_t)(clock_wall_ms() - (int64_t)when.ms) * 1000);
    applied_to(t, id->str, seq);
}

/* One XREAD. -1: the connection failed. */
static int read_some(struct replica *r, struct tail *t)
{
    redisReply *rep = redisCommand(t->ctx, "XREAD COUNT %d BLOCK %d STREAMS %s %s", READ_COUNT,
                                   BLOCK_MS, r->stream_key, t->last[0] ? t->last : "0-0");
    const redisReply *msgs;

    if (!rep)
        return -1;
    /* Nil: nothing new within BLOCK_MS. */
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2) {
        msgs = rep->element[0]->element[1];
        for (size_t i = 0; msgs->type == REDIS_REPLY_ARRAY && i < msgs->elements; i++)
            apply_message(r, t, msgs->element[i]);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        return -1; /* LOADING, NOPERM: after a backoff, from a new connection */
    }
    freeReplyObject(rep);
    return 0;
}

static void *tail_main(void *arg)
{
    struct replica *r = arg;
    struct tail t = {0};
    long backoff = BACKOFF_MIN_MS;
    bool quiet = false;

    load_state(r, &t);
    while (!stopping(r)) {
        if (!t.ctx) {
            if (!(t.ctx = connect_redis(r, "tail", &quiet))) {
                atomic_store(&r->tail_up, false);
                nap(r, backoff);
                backoff = backoff_next(backoff);
                continue;
            }
            t.last_beat = 0;
            if (sync_tail(r, &t) != 0)
                goto lost;
            atomic_store(&r->tail_up, true);
            backoff = BACKOFF_MIN_MS;
        }
        if (heartbeat(r, &t) != 0 || read_some(r, &t) != 0)
            goto lost;
        checkpoint(r, &t);
        continue;
    lost:
        atomic_fetch_add(&r->redis_errors, 1);
        atomic_store(&r->tail_up, false);
        redisFree(t.ctx);
        t.ctx = NULL;
        nap(r, backoff);
        backoff = backoff_next(backoff);
    }
    /* The last chance to save how far the log got. */
    t.last_save = 0;
    checkpoint(r, &t);
    if (t.ctx)
        freeReplyObject(redisCommand(t.ctx, "ZREM %s %s", r->replicas_key, r->origin));
    redisFree(t.ctx);
    return NULL;
}

/* ---- life cycle ---- */

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

static void replica_free(struct replica *r)
{
    struct change *c = r->head;

    while (c) {
        struct change *next = c->next;
        free(c);
        c = next;
    }
    for (int i = 0; i < r->rl_idle; i++)
        redisFree(r->rl_pool[i]);
    pthread_mutex_destroy(&r->rl_mu);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->host);
    free(r->user);
    free(r->password);
    free(r->ns);
    free(r->state_file);
    free(r);
}

int replica_start(const struct replica_opts *o, struct replica **out)
{
    struct replica *r = calloc(1, sizeof(*r));

    if (!r)
        return -ENOMEM;
    r->o = *o;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_mutex_init(&r->rl_mu, NULL);
    r->host = strdup(o->host);
    r->user = dup_or_null(o->user);
    r->password = dup_or_null(o->password);
    r->ns = strdup(o->ns);
    r->state_file = dup_or_null(o->state_file);
    if (!r->host || !r->ns || (o->password && *o->password && !r->password) ||
        (o->user && *o->user && !r->user) || (o->state_file && !r->state_file)) {
        replica_free(r);
        return -ENOMEM;
    }
    /* A new origin per process: after a restart this replica's own earlier
     * changes are applied like anyone's, which is harmless (a change
     * applied twice is the same change) and recovers what its log lost. */
    snprintf(r->origin, sizeof(r->origin), "%016" PRIx64, rand_u64());
    snprintf(r->stream_key, sizeof(r->stream_key), "parrot:{%s}:changes", r->ns);
    snprintf(r->entry_prefix, sizeof(r->entry_prefix), "parrot:{%s}:e:", r->ns);
    snprintf(r->flight_prefix, sizeof(r->flight_prefix), "parrot:{%s}:f:", r->ns);
    snprintf(r->rl_prefix, sizeof(r->rl_prefix), "parrot:{%s}:rl:", r->ns);
    snprintf(r->replicas_key, sizeof(r->replicas_key), "parrot:{%s}:replicas", r->ns);
    r->writer_on = thread_start(&r->writer, writer_main, r, "parrot-repl-out") == 0;
    r->tailer_on = r->writer_on && thread_start(&r->tailer, tail_main, r, "parrot-repl-in") == 0;
    r->flighter_on =
        r->tailer_on && thread_start(&r->flighter, flight_main, r, "parrot-repl-fl") == 0;
    if (!r->flighter_on) {
        replica_stop(r);
        return -EAGAIN;
    }
    *out = r;
    return 0;
}

void replica_stop(struct replica *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->writer_on)
        pthread_join(r->writer, NULL);
    if (r->tailer_on)
        pthread_join(r->tailer, NULL);
    if (r->flighter_on)
        pthread_join(r->flighter, NULL);
    /* No request may still wait (the caller released them before the
     * server stopped): none is left to wake here. */
    replica_free(r);
}

void replica_get_stats(struct replica *r, struct replica_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->writer_connected = atomic_load(&r->writer_up);
    st->tail_connected = atomic_load(&r->tail_up);
    st->queued = atomic_load(&r->queued);
    st->published = atomic_load(&r->published);
    st->dropped = atomic_load(&r->dropped);
    st->applied = atomic_load(&r->applied);
    st->apply_errors = atomic_load(&r->apply_errors);
    st->reseeds = atomic_load(&r->reseeds);
    st->reseeded = atomic_load(&r->reseeded);
    st->redis_errors = atomic_load(&r->redis_errors);
    st->flights_led = atomic_load(&r->flights_led);
    st->flights_followed = atomic_load(&r->flights_followed);
    st->flights_timed_out = atomic_load(&r->flights_timed_out);
    st->replicas = atomic_load(&r->replicas);
    st->lag_seconds = (double)atomic_load(&r->lag_us) / 1e6;
    st->rtt_seconds = (double)atomic_load(&r->rtt_us) / 1e6;
}
