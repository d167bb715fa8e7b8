/* fuzz_sse.c - fuzz target for the SSE assembler and the replay renderer in
 * proxy/completion.c; see test/fuzz/README.md.
 *
 * Any bytes are fed to the assembler, in two splits chosen from the input.
 * Checks: both splits give the same verdict and, when a completion comes
 * out, the same one; when it can be stored, its rendered JSON parses and its
 * SSE replay reassembles into a completion with the same choices.
 */
#include "proxy/openai/completion.h"
#include "test/fuzz/fuzz.h"

#include <cjson/cJSON.h>
#include <string.h>

static cJSON *assemble(const uint8_t *data, size_t size, size_t step)
{
    struct cmpl_asm a;
    cJSON *doc;

    cmpl_asm_init(&a);
    for (size_t i = 0; i < size; i += step)
        cmpl_asm_feed(&a, (const char *)data + i, i + step <= size ? step : size - i);
    doc = cmpl_asm_take(&a);
    cmpl_asm_fini(&a);
    return doc;
}

static char *print(const cJSON *doc)
{
    return doc ? cJSON_PrintUnformatted(doc) : NULL;
}

/* The stored form of doc replays into the same choices. */
static void check_render(const cJSON *doc)
{
    struct cmpl_rendered r;
    const char *why = NULL;
    size_t n;
    char *json, *sse;
    cJSON *served, *again;

    if (cmpl_render(doc, &r, &why) != 0) {
        CHECK(why != NULL);
        return;
    }
    n = cmpl_write_json(NULL, 0, &r, "chatcmpl-x", 1);
    json = malloc(n + 1);
    CHECK(json && cmpl_write_json(json, n, &r, "chatcmpl-x", 1) == n);
    json[n] = '\0';
    served = cJSON_Parse(json);
    CHECK(served != NULL);

    n = cmpl_write_sse(NULL, 0, &r, "chatcmpl-x", 1, true);
    sse = malloc(n + 1);
    CHECK(sse && cmpl_write_sse(sse, n, &r, "chatcmpl-x", 1, true) == n);
    again = assemble((const uint8_t *)sse, n, 7);
    CHECK(again != NULL);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(again, "choices")) ==
          cJSON_GetArraySize(cJSON_GetObjectItem(served, "choices")));
    cJSON_Delete(again);
    cJSON_Delete(served);
    free(sse);
    free(json);
    cmpl_rendered_fini(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t step = size ? (size_t)data[0] % 17 + 1 : 1;
    cJSON *whole = assemble(data, size, size ? size : 1);
    cJSON *split = assemble(data, size, step);
    char *a = print(whole), *b = print(split);

    CHECK((whole == NULL) == (split == NULL));
    CHECK(!a == !b && (!a || strcmp(a, b) == 0));
    if (whole)
        check_render(whole);
    free(a);
    free(b);
    cJSON_Delete(whole);
    cJSON_Delete(split);
    return 0;
}
