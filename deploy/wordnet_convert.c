/* wordnet_convert.c - compiles Princeton WordNet 3.0's dictionary files into
 * the table cache/match/wordnet.c reads (its format is written out there).
 *
 *   wordnet_convert DICTDIR OUT
 *
 * DICTDIR holds data.{noun,verb,adj,adv}, index.{noun,verb,adj,adv} and
 * {noun,verb,adj,adv}.exc in the format of wndb(5WN) (Debian's wordnet-base
 * puts them in /usr/share/wordnet). A missing .exc file is an empty list;
 * any other missing file or malformed line is an error. Synset offsets are
 * used as names only, never as byte offsets, so a hand-written fixture need
 * not get them right. Run at set-up time (deploy/fetch-wordnet.sh).
 */
#include "cache/base/hash.h"
#include "cache/base/le.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORD_MAX   80        /* as WORDNET_WORD_MAX */
#define LINE_MAX_  (1 << 16) /* WordNet's longest data line is about 18 kB */
#define SLOTS      (1u << 20)
#define MAX_LEMMAS (SLOTS / 2)

static const char *const POS_FILE[4] = {"noun", "verb", "adj", "adv"};

struct vec {
    uint32_t *v;
    size_t n, cap;
};

static void die(const char *msg, const char *what)
{
    fprintf(stderr, "wordnet_convert: %s%s%s\n", msg, what ? ": " : "", what ? what : "");
    exit(1);
}

static void push(struct vec *v, uint32_t x)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 4;
        v->v = realloc(v->v, v->cap * sizeof(*v->v));
        if (!v->v)
            die("out of memory", NULL);
    }
    v->v[v->n++] = x;
}

static void push_unique(struct vec *v, uint32_t x)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i] == x)
            return;
    push(v, x);
}

struct lemma {
    char *name;
    struct vec syn, ant, der, attr;
};

struct synset {
    uint64_t key; /* pos file index << 32 | offset */
    uint8_t pos, flags;
    struct vec lem, hyp;
};

/* A pointer read from a data line, resolved once every synset is known. */
struct ptr {
    uint32_t from;
    uint64_t to;
    char kind;            /* '@' hypernym or instance, '!' antonym, '+' derivation, '=' attribute */
    uint8_t src_w, dst_w; /* 1-based word numbers; 0 = the whole synset */
};

static struct lemma *lemmas;
static size_t nlemmas;
static uint32_t *slots; /* lemma id + 1 */
static struct synset *syns;
static size_t nsyns, cap_syns;
static struct ptr *ptrs;
static size_t nptrs, cap_ptrs;

struct exc {
    char *form, *base;
    uint8_t pos;
};
static struct exc *excs;
static size_t nexcs, cap_excs;

static char *xstrdup(const char *s)
{
    char *p = strdup(s);

    if (!p)
        die("out of memory", NULL);
    return p;
}

/* The id of lemma name (normalised), added when new. */
static uint32_t intern(const char *name)
{
    size_t i = (size_t)hash_fnv_str(HASH_FNV_OFFSET, name) & (SLOTS - 1);

    for (; slots[i]; i = (i + 1) & (SLOTS - 1))
        if (strcmp(lemmas[slots[i] - 1].name, name) == 0)
            return slots[i] - 1;
    if (nlemmas == MAX_LEMMAS)
        die("too many lemmas", NULL);
    lemmas[nlemmas].name = xstrdup(name);
    slots[i] = (uint32_t)++nlemmas;
    return (uint32_t)(nlemmas - 1);
}

/* A word as WordNet writes it in a data line -> a lemma: lower case, the
 * adjective marker "(a)", "(p)", "(ip)" cut. */
static void normalise(const char *w, char *out)
{
    size_t n = strcspn(w, "(");

    if (n == 0 || n >= WORD_MAX)
        die("bad word", w);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)w[i]);
    out[n] = '\0';
}

static FILE *open_in(const char *dir, const char *name, bool optional)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "r");
    if (!f && !(optional && errno == ENOENT))
        die(strerror(errno), path);
    return f;
}

static int cmp_key(const void *a, const void *b)
{
    uint64_t x = ((const struct synset *)a)->key, y = ((const struct synset *)b)->key;
    return (x > y) - (x < y);
}

/* Synsets are sorted by key after reading, so ids are found by bisection. */
static long synset_by_key(uint64_t key)
{
    size_t lo = 0, hi = nsyns;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (syns[mid].key == key)
            return (long)mid;
        if (syns[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int pos_index(char c)
{
    switch (c) {
    case 'n': return 0;
    case 'v': return 1;
    case 'a':
    case 's': return 2;
    case 'r': return 3;
    default: return -1;
    }
}

/* One data line: "offset lex_filenum ss_type w_cnt (word lex_id)... p_cnt
 * (symbol offset pos source/target)... [frames] | gloss". Pointers are kept
 * with their synset's position in syns, which the sort below changes: they
 * hold keys, and from is fixed up after the sort. */
static void read_data_line(char *line, int pf)
{
    char *save = NULL, *tok;
    unsigned long off, wcnt, pcnt;
    struct synset *s;
    char name[WORD_MAX];

    if (line[0] == ' ' || line[0] == '\0' || line[0] == '\n')
        return; /* the licence header */
    tok = strtok_r(line, " \n", &save);
    off = strtoul(tok, NULL, 10);
    if (!strtok_r(NULL, " ", &save) || !(tok = strtok_r(NULL, " ", &save)) || pos_index(tok[0]) < 0)
        die("bad data line", POS_FILE[pf]);
    if (nsyns == cap_syns) {
        cap_syns = cap_syns ? 2 * cap_syns : 1024;
        syns = realloc(syns, cap_syns * sizeof(*syns));
        if (!syns)
            die("out of memory", NULL);
    }
    s = &syns[nsyns];
    memset(s, 0, sizeof(*s));
    s->key = (uint64_t)pf << 32 | off;
    s->pos = (uint8_t)(pos_index(tok[0]) + 1);
    tok = strtok_r(NULL, " ", &save);
    wcnt = tok ? strtoul(tok, NULL, 16) : 0;
    if (wcnt == 0 || wcnt > 255)
        die("bad word count", POS_FILE[pf]);
    for (unsigned long i = 0; i < wcnt; i++) {
        tok = strtok_r(NULL, " ", &save);
        if (!tok || !strtok_r(NULL, " ", &save))
            die("short word list", POS_FILE[pf]);
        normalise(tok, name);
        push(&s->lem, intern(name));
    }
    tok = strtok_r(NULL, " ", &save);
    pcnt = tok ? strtoul(tok, NULL, 10) : 1000;
    if (pcnt > 999)
        die("bad pointer count", POS_FILE[pf]);
    for (unsigned long i = 0; i < pcnt; i++) {
        char *sym = strtok_r(NULL, " ", &save), *to = strtok_r(NULL, " ", &save);
        char *tp = strtok_r(NULL, " ", &save), *st = strtok_r(NULL, " ", &save);
        unsigned long sst;
        char kind;
        if (!sym || !to || !tp || !st || pos_index(tp[0]) < 0 || strlen(st) != 4)
            die("short pointer list", POS_FILE[pf]);
        if (strcmp(sym, "@") == 0 || strcmp(sym, "@i") == 0)
            kind = '@';
        else if (strcmp(sym, "!") == 0 || strcmp(sym, "+") == 0 || strcmp(sym, "=") == 0)
            kind = sym[0];
        else
            continue;
        if (strcmp(sym, "@i") == 0)
            s->flags |= 1;
        sst = strtoul(st, NULL, 16);
        if (nptrs == cap_ptrs) {
            cap_ptrs = cap_ptrs ? 2 * cap_ptrs : 4096;
            ptrs = realloc(ptrs, cap_ptrs * sizeof(*ptrs));
            if (!ptrs)
                die("out of memory", NULL);
        }
        ptrs[nptrs++] = (struct ptr){.from = (uint32_t)nsyns,
                                     .to = (uint64_t)pos_index(tp[0]) << 32 | strtoul(to, NULL, 10),
                                     .kind = kind,
                                     .src_w = (uint8_t)(sst >> 8),
                                     .dst_w = (uint8_t)(sst & 0xff)};
    }
    nsyns++;
}

static void read_lines(const char *dir, const char *name, int pf, bool optional,
                       void (*fn)(char *, int))
{
    FILE *f = open_in(dir, name, optional);
    char *line = malloc(LINE_MAX_);

    if (!line)
        die("out of memory", NULL);
    while (f && fgets(line, LINE_MAX_, f)) {
        if (!strchr(line, '\n') && !feof(f))
            die("line too long", name);
        fn(line, pf);
    }
    if (f)
        fclose(f);
    free(line);
}

/* "lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt
 * synset_offset..." : the lemma's senses in WordNet's order. */
static void read_index_line(char *line, int pf)
{
    char *save = NULL, *lem, *tok;
    unsigned long nsense, np;
    char name[WORD_MAX];
    uint32_t l;

    if (line[0] == ' ' || line[0] == '\n')
        return;
    lem = strtok_r(line, " \n", &save);
    if (!lem || !strtok_r(NULL, " ", &save) || !(tok = strtok_r(NULL, " ", &save)))
        die("bad index line", POS_FILE[pf]);
    nsense = strtoul(tok, NULL, 10);
    tok = strtok_r(NULL, " ", &save);
    np = tok ? strtoul(tok, NULL, 10) : 1000;
    if (np > 999)
        die("bad index line", POS_FILE[pf]);
    for (unsigned long i = 0; i < np; i++)
        if (!strtok_r(NULL, " ", &save))
            die("bad index line", POS_FILE[pf]);
    if (!strtok_r(NULL, " ", &save) || !strtok_r(NULL, " ", &save))
        die("bad index line", POS_FILE[pf]);
    normalise(lem, name);
    l = intern(name);
    for (unsigned long i = 0; i < nsense; i++) {
        long s;
        tok = strtok_r(NULL, " \n", &save);
        if (!tok)
            die("short index line", lem);
        s = synset_by_key((uint64_t)pf << 32 | strtoul(tok, NULL, 10));
        if (s < 0)
            die("index names a synset the data file lacks", lem);
        push_unique(&lemmas[l].syn, (uint32_t)s);
    }
}

/* "inflected base [base...]" */
static void read_exc_line(char *line, int pf)
{
    char *save = NULL, *form = strtok_r(line, " \n", &save), *base;
    char f[WORD_MAX], b[WORD_MAX];

    if (!form)
        return;
    normalise(form, f);
    while ((base = strtok_r(NULL, " \n", &save))) {
        normalise(base, b);
        if (nexcs == cap_excs) {
            cap_excs = cap_excs ? 2 * cap_excs : 1024;
            excs = realloc(excs, cap_excs * sizeof(*excs));
            if (!excs)
                die("out of memory", NULL);
        }
        excs[nexcs++] = (struct exc){xstrdup(f), xstrdup(b), (uint8_t)(pf + 1)};
    }
}

/* Word w (1-based) of synset s, or all of them (0). */
static void words_of(uint32_t s, uint8_t w, struct vec *out)
{
    out->n = 0;
    for (size_t i = 0; i < syns[s].lem.n; i++)
        if (w == 0 || w == i + 1)
            push(out, syns[s].lem.v[i]);
}

/* The list of l that a pointer of kind '!', '+' or '=' adds to. */
static struct vec *link_list(struct lemma *l, char kind)
{
    return kind == '!' ? &l->ant : kind == '+' ? &l->der : &l->attr;
}

static uint32_t *new_id; /* old lemma id -> id in name order */

static int cmp_lemma_id(const void *a, const void *b)
{
    return strcmp(lemmas[*(const uint32_t *)a].name, lemmas[*(const uint32_t *)b].name);
}

static int cmp_exc(const void *a, const void *b)
{
    const struct exc *x = a, *y = b;
    int c = strcmp(x->form, y->form);

    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

int main(int argc, char **argv)
{
    const char *dir, *out;
    char name[32];
    uint32_t *order;
    size_t npool = 0, slen = 0, size;
    uint8_t *buf;
    FILE *f;

    if (argc != 3) {
        fprintf(stderr, "usage: %s DICTDIR OUT\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    out = argv[2];
    lemmas = calloc(MAX_LEMMAS, sizeof(*lemmas));
    slots = calloc(SLOTS, sizeof(*slots));
    if (!lemmas || !slots)
        die("out of memory", NULL);
    for (int pf = 0; pf < 4; pf++) {
        snprintf(name, sizeof(name), "data.%s", POS_FILE[pf]);
        read_lines(dir, name, pf, false, read_data_line);
    }
    /* Sort synsets by key; pointers name their source by pre-sort position,
     * so map those through the permutation. */
    {
        uint64_t *key_of = malloc((nsyns + 1) * sizeof(*key_of));
        if (!key_of)
            die("out of memory", NULL);
        for (size_t i = 0; i < nsyns; i++)
            key_of[i] = syns[i].key;
        qsort(syns, nsyns, sizeof(*syns), cmp_key);
        for (size_t i = 1; i < nsyns; i++)
            if (syns[i].key == syns[i - 1].key)
                die("two synsets with one offset", NULL);
        for (size_t i = 0; i < nptrs; i++)
            ptrs[i].from = (uint32_t)synset_by_key(key_of[ptrs[i].from]);
        free(key_of);
    }
    for (int pf = 0; pf < 4; pf++) {
        snprintf(name, sizeof(name), "index.%s", POS_FILE[pf]);
        read_lines(dir, name, pf, false, read_index_line);
        snprintf(name, sizeof(name), "%s.exc", POS_FILE[pf]);
        read_lines(dir, name, pf, true, read_exc_line);
    }
    /* A word in a synset that its index line did not list still gets the
     * sense (after the listed ones). */
    for (size_t s = 0; s < nsyns; s++)
        for (size_t i = 0; i < syns[s].lem.n; i++)
            push_unique(&lemmas[syns[s].lem.v[i]].syn, (uint32_t)s);
    {
        struct vec a = {0}, b = {0};
        for (size_t i = 0; i < nptrs; i++) {
            long t = synset_by_key(ptrs[i].to);
            if (t < 0)
                die("a pointer to a synset the data files lack", NULL);
            if (ptrs[i].kind == '@') {
                push_unique(&syns[ptrs[i].from].hyp, (uint32_t)t);
                continue;
            }
            words_of(ptrs[i].from, ptrs[i].src_w, &a);
            /* An antonym pointer joins its word to the whole target synset:
             * WordNet links safe to dangerous, whose synonym unsafe is as
             * much safe's opposite. Derivations stay word to word. An
             * attribute is a semantic pointer (word numbers 0): every word
             * of the adjective's synset to every word of the noun's. */
            words_of((uint32_t)t, ptrs[i].kind == '!' ? 0 : ptrs[i].dst_w, &b);
            for (size_t x = 0; x < a.n; x++)
                for (size_t y = 0; y < b.n; y++) {
                    if (a.v[x] == b.v[y])
                        continue;
                    /* both directions, so a query looks at one side only */
                    push_unique(link_list(&lemmas[a.v[x]], ptrs[i].kind), b.v[y]);
                    push_unique(link_list(&lemmas[b.v[y]], ptrs[i].kind), a.v[x]);
                }
        }
        free(a.v);
        free(b.v);
    }
    order = malloc((nlemmas + 1) * sizeof(*order));
    new_id = malloc((nlemmas + 1) * sizeof(*new_id));
    if (!order || !new_id)
        die("out of memory", NULL);
    for (size_t i = 0; i < nlemmas; i++)
        order[i] = (uint32_t)i;
    qsort(order, nlemmas, sizeof(*order), cmp_lemma_id);
    for (size_t i = 0; i < nlemmas; i++)
        new_id[order[i]] = (uint32_t)i;
    qsort(excs, nexcs, sizeof(*excs), cmp_exc);

    for (size_t i = 0; i < nlemmas; i++) {
        struct lemma *l = &lemmas[i];
        if (l->syn.n > 0xffff || l->ant.n > 0xffff || l->der.n > 0xffff || l->attr.n > 0xffff)
            die("a lemma with more than 65535 links", l->name);
        npool += l->syn.n + l->ant.n + l->der.n + l->attr.n;
        slen += strlen(l->name) + 1;
    }
    for (size_t s = 0; s < nsyns; s++) {
        if (syns[s].lem.n > 255 || syns[s].hyp.n > 255)
            die("a synset with more than 255 lemmas or hypernyms", NULL);
        npool += syns[s].lem.n + syns[s].hyp.n;
    }
    for (size_t e = 0; e < nexcs; e++)
        slen += strlen(excs[e].form) + strlen(excs[e].base) + 2;
    size = 40 + nlemmas * 16 + nsyns * 8 + nexcs * 12 + npool * 4 + slen;
    if (size > (64u << 20) || slen > UINT32_MAX)
        die("the table would be too large", NULL);
    buf = calloc(1, size);
    if (!buf)
        die("out of memory", NULL);
    memcpy(buf, "PRWN", 4);
    le_put32(buf + 4, 2);
    le_put32(buf + 8, (uint32_t)nlemmas);
    le_put32(buf + 12, (uint32_t)nsyns);
    le_put32(buf + 16, (uint32_t)nexcs);
    le_put32(buf + 20, (uint32_t)npool);
    le_put32(buf + 24, (uint32_t)slen);
    {
        uint8_t *lp = buf + 40, *sp = lp + nlemmas * 16, *ep = sp + nsyns * 8,
                *pp = ep + nexcs * 12;
        char *strs = (char *)(pp + npool * 4);
        size_t pool_at = 0, str_at = 0;
#define POOL(x) (le_put32(pp + 4 * pool_at++, (x)))
        for (size_t i = 0; i < nlemmas; i++) {
            struct lemma *l = &lemmas[order[i]];
            uint8_t *p = lp + i * 16;
            le_put32(p + 4, (uint32_t)pool_at);
            p[8] = (uint8_t)l->syn.n, p[9] = (uint8_t)(l->syn.n >> 8);
            p[10] = (uint8_t)l->ant.n, p[11] = (uint8_t)(l->ant.n >> 8);
            p[12] = (uint8_t)l->der.n, p[13] = (uint8_t)(l->der.n >> 8);
            p[14] = (uint8_t)l->attr.n, p[15] = (uint8_t)(l->attr.n >> 8);
            for (size_t k = 0; k < l->syn.n; k++)
                POOL(l->syn.v[k]);
            for (size_t k = 0; k < l->ant.n; k++)
                POOL(new_id[l->ant.v[k]]);
            for (size_t k = 0; k < l->der.n; k++)
                POOL(new_id[l->der.v[k]]);
            for (size_t k = 0; k < l->attr.n; k++)
                POOL(new_id[l->attr.v[k]]);
        }
        /* Names in name order (the name field of each lemma), then the
         * exception lists. */
        for (size_t i = 0; i < nlemmas; i++) {
            size_t n = strlen(lemmas[order[i]].name) + 1;
            le_put32(lp + i * 16, (uint32_t)str_at);
            memcpy(strs + str_at, lemmas[order[i]].name, n);
            str_at += n;
        }
        for (size_t s = 0; s < nsyns; s++) {
            uint8_t *p = sp + s * 8;
            le_put32(p, (uint32_t)pool_at);
            p[4] = (uint8_t)syns[s].lem.n;
            p[5] = (uint8_t)syns[s].hyp.n;
            p[6] = syns[s].pos;
            p[7] = syns[s].flags;
            for (size_t k = 0; k < syns[s].lem.n; k++)
                POOL(new_id[syns[s].lem.v[k]]);
            for (size_t k = 0; k < syns[s].hyp.n; k++)
                POOL(syns[s].hyp.v[k]);
        }
#undef POOL
        for (size_t e = 0; e < nexcs; e++) {
            uint8_t *p = ep + e * 12;
            size_t n = strlen(excs[e].form) + 1;
            le_put32(p, (uint32_t)str_at);
            memcpy(strs + str_at, excs[e].form, n);
            str_at += n;
            n = strlen(excs[e].base) + 1;
            le_put32(p + 4, (uint32_t)str_at);
            memcpy(strs + str_at, excs[e].base, n);
            str_at += n;
            p[8] = excs[e].pos;
        }
        if (pool_at != npool || str_at != slen)
            die("internal: sizes do not add up", NULL);
    }
    le_put64(buf + 32, hash_fnv(HASH_FNV_OFFSET, buf + 40, size - 40));
    f = fopen(out, "wb");
    if (!f || fwrite(buf, 1, size, f) != size || fclose(f) != 0)
        die(strerror(errno), out);
    printf("%s: %zu lemmas, %zu synsets, %zu exceptions, %zu bytes\n", out, nlemmas, nsyns, nexcs,
           size);
    /* The tables read stay reachable until exit; what only main() held is
     * freed, so that LeakSanitizer passes the converter in make asan. */
    free(buf);
    free(order);
    free(new_id);
    return 0;
}
