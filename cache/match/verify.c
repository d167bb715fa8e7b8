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
 * the weather") has no question word, so it matches either. "What time" /
 * "which day" ask when, "what is the price" asks how much: the noun is
 * then accounted for by the other side's "when" or "how much".
 *
 * Action: one side asks to change something (delete, cancel, increase,
 * reset, ...) and the other does not ("delete everything on my todo list"
 * vs "is there anything on my todo list").
 *
 * Tense: did, was and were on one side only ("when did I change my oil" vs
 * "when should I change my oil").
 *
 * Numbers also come as words ("six thirty" = "6:30" = "half past six",
 * "nineteen ninety" = "1990", "four am" = "4 am"), and am / pm count.
 *
 * Particles and mood: "turn down" is not "turn on", and a lone "on" goes
 * only in a question or against another verb ("audio" is not "audio on");
 * a question that asks ("is there an alarm ...") is not a request that acts
 * ("set an alarm ..."), nor a bare noun phrase ("alarm for ten am").
 *
 * The alignment (issue #16). Each side splits into arguments and predicate
 * words. Arguments are what an answer depends on: emails, URLs, file
 * names, code identifiers and quoted strings (compared whole), capitalised
 * words that do not open a sentence and acronyms, time words (today,
 * tomorrow, morning, weekdays, ordinals), and with WordNet its closed
 * classes (colours, languages, countries, months, weekdays, units), words
 * whose every sense is a name (paris, tokyo), and words no table knows (a
 * brand, a town, a typo). Every argument must find the same stem on the
 * other side: nothing else stands in for one. Predicate words are found by
 * stem, then through WordNet by a synonym (in one of the first senses of
 * both words: "list" / "number" share only "enumerate") or a derivation of a
 * word the other side has no own match for; then the noun a "how" +
 * adjective measures, by WordNet's attribute pointer ("how tall" /
 * "height", "how old" / "age"; "is it hot" is not "the temperature"); then
 * a typo (one edit, one word unknown); then an antonym left on both sides
 * fails; then two verbs one hypernym step apart pair (verb_pair()). Word vectors never pair two
 * words: they put read / send, before / later and immediately / later side by side (a probe that
 * swapped each content word of CLINC150 and hwu64 questions for its nearest vectors found them all
 * passing), so they only tell a known word from a typo. What is still left fails: a word on each
 * side is one said for another, a word on one side only narrows or widens the request.
 *
 * Roles: a word both sides share must follow "to" on both or neither when
 * both give some shared word that role, and the same for "from".
 *
 * Calibrated on hwu64-dev with answer-level truth and the must-miss suite:
 * docs/quality.md.
 *
 * Why one file of this size: every check reads the same per-call word
 * arrays and the same word sets (neutral, opposite, action, hedge), and the
 * alignment consumes what the earlier checks classified; split, those
 * would become a header of internals shared by several files, which is
 * harder to read than the sections below.
 */
#include "cache/match/verify.h"

#include "cache/match/embed.h"
#include "cache/base/hash.h"
#include "cache/match/wordnet.h"
#include "cache/match/wordvec.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

#define MAX_NUMS  32
#define NUM_LEN   24
#define MAX_WORDS 96 /* words compared per side; the rest is ignored */
#ifndef MAX_DROPS
#define MAX_DROPS 0 /* predicate words one side may drop ... */
#endif
#define MAX_DROP_PCT 20 /* ... and at most this share of all content words */
#define TYPO_LEN     4  /* shorter words are not taken for typos */
#ifndef VERB_UP
#define VERB_UP     1 /* hypernym steps between two verbs that stand for each other */
#define MAIN_SENSES 4 /* synonyms share one of the first senses of both words */
#define ADJ_SENSES  2 /* of adjectives and adverbs */
#endif
#define MAX_WORD_OPS 15 /* operators in words kept per question (word_ops()) */

static const char *const names[VERIFY_REASONS] = {"ok",       "numbers", "negation", "opposite",
                                                  "question", "action",  "tense",    "content",
                                                  "argument", "role"};

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
        size_t k = 0, start;
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
        start = i;
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
        /* ":00" adds nothing to an hour: "4:00" is "4", as "four" is. */
        if (start > 0 && s[start - 1] == ':' && strspn(d, "0") == k)
            continue;
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

/* w is s, in any case. The word lists are held against every word of the
 * question, so the first letters settle most comparisons inline: two
 * letters the same but for case are the same after | 0x20 (other bytes
 * that are, strncasecmp tells apart). */
static inline bool span_eq(struct span w, const char *s)
{
    return w.n && (w.p[0] | 0x20) == (s[0] | 0x20) && strlen(s) == w.n &&
           strncasecmp(w.p, s, w.n) == 0;
}

/* The first two letters settle nearly every comparison inline: every word
 * of both sides is held against a dozen fixed words, and the lists share
 * first letters ("can", "could"; "would", "will", "want"). */
static inline bool is(const char *w, const char *s)
{
    return w[0] == s[0] && (!w[0] || (w[1] == s[1] && (!w[1] || strcmp(w + 2, s + 2) == 0)));
}

static bool span_is(struct span w, const char *const *set)
{
    for (int i = 0; set[i]; i++)
        if (span_eq(w, set[i]))
            return true;
    return false;
}

/* w, a word of embed_split() (lower case), is one of set (NULL-ended). */
static bool word_in(const char *w, const char *const *set)
{
    for (int i = 0; set[i]; i++)
        if (is(w, set[i]))
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

/* The negation after prev and prev2 (the word before it; NULL: none) is the
 * asker's own, or anyone's ("when you don't know what to do"): "i don't",
 * "i do not", "i'm not", "we really don't", or no subject at all ("not sure
 * if ..."). "the bank should not know" and "i will not know later" are not
 * "i don't know". */
static bool asker(const struct span *prev, const struct span *prev2)
{
    static const char *const me[] = {"i", "i'm", "im", "am", "you", "we", NULL};
    static const char *const between[] = {"do",       "did",  "can", "could", "really", "just",
                                          "honestly", "have", "am",  "'m",    NULL};

    return !prev || span_is(*prev, me) || (span_is(*prev, between) && prev2 && span_is(*prev2, me));
}

/* Is the negating word w, after the word prev (NULL: none) and followed by
 * s[after..len), a negation that does not change what is asked?
 * - it denies the asker's own knowledge of the answer ("i don't know why my
 *   card was declined", "i'm not sure if i need a visa", "i can't figure out
 *   how"): the same question as "why was my card declined";
 * - "or not" ("will my 401k roll over or not");
 * - a tag at the end ("you are a bot, aren't you"). */
static bool hedge(const char *s, size_t len, size_t after, const struct span *prev,
                  const struct span *prev2, struct span w)
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
    if (asker(prev, prev2))
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
    struct span w, prev, prev2;
    size_t pos = 0;
    int count = 0, seen = 0;

    while (next_word(s, len, &pos, &w)) {
        count += negating(w) &&
                 !hedge(s, len, pos, seen > 0 ? &prev : NULL, seen > 1 ? &prev2 : NULL, w);
        prev2 = prev;
        prev = w;
        seen++;
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

/* The set's own pointer for w, whose word_hash() is h, or NULL. */
static const char *wordset_find_h(const struct wordset *set, const char *w, size_t h)
{
    for (size_t k = h & (SET_SLOTS - 1); set->slot[k]; k = (k + 1) & (SET_SLOTS - 1))
        if (set->slot[k][0] == w[0] && strcmp(set->slot[k], w) == 0)
            return set->slot[k];
    return NULL;
}

static const char *wordset_find(const struct wordset *set, const char *w)
{
    return wordset_find_h(set, w, word_hash(w));
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
    {"brighten", "dim"},
    {"bright", "dim"},
    {"lighten", "darken"},
    {"loud", "quiet"},
    {"louder", "quieter"},
    {"louder", "softer"},
    {"love", "hate"},
    {"like", "dislike"},
    {"true", "false"},
    {"show", "hide"},
    /* Whose thing it is: "what is my name" is not "what is your name". */
    {"my", "your"},
    {"me", "you"},
    {"am", "are"},      /* "am i a robot" / "are you a robot" */
    {"me", "yourself"}, /* "what do you call yourself" / "... call me" */
    /* How many: "turn off all lights" is not "turn off this light", "show
     * me all transactions" is not "show me some transactions". */
    {"all", "this"},
    {"every", "this"},
    {"all", "some"},
    {"every", "some"},
    {"all", "none"},
    {"everything", "something"},
    {"everyone", "someone"},
    {"many", "few"},
    {"most", "least"},
    {"more", "fewer"},
    {"both", "either"},
    {"both", "neither"},
    {"always", "never"},
    /* Where: "when will my order be here" is not "... be there" (an
     * existential "is there" says nothing, see existential()). */
    {"here", "there"},
    {"myself", "yourself"},
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

/* The pairs of stem, whose word_hash() is h. */
static const struct opp_stem *opp_find(const char *stem, size_t h)
{
    const char *p = wordset_find_h(&opp_set, stem, h);

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
/* Word i of t only frames a request: "me" after tell / show / give ("tell
 * me a joke"), "you" after a modal or in "do you know" ("can you", "do you
 * know any jokes"). Whose thing it is ("my name" / "your name", "call me" /
 * "call yourself") is said elsewhere. */
static bool framing_person(const struct embed_word *t, size_t n, size_t i)
{
    static const char *const teller[] = {"tell", "show", "give", NULL};
    static const char *const modal[] = {"can", "could", "would", "will", NULL};
    const char *p = i > 0 ? t[i - 1].text : "";

    if (is(t[i].text, "me"))
        return word_in(p, teller);
    if (is(t[i].text, "you"))
        return word_in(p, modal) || (is(p, "do") && i + 1 < n && is(t[i + 1].text, "know"));
    return false;
}

/* Word i of t is the "there" of "is there", "there are", "will there be":
 * it places nothing. Before a form of "be" it always is; after one only
 * when that verb opens the question, alone or after a question word ("is
 * there", "what is there", "how many are there"): "my keys are there" and
 * "we're there" place. */
static bool existential(const struct embed_word *t, size_t n, size_t i)
{
    static const char *const be[] = {"is",     "are", "was",  "were", "isnt",  "arent", "wasnt",
                                     "werent", "s",   "be",   "will", "would", "could", "can",
                                     "might",  "may", "been", "has",  "have",  "had",   NULL};
    static const char *const opener[] = {"what",  "how",  "many", "much",  "why",
                                         "where", "when", "who",  "which", NULL};

    if (!is(t[i].text, "there"))
        return is(t[i].text, "theres");
    if (i + 1 < n && word_in(t[i + 1].text, be))
        return true;
    return i > 0 && word_in(t[i - 1].text, be) && !is(t[i - 1].text, "be") &&
           (i == 1 || word_in(t[i - 2].text, opener));
}

/* sh[i] is word_hash(t[i].stem). */
static void opp_sides(const struct embed_word *t, size_t n, const size_t *sh,
                      struct pairset side[2])
{
    pthread_once(&opp_once, opp_build);
    memset(side, 0, 2 * sizeof(*side));
    for (size_t i = 0; i < n; i++) {
        const struct opp_stem *o = opp_find(t[i].stem, sh[i]);
        if (!o || framing_person(t, n, i) || existential(t, n, i))
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
 * the other side the second and not the first (sa, sb: opp_sides()). */
static bool opposite(const struct pairset sa[2], const struct pairset sb[2])
{
    for (size_t j = 0; j < sizeof(sa[0].w) / sizeof(sa[0].w[0]); j++) {
        uint64_t ax = sa[0].w[j], ay = sa[1].w[j], bx = sb[0].w[j], by = sb[1].w[j];
        if ((ax & ~ay & by & ~bx) | (ay & ~ax & bx & ~by))
            return true;
    }
    return false;
}

/* ---- question words and tense ---- */

enum { Q_ANY = 1, Q_WHEN = 2, Q_WHERE = 4, Q_WHO = 8, Q_WHY = 16, Q_AMOUNT = 32 };

/* The kind of question word i of t asks as the noun of "what ...": Q_WHEN
 * for "what time", "which day", "what date", "what year"; Q_AMOUNT for
 * "what is the price", "what's the cost", "what is the number". 0 for any
 * other word. */
static unsigned asking_noun(const struct embed_word *t, size_t i)
{
    static const char *const when[] = {"time", "day", "date", "year", NULL};
    static const char *const amount[] = {"price", "cost", "number", "amount", NULL};
    static const char *const between[] = {"is", "s", "are", "the", NULL};
    const char *w = t[i].text;
    unsigned q = 0;
    size_t k = i;

    if (word_in(w, when))
        q = Q_WHEN;
    else if (word_in(w, amount))
        q = Q_AMOUNT;
    /* "what time" and "which day" directly, "what is the price" and "what's
     * the time" over the verb and the article. */
    while (q && k > 0 && i - k < 3 && word_in(t[k - 1].text, between))
        k--;
    if (q && k > 0 && (is(t[k - 1].text, "what") || is(t[k - 1].text, "which")))
        return q;
    return 0;
}

/* Words i and i + 1 of t are "how much" or "how many". */
static bool how_much(const struct embed_word *t, size_t n, size_t i)
{
    return is(t[i].text, "how") && i + 1 < n &&
           (is(t[i + 1].text, "much") || is(t[i + 1].text, "many"));
}

/* Word i of a is the noun of a question ("what time", "what is the price")
 * that o asks with the question word itself ("when", "how much"): the
 * noun is accounted for. */
static bool asked_alike(const struct embed_word *a, size_t i, const struct embed_word *o, size_t no)
{
    unsigned q = asking_noun(a, i);

    for (size_t k = 0; q && k < no; k++)
        if (q == Q_WHEN ? is(o[k].text, "when") : how_much(o, no, k))
            return true;
    return false;
}

/* Q_ANY when there is a question word, plus the specific kinds asked. */
static unsigned question(const struct embed_word *t, size_t n)
{
    unsigned m = 0;

    for (size_t i = 0; i < n; i++) {
        const char *w = t[i].text;
        m |= asking_noun(t, i);
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
        else if (how_much(t, n, i))
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

/* ---- number words and times ---- */

/* The value of a number word, or -1. "one" is left to number_words(), which
 * knows when it is a pronoun ("which one"). Called for every word of both
 * sides of every candidate, so it rejects on length and first letter before
 * it compares a byte: most words are not numbers. */
static long word_value(struct span w)
{
    /* The length beside each word, so that most words are turned away
     * without a comparison. */
    /* clang-format off */
#define NUM(word, value) {word, sizeof(word) - 1, value}
    /* clang-format on */
    /* By first letter, each list ended by an empty entry. */
    static const struct numword {
        const char *w;
        unsigned char n;
        long v;
    } z[] = {NUM("zero", 0), {NULL, 0, 0}}, o[] = {NUM("one", 1), {NULL, 0, 0}},
      t[] = {NUM("two", 2),     NUM("three", 3),       NUM("ten", 10),
             NUM("twelve", 12), NUM("thirteen", 13),   NUM("twenty", 20),
             NUM("thirty", 30), NUM("thousand", 1000), {NULL, 0, 0}},
      f[] = {NUM("four", 4),   NUM("five", 5),   NUM("fourteen", 14), NUM("fifteen", 15),
             NUM("forty", 40), NUM("fifty", 50), {NULL, 0, 0}},
      s[] = {NUM("six", 6),    NUM("seven", 7),    NUM("sixteen", 16), NUM("seventeen", 17),
             NUM("sixty", 60), NUM("seventy", 70), {NULL, 0, 0}},
      e[] = {NUM("eight", 8),
             NUM("eleven", 11),
             NUM("eighteen", 18),
             NUM("eighty", 80),
             {NULL, 0, 0}},
      n[] = {NUM("nine", 9), NUM("nineteen", 19), NUM("ninety", 90), {NULL, 0, 0}},
      h[] = {NUM("hundred", 100), {NULL, 0, 0}}, m[] = {NUM("million", 1000000), {NULL, 0, 0}};
#undef NUM
    const struct numword *num;

    if (w.n < 3 || w.n > 9)
        return -1;
    switch (tolower((unsigned char)w.p[0])) {
    case 'z': num = z; break;
    case 'o': num = o; break;
    case 't': num = t; break;
    case 'f': num = f; break;
    case 's': num = s; break;
    case 'e': num = e; break;
    case 'n': num = n; break;
    case 'h': num = h; break;
    case 'm': num = m; break;
    default: return -1;
    }
    for (; num->w; num++)
        if (num->n == w.n && strncasecmp(w.p, num->w, w.n) == 0)
            return num->v;
    return -1;
}

/* v as "%ld" writes it, without snprintf()'s cost: every number word of
 * both sides of every candidate comes here. */
static void num_add(struct nums *out, long v)
{
    char buf[NUM_LEN], *p = buf + sizeof(buf);
    unsigned long u = v < 0 ? 0 - (unsigned long)v : (unsigned long)v;

    if (out->n == MAX_NUMS) {
        out->overflow = true;
        return;
    }
    *--p = '\0';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    memcpy(out->v[out->n++], p, (size_t)(buf + sizeof(buf) - p));
}

static void num_add_str(struct nums *out, const char *s)
{
    if (out->n == MAX_NUMS) {
        out->overflow = true;
        return;
    }
    snprintf(out->v[out->n++], NUM_LEN, "%s", s);
}

/* Ends a run of number words: its groups as numbers. Two groups where the
 * first is 13..20 and the second a two-digit number read as a year
 * ("nineteen ninety" = 1990); otherwise as they are, which is how a time
 * reads ("six thirty" = 6 30, as "6:30" gives). */
static void run_flush(struct nums *out, long *g, int *ng)
{
    if (*ng == 2 && g[0] >= 13 && g[0] <= 20 && g[1] >= 10 && g[1] <= 99) {
        num_add(out, g[0] * 100 + g[1]);
    } else {
        for (int i = 0; i < *ng; i++)
            num_add(out, g[i]);
    }
    *ng = 0;
}

/* Adds the numbers written as words: "twenty one" 21, "one hundred and
 * five" 105, "six thirty" 6 30, "half past six" 6 30, "quarter to seven"
 * 6 45, and "am" / "pm" after a number (digits or words). "one" after
 * which / the / any ... is a pronoun, not a number. */
static void number_words(const char *s, size_t len, struct nums *out)
{
    static const char *const det[] = {"which", "the",   "that",  "this",    "any", "each", "every",
                                      "no",    "some",  "a",     "another", "one", "what", "only",
                                      "last",  "first", "other", "next",    NULL};
    struct span w, prev = {"", 0}, x;
    size_t pos = 0;
    long g[8], pending = -1; /* pending: the hour a "half past" / "quarter to" waits for */
    int ng = 0, pend_min = 0;
    bool after_num = false; /* the previous word ended a number: am / pm belong to it */

    while (next_word(s, len, &pos, &w)) {
        long v = word_value(w);
        size_t k = pos - w.n;
        bool num_before;

        while (k > 0 && s[k - 1] == ' ')
            k--;
        num_before = k > 0 && isdigit((unsigned char)s[k - 1]);

        if (v == 1 && span_is(prev, det))
            v = -1;
        if (v == 1) { /* "one of", "one more" */
            size_t p2 = pos;
            if (next_word(s, len, &p2, &x) &&
                (span_eq(x, "of") || span_eq(x, "more") || span_eq(x, "another")))
                v = -1;
        }
        if (v >= 0) {
            if (pending >= 0 && v < 100) {
                /* "half past six": the hour is this word */
                num_add(out, pend_min < 0 ? v - 1 : v);
                num_add(out, pend_min < 0 ? 60 + pend_min : pend_min);
                pending = -1;
                after_num = true;
                prev = w;
                continue;
            }
            if (v >= 100) {
                if (ng == 0)
                    g[ng++] = 1;
                if (v == 100)
                    g[ng - 1] *= 100;
                else if (ng > 1) { /* "two thousand one hundred": fold it all */
                    long t = 0;
                    for (int i = 0; i < ng; i++)
                        t += g[i];
                    g[0] = t * v;
                    ng = 1;
                } else
                    g[ng - 1] *= v;
            } else if (ng &&
                       ((g[ng - 1] >= 20 && g[ng - 1] < 100 && g[ng - 1] % 10 == 0 && v < 10) ||
                        (g[ng - 1] >= 100 && g[ng - 1] % 100 == 0))) {
                g[ng - 1] += v; /* "twenty one", "one hundred five" */
            } else if (ng < (int)NELEMS(g)) {
                g[ng++] = v;
            }
            after_num = true;
            prev = w;
            continue;
        }
        if (ng && span_eq(w, "and") && g[ng - 1] >= 100) {
            prev = w;
            continue;
        }
        if (ng)
            run_flush(out, g, &ng);
        pending = -1;
        if ((span_eq(w, "am") || span_eq(w, "pm")) && (after_num || num_before)) {
            char ap[3] = {(char)tolower((unsigned char)w.p[0]), 'm', '\0'};
            num_add_str(out, ap);
        } else if ((span_eq(w, "half") || span_eq(w, "quarter"))) {
            size_t p2 = pos;
            if (next_word(s, len, &p2, &x) &&
                (span_eq(x, "past") || span_eq(x, "after") || span_eq(x, "to") ||
                 span_eq(x, "till") || span_eq(x, "before"))) {
                int m = span_eq(w, "half") ? 30 : 15;
                pending = 1;
                pend_min = span_eq(x, "past") || span_eq(x, "after") ? m : -m;
                pos = p2;
            } else {
                /* an amount: "dim the lights to half" is not "dim the lights" */
                num_add_str(out, span_eq(w, "half") ? "1/2" : "1/4");
            }
        }
        after_num = false;
        prev = w;
    }
    if (ng)
        run_flush(out, g, &ng);
}

/* Every number of s[0..len): digits, then words. What same_numbers()
 * compares, and so what verify_group() keys. */
static void all_numbers(const char *s, size_t len, struct nums *out)
{
    numbers(s, len, out);
    number_words(s, len, out);
}

/* ---- special tokens: emails, URLs, file names, code, quoted strings ---- */

#define MAX_SPECIAL 16
#define MAX_CAPS    16

/* Arithmetic operators, "-" last (ops_of() counts it only when spaced). */
static const char OPS[] = "+*/=^%<>-";
#define NOPS (sizeof(OPS) - 1)

/* The byte classes specials_of() tests every byte of a text for, once a
 * table lookup instead of a strchr() each. A class holds what strchr() of
 * its string finds, which includes the terminating '\0'. */
enum {
    C_OP = 1,    /* OPS */
    C_PROSE = 2, /* prose punctuation: ".,;:!?'\"&" */
    C_OPEN = 4,  /* trimmed before a token: "([{<,;:!?\"'`" */
    C_CLOSE = 8, /* trimmed after it: ")]}>,;:!?.\"'`" */
};

static const uint8_t byte_class[256] = {
    ['\0'] = C_OP | C_PROSE | C_OPEN | C_CLOSE,
    ['+'] = C_OP,
    ['*'] = C_OP,
    ['/'] = C_OP,
    ['='] = C_OP,
    ['^'] = C_OP,
    ['%'] = C_OP,
    ['<'] = C_OP | C_OPEN,
    ['>'] = C_OP | C_CLOSE,
    ['-'] = C_OP,
    ['.'] = C_PROSE | C_CLOSE,
    [','] = C_PROSE | C_OPEN | C_CLOSE,
    [';'] = C_PROSE | C_OPEN | C_CLOSE,
    [':'] = C_PROSE | C_OPEN | C_CLOSE,
    ['!'] = C_PROSE | C_OPEN | C_CLOSE,
    ['?'] = C_PROSE | C_OPEN | C_CLOSE,
    ['\''] = C_PROSE | C_OPEN | C_CLOSE,
    ['"'] = C_PROSE | C_OPEN | C_CLOSE,
    ['&'] = C_PROSE,
    ['('] = C_OPEN,
    ['['] = C_OPEN,
    ['{'] = C_OPEN,
    ['`'] = C_OPEN | C_CLOSE,
    [')'] = C_CLOSE,
    [']'] = C_CLOSE,
    ['}'] = C_CLOSE,
};

static bool in_class(char c, unsigned cls)
{
    return (byte_class[(unsigned char)c] & cls) != 0;
}

struct specials {
    uint64_t h[MAX_SPECIAL]; /* the normalised token's hash */
    int n;
    uint8_t ops[NOPS]; /* arithmetic operators next to a number, per OPS char */
    char cap[MAX_CAPS][EMBED_WORD_MAX + 1]; /* capitalised words, lower-cased */
    int ncap;
};

static uint64_t lower_hash(const char *p, size_t n)
{
    uint64_t h = HASH_FNV_OFFSET;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)tolower((unsigned char)p[i]);
        h = hash_fnv(h, &c, 1);
    }
    return h;
}

static void special_add(struct specials *sp, const char *p, size_t n)
{
    if (sp->n < MAX_SPECIAL)
        sp->h[sp->n++] = lower_hash(p, n);
}

/* Is p[0..n) (punctuation already trimmed) an email, URL, file name or code
 * identifier? Those are arguments whole: "report.pdf" is not "report.txt". */
/* Numbers joined by hyphens ("1-2", "555-1234", "2024-01-05") are read in
 * their order: "fact 1-2" is not "fact 2-1", though the numbers check
 * compares the numbers of a question in any order. */
static bool hyphened_numbers(const char *p, size_t n)
{
    bool hyphen = false;

    if (n < 3 || !isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '-' && isdigit((unsigned char)p[i + 1]))
            hyphen = true;
        else if (!isdigit((unsigned char)p[i]))
            return false;
    }
    return hyphen;
}

static bool special_token(const char *p, size_t n)
{
    const char *dot = NULL;
    bool lower = false, colon = false;
    size_t k = 0;

    /* Most tokens are words in lower case, which none of the rules below
     * takes for a special token. */
    while (k < n && p[k] >= 'a' && p[k] <= 'z')
        k++;
    if (k == n)
        return false;
    if (hyphened_numbers(p, n))
        return true;

    if ((n > 4 && strncasecmp(p, "www.", 4) == 0) || (n > 2 && p[n - 2] == '(' && p[n - 1] == ')'))
        return true;
    /* One pass over the token: every word of every question comes here. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '@' || c == '_')
            return true;
        if (c == '.' && !dot)
            dot = p + i;
        colon |= c == ':';
        if (isalpha(c) && i + 1 < n && (p[i + 1] == '#' || p[i + 1] == '+'))
            return true; /* C#, C++, F# */
        if (islower(c))
            lower = true;
        else if (lower && isupper(c))
            return true; /* camelCase, iPhone */
    }
    if (n > 3 && colon && memmem(p, n, "://", 3))
        return true;
    if (dot && dot > p && dot + 1 < p + n && isalpha((unsigned char)dot[1])) {
        size_t ext = (size_t)(p + n - dot - 1);
        bool digits = true;
        for (const char *q = p; q < dot; q++)
            digits = digits && isdigit((unsigned char)*q);
        return !digits && ext <= 5;
    }
    return false;
}

/* A token of symbols alone ("~", "##", "(,)"), not of prose punctuation
 * ("-", "...", "&") nor of arithmetic (ops_of() counts that): what a
 * question about code asks about, so an argument. */
static bool symbols_only(const char *p, size_t n)
{
    bool symbol = false;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (isalnum(c) || c >= 0x80)
            return false;
        symbol |= !in_class((char)c, C_PROSE | C_OP);
    }
    return symbol;
}

/* The arithmetic operators of s that stand next to a number, spaced or not
 * ("2+2" and "2 + 2" are one sum, "5 + 3" is not "5 * 3"); "-" only with a
 * space on a side, since "2-3 days" is a range. */
static void ops_of(const char *s, size_t len, uint8_t ops[NOPS])
{
    memset(ops, 0, NOPS);
    for (size_t i = 0; i < len; i++) {
        const char *o;
        size_t l = i, r = i + 1;
        if (!s[i] || !in_class(s[i], C_OP))
            continue;
        o = strchr(OPS, s[i]);
        while (l > 0 && s[l - 1] == ' ')
            l--;
        while (r < len && s[r] == ' ')
            r++;
        if (!((l > 0 && isdigit((unsigned char)s[l - 1])) ||
              (r < len && isdigit((unsigned char)s[r]))))
            continue;
        if (*o == '-' && (l == i && r == i + 1))
            continue;
        if (ops[o - OPS] < UINT8_MAX)
            ops[o - OPS]++;
    }
}

static bool is_quote(char c)
{
    return c == '"' || c == '\'' || c == '`';
}

/* Collects the special tokens, quoted strings and capitalised words of
 * s[0..len). A capitalised word counts when it does not open a sentence, or
 * is an acronym (two or more capitals): "Who is the CEO of Microsoft". */
static void specials_of(const char *s, size_t len, struct specials *sp)
{
    size_t i = 0;
    bool opening = true, plain;

    sp->n = 0;
    sp->ncap = 0;
    ops_of(s, len, sp->ops);
    while (i < len) {
        size_t b, e;
        while (i < len && isspace((unsigned char)s[i]))
            i++;
        if (i == len)
            break;
        b = i;
        plain = true;
        while (i < len && !isspace((unsigned char)s[i])) {
            plain = plain && s[i] >= 'a' && s[i] <= 'z';
            i++;
        }
        e = i;
        /* A word in lower case alone is no quote, symbol, special token or
         * capitalised word, and opens no sentence after it. */
        if (plain) {
            opening = false;
            continue;
        }
        if (is_quote(s[b]) && b + 1 < len) {
            /* a quoted string: up to the token that ends with the same quote */
            const char *q = memchr(s + b + 1, s[b], len - b - 1);
            while (q && q + 1 < s + len && isalnum((unsigned char)q[1]))
                q = memchr(q + 1, s[b], (size_t)(s + len - q - 1)); /* "don't" inside */
            if (q && q > s + b + 1) {
                special_add(sp, s + b + 1, (size_t)(q - s - b - 1));
                i = (size_t)(q - s) + 1;
                opening = false;
                continue;
            }
        }
        if (symbols_only(s + b, e - b)) {
            special_add(sp, s + b, e - b); /* "what does ~ mean" / "... % mean" */
            opening = false;
            continue;
        }
        while (b < e && in_class(s[b], C_OPEN))
            b++;
        while (e > b && in_class(s[e - 1], C_CLOSE))
            e--;
        if (b < e && special_token(s + b, e - b)) {
            special_add(sp, s + b, e - b);
        } else if (b < e && isupper((unsigned char)s[b])) {
            size_t n = 0, caps = 0;
            while (b + n < e && isalpha((unsigned char)s[b + n]))
                caps += isupper((unsigned char)s[b + n]) != 0, n++;
            if (n > 0 && n <= EMBED_WORD_MAX && sp->ncap < MAX_CAPS && !(n == 1 && s[b] == 'I') &&
                (!opening || (caps >= 2 && caps == n))) {
                for (size_t k = 0; k < n; k++)
                    sp->cap[sp->ncap][k] = (char)tolower((unsigned char)s[b + k]);
                sp->cap[sp->ncap++][n] = '\0';
            }
        }
        opening = s[i - 1] == '.' || s[i - 1] == '?' || s[i - 1] == '!';
    }
}

static bool same_specials(const struct specials *a, const struct specials *b)
{
    bool used[MAX_SPECIAL] = {false};

    if (a->n != b->n || memcmp(a->ops, b->ops, NOPS) != 0)
        return false;
    for (int i = 0; i < a->n; i++) {
        int j;
        for (j = 0; j < b->n; j++)
            if (!used[j] && a->h[i] == b->h[j])
                break;
        if (j == b->n)
            return false;
        used[j] = true;
    }
    return true;
}

/* The numbers and special tokens are compared as multisets and nothing
 * stands in for one (same_numbers(), same_specials()): their key is a sum of
 * mixed hashes, which no order changes. A collision only puts two groups
 * together, and the checks still tell them apart. */
static uint64_t group_key(const struct nums *nums, const struct specials *sp)
{
    uint64_t key = 0;
    bool ops = false;

    for (int i = 0; i < nums->n; i++)
        key += hash_mix(hash_fnv_str(HASH_FNV_OFFSET, nums->v[i]));
    for (int i = 0; i < sp->n; i++)
        key += hash_mix(sp->h[i] ^ 0x5370656369616cULL); /* apart from a number's */
    for (size_t i = 0; i < NOPS; i++)
        ops = ops || sp->ops[i];
    if (ops)
        key = hash_mix(hash_fnv(key, sp->ops, NOPS));
    if (nums->overflow)
        key = hash_mix(key ^ 1);
    if (key == 0 && (nums->n || sp->n || ops || nums->overflow))
        key = 1; /* 0 is "none" */
    return key;
}

uint64_t verify_group(const char *text, size_t len)
{
    struct nums nums;
    struct specials sp;

    all_numbers(text, len, &nums);
    specials_of(text, len, &sp);
    return group_key(&nums, &sp);
}

static bool capitalised(const struct specials *sp, const char *w)
{
    for (int i = 0; i < sp->ncap; i++)
        if (strcmp(sp->cap[i], w) == 0)
            return true;
    return false;
}

/* ---- what each word is ---- */

/* Words a paraphrase adds or drops without changing the question. */
static const char *const neutral_words[] = {
    "a",        "an",        "the",      "some",     "any",        "this",   "that",
    "there",    "it",        "i",        "me",       "my",         "you",    "your",
    "we",       "us",        "they",     "them",     "their",      "he",     "him",
    "his",      "she",       "her",      "our",      "its",        "these",  "those",
    "is",       "are",       "am",       "be",       "been",       "was",    "were",
    "do",       "does",      "did",      "have",     "has",        "had",    "can",
    "could",    "would",     "will",     "should",   "of",         "to",     "for",
    "on",       "in",        "at",       "with",     "about",      "by",     "from",
    "if",       "and",       "or",       "so",       "not",        "no",     "all",
    "one",      "here",      "now",      "much",     "what",       "how",    "which",
    "where",    "when",      "who",      "why",      "please",     "tell",   "know",
    "want",     "wanna",     "need",     "like",     "let",        "just",   "really",
    "hey",      "hi",        "hello",    "ok",       "okay",       "thanks", "show",
    "give",     "find",      "get",      "got",      "getting",    "go",     "going",
    "current",  "currently", "possible", "way",      "wondering",  "wonder", "trying",
    "try",      "something", "sure",     "certain",  "figure",     "kindly", "thank",
    "olly",     "alexa",     "siri",     "cortana",  "assistant",  "may",    "might",
    "must",     "shall",     "into",     "then",     "also",       "very",   "too",
    "again",    "being",     "mine",     "yours",    "ours",       "myself", "yourself",
    "able",     "help",      "check",    "whether",  "right",      "mean",   "means",
    "meaning",  "exactly",   "actually", "anything", "everything", "any",    "currently",
    "soon",     "still",     "would",    "say",      "said",       "look",   "looks",
    "supposed", "many",      "think",    "yet",      "anymore",    "since",  "because",
    "s", /* what a possessive leaves after a code: "flight dl123's status" */
};

/* Arguments no table lists: times of day and relative dates, whose answer
 * changes with them ("tomorrow morning" is not "tonight"), ordinals,
 * multiples ("double", "twice"; "half" is a number, number_words()), and the points
 * of the compass that name regions and time zones ("eastern" / "central"),
 * which word vectors put side by side. */
static const char *const time_words[] = {
    "today",    "tomorrow", "yesterday", "tonight",  "morning",   "afternoon", "evening",
    "night",    "noon",     "midnight",  "weekend",  "weekday",   "next",      "last",
    "previous", "first",    "second",    "third",    "fourth",    "fifth",     "sixth",
    "seventh",  "eighth",   "ninth",     "tenth",    "daily",     "weekly",    "monthly",
    "yearly",   "hourly",   "annual",    "week",     "month",     "year",      "hour",
    "minute",   "day",      "monday",    "tuesday",  "wednesday", "thursday",  "friday",
    "saturday", "sunday",   "am",        "pm",       "double",    "twice",     "triple",
    "eastern",  "western",  "northern",  "southern", "central",   "pacific",   "atlantic",
};

_Static_assert(NELEMS(neutral_words) <= SET_SLOTS / 2, "neutral words: grow SET_SLOTS");
_Static_assert(2 * NOPP <= SET_SLOTS / 2, "opposite stems: grow SET_SLOTS");
_Static_assert(NELEMS(time_words) <= SET_SLOTS / 2, "argument words: grow SET_SLOTS");

static struct wordset acting_set, neutral_set, time_set;
static pthread_once_t sets_once = PTHREAD_ONCE_INIT;

static void sets_build(void)
{
    wordset_fill(&acting_set, acting_stems, NELEMS(acting_stems));
    wordset_fill(&neutral_set, neutral_words, NELEMS(neutral_words));
    wordset_fill(&time_set, time_words, NELEMS(time_words));
}

/* Does t ask to change something? sh[i] is word_hash(t[i].stem). */
static bool acting(const struct embed_word *t, size_t n, const size_t *sh)
{
    pthread_once(&sets_once, sets_build);
    for (size_t i = 0; i < n; i++)
        if (wordset_find_h(&acting_set, t[i].stem, sh[i]))
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

static bool neutral(const char *w)
{
    pthread_once(&sets_once, sets_build);
    return wordset_has(&neutral_set, w);
}

/* What a word is, from the tables alone (not from its context). */
enum {
    W_ARG = 1,   /* an argument: must be matched exactly */
    W_WEAK = 2,  /* names something in one of its senses ("john", "mark"): never
                    paired with another word by verb_pair() */
    W_KNOWN = 4, /* some table knows it: not a typo */
    W_NOUN = 8,  /* WordNet knows it mostly as a noun: a thing, which another
                    thing never stands in for ("bathroom" / "room") */
    W_VERB = 16, /* WordNet knows it mostly as a verb */
};

/* The classes are the expensive part (a walk up WordNet's hypernyms), and
 * the same words come back with every candidate of a lookup and every
 * lookup: each thread keeps the last answers, direct-mapped by hash. */
#define MEMO_SLOTS 2048

/* What a slot knows of its word, each part worked out on first use. */
enum { M_FLAGS = 1, M_PAST = 2 };

struct memo {
    const void *wn, *wv; /* the tables the answer was made with */
    char w[EMBED_WORD_MAX + 1];
    uint8_t known; /* the M_ parts below worked out */
    uint8_t flags; /* M_FLAGS: word_flags() */
    bool past;     /* M_PAST: past_form() */
};

static _Thread_local struct memo memo[MEMO_SLOTS];

/* This thread's slot for word w (of embed_split()) with tables t, emptied
 * when it held another word or other tables. */
static struct memo *memo_slot(const struct verify_tables *t, const char *w)
{
    const struct wordnet *wn = t ? t->wn : NULL;
    const struct wordvec *wv = t ? t->wv : NULL;
    struct memo *m =
        &memo[(word_hash(w) ^ (uintptr_t)wn ^ ((uintptr_t)wv >> 4)) & (MEMO_SLOTS - 1)];

    if (m->wn == wn && m->wv == wv && m->w[0] && strcmp(m->w, w) == 0)
        return m;
    m->wn = wn;
    m->wv = wv;
    memcpy(m->w, w, strlen(w) + 1);
    m->known = 0;
    return m;
}

/* The first sense of w that WordNet lists is an instance ("paris"), or a
 * sense of it is and it has no other part of speech ("john"): see
 * word_flags(). */
static unsigned wordnet_flags(const struct wordnet *wn, const char *w, size_t n)
{
    const char *lem[4];
    unsigned f = 0;
    size_t nouns, verbs;

    if (wordnet_lemmatise(wn, w, n, WORDNET_ANY, lem, 4) == 0)
        return 0;
    f |= W_KNOWN;
    nouns = wordnet_sense_count(wn, w, n, WORDNET_NOUN);
    verbs = wordnet_sense_count(wn, w, n, WORDNET_VERB);
    if (2 * nouns >= wordnet_sense_count(wn, w, n, WORDNET_ANY))
        f |= W_NOUN; /* mostly a thing: "cereal", "sugar", "room" */
    if (verbs > nouns)
        f |= W_VERB; /* mostly an action: "set", "turn", "play" */
    if (wordnet_in_closed_class(wn, w, n))
        f |= W_ARG;
    if (wordnet_is_instance(wn, w, n)) {
        f |= W_WEAK;
        /* Only a name: no verb, no adjective, no adverb ("paris", "tokyo");
         * "set" (also an Egyptian god) or "mark" stay predicate words. */
        if (!wordnet_lemmatise(wn, w, n, WORDNET_VERB, lem, 1) &&
            !wordnet_lemmatise(wn, w, n, WORDNET_ADJ, lem, 1) &&
            !wordnet_lemmatise(wn, w, n, WORDNET_ADV, lem, 1) && wordnet_instance_first(wn, w, n))
            f |= W_ARG;
    }
    return f;
}

static unsigned word_flags(const struct verify_tables *t, const struct embed_word *x)
{
    const struct wordnet *wn = t ? t->wn : NULL;
    const struct wordvec *wv = t ? t->wv : NULL;
    size_t n = strlen(x->text);
    struct memo *m = memo_slot(t, x->text);
    unsigned f = 0;

    if (m->known & M_FLAGS)
        return m->flags;
    pthread_once(&sets_once, sets_build);
    if (wordset_has(&time_set, x->text))
        f |= W_ARG | W_KNOWN;
    if (wn)
        f |= wordnet_flags(wn, x->text, n);
    /* A word WordNet does not know is a name, a place, a brand, or a typo:
     * an argument either way, even when the word vectors know it (they know
     * "ryan" and "eric", and put them close). Without WordNet, the
     * embedder's own frequency table stands in for "known". */
    if (wn && !(f & W_KNOWN))
        f |= W_ARG;
    if (wv && wordvec_find(wv, x->text, n) >= 0)
        f |= W_KNOWN;
    if (!wn && x->rank == 0 && !(f & W_KNOWN))
        f |= W_ARG;
    m->flags = (uint8_t)f;
    m->known |= M_FLAGS;
    return f;
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

/* ---- mood and particles ---- */

enum { MOOD_NONE, MOOD_ASK, MOOD_ACT };

/* Does the question ask (opens with a question word or an auxiliary: "is
 * there an alarm", "do i have") or act (opens with a verb: "set an alarm",
 * "play my list")? Greetings, wake words, "please", "can you", "i want to"
 * are skipped; "tell me", "show me", a verb that asks to be told ("define
 * happiness", "explain ...") and a noun say neither. */
static int mood(const struct verify_tables *t, const struct embed_word *w, size_t n)
{
    static const char *const skip[] = {"please", "hey",  "hi",    "hello", "olly",   "alexa", "ok",
                                       "okay",   "can",  "could", "would", "will",   "you",   "i",
                                       "want",   "need", "like",  "to",    "wanna",  "just",  "now",
                                       "kindly", "so",   "then",  "and",   "google", "siri",  "id",
                                       "let",    "us",   NULL};
    static const char *const aux[] = {"is",  "are",  "was", "were", "do",  "does",
                                      "did", "have", "has", "am",   "any", NULL};
    static const char *const telling[] = {"define",    "explain", "describe",  "read",
                                          "calculate", "compute", "translate", NULL};
    static const char *const prep[] = {"in", "at", "of", "near", "about", "around", NULL};

    bool subject = false; /* "i" or "you" went first: "i have lost my phone" */

    pthread_once(&sets_once, sets_build);
    for (size_t i = 0; i < n; i++) {
        const char *x = w[i].text;
        bool helper;

        if (word_in(x, skip)) {
            subject |= is(x, "i") || is(x, "you");
            continue;
        }
        if (w[i].kind == EMBED_QUESTION)
            return MOOD_ASK;
        helper = word_in(x, aux);
        /* An auxiliary asks when it opens the question ("have you ..."),
         * not after its subject ("i have lost ...", "i am sad"). */
        if (helper && subject)
            continue;
        if (helper)
            return MOOD_ASK;
        if (word_in(x, telling))
            return MOOD_NONE;
        /* A verb acts, unless a preposition or a time word follows it: then
         * it names a thing ("weather in paris", "weather today", "time in
         * tokyo", "news about ..."). */
        if (w[i].kind == EMBED_CONTENT && t && t->wn && (word_flags(t, &w[i]) & W_VERB) &&
            !neutral(x) &&
            !(i + 1 < n && (word_in(w[i + 1].text, prep) || wordset_has(&time_set, w[i + 1].text))))
            return MOOD_ACT;
        return MOOD_NONE;
    }
    return MOOD_NONE;
}

/* A side without a verb is a bare noun phrase: it names what it wants and
 * reads as a request ("alarm for ten am", "audio"), not as a yes / no
 * question. The verbs of asking to be told ("give me recent emails") are
 * neutral words, so they are looked for by name, and so are the modals
 * that open a question without a verb ("will it be sunny tomorrow"). */
static bool verbless(const struct verify_tables *t, const struct embed_word *w, size_t n)
{
    static const char *const telling[] = {"tell", "show",  "give", "find", "get",
                                          "list", "check", "say",  "let",  NULL};
    static const char *const modals[] = {"will",  "would", "can",   "could", "should",
                                         "shall", "may",   "might", "must",  NULL};

    if (!t || !t->wn || (n > 0 && word_in(w[0].text, modals)))
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((w[i].kind == EMBED_CONTENT && (word_flags(t, &w[i]) & W_VERB)) ||
            word_in(w[i].text, telling))
            return false;
    }
    return true;
}

/* The verbs whose particle says what they do: "turn on", "switch off". */
static bool turning(const struct embed_word *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is(w[i].text, "turn") || is(w[i].text, "switch"))
            return true;
    return false;
}

/* WordNet reduces x[0..l) to another verb: "won" -> "win", "painted" ->
 * "paint" (t->wn set). Kept in the word's memo slot: each lookup holds
 * every content word of its question against it. */
static bool past_form(const struct verify_tables *t, const char *x, size_t l)
{
    struct memo *m = memo_slot(t, x);
    const char *base;

    if (!(m->known & M_PAST)) {
        m->past =
            wordnet_lemmatise(t->wn, x, l, WORDNET_VERB, &base, 1) != 0 && strcmp(base, x) != 0;
        m->known |= M_PAST;
    }
    return m->past;
}

/* A verb in the simple past ("who painted the mona lisa", "who won"): a
 * form WordNet reduces to another verb, by its exception list ("won" ->
 * "win") or by "-ed" ("painted" -> "paint"), not a present form ("-s",
 * "-ing"), and not a participle after an auxiliary ("when should my oil get
 * changed", "is it booked"). */
static bool past_verb(const struct verify_tables *t, const struct embed_word *w, size_t n)
{
    static const char *const aux[] = {"get", "got",  "gets", "be",   "been", "being", "is", "are",
                                      "was", "were", "am",   "have", "has",  "had",   NULL};

    if (!t || !t->wn)
        return false;
    for (size_t i = 0; i < n; i++) {
        const char *x = w[i].text;
        size_t l = strlen(x);
        if (w[i].kind != EMBED_CONTENT || l < 3 || x[l - 1] == 's' ||
            (l > 3 && strcmp(x + l - 3, "ing") == 0) || !past_form(t, x, l) ||
            (i > 0 && word_in(w[i - 1].text, aux)))
            continue;
        return true;
    }
    return false;
}

/* The particles that make the verb: turn on / off / up / down, out. */
static unsigned particles(const struct embed_word *w, size_t n)
{
    static const char *const p[] = {"on", "off", "up", "down", "out"};
    unsigned m = 0;

    for (size_t i = 0; i < n; i++)
        for (unsigned k = 0; k < NELEMS(p); k++)
            if (is(w[i].text, p[k]))
                m |= 1u << k;
    return m;
}

/* A particle one side adds that only repeats where a verb both sides use
 * already goes: "dim the lights down" is "dim the lights", "brighten up
 * the lights" is "brighten the lights". p is the one particle bit (up or
 * down) the other side lacks. */
static bool particle_repeats(const struct embed_word *a, size_t na, const struct embed_word *b,
                             size_t nb, unsigned p)
{
    static const char *const up[] = {"brighten", "rais",  "increas", "lift", "boost",
                                     "speed",    "start", "open",    "wake", "warm"};
    static const char *const down[] = {"lower", "dim",  "reduc", "decreas", "lessen",
                                       "slow",  "calm", "cool",  "quiet",   "shut"};
    const char *const *v = p == 1u << 2 ? up : down;
    size_t n = p == 1u << 2 ? NELEMS(up) : NELEMS(down);

    if (p != 1u << 2 && p != 1u << 3)
        return false;
    for (size_t k = 0; k < n; k++)
        if (has_stem(a, na, v[k]) && has_stem(b, nb, v[k]))
            return true;
    return false;
}

/* ---- arithmetic in words ---- */

/* Word k of w is a number, in digits or in words. */
static bool number_at(const struct embed_word *w, size_t n, size_t k)
{
    return k < n && (w[k].kind == EMBED_NUMBER ||
                     word_value((struct span){w[k].text, strlen(w[k].text)}) >= 0);
}

/* The arithmetic of w said in words, as operator characters in their order
 * into ops (NUL-terminated, MAX_WORD_OPS at most): "plus", "minus",
 * "times", "multiplied by", "divided by" next to a number. The symbols
 * ("5 + 3") are counted apart (ops_of()). */
static void word_ops(const struct embed_word *w, size_t n, char ops[MAX_WORD_OPS + 1])
{
    static const struct {
        const char *word;
        char op;
    } opnames[] = {
        {"plus", '+'}, {"minus", '-'}, {"times", '*'}, {"multiplied", '*'}, {"divided", '/'}};
    size_t m = 0;

    for (size_t i = 0; i < n && m < MAX_WORD_OPS; i++) {
        size_t next = i + 1 < n && is(w[i + 1].text, "by") ? i + 2 : i + 1;
        for (size_t k = 0; k < NELEMS(opnames); k++)
            if (is(w[i].text, opnames[k].word) &&
                ((i > 0 && number_at(w, n, i - 1)) || number_at(w, n, next)))
                ops[m++] = opnames[k].op;
    }
    ops[m] = '\0';
}

/* ---- the alignment ---- */

/* One side's words as the alignment sees them. */
enum {
    T_SKIP = 1, /* neutral, a number (compared apart), or punctuation */
    T_ARG = 2,  /* an argument */
    T_WEAK = 4, /* see W_WEAK */
    T_DONE = 8, /* accounted for on the other side */
    T_KNOWN = 16,
    T_TO = 32,    /* after "to" / "into" / "onto": a target */
    T_FROM = 64,  /* after "from": a source */
    T_NOUN = 128, /* see W_NOUN */
};

/* "like" that says what someone likes ("i like this song", "we really
 * like"), not the framing of "i would like", "like to" or "what is the
 * weather like". */
static bool liking(const struct embed_word *w, size_t n, size_t i)
{
    static const char *const subject[] = {"i", "we", "they", "he", "she", "really", "also", NULL};

    if (!is(w[i].text, "like") || i == 0 || (i + 1 < n && is(w[i + 1].text, "to")))
        return false;
    return word_in(w[i - 1].text, subject);
}

/* Word i opens a request to be shown something: "list all my alarms",
 * "please display my lists", "read me the headlines" ask what "show my
 * alarms" asks ("read my latest email" does not: it is not "send ..."). */
static bool showing(const struct embed_word *w, size_t n, size_t i)
{
    if (!is(w[i].text, "list") && !is(w[i].text, "display") && !is(w[i].text, "explain") &&
        !(is(w[i].text, "read") && i + 1 < n && is(w[i + 1].text, "me")))
        return false;
    for (size_t k = 0; k < i; k++)
        if (!neutral(w[k].text))
            return false;
    return true;
}

static const char *const articles[] = {"a", "an", "the", NULL};

/* Word i is "may" the month, not the modal: beside a number ("may 4",
 * "the 4th of may") or after a preposition ("in may", "until may"). An
 * argument then, as "march" is: "march 4" is not "may 4". */
static bool month_may(const struct embed_word *w, size_t n, size_t i)
{
    static const char *const before[] = {"in",     "of",    "on",   "since", "until",   "till",
                                         "by",     "for",   "from", "to",    "through", "during",
                                         "before", "after", "next", "last",  NULL};

    if (!is(w[i].text, "may"))
        return false;
    return (i > 0 && number_at(w, n, i - 1)) || number_at(w, n, i + 1) ||
           (i > 0 && word_in(w[i - 1].text, before));
}

/* Word i is the suffix of an ordinal in digits, split from its number
 * ("5th", "21st"): the numbers check has the number, "june 5" is "june
 * 5th". */
static bool ordinal_suffix(const struct embed_word *w, size_t i)
{
    static const char *const suffix[] = {"st", "nd", "rd", "th", NULL};

    return i > 0 && w[i - 1].kind == EMBED_NUMBER && word_in(w[i].text, suffix);
}

static void classify(const struct verify_tables *t, const struct embed_word *w, size_t n,
                     const struct specials *sp, uint8_t *fl)
{
    int role = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned f = 0;
        struct span sw = {w[i].text, strlen(w[i].text)};
        /* Numbers, digits or words, are compared apart (numbers(),
         * number_words()), with the words that make a time of them. */
        if (month_may(w, n, i)) {
            f = T_ARG | T_KNOWN;
        } else if (w[i].kind == EMBED_NUMBER || w[i].kind == EMBED_QUESTION ||
                   ordinal_suffix(w, i) || (neutral(w[i].text) && !liking(w, n, i)) ||
                   showing(w, n, i) || word_value(sw) >= 0 || is(w[i].text, "half") ||
                   is(w[i].text, "quarter") || is(w[i].text, "past") || is(w[i].text, "oclock")) {
            f = T_SKIP;
        } else {
            unsigned wf = word_flags(t, &w[i]);
            f |= wf & W_ARG ? T_ARG : 0;
            f |= wf & W_WEAK ? T_WEAK : 0;
            f |= wf & W_KNOWN ? T_KNOWN : 0;
            f |= wf & W_NOUN ? T_NOUN : 0;
            /* After an article it is a thing here, whatever it mostly is
             * ("what is a transform"). */
            if (i > 0 && word_in(w[i - 1].text, articles))
                f |= T_NOUN;
            if ((w[i].kind == EMBED_FUNCTION || w[i].kind == EMBED_FRAMING) && !liking(w, n, i))
                f = T_SKIP;
            else if (capitalised(sp, w[i].text))
                f |= T_ARG;
        }
        /* The role a preposition gives lasts over articles and pronouns
         * up to the next content word: "from my savings". */
        if (is(w[i].text, "to") || is(w[i].text, "into") || is(w[i].text, "onto"))
            role = T_TO;
        else if (is(w[i].text, "from"))
            role = T_FROM;
        else if (!(f & T_SKIP) || w[i].kind == EMBED_NUMBER) {
            f |= (unsigned)role;
            role = 0;
        }
        fl[i] = (uint8_t)f;
    }
}

/* Word a found in b by its stem. Marks the word of b found. */
/* Two words of one stem that WordNet knows as different words: the
 * stemmer's collisions ("transformer" / "transform", "engineer" / "engine",
 * "administrator" / "administration"), which the derivations and synonyms
 * judge instead. Forms of one word share a lemma ("lights" / "light",
 * "playing" / "play"); two words WordNet does not know keep their stem
 * ("iphones" / "iphone"), but one it does not know is not one it knows
 * ("animes" / "animals"). */
/* adv[0..m) is adj[0..l) + "ly": an adverb made of its adjective, the same
 * word ("safe" / "safely"). */
static bool adverb_of(const char *adj, size_t l, const char *adv, size_t m)
{
    return l + 2 == m && strncmp(adj, adv, l) == 0 && strcmp(adv + l, "ly") == 0;
}

static bool stem_collision(const struct verify_tables *t, const char *x, const char *y)
{
    const char *lx[4], *ly[4];
    size_t nx, ny, l = strlen(x), m = strlen(y);

    if (!t || !t->wn || strcmp(x, y) == 0 || adverb_of(x, l, y, m) || adverb_of(y, m, x, l))
        return false;
    nx = wordnet_lemmatise(t->wn, x, l, WORDNET_ANY, lx, 4);
    ny = wordnet_lemmatise(t->wn, y, m, WORDNET_ANY, ly, 4);
    if (nx == 0 || ny == 0)
        return (nx == 0) != (ny == 0);
    for (size_t i = 0; i < nx; i++)
        for (size_t j = 0; j < ny; j++)
            if (strcmp(lx[i], ly[j]) == 0)
                return false;
    return true;
}

static bool find_in(const struct verify_tables *t, const struct embed_word *a,
                    const struct embed_word *b, uint8_t *bf, size_t nb)
{
    for (size_t j = 0; j < nb; j++)
        if (!(bf[j] & T_SKIP) && strcmp(a->stem, b[j].stem) == 0 &&
            !stem_collision(t, a->text, b[j].text)) {
            bf[j] |= T_DONE;
            return true;
        }
    return false;
}

/* Word i of w follows an article (classify() makes it a thing) or a
 * possessive: a thing in this question ("the book", "my mother"), whatever
 * the word mostly is. */
static bool determined(const struct embed_word *w, size_t i)
{
    static const char *const possessive[] = {"my",  "your",  "his", "her",
                                             "our", "their", "its", NULL};

    return i > 0 && (word_in(w[i - 1].text, articles) || word_in(w[i - 1].text, possessive));
}

/* Word i of a, unmatched by stem, found in b by WordNet: a synonym in the
 * first senses of both (MAIN_SENSES, ADJ_SENSES) or a derivation of a word
 * of b that is itself a predicate word without its own counterpart
 * ("wrote" / "author", not "hide" for the "hidden" that the other side has
 * too). Marks the word of b found. */
static bool find_related(const struct verify_tables *t, const struct embed_word *a, size_t i,
                         uint8_t af, const struct embed_word *b, uint8_t *bf, size_t nb)
{
    /* Senses per part of speech (enum wordnet_pos). Two words that name
     * things here are synonyms as nouns only: "my mother" is not "my
     * father", though the verbs share "beget". */
    static const unsigned any[] = {0, MAIN_SENSES, MAIN_SENSES, ADJ_SENSES, ADJ_SENSES},
                          nouns[] = {0, MAIN_SENSES, 0, 0, 0};

    bool thing;

    if (!t || !t->wn || (af & T_ARG))
        return false;
    thing = determined(a, i);
    for (size_t j = 0; j < nb; j++) {
        const char *x = a[i].text, *y = b[j].text;
        const unsigned *rank = thing && determined(b, j) ? nouns : any;
        if ((bf[j] & (T_SKIP | T_ARG | T_DONE)) != 0)
            continue;
        /* A derivation joins an action and its doer or thing ("write" /
         * "writer"), not two things ("engine" / "engineer"). */
        if (wordnet_synonyms_ranked(t->wn, x, strlen(x), y, strlen(y), rank) ||
            (!((af & T_NOUN) && (bf[j] & T_NOUN)) &&
             wordnet_derivationally_related(t->wn, x, strlen(x), y, strlen(y)))) {
            bf[j] |= T_DONE;
            return true;
        }
    }
    return false;
}

/* Word i of a asks for a measure ("how tall", "how old", "how far"): it
 * finds the noun that measure is, by WordNet's attribute pointer, among the
 * unmatched words of b ("height", "age", "distance"). Only after "how": "is
 * it hot" is not "what is the temperature", but "how hot is it" is. */
static bool find_measure(const struct verify_tables *t, const struct embed_word *a, size_t i,
                         uint8_t af, const struct embed_word *b, uint8_t *bf, size_t nb)
{
    if (!t || !t->wn || (af & T_ARG) || i == 0 || !is(a[i - 1].text, "how"))
        return false;
    /* The noun may be an argument ("weight" is also a unit): the pointer
     * names it exactly. */
    for (size_t j = 0; j < nb; j++) {
        const char *x = a[i].text, *y = b[j].text;
        if ((bf[j] & (T_SKIP | T_DONE)) != 0)
            continue;
        if (wordnet_attribute(t->wn, x, strlen(x), y, strlen(y))) {
            bf[j] |= T_DONE;
            return true;
        }
    }
    return false;
}

/* Word a of one side is unmatched: is it one edit from an unmatched word
 * of b that one of the tables does not know (a typo, "statud" / "status")?
 * Two known words one edit apart ("card" / "care") are two words. */
static bool typo_of(const struct embed_word *a, uint8_t af, const struct embed_word *b, uint8_t *bf,
                    size_t nb)
{
    size_t la = strlen(a->text);

    if (la < TYPO_LEN)
        return false;
    for (size_t j = 0; j < nb; j++) {
        size_t l = strlen(b[j].text);
        if ((bf[j] & (T_SKIP | T_DONE)) || l < TYPO_LEN || ((af & T_KNOWN) && (bf[j] & T_KNOWN)))
            continue;
        if (one_edit(a->text, b[j].text)) {
            bf[j] |= T_DONE;
            return true;
        }
    }
    return false;
}

/* The word at w[i] as a verb with its particle when one follows ("turn on",
 * "switch off"), into buf; else the word itself. */
static const char *phrasal(const struct embed_word *w, size_t n, size_t i, char *buf, size_t cap)
{
    static const char *const p[] = {"on", "off", "up", "down", "out"};

    for (size_t k = i + 1; k < n && k <= i + 5; k++)
        for (unsigned x = 0; x < NELEMS(p); x++)
            if (is(w[k].text, p[x])) {
                snprintf(buf, cap, "%s %s", w[i].text, p[x]);
                return buf;
            }
    return w[i].text;
}

/* Ways to ask a device or a program to run, which WordNet does not link. */
static const char *const switch_on[] = {"turn on", "switch on", "power on",
                                        "start",   "activate",  NULL};

/* Two predicate words left on each side, one mostly a verb: one verb
 * is the other or a kind of it, one hypernym step up ("erase" / "remove",
 * "reduce" / "decrease", "turn on" / "start"), and WordNet does not call
 * them antonyms. Siblings under one hypernym ("increase" / "decrease") are
 * never paired. */
static bool verb_pair(const struct verify_tables *t, const struct embed_word *a, size_t na,
                      size_t i, uint8_t af, const struct embed_word *b, size_t nb, size_t j,
                      uint8_t bf)
{
    char pa[2 * EMBED_WORD_MAX + 2], pb[2 * EMBED_WORD_MAX + 2];
    const char *x, *y;

    /* one of them mostly a verb, the other not mostly a thing unless it is
     * also a verb ("decrease" is more often a noun) */
    if ((af | bf) & (T_ARG | T_WEAK) || ((af & T_NOUN) && (bf & T_NOUN)) ||
        !((word_flags(t, &a[i]) | word_flags(t, &b[j])) & W_VERB))
        return false;
    x = phrasal(a, na, i, pa, sizeof(pa));
    y = phrasal(b, nb, j, pb, sizeof(pb));
    if (word_in(x, switch_on) && word_in(y, switch_on))
        return true;
    if (wordnet_antonyms(t->wn, x, strlen(x), y, strlen(y)) ||
        wordnet_cohyponyms(t->wn, x, strlen(x), y, strlen(y)))
        return false; /* "set" / "reset" are two kinds of one act */
    return wordnet_synonyms(t->wn, x, strlen(x), y, strlen(y), MAIN_SENSES) ||
           wordnet_verb_hypernym(t->wn, x, strlen(x), y, strlen(y), VERB_UP, MAIN_SENSES);
}

/* The words that follow "to" (or "from") on both sides, as far as both
 * sides have them, must be the same ones: "from savings to checking" is not
 * "from checking to savings", "convert miles to kilometers" is not
 * "convert kilometers to miles". A side that gives no shared word the role
 * says nothing ("send bob an email" / "send an email to bob"). */
static bool roles_differ(const struct embed_word *a, const uint8_t *af, size_t na,
                         const struct embed_word *b, const uint8_t *bf, size_t nb)
{
    for (size_t i = 0; i < na; i++) {
        if (!(af[i] & (T_TO | T_FROM)))
            continue;
        for (size_t j = 0; j < nb; j++)
            if ((bf[j] & (T_TO | T_FROM)) &&
                (bf[j] & (T_TO | T_FROM)) != (af[i] & (T_TO | T_FROM)) &&
                strcmp(a[i].stem, b[j].stem) == 0)
                return true; /* the same word, from on one side and to on the other */
    }
    for (unsigned r = T_TO; r <= T_FROM; r <<= 1) {
        bool any_a = false, any_b = false, differ = false;
        for (size_t i = 0; i < na; i++)
            if ((af[i] & r) && has_stem(b, nb, a[i].stem)) {
                bool same = false;
                any_a = true;
                for (size_t j = 0; j < nb; j++)
                    same = same || ((bf[j] & r) && strcmp(a[i].stem, b[j].stem) == 0);
                differ = differ || !same;
            }
        for (size_t j = 0; j < nb; j++)
            if ((bf[j] & r) && has_stem(a, na, b[j].stem)) {
                bool same = false;
                any_b = true;
                for (size_t i = 0; i < na; i++)
                    same = same || ((af[i] & r) && strcmp(a[i].stem, b[j].stem) == 0);
                differ = differ || !same;
            }
        if (any_a && any_b && differ)
            return true;
    }
    return false;
}

/* ---- one side of a comparison ---- */

/* What the checks need of one question, each part worked out when a check
 * first asks for it: a candidate that its numbers turn away costs its
 * numbers only, and a lookup works out its own question once for all its
 * candidates (struct verify_query). */
enum {
    S_NUMBERS = 1,  /* nums */
    S_NEGATION = 2, /* negated */
    S_WORDS = 4,    /* w, n and what the words alone tell: opp .. past */
    S_MOOD = 8,     /* mood (WordNet) */
    S_SPECIALS = 16,
    S_CLASSES = 32, /* fl (the tables) */
};

struct side {
    const char *s;
    size_t len;
    const struct verify_tables *t;
    const struct embed_word *w; /* w[0..n): the words */
    size_t n;
    struct embed_word *own; /* MAX_WORDS words to split s into; NULL: w was given */
    unsigned done;          /* the S_ parts worked out */
    struct nums nums;
    bool negated; /* an odd number of negations */
    struct pairset opp[2];
    unsigned question, particles;
    bool acting, past;
    int mood;
    bool verbless;               /* no word WordNet knows mostly as a verb: "alarm for ten am" */
    bool past_verb;              /* a verb in the past: "painted", "won" */
    char wops[MAX_WORD_OPS + 1]; /* word_ops() */
    struct specials sp;
    uint8_t fl[MAX_WORDS];
};

/* s[0..len) to be split into own[MAX_WORDS], or already split into w[0..n)
 * (own NULL; only the first MAX_WORDS words count, as when split here). */
static void side_init(struct side *x, const char *s, size_t len, const struct verify_tables *t,
                      const struct embed_word *w, size_t n, struct embed_word *own)
{
    x->s = s;
    x->len = len;
    x->t = t;
    x->w = w;
    x->n = n < MAX_WORDS ? n : MAX_WORDS;
    x->own = own;
    x->done = 0;
}

static void side_need(struct side *x, unsigned part)
{
    if (x->done & part)
        return;
    switch (part) {
    case S_NUMBERS: all_numbers(x->s, x->len, &x->nums); break;
    case S_NEGATION: x->negated = negations(x->s, x->len) & 1; break;
    case S_WORDS: {
        size_t sh[MAX_WORDS];
        if (x->own) {
            x->n = embed_split(x->s, x->len, x->own, MAX_WORDS);
            x->w = x->own;
        }
        /* The stems' hashes once, for the two sets of stems. */
        for (size_t i = 0; i < x->n; i++)
            sh[i] = word_hash(x->w[i].stem);
        opp_sides(x->w, x->n, sh, x->opp);
        x->question = question(x->w, x->n);
        x->acting = acting(x->w, x->n, sh);
        x->past = past(x->w, x->n);
        x->particles = particles(x->w, x->n);
        word_ops(x->w, x->n, x->wops);
        break;
    }
    case S_MOOD:
        side_need(x, S_WORDS);
        x->mood = mood(x->t, x->w, x->n);
        x->verbless = verbless(x->t, x->w, x->n);
        x->past_verb = past_verb(x->t, x->w, x->n);
        break;
    case S_SPECIALS: specials_of(x->s, x->len, &x->sp); break;
    case S_CLASSES:
        side_need(x, S_WORDS);
        side_need(x, S_SPECIALS);
        classify(x->t, x->w, x->n, &x->sp, x->fl);
        break;
    }
    x->done |= part;
}

static void need(struct side *a, struct side *b, unsigned part)
{
    side_need(a, part);
    side_need(b, part);
}

/* The words of one side left unaccounted, "a b c", into why (diagnostics):
 * those with a flag of mask, or all of them when mask is 0. */
static void explain_left(const struct embed_word *w, const uint8_t *fl, size_t n, uint8_t mask,
                         char *why, size_t cap, size_t *at)
{
    for (size_t i = 0; why && i < n; i++) {
        int k;
        if (fl[i] & (T_SKIP | T_DONE) || (mask && !(fl[i] & mask)))
            continue;
        k = snprintf(why + *at, cap - *at, "%s%s", *at ? " " : "", w[i].text);
        if (k < 0 || (size_t)k >= cap - *at)
            return;
        *at += (size_t)k;
    }
}

/* The checks, in the order of enum verify_reason, of query side x against
 * candidate side y (both must have the same tables). */
static enum verify_reason compare(struct side *x, struct side *y, char *why, size_t cap)
{
    const struct verify_tables *t = x->t;
    const struct embed_word *a, *b;
    uint8_t af[MAX_WORDS], bf[MAX_WORDS];
    size_t at = 0, na, nb;
    unsigned qa, qb, pa, pb;
    int all = 0, left_a = 0, left_b = 0;

    need(x, y, S_NUMBERS);
    if (!same_numbers(&x->nums, &y->nums))
        return VERIFY_NUMBERS;
    need(x, y, S_NEGATION);
    if (x->negated != y->negated)
        return VERIFY_NEGATION;
    need(x, y, S_WORDS);
    /* "1785 minus 334 plus 87" is not "1785 plus 334 minus 87": the numbers
     * and the operator words are the same, their order is not. */
    if (strcmp(x->wops, y->wops) != 0)
        return VERIFY_NUMBERS;
    if (opposite(x->opp, y->opp))
        return VERIFY_OPPOSITE;
    qa = x->question;
    qb = y->question;
    if (qa && qb && (qa & ~(unsigned)Q_ANY) != (qb & ~(unsigned)Q_ANY))
        return VERIFY_QUESTION;
    need(x, y, S_MOOD);
    /* Acting against asking ("delete my alarms" / "what are my alarms"); two
     * commands are told apart by their verbs, below ("remove" / "stop wake up
     * calls" both act, though only one verb is in acting_stems). */
    if (x->acting != y->acting && !(x->mood == MOOD_ACT && y->mood == MOOD_ACT))
        return VERIFY_ACTION;
    /* "when did i change my oil" is not "when should i change my oil"; "who
     * was the painter" is "who painted". */
    if (x->past != y->past && !(x->past ? y->past_verb : x->past_verb))
        return VERIFY_TENSE;
    /* "turn the lights down" is not "turn the lights on". A lone "on" may
     * go in a question ("what's on") or against another verb ("activate the
     * vacuum" / "turn on the vacuum", which the verbs settle below), not
     * against a bare noun phrase ("audio" / "audio on") nor against the
     * same verb without it ("turn the lights blue" / "turn on the blue
     * lights"). */
    pa = x->particles;
    pb = y->particles;
    if (pa != pb &&
        ((pa && pb) || (pa | pb) != 1u ||
         !(pa ? qa || (!y->verbless && !turning(y->w, y->n))
              : qb || (!x->verbless && !turning(x->w, x->n)))) &&
        !(!(pa && pb) && particle_repeats(x->w, x->n, y->w, y->n, pa | pb)))
        return VERIFY_OPPOSITE;
    if (x->mood != y->mood && x->mood != MOOD_NONE && y->mood != MOOD_NONE)
        return VERIFY_QUESTION;
    /* A yes / no question against a bare noun phrase: "is there an alarm
     * for ten am" asks, "alarm for ten am" wants one set. */
    if (!qa && !qb &&
        ((x->mood == MOOD_ASK && y->mood == MOOD_NONE && y->verbless) ||
         (y->mood == MOOD_ASK && x->mood == MOOD_NONE && x->verbless)))
        return VERIFY_QUESTION;
    need(x, y, S_SPECIALS);
    if (!same_specials(&x->sp, &y->sp))
        return VERIFY_ARGUMENT;
    need(x, y, S_CLASSES);
    /* The alignment marks words done: on copies, so that a side stays as
     * worked out for the next comparison. */
    a = x->w;
    na = x->n;
    b = y->w;
    nb = y->n;
    memcpy(af, x->fl, na);
    memcpy(bf, y->fl, nb);
    /* Every word finds its counterpart by stem, synonym or derivation;
     * arguments by stem only. */
    for (size_t i = 0; i < na; i++)
        if (!(af[i] & T_SKIP) && find_in(t, &a[i], b, bf, nb))
            af[i] |= T_DONE;
    for (size_t j = 0; j < nb; j++)
        if (!(bf[j] & (T_SKIP | T_DONE)) && find_in(t, &b[j], a, af, na))
            bf[j] |= T_DONE;
    for (size_t i = 0; i < na; i++)
        if (!(af[i] & (T_SKIP | T_DONE)) && find_related(t, a, i, af[i], b, bf, nb))
            af[i] |= T_DONE;
    for (size_t j = 0; j < nb; j++)
        if (!(bf[j] & (T_SKIP | T_DONE)) && find_related(t, b, j, bf[j], a, af, na))
            bf[j] |= T_DONE;
    for (size_t i = 0; i < na; i++)
        if (!(af[i] & (T_SKIP | T_DONE)) && find_measure(t, a, i, af[i], b, bf, nb))
            af[i] |= T_DONE;
    for (size_t j = 0; j < nb; j++)
        if (!(bf[j] & (T_SKIP | T_DONE)) && find_measure(t, b, j, bf[j], a, af, na))
            bf[j] |= T_DONE;
    /* What is left: typos, then antonyms (never), then verbs one step apart. */
    for (size_t i = 0; i < na; i++)
        if (!(af[i] & (T_SKIP | T_DONE)) && t && (t->wv || t->wn) &&
            typo_of(&a[i], af[i], b, bf, nb))
            af[i] |= T_DONE;
    /* "turn the lights off in the bathroom" is "lights off bathroom": the
     * particle both sides share carries the verb. */
    if (x->particles && x->particles == y->particles) {
        for (size_t i = 0; i < na; i++)
            if (!(af[i] & (T_SKIP | T_DONE)) && turning(&a[i], 1))
                af[i] |= T_DONE;
        for (size_t j = 0; j < nb; j++)
            if (!(bf[j] & (T_SKIP | T_DONE)) && turning(&b[j], 1))
                bf[j] |= T_DONE;
    }
    /* "what time is the next bus" asks "when is the next bus", "what is
     * the price of" asks "how much is". */
    for (size_t i = 0; i < na; i++)
        if (!(af[i] & (T_SKIP | T_DONE)) && asked_alike(a, i, b, nb))
            af[i] |= T_DONE;
    for (size_t j = 0; j < nb; j++)
        if (!(bf[j] & (T_SKIP | T_DONE)) && asked_alike(b, j, a, na))
            bf[j] |= T_DONE;
    for (size_t i = 0; i < na; i++)
        if (!(af[i] & (T_SKIP | T_DONE)) && (af[i] & T_ARG)) {
            explain_left(a, af, na, T_ARG, why, cap, &at);
            return VERIFY_ARGUMENT;
        }
    for (size_t j = 0; j < nb; j++)
        if (!(bf[j] & (T_SKIP | T_DONE)) && (bf[j] & T_ARG)) {
            explain_left(b, bf, nb, T_ARG, why, cap, &at);
            return VERIFY_ARGUMENT;
        }
    if (t && t->wn)
        for (size_t i = 0; i < na; i++)
            for (size_t j = 0; !(af[i] & (T_SKIP | T_DONE)) && j < nb; j++)
                if (!(bf[j] & (T_SKIP | T_DONE)) &&
                    wordnet_antonyms(t->wn, a[i].text, strlen(a[i].text), b[j].text,
                                     strlen(b[j].text)))
                    return VERIFY_OPPOSITE;
    if (t && t->wn && VERB_UP > 0)
        for (size_t i = 0; i < na; i++) {
            if (af[i] & (T_SKIP | T_DONE))
                continue;
            for (size_t j = 0; j < nb; j++)
                if (!(bf[j] & (T_SKIP | T_DONE)) &&
                    verb_pair(t, a, na, i, af[i], b, nb, j, bf[j])) {
                    af[i] |= T_DONE;
                    bf[j] |= T_DONE;
                    break;
                }
        }
    for (size_t i = 0; i < na; i++) {
        all += !(af[i] & T_SKIP);
        left_a += !(af[i] & (T_SKIP | T_DONE));
    }
    for (size_t j = 0; j < nb; j++) {
        all += !(bf[j] & T_SKIP);
        left_b += !(bf[j] & (T_SKIP | T_DONE));
    }
    /* A word left on each side is one said for another (reset / change):
     * a different request. Words left on one side only are dropped ones: a
     * few, in a long enough question, are how paraphrases differ. */
    if ((left_a && left_b) || left_a + left_b > MAX_DROPS ||
        (left_a + left_b) * 100 > MAX_DROP_PCT * all) {
        explain_left(a, af, na, 0, why, cap, &at);
        if (why && at + 3 < cap) {
            memcpy(why + at, " |", 3);
            at += 2;
        }
        explain_left(b, bf, nb, 0, why, cap, &at);
        return VERIFY_CONTENT;
    }
    if (roles_differ(a, af, na, b, bf, nb))
        return VERIFY_ROLE;
    return VERIFY_OK;
}

/* Two texts, each split here. */
static enum verify_reason compare_texts(const char *q, size_t ql, const char *c, size_t cl,
                                        const struct verify_tables *t, char *why, size_t cap)
{
    struct embed_word qw[MAX_WORDS], cw[MAX_WORDS];
    struct side x, y;

    side_init(&x, q, ql, t, NULL, 0, qw);
    side_init(&y, c, cl, t, NULL, 0, cw);
    return compare(&x, &y, why, cap);
}

enum verify_reason verify_texts(const char *q, size_t ql, const char *c, size_t cl)
{
    return compare_texts(q, ql, c, cl, NULL, NULL, 0);
}

enum verify_reason verify_texts_wv(const char *q, size_t ql, const char *c, size_t cl,
                                   const struct wordvec *wv)
{
    struct verify_tables t = {wv, NULL};

    return compare_texts(q, ql, c, cl, &t, NULL, 0);
}

enum verify_reason verify_texts_with(const char *q, size_t ql, const char *c, size_t cl,
                                     const struct verify_tables *t)
{
    return compare_texts(q, ql, c, cl, t, NULL, 0);
}

enum verify_reason verify_explain(const char *q, size_t ql, const char *c, size_t cl,
                                  const struct verify_tables *t, char *why, size_t cap)
{
    if (why && cap)
        why[0] = '\0';
    return compare_texts(q, ql, c, cl, t, cap ? why : NULL, cap);
}

/* ---- a lookup's question, against each of its candidates ---- */

struct verify_query {
    struct side side;
};

/* Each thread's first query lives here (about 2 KB, past the sizes malloc
 * keeps per thread): a lookup makes one, so most need no allocation. */
static _Thread_local struct verify_query spare;
static _Thread_local bool spare_taken;

struct verify_query *verify_query_new(const char *text, size_t len, const struct embed_word *w,
                                      size_t n, const struct verify_tables *t)
{
    struct verify_query *q = spare_taken ? malloc(sizeof(*q)) : &spare;

    if (q == &spare)
        spare_taken = true;
    if (q)
        side_init(&q->side, text, len, t, w, n, NULL);
    return q;
}

void verify_query_free(struct verify_query *q)
{
    if (q == &spare)
        spare_taken = false;
    else
        free(q);
}

uint64_t verify_query_group(struct verify_query *q)
{
    side_need(&q->side, S_NUMBERS);
    side_need(&q->side, S_SPECIALS);
    return group_key(&q->side.nums, &q->side.sp);
}

/* ---- the candidates a thread checked last ----
 *
 * Candidates come back: the entry a partition's paraphrases all find is a
 * candidate of each of them. What a candidate's text alone tells (numbers,
 * negations, words, special tokens: about half of a comparison) is kept for
 * the last few candidate texts each thread checked, in slots chosen by the
 * text's address and taken only when their copy of the text is the same
 * text: a slot never answers for another text, wherever it lives. What
 * the tables tell (mood, classes) is kept as long as the tables are the
 * same ones, as word_flags() keeps its answers. */
#define CAND_SLOTS 8 /* about 9 KB each, per thread that verifies */
#define S_TEXT     (S_NUMBERS | S_NEGATION | S_WORDS | S_SPECIALS)

struct cand_slot {
    char *text; /* a copy of the text, malloc'd (NULL: empty) */
    size_t len, cap;
    const void *wn, *wv; /* the tables side's S_MOOD and S_CLASSES were worked out with */
    struct side side;
    struct embed_word w[MAX_WORDS];
};

static pthread_key_t cands_key; /* a thread's CAND_SLOTS slots, freed when it ends */
static pthread_once_t cands_once = PTHREAD_ONCE_INIT;
static bool cands_ok;

static void cands_free(void *p)
{
    struct cand_slot *slot = p;

    for (size_t i = 0; i < CAND_SLOTS; i++)
        free(slot[i].text);
    free(slot);
}

static void cands_init(void)
{
    cands_ok = pthread_key_create(&cands_key, cands_free) == 0;
}

/* This thread's side for cand[0..len) with tables t, as far as it was
 * worked out before; NULL when out of memory. */
static struct side *cand_side(const char *cand, size_t len, const struct verify_tables *t)
{
    struct cand_slot *slot, *c;

    pthread_once(&cands_once, cands_init);
    if (!cands_ok)
        return NULL;
    slot = pthread_getspecific(cands_key);
    if (!slot) {
        slot = calloc(CAND_SLOTS, sizeof(*slot));
        if (!slot || pthread_setspecific(cands_key, slot) != 0) {
            free(slot);
            return NULL;
        }
    }
    c = &slot[hash_mix((uintptr_t)cand) & (CAND_SLOTS - 1)];
    if (!c->text || c->len != len || memcmp(c->text, cand, len) != 0) {
        if (!c->text || len >= c->cap) {
            char *p = realloc(c->text, len + 1);
            if (!p)
                return NULL;
            c->text = p;
            c->cap = len + 1;
        }
        memcpy(c->text, cand, len);
        c->text[len] = '\0';
        c->len = len;
        side_init(&c->side, c->text, len, t, NULL, 0, c->w);
    }
    if (c->wn != (t ? t->wn : NULL) || c->wv != (t ? t->wv : NULL)) {
        c->wn = t ? t->wn : NULL;
        c->wv = t ? t->wv : NULL;
        c->side.done &= S_TEXT;
    }
    c->side.t = t;
    return &c->side;
}

enum verify_reason verify_query_check(struct verify_query *q, const char *cand, size_t clen)
{
    struct side *y = cand_side(cand, clen, q->side.t), own;
    struct embed_word cw[MAX_WORDS];

    if (!y) { /* no memory for a slot: worked out here, as verify_texts_with() does */
        side_init(&own, cand, clen, q->side.t, NULL, 0, cw);
        y = &own;
    }
    return compare(&q->side, y, NULL, 0);
}
