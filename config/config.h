/* config.h - parrot's one option table.
 *
 * Every option is declared once, in the table in config.c, with its type,
 * default, environment name and help text. Values are layered:
 *     defaults < config file (--config FILE) < environment (PARROT_*) < flags
 * and every value remembers which layer set it (--print-config shows it).
 * In the file, '#' starts a comment at the start of a line or of a value,
 * or after a blank; double quotes keep a value's blanks and '#'s.
 * Secrets (the upstream key, client keys, the admin key) are accepted from the file and the
 * environment only, never from flags, so they do not show up in `ps`.
 *
 * Not thread-safe: load once in main() before any thread starts; afterwards
 * the struct is read-only and may be shared by all threads.
 */
#ifndef PARROT_CONFIG_H
#define PARROT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

enum cfg_source { CFG_SRC_DEFAULT, CFG_SRC_FILE, CFG_SRC_ENV, CFG_SRC_FLAG };

enum cfg_action { CFG_RUN, CFG_HELP, CFG_PRINT, CFG_VERSION };

/* Error codes returned by the loaders. */
#define CFG_EINVAL (-22)
#define CFG_EIO    (-5)

#define CFG_MAX_OPTIONS   64
#define CFG_MAX_UPSTREAMS 32
#define CFG_MAX_PRICES    64

/* One model's price from the price table, in USD per million tokens times
 * 10^6: that is picodollars per token, so sums stay exact integers. */
struct cfg_price {
    char model[64];
    unsigned long long input_pusd, output_pusd;
};

/* One provider from the upstream list. */
struct cfg_upstream {
    char url[512];
    unsigned weight;  /* 1..1000 */
    char key_env[64]; /* environment variable holding its API key, or "" */
};

/* A parsed redis option: redis://[user@]host:port[/db]. */
struct cfg_redis {
    char host[256];
    int port;
    char user[128]; /* "" : the default user */
    int db;
};

struct cfg {
    char *listen;                /* "host:port", "[v6]:port" */
    char *upstream;              /* provider list: URL[;weight=N][;key-env=VAR],... */
    char *upstream_key;          /* secret; NULL when the client's key passes through */
    char *data_dir;              /* where the WAL and snapshots live */
    size_t max_body_size;        /* bytes; larger request bodies get 413 */
    size_t header_buffer;        /* bytes of libmicrohttpd's pool per connection */
    long connect_timeout_ms;     /* TCP+TLS connect to the upstream */
    long upstream_timeout_ms;    /* whole upstream exchange */
    long idle_timeout_ms;        /* longest silence from the upstream mid-response */
    long first_byte_timeout_ms;  /* until response headers, per attempt; 0 = off */
    int retries;                 /* extra attempts after a retryable failure */
    long retry_max_delay_ms;     /* cap on backoff and Retry-After */
    int breaker_failures;        /* consecutive failures that open a breaker */
    long breaker_cooldown_ms;    /* open time before a half-open probe */
    bool upstream_http2;         /* HTTP/2 to https providers */
    long client_timeout_ms;      /* idle client connection */
    long header_timeout_ms;      /* whole request head; then a minimum body rate */
    long shutdown_timeout_ms;    /* how long SIGTERM waits for in-flight requests */
    int log_level;               /* enum log_level in proxy/log.h */
    int threads;                 /* HTTP worker threads; 0 = one per CPU */
    int max_connections;         /* concurrent client connections */
    bool insecure_open;          /* allow a non-loopback listen address */
    bool cache;                  /* serve from and store into the cache */
    long cache_ttl_ms;           /* default entry lifetime; 0 = until evicted */
    int store_queue;             /* answers waiting for the store thread, at most */
    size_t cache_max_memory;     /* bytes before eviction */
    double similarity_threshold; /* 0 = the embedder's default */
    bool persist;                /* write-ahead log under data_dir */
    char *wal_fsync;             /* always | batch | everysec | off */
    long snapshot_interval_ms;   /* timed snapshots; 0 = off */
    size_t snapshot_wal_size;    /* log bytes that trigger a snapshot; 0 = off */
    bool snapshot_on_shutdown;   /* snapshot on SIGTERM */
    int rate_limit_rpm;          /* per client; 0 = off */
    int rate_limit_tpm;          /* per client; 0 = off */
    bool verifier;               /* run the hit verifier on semantic candidates */
    double audit_rate;           /* share of semantic hits audited, 0..1 */
    int audit_max_inflight;      /* audits at once */
    double max_wrong_hit_rate;   /* the error budget, 0..1 */
    char *prices;                /* MODEL=IN/OUT,... USD per 1M tokens, or NULL */
    bool log_prompts;            /* put the lookup text in the request log line */
    char *word_vectors;          /* the built-in embedder's word-vector table, or NULL */
    char *wordnet;               /* the hit verifier's WordNet table, or NULL */
    char *tenant_header;         /* tenant from this header, or NULL */
    char *shared_tenant;         /* one scope for all clients, or NULL */
    char *client_keys_file;      /* "KEY TENANT" lines, or NULL */
    char *client_keys;           /* secret: "KEY TENANT" entries, or NULL */
    char *admin_key;             /* secret: enables the admin API, or NULL */
    bool metrics_open;           /* /metrics without the admin key off loopback */
    bool admin_show_prompts;     /* /admin/entries may show lookup texts */
    char *embedder;              /* builtin | openai */
    char *embed_url;             /* embeddings base URL including /v1, or NULL */
    char *embed_model;           /* model asked for embeddings */
    char *embed_key;             /* secret; NULL: no Authorization sent */
    long embed_timeout_ms;       /* per lookup text, queueing included */
    int embed_dim;               /* 0 = learn from the endpoint at start-up */
    int embed_batch;             /* most texts per embeddings call */
    char *redis;                 /* redis://[user@]host:port[/db], or NULL: no sharing */
    char *redis_password;        /* secret; NULL: no AUTH */
    char *redis_namespace;       /* replicas with the same Redis and namespace share */
    int redis_queue;             /* changes waiting for Redis, at most */
    int redis_stream_maxlen;     /* changes the stream keeps, about */
    long redis_stream_age_ms;    /* and for about this long */
    long redis_flight_wait_ms;   /* a miss waits this long for another replica's answer */
    char *config_file;           /* the file that was loaded, or NULL */
    enum cfg_source source[CFG_MAX_OPTIONS];
};

/* Fill *c with the defaults. Returns 0, or CFG_EINVAL if a built-in default
 * does not parse (a programming error). cfg_fini() releases it. */
int cfg_init(struct cfg *c);

/* Release the strings owned by *c. Safe on a zeroed struct. */
void cfg_fini(struct cfg *c);

/* How many words of argv the flag arg takes, next being the word after it
 * (NULL: none): 2 when it takes next as its value, else 1 (also for a word
 * that is not a known flag). For commands that mix options and file names
 * (parrot replay). */
int cfg_flag_arity(const char *arg, const char *next);

/* Apply the config file, the environment and the command line on top of the
 * defaults already in *c. envp is a NULL-terminated "NAME=value" array.
 * On success returns 0 and sets *action. On failure returns CFG_EINVAL (bad
 * usage or value, a bad combination of options, or a config file that holds
 * a secret and is not private to its owner) or CFG_EIO (unreadable file)
 * with a one-line reason that names the offending key in err. */
int cfg_load(struct cfg *c, int argc, char **argv, char **envp, enum cfg_action *action, char *err,
             size_t errlen);

/* Set option `name` (its long-flag spelling, e.g. "max-body-size") from text.
 * Returns 0 or CFG_EINVAL with a reason in err. */
int cfg_set(struct cfg *c, const char *name, const char *value, enum cfg_source src, char *err,
            size_t errlen);

/* Print the configuration as a config file that cfg_load reads back:
 * "name = value  # source" for every option. Secret options and URLs with
 * credentials in them are printed masked and commented out. */
void cfg_print(const struct cfg *c, FILE *out);

/* parrot's version ("0.5.0", from config/version.h), and the git revision
 * the build was made from ("" unless built with -DPARROT_GIT_REV=...).
 * Static strings; any thread. */
const char *cfg_version(void);
const char *cfg_git_rev(void);

/* "parrot 0.5.0" (with the revision when known), for --version. */
void cfg_print_version(FILE *out);

/* Copy s to out (outlen bytes, always NUL-terminated, truncated to fit) with
 * the userinfo of every URL in it ("https://USER:PASS@host/...") replaced by
 * "***", so that a URL or a provider list can be logged or printed. out may
 * be NULL (outlen 0) to only ask. Returns true if s holds any userinfo. */
bool cfg_url_redact(const char *s, char *out, size_t outlen);

/* cfg_url_redact() into a new string that always has room; free() it.
 * NULL when out of memory. */
char *cfg_url_redact_dup(const char *s);

/* Print usage with every option, its environment name and its default. */
void cfg_usage(FILE *out, const char *argv0);

/* Parsers shared with other modules and the tests. Each returns 0 or
 * CFG_EINVAL and leaves the output untouched on failure. */
int cfg_parse_size(const char *s, size_t *out);      /* "512", "64k", "32m", "1g" */
int cfg_parse_duration(const char *s, long *out_ms); /* "250ms", "10s", "5m", "1h", "30" (= s) */
int cfg_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Parse the upstream list ("URL[;weight=N][;key-env=VAR]", comma-separated)
 * into out[0..max). Returns 0 with *n set, or CFG_EINVAL with a reason. */
int cfg_parse_upstreams(const char *spec, struct cfg_upstream *out, size_t max, size_t *n,
                        char *err, size_t errlen);

/* Parse the price table ("MODEL=IN/OUT", comma-separated, USD per million
 * input / output tokens, at most 6 decimals) into out[0..max). Returns 0
 * with *n set (0 for an empty spec), or CFG_EINVAL with a reason. */
int cfg_parse_prices(const char *spec, struct cfg_price *out, size_t max, size_t *n, char *err,
                     size_t errlen);

/* Parse the redis option. Returns 0, or CFG_EINVAL with a reason (rediss://
 * and a password in the URL are refused, see docs/scale-out.md). */
int cfg_parse_redis(const char *url, struct cfg_redis *out, char *err, size_t errlen);

/* True when the address is 127.0.0.0/8, ::1 or 127.0.0.0/8 mapped into IPv6. */
bool cfg_addr_is_loopback(const struct sockaddr_storage *ss);

#endif
