/* embedding.c - POST /v1/embeddings on the wire; see embedding.h. */
#include "proxy/openai/embedding.h"

#include "cache/base/buf.h"
#include "cache/base/le.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An assembled answer never grows past this (2048 inputs of 3072 floats
 * printed as doubles take about 150 MiB). */
#define RENDER_MAX ((size_t)256 << 20)

static const char *const irq = "invalid_request_error";

void oemb_req_fini(struct oemb_req *r)
{
    cJSON_Delete(r->doc);
    free(r->items);
    memset(r, 0, sizeof(*r));
}

int oemb_parse(const char *content_type, const char *body, size_t len, struct oemb_req *r,
               struct oai_error *e)
{
    const cJSON *input, *fmt;
    const char *enc;

    memset(r, 0, sizeof(*r));
    if (oai_model_parse(content_type, body, len, &r->doc, e) != 0)
        return -1;
    input = cJSON_GetObjectItemCaseSensitive(r->doc, "input");
    if (!input) {
        oai_error_set(e, 400, irq, "input", "missing_required_parameter",
                      "Missing required parameter: 'input'.");
        goto fail;
    }
    fmt = cJSON_GetObjectItemCaseSensitive(r->doc, "encoding_format");
    enc = cJSON_GetStringValue(fmt);
    if (fmt && !cJSON_IsNull(fmt) &&
        !(enc && (strcmp(enc, "float") == 0 || strcmp(enc, "base64") == 0))) {
        oai_error_set(e, 400, irq, "encoding_format", "invalid_value",
                      "'encoding_format' must be \"float\" or \"base64\".");
        goto fail;
    }
    r->base64 = enc && strcmp(enc, "base64") == 0;
    if (oai_items(input, "input", OEMB_MAX_ITEMS, &r->items, &r->n, e) != 0)
        goto fail;
    return 0;
fail:
    oemb_req_fini(r);
    return -1;
}

cJSON *oemb_without_items(const struct oemb_req *r)
{
    cJSON *d = cJSON_Duplicate(r->doc, 1);

    /* The encoding changes how a vector is written, not the vector. */
    cJSON_DeleteItemFromObjectCaseSensitive(d, "input");
    cJSON_DeleteItemFromObjectCaseSensitive(d, "encoding_format");
    return d;
}

char *oemb_subrequest(const struct oemb_req *r, const size_t *idx, size_t m, size_t *len)
{
    cJSON *d = cJSON_Duplicate(r->doc, 1), *input = cJSON_CreateArray();
    char *s = NULL;

    if (!d || !input)
        goto out;
    for (size_t i = 0; i < m; i++) {
        cJSON *c = cJSON_Duplicate(r->items[idx[i]], 1);
        if (!c || !cJSON_AddItemToArray(input, c)) {
            cJSON_Delete(c);
            goto out;
        }
    }
    if (!cJSON_ReplaceItemInObjectCaseSensitive(d, "input", input))
        goto out;
    input = NULL;
    s = cJSON_PrintUnformatted(d);
    if (s)
        *len = strlen(s);
out:
    cJSON_Delete(input);
    cJSON_Delete(d);
    return s;
}

/* How much of the bill an item carries: its bytes or its token count. */
static size_t weight(const cJSON *item)
{
    size_t n = cJSON_IsString(item) ? strlen(item->valuestring) : (size_t)cJSON_GetArraySize(item);
    return n ? n : 1;
}

/* One vector from "embedding" into floats (*dim of them, checked against a
 * dimension already seen when *dim is not 0). */
static int read_vector(const cJSON *v, float **out, size_t *dim)
{
    size_t n;
    float *f;

    if (cJSON_IsArray(v)) {
        const cJSON *x;
        size_t i = 0;

        n = (size_t)cJSON_GetArraySize(v);
        if (n == 0 || n > OEMB_MAX_DIM || (*dim && n != *dim))
            return -1;
        f = malloc(n * sizeof(*f));
        if (!f)
            return -ENOMEM;
        cJSON_ArrayForEach(x, v)
        {
            if (!cJSON_IsNumber(x)) {
                free(f);
                return -1;
            }
            f[i++] = (float)x->valuedouble;
        }
    } else if (cJSON_IsString(v)) {
        size_t sl = strlen(v->valuestring), raw, pad = 0;
        unsigned char *b;
        int got;

        if (sl == 0 || sl % 4 || sl / 4 * 3 > (size_t)OEMB_MAX_DIM * 4)
            return -1;
        pad = (v->valuestring[sl - 1] == '=') + (v->valuestring[sl - 2] == '=');
        raw = sl / 4 * 3;
        b = malloc(raw);
        if (!b)
            return -ENOMEM;
        got = EVP_DecodeBlock(b, (const unsigned char *)v->valuestring, (int)sl);
        /* DecodeBlock counts the padding's zero bytes too. */
        if (got < 0 || (size_t)got != raw || (raw - pad) % 4 || (raw - pad) == 0 ||
            (*dim && (raw - pad) / 4 != *dim)) {
            free(b);
            return -1;
        }
        n = (raw - pad) / 4;
        f = malloc(n * sizeof(*f));
        if (!f) {
            free(b);
            return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t u = le_get32(b + 4 * i);
            memcpy(&f[i], &u, 4);
        }
        free(b);
    } else {
        return -1;
    }
    *out = f;
    *dim = n;
    return 0;
}

/* A payload for one vector: its float32 bytes, little-endian. */
static int vector_payload(const float *f, size_t dim, const char *model, int64_t tokens,
                          struct cmpl_rendered **out)
{
    struct cmpl_rendered *cr = calloc(1, sizeof(*cr));

    if (!cr)
        return -ENOMEM;
    cr->kind = CMPL_EMBEDDING;
    cr->body = malloc(dim * 4);
    cr->sse = strdup("");
    cr->model = strdup(model);
    if (!cr->body || !cr->sse || !cr->model) {
        cmpl_rendered_fini(cr);
        free(cr);
        return -ENOMEM;
    }
    for (size_t i = 0; i < dim; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        le_put32((uint8_t *)cr->body + 4 * i, u);
    }
    cr->body_len = dim * 4;
    cr->prompt_tokens = tokens;
    *out = cr;
    return 0;
}

int oemb_answer(const struct oemb_req *r, const size_t *idx, size_t m, const char *body, size_t len,
                struct cmpl_rendered **out, int64_t *tokens, const char **why)
{
    cJSON *doc = cJSON_ParseWithLength(body, len);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(doc, "model");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(doc, "usage");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    const cJSON *d;
    size_t dim = 0, total_w = 0, given = 0;
    int64_t spent = 0;
    int64_t billed = cJSON_IsNumber(pt) && pt->valuedouble > 0 ? (int64_t)pt->valuedouble : 0;
    int rc = -1;

    *why = "not a list of one vector per input";
    memset(out, 0, m * sizeof(*out));
    if (!cJSON_IsArray(data) || (size_t)cJSON_GetArraySize(data) != m)
        goto fail;
    for (size_t i = 0; i < m; i++)
        total_w += weight(r->items[idx[i]]);
    cJSON_ArrayForEach(d, data)
    {
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(d, "index");
        float *f = NULL;
        size_t k, w;
        int64_t share;

        if (!cJSON_IsNumber(ix) || ix->valuedouble < 0 || ix->valuedouble >= (double)m ||
            floor(ix->valuedouble) != ix->valuedouble || out[(size_t)ix->valuedouble])
            goto fail;
        k = (size_t)ix->valuedouble;
        rc = read_vector(cJSON_GetObjectItemCaseSensitive(d, "embedding"), &f, &dim);
        if (rc != 0)
            goto fail;
        /* Shares by size; the last item takes what rounding left. */
        w = weight(r->items[idx[k]]);
        share =
            ++given == m ? billed - spent : (int64_t)((double)billed * (double)w / (double)total_w);
        spent += share;
        rc =
            vector_payload(f, dim, cJSON_IsString(model) ? model->valuestring : "", share, &out[k]);
        free(f);
        if (rc != 0)
            goto fail;
    }
    *tokens = billed;
    cJSON_Delete(doc);
    return 0;
fail:
    if (rc == -ENOMEM)
        *why = "out of memory";
    for (size_t i = 0; i < m; i++) {
        if (out[i]) {
            cmpl_rendered_fini(out[i]);
            free(out[i]);
            out[i] = NULL;
        }
    }
    cJSON_Delete(doc);
    return rc == -ENOMEM ? rc : -1;
}

/* A float32 as the provider prints it: the shortest decimal that reads back
 * as the same double (%.16g, else %.17g), so a client parses the number it
 * parsed live. */
static int put_float(struct buf *b, float f)
{
    char s[32];
    double d = (double)f;
    int n;

    if (!isfinite(d))
        return buf_puts(b, "0", RENDER_MAX);
    n = snprintf(s, sizeof(s), "%.16g", d);
    if (strtod(s, NULL) != d)
        n = snprintf(s, sizeof(s), "%.17g", d);
    return buf_append(b, s, (size_t)n, RENDER_MAX);
}

static int put_vector(struct buf *b, const struct cmpl_rendered *v, bool base64)
{
    const uint8_t *p = (const uint8_t *)v->body;
    size_t dim = v->body_len / 4;
    int rc = 0;

    if (base64) {
        size_t need = 4 * ((v->body_len + 2) / 3) + 1;
        char *s = malloc(need);

        if (!s)
            return -ENOMEM;
        /* The stored bytes are already little-endian float32. */
        EVP_EncodeBlock((unsigned char *)s, p, (int)v->body_len);
        rc = buf_puts(b, "\"", RENDER_MAX);
        rc = rc ? rc : buf_puts(b, s, RENDER_MAX);
        rc = rc ? rc : buf_puts(b, "\"", RENDER_MAX);
        free(s);
        return rc;
    }
    rc = buf_puts(b, "[", RENDER_MAX);
    for (size_t i = 0; rc == 0 && i < dim; i++) {
        uint32_t u = le_get32(p + 4 * i);
        float f;

        memcpy(&f, &u, 4);
        if (i)
            rc = buf_puts(b, ",", RENDER_MAX);
        rc = rc ? rc : put_float(b, f);
    }
    return rc ? rc : buf_puts(b, "]", RENDER_MAX);
}

char *oemb_render(const struct oemb_req *r, const struct cmpl_rendered *const *vecs,
                  const char *model, int64_t tokens, size_t *len)
{
    struct buf b = {0};
    cJSON *m = cJSON_CreateString(model);
    char *ms = m ? cJSON_PrintUnformatted(m) : NULL;
    char num[128];
    int rc = ms ? buf_puts(&b, "{\"object\":\"list\",\"data\":[", RENDER_MAX) : -ENOMEM;

    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        snprintf(num, sizeof(num),
                 "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        rc = buf_puts(&b, num, RENDER_MAX);
        rc = rc ? rc : put_vector(&b, vecs[i], r->base64);
        rc = rc ? rc : buf_puts(&b, "}", RENDER_MAX);
    }
    rc = rc ? rc : buf_puts(&b, "],\"model\":", RENDER_MAX);
    rc = rc ? rc : buf_puts(&b, ms, RENDER_MAX);
    snprintf(num, sizeof(num),
             ",\"usage\":{\"prompt_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64 "}}", tokens,
             tokens);
    rc = rc ? rc : buf_puts(&b, num, RENDER_MAX);
    free(ms);
    cJSON_Delete(m);
    if (rc) {
        buf_free(&b);
        return NULL;
    }
    return buf_take(&b, len);
}
