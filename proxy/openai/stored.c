/* stored.c - the cache codec for OpenAI answers; see stored.h. */
#include "proxy/openai/stored.h"

#include "cache/cache.h"
#include "cache/persist/records.h"
#include "proxy/openai/completion.h"
#include "proxy/openai/responses.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t stored_size(const struct cmpl_rendered *cr)
{
    return sizeof(*cr) + cr->body_len + cr->sse_len + cr->usage_len + strlen(cr->model) + 4;
}

static size_t size_of(const void *payload)
{
    return stored_size(payload);
}

static void payload_free(void *payload)
{
    struct cmpl_rendered *r = payload;

    if (r) {
        cmpl_rendered_fini(r);
        free(r);
    }
}

/* A tool call's arguments are the stored question's (its recipient, its
 * amounts), and the client acts on them: only an exact hit may replay. */
static bool reusable(const void *payload)
{
    return !((const struct cmpl_rendered *)payload)->tool_calls;
}

#define KIND_SHIFT  56
#define TOKENS_MASK ((UINT64_C(1) << KIND_SHIFT) - 1)

static int encode(const void *payload, uint64_t words[2], struct buf *tail)
{
    const struct cmpl_rendered *r = payload;
    int rc;

    words[0] = (uint64_t)r->prompt_tokens;
    words[1] = ((uint64_t)r->completion_tokens & TOKENS_MASK) | (uint64_t)r->kind << KIND_SHIFT;
    rc = rec_put_str(tail, r->model, r->model ? strlen(r->model) : 0, 1);
    rc = rc ? rc : rec_put_str(tail, r->body, r->body_len, 1);
    rc = rc ? rc : rec_put_str(tail, r->sse, r->sse_len, 1);
    rc = rc ? rc : rec_put_str(tail, r->usage, r->usage_len, r->usage != NULL);
    return rc;
}

static int decode(const uint64_t words[2], const void *tail, size_t len, void **payload)
{
    struct rec_reader rd = {tail, (const uint8_t *)tail + len};
    struct cmpl_rendered *r = calloc(1, sizeof(*r));
    uint64_t kind = words[1] >> KIND_SHIFT;
    size_t model_len = 0;
    int rc;

    if (!r)
        return -ENOMEM;
    if (kind >= CMPL_KINDS) {
        free(r);
        return -EBADMSG;
    }
    r->kind = (enum cmpl_kind)kind;
    rc = rec_get_str(&rd, &r->model, &model_len);
    rc = rc ? rc : rec_get_str(&rd, &r->body, &r->body_len);
    rc = rc ? rc : rec_get_str(&rd, &r->sse, &r->sse_len);
    rc = rc ? rc : rec_get_str(&rd, &r->usage, &r->usage_len);
    /* Absent is only allowed where the format says so, and the model is a
     * C string: a NUL inside it cannot round-trip. */
    if (rc == 0 && (rd.p != rd.end || !r->model || !r->body || !r->sse || r->body_len == 0 ||
                    memchr(r->model, '\0', model_len)))
        rc = -EBADMSG;
    /* An embedding is whole floats and nothing to replay as a stream. */
    if (rc == 0 && r->kind == CMPL_EMBEDDING && (r->body_len % 4 || r->sse_len || r->usage))
        rc = -EBADMSG;
    if (rc) {
        payload_free(r);
        return rc;
    }
    r->prompt_tokens = (int64_t)words[0];
    r->completion_tokens = (int64_t)(words[1] & TOKENS_MASK);
    r->tool_calls = r->kind == CMPL_RESPONSE
                        ? oresp_exact_only(r->body, r->body_len)
                        : r->kind == CMPL_CHAT && cmpl_body_has_tool_calls(r->body, r->body_len);
    *payload = r;
    return 0;
}

const struct cache_codec stored_codec = {
    .encode = encode,
    .decode = decode,
    .free = payload_free,
    .size = size_of,
    .reusable = reusable,
};
