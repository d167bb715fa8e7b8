/* Unit tests for config/: parsers, precedence, validation, masking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_parse_size(void **state)
{
    size_t v = 7;

    (void)state;
    assert_int_equal(cfg_parse_size("4096", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(cfg_parse_size("64k", &v), 0);
    assert_int_equal(v, 64 * 1024);
    assert_int_equal(cfg_parse_size("32M", &v), 0);
    assert_int_equal(v, 32u << 20);
    assert_int_equal(cfg_parse_size("1gb", &v), 0);
    assert_int_equal(v, 1u << 30);
    v = 7;
    assert_int_equal(cfg_parse_size("abc", &v), CFG_EINVAL);
    assert_int_equal(cfg_parse_size("-1", &v), CFG_EINVAL);
    assert_int_equal(cfg_parse_size("12q", &v), CFG_EINVAL);
    assert_int_equal(cfg_parse_size("", &v), CFG_EINVAL);
    assert_int_equal(cfg_parse_size("99999999999999999999g", &v), CFG_EINVAL);
    assert_int_equal(v, 7); /* untouched on failure */
}

static void test_parse_duration(void **state)
{
    long ms = -1;

    (void)state;
    assert_int_equal(cfg_parse_duration("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(cfg_parse_duration("10s", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(cfg_parse_duration("30", &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(cfg_parse_duration("5m", &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(cfg_parse_duration("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(cfg_parse_duration("1d", &ms), CFG_EINVAL);
    assert_int_equal(cfg_parse_duration("s", &ms), CFG_EINVAL);
    assert_int_equal(cfg_parse_duration("-5s", &ms), CFG_EINVAL);
}

static void test_parse_addr(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;

    (void)state;
    assert_int_equal(cfg_parse_addr("127.0.0.1:8080", &ss, &len), 0);
    assert_true(cfg_addr_is_loopback(&ss));
    assert_int_equal(cfg_parse_addr("[::1]:0", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_true(cfg_addr_is_loopback(&ss));
    assert_int_equal(cfg_parse_addr(":9000", &ss, &len), 0);
    assert_false(cfg_addr_is_loopback(&ss));
    assert_int_equal(cfg_parse_addr("localhost:1", &ss, &len), 0);
    assert_true(cfg_addr_is_loopback(&ss));
    assert_int_equal(cfg_parse_addr("10.1.2.3:80", &ss, &len), 0);
    assert_false(cfg_addr_is_loopback(&ss));
    assert_int_equal(cfg_parse_addr("127.0.0.1", &ss, &len), CFG_EINVAL);
    assert_int_equal(cfg_parse_addr("127.0.0.1:70000", &ss, &len), CFG_EINVAL);
    assert_int_equal(cfg_parse_addr("example.com:80", &ss, &len), CFG_EINVAL);
    assert_int_equal(cfg_parse_addr("[::1:80", &ss, &len), CFG_EINVAL);
    assert_int_equal(cfg_parse_addr("1.2.3.4:", &ss, &len), CFG_EINVAL);
}

static void test_defaults(void **state)
{
    struct cfg c;

    (void)state;
    assert_int_equal(cfg_init(&c), 0);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.upstream, "https://api.openai.com/v1");
    assert_null(c.upstream_key);
    assert_int_equal(c.max_body_size, 32u << 20);
    assert_int_equal(c.header_buffer, 16u << 10);
    assert_int_equal(c.source[0], CFG_SRC_DEFAULT);
    cfg_fini(&c);
}

static char *write_file(const char *text)
{
    static char path[64];
    int fd;

    strcpy(path, "/tmp/parrot-cfg-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* One value from each layer: the flag beats env beats the file. */
static void test_precedence(void **state)
{
    struct cfg c;
    enum cfg_action act;
    char err[256];
    char *path = write_file("# comment\nlisten = 127.0.0.1:1111\nlog-level = debug\n"
                            "threads = 3\nupstream-key = \"sk-from-file\"\n");
    char *argv[] = {"parrot", "--config", path, "--listen=127.0.0.1:3333", NULL};
    char *envp[] = {"PARROT_LISTEN=127.0.0.1:2222", "PARROT_THREADS=5", "HOME=/root", NULL};

    (void)state;
    assert_int_equal(cfg_init(&c), 0);
    assert_int_equal(cfg_load(&c, 4, argv, envp, &act, err, sizeof(err)), 0);
    assert_int_equal(act, CFG_RUN);
    assert_string_equal(c.listen, "127.0.0.1:3333");
    assert_int_equal(c.threads, 5);
    assert_int_equal(c.log_level, 0);
    assert_string_equal(c.upstream_key, "sk-from-file");
    assert_int_equal(c.source[0], CFG_SRC_FLAG);
    unlink(path);
    cfg_fini(&c);
}

static void expect_load_error(char **argv, int argc, char **envp, const char *needle)
{
    struct cfg c;
    enum cfg_action act;
    char err[256] = "";

    assert_int_equal(cfg_init(&c), 0);
    assert_int_not_equal(cfg_load(&c, argc, argv, envp, &act, err, sizeof(err)), 0);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
    cfg_fini(&c);
}

static void test_errors(void **state)
{
    char *env_none[] = {NULL};
    char *a1[] = {"parrot", "--no-such-thing", "1"};
    char *a2[] = {"parrot", "--max-body-size", "abc"};
    char *a3[] = {"parrot", "--listen"};
    char *a4[] = {"parrot", "--upstream", "ftp://x"};
    char *a5[] = {"parrot", "--upstream-key", "sk-secret"};
    char *a6[] = {"parrot", "--threads", "100000"};
    char *a7[] = {"parrot", "stray"};
    char *env_bad[] = {"PARROT_UPSTREAM_URL=http://x", NULL};
    char *file = write_file("listen = 127.0.0.1:1\nnot-an-option = 1\n");
    char *a8[] = {"parrot", "--config", file};

    (void)state;
    expect_load_error(a1, 3, env_none, "no-such-thing");
    expect_load_error(a2, 3, env_none, "max-body-size");
    expect_load_error(a3, 2, env_none, "listen");
    expect_load_error(a4, 3, env_none, "upstream");
    expect_load_error(a5, 3, env_none, "PARROT_UPSTREAM_KEY");
    expect_load_error(a6, 3, env_none, "threads");
    expect_load_error(a7, 2, env_none, "stray");
    expect_load_error(a1, 1, env_bad, "PARROT_UPSTREAM_URL");
    expect_load_error(a8, 3, env_none, ":2: unknown option 'not-an-option'");
    unlink(file);
}

static void test_print_masks_secret(void **state)
{
    struct cfg c;
    char err[128], buf[4096] = "";
    FILE *f;
    size_t n;

    (void)state;
    assert_int_equal(cfg_init(&c), 0);
    assert_int_equal(cfg_set(&c, "upstream-key", "sk-very-secret", CFG_SRC_ENV, err, sizeof(err)),
                     0);
    f = tmpfile();
    cfg_print(&c, f);
    rewind(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_null(strstr(buf, "sk-very-secret"));
    assert_non_null(strstr(buf, "\n# upstream-key = ********  # env"));
    assert_non_null(strstr(buf, "\nlisten = 127.0.0.1:8080  # default\n"));
    cfg_fini(&c);
}

static void test_actions(void **state)
{
    struct cfg c;
    enum cfg_action act;
    char err[128];
    char *envp[] = {NULL};
    char *a1[] = {"parrot", "--help"};
    char *a2[] = {"parrot", "--print-config", "--insecure-open", "--cache", "false"};

    (void)state;
    assert_int_equal(cfg_init(&c), 0);
    assert_int_equal(cfg_load(&c, 2, a1, envp, &act, err, sizeof(err)), 0);
    assert_int_equal(act, CFG_HELP);
    assert_int_equal(cfg_load(&c, 5, a2, envp, &act, err, sizeof(err)), 0);
    assert_int_equal(act, CFG_PRINT);
    assert_true(c.insecure_open);
    assert_false(c.cache);
    cfg_fini(&c);
}

static void test_parse_prices(void **state)
{
    struct cfg_price p[3];
    size_t n = 9;
    char err[256];

    (void)state;
    assert_int_equal(cfg_parse_prices(" gpt-4o-mini=0.15/0.60 , openai/gpt-4o=2.5/10,", p, 3, &n,
                                      err, sizeof(err)),
                     0);
    assert_int_equal(n, 2);
    assert_string_equal(p[0].model, "gpt-4o-mini");
    assert_int_equal(p[0].input_pusd, 150000);
    assert_int_equal(p[0].output_pusd, 600000);
    assert_string_equal(p[1].model, "openai/gpt-4o");
    assert_int_equal(p[1].input_pusd, 2500000);
    assert_int_equal(p[1].output_pusd, 10000000);
    assert_int_equal(cfg_parse_prices("m=0.000001/1000000", p, 3, &n, err, sizeof(err)), 0);
    assert_int_equal(p[0].input_pusd, 1);
    assert_int_equal(p[0].output_pusd, 1000000000000ULL);
    assert_int_equal(cfg_parse_prices("", p, 3, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);

    static const char *const bad[] = {
        "gpt",    "=1/2",          "m=1",       "m=1/",    "m=/2",        "m=-1/2",
        "m=1/2x", "m=0.0000001/1", "m=1.2.3/1", "a b=1/2", "m=1000001/1", "a=1/1,b=1/1,c=1/1,d=1/1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(cfg_parse_prices(bad[i], p, 3, &n, err, sizeof(err)), CFG_EINVAL);
        assert_true(strlen(err) > 0);
    }

    /* Through the option table: validated, and unset by default. */
    struct cfg c;
    assert_int_equal(cfg_init(&c), 0);
    assert_null(c.prices);
    assert_false(c.log_prompts);
    assert_int_equal(cfg_set(&c, "prices", "gpt-4o=2.5/10", CFG_SRC_FLAG, err, sizeof(err)), 0);
    assert_string_equal(c.prices, "gpt-4o=2.5/10");
    assert_int_equal(cfg_set(&c, "prices", "gpt-4o=cheap", CFG_SRC_FLAG, err, sizeof(err)),
                     CFG_EINVAL);
    assert_non_null(strstr(err, "gpt-4o=cheap"));
    assert_string_equal(c.prices, "gpt-4o=2.5/10");
    cfg_fini(&c);
}

static void test_parse_redis(void **state)
{
    struct cfg_redis r;
    char err[256];

    (void)state;
    assert_int_equal(cfg_parse_redis("redis://10.0.0.5:6380/2", &r, err, sizeof(err)), 0);
    assert_string_equal(r.host, "10.0.0.5");
    assert_int_equal(r.port, 6380);
    assert_int_equal(r.db, 2);
    assert_string_equal(r.user, "");
    assert_int_equal(cfg_parse_redis("redis://parrot@redis.svc:6379", &r, err, sizeof(err)), 0);
    assert_string_equal(r.user, "parrot");
    assert_string_equal(r.host, "redis.svc");
    assert_int_equal(r.db, 0);
    /* No TLS in Debian's hiredis: said plainly. */
    assert_int_equal(cfg_parse_redis("rediss://h:6379", &r, err, sizeof(err)), CFG_EINVAL);
    assert_non_null(strstr(err, "TLS"));
    /* A password in the URL is refused, and not repeated in the reason. */
    assert_int_equal(cfg_parse_redis("redis://u:hunter2@h:6379", &r, err, sizeof(err)), CFG_EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "PARROT_REDIS_PASSWORD"));
    static const char *const bad[] = {"redis://h",       "redis://:6379", "redis://h:0",
                                      "redis://h:65536", "redis://h:63x", "http://h:1",
                                      "redis://h:1/x",   "redis://@h:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(cfg_parse_redis(bad[i], &r, err, sizeof(err)), CFG_EINVAL);
}

static void test_url_redact(void **state)
{
    char out[128];

    (void)state;
    assert_false(cfg_url_redact("https://api.openai.com/v1", out, sizeof(out)));
    assert_string_equal(out, "https://api.openai.com/v1");
    assert_true(cfg_url_redact("http://u:p@h:1/v1;weight=2,https://k@x/v1#a@b", out, sizeof(out)));
    assert_string_equal(out, "http://***@h:1/v1;weight=2,https://***@x/v1#a@b");
    /* "@" alone still counts, and the output never overruns. */
    assert_true(cfg_url_redact("http://@h", out, 8));
    assert_string_equal(out, "http://");
    assert_true(cfg_url_redact("http://a@h", NULL, 0));
    char *dup = cfg_url_redact_dup("http://@a,http://@b");
    assert_string_equal(dup, "http://***@a,http://***@b");
    free(dup);
}

/* Trailing comments, quotes, and the private-file rule for secrets. */
static void test_file_syntax_and_mode(void **state)
{
    struct cfg c;
    enum cfg_action act;
    char err[256];
    char *path = write_file("cache-ttl = 1h # an hour\nretries = 3\t#tab\n"
                            "tenant-header = \"a #b\" # quoted\nshared-tenant = # unset\n"
                            "word-vectors = /x#y\nadmin-key = adm-secret\n");
    char *argv[] = {"parrot", "--config", path, NULL};

    (void)state;
    assert_int_equal(cfg_init(&c), 0);
    assert_int_equal(cfg_load(&c, 3, argv, NULL, &act, err, sizeof(err)), 0);
    assert_int_equal(c.cache_ttl_ms, 3600000);
    assert_int_equal(c.retries, 3);
    assert_string_equal(c.tenant_header, "a #b");
    assert_null(c.shared_tenant);
    assert_string_equal(c.word_vectors, "/x#y");
    cfg_fini(&c);

    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(cfg_init(&c), 0);
    assert_int_equal(cfg_load(&c, 3, argv, NULL, &act, err, sizeof(err)), CFG_EINVAL);
    assert_non_null(strstr(err, "chmod 600"));
    assert_non_null(strstr(err, "admin-key"));
    assert_null(strstr(err, "adm-secret"));
    cfg_fini(&c);
    unlink(path);

    path = write_file("tenant-header = \"open\n");
    argv[2] = path;
    assert_int_equal(cfg_init(&c), 0);
    assert_int_equal(cfg_load(&c, 3, argv, NULL, &act, err, sizeof(err)), CFG_EINVAL);
    assert_non_null(strstr(err, ":1:"));
    cfg_fini(&c);
    unlink(path);
}

/* What --print-config writes, cfg_load reads back to the same values. */
static void test_print_reads_back(void **state)
{
    struct cfg a, b;
    enum cfg_action act;
    char err[256], path[] = "/tmp/parrot-cfg-XXXXXX";
    char *argv[] = {"parrot", "--config", path, NULL};
    int fd;
    FILE *f;

    (void)state;
    assert_int_equal(cfg_init(&a), 0);
    assert_int_equal(cfg_set(&a, "similarity-threshold", "0.8125", CFG_SRC_FLAG, err, sizeof(err)),
                     0);
    assert_int_equal(cfg_set(&a, "shared-tenant", " padded ", CFG_SRC_FLAG, err, sizeof(err)), 0);
    assert_int_equal(cfg_set(&a, "snapshot-interval", "90s", CFG_SRC_FLAG, err, sizeof(err)), 0);
    assert_int_equal(cfg_set(&a, "max-body-size", "1000", CFG_SRC_FLAG, err, sizeof(err)), 0);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    cfg_print(&a, f);
    fclose(f);
    assert_int_equal(cfg_init(&b), 0);
    assert_int_equal(cfg_load(&b, 3, argv, NULL, &act, err, sizeof(err)), 0);
    assert_true(b.similarity_threshold == a.similarity_threshold);
    assert_string_equal(b.shared_tenant, " padded ");
    assert_int_equal(b.snapshot_interval_ms, 90000);
    assert_int_equal(b.max_body_size, 1000);
    assert_string_equal(b.listen, a.listen);
    assert_string_equal(b.upstream, a.upstream);
    cfg_fini(&a);
    cfg_fini(&b);
    unlink(path);
}

/* How parrot replay tells an option's value from a file name. */
static void test_flag_arity(void **state)
{
    (void)state;
    assert_int_equal(cfg_flag_arity("--similarity-threshold", "0.8"), 2);
    assert_int_equal(cfg_flag_arity("--similarity-threshold=0.8", "log.jsonl"), 1);
    assert_int_equal(cfg_flag_arity("--verifier", "false"), 2);
    assert_int_equal(cfg_flag_arity("--verifier", "log.jsonl"), 1);
    assert_int_equal(cfg_flag_arity("--prices", NULL), 1);
    assert_int_equal(cfg_flag_arity("--config", "parrot.conf"), 2);
    assert_int_equal(cfg_flag_arity("--no-such-flag", "x"), 1);
    assert_int_equal(cfg_flag_arity("log.jsonl", "x"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_prices),       cmocka_unit_test(test_parse_redis),
        cmocka_unit_test(test_parse_size),         cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_addr),         cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence),         cmocka_unit_test(test_errors),
        cmocka_unit_test(test_print_masks_secret), cmocka_unit_test(test_actions),
        cmocka_unit_test(test_url_redact),         cmocka_unit_test(test_file_syntax_and_mode),
        cmocka_unit_test(test_print_reads_back),   cmocka_unit_test(test_flag_arity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
