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

/* Append n bytes to a queue whose first *off bytes have been read. The read
 * bytes are dropped first (*off becomes 0) when the data would not fit
 * otherwise and they are at least half of what is held, so a queue read
 * while it is filled, even one never read to empty, holds about twice its
 * unread bytes at most rather than all that ever passed through it. Errors
 * as buf_append; the unread bytes are unchanged on failure. */
int buf_queue_append(struct buf *b, size_t *off, const void *data, size_t n, size_t max);

/* Append a NUL-terminated string. */
int buf_puts(struct buf *b, const char *s, size_t max);

/* Forget the contents, keep the memory. */
void buf_reset(struct buf *b);

/* Release the memory; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);

/* Hand the memory to the caller (free() it); the buffer becomes empty. */
char *buf_take(struct buf *b, size_t *len);

#endif
