/* main.c - the composition root: start-up, signals and graceful shutdown.
 *
 * main() runs four steps: validate() (the configuration), start() (the data
 * directory's lock, the upstream pool, the cache, the server), run() (until
 * a signal) and shut_down() (everything in reverse). It is the one place
 * that builds these parts and hands each the others it needs.
 *
 * Threads: start() blocks SIGTERM/SIGINT before any thread starts, so every
 * thread inherits the mask and run() takes the signals with sigwaitinfo.
 * Shutdown: stop accepting, let in-flight requests finish until
 * shutdown-timeout, then cancel what is left and exit 0.
 */
#include "cache/cache.h"
#include "cache/replica/replica.h"
#include "config/config.h"
#include "proxy/assemble.h"
#include "proxy/log.h"
#include "proxy/replay.h"
#include "proxy/server.h"
#include "upstream/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Each connection needs a descriptor towards the client and one towards
 * the provider; the default soft limit of 1024 would cap us near 500. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Creates the data directory (one level) and checks that it is writable. */
static int prepare_data_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create data-dir %s: %s", dir, strerror(errno));
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "data-dir %s is not writable: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* The provider list from the config. A provider's key comes from the
 * environment variable its key-env names, else from upstream-key, else the
 * client's own Authorization passes through. */
static int providers_from(const struct cfg *c, struct up_provider_opts *out, size_t *n, char *err,
                          size_t errlen)
{
    static struct cfg_upstream us[CFG_MAX_UPSTREAMS];

    if (cfg_parse_upstreams(c->upstream, us, CFG_MAX_UPSTREAMS, n, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < *n; i++) {
        out[i].base_url = us[i].url;
        out[i].weight = us[i].weight;
        out[i].key = c->upstream_key;
        if (us[i].key_env[0]) {
            out[i].key = getenv(us[i].key_env);
            if (!out[i].key || !*out[i].key) {
                char shown[sizeof(us[i].url)];
                cfg_url_redact(us[i].url, shown, sizeof(shown));
                snprintf(err, errlen, "upstream %.300s: key-env %s is not set", shown,
                         us[i].key_env);
                return -1;
            }
        }
    }
    return 0;
}

static int wait_for_signal(const sigset_t *set)
{
    for (;;) {
        int sig = sigwaitinfo(set, NULL);
        if (sig > 0)
            return sig;
    }
}

/* parrot wal check|repair [--data-dir DIR] [--config FILE]: inspect the
 * write-ahead log and the snapshot, or repair the log, without starting the
 * server. Exits 0 when everything checked out (or was repaired), 1 when
 * something is damaged or missing, 2 on bad usage. */
static int cmd_wal(int argc, char **argv)
{
    struct cfg cfg;
    enum cfg_action action;
    struct datadir_lock *lock = NULL;
    struct stat st;
    bool check;
    char err[512];
    int rc;

    if (argc < 3 || (strcmp(argv[2], "check") != 0 && strcmp(argv[2], "repair") != 0)) {
        fprintf(stderr, "usage: %s wal check|repair [--data-dir DIR] [--config FILE]\n", argv[0]);
        return 2;
    }
    check = strcmp(argv[2], "check") == 0;
    if (cfg_init(&cfg) != 0)
        return 1;
    if (cfg_load(&cfg, argc - 2, argv + 2, environ, &action, err, sizeof(err)) != 0) {
        fprintf(stderr, "parrot: %s\n", err);
        cfg_fini(&cfg);
        return 2;
    }
    /* A mistyped directory must not read as "no WAL yet, all is well".
     * errno stays ENOTDIR when stat succeeds on something else. */
    errno = ENOTDIR;
    if (stat(cfg.data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "parrot: data-dir %s: %s\n", cfg.data_dir, strerror(errno));
        cfg_fini(&cfg);
        return 1;
    }
    /* A repair rewrites the file a running parrot appends to: hold the
     * directory's lock for the whole repair, as a server does. */
    if (!check && datadir_lock(cfg.data_dir, &lock, err, sizeof(err)) != 0) {
        fprintf(stderr, "parrot: refusing to repair: %s\n", err);
        cfg_fini(&cfg);
        return 1;
    }
    rc = check ? cache_wal_check(cfg.data_dir, stdout) : cache_wal_repair(cfg.data_dir, stdout);
    datadir_unlock(lock);
    cfg_fini(&cfg);
    return rc == 0 ? 0 : 1;
}

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The cache as c describes it, loaded from the data directory when it
 * persists (its lock is taken already). Prints why it cannot start. */
static int open_cache(const struct cfg *c, struct cache **out)
{
    char msg[1200];
    struct log_rec lr;
    int rc = assemble_cache(c, out);

    if (rc != 0) {
        fprintf(stderr, "parrot: cannot set up the cache (%s)\n",
                rc == -ENOMEM ? "out of memory" : "see the error logged above");
        return rc;
    }
    if (!c->persist)
        return 0;
    if ((rc = cache_open(*out, c->data_dir, c->wal_fsync, wall_ms(), msg, sizeof(msg))) != 0) {
        fprintf(stderr, "parrot: %s\n", msg);
        cache_free(*out);
        *out = NULL;
        return rc;
    }
    log_begin(&lr, LOG_INFO, "cache loaded");
    log_str(&lr, "detail", msg);
    log_end(&lr);
    return 0;
}

/* What main() builds, in the order it builds it; shut_down() takes it
 * apart in reverse. Owned by the main thread; the server, the pool and the
 * cache get what they need from it and own their threads. */
struct parrot {
    struct cfg cfg;
    bool cfg_set; /* cfg_init succeeded: cfg needs cfg_fini */
    struct up_provider_opts provs[CFG_MAX_UPSTREAMS];
    size_t nprov;
    bool client_keys;
    struct datadir_lock *lock;
    sigset_t sigs;
    bool curl; /* curl_global_init succeeded */
    struct up_pool *pool;
    struct cache *cache;
    struct replica *rep;
    struct server *srv;
};

/* validate() returns this when the server is to start. */
#define GO (-1)

/* Load the configuration and refuse what must not start: an exposed port
 * without client keys, a provider without a key it needs. Returns GO, or
 * the exit status (0 for --help, --print-config and --version; 2 for a
 * configuration error; 1 when the defaults do not parse). */
static int validate(struct parrot *p, int argc, char **argv)
{
    enum cfg_action action;
    struct sockaddr_storage ss;
    socklen_t sl;
    char err[512];

    if (cfg_init(&p->cfg) != 0) {
        fprintf(stderr, "parrot: built-in defaults do not parse\n");
        return 1;
    }
    p->cfg_set = true;
    if (cfg_load(&p->cfg, argc, argv, environ, &action, err, sizeof(err)) != 0) {
        fprintf(stderr, "parrot: %s\n", err);
        return 2;
    }
    if (action == CFG_HELP) {
        cfg_usage(stdout, argv[0]);
        return 0;
    }
    if (action == CFG_PRINT) {
        cfg_print(&p->cfg, stdout);
        return 0;
    }
    if (action == CFG_VERSION) {
        cfg_print_version(stdout);
        return 0;
    }
    log_set_level((enum log_level)p->cfg.log_level);
    cfg_parse_addr(p->cfg.listen, &ss, &sl);
    p->client_keys = p->cfg.client_keys_file || p->cfg.client_keys;
    if (!cfg_addr_is_loopback(&ss) && !p->client_keys && !p->cfg.insecure_open) {
        fprintf(stderr,
                "parrot: refusing to listen on %s, which is not a loopback address: anyone "
                "who can reach it could spend your provider credits. Bind 127.0.0.1, configure "
                "client keys (client-keys-file), or pass --insecure-open if a firewall or "
                "network policy protects this port.\n",
                p->cfg.listen);
        return 2;
    }
    if (providers_from(&p->cfg, p->provs, &p->nprov, err, sizeof(err)) != 0) {
        fprintf(stderr, "parrot: %s\n", err);
        return 2;
    }
    for (size_t i = 0; p->client_keys && i < p->nprov; i++) {
        /* A client's Authorization then carries its parrot key, which must
         * never reach a provider: each provider needs its own key. */
        if (!p->provs[i].key) {
            char shown[512];
            cfg_url_redact(p->provs[i].base_url, shown, sizeof(shown));
            fprintf(stderr,
                    "parrot: client keys are configured, so parrot does not forward the "
                    "client's key; upstream %s needs a provider key (set PARROT_UPSTREAM_KEY, "
                    "upstream-key in the config file, or ;key-env=VAR on the upstream)\n",
                    shown);
            return 2;
        }
    }
    return GO;
}

/* Take the data directory, block the signals (before any thread starts, so
 * that every thread inherits the mask), then build the upstream pool, the
 * cache and the server, and say where it listens. Returns 0, or 1 with the
 * reason printed; shut_down() frees whatever was built either way. */
static int start(struct parrot *p)
{
    struct cfg *c = &p->cfg;
    struct up_pool_opts uo;
    struct log_rec r;
    char err[512];
    char *upstream_shown;

    if (prepare_data_dir(c->data_dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "parrot: %s\n", err);
        return 1;
    }
    /* Only the log and its snapshots write to the directory: without them,
     * several instances may share one harmlessly. */
    if (c->cache && c->persist && datadir_lock(c->data_dir, &p->lock, err, sizeof(err)) != 0) {
        fprintf(stderr, "parrot: %s\n", err);
        return 1;
    }

    sigemptyset(&p->sigs);
    sigaddset(&p->sigs, SIGTERM);
    sigaddset(&p->sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &p->sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "parrot: curl_global_init failed\n");
        return 1;
    }
    p->curl = true;

    uo = (struct up_pool_opts){.providers = p->provs,
                               .nproviders = p->nprov,
                               .connect_timeout_ms = c->connect_timeout_ms,
                               .first_byte_timeout_ms = c->first_byte_timeout_ms,
                               .timeout_ms = c->upstream_timeout_ms,
                               .idle_timeout_ms = c->idle_timeout_ms,
                               .retries = (unsigned)c->retries,
                               .retry_max_delay_ms = c->retry_max_delay_ms,
                               .breaker_failures = (unsigned)c->breaker_failures,
                               .breaker_cooldown_ms = c->breaker_cooldown_ms,
                               .http2 = c->upstream_http2};
    if (up_pool_new(&uo, &p->pool) != 0) {
        fprintf(stderr, "parrot: cannot start the upstream pool\n");
        return 1;
    }
    if (c->cache && open_cache(c, &p->cache) != 0)
        return 1;
    if (p->cache && c->redis && assemble_replica(c, p->cache, &p->rep) != 0) {
        fprintf(stderr, "parrot: cannot start sharing the cache through Redis\n");
        return 1;
    }
    if (server_start(c, p->pool, p->cache, p->rep, &p->srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "parrot: %s\n", err);
        return 1;
    }
    /* The provider list may carry credentials ("https://user:pass@host"). */
    upstream_shown = cfg_url_redact_dup(c->upstream);
    log_begin(&r, LOG_INFO, "listening");
    log_str(&r, "addr", server_addr(p->srv));
    log_str(&r, "version", cfg_version());
    if (*cfg_git_rev())
        log_str(&r, "git_rev", cfg_git_rev());
    log_str(&r, "upstream", upstream_shown ? upstream_shown : "***");
    log_int(&r, "providers", (long long)p->nprov);
    log_str(&r, "data_dir", c->data_dir);
    log_bool(&r, "upstream_key", c->upstream_key != NULL);
    log_bool(&r, "client_keys", p->client_keys);
    log_bool(&r, "admin_api", c->admin_key != NULL);
    if (p->rep) {
        /* The URL holds no password (cfg_parse_redis refuses one). */
        log_str(&r, "redis", c->redis);
        log_str(&r, "redis_namespace", c->redis_namespace);
    }
    log_end(&r);
    free(upstream_shown);
    return 0;
}

/* Serve until SIGTERM or SIGINT, then stop accepting, let in-flight
 * requests finish until shutdown-timeout and cancel what is left. */
static void run(struct parrot *p)
{
    struct log_rec r;
    long deadline;
    int sig;

    sig = wait_for_signal(&p->sigs);
    log_begin(&r, LOG_INFO, "shutting down");
    log_str(&r, "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    log_int(&r, "inflight", (long long)server_inflight(p->srv));
    log_end(&r);
    server_drain(p->srv);
    /* A request waiting for another replica's answer goes on alone now,
     * and none waits from here on: the server must not stop under one. */
    replica_flight_release(p->rep);
    deadline = now_ms() + p->cfg.shutdown_timeout_ms;
    while (server_inflight(p->srv) > 0 && now_ms() < deadline)
        usleep(10 * 1000);
    if (server_inflight(p->srv) > 0) {
        log_begin(&r, LOG_WARN, "shutdown deadline passed; cancelling requests");
        log_int(&r, "inflight", (long long)server_inflight(p->srv));
        log_end(&r);
    }
    /* Cancelling resumes the connections still waiting on the provider so
     * that they get an answer before the daemon closes them. */
    up_pool_shutdown(p->pool);
    deadline = now_ms() + 1000;
    while (server_inflight(p->srv) > 0 && now_ms() < deadline)
        usleep(10 * 1000);
}

/* Free what start() built, in reverse, and return rc, the exit status;
 * "stopped" is logged only after a clean run. */
static int shut_down(struct parrot *p, int rc)
{
    server_stop(p->srv);
    /* Before the cache: no change may reach the hook of a freed replica,
     * and what is queued is written while the cache still logs. */
    replica_stop(p->rep);
    cache_free(p->cache); /* the shutdown snapshot; the log flushed and closed */
    up_pool_free(p->pool);
    if (p->curl)
        curl_global_cleanup();
    if (rc == 0 && p->srv)
        log_msg(LOG_INFO, "stopped", NULL);
    /* After cache_free: the log is closed and flushed before another
     * process may take the directory. */
    datadir_unlock(p->lock);
    if (p->cfg_set)
        cfg_fini(&p->cfg);
    return rc;
}

/* glibc's per-thread cache of freed chunks holds 7 of each size. Storing
 * an answer takes about 140 allocations (its JSON parsed, its forms
 * rendered) and a forwarded request about 90, many of one size: past the
 * 7th each goes to the arena's slow path, and a large one in between (an
 * embedding, a print buffer) consolidates the fast bins, so that the next
 * small ones are split from free chunks again. On real misses malloc was
 * 22% of parrot's CPU, and 64 per size carried 30% more of them (docs/
 * bench.md). That size is a tunable read only when a program starts, so
 * the server starts itself again, once, with it added to GLIBC_TUNABLES
 * (same pid, arguments and environment). An operator's GLIBC_TUNABLES that
 * names tcache_count is left as it is (=7 restores glibc's default), and
 * if the exec fails parrot goes on without it; so does a set-user-ID run,
 * whose loader would drop the tunable (and the exec would repeat), and a
 * run with LD_PRELOAD set: the allocator may not be glibc's then, and the
 * tools that preload themselves (valgrind, heap profilers) would not follow
 * the exec. The cost is memory a thread keeps for reuse: about 2 MiB at
 * most, were every size to fill up. */
#define TCACHE_TUNABLE "glibc.malloc.tcache_count"
#define TCACHE_COUNT   "64"

static void tune_malloc(char **argv)
{
#ifdef __GLIBC__
    const char *cur = getenv("GLIBC_TUNABLES"), *preload = getenv("LD_PRELOAD");
    char *old = cur ? strdup(cur) : NULL, *v = NULL;

    if (getauxval(AT_SECURE) || (preload && *preload) || (cur && !old) ||
        (old && strstr(old, TCACHE_TUNABLE))) {
        free(old);
        return;
    }
    if (asprintf(&v, "%s%s" TCACHE_TUNABLE "=" TCACHE_COUNT, old ? old : "",
                 old && *old ? ":" : "") < 0)
        v = NULL; /* undefined after a failure */
    else if (setenv("GLIBC_TUNABLES", v, 1) == 0)
        execv("/proc/self/exe", argv);
    /* Still here: run with glibc's default, and the environment as it was. */
    if (old)
        setenv("GLIBC_TUNABLES", old, 1);
    else
        unsetenv("GLIBC_TUNABLES");
    free(old);
    free(v);
#else
    (void)argv;
#endif
}

/* The exec above names the process after the file it ran: "exe". ps, top,
 * pgrep and the bench's thread tables go by that name, so it gets argv[0]'s
 * back (the threads started later inherit it). */
static void restore_name(const char *argv0)
{
    char name[16] = {0};
    const char *base = strrchr(argv0, '/');

    base = base ? base + 1 : argv0;
    if (prctl(PR_GET_NAME, name) == 0 && strcmp(name, "exe") == 0 && *base)
        prctl(PR_SET_NAME, base);
}

/* The composition root: `parrot wal ...` is a command of its own; else
 * validate the configuration, start, run until a signal, shut down. */
int main(int argc, char **argv)
{
    static struct parrot p; /* static: large, and zeroed */
    int rc;

    if (argc >= 2 && strcmp(argv[1], "wal") == 0)
        return cmd_wal(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "replay") == 0)
        return replay_main(argc, argv, environ);
    tune_malloc(argv);
    restore_name(argv[0]);
    rc = validate(&p, argc, argv);
    if (rc == GO) {
        rc = start(&p);
        if (rc == 0)
            run(&p);
    }
    return shut_down(&p, rc);
}
