/* conns.h - client connections and the deadlines libmicrohttpd does not
 * have.
 *
 * libmicrohttpd's only client timer is an idle timer that every byte
 * restarts, so a client that sends one header byte a second holds a
 * connection slot for ever (slowloris). This module tracks every
 * connection: its request head must be complete within header_timeout_ms,
 * and then its body must arrive at MIN_BODY_RATE on average (the head
 * timeout is the body's grace). A reaper thread shuts down the socket of a
 * connection past either; libmicrohttpd then sees the end and closes it.
 *
 * Connections accepted beyond max_connections (libmicrohttpd is given room
 * for RESERVE_CONNS more) are marked reserve, with a short head deadline:
 * the server keeps them for health probes, so that /healthz and /readyz
 * answer while clients hold every ordinary slot.
 *
 * Threads: conns_event() runs on libmicrohttpd's threads, the conn_*()
 * updates on the thread that owns the request, the reaper on its own;
 * per-connection state is atomic, the list is guarded by a mutex.
 */
#ifndef PARROT_CONNS_H
#define PARROT_CONNS_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESERVE_CONNS   16          /* connections kept for health probes */
#define RESERVE_HEAD_MS 2000        /* a reserve connection's whole head, in ms */
#define MIN_BODY_RATE   (16u << 10) /* bytes per second a body must average */

struct conns;
struct conn;

/* Starts the tracker and its reaper thread. Returns 0, or -1 (out of
 * memory, no thread). */
int conns_new(size_t max_connections, long header_timeout_ms, struct conns **out);

/* Stops the reaper; call after libmicrohttpd has closed every connection.
 * NULL is a no-op. */
void conns_free(struct conns *cs);

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback (cls: the conns). */
void conns_event(void *cls, struct MHD_Connection *connection, void **socket_context,
                 enum MHD_ConnectionNotificationCode code);

/* The tracked connection of conn, or NULL when it could not be tracked. */
struct conn *conns_of(struct MHD_Connection *conn);

/* Connections the reaper has cut off since the start. */
uint64_t conns_cut_total(const struct conns *cs);

/* Accepted beyond max-connections: for health probes only. */
bool conn_reserve(const struct conn *c);

/* A request line has arrived: its head is due within the head timeout
 * (the first request's since the accept, whichever is earlier). */
void conn_request_line(struct conn *c, long header_timeout_ms);

/* The head is complete: the body's rate is watched from now. */
void conn_head_done(struct conn *c);

/* n more body bytes arrived. */
void conn_body_bytes(struct conn *c, size_t n);

/* The body is complete: no deadline while the request is served. */
void conn_busy(struct conn *c);

/* The request is answered: the next head is due within allowance_ms (the
 * idle allowance plus the head timeout). */
void conn_idle(struct conn *c, long allowance_ms);

#endif
