/* fuzz_embedding.c - fuzz target for the embeddings answer parser and the
 * answer renderer in proxy/openai/embedding.c; see test/fuzz/README.md.
 *
 * Any bytes are the provider's answer to a request for two inputs. Checks:
 * an answer that is accepted gives one vector per input, of one dimension,
 * and both renderings of them (float and base64) parse as JSON with the
 * two inputs in order.
 */
#include "proxy/openai/embedding.h"
#include "test/fuzz/fuzz.h"

#include <cjson/cJSON.h>
#include <string.h>

static void check_rendered(struct oemb_req *r, struct cmpl_rendered **v)
{
    const struct cmpl_rendered *in[2] = {v[0], v[1]};
    size_t len = 0;
    char *out = oemb_render(r, in, v[0]->model, 1, &len);
    cJSON *doc, *data;

    CHECK(out != NULL);
    doc = cJSON_ParseWithLength(out, len);
    CHECK(doc != NULL);
    data = cJSON_GetObjectItem(doc, "data");
    CHECK(cJSON_GetArraySize(data) == 2);
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 1), "index")->valueint == 1);
    cJSON_Delete(doc);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char req[] = "{\"model\":\"m\",\"input\":[\"ab\",\"cde\"]}";
    struct oemb_req r;
    struct oai_error e;
    struct cmpl_rendered *v[2];
    size_t idx[] = {0, 1};
    int64_t tokens = 0;
    const char *why = NULL;

    CHECK(oemb_parse("application/json", req, strlen(req), &r, &e) == 0);
    if (oemb_answer(&r, idx, 2, (const char *)data, size, v, &tokens, &why) == 0) {
        CHECK(v[0]->body_len == v[1]->body_len && v[0]->body_len % 4 == 0);
        CHECK(v[0]->prompt_tokens + v[1]->prompt_tokens == tokens);
        check_rendered(&r, v);
        r.base64 = true;
        check_rendered(&r, v);
        for (int i = 0; i < 2; i++) {
            cmpl_rendered_fini(v[i]);
            free(v[i]);
        }
    } else {
        CHECK(why != NULL);
    }
    oemb_req_fini(&r);
    return 0;
}
