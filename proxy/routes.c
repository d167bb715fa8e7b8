/* routes.c - what a request is: the checks of its head, its route, the
 * cache policy's verdicts and the operational endpoints; see exchange.h. */
#include "proxy/exchange.h"

#include "cache/base/clock.h"
#include "cache/cache.h"
#include "cache/replica/replica.h"
#include "config/config.h"
#include "proxy/audit.h"
#include "proxy/auth.h"
#include "proxy/chat.h"
#include "proxy/conns.h"
#include "proxy/dashboard.h"
#include "proxy/embeddings.h"
#include "proxy/front.h"
#include "proxy/log.h"
#include "proxy/openai/responses.h"
#include "proxy/metrics.h"

#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A sampled semantic hit goes to the audit, after its answer is queued. */
static void offer_audit(struct exch *x)
{
    const struct chat_req *r = x->chat;
    struct cache_entry_info in;
    struct audit_hit h;

    /* The audit asks /v1/chat/completions again: chat hits only. */
    if (r->exact || r->coalesced || !x->srv->audit || r->kind != CMPL_CHAT)
        return;
    cache_entry_describe(r->q.hit, &in);
    h = (struct audit_hit){
        .body = x->body.p,
        .len = x->body.len,
        .authorization = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Authorization"),
        .organization =
            MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "OpenAI-Organization"),
        .project = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "OpenAI-Project"),
        .request_id = x->id,
        .partition = r->q.partition,
        .exact = r->q.exact,
        .text = r->q.text,
        .text_len = r->q.text_len,
        .entry = in.id,
        .sim = r->q.sim};
    audit_offer(x->srv->audit, &h);
}

static enum MHD_Result serve_hit(struct exch *x)
{
    size_t len = 0;
    char *body = chat_hit_body(x->chat, clock_wall_ms(), &len);
    enum MHD_Result rc;

    if (!body) {
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return xch_queue_error(x, &x->err);
    }
    rc = xch_queue_buffer(x, 200, x->chat->stream ? "text/event-stream" : "application/json", body,
                          len, MHD_RESPMEM_MUST_FREE);
    offer_audit(x);
    return rc;
}

/* A request waiting behind an identical one is woken (any thread). */
static void flight_wake(struct flight_waiter *w)
{
    struct chat_req *cr = (struct chat_req *)((char *)w - offsetof(struct chat_req, waiter));

    xch_wake_as(cr->owner, XS_RETRY);
}

static bool join_flight(struct exch *x)
{
    return chat_flight_join(x->srv->chat, x->chat, flight_wake);
}

/* The cross-replica single-flight is decided (a replica thread). */
static void shared_wake(struct replica_waiter *w)
{
    struct chat_req *cr = (struct chat_req *)((char *)w - offsetof(struct chat_req, rwaiter));

    xch_wake_as(cr->owner, XS_PEER_END);
}

static bool join_shared(struct exch *x)
{
    return chat_shared_join(x->srv->chat, x->chat, shared_wake);
}

/* After the cache said miss: wait behind an identical request in flight
 * here; leading here, wait while another replica leads (docs/scale-out.md);
 * else go to the provider. */
static enum MHD_Result cached_miss(struct exch *x)
{
    if (xch_wait_suspended(x, XS_FLIGHT, join_flight) ||
        xch_wait_suspended(x, XS_PEER, join_shared))
        return MHD_YES;
    return xch_forward(x, x->uri + 3);
}

/* The remote embedder finished x's vector (its thread). */
static void embed_wake(struct chat_req *cr)
{
    xch_wake_as(cr->owner, XS_EMBEDDED);
}

static bool start_embed(struct exch *x)
{
    return chat_embed(x->srv->chat, x->chat, embed_wake) == 0;
}

static enum MHD_Result cached_verdict(struct exch *x, enum chat_verdict v);

/* The answer x waits for is stored (the store thread). */
static void stored_wake(struct chat_req *cr)
{
    xch_wake_as(cr->owner, XS_STORED);
}

static bool start_await(struct exch *x)
{
    return chat_await(x->srv->chat, x->chat, stored_wake);
}

/* An answer still queued for storing could serve x, or the queue is
 * behind: wait suspended until it is stored, then look again (at once
 * when it is stored already). */
static enum MHD_Result cached_store_wait(struct exch *x)
{
    if (xch_wait_suspended(x, XS_STORING, start_await))
        return MHD_YES;
    return cached_verdict(x, chat_lookup(x->srv->chat, x->chat, clock_wall_ms()));
}

/* The lookup needs a remote embedding: wait for it suspended, or go on
 * without one when the embedder cannot take it. */
static enum MHD_Result cached_embed_wait(struct exch *x)
{
    if (xch_wait_suspended(x, XS_EMBED, start_embed))
        return MHD_YES;
    return cached_verdict(x, chat_lookup(x->srv->chat, x->chat, clock_wall_ms()));
}

static enum MHD_Result cached_verdict(struct exch *x, enum chat_verdict v)
{
    switch (v) {
    case CHAT_EMBED: return cached_embed_wait(x);
    case CHAT_WAIT: return cached_store_wait(x);
    case CHAT_HIT: return serve_hit(x);
    case CHAT_REFUSE:
        oai_error_set(&x->err, 504, "invalid_request_error", NULL, "cache_miss",
                      "Nothing cached answers this request and Cache-Control says "
                      "only-if-cached.");
        return xch_queue_error(x, &x->err);
    case CHAT_MISS: return cached_miss(x);
    case CHAT_BYPASS: break;
    }
    return xch_forward(x, x->uri + 3);
}

/* Whose cache a request reaches. With client keys the key's tenant is the
 * scope, not the key itself. */
static void scope_of(struct exch *x, struct chat_scope *sc)
{
    const char *th = x->srv->cfg->tenant_header;

    sc->authorization =
        x->tenant ? NULL : MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Authorization");
    sc->tenant_value = x->tenant ? x->tenant
                       : th      ? MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, th)
                                 : NULL;
    sc->ns = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-parrot-namespace");
}

static enum MHD_Result cached_route(struct exch *x)
{
    struct server *s = x->srv;
    const char *ct =
        MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    bool legacy = x->kind == RK_COMPLETIONS, resp = x->kind == RK_RESPONSES;
    enum cmpl_kind kind = legacy ? CMPL_TEXT : resp ? CMPL_RESPONSE : CMPL_CHAT;
    const char *why = NULL;
    cJSON *doc = NULL, *keyed = NULL;
    struct chat_scope sc;

    scope_of(x, &sc);
    if ((kind != CMPL_CHAT ? oai_model_parse(ct, x->body.p, x->body.len, &doc, &x->err)
                           : oai_chat_parse(ct, x->body.p, x->body.len, &doc, &x->err)) != 0)
        return xch_queue_error(x, &x->err);
    x->chat = malloc(sizeof(*x->chat));
    if (!x->chat) {
        cJSON_Delete(doc);
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return xch_queue_error(x, &x->err);
    }
    /* A legacy completion's one prompt is keyed as a chat question; a batch
     * of prompts as the whole request (exact hits only). */
    if (legacy)
        keyed = oai_prompt_as_chat(doc);
    else if (resp)
        keyed = oresp_keyed(doc, &why);
    chat_req_init_as(s->chat, x->chat, kind, keyed ? keyed : doc, x->body.p, x->body.len, &sc,
                     MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Cache-Control"),
                     MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-parrot-ttl"));
    x->chat->owner = x;
    /* A Responses request that is not self-contained never meets the cache. */
    if (resp && !keyed) {
        log_msg(LOG_DEBUG, "response not cacheable", why);
        chat_req_uncacheable(x->chat);
    }
    cJSON_Delete(keyed);
    cJSON_Delete(doc);
    if (!s->chat)
        return xch_forward(x, x->uri + 3);
    return cached_verdict(x, chat_lookup(s->chat, x->chat, clock_wall_ms()));
}

/* POST /v1/embeddings: answered from the cache when every input is cached,
 * else forwarded with only the inputs that are not (the exchange merges
 * the answer), or as sent when none is. */
static enum MHD_Result embeddings_route(struct exch *x)
{
    struct server *s = x->srv;
    struct chat_scope sc;
    size_t len = 0;
    char *body;

    scope_of(x, &sc);
    x->emb = malloc(sizeof(*x->emb));
    if (!x->emb) {
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return xch_queue_error(x, &x->err);
    }
    if (emb_call_init(
            s->chat, x->emb,
            MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
            x->body.p, x->body.len, &sc,
            MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Cache-Control"),
            MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-parrot-ttl"), clock_wall_ms(),
            &x->err) != 0) {
        free(x->emb);
        x->emb = NULL;
        return xch_queue_error(x, &x->err);
    }
    switch (x->emb->verdict) {
    case CHAT_HIT:
        body = emb_hit_body(x->emb, &len);
        if (!body)
            break;
        return xch_queue_buffer(x, 200, "application/json", body, len, MHD_RESPMEM_MUST_FREE);
    case CHAT_REFUSE:
        oai_error_set(&x->err, 504, "invalid_request_error", NULL, "cache_miss",
                      "Not every input is cached and Cache-Control says only-if-cached.");
        return xch_queue_error(x, &x->err);
    case CHAT_MISS:
        if (!emb_partial(x->emb))
            return xch_forward(x, x->uri + 3);
        body = emb_provider_body(x->emb, &len);
        if (!body)
            break;
        /* The provider is asked for the missing inputs only. */
        buf_free(&x->body);
        x->body = (struct buf){.p = body, .len = len, .cap = len + 1};
        return xch_forward(x, x->uri + 3);
    case CHAT_BYPASS:
    case CHAT_EMBED:
    case CHAT_WAIT: return xch_forward(x, x->uri + 3);
    }
    oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
    return xch_queue_error(x, &x->err);
}

/* The cache's Prometheus text, with its replication's. */
static int cache_metrics(struct server *s, struct buf *b)
{
    struct chat_stats cs;
    struct cache_stats st;
    struct replica_stats rs;

    chat_get_stats(s->chat, &cs);
    cache_get_stats(s->cache, &st);
    if (s->rep)
        replica_get_stats(s->rep, &rs);
    return metrics_cache(b, &cs, &st) || (s->rep && metrics_replica(b, &rs));
}

/* The audits' Prometheus text. */
static int audit_metrics(struct server *s, struct buf *b)
{
    struct budget_part parts[AUDIT_PARTS_SHOWN];
    struct audit_stats as;
    struct cache_stats st;
    size_t n = cache_audit_partitions(s->cache, parts, AUDIT_PARTS_SHOWN);

    audit_get_stats(s->audit, &as);
    cache_get_stats(s->cache, &st);
    return metrics_audit(b, &as, &st, parts, n);
}

/* /metrics: every module's numbers, rendered by metrics.c. */
static enum MHD_Result metrics(struct exch *x)
{
    struct server *s = x->srv;
    struct up_provider_stats st[UP_MAX_PROVIDERS];
    size_t n = up_pool_provider_stats(s->pool, st, UP_MAX_PROVIDERS);
    struct buf b = {0};

    chat_settle(s->chat); /* counts every request answered before the scrape */
    if (metrics_server(&b, atomic_load(&s->inflight), conns_cut_total(s->conns)) ||
        metrics_providers(&b, st, n) || (s->chat && cache_metrics(s, &b)) ||
        (s->chat && audit_metrics(s, &b)) || metrics_render(s->met, &b)) {
        buf_free(&b);
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return xch_queue_error(x, &x->err);
    }
    return xch_queue_buffer(x, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len,
                            MHD_RESPMEM_MUST_FREE);
}

static const char *query_arg(void *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result admin_route(struct exch *x, const char *path)
{
    struct admin_reply rep;
    struct admin_call c = {
        .method = x->method,
        .path = path,
        .authorization = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Authorization"),
        .body = x->body.p,
        .body_len = x->body.len,
        .arg = query_arg,
        .arg_ud = x->conn,
    };

    /* An operator's call sees (and acts on) every answer already given. */
    chat_settle(x->srv->chat);
    if (admin_handle(&x->srv->admin, &c, clock_wall_ms(), &rep) != 0) {
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return xch_queue_error(x, &x->err);
    }
    return xch_queue_buffer(x, rep.status, "application/json", rep.body, rep.len,
                            MHD_RESPMEM_MUST_FREE);
}

/* /dashboard (the page) and /dashboard/stats.json (what it polls). Both
 * show aggregate numbers only, like /metrics: no prompts, no keys. */
static enum MHD_Result dashboard(struct exch *x, const char *path)
{
    struct server *s = x->srv;
    size_t len = 0;
    char *json;

    if (path[10] == '\0' || path[11] == '\0') {
        const char *page = dashboard_page(&len);
        return xch_queue_buffer(x, 200, "text/html; charset=utf-8", (char *)page, len,
                                MHD_RESPMEM_PERSISTENT);
    }
    chat_settle(s->chat);
    json = dashboard_stats(s->chat, s->audit, s->cfg->max_wrong_hit_rate, s->pool, s->met,
                           atomic_load(&s->inflight), &len);
    if (!json) {
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return xch_queue_error(x, &x->err);
    }
    return xch_queue_buffer(x, 200, "application/json", json, len, MHD_RESPMEM_MUST_FREE);
}

/* /readyz: ready while parrot can serve, which it can with every provider
 * down (hits still work; misses get a clear 502), so that an orchestrator
 * does not take the application's pod out of service for the provider's
 * outage. /readyz?upstream=1 also asks for a provider whose breaker is not
 * open, for a check that wants that. */
static enum MHD_Result ready(struct exch *x)
{
    struct server *s = x->srv;
    const char *up = MHD_lookup_connection_value(x->conn, MHD_GET_ARGUMENT_KIND, "upstream");
    const char *problem = cache_problem(s->cache);
    char body[256];
    char *copy;

    if (atomic_load(&s->draining))
        return xch_queue_json(x, 503, "{\"status\":\"draining\"}");
    if (up && strcmp(up, "0") != 0 && !up_pool_ready(s->pool))
        return xch_queue_json(x, 503,
                              "{\"status\":\"no_upstream\",\"detail\":\"every "
                              "provider's circuit breaker is open\"}");
    if (!problem)
        return xch_queue_json(x, 200, "{\"status\":\"ready\"}");
    /* Still ready: answers are served and forwarded, only not logged. */
    snprintf(body, sizeof(body), "{\"status\":\"ready\",\"detail\":\"%s\"}", problem);
    copy = strdup(body);
    if (!copy)
        return xch_queue_json(x, 200, "{\"status\":\"ready\"}");
    return xch_queue_buffer(x, 200, "application/json", copy, strlen(copy), MHD_RESPMEM_MUST_FREE);
}

/* The request's path: the normalised target up to its query. */
static const char *req_path(const struct exch *x)
{
    return x->uri + strlen(x->uri) + 1;
}

enum MHD_Result route_dispatch(struct exch *x)
{
    struct server *s = x->srv;

    if (x->too_large) {
        oai_error_set(&x->err, 413, "invalid_request_error", NULL, "request_too_large",
                      "The request body exceeds the limit of %zu bytes (max-body-size).",
                      s->cfg->max_body_size);
        return xch_queue_error(x, &x->err);
    }
    switch (x->kind) {
    case RK_HEALTH: return xch_queue_json(x, 200, "{\"status\":\"ok\"}");
    case RK_READY: return ready(x);
    case RK_METRICS: return metrics(x);
    case RK_ADMIN: return admin_route(x, req_path(x));
    case RK_DASHBOARD: return dashboard(x, req_path(x));
    case RK_CHAT:
    case RK_COMPLETIONS:
    case RK_RESPONSES: return cached_route(x);
    case RK_EMBED: return embeddings_route(x);
    case RK_V1: break;
    }
    /* Everything under /v1 goes to the provider, query string and all. */
    return xch_forward(x, x->uri + 3);
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    return front_head_add(cls, key, key_size, value ? value : "", value ? value_size : 0) ? MHD_YES
                                                                                          : MHD_NO;
}

/* The head as received is well-formed: header names and values, framing,
 * Host, and a target that normalises. On false x->err says why; the
 * request must be answered at once and the connection closed, since its
 * framing cannot be trusted. */
static bool head_ok(struct exch *x, const char *version)
{
    char target[FRONT_TARGET_MAX + 1];
    struct front_head h;
    const char *why;
    size_t plen, tl;
    char *t;

    front_head_init(&h, x->srv->cfg->tenant_header);
    MHD_get_connection_values_n(x->conn, MHD_HEADER_KIND, scan_header, &h);
    if (h.status || !front_head_done(&h, strcmp(version, MHD_HTTP_VERSION_1_1) == 0)) {
        oai_error_set(&x->err, h.status, "invalid_request_error", NULL, h.code, "%s", h.why);
        return false;
    }
    if (front_target(x->uri, target, &plen, &why) != 0) {
        oai_error_set(&x->err, 400, "invalid_request_error", NULL, "invalid_path", "%s", why);
        return false;
    }
    /* One allocation: "path?query\0path\0" (req_path() finds the second). */
    tl = strlen(target);
    t = malloc(tl + plen + 2);
    if (!t) {
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return false;
    }
    memcpy(t, target, tl + 1);
    memcpy(t + tl + 1, target, plen);
    t[tl + 1 + plen] = '\0';
    free(x->uri);
    x->uri = t;
    x->plen = plen;
    return true;
}

static bool path_is(const struct exch *x, const char *p)
{
    return strlen(p) == x->plen && memcmp(x->uri, p, x->plen) == 0;
}

static bool path_under(const struct exch *x, const char *p)
{
    size_t n = strlen(p);
    return x->plen >= n && memcmp(x->uri, p, n) == 0 && (x->plen == n || x->uri[n] == '/');
}

static bool peer_on_loopback(const struct exch *x)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct sockaddr_storage ss = {0};

    if (!ci || !ci->client_addr)
        return false;
    memcpy(&ss, ci->client_addr,
           ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in));
    return cfg_addr_is_loopback(&ss);
}

/* Sets x->err to a 405 that names the allowed methods. */
static bool not_allowed(struct exch *x, const char *allow)
{
    x->allow = allow;
    oai_error_set(&x->err, 405, "invalid_request_error", NULL, "method_not_allowed",
                  "Method %s is not allowed on %.200s; use %s.", x->method, req_path(x), allow);
    return false;
}

static bool unauthorized(struct exch *x, const char *message)
{
    oai_error_set(&x->err, 401, "invalid_request_error", NULL, "invalid_api_key", "%s", message);
    return false;
}

/* The route, decided from the path alone; false with x->err for a 404. */
static bool classify(struct exch *x)
{
    if (path_is(x, "/healthz"))
        x->kind = RK_HEALTH;
    else if (path_is(x, "/readyz"))
        x->kind = RK_READY;
    else if (path_is(x, "/metrics"))
        x->kind = RK_METRICS;
    else if (path_under(x, "/admin"))
        x->kind = RK_ADMIN;
    else if (path_is(x, "/dashboard") || path_is(x, "/dashboard/") ||
             path_is(x, "/dashboard/stats.json"))
        x->kind = RK_DASHBOARD;
    else if (path_is(x, "/v1/chat/completions") && strcmp(x->method, "POST") == 0)
        x->kind = RK_CHAT;
    else if (path_is(x, "/v1/embeddings") && strcmp(x->method, "POST") == 0)
        x->kind = RK_EMBED;
    else if (path_is(x, "/v1/completions") && strcmp(x->method, "POST") == 0)
        x->kind = RK_COMPLETIONS;
    else if (path_is(x, "/v1/responses") && strcmp(x->method, "POST") == 0)
        x->kind = RK_RESPONSES;
    else if (path_under(x, "/v1"))
        x->kind = RK_V1;
    else {
        /* The commonest set-up mistake: a base URL without /v1. */
        oai_error_set(&x->err, 404, "invalid_request_error", NULL, "unknown_url",
                      "Invalid URL (%s %.200s). parrot serves the OpenAI API under /v1: set the "
                      "client's base URL to http://HOST:PORT/v1.",
                      x->method, req_path(x));
        return false;
    }
    return true;
}

/* Whether the request may go on to its body, decided from its head: the
 * route, the method, the keys and the declared length. Nothing of the body
 * is read (and so no memory spent on it) before this says yes. Returns
 * false with x->err set to refuse. */
static bool admit(struct exch *x)
{
    struct server *s = x->srv;
    const struct cfg *c = s->cfg;
    const char *authz = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Authorization");
    const char *cl =
        MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *ttl, *ns;
    bool get = strcmp(x->method, "GET") == 0 || strcmp(x->method, "HEAD") == 0;

    if (!classify(x))
        return false;
    if (x->track && conn_reserve(x->track) && x->kind != RK_HEALTH && x->kind != RK_READY) {
        x->close = true;
        oai_error_set(&x->err, 503, "server_error", NULL, "too_many_connections",
                      "parrot is at its connection limit (max-connections); retry shortly.");
        return false;
    }
    switch (x->kind) {
    case RK_HEALTH:
    case RK_READY:
    case RK_METRICS:
    case RK_DASHBOARD:
        if (!get)
            return not_allowed(x, "GET, HEAD");
        /* /metrics names models and providers: only loopback (a sidecar's
         * scraper, an operator's curl) reads it without the admin key,
         * unless the operator opened it. */
        if (x->kind == RK_METRICS && !c->metrics_open && !peer_on_loopback(x) &&
            !auth_admin(s->auth, authz))
            return unauthorized(x, "/metrics needs the admin key off loopback (Authorization: "
                                   "Bearer <admin key>), or start parrot with --metrics-open.");
        /* With client keys, clients are not trusted to see each other's
         * models and savings: the dashboard takes the admin key (a browser
         * asks for it: type it as the password). */
        if (x->kind == RK_DASHBOARD && auth_has_client_keys(s->auth) &&
            !auth_admin(s->auth, authz)) {
            x->www_basic = true;
            return unauthorized(x, "The dashboard needs the admin key when client keys are on: "
                                   "send Authorization: Bearer <admin key>, or give it as the "
                                   "password when the browser asks.");
        }
        break;
    case RK_ADMIN:
        if (!auth_admin(s->auth, authz)) {
            /* The admin API answers (and logs) a refused call itself; asked
             * here, before the body is read, with no body. */
            struct admin_reply rep;
            struct admin_call ac = {.method = x->method,
                                    .path = req_path(x),
                                    .authorization = authz,
                                    .arg = query_arg,
                                    .arg_ud = x->conn};
            if (admin_handle(&s->admin, &ac, clock_wall_ms(), &rep) != 0) {
                oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory",
                              "Out of memory.");
                return false;
            }
            x->early_reply = rep.body;
            x->early_len = rep.len;
            x->err.status = rep.status;
            return false;
        }
        break;
    case RK_CHAT:
    case RK_EMBED:
    case RK_COMPLETIONS:
    case RK_RESPONSES:
    case RK_V1:
        if (atomic_load(&s->draining)) {
            oai_error_set(&x->err, 503, "upstream_error", NULL, "shutting_down",
                          "parrot is shutting down; retry the request.");
            return false;
        }
        if (auth_has_client_keys(s->auth) && !(x->tenant = auth_client(s->auth, authz)))
            return unauthorized(x, "Missing or unknown API key: send Authorization: Bearer <key> "
                                   "with a client key configured in this parrot.");
        if (x->kind != RK_V1 &&
            oai_check_json_type(
                MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
                &x->err) != 0)
            return false;
        ns = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-parrot-namespace");
        if (ns && !front_namespace_ok(ns)) {
            oai_error_set(&x->err, 400, "invalid_request_error", NULL, "invalid_namespace",
                          "x-parrot-namespace must be 1 to %d letters, digits or "
                          "!#$%%&'*+-.^_`|~ (got '%.80s').",
                          FRONT_NAMESPACE_MAX, ns);
            return false;
        }
        ttl = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-parrot-ttl");
        if (x->kind != RK_V1 && ttl &&
            (!*ttl || strspn(ttl, "0123456789") != strlen(ttl) || strlen(ttl) > 12)) {
            oai_error_set(&x->err, 400, "invalid_request_error", NULL, "invalid_header",
                          "x-parrot-ttl must be a whole number of seconds (got '%.40s').", ttl);
            return false;
        }
        break;
    }
    if (cl && strtoull(cl, NULL, 10) > c->max_body_size) {
        x->too_large = true;
        oai_error_set(&x->err, 413, "invalid_request_error", NULL, "request_too_large",
                      "The request body exceeds the limit of %zu bytes (max-body-size).",
                      c->max_body_size);
        return false;
    }
    return true;
}

enum MHD_Result route_head(struct exch *x, const char *version)
{
    const char *cl =
        MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

    if (!head_ok(x, version)) {
        /* Framing that cannot be trusted: answer now and close, without
         * reading what may be another request. */
        x->close = true;
        return xch_queue_error(x, &x->err);
    }
    if (!admit(x)) {
        x->early = true;
        /* Too much to drain: answer now; the client may see a reset. */
        if (x->close || (cl && strtoull(cl, NULL, 10) > xch_drain_limit(x->srv))) {
            x->close = true;
            return xch_answer_early(x);
        }
    }
    return MHD_YES;
}

enum MHD_Result route_woken(struct exch *x, enum xstate st)
{
    struct server *s = x->srv;

    if (st == XS_RETRY)
        return chat_relookup(s->chat, x->chat, clock_wall_ms()) == CHAT_HIT
                   ? serve_hit(x)
                   : xch_forward(x, x->uri + 3);
    if (st == XS_PEER_END)
        return chat_shared_verdict(s->chat, x->chat, clock_wall_ms()) == CHAT_HIT
                   ? serve_hit(x)
                   : xch_forward(x, x->uri + 3);
    return cached_verdict(x, chat_lookup(s->chat, x->chat, clock_wall_ms()));
}
