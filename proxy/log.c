/* log.c - JSON lines on stderr; see log.h. */
#include "proxy/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level lvl)
{
    min_level = lvl;
}

bool log_enabled(enum log_level lvl)
{
    return lvl >= min_level;
}

size_t log_json_escape(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (cap < 3)
        return cap;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc = 0;

        switch (ch) {
        case '"': esc = '"'; break;
        case '\\': esc = '\\'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        case '\t': esc = 't'; break;
        default: break;
        }
        if (esc) {
            if (o + 2 >= cap)
                return cap;
            out[o++] = '\\';
            out[o++] = esc;
        } else if (ch < 0x20 || ch == 0x7f) {
            if (o + 6 >= cap)
                return cap;
            out[o++] = '\\';
            out[o++] = 'u';
            out[o++] = '0';
            out[o++] = '0';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            if (o + 1 >= cap)
                return cap;
            out[o++] = (char)ch;
        }
    }
    if (o + 2 > cap)
        return cap;
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

/* Room kept back so that log_end can always close the object. */
#define TAIL_ROOM 24

static void put(struct log_rec *r, const char *fmt, ...)
{
    va_list ap;
    int n;
    size_t room;

    if (r->full)
        return;
    room = sizeof(r->buf) - TAIL_ROOM - r->len;
    va_start(ap, fmt);
    n = vsnprintf(r->buf + r->len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        r->buf[r->len] = '\0';
        r->full = true;
        return;
    }
    r->len += (size_t)n;
}

/* Writes ,"key": and returns false if there is no room for the value. */
static bool key(struct log_rec *r, const char *k)
{
    size_t before = r->len;

    put(r, ",\"%s\":", k);
    if (r->full) {
        r->len = before;
        return false;
    }
    return true;
}

void log_begin(struct log_rec *r, enum log_level lvl, const char *msg)
{
    struct timespec ts;
    struct tm tm;

    r->len = 0;
    r->full = false;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    put(r, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\"", tm.tm_year + 1900,
        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
        level_names[lvl]);
    log_str(r, "msg", msg);
}

void log_strn(struct log_rec *r, const char *k, const char *val, size_t n)
{
    size_t before = r->len, w;

    if (r->full || !key(r, k))
        return;
    if (!val) {
        put(r, "null");
        return;
    }
    w = log_json_escape(r->buf + r->len, sizeof(r->buf) - TAIL_ROOM - r->len, val, n);
    if (w >= sizeof(r->buf) - TAIL_ROOM - r->len) {
        r->len = before;
        r->buf[r->len] = '\0';
        r->full = true;
        return;
    }
    r->len += w;
}

void log_str(struct log_rec *r, const char *k, const char *val)
{
    log_strn(r, k, val, val ? strlen(val) : 0);
}

void log_int(struct log_rec *r, const char *k, long long val)
{
    if (key(r, k))
        put(r, "%lld", val);
}

void log_ms(struct log_rec *r, const char *k, double ms)
{
    if (key(r, k))
        put(r, "%.3f", ms);
}

void log_num(struct log_rec *r, const char *k, double v)
{
    if (key(r, k))
        put(r, "%.4f", v);
}

void log_bool(struct log_rec *r, const char *k, bool val)
{
    if (key(r, k))
        put(r, "%s", val ? "true" : "false");
}

void log_end(struct log_rec *r)
{
    const char *tail = r->full ? ",\"truncated\":true}\n" : "}\n";
    size_t tl = strlen(tail), off = 0;

    memcpy(r->buf + r->len, tail, tl);
    r->len += tl;
    /* One write keeps lines whole; retry only on a short write. */
    while (off < r->len) {
        ssize_t n = write(STDERR_FILENO, r->buf + off, r->len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
}

void log_msg(enum log_level lvl, const char *msg, const char *detail)
{
    struct log_rec r;

    if (!log_enabled(lvl))
        return;
    log_begin(&r, lvl, msg);
    if (detail)
        log_str(&r, "detail", detail);
    log_end(&r);
}
