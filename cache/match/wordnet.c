/* wordnet.c - the compiled WordNet table; see wordnet.h for what it answers.
 *
 * File format, little-endian (cache/base/le.h), written by deploy/wordnet_convert:
 *   0   "PRWN"           magic
 *   4   u32 version      2 (1 is read too: the same layout, no attributes)
 *   8   u32 nlemmas      lemmas, sorted by name (strcmp), distinct
 *   12  u32 nsynsets
 *   16  u32 nexc         exception-list entries, sorted by form then pos
 *   20  u32 npool        u32s in the pool
 *   24  u32 strings_len  bytes of the string area
 *   28  u32 reserved     0
 *   32  u64 checksum     FNV-1a 64 of every byte after the header
 *   40  lemma[nlemmas], 16 bytes each:
 *         u32 name       offset in strings of the NUL-terminated name
 *                        (lower case, '_' for a space)
 *         u32 run        index in pool of: nsyn synset ids (per part of
 *                        speech in WordNet's sense order, nouns first), then
 *                        nant antonym lemma ids, then nder derivationally
 *                        related lemma ids, then nattr attribute lemma ids
 *         u16 nsyn, u16 nant, u16 nder, u16 nattr (version 1: reserved,
 *                        not read)
 *       synset[nsynsets], 8 bytes each:
 *         u32 run        index in pool of: nlem lemma ids, then nhyp hypernym
 *                        synset ids (@ and @i)
 *         u8 nlem, u8 nhyp
 *         u8 pos         1 noun, 2 verb, 3 adjective (and satellite), 4 adverb
 *         u8 flags       bit 0: an instance (has an @i pointer)
 *       exc[nexc], 12 bytes each:
 *         u32 form, u32 base   offsets in strings
 *         u8 pos, u8[3] reserved 0
 *       u32 pool[npool]
 *       char strings[strings_len]
 *   The file ends there: its size is exactly what the header implies.
 * Anything that does not match (size, checksum, an offset or id out of range,
 * a name without its NUL, lemmas out of order) rejects the whole file, so
 * queries index the table without checks.
 *
 * Antonyms and derivations are lexical pointers in WordNet (sense to sense);
 * the table keeps them per lemma, which is what a verifier comparing two
 * words can use. An antonym pointer links its word to every word of the
 * target synset (safe / dangerous makes safe / unsafe too), in both
 * directions; a derivation links the two words only. An attribute (=) is
 * a semantic pointer from a noun to the adjectives that are its values
 * (height: tall, short); the table links each word of one synset to each
 * word of the other.
 */
#include "cache/match/wordnet.h"

#include "cache/base/hash.h"
#include "cache/base/le.h"
#include "cache/base/nameix.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC       "PRWN"
#define VERSION     2
#define HEADER      40
#define LEMMA_SIZE  16
#define SYNSET_SIZE 8
#define EXC_SIZE    12
#define MAX_FILE    (64u << 20) /* WordNet 3.0 compiles to about 8 MB */
#define MAX_SYNS    512         /* synsets gathered for one word's lemmas */
#define MAX_BASES   8           /* lemmas one word can reduce to */
#define WALK_MAX    256         /* synsets visited going up from one word */

struct wordnet {
    uint8_t *buf; /* the whole file */
    uint32_t version, nlem, nsyn, nexc, npool, slen;
    const uint8_t *lem, *syn, *exc, *pool;
    const char *str;
    uint32_t classes[WORDNET_CLASSES][2]; /* synset id + 1 per class; 0 = absent */
    /* Built at load, not stored: the lemmas by name, and the first
     * exception entry of each form by the form. */
    struct nameix lem_ix, exc_ix;
};

static const char *const CLASS_NAMES[WORDNET_CLASSES] = {"color", "language", "country",
                                                         "month", "weekday",  "unit"};

/* Each class by (lemma, sense numbers): resolved at load time, since the
 * table keeps WordNet's sense order but not its byte offsets. */
static const struct {
    const char *lemma;
    int sense[2]; /* 1-based noun senses; 0 = none */
} CLASS_DEF[WORDNET_CLASSES] = {
    {"color", {1, 0}}, {"language", {1, 0}},        {"country", {1, 2}},
    {"month", {1, 2}}, {"day_of_the_week", {1, 0}}, {"unit_of_measurement", {1, 0}},
};

static uint32_t pool_at(const struct wordnet *wn, uint32_t i)
{
    return le_get32(wn->pool + 4 * (size_t)i);
}

static const char *lem_name(const struct wordnet *wn, uint32_t l)
{
    return wn->str + le_get32(wn->lem + (size_t)l * LEMMA_SIZE);
}

static uint32_t lem_run(const struct wordnet *wn, uint32_t l)
{
    return le_get32(wn->lem + (size_t)l * LEMMA_SIZE + 4);
}

/* which: 0 synsets, 1 antonyms, 2 derivations, 3 attributes. */
static uint16_t lem_count(const struct wordnet *wn, uint32_t l, int which)
{
    const uint8_t *p = wn->lem + (size_t)l * LEMMA_SIZE + 8 + 2 * which;

    if (which == 3 && wn->version < 2)
        return 0;
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t syn_run(const struct wordnet *wn, uint32_t s)
{
    return le_get32(wn->syn + (size_t)s * SYNSET_SIZE);
}

static uint8_t syn_byte(const struct wordnet *wn, uint32_t s, int i)
{
    return wn->syn[(size_t)s * SYNSET_SIZE + 4 + i];
}

/* A NUL within the string area from off on. */
static bool str_ok(const struct wordnet *wn, uint32_t off)
{
    return off < wn->slen && memchr(wn->str + off, '\0', wn->slen - off) != NULL;
}

static int bad(char *err, size_t errlen, const char *why)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", why);
    return -EINVAL;
}

/* Every offset and id checked once, so that queries need not. */
static int validate(const struct wordnet *wn, char *err, size_t errlen)
{
    for (uint32_t l = 0; l < wn->nlem; l++) {
        uint32_t run = lem_run(wn, l);
        uint64_t end = (uint64_t)run + lem_count(wn, l, 0) + lem_count(wn, l, 1) +
                       lem_count(wn, l, 2) + lem_count(wn, l, 3);
        if (!str_ok(wn, le_get32(wn->lem + (size_t)l * LEMMA_SIZE)))
            return bad(err, errlen, "a lemma name outside the string area");
        if (l > 0 && strcmp(lem_name(wn, l - 1), lem_name(wn, l)) >= 0)
            return bad(err, errlen, "lemmas not in order");
        if (end > wn->npool)
            return bad(err, errlen, "a lemma's lists outside the pool");
        for (uint32_t i = 0; i < lem_count(wn, l, 0); i++)
            if (pool_at(wn, run + i) >= wn->nsyn)
                return bad(err, errlen, "a synset id out of range");
        for (uint32_t i = lem_count(wn, l, 0); run + i < end; i++)
            if (pool_at(wn, run + i) >= wn->nlem)
                return bad(err, errlen, "a lemma id out of range");
    }
    for (uint32_t s = 0; s < wn->nsyn; s++) {
        uint32_t run = syn_run(wn, s), nl = syn_byte(wn, s, 0), nh = syn_byte(wn, s, 1);
        uint8_t pos = syn_byte(wn, s, 2);
        if ((uint64_t)run + nl + nh > wn->npool || pos < WORDNET_NOUN || pos > WORDNET_ADV)
            return bad(err, errlen, "a synset's lists outside the pool, or a bad part of speech");
        for (uint32_t i = 0; i < nl; i++)
            if (pool_at(wn, run + i) >= wn->nlem)
                return bad(err, errlen, "a synset's lemma id out of range");
        for (uint32_t i = nl; i < nl + nh; i++)
            if (pool_at(wn, run + i) >= wn->nsyn)
                return bad(err, errlen, "a hypernym id out of range");
    }
    for (uint32_t e = 0; e < wn->nexc; e++) {
        const uint8_t *p = wn->exc + (size_t)e * EXC_SIZE;
        if (!str_ok(wn, le_get32(p)) || !str_ok(wn, le_get32(p + 4)) || p[8] < WORDNET_NOUN ||
            p[8] > WORDNET_ADV)
            return bad(err, errlen, "a bad exception-list entry");
        if (e > 0 && strcmp(wn->str + le_get32(p - EXC_SIZE), wn->str + le_get32(p)) > 0)
            return bad(err, errlen, "exception lists not in order");
    }
    return 0;
}

/* nameix_name_fn over the lemmas and over the exception entries' forms. */
static const char *lem_name_of(const void *wn, uint32_t l)
{
    return lem_name(wn, l);
}

static const char *exc_form_of(const void *ctx, uint32_t e)
{
    const struct wordnet *wn = ctx;

    return wn->str + le_get32(wn->exc + (size_t)e * EXC_SIZE);
}

/* The id of lemma name (already normalised), or -1. Lemma names are unique
 * (validate() checks their order), so the index finds what a binary
 * search over them would. */
static long find_lemma(const struct wordnet *wn, const char *name)
{
    return nameix_find(&wn->lem_ix, name, strlen(name), lem_name_of, wn);
}

/* The first of the exception entries for form w (they are sorted by form),
 * or wn->nexc when there is none. */
static uint32_t find_exc(const struct wordnet *wn, const char *w)
{
    long e = nameix_find(&wn->exc_ix, w, strlen(w), exc_form_of, wn);

    return e >= 0 ? (uint32_t)e : wn->nexc;
}

/* Indexes the lemmas and the exception forms (the first entry of each,
 * since nameix_add() keeps the first of equal names). 0 or -ENOMEM. */
static int index_names(struct wordnet *wn)
{
    if (nameix_init(&wn->lem_ix, wn->nlem) != 0 || nameix_init(&wn->exc_ix, wn->nexc) != 0)
        return -ENOMEM;
    for (uint32_t l = 0; l < wn->nlem; l++)
        nameix_add(&wn->lem_ix, l, lem_name_of, wn);
    for (uint32_t e = 0; e < wn->nexc; e++)
        nameix_add(&wn->exc_ix, e, exc_form_of, wn);
    return 0;
}

static void resolve_classes(struct wordnet *wn)
{
    for (int c = 0; c < WORDNET_CLASSES; c++) {
        long l = find_lemma(wn, CLASS_DEF[c].lemma);
        int nouns = 0;
        if (l < 0)
            continue;
        for (uint32_t i = 0; i < lem_count(wn, (uint32_t)l, 0); i++) {
            uint32_t s = pool_at(wn, lem_run(wn, (uint32_t)l) + i);
            if (syn_byte(wn, s, 2) != WORDNET_NOUN)
                continue;
            nouns++;
            for (int k = 0; k < 2; k++)
                if (CLASS_DEF[c].sense[k] == nouns)
                    wn->classes[c][k] = s + 1;
        }
    }
}

int wordnet_load(const char *path, struct wordnet **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct wordnet *wn = NULL;
    long size;
    uint64_t need;
    int rc;

    *out = NULL;
    if (!f)
        return -errno;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = -EIO;
        goto fail;
    }
    if (size < HEADER || (unsigned long)size > MAX_FILE) {
        rc = bad(err, errlen, "not a WordNet table (size)");
        goto fail;
    }
    wn = calloc(1, sizeof(*wn));
    if (!wn || !(wn->buf = malloc((size_t)size))) {
        rc = -ENOMEM;
        goto fail;
    }
    if (fread(wn->buf, 1, (size_t)size, f) != (size_t)size) {
        rc = -EIO;
        goto fail;
    }
    wn->version = le_get32(wn->buf + 4);
    if (memcmp(wn->buf, MAGIC, 4) != 0 || wn->version < 1 || wn->version > VERSION) {
        rc = bad(err, errlen, "not a WordNet table (magic or version)");
        goto fail;
    }
    wn->nlem = le_get32(wn->buf + 8);
    wn->nsyn = le_get32(wn->buf + 12);
    wn->nexc = le_get32(wn->buf + 16);
    wn->npool = le_get32(wn->buf + 20);
    wn->slen = le_get32(wn->buf + 24);
    need = HEADER + (uint64_t)wn->nlem * LEMMA_SIZE + (uint64_t)wn->nsyn * SYNSET_SIZE +
           (uint64_t)wn->nexc * EXC_SIZE + (uint64_t)wn->npool * 4 + wn->slen;
    if (need != (uint64_t)size) {
        rc = bad(err, errlen, "WordNet table: size does not match the header (truncated?)");
        goto fail;
    }
    if (hash_fnv(HASH_FNV_OFFSET, wn->buf + HEADER, (size_t)size - HEADER) !=
        le_get64(wn->buf + 32)) {
        rc = bad(err, errlen, "WordNet table: checksum mismatch");
        goto fail;
    }
    wn->lem = wn->buf + HEADER;
    wn->syn = wn->lem + (size_t)wn->nlem * LEMMA_SIZE;
    wn->exc = wn->syn + (size_t)wn->nsyn * SYNSET_SIZE;
    wn->pool = wn->exc + (size_t)wn->nexc * EXC_SIZE;
    wn->str = (const char *)(wn->pool + (size_t)wn->npool * 4);
    rc = validate(wn, err, errlen);
    if (rc != 0)
        goto fail;
    if ((rc = index_names(wn)) != 0)
        goto fail;
    resolve_classes(wn);
    fclose(f);
    *out = wn;
    return 0;
fail:
    fclose(f);
    wordnet_free(wn);
    return rc;
}

void wordnet_free(struct wordnet *wn)
{
    if (!wn)
        return;
    nameix_free(&wn->lem_ix);
    nameix_free(&wn->exc_ix);
    free(wn->buf);
    free(wn);
}

size_t wordnet_lemma_count(const struct wordnet *wn)
{
    return wn->nlem;
}

size_t wordnet_synset_count(const struct wordnet *wn)
{
    return wn->nsyn;
}

const char *wordnet_class_name(enum wordnet_class c)
{
    return c >= 0 && c < WORDNET_CLASSES ? CLASS_NAMES[c] : "none";
}

/* w[0..n) lower-cased, spaces as '_', into buf; false when it cannot be a
 * lemma (empty, too long, a NUL). */
static bool normalise(const char *w, size_t n, char *buf)
{
    while (n && (*w == ' ' || *w == '\t'))
        w++, n--;
    while (n && (w[n - 1] == ' ' || w[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= WORDNET_WORD_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = w[i];
        if (c == '\0')
            return false;
        buf[i] = c == ' ' ? '_' : (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    buf[n] = '\0';
    return true;
}

/* Lemma l has a synset of part of speech pos (any: WORDNET_ANY). */
static bool lemma_has_pos(const struct wordnet *wn, uint32_t l, enum wordnet_pos pos)
{
    if (pos == WORDNET_ANY)
        return lem_count(wn, l, 0) > 0;
    for (uint32_t i = 0; i < lem_count(wn, l, 0); i++)
        if (syn_byte(wn, pool_at(wn, lem_run(wn, l) + i), 2) == pos)
            return true;
    return false;
}

/* Adds lemma l to ids[*n] unless there or full. */
static void add_id(uint32_t *ids, size_t *n, size_t max, uint32_t l)
{
    for (size_t i = 0; i < *n; i++)
        if (ids[i] == l)
            return;
    if (*n < max)
        ids[(*n)++] = l;
}

/* WordNet's detachment rules (morphy): suffix -> ending, per part of speech,
 * with their lengths (every word the verifier relates goes through all of
 * them). */
/* clang-format off */
#define RULE(pos, suffix, ending) {pos, suffix, ending, sizeof(suffix) - 1, sizeof(ending) - 1}
/* clang-format on */
static const struct {
    enum wordnet_pos pos;
    const char *suffix, *ending;
    size_t sl, el;
} RULES[] = {
    RULE(WORDNET_NOUN, "s", ""),      RULE(WORDNET_NOUN, "ses", "s"),
    RULE(WORDNET_NOUN, "xes", "x"),   RULE(WORDNET_NOUN, "zes", "z"),
    RULE(WORDNET_NOUN, "ches", "ch"), RULE(WORDNET_NOUN, "shes", "sh"),
    RULE(WORDNET_NOUN, "men", "man"), RULE(WORDNET_NOUN, "ies", "y"),
    RULE(WORDNET_VERB, "s", ""),      RULE(WORDNET_VERB, "ies", "y"),
    RULE(WORDNET_VERB, "es", "e"),    RULE(WORDNET_VERB, "es", ""),
    RULE(WORDNET_VERB, "ed", "e"),    RULE(WORDNET_VERB, "ed", ""),
    RULE(WORDNET_VERB, "ing", "e"),   RULE(WORDNET_VERB, "ing", ""),
    RULE(WORDNET_ADJ, "er", ""),      RULE(WORDNET_ADJ, "est", ""),
    RULE(WORDNET_ADJ, "er", "e"),     RULE(WORDNET_ADJ, "est", "e"),
};
#undef RULE

/* The lemma ids of word (normalised in w) as pos: see wordnet_lemmatise. */
static size_t lemma_ids(const struct wordnet *wn, const char *w, enum wordnet_pos pos,
                        uint32_t *ids, size_t max)
{
    size_t n = 0, len = strlen(w);
    long l = find_lemma(wn, w);

    if (l >= 0 && lemma_has_pos(wn, (uint32_t)l, pos))
        add_id(ids, &n, max, (uint32_t)l);
    /* The exception lists: the first entry for w, then its neighbours. */
    for (uint32_t e = find_exc(wn, w); e < wn->nexc; e++) {
        const uint8_t *p = wn->exc + (size_t)e * EXC_SIZE;
        if (strcmp(wn->str + le_get32(p), w) != 0)
            break;
        if (pos != WORDNET_ANY && p[8] != pos)
            continue;
        l = find_lemma(wn, wn->str + le_get32(p + 4));
        if (l >= 0)
            add_id(ids, &n, max, (uint32_t)l);
    }
    for (size_t r = 0; r < sizeof(RULES) / sizeof(RULES[0]); r++) {
        size_t sl = RULES[r].sl, el = RULES[r].el;
        char cand[WORDNET_WORD_MAX + 4];
        if (pos != WORDNET_ANY && RULES[r].pos != pos)
            continue;
        /* the last letter first: most rules fail on it */
        if (len <= sl || w[len - 1] != RULES[r].suffix[sl - 1] ||
            memcmp(w + len - sl, RULES[r].suffix, sl) != 0)
            continue;
        memcpy(cand, w, len - sl);
        memcpy(cand + len - sl, RULES[r].ending, el + 1);
        l = find_lemma(wn, cand);
        if (l >= 0 && lemma_has_pos(wn, (uint32_t)l, RULES[r].pos))
            add_id(ids, &n, max, (uint32_t)l);
    }
    return n;
}

size_t wordnet_lemmatise(const struct wordnet *wn, const char *w, size_t n, enum wordnet_pos pos,
                         const char **out, size_t max)
{
    char buf[WORDNET_WORD_MAX];
    uint32_t ids[MAX_BASES];
    size_t k;

    if (!normalise(w, n, buf))
        return 0;
    k = lemma_ids(wn, buf, pos, ids, max < MAX_BASES ? max : MAX_BASES);
    for (size_t i = 0; i < k; i++)
        out[i] = lem_name(wn, ids[i]);
    return k;
}

/* The lemma ids of w[0..n), any part of speech. */
static size_t bases(const struct wordnet *wn, const char *w, size_t n, uint32_t *ids)
{
    char buf[WORDNET_WORD_MAX];

    return normalise(w, n, buf) ? lemma_ids(wn, buf, WORDNET_ANY, ids, MAX_BASES) : 0;
}

/* The synsets of the lemmas ids[0..k) (nouns only when nouns_only). */
static size_t synsets_of(const struct wordnet *wn, const uint32_t *ids, size_t k, bool nouns_only,
                         uint32_t *syn, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < lem_count(wn, ids[i], 0); j++) {
            uint32_t s = pool_at(wn, lem_run(wn, ids[i]) + j);
            if (!nouns_only || syn_byte(wn, s, 2) == WORDNET_NOUN)
                add_id(syn, &n, max, s);
        }
    return n;
}

static bool contains(const uint32_t *v, size_t n, uint32_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

/* The synsets that are among the first rank[pos] senses of their part of
 * speech pos for some lemma of w[0..n) (the table keeps WordNet's sense
 * order, most frequent first); none of a part whose rank is 0. */
static size_t ranked_synsets(const struct wordnet *wn, const char *w, size_t n,
                             const unsigned rank[WORDNET_ADV + 1], uint32_t *syn, size_t max)
{
    uint32_t ids[MAX_BASES];
    size_t k = bases(wn, w, n, ids), m = 0;

    for (size_t i = 0; i < k; i++) {
        unsigned seen[WORDNET_ADV + 1] = {0};
        for (uint32_t j = 0; j < lem_count(wn, ids[i], 0); j++) {
            uint32_t s = pool_at(wn, lem_run(wn, ids[i]) + j);
            unsigned pos = syn_byte(wn, s, 2);
            if (pos <= WORDNET_ADV && ++seen[pos] <= rank[pos])
                add_id(syn, &m, max, s);
        }
    }
    return m;
}

/* The synsets among the first `rank` senses of each part of speech of
 * w[0..n); every sense when rank is 0. */
static size_t main_synsets(const struct wordnet *wn, const char *w, size_t n, unsigned rank,
                           uint32_t *syn, size_t max)
{
    unsigned r = rank ? rank : UINT_MAX;
    const unsigned ranks[WORDNET_ADV + 1] = {r, r, r, r, r};

    return ranked_synsets(wn, w, n, ranks, syn, max);
}

/* sa[0..ma) and sb[0..mb) share a synset. */
static bool share_one(const uint32_t *sa, size_t ma, const uint32_t *sb, size_t mb)
{
    for (size_t i = 0; i < ma; i++)
        if (contains(sb, mb, sa[i]))
            return true;
    return false;
}

/* The synsets of a and of b (through their base forms) into sa[0..*ma) and
 * sb[0..*mb), each MAX_SYNS long; true when the two share one. */
static bool synsets_of_both(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                            size_t blen, uint32_t *sa, size_t *ma, uint32_t *sb, size_t *mb)
{
    *ma = main_synsets(wn, a, alen, 0, sa, MAX_SYNS);
    *mb = main_synsets(wn, b, blen, 0, sb, MAX_SYNS);
    return share_one(sa, *ma, sb, *mb);
}

bool wordnet_synonyms(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                      size_t blen, unsigned rank)
{
    uint32_t sa[MAX_SYNS], sb[MAX_SYNS];
    size_t ma = main_synsets(wn, a, alen, rank, sa, MAX_SYNS),
           mb = main_synsets(wn, b, blen, rank, sb, MAX_SYNS);

    return share_one(sa, ma, sb, mb);
}

bool wordnet_synonyms_ranked(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                             size_t blen, const unsigned rank[WORDNET_ADV + 1])
{
    uint32_t sa[MAX_SYNS], sb[MAX_SYNS];
    size_t ma = ranked_synsets(wn, a, alen, rank, sa, MAX_SYNS),
           mb = ranked_synsets(wn, b, blen, rank, sb, MAX_SYNS);

    return share_one(sa, ma, sb, mb);
}

/* Some lemma of a lists some lemma of b in its list which (1 antonyms, 2
 * derivations, 3 attributes: lem_count()); the converter stores both
 * directions. */
static bool linked(const struct wordnet *wn, const char *a, size_t alen, const char *b, size_t blen,
                   int which)
{
    uint32_t la[MAX_BASES], lb[MAX_BASES];
    size_t na = bases(wn, a, alen, la), nb = bases(wn, b, blen, lb);

    for (size_t i = 0; i < na; i++) {
        uint32_t run = lem_run(wn, la[i]);
        for (int k = 0; k < which; k++)
            run += lem_count(wn, la[i], k);
        for (uint32_t j = 0; j < lem_count(wn, la[i], which); j++)
            if (contains(lb, nb, pool_at(wn, run + j)))
                return true;
    }
    return false;
}

bool wordnet_derivationally_related(const struct wordnet *wn, const char *a, size_t alen,
                                    const char *b, size_t blen)
{
    return linked(wn, a, alen, b, blen, 2);
}

bool wordnet_antonyms(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                      size_t blen)
{
    return linked(wn, a, alen, b, blen, 1);
}

bool wordnet_attribute(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                       size_t blen)
{
    return linked(wn, a, alen, b, blen, 3);
}

bool wordnet_cohyponyms(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                        size_t blen)
{
    uint32_t sa[MAX_SYNS], sb[MAX_SYNS];
    size_t ma, mb;

    if (synsets_of_both(wn, a, alen, b, blen, sa, &ma, sb, &mb))
        return false; /* synonyms in some sense: not two kinds */
    for (size_t i = 0; i < ma; i++) {
        uint32_t ri = syn_run(wn, sa[i]) + syn_byte(wn, sa[i], 0);
        for (size_t j = 0; j < mb; j++) {
            uint32_t rj = syn_run(wn, sb[j]) + syn_byte(wn, sb[j], 0);
            for (uint32_t x = 0; x < syn_byte(wn, sa[i], 1); x++)
                for (uint32_t y = 0; y < syn_byte(wn, sb[j], 1); y++)
                    if (pool_at(wn, ri + x) == pool_at(wn, rj + y))
                        return true;
        }
    }
    return false;
}

/* The verb synsets of a, and their hypernyms up to depth steps, into up. */
static size_t verb_ups(const struct wordnet *wn, const uint32_t *syn, size_t m, unsigned depth,
                       uint32_t *up, size_t max)
{
    size_t n = 0, from = 0;

    for (size_t i = 0; i < m; i++)
        if (syn_byte(wn, syn[i], 2) == WORDNET_VERB)
            add_id(up, &n, max, syn[i]);
    for (unsigned d = 0; d < depth; d++) {
        size_t to = n;
        for (size_t i = from; i < to; i++) {
            uint32_t r = syn_run(wn, up[i]) + syn_byte(wn, up[i], 0);
            for (uint32_t h = 0; h < syn_byte(wn, up[i], 1); h++)
                add_id(up, &n, max, pool_at(wn, r + h));
        }
        from = to;
    }
    return n;
}

bool wordnet_verb_hypernym(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                           size_t blen, unsigned depth, unsigned rank)
{
    uint32_t sa[MAX_SYNS], sb[MAX_SYNS], up[MAX_SYNS];
    size_t ma = main_synsets(wn, a, alen, rank, sa, MAX_SYNS);
    size_t mb = main_synsets(wn, b, blen, rank, sb, MAX_SYNS);
    size_t k;

    /* a's verb senses and what they are kinds of, against b's verb senses,
     * then the other way round */
    k = verb_ups(wn, sa, ma, depth, up, MAX_SYNS);
    for (size_t i = 0; i < mb; i++)
        if (syn_byte(wn, sb[i], 2) == WORDNET_VERB && contains(up, k, sb[i]))
            return true;
    k = verb_ups(wn, sb, mb, depth, up, MAX_SYNS);
    for (size_t i = 0; i < ma; i++)
        if (syn_byte(wn, sa[i], 2) == WORDNET_VERB && contains(up, k, sa[i]))
            return true;
    return false;
}

bool wordnet_is_instance(const struct wordnet *wn, const char *w, size_t n)
{
    uint32_t l[MAX_BASES], s[MAX_SYNS];
    size_t k = bases(wn, w, n, l), m = synsets_of(wn, l, k, true, s, MAX_SYNS);

    for (size_t i = 0; i < m; i++)
        if (syn_byte(wn, s[i], 3) & 1)
            return true;
    return false;
}

size_t wordnet_sense_count(const struct wordnet *wn, const char *w, size_t n, enum wordnet_pos pos)
{
    uint32_t l[MAX_BASES];
    size_t k = bases(wn, w, n, l), count = 0;

    for (size_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < lem_count(wn, l[i], 0); j++)
            count += pos == WORDNET_ANY ||
                     syn_byte(wn, pool_at(wn, lem_run(wn, l[i]) + j), 2) == (uint8_t)pos;
    return count;
}

bool wordnet_instance_first(const struct wordnet *wn, const char *w, size_t n)
{
    uint32_t l[MAX_BASES];
    size_t k = bases(wn, w, n, l);
    uint32_t s;

    if (k == 0 || lem_count(wn, l[0], 0) == 0)
        return false;
    s = pool_at(wn, lem_run(wn, l[0]));
    return syn_byte(wn, s, 2) == WORDNET_NOUN && (syn_byte(wn, s, 3) & 1);
}

enum wordnet_class wordnet_closed_class(const struct wordnet *wn, const char *w, size_t n)
{
    uint32_t l[MAX_BASES], seen[WALK_MAX];
    size_t k = bases(wn, w, n, l);
    /* Breadth first up the hypernyms of every noun sense; seen doubles as the
     * queue. WordNet's noun hierarchy is at most about 20 deep, and WALK_MAX
     * bounds the work for words with many senses. The word's own senses
     * (seen[0..own)) do not count: "color" names the class, it is not a
     * member of it. */
    size_t m = synsets_of(wn, l, k, true, seen, WALK_MAX), own = m;

    for (size_t i = 0; i < m; i++) {
        uint32_t s = seen[i], run = syn_run(wn, s) + syn_byte(wn, s, 0);
        for (int c = 0; c < WORDNET_CLASSES && i >= own; c++)
            if (wn->classes[c][0] == s + 1 || wn->classes[c][1] == s + 1)
                return (enum wordnet_class)c;
        for (uint32_t x = 0; x < syn_byte(wn, s, 1); x++)
            add_id(seen, &m, WALK_MAX, pool_at(wn, run + x));
    }
    return WORDNET_CLASS_NONE;
}
