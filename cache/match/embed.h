/* embed.h - embedders: text in, L2-normalised float vector out.
 *
 * Every embedder declares a name and a dimension; the store never mixes
 * vectors from different embedders in one index. Embedding functions may be
 * called from any thread at once.
 */
#ifndef PARROT_EMBED_H
#define PARROT_EMBED_H

#include <stdbool.h>
#include <stddef.h>

struct embedder;

/* The built-in embedder: no network, no model file. Hashed, weighted word,
 * word-pair and character n-gram features; words are weighted by kind
 * (function word, request framing, question word, content word) and content
 * words by a compiled-in English word-frequency table (see embed.c). */
int embed_builtin_new(struct embedder **out);

/* Options of the built-in embedder. All false is embed_builtin_new(). */
struct embed_builtin_opts {
    bool no_word_table; /* ignore the word-frequency table (every content word
                           weighs the same): for measurements and tests */
    /* A word-vector table (cache/wordvec.h) to blend in. NULL, "" or a path
     * with no file: lexical features only, embedder "builtin" (384
     * dimensions). A table: embedder "builtin+vectors" (384 + the table's
     * dimensions), its own default threshold. A file that is not a valid
     * table fails with -EINVAL and the reason in err (when set). */
    const char *word_vectors;
    /* The hit verifier's WordNet table (cache/match/wordnet.h), loaded here
     * beside the word vectors so that one owner holds both. NULL, "" or a
     * path with no file: the verifier runs without WordNet. A file that is
     * not a valid table fails with -EINVAL and the reason in err. */
    const char *wordnet;
    char *err;
    size_t err_len;
};

int embed_builtin_new_opts(const struct embed_builtin_opts *o, struct embedder **out);

void embedder_free(struct embedder *e);

struct wordvec;

/* The built-in embedder's word-vector table, or NULL (no table, or another
 * embedder). The verifier uses it to match synonyms. */
const struct wordvec *embedder_word_vectors(const struct embedder *e);

struct wordnet;

/* The WordNet table the built-in embedder was given, or NULL. */
const struct wordnet *embedder_wordnet(const struct embedder *e);

struct verify_tables;

/* The tables the hit verifier uses with this embedder (cache/match/verify.h:
 * its word vectors and WordNet, either may be absent); valid as long as e. */
const struct verify_tables *embedder_verify_tables(const struct embedder *e);
const char *embedder_name(const struct embedder *e);
unsigned embedder_dim(const struct embedder *e);

/* The lookup score above which a candidate counts as the same question,
 * calibrated per embedder (with its lexical weight below). */
float embedder_threshold(const struct embedder *e);

/* The share of the lookup score that the cache's own TF-IDF over word
 * n-grams takes (cache/terms.h, store_opts.lexical_weight) with this
 * embedder; the rest is the cosine of its vectors. */
float embedder_lexical_weight(const struct embedder *e);

/* Embed text[0..len) into out[dim]. Returns 0, or -EINVAL when the text has
 * nothing to embed (then out is all zero). */
int embedder_embed(const struct embedder *e, const char *text, size_t len, float *out);

/* ---- words as the built-in embedder sees them (shared with the verifier) ---- */

#define EMBED_WORD_MAX 32 /* longer words are cut (and still compared whole-prefix) */

enum embed_word_kind {
    EMBED_CONTENT,  /* anything not listed below */
    EMBED_FUNCTION, /* articles, pronouns, auxiliaries, prepositions, conjunctions */
    EMBED_FRAMING,  /* how a request is put: please, tell, know, want, need, ... */
    EMBED_QUESTION, /* what, when, where, who, why, how, which */
    EMBED_NUMBER,   /* a run of digits, with its decimal part */
};

struct embed_word {
    char text[EMBED_WORD_MAX + 1]; /* lower case; contractions spelled out */
    char stem[EMBED_WORD_MAX + 1]; /* Porter stem of text; numbers as text */
    unsigned rank;                 /* frequency rank (1 = most frequent), 0 = not in the table */
    enum embed_word_kind kind;
};

/* Split text[0..len) into at most max words: lower-cased, contractions
 * spelled out ("what's" -> what is, "don't" -> do not, "cant" -> can not),
 * stemmed. Returns the number written. Any thread. */
size_t embed_split(const char *text, size_t len, struct embed_word *out, size_t max);

#define EMBED_MAX_WORDS 256 /* words of a text the embedder reads; the rest is ignored */

/* embedder_embed() of a text that embed_split() has already split into
 * w[0..n) (at most EMBED_MAX_WORDS words): a lookup splits its question
 * once for the embedder, the lexical score and the verifier. */
int embedder_embed_words(const struct embedder *e, const struct embed_word *w, size_t n,
                         float *out);

#endif
