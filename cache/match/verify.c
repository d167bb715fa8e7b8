/* verify.c - the hit verifier; see verify.h.
 *
 * Each check compares what the two questions ask, not how they put it; the
 * words come from embed_split(), so both sides are lower-cased, with
 * contractions spelled out and stemmed, exactly as the embedder saw them.
 *
 * Numbers: every run of digits (with its decimal part) in the query must
 * appear in the candidate as often, and the other way round. "3 pm" vs
 * "4 pm", "2+2" vs "2+3", "iPhone 14" vs "iPhone 15" all fail here.
 *
 * Negation: the number of negating words must have the same parity, so "can
 * I" vs "can't I" fails while a double negative on both sides passes. A
 * negation that only hedges is not counted: "I don't know why" / "I'm not
 * sure if" / "can't figure out how" (the asker does not know the answer,
 * which is why they ask), "... or not", and a closing tag ("aren't you").
 *
 * Opposites: a list of word pairs (on/off, up/down, add/remove, enable/
 * disable, increase/decrease, lock/unlock, before/after, my/your, ...): the
 * check fails when one side has one word of a pair and not the other, and
 * the other side has the other word and not the first.
 *
 * Question: when, where, who, why and how much/many ask for different
 * things; when both sides ask with question words and those differ, the
 * check fails ("when do I get paid" vs "what do I get paid"). What, which
 * and how are interchangeable, and a question put as a request ("tell me
 * the weather") has no question word, so it matches either.
 *
 * Action: one side asks to change something (delete, cancel, increase,
 * reset, ...) and the other does not ("delete everything on my todo list"
 * vs "is there anything on my todo list").
 *
 * Tense: did, was and were on one side only ("when did I change my oil" vs
 * "when should I change my oil").
 *
 * Content: a word that is not a number and not on the neutral list (words
 * a paraphrase adds or drops without changing the question: articles,
 * pronouns, auxiliaries, request framing, question words, which the checks
 * above cover) must find its stem on the other side. More than 2 unmatched
 * such words, or more than 18% of them on both sides together, fail: short
 * questions must agree on every content word, longer ones may differ in one
 * or two ("how do I reset my password" vs "how do I change my password"
 * fails; "in french how do I say see you later" may match "how do you say
 * see you later in french"). With the built-in embedder's word-vector
 * table, a content word unmatched on one side also counts as matched when
 * a content word unmatched on the other side has a close vector (cosine
 * >= NEAR_COS: "vacation" / "holiday"); only leftover words pair up, so a
 * word cannot stand in for one that already has its match. With the table,
 * a word one edit from a content word of the other side is a typo of it
 * when the table does not know one of the two ("statud" / "status").
 *
 * Calibrated on CLINC150 and measured on BANKING77 and Quora pairs:
 * docs/quality.md has the rejections per reason, the correct hits each
 * check costs and the wrong hits it stops.
 */
#include "cache/match/verify.h"

#include "cache/match/embed.h"
#include "cache/base/hash.h"
#include "cache/match/wordvec.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

#define MAX_NUMS     32
#define NUM_LEN      24
#define MAX_WORDS    96    /* words compared per side; the rest is ignored */
#define MAX_MISSING  2     /* unmatched content words allowed, both sides ... */
#define MAX_MISS_PCT 18    /* ... and at most this share of them */
#define TYPO_LEN     4     /* shorter words are not taken for typos */
#define NEAR_COS     0.55f /* word vectors this close stand for each other */

static const char *const names[VERIFY_REASONS] = {"ok",       "numbers", "negation", "opposite",
                                                  "question", "action",  "tense",    "content"};

const char *verify_reason_name(enum verify_reason r)
{
    return (unsigned)r < VERIFY_REASONS ? names[r] : "?";
}

struct nums {
    char v[MAX_NUMS][NUM_LEN];
    int n;
    bool overflow;
};

/* Collects digit runs, "3.5" as one number, "1,000" as "1000". */
static void numbers(const char *s, size_t len, struct nums *out)
{
    out->n = 0;
    out->overflow = false;
    for (size_t i = 0; i < len;) {
        size_t k = 0;
        char *d;

        if (!isdigit((unsigned char)s[i])) {
            i++;
            continue;
        }
        if (out->n == MAX_NUMS) {
            out->overflow = true;
            return;
        }
        d = out->v[out->n];
        while (i < len && k + 1 < NUM_LEN) {
            char ch = s[i];
            if (isdigit((unsigned char)ch)) {
                d[k++] = ch;
                i++;
                continue;
            }
            if ((ch != '.' && ch != ',') || i + 1 >= len || !isdigit((unsigned char)s[i + 1]))
                break;
            if (ch == '.')
                d[k++] = '.'; /* a decimal point is kept; a thousands comma is not */
            i++;
        }
        while (i < len && isdigit((unsigned char)s[i]))
            i++; /* an absurdly long number: its prefix stands for it */
        d[k] = '\0';
        out->n++;
    }
}

/* Same multiset of numbers on both sides. */
static bool same_numbers(const struct nums *a, const struct nums *b)
{
    bool used[MAX_NUMS] = {false};

    if (a->n != b->n || a->overflow != b->overflow)
        return false;
    for (int i = 0; i < a->n; i++) {
        int j;
        for (j = 0; j < b->n; j++)
            if (!used[j] && strcmp(a->v[i], b->v[j]) == 0)
                break;
        if (j == b->n)
            return false;
        used[j] = true;
    }
    return true;
}

/* One word of the raw text, as negating() sees it. */
struct span {
    const char *p;
    size_t n;
};

static bool span_is(struct span w, const char *const *set)
{
    for (int i = 0; set[i]; i++)
        if (strlen(set[i]) == w.n && strncasecmp(w.p, set[i], w.n) == 0)
            return true;
    return false;
}

/* Most words are no negation: only one ending in "t" or starting with n, c
 * or w is held against the lists. */
static bool negating(struct span w)
{
    static const char *const neg[] = {"not",    "no",      "never", "none",    "nothing",
                                      "cannot", "without", "nor",   "neither", NULL};
    /* "dont", "cant", "wont": apostrophes are often dropped. */
    static const char *const bare[] = {"dont",     "cant",    "wont",  "isnt",   "arent",
                                       "doesnt",   "didnt",   "wasnt", "werent", "couldnt",
                                       "shouldnt", "wouldnt", "hasnt", "havent", NULL};
    int first = tolower((unsigned char)w.p[0]), last = tolower((unsigned char)w.p[w.n - 1]);

    if (last == 't' && w.n > 3 && strncasecmp(w.p + w.n - 3, "n't", 3) == 0)
        return true;
    if (last == 't' && w.n > 2 && tolower((unsigned char)w.p[w.n - 2]) == 'n' && span_is(w, bare))
        return true;
    return (first == 'n' || first == 'c' || first == 'w') && span_is(w, neg);
}

/* The next word of s[0..len) at or after *pos (letters and apostrophes),
 * moving *pos past it; false when there is none. */
static bool next_word(const char *s, size_t len, size_t *pos, struct span *w)
{
    size_t i = *pos;

    while (i < len && !isalpha((unsigned char)s[i]))
        i++;
    *pos = i;
    if (i == len)
        return false;
    while (*pos < len && (isalpha((unsigned char)s[*pos]) || s[*pos] == '\''))
        (*pos)++;
    *w = (struct span){s + i, *pos - i};
    return true;
}

/* Is the negating word w, after the word prev (NULL: none) and followed by
 * s[after..len), a negation that does not change what is asked?
 * - it denies the asker's own knowledge of the answer ("i don't know why my
 *   card was declined", "i'm not sure if i need a visa", "i can't figure out
 *   how"): the same question as "why was my card declined";
 * - "or not" ("will my 401k roll over or not");
 * - a tag at the end ("you are a bot, aren't you"). */
static bool hedge(const char *s, size_t len, size_t after, const struct span *prev, struct span w)
{
    static const char *const knowing[] = {"know",     "sure",   "certain", "figure", "understand",
                                          "remember", "recall", "idea",    "clue",   NULL};
    static const char *const filler[] = {"really", "quite", "even",    "have", "any",
                                         "a",      "the",   "totally", NULL};
    static const char *const pronoun[] = {"i",  "you", "it",    "we",   "they",
                                          "he", "she", "there", "that", NULL};
    static const char *const or_[] = {"or", NULL};
    struct span x;
    size_t pos = after;

    if (prev && span_is(*prev, or_))
        return true;
    for (int k = 0; k < 3 && next_word(s, len, &pos, &x); k++) {
        if (span_is(x, knowing))
            return true;
        if (!span_is(x, filler))
            break;
    }
    pos = after;
    return w.n > 3 && strncasecmp(w.p + w.n - 3, "n't", 3) == 0 && next_word(s, len, &pos, &x) &&
           span_is(x, pronoun) && !next_word(s, len, &pos, &x);
}

static int negations(const char *s, size_t len)
{
    struct span w, prev;
    size_t pos = 0;
    int count = 0;
    bool first = true;

    while (next_word(s, len, &pos, &w)) {
        count += negating(w) && !hedge(s, len, pos, first ? NULL : &prev, w);
        prev = w;
        first = false;
    }
    return count;
}

/* ---- word sets ---- */

/* A fixed list of words found by hash (open addressing, a quarter full):
 * one hash and about one comparison per word, for the lists held against
 * every word of every candidate. */
#define SET_SLOTS 512

struct wordset {
    const char *slot[SET_SLOTS];
};

static size_t word_hash(const char *w)
{
    return (size_t)hash_fnv_str(HASH_FNV_OFFSET, w);
}

/* Adds w, which must outlive the set; at most SET_SLOTS / 2 words. */
static void wordset_add(struct wordset *set, const char *w)
{
    size_t k = word_hash(w) & (SET_SLOTS - 1);

    while (set->slot[k])
        k = (k + 1) & (SET_SLOTS - 1);
    set->slot[k] = w;
}

static void wordset_fill(struct wordset *set, const char *const *words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wordset_add(set, words[i]);
}

/* The set's own pointer for w, or NULL. */
static const char *wordset_find(const struct wordset *set, const char *w)
{
    for (size_t k = word_hash(w) & (SET_SLOTS - 1); set->slot[k]; k = (k + 1) & (SET_SLOTS - 1))
        if (set->slot[k][0] == w[0] && strcmp(set->slot[k], w) == 0)
            return set->slot[k];
    return NULL;
}

static bool wordset_has(const struct wordset *set, const char *w)
{
    return wordset_find(set, w) != NULL;
}

/* ---- opposites ---- */

static const char *const opposites[][2] = {
    {"on", "off"},
    {"up", "down"},
    {"in", "out"},
    {"enable", "disable"},
    {"add", "remove"},
    {"add", "delete"},
    {"increase", "decrease"},
    {"raise", "lower"},
    {"lock", "unlock"},
    {"open", "close"},
    {"start", "stop"},
    {"buy", "sell"},
    {"buy", "rent"},
    {"send", "receive"},
    {"deposit", "withdraw"},
    {"credit", "debit"},
    {"activate", "deactivate"},
    {"subscribe", "unsubscribe"},
    {"include", "exclude"},
    {"accept", "decline"},
    {"accept", "reject"},
    {"allow", "block"},
    {"join", "leave"},
    {"arrive", "depart"},
    {"import", "export"},
    {"upload", "download"},
    {"connect", "disconnect"},
    {"mute", "unmute"},
    {"lend", "borrow"},
    {"push", "pull"},
    {"plus", "minus"},
    {"before", "after"},
    {"from", "to"},
    {"more", "less"},
    {"max", "min"},
    {"maximum", "minimum"},
    {"high", "low"},
    {"left", "right"},
    {"used", "left"},
    {"save", "use"},
    {"save", "spend"},
    {"first", "last"},
    {"next", "previous"},
    {"old", "new"},
    {"hot", "cold"},
    {"early", "late"},
    {"win", "lose"},
    {"above", "below"},
    {"over", "under"},
    {"inside", "outside"},
    {"yesterday", "tomorrow"},
    {"today", "tomorrow"},
    {"today", "yesterday"},
    {"north", "south"},
    {"east", "west"},
    {"cheap", "expensive"},
    {"best", "worst"},
    {"good", "bad"},
    {"fast", "slow"},
    {"long", "short"},
    {"big", "small"},
    {"light", "dark"},
    {"love", "hate"},
    {"like", "dislike"},
    {"true", "false"},
    /* Whose thing it is: "what is my name" is not "what is your name". */
    {"my", "your"},
    {"me", "you"},
};

#define NOPP NELEMS(opposites)

/* A set of pairs, one bit per pair. */
struct pairset {
    uint64_t w[(NOPP + 63) / 64];
};

/* Each distinct stem of the pairs (so that "enabled" meets "enable") with
 * the pairs it is the first word of and the pairs it is the second word of;
 * built once, found through opp_set. A word then costs one hash lookup, not
 * a scan of every pair. */
struct opp_stem {
    char stem[EMBED_WORD_MAX + 1];
    struct pairset side[2];
};

static struct opp_stem opp_stems[2 * NOPP];
static size_t opp_nstems;
static struct wordset opp_set; /* their stems */
static pthread_once_t opp_once = PTHREAD_ONCE_INIT;

static const struct opp_stem *opp_find(const char *stem)
{
    const char *p = wordset_find(&opp_set, stem);

    return p ? (const struct opp_stem *)(p - offsetof(struct opp_stem, stem)) : NULL;
}

static void opp_build(void)
{
    char stems[NOPP][2][EMBED_WORD_MAX + 1];

    memset(stems, 0, sizeof(stems));
    for (size_t i = 0; i < NOPP; i++)
        for (int k = 0; k < 2; k++) {
            struct embed_word w;
            if (embed_split(opposites[i][k], strlen(opposites[i][k]), &w, 1) == 1)
                memcpy(stems[i][k], w.stem, sizeof(w.stem));
        }
    for (size_t i = 0; i < NOPP; i++) {
        if (!*stems[i][0] || !*stems[i][1])
            continue; /* a word that does not split: the pair cannot fire */
        for (int k = 0; k < 2; k++) {
            size_t j;
            for (j = 0; j < opp_nstems; j++)
                if (strcmp(opp_stems[j].stem, stems[i][k]) == 0)
                    break;
            if (j == opp_nstems)
                memcpy(opp_stems[opp_nstems++].stem, stems[i][k], sizeof(stems[i][k]));
            opp_stems[j].side[k].w[i / 64] |= (uint64_t)1 << (i % 64);
        }
    }
    for (size_t j = 0; j < opp_nstems; j++)
        wordset_add(&opp_set, opp_stems[j].stem);
}

/* The pairs whose first (side[0]) and second (side[1]) words t has. */
static void opp_sides(const struct embed_word *t, size_t n, struct pairset side[2])
{
    memset(side, 0, 2 * sizeof(*side));
    for (size_t i = 0; i < n; i++) {
        const struct opp_stem *o = opp_find(t[i].stem);
        if (!o)
            continue;
        for (int k = 0; k < 2; k++)
            for (size_t j = 0; j < sizeof(side[k].w) / sizeof(side[k].w[0]); j++)
                side[k].w[j] |= o->side[k].w[j];
    }
}

static bool has_stem(const struct embed_word *t, size_t n, const char *stem)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].stem, stem) == 0)
            return true;
    return false;
}

/* A pair fires when one side has its first word and not its second, and
 * the other side the second and not the first. */
static bool opposite(const struct embed_word *a, size_t na, const struct embed_word *b, size_t nb)
{
    struct pairset sa[2], sb[2];

    pthread_once(&opp_once, opp_build);
    opp_sides(a, na, sa);
    opp_sides(b, nb, sb);
    for (size_t j = 0; j < sizeof(sa[0].w) / sizeof(sa[0].w[0]); j++) {
        uint64_t ax = sa[0].w[j], ay = sa[1].w[j], bx = sb[0].w[j], by = sb[1].w[j];
        if ((ax & ~ay & by & ~bx) | (ay & ~ax & bx & ~by))
            return true;
    }
    return false;
}

/* ---- question words and tense ---- */

enum { Q_ANY = 1, Q_WHEN = 2, Q_WHERE = 4, Q_WHO = 8, Q_WHY = 16, Q_AMOUNT = 32 };

static bool is(const char *w, const char *s)
{
    return strcmp(w, s) == 0;
}

/* Q_ANY when there is a question word, plus the specific kinds asked. */
static unsigned question(const struct embed_word *t, size_t n)
{
    unsigned m = 0;

    for (size_t i = 0; i < n; i++) {
        const char *w = t[i].text;
        if (t[i].kind != EMBED_QUESTION)
            continue;
        m |= Q_ANY;
        if (is(w, "when"))
            m |= Q_WHEN;
        else if (is(w, "where"))
            m |= Q_WHERE;
        else if (is(w, "who") || is(w, "whom") || is(w, "whose"))
            m |= Q_WHO;
        else if (is(w, "why"))
            m |= Q_WHY;
        else if (is(w, "how") && i + 1 < n &&
                 (is(t[i + 1].text, "much") || is(t[i + 1].text, "many")))
            m |= Q_AMOUNT;
    }
    return m;
}

/* Stems of verbs that ask to change what the question is about: "delete
 * everything on my todo list" is not "do I have anything on my todo list",
 * "raise my credit limit" is not "credit limit". Two different such verbs
 * are left to the other checks (delete / remove are the same request; add /
 * remove are opposites). */
static const char *const acting_stems[] = {
    "delet",   "eras",    "wipe", "remov", "clear", "cancel", "block", "freez",
    "increas", "decreas", "rais", "lower", "reduc", "reset",  "updat", "add"};

/* Words a paraphrase adds or drops without changing the question. */
static const char *const neutral_words[] = {
    "a",      "an",     "the",       "some",      "any",      "this",   "that",      "there",
    "it",     "i",      "me",        "my",        "you",      "your",   "we",        "us",
    "they",   "them",   "their",     "he",        "him",      "his",    "she",       "her",
    "our",    "its",    "these",     "those",     "is",       "are",    "am",        "be",
    "been",   "was",    "were",      "do",        "does",     "did",    "have",      "has",
    "had",    "can",    "could",     "would",     "will",     "should", "of",        "to",
    "for",    "on",     "in",        "at",        "with",     "about",  "by",        "from",
    "if",     "and",    "or",        "so",        "not",      "no",     "all",       "one",
    "here",   "now",    "much",      "what",      "how",      "which",  "where",     "when",
    "who",    "why",    "please",    "tell",      "know",     "want",   "wanna",     "need",
    "like",   "let",    "just",      "really",    "hey",      "hi",     "hello",     "ok",
    "okay",   "thanks", "show",      "give",      "find",     "get",    "got",       "getting",
    "go",     "going",  "current",   "currently", "possible", "way",    "wondering", "wonder",
    "trying", "try",    "something", "sure",      "certain",  "figure",
};

_Static_assert(NELEMS(neutral_words) <= SET_SLOTS / 2, "neutral words: grow SET_SLOTS");
_Static_assert(2 * NOPP <= SET_SLOTS / 2, "opposite stems: grow SET_SLOTS");

static struct wordset acting_set, neutral_set;
static pthread_once_t sets_once = PTHREAD_ONCE_INIT;

static void sets_build(void)
{
    wordset_fill(&acting_set, acting_stems, NELEMS(acting_stems));
    wordset_fill(&neutral_set, neutral_words, NELEMS(neutral_words));
}

/* Does t ask to change something? */
static bool acting(const struct embed_word *t, size_t n)
{
    pthread_once(&sets_once, sets_build);
    for (size_t i = 0; i < n; i++)
        if (wordset_has(&acting_set, t[i].stem))
            return true;
    return false;
}

static bool past(const struct embed_word *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is(t[i].text, "did") || is(t[i].text, "was") || is(t[i].text, "were"))
            return true;
    return false;
}

/* ---- content words ---- */

static bool neutral(const char *w)
{
    pthread_once(&sets_once, sets_build);
    return wordset_has(&neutral_set, w);
}

static bool counts(const struct embed_word *t)
{
    return t->kind != EMBED_NUMBER && !neutral(t->text);
}

/* Word w of a is unmatched in b: does a content word of b that is itself
 * unmatched in a have a vector close to w's (a synonym, or a near one)? */
static bool near_word(const struct wordvec *wv, const struct embed_word *w,
                      const struct embed_word *a, size_t na, const struct embed_word *b, size_t nb)
{
    long i = wordvec_find(wv, w->text, strlen(w->text));

    if (i < 0)
        return false;
    for (size_t j = 0; j < nb; j++) {
        long k;
        if (!counts(&b[j]) || has_stem(a, na, b[j].stem) ||
            (k = wordvec_find(wv, b[j].text, strlen(b[j].text))) < 0)
            continue;
        if (wordvec_cos(wv, i, k) >= NEAR_COS)
            return true;
    }
    return false;
}

/* x and y are one edit apart: a letter dropped ("increse" / "increase"),
 * changed ("statud" / "status") or two neighbours swapped ("recieve" /
 * "receive"). lx >= ly. */
static bool one_edit_from(const char *x, size_t lx, const char *y, size_t ly)
{
    size_t i = 0;

    if (lx - ly > 1)
        return false;
    while (i < ly && x[i] == y[i])
        i++;
    if (i == ly)
        return lx != ly; /* a word is not a typo of itself */
    if (lx > ly)
        return strcmp(x + i + 1, y + i) == 0;
    if (strcmp(x + i + 1, y + i + 1) == 0)
        return true;
    return i + 1 < lx && x[i] == y[i + 1] && x[i + 1] == y[i] && strcmp(x + i + 2, y + i + 2) == 0;
}

static bool one_edit(const char *x, const char *y)
{
    size_t lx = strlen(x), ly = strlen(y);

    return lx >= ly ? one_edit_from(x, lx, y, ly) : one_edit_from(y, ly, x, lx);
}

/* Word w of a is unmatched in b: is it a misspelling of a content word of
 * b? Both must be at least TYPO_LEN long, one edit apart, and one of them
 * unknown to the word-vector table: two known words one edit apart ("card"
 * / "care", "price" / "prize") are two words. */
static bool typo(const struct wordvec *wv, const struct embed_word *w, const struct embed_word *b,
                 size_t nb)
{
    size_t lw = strlen(w->text);
    bool known;

    if (lw < TYPO_LEN)
        return false;
    known = wordvec_find(wv, w->text, lw) >= 0;
    for (size_t j = 0; j < nb; j++) {
        size_t l = strlen(b[j].text);
        if (counts(&b[j]) && l >= TYPO_LEN && one_edit(w->text, b[j].text) &&
            (!known || wordvec_find(wv, b[j].text, l) < 0))
            return true;
    }
    return false;
}

/* Unmatched content words of a against b; adds a's content words to *all. */
static int missing(const struct wordvec *wv, const struct embed_word *a, size_t na,
                   const struct embed_word *b, size_t nb, int *all)
{
    int miss = 0;

    for (size_t i = 0; i < na; i++) {
        if (!counts(&a[i]))
            continue;
        (*all)++;
        miss += !has_stem(b, nb, a[i].stem) &&
                !(wv && (near_word(wv, &a[i], a, na, b, nb) || typo(wv, &a[i], b, nb)));
    }
    return miss;
}

enum verify_reason verify_texts(const char *q, size_t ql, const char *c, size_t cl)
{
    return verify_texts_wv(q, ql, c, cl, NULL);
}

enum verify_reason verify_texts_wv(const char *q, size_t ql, const char *c, size_t cl,
                                   const struct wordvec *wv)
{
    struct embed_word a[MAX_WORDS], b[MAX_WORDS];
    struct nums x, y;
    size_t na, nb;
    unsigned qa, qb;
    int all = 0, miss;

    numbers(q, ql, &x);
    numbers(c, cl, &y);
    if (!same_numbers(&x, &y))
        return VERIFY_NUMBERS;
    if ((negations(q, ql) & 1) != (negations(c, cl) & 1))
        return VERIFY_NEGATION;
    na = embed_split(q, ql, a, MAX_WORDS);
    nb = embed_split(c, cl, b, MAX_WORDS);
    if (opposite(a, na, b, nb))
        return VERIFY_OPPOSITE;
    qa = question(a, na);
    qb = question(b, nb);
    if (qa && qb && (qa & ~(unsigned)Q_ANY) != (qb & ~(unsigned)Q_ANY))
        return VERIFY_QUESTION;
    if (acting(a, na) != acting(b, nb))
        return VERIFY_ACTION;
    if (past(a, na) != past(b, nb))
        return VERIFY_TENSE;
    miss = missing(wv, a, na, b, nb, &all) + missing(wv, b, nb, a, na, &all);
    if (miss > MAX_MISSING || miss * 100 > MAX_MISS_PCT * all)
        return VERIFY_CONTENT;
    return VERIFY_OK;
}
