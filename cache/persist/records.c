/* records.c - encode and decode the cache's log and snapshot records; see
 * records.h. */
#include "cache/persist/records.h"

#include "cache/base/le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define VERSION   1
#define FLAGGED   2 /* the PUT version that carries a flags byte */
#define AUDIT_LEN (1 + REC_KEY_LEN + 4 + 4 * 8)
#define ABSENT    0xffffffffu
#define MAX       (64u << 20)

static int put_u64(struct buf *b, uint64_t v)
{
    uint8_t p[8];

    le_put64(p, v);
    return buf_append(b, p, 8, MAX);
}

int rec_put_str(struct buf *b, const char *s, size_t n, int present)
{
    uint8_t p[4];
    int rc;

    le_put32(p, present ? (uint32_t)n : ABSENT);
    rc = buf_append(b, p, 4, MAX);
    if (rc == 0 && present && n > 0)
        rc = buf_append(b, s, n, MAX);
    return rc;
}

int rec_encode_put(const struct rec_put *p, struct buf *out)
{
    uint8_t head[2] = {p->flags ? FLAGGED : VERSION, p->flags};
    uint64_t bits;
    int rc;

    memcpy(&bits, &p->cost, sizeof(bits));
    rc = buf_append(out, head, p->flags ? 2 : 1, MAX);
    rc = rc ? rc : put_u64(out, (uint64_t)p->created);
    rc = rc ? rc : put_u64(out, (uint64_t)p->expires);
    rc = rc ? rc : put_u64(out, bits);
    rc = rc ? rc : buf_append(out, p->partition, REC_KEY_LEN, MAX);
    rc = rc ? rc : buf_append(out, p->exact, REC_KEY_LEN, MAX);
    rc = rc ? rc : put_u64(out, p->words[0]);
    rc = rc ? rc : put_u64(out, p->words[1]);
    rc = rc ? rc : rec_put_str(out, p->text, p->text ? strlen(p->text) : 0, p->text != NULL);
    if (rc == 0 && p->tail_len > 0)
        rc = buf_append(out, p->tail, p->tail_len, MAX);
    return rc;
}

static int get_u64(struct rec_reader *rd, uint64_t *v)
{
    if (rd->end - rd->p < 8)
        return -EBADMSG;
    *v = le_get64(rd->p);
    rd->p += 8;
    return 0;
}

static int get_raw(struct rec_reader *rd, void *out, size_t n)
{
    if ((size_t)(rd->end - rd->p) < n)
        return -EBADMSG;
    memcpy(out, rd->p, n);
    rd->p += n;
    return 0;
}

/* A NUL-terminated malloc'd copy of the next string, NULL when absent. */
int rec_get_str(struct rec_reader *rd, char **out, size_t *len)
{
    uint32_t n;

    *out = NULL;
    if (rd->end - rd->p < 4)
        return -EBADMSG;
    n = le_get32(rd->p);
    rd->p += 4;
    if (n == ABSENT) {
        if (len)
            *len = 0;
        return 0;
    }
    if ((size_t)(rd->end - rd->p) < n)
        return -EBADMSG;
    *out = malloc((size_t)n + 1);
    if (!*out)
        return -ENOMEM;
    memcpy(*out, rd->p, n);
    (*out)[n] = '\0';
    rd->p += n;
    if (len)
        *len = n;
    return 0;
}

int rec_decode_put(const void *data, size_t len, struct rec_put *p)
{
    struct rec_reader rd = {data, (const uint8_t *)data + len};
    uint64_t created, expires, bits;
    size_t text_len = 0;
    int rc;

    memset(p, 0, sizeof(*p));
    if (len < 1 || (*rd.p != VERSION && *rd.p != FLAGGED))
        return -EBADMSG;
    if (*rd.p++ == FLAGGED) {
        /* No flag is written as version 1: one spelling per record. */
        if (rd.p == rd.end || *rd.p == 0 || (*rd.p & ~REC_FLAG_DISPUTED) != 0)
            return -EBADMSG;
        p->flags = *rd.p++;
    }
    rc = get_u64(&rd, &created);
    rc = rc ? rc : get_u64(&rd, &expires);
    rc = rc ? rc : get_u64(&rd, &bits);
    rc = rc ? rc : get_raw(&rd, p->partition, REC_KEY_LEN);
    rc = rc ? rc : get_raw(&rd, p->exact, REC_KEY_LEN);
    rc = rc ? rc : get_u64(&rd, &p->words[0]);
    rc = rc ? rc : get_u64(&rd, &p->words[1]);
    rc = rc ? rc : rec_get_str(&rd, &p->text, &text_len);
    /* The text is a C string: a NUL inside it cannot round-trip. */
    if (rc == 0 && p->text && memchr(p->text, '\0', text_len))
        rc = -EBADMSG;
    if (rc) {
        rec_put_fini(p);
        return rc;
    }
    p->created = (int64_t)created;
    p->expires = (int64_t)expires;
    memcpy(&p->cost, &bits, sizeof(p->cost));
    p->tail = rd.p;
    p->tail_len = (size_t)(rd.end - rd.p);
    return 0;
}

int rec_encode_del(const uint8_t (*keys)[REC_KEY_LEN], size_t n, struct buf *out)
{
    uint8_t head[5] = {VERSION};

    if (n == 0 || n > REC_DEL_MAX)
        return -EINVAL;
    le_put32(head + 1, (uint32_t)n);
    if (buf_append(out, head, sizeof(head), MAX) != 0)
        return -ENOMEM;
    return buf_append(out, keys, n * REC_KEY_LEN, MAX) ? -ENOMEM : 0;
}

int rec_decode_del(const void *data, size_t len, const uint8_t (**keys)[REC_KEY_LEN], size_t *n)
{
    const uint8_t *p = data;
    uint32_t count;

    if (len < 5 || p[0] != VERSION)
        return -EBADMSG;
    count = le_get32(p + 1);
    if (count == 0 || count > REC_DEL_MAX || len - 5 != (size_t)count * REC_KEY_LEN)
        return -EBADMSG;
    *keys = (const uint8_t(*)[REC_KEY_LEN])(p + 5);
    *n = count;
    return 0;
}

int rec_encode_audit(const struct rec_audit *a, struct buf *out)
{
    uint8_t p[AUDIT_LEN], *w = p;
    uint32_t bits;

    memcpy(&bits, &a->threshold, sizeof(bits));
    *w++ = VERSION;
    memcpy(w, a->partition, REC_KEY_LEN);
    w += REC_KEY_LEN;
    le_put32(w, bits);
    w += 4;
    le_put64(w, a->audits);
    le_put64(w + 8, a->wrong);
    le_put64(w + 16, a->waudits);
    le_put64(w + 24, a->wwrong);
    return buf_append(out, p, sizeof(p), MAX) ? -ENOMEM : 0;
}

int rec_decode_audit(const void *data, size_t len, struct rec_audit *a)
{
    const uint8_t *p = data;
    uint32_t bits;

    if (len != AUDIT_LEN || p[0] != VERSION)
        return -EBADMSG;
    p++;
    memcpy(a->partition, p, REC_KEY_LEN);
    p += REC_KEY_LEN;
    bits = le_get32(p);
    memcpy(&a->threshold, &bits, sizeof(bits));
    p += 4;
    a->audits = le_get64(p);
    a->wrong = le_get64(p + 8);
    a->waudits = le_get64(p + 16);
    a->wwrong = le_get64(p + 24);
    /* A threshold is a similarity; the window is part of the whole. */
    if (!(a->threshold >= 0 && a->threshold <= 1) || a->wrong > a->audits ||
        a->waudits > a->audits || a->wwrong > a->waudits || a->wwrong > a->wrong)
        return -EBADMSG;
    return 0;
}

void rec_put_fini(struct rec_put *p)
{
    free(p->text);
    p->text = NULL;
}
