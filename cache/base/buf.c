/* buf.c - capped growable buffer; see buf.h. */
#include "cache/base/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int buf_append(struct buf *b, const void *data, size_t n, size_t max)
{
    if (n > max || b->len > max - n)
        return -E2BIG;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        char *np;

        while (nc < b->len + n + 1)
            nc *= 2;
        np = realloc(b->p, nc);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = nc;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int buf_queue_append(struct buf *b, size_t *off, const void *data, size_t n, size_t max)
{
    size_t unread = b->len - *off;

    /* Moving only when the read part is the larger one costs at most one
     * copy of each byte that passes through. */
    if (*off && b->len + n + 1 > b->cap && *off >= unread) {
        memmove(b->p, b->p + *off, unread);
        b->len = unread;
        b->p[b->len] = '\0';
        *off = 0;
    }
    return buf_append(b, data, n, max);
}

int buf_puts(struct buf *b, const char *s, size_t max)
{
    return buf_append(b, s, strlen(s), max);
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

char *buf_take(struct buf *b, size_t *len)
{
    char *p = b->p;

    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}
