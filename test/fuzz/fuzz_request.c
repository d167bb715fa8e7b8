/* fuzz_request.c - fuzz target for the chat request path: validation
 * (proxy/oai.c) and the cache policy's keying and lookup (proxy/chat.c);
 * see test/fuzz/README.md.
 *
 * Any bytes are a request body. Checks: validation either accepts (and then
 * keying, lookup and storing an answer never fail loudly, and the same body
 * keys the same way twice) or rejects with an OpenAI-shaped error whose
 * status is 400 or 415.
 */
#include "config/config.h"
#include "proxy/assemble.h"
#include "proxy/chat.h"
#include "proxy/openai/oai.h"
#include "test/fuzz/fuzz.h"

#include <cjson/cJSON.h>
#include <string.h>

static const char ANSWER[] =
    "{\"id\":\"c\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":"
    "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"finish_reason\":"
    "\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}";

static struct chat *shared(void)
{
    static struct chat *ch;
    static struct cache *cache;
    static struct cfg c;

    if (!ch) {
        CHECK(cfg_init(&c) == 0);
        c.cache_max_memory = 4u << 20; /* keep eviction busy */
        CHECK(assemble_cache(&c, &cache) == 0);
        CHECK(chat_new(&c, cache, &ch) == 0);
    }
    return ch;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chat *ch = shared();
    const char *body = (const char *)data;
    struct oai_error e;
    struct chat_req a, b;
    cJSON *doc = NULL;

    if (oai_chat_parse("application/json", body, size, &doc, &e) != 0) {
        char *json = oai_error_json(&e, NULL);
        cJSON *shape = json ? cJSON_Parse(json) : NULL;
        CHECK(e.status == 400 || e.status == 415);
        CHECK(cJSON_IsObject(cJSON_GetObjectItem(shape, "error")));
        cJSON_Delete(shape);
        free(json);
        return 0;
    }
    chat_req_init(ch, &a, doc, body, size, &(struct chat_scope){.authorization = "Bearer k"}, NULL,
                  NULL);
    chat_req_init(ch, &b, doc, body, size, &(struct chat_scope){.authorization = "Bearer k"}, NULL,
                  NULL);
    CHECK(a.keyed == b.keyed);
    if (a.keyed)
        CHECK(memcmp(&a.key.exact, &b.key.exact, sizeof(a.key.exact)) == 0);
    if (chat_lookup(ch, &a, 1000) == CHAT_MISS)
        chat_store(ch, &a, 200, false, ANSWER, strlen(ANSWER), 1000);
    chat_req_fini(&a);
    chat_req_fini(&b);
    cJSON_Delete(doc);
    return 0;
}
