/* log.h - one JSON object per line on stderr.
 *
 * A record is built on the caller's stack and written with a single write(2),
 * so lines from different threads never interleave. Any thread may log.
 * Values are escaped; a record that outgrows its buffer is cut at a field
 * boundary and marked "truncated":true rather than dropped.
 */
#ifndef PARROT_LOG_H
#define PARROT_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

#define LOG_REC_MAX 2048

struct log_rec {
    char buf[LOG_REC_MAX];
    size_t len;
    bool full;
};

/* Set the lowest level that is written (default LOG_INFO). Call before
 * threads start. */
void log_set_level(enum log_level lvl);

/* True when records at lvl are written; lets callers skip building them. */
bool log_enabled(enum log_level lvl);

/* Start a record with "ts", "level" and "msg". */
void log_begin(struct log_rec *r, enum log_level lvl, const char *msg);
void log_str(struct log_rec *r, const char *key, const char *val); /* NULL -> null */
void log_strn(struct log_rec *r, const char *key, const char *val, size_t n);
void log_int(struct log_rec *r, const char *key, long long val);
void log_ms(struct log_rec *r, const char *key, double ms); /* 3 decimals */
void log_num(struct log_rec *r, const char *key, double v); /* 4 decimals */
void log_bool(struct log_rec *r, const char *key, bool val);
/* Close the record and write it. */
void log_end(struct log_rec *r);

/* One-liners: a message with an optional "detail" string. */
void log_msg(enum log_level lvl, const char *msg, const char *detail);

/* Append the JSON string literal for s[0..n) to out (cap bytes, always
 * NUL-terminated). Returns the length written, or cap if it did not fit. */
size_t log_json_escape(char *out, size_t cap, const char *s, size_t n);

#endif
