/* canon.c - canonical JSON and cache keys; see canon.h.
 *
 * These bytes are hashed into persistent keys: changing any rule below
 * changes every key, so it needs a new CANON_VERSION.
 *
 * Canonical JSON (canon_json)
 *   null true false  as such.
 *   number   0 for both zeros; an integral value with |v| < 2^53 as a decimal
 *            integer ("-12", so 1, 1.0 and 1e0 agree); +Inf and -Inf (cJSON reads
 *            1e999 as Inf) as 1e999 and -1e999; any other value as the shortest
 *            printf "%.<p>g", p = 1..17, that strtod reads back to the same double
 *            ("0.1", "1e+20", "1.5e-07", "9007199254740992"). NaN is refused.
 *            Exception, for canon_request_src only: an integer written without
 *            fraction or exponent whose value no double holds (beyond 2^53 and
 *            not a double, or beyond the double range) is written as its digits,
 *            leading zeros dropped, after a '-' if negative: seeds 2^53+1 and
 *            2^53 must not share a key. Every number a double held exactly is
 *            written as before, so no existing key changed with this rule.
 *   string   '"' bytes '"'. Only these are escaped: '"' as \", '\' as \\, and
 *            bytes below 0x20 as \b \t \n \f \r or else \u00xx (lower-case hex).
 *            Every other byte (non-ASCII, 0x7f, '/') is copied as is.
 *   array    '[' elements joined by ',' ']'.
 *   object   '{' members "name":value joined by ',' '}', ordered by strcmp() of
 *            the names (unsigned bytes, i.e. code point order for UTF-8);
 *            members with the same name keep their input order.
 *   No whitespace anywhere outside strings.
 *
 * Partition form, itself canonical JSON:
 *   ["parrot-partition-v1",TENANT,ROUTE,LIFTED,REQUEST]
 *   TENANT, ROUTE  strings, or null for NULL. Being escaped JSON strings, no
 *                  tenant/route pair can spell another one.
 *   LIFTED         true when the text of the last message was lifted out.
 *   REQUEST        the request object without its top-level members named
 *                  stream, stream_options, user, metadata, store, service_tier,
 *                  safety_identifier or prompt_cache_key (all of them if repeated).
 *                  When LIFTED, its last message is written as described next.
 *
 * Lifting. The text of the last message is lifted out when all of these hold:
 * the request has exactly one "messages" member, a non-empty array; its last
 * element is an object with exactly one "role", the string "user", and exactly
 * one "content"; the content is a string, or an array with at least one text
 * part. A text part is an object with exactly one "type", the string "text",
 * and exactly one "text", a string. The message then keeps all its members
 * (role, name, unknown ones), but the value of "content" becomes:
 *   string content  [{"type":"text"}]
 *   array content   each text part without its "text" member, every other part
 *                   (image_url, input_audio, file, ...) as is, in order.
 * So a string and a single text part with the same text are the same request.
 * The lifted text is the string, or the texts of the text parts joined by "\n".
 * Whatever is ambiguous (repeated names) or unusual is not lifted: it stays in
 * the partition in full and the request can only match exactly. LIFTED keeps a
 * malformed text part (no "text") from posing as a lifted one.
 *
 * Keys
 *   partition    SHA-256(partition form)
 *   exact        SHA-256(partition || 0x00 || N), where N is the lifted text with
 *                leading and trailing ASCII whitespace (space \t \n \v \f \r)
 *                removed and each inner run of it replaced by one space; case
 *                is kept. N is empty when nothing was lifted.
 *   lookup_text  the lifted text unchanged, or NULL when N is empty.
 *   item         (canon_item_key, requests answered item by item) SHA-256(
 *                partition || 0x01 || canonical JSON of the item).
 */
#include "proxy/openai/canon.h"

#include "cache/base/sha256.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Top-level request members that cannot change the answer. */
static const char *const inert[] = {
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    NULL,
};

static const char *const text_member[] = {"text", NULL};

/* A growable byte buffer that never holds more than max bytes (plus a NUL). */
struct sink {
    char *buf;
    size_t len;
    size_t cap;
    size_t max;
};

/* Serialiser state. The content/messages members are those being lifted (or
 * NULL); text collects the lifted text. */
struct ctx {
    struct sink out;
    struct sink text;
    size_t nparts;
    const cJSON *messages;
    const cJSON *content;
    /* canon_request_src: the source text, and its integers that no double
     * holds, found on first need (big_done). */
    const cJSON *root;
    const char *src;
    size_t src_len;
    bool big_done;
    struct big_int *big;
    size_t nbig, capbig;
    bool in_order; /* canon_print: members as they come, not sorted */
};

/* A number node whose source text is an integer no double holds. */
struct big_int {
    const cJSON *node;
    bool neg;
    const char *digits; /* into ctx.src, without leading zeros */
    size_t len;
};

/* How an object is written: members named in drop are left out, and the value
 * of the member special (compared by identity) is written by write_special. */
struct shape {
    const char *const *drop;
    const cJSON *special;
    int (*write_special)(struct ctx *c, const cJSON *v, int depth);
};

/* Ensures room for n more bytes and a NUL; -E2BIG past s->max. */
static int reserve(struct sink *s, size_t n)
{
    size_t want, ncap;
    char *p;

    if (s->len > s->max || n > s->max - s->len)
        return -E2BIG;
    want = s->len + n + 1; /* max < SIZE_MAX, see sink_open */
    if (want <= s->cap)
        return 0;
    ncap = s->cap < 256 ? 256 : s->cap;
    while (ncap < want)
        ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
    if (ncap > s->max + 1)
        ncap = s->max + 1;
    p = realloc(s->buf, ncap);
    if (!p)
        return -ENOMEM;
    s->buf = p;
    s->cap = ncap;
    return 0;
}

static int put(struct sink *s, const void *data, size_t n)
{
    int rc = reserve(s, n);

    if (rc)
        return rc;
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return 0;
}

/* Appends a string literal. */
#define PUT_LIT(s, lit) put((s), (lit), sizeof(lit) - 1)

static int putc1(struct sink *s, char ch)
{
    return put(s, &ch, 1);
}

static void sink_open(struct sink *s, char *buf, size_t len, size_t cap, size_t max)
{
    s->buf = buf;
    s->len = len;
    s->cap = buf ? cap : 0;
    s->max = max < SIZE_MAX ? max : SIZE_MAX - 1;
}

/* Hands the sink back to the caller's triple; the output counts only on
 * success, but a moved buffer is handed back either way. */
static int sink_close(struct sink *s, int rc, char **buf, size_t *len, size_t *cap)
{
    if (rc == 0 && (rc = reserve(s, 0)) == 0) {
        s->buf[s->len] = '\0';
        *len = s->len;
    }
    *buf = s->buf;
    *cap = s->cap;
    return rc;
}

static int write_string(struct sink *s, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)str;
    char esc[6] = {'\\', 'u', '0', '0', 0, 0};
    size_t run;
    int rc;

    if (!str)
        return -EINVAL;
    if ((rc = putc1(s, '"')))
        return rc;
    for (;;) {
        for (run = 0; p[run] >= 0x20 && p[run] != '"' && p[run] != '\\'; run++)
            ;
        if (run && (rc = put(s, p, run)))
            return rc;
        p += run;
        if (*p == '\0')
            break;
        switch (*p) {
        case '"':
        case '\\':
            esc[1] = (char)*p;
            rc = put(s, esc, 2);
            break;
        case '\b': rc = put(s, "\\b", 2); break;
        case '\t': rc = put(s, "\\t", 2); break;
        case '\n': rc = put(s, "\\n", 2); break;
        case '\f': rc = put(s, "\\f", 2); break;
        case '\r': rc = put(s, "\\r", 2); break;
        default:
            esc[1] = 'u';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            rc = put(s, esc, 6);
            break;
        }
        if (rc)
            return rc;
        p++;
    }
    return putc1(s, '"');
}

static int write_number(struct sink *s, double d)
{
    char tmp[40];
    int n = 0;

    if (isnan(d))
        return -EINVAL;
    if (isinf(d))
        return d > 0 ? PUT_LIT(s, "1e999") : PUT_LIT(s, "-1e999");
    if (d == 0) /* also -0.0 */
        return putc1(s, '0');
    if (fabs(d) < 9007199254740992.0 && d == trunc(d)) {
        n = snprintf(tmp, sizeof(tmp), "%lld", (long long)d);
    } else {
        /* %.17g always reads back exactly; the first shorter one that does
         * is the canonical spelling. */
        for (int p = 1; p <= 17; p++) {
            n = snprintf(tmp, sizeof(tmp), "%.*g", p, d);
            if (strtod(tmp, NULL) == d)
                break;
        }
    }
    if (n <= 0 || (size_t)n >= sizeof(tmp))
        return -EINVAL;
    return put(s, tmp, (size_t)n);
}

/* Whether the number token src[0..n) (cJSON's extent: the bytes 0-9 + - .
 * e E), of value d, is an integer that d does not hold; then *b gets its
 * sign and digits without leading zeros. */
static bool inexact_integer(const char *src, size_t n, double d, struct big_int *b)
{
    char exact[330];
    size_t i = src[0] == '-';

    /* Below 2^53 every integer is a double: the common case stops here. */
    if (!isinf(d) && fabs(d) < 9007199254740992.0)
        return false;
    if (i == n)
        return false;
    for (size_t k = i; k < n; k++)
        if (src[k] < '0' || src[k] > '9')
            return false; /* a fraction or an exponent: a float, keyed by its double */
    while (i + 1 < n && src[i] == '0')
        i++;
    b->neg = src[0] == '-';
    b->digits = src + i;
    b->len = n - i;
    /* %.0f prints a double's exact decimal value (glibc); 330 bytes hold
     * any finite one. */
    if (!isinf(d)) {
        int m = snprintf(exact, sizeof(exact), "%.0f", fabs(d));
        if (m > 0 && (size_t)m == b->len && memcmp(exact, b->digits, b->len) == 0)
            return false;
    }
    return true;
}

struct src_scan {
    struct ctx *c;
    const char *p, *end;
    bool lost; /* the tree and the text disagree: give up on the text */
};

static bool number_byte(char ch)
{
    return (ch >= '0' && ch <= '9') || ch == '+' || ch == '-' || ch == '.' || ch == 'e' ||
           ch == 'E';
}

/* The next number token in the source, skipping strings, or NULL. */
static const char *next_number(struct src_scan *sc, size_t *n)
{
    while (sc->p < sc->end) {
        char ch = *sc->p;
        if (ch == '"') {
            for (sc->p++; sc->p < sc->end && *sc->p != '"'; sc->p++)
                if (*sc->p == '\\')
                    sc->p++;
            sc->p++;
        } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
            const char *t = sc->p;
            while (sc->p < sc->end && number_byte(*sc->p))
                sc->p++;
            *n = (size_t)(sc->p - t);
            return t;
        } else {
            sc->p++;
        }
    }
    return NULL;
}

/* Pairs the numbers of v, in input order (which cJSON keeps), with the
 * source's number tokens, and records those that are inexact integers. */
static int pair_numbers(struct src_scan *sc, const cJSON *v)
{
    struct ctx *c = sc->c;
    struct big_int b;
    const char *t;
    size_t n;

    if (sc->lost)
        return 0;
    if (cJSON_IsNumber(v)) {
        if (!(t = next_number(sc, &n))) {
            sc->lost = true;
            return 0;
        }
        if (!inexact_integer(t, n, v->valuedouble, &b))
            return 0;
        if (c->nbig == c->capbig) {
            size_t nc = c->capbig ? 2 * c->capbig : 8;
            struct big_int *nb = realloc(c->big, nc * sizeof(*nb));
            if (!nb)
                return -ENOMEM;
            c->big = nb;
            c->capbig = nc;
        }
        b.node = v;
        c->big[c->nbig++] = b;
        return 0;
    }
    for (const cJSON *it = v->child; it; it = it->next) {
        int rc = pair_numbers(sc, it);
        if (rc)
            return rc;
    }
    return 0;
}

/* Writes number node v: as its source digits when it is an integer no
 * double holds (the source is scanned the first time one may be), else by
 * its double. */
static int write_number_node(struct ctx *c, const cJSON *v)
{
    double d = v->valuedouble;
    int rc;

    if (!c->src || !(isinf(d) || (d == trunc(d) && fabs(d) >= 9007199254740992.0)))
        return write_number(&c->out, d);
    if (!c->big_done) {
        struct src_scan sc = {c, c->src, c->src + c->src_len, false};
        size_t n;
        c->big_done = true;
        if ((rc = pair_numbers(&sc, c->root)) != 0)
            return rc;
        if (sc.lost || next_number(&sc, &n)) /* not this tree's text */
            c->nbig = 0;
    }
    for (size_t i = 0; i < c->nbig; i++) {
        const struct big_int *b = &c->big[i];
        if (b->node != v)
            continue;
        if (b->neg && (rc = putc1(&c->out, '-')))
            return rc;
        return put(&c->out, b->digits, b->len);
    }
    return write_number(&c->out, d);
}

static int write_value(struct ctx *c, const cJSON *v, int depth);

/* Member and its input position, for a stable sort by name. */
struct member {
    const cJSON *item;
    size_t pos;
};

static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    int r = strcmp(x->item->string, y->item->string);

    if (r)
        return r;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static bool dropped(const char *name, const char *const *drop)
{
    for (; drop && *drop; drop++)
        if (strcmp(name, *drop) == 0)
            return true;
    return false;
}

/* Writes object o (nested depth deep) with its members sorted (unless
 * c->in_order), as shaped by sh (NULL: plainly). */
static int write_object(struct ctx *c, const cJSON *o, int depth, const struct shape *sh)
{
    struct member inl[8], *m = inl;
    const cJSON *it;
    size_t n = 0, i;
    bool first = true;
    int rc = 0;

    for (it = o->child; it; it = it->next) {
        if (!it->string)
            return -EINVAL;
        n++;
    }
    if (n > sizeof(inl) / sizeof(inl[0])) {
        m = calloc(n, sizeof(*m));
        if (!m)
            return -ENOMEM;
    }
    for (it = o->child, i = 0; it; it = it->next, i++) {
        m[i].item = it;
        m[i].pos = i;
    }
    if (n > 1 && !c->in_order)
        qsort(m, n, sizeof(*m), member_cmp);

    if ((rc = putc1(&c->out, '{')))
        goto out;
    for (i = 0; i < n; i++) {
        it = m[i].item;
        if (sh && dropped(it->string, sh->drop))
            continue;
        if (!first && (rc = putc1(&c->out, ',')))
            goto out;
        first = false;
        if ((rc = write_string(&c->out, it->string)) || (rc = putc1(&c->out, ':')))
            goto out;
        if (sh && it == sh->special)
            rc = sh->write_special(c, it, depth + 1);
        else
            rc = write_value(c, it, depth + 1);
        if (rc)
            goto out;
    }
    rc = putc1(&c->out, '}');
out:
    if (m != inl)
        free(m);
    return rc;
}

/* Writes any value; depth counts the arrays and objects around v. */
static int write_value(struct ctx *c, const cJSON *v, int depth)
{
    const cJSON *it;
    int rc;

    switch (v->type & 0xff) {
    case cJSON_NULL: return PUT_LIT(&c->out, "null");
    case cJSON_False: return PUT_LIT(&c->out, "false");
    case cJSON_True: return PUT_LIT(&c->out, "true");
    case cJSON_Number: return write_number_node(c, v);
    case cJSON_String: return write_string(&c->out, v->valuestring);
    case cJSON_Array:
        if (depth >= CANON_MAX_DEPTH)
            return -E2BIG;
        if ((rc = putc1(&c->out, '[')))
            return rc;
        for (it = v->child; it; it = it->next) {
            if (it != v->child && (rc = putc1(&c->out, ',')))
                return rc;
            if ((rc = write_value(c, it, depth + 1)))
                return rc;
        }
        return putc1(&c->out, ']');
    case cJSON_Object:
        if (depth >= CANON_MAX_DEPTH)
            return -E2BIG;
        return write_object(c, v, depth, NULL);
    default: /* cJSON_Raw, cJSON_Invalid: not JSON we can vouch for */ return -EINVAL;
    }
}

/* The only member of o named name, or NULL when there are none or several. */
static const cJSON *only(const cJSON *o, const char *name)
{
    const cJSON *found = NULL;

    for (const cJSON *it = o->child; it; it = it->next) {
        if (!it->string || strcmp(it->string, name) != 0)
            continue;
        if (found)
            return NULL;
        found = it;
    }
    return found;
}

static bool is_string(const cJSON *v, const char *want)
{
    return v && cJSON_IsString(v) && v->valuestring && (!want || strcmp(v->valuestring, want) == 0);
}

static bool is_text_part(const cJSON *part)
{
    return cJSON_IsObject(part) && is_string(only(part, "type"), "text") &&
           is_string(only(part, "text"), NULL);
}

static int add_text(struct ctx *c, const char *s)
{
    int rc = 0;

    if (c->nparts++ > 0)
        rc = putc1(&c->text, '\n');
    return rc ? rc : put(&c->text, s, strlen(s));
}

/* The value of the lifted "content": texts go to c->text, the rest stays.
 * The lifted path (messages, last message, content, text part) sits at fixed
 * depths 2 to 5 of the partition form, so only write_value, which everything
 * below it goes through, needs to check CANON_MAX_DEPTH. */
static int write_content(struct ctx *c, const cJSON *v, int depth)
{
    static const struct shape text_part = {text_member, NULL, NULL};
    const cJSON *part;
    int rc;

    if (cJSON_IsString(v)) {
        if ((rc = add_text(c, v->valuestring)))
            return rc;
        return PUT_LIT(&c->out, "[{\"type\":\"text\"}]");
    }
    if ((rc = putc1(&c->out, '[')))
        return rc;
    for (part = v->child; part; part = part->next) {
        if (part != v->child && (rc = putc1(&c->out, ',')))
            return rc;
        if (is_text_part(part)) {
            rc = add_text(c, only(part, "text")->valuestring);
            if (!rc)
                rc = write_object(c, part, depth + 1, &text_part);
        } else {
            rc = write_value(c, part, depth + 1);
        }
        if (rc)
            return rc;
    }
    return putc1(&c->out, ']');
}

/* The lifted "messages" array: all as is but the last, whose content is lifted. */
static int write_messages(struct ctx *c, const cJSON *v, int depth)
{
    const struct shape last = {NULL, c->content, write_content};
    const cJSON *it;
    int rc;

    if ((rc = putc1(&c->out, '[')))
        return rc;
    for (it = v->child; it; it = it->next) {
        if (it != v->child && (rc = putc1(&c->out, ',')))
            return rc;
        if (it->next)
            rc = write_value(c, it, depth + 1);
        else
            rc = write_object(c, it, depth + 1, &last);
        if (rc)
            return rc;
    }
    return putc1(&c->out, ']');
}

/* Decides whether the last message's text can be lifted (see the top of this
 * file) and if so records the members involved in c. */
static void find_lift(struct ctx *c, const cJSON *req)
{
    const cJSON *msgs = only(req, "messages"), *last, *content, *part;

    c->messages = c->content = NULL;
    if (!cJSON_IsArray(msgs) || !msgs->child)
        return;
    for (last = msgs->child; last->next; last = last->next)
        ;
    if (!cJSON_IsObject(last) || !is_string(only(last, "role"), "user"))
        return;
    content = only(last, "content");
    if (!content)
        return;
    if (!is_string(content, NULL)) {
        if (!cJSON_IsArray(content))
            return;
        for (part = content->child; part && !is_text_part(part); part = part->next)
            ;
        if (!part)
            return;
    }
    c->messages = msgs;
    c->content = content;
}

static int write_opt_string(struct sink *s, const char *str)
{
    return str ? write_string(s, str) : PUT_LIT(s, "null");
}

/* Writes the partition form of req to c->out and the lifted text to c->text. */
static int write_partition(struct ctx *c, const cJSON *req, const char *tenant, const char *route)
{
    static const char head[] = "[\"" CANON_VERSION "\",";
    struct shape sh = {inert, NULL, write_messages};
    int rc;

    if (!cJSON_IsObject(req))
        return -EINVAL;
    find_lift(c, req);
    sh.special = c->messages;
    if ((rc = PUT_LIT(&c->out, head)) || (rc = write_opt_string(&c->out, tenant)) ||
        (rc = putc1(&c->out, ',')) || (rc = write_opt_string(&c->out, route)))
        return rc;
    if ((rc = c->messages ? PUT_LIT(&c->out, ",true,") : PUT_LIT(&c->out, ",false,")))
        return rc;
    if ((rc = write_object(c, req, 1, &sh)))
        return rc;
    return putc1(&c->out, ']');
}

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

/* Writes s[0..n) to dst with whitespace trimmed and inner runs made one
 * space; returns the length written (at most n). */
static size_t normalise(const char *s, size_t n, char *dst)
{
    size_t m = 0;
    bool gap = false;

    for (size_t i = 0; i < n; i++) {
        if (is_ws(s[i])) {
            gap = m > 0;
            continue;
        }
        if (gap)
            dst[m++] = ' ';
        gap = false;
        dst[m++] = s[i];
    }
    return m;
}

/* canon_json, or canon_print when in_order. */
static int print_value(const cJSON *v, bool in_order, char **buf, size_t *len, size_t *cap,
                       size_t max)
{
    struct ctx c = {.in_order = in_order};
    int rc;

    sink_open(&c.out, *buf, *len, *cap, max);
    rc = v ? write_value(&c, v, 0) : -EINVAL;
    return sink_close(&c.out, rc, buf, len, cap);
}

int canon_json(const cJSON *v, char **buf, size_t *len, size_t *cap, size_t max)
{
    return print_value(v, false, buf, len, cap, max);
}

int canon_print(const cJSON *v, char **buf, size_t *len, size_t *cap, size_t max)
{
    return print_value(v, true, buf, len, cap, max);
}

int canon_partition_form(const cJSON *req, const char *tenant, const char *route, char **buf,
                         size_t *len, size_t *cap, size_t max)
{
    struct ctx c = {0};
    int rc;

    sink_open(&c.out, *buf, *len, *cap, max);
    sink_open(&c.text, NULL, 0, 0, CANON_MAX);
    rc = req ? write_partition(&c, req, tenant, route) : -EINVAL;
    free(c.text.buf);
    return sink_close(&c.out, rc, buf, len, cap);
}

int canon_request(const cJSON *req, const char *tenant, const char *route, struct canon_key *out)
{
    return canon_request_src(req, NULL, 0, tenant, route, out);
}

int canon_request_src(const cJSON *req, const char *src, size_t src_len, const char *tenant,
                      const char *route, struct canon_key *out)
{
    struct ctx c = {.root = req, .src = src, .src_len = src_len};
    unsigned char *msg = NULL;
    size_t n = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    sink_open(&c.out, NULL, 0, 0, CANON_MAX);
    sink_open(&c.text, NULL, 0, 0, CANON_MAX);
    rc = req ? write_partition(&c, req, tenant, route) : -EINVAL;
    if (rc)
        goto fail;
    sha256(c.out.buf, c.out.len, out->partition);

    /* partition || 0x00 || normalised text, hashed in one go. */
    rc = -ENOMEM;
    msg = malloc(CANON_HASH_LEN + 1 + c.text.len);
    if (!msg)
        goto fail;
    memcpy(msg, out->partition, CANON_HASH_LEN);
    msg[CANON_HASH_LEN] = 0x00;
    if (c.messages)
        n = normalise(c.text.buf, c.text.len, (char *)msg + CANON_HASH_LEN + 1);
    sha256(msg, CANON_HASH_LEN + 1 + n, out->exact);

    if (n > 0) {
        /* The text sink always has room for its NUL. */
        c.text.buf[c.text.len] = '\0';
        out->lookup_text = c.text.buf;
        out->lookup_len = c.text.len;
        c.text.buf = NULL;
    }
    rc = 0;
fail:
    if (rc)
        memset(out, 0, sizeof(*out));
    free(msg);
    free(c.out.buf);
    free(c.text.buf);
    free(c.big);
    return rc;
}

int canon_item_key(const uint8_t *partition, const cJSON *item, uint8_t out[CANON_HASH_LEN])
{
    size_t len = CANON_HASH_LEN + 1, cap = CANON_HASH_LEN + 1 + 64;
    char *buf = malloc(cap);
    int rc;

    /* The prefix and the item's JSON in one buffer, hashed at once. */
    if (!buf)
        return -ENOMEM;
    memcpy(buf, partition, CANON_HASH_LEN);
    buf[CANON_HASH_LEN] = 0x01;
    rc = canon_json(item, &buf, &len, &cap, CANON_MAX + CANON_HASH_LEN + 1);
    if (rc == 0)
        sha256(buf, len, out);
    free(buf);
    return rc;
}

void canon_key_fini(struct canon_key *k)
{
    if (!k)
        return;
    free(k->lookup_text);
    memset(k, 0, sizeof(*k));
}

void canon_hex(const uint8_t *h, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[2 * n] = '\0';
}
