/* auth.c - client keys, tenants and the admin key; see auth.h. */
#include "proxy/auth.h"

#include "cache/base/sha256.h"
#include "config/config.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define FILE_MAX (1u << 20) /* a keys file larger than this is a mistake */

struct client_key {
    uint8_t digest[SHA256_LEN];
    char tenant[AUTH_TENANT_MAX + 1];
};

struct auth {
    struct client_key *keys;
    size_t n;
    bool admin;
    uint8_t admin_digest[SHA256_LEN];
};

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

const char *auth_bearer(const char *authorization, size_t *len)
{
    const char *p = authorization, *e;

    if (!p || strncasecmp(p, "Bearer ", 7) != 0)
        return NULL;
    p += 7;
    while (*p == ' ')
        p++;
    e = p + strlen(p);
    while (e > p && blank(e[-1]))
        e--;
    *len = (size_t)(e - p);
    return *len ? p : NULL;
}

/* One "KEY TENANT" entry, s[0..n) with no newline or comma. Returns 0 (also
 * for a blank or '#' comment entry) or -1 with a reason. */
static int parse_entry(struct auth *a, const char *s, size_t n, const char *where, unsigned line,
                       char *err, size_t errlen)
{
    const char *end = s + n, *k, *t;
    size_t kl, tl;
    struct client_key ck;

    while (s < end && blank(*s))
        s++;
    while (end > s && blank(end[-1]))
        end--;
    if (s == end || *s == '#')
        return 0;
    k = s;
    while (s < end && !blank(*s))
        s++;
    kl = (size_t)(s - k);
    while (s < end && blank(*s))
        s++;
    t = s;
    while (s < end && !blank(*s))
        s++;
    tl = (size_t)(s - t);
    if (tl == 0 || s != end) {
        snprintf(err, errlen, "%s, entry %u: expected 'KEY TENANT'", where, line);
        return -1;
    }
    if (kl < AUTH_KEY_MIN) {
        snprintf(err, errlen, "%s, entry %u: the key is shorter than %d characters", where, line,
                 AUTH_KEY_MIN);
        return -1;
    }
    if (tl > AUTH_TENANT_MAX) {
        snprintf(err, errlen, "%s, entry %u: the tenant is longer than %d characters", where, line,
                 AUTH_TENANT_MAX);
        return -1;
    }
    for (size_t i = 0; i < tl; i++)
        if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e || t[i] == '"' ||
            t[i] == '\\') {
            snprintf(err, errlen, "%s, entry %u: the tenant must be printable ASCII", where, line);
            return -1;
        }
    sha256(k, kl, ck.digest);
    memcpy(ck.tenant, t, tl);
    ck.tenant[tl] = '\0';
    for (size_t i = 0; i < a->n; i++)
        if (memcmp(a->keys[i].digest, ck.digest, sizeof(ck.digest)) == 0) {
            snprintf(err, errlen, "%s, entry %u: the same key is listed twice", where, line);
            return -1;
        }
    if (a->n == AUTH_KEYS_MAX) {
        snprintf(err, errlen, "%s: more than %d client keys", where, AUTH_KEYS_MAX);
        return -1;
    }
    a->keys[a->n++] = ck;
    return 0;
}

/* Entries separated by newlines (and commas when comma is true: the
 * environment variable has no convenient newline). */
static int parse_text(struct auth *a, const char *text, bool comma, const char *where, char *err,
                      size_t errlen)
{
    const char *p = text;
    unsigned line = 0;

    while (*p) {
        size_t n = strcspn(p, comma ? "\n," : "\n");
        line++;
        if (parse_entry(a, p, n, where, line, err, errlen) != 0)
            return -1;
        p += n;
        if (*p)
            p++;
    }
    return 0;
}

static int load_file(struct auth *a, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    char *text = NULL;
    size_t n;
    int rc = -1;

    if (!f) {
        snprintf(err, errlen, "cannot open client-keys-file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "client-keys-file %s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
        snprintf(err, errlen,
                 "client-keys-file %s is accessible to other users (mode %03o): run chmod o-rwx "
                 "on it (e.g. chmod 600)",
                 path, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    if ((size_t)st.st_size > FILE_MAX) {
        snprintf(err, errlen, "client-keys-file %s is larger than %u bytes", path, FILE_MAX);
        goto out;
    }
    text = malloc((size_t)st.st_size + 1);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    n = fread(text, 1, (size_t)st.st_size, f);
    text[n] = '\0';
    if (memchr(text, '\0', n)) {
        snprintf(err, errlen, "client-keys-file %s contains a NUL byte", path);
        goto out;
    }
    rc = parse_text(a, text, false, path, err, errlen);
out:
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    fclose(f);
    return rc;
}

int auth_new(const struct cfg *c, struct auth **out, char *err, size_t errlen)
{
    struct auth *a = calloc(1, sizeof(*a));

    if (!a || !(a->keys = calloc(AUTH_KEYS_MAX, sizeof(*a->keys)))) {
        free(a);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if ((c->client_keys_file && load_file(a, c->client_keys_file, err, errlen) != 0) ||
        (c->client_keys && parse_text(a, c->client_keys, true, "client-keys", err, errlen) != 0)) {
        auth_free(a);
        return -1;
    }
    if ((c->client_keys_file || c->client_keys) && a->n == 0) {
        snprintf(err, errlen, "client keys are configured but none is listed");
        auth_free(a);
        return -1;
    }
    if (c->admin_key) {
        a->admin = true;
        sha256(c->admin_key, strlen(c->admin_key), a->admin_digest);
    }
    *out = a;
    return 0;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    free(a->keys);
    free(a);
}

bool auth_has_client_keys(const struct auth *a)
{
    return a->n > 0;
}

bool auth_has_admin_key(const struct auth *a)
{
    return a->admin;
}

const char *auth_client(const struct auth *a, const char *authorization)
{
    uint8_t d[SHA256_LEN];
    size_t len, hit = 0;
    unsigned found = 0;
    const char *key = auth_bearer(authorization, &len);

    if (!key)
        return NULL;
    sha256(key, len, d);
    /* Every digest is compared; the match is selected with a mask, not a
     * branch, so the loop takes the same time whichever key matches. */
    for (size_t i = 0; i < a->n; i++) {
        unsigned eq = (unsigned)(CRYPTO_memcmp(d, a->keys[i].digest, sizeof(d)) == 0);
        hit |= i & ((size_t)0 - (size_t)eq);
        found |= eq;
    }
    return found ? a->keys[hit].tenant : NULL;
}

/* The password of "Basic base64(user:password)" into out (NUL-terminated),
 * or NULL. A browser sends this for the dashboard once its user typed the
 * admin key at the prompt that WWW-Authenticate: Basic brings up. */
static const char *basic_password(const char *authorization, char *out, size_t cap, size_t *len)
{
    const char *p = authorization, *colon;
    size_t n;
    int dl;

    if (!p || strncasecmp(p, "Basic ", 6) != 0)
        return NULL;
    p += 6;
    while (*p == ' ')
        p++;
    n = strlen(p);
    while (n && blank(p[n - 1]))
        n--;
    if (n == 0 || n % 4 != 0 || n / 4 * 3 >= cap)
        return NULL;
    dl = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)p, (int)n);
    if (dl < 0)
        return NULL;
    /* EVP_DecodeBlock counts the padding's zero bytes too. */
    while (dl > 0 && n && p[n - 1] == '=') {
        dl--;
        n--;
    }
    out[dl] = '\0';
    colon = memchr(out, ':', (size_t)dl);
    if (!colon || memchr(out, '\0', (size_t)dl))
        return NULL;
    *len = (size_t)dl - (size_t)(colon + 1 - out);
    return *len ? colon + 1 : NULL;
}

bool auth_admin(const struct auth *a, const char *authorization)
{
    uint8_t d[SHA256_LEN];
    char basic[AUTH_HEADER_MAX];
    size_t len = 0;
    const char *key = auth_bearer(authorization, &len);
    bool ok;

    if (!key)
        key = basic_password(authorization, basic, sizeof(basic), &len);
    if (!a->admin || !key)
        return false;
    sha256(key, len, d);
    ok = CRYPTO_memcmp(d, a->admin_digest, sizeof(d)) == 0;
    OPENSSL_cleanse(basic, sizeof(basic));
    return ok;
}
