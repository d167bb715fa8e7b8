/* buf.h - a growable byte buffer with a hard cap (curl's dynbuf idea).
 *
 * Not thread-safe; the owner serialises access.
 */
#ifndef PARROT_BUF_H
#define PARROT_BUF_H

#include <stddef.h>

struct buf {
    char *p;
    size_t len, cap;
};

/* Append n bytes, keeping a NUL after the data. Fails with -E2BIG when the
 * result would exceed max bytes and -ENOMEM when allocation fails; the
 * buffer is unchanged on failure. */
int buf_append(struct buf *b, const void *data, size_t n, size_t max);

/* Append a NUL-terminated string. */
int buf_puts(struct buf *b, const char *s, size_t max);

/* Forget the contents, keep the memory. */
void buf_reset(struct buf *b);

/* Release the memory; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);

/* Hand the memory to the caller (free() it); the buffer becomes empty. */
char *buf_take(struct buf *b, size_t *len);

#endif
