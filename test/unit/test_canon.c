/* Unit tests for cache/canon.c: canonical JSON, partition and exact keys,
 * lookup text. Requests are written with ' for " to keep the tables legible. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/openai/canon.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE "/v1/chat/completions"

/* s with every ' turned into ", malloc'd. */
static char *dq(const char *s)
{
    char *r = strdup(s);

    assert_non_null(r);
    for (char *p = r; *p; p++)
        if (*p == '\'')
            *p = '"';
    return r;
}

/* Parses single-quoted JSON; fails the test if it does not parse. */
static cJSON *sq(const char *s)
{
    char *t = dq(s);
    cJSON *v = cJSON_Parse(t);

    if (!v)
        fail_msg("test JSON does not parse: %s", t);
    free(t);
    return v;
}

/* Canonical JSON of v as a malloc'd string. */
static char *canon_str(const cJSON *v)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;

    assert_int_equal(canon_json(v, &buf, &len, &cap, CANON_MAX), 0);
    assert_int_equal(strlen(buf), len);
    return buf;
}

static void key_of(const cJSON *req, const char *tenant, const char *route, struct canon_key *k)
{
    assert_int_equal(canon_request(req, tenant, route, k), 0);
}

static void key_sq(const char *req, struct canon_key *k)
{
    cJSON *doc = sq(req);

    key_of(doc, "tenant", ROUTE, k);
    cJSON_Delete(doc);
}

static bool same_partition(const struct canon_key *a, const struct canon_key *b)
{
    return memcmp(a->partition, b->partition, CANON_HASH_LEN) == 0;
}

static bool same_exact(const struct canon_key *a, const struct canon_key *b)
{
    return memcmp(a->exact, b->exact, CANON_HASH_LEN) == 0;
}

/* ---- canonical JSON ---------------------------------------------------- */

static const struct {
    const char *in, *out;
} json_forms[] = {
    /* scalars */
    {"null", "null"},
    {"true", "true"},
    {" false ", "false"},
    {"''", "''"},
    /* containers, whitespace, member order by bytes, duplicates stable */
    {"[ ]", "[]"},
    {"{ }", "{}"},
    {"[ 1 , [ ] , { } ]", "[1,[],{}]"},
    {"{ 'b' : 1 , 'a' : [ true , false , null ] }", "{'a':[true,false,null],'b':1}"},
    {"{'b':{'z':1,'y':2},'B':0,'\\u00e9':1,'a':0,'aa':0,'':0}",
     "{'':0,'B':0,'a':0,'aa':0,'b':{'y':2,'z':1},'\xc3\xa9':1}"},
    {"{'a':2,'b':0,'a':1}", "{'a':2,'a':1,'b':0}"},
    /* integral values below 2^53 as integers */
    {"[1,1.0,1e0,10e-1,0.1e1,100E-2,-12,-12.000,1e15]", "[1,1,1,1,1,1,-12,-12,1000000000000000]"},
    {"[0,-0,-0.0,0e5,1e-400,-1e-400]", "[0,0,0,0,0,0]"},
    {"[9007199254740991,-9007199254740991]", "[9007199254740991,-9007199254740991]"},
    /* beyond 2^53 and fractions: shortest round-tripping %g */
    {"[9007199254740992,9007199254740993,1e20,-1e300]",
     "[9007199254740992,9007199254740992,1e+20,-1e+300]"},
    {"[0.1,0.7,1.5,-2.25,1.5e-7,123456.789,0.30000000000000004]",
     "[0.1,0.7,1.5,-2.25,1.5e-07,123456.789,0.30000000000000004]"},
    {"[5e-324,2.2250738585072014e-308,1.7976931348623157e308]",
     "[5e-324,2.2250738585072014e-308,1.7976931348623157e+308]"},
    /* out of range reads as Inf; it keeps a spelling that reads back as Inf */
    {"[1e999,-1e999]", "[1e999,-1e999]"},
    /* strings: \u escapes are decoded, non-ASCII bytes copied */
    {"['\\u0041','A','\\u00e9\\u20ac\\ud83d\\ude00','\\/']",
     "['A','A','\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80','/']"},
};

static void test_json_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(json_forms) / sizeof(json_forms[0]); i++) {
        cJSON *v = sq(json_forms[i].in);
        char *got = canon_str(v), *want = dq(json_forms[i].out);
        cJSON *again = cJSON_Parse(got);
        char *got2;

        if (strcmp(got, want) != 0)
            fail_msg("canon_json(%s) = %s, want %s", json_forms[i].in, got, want);
        /* The canonical form is a fixed point. */
        assert_non_null(again);
        got2 = canon_str(again);
        assert_string_equal(got2, got);
        free(got);
        free(got2);
        free(want);
        cJSON_Delete(v);
        cJSON_Delete(again);
    }
}

static void test_json_string_escapes(void **state)
{
    /* Only " \ and control bytes are escaped; short forms where JSON has them. */
    cJSON *v = cJSON_Parse("\"q\\\"b\\\\s\\b\\f\\n\\r\\t\\u0001\\u001F\\u007f\\u0020\"");
    char *got;

    (void)state;
    assert_non_null(v);
    got = canon_str(v);
    assert_string_equal(got, "\"q\\\"b\\\\s\\b\\f\\n\\r\\t\\u0001\\u001f\x7f \"");
    free(got);
    cJSON_Delete(v);

    /* Bytes that are not UTF-8 are copied, never rejected or rewritten. */
    v = cJSON_CreateString("\xff\xfe");
    got = canon_str(v);
    assert_string_equal(got, "\"\xff\xfe\"");
    free(got);
    cJSON_Delete(v);
}

static void test_json_append_and_cap(void **state)
{
    cJSON *v = sq("{'b':[1,2],'a':'x'}");
    const char *want = "{\"a\":\"x\",\"b\":[1,2]}";
    size_t n = strlen(want), len, cap;
    char *buf;

    (void)state;
    /* Appends after earlier output. */
    buf = strdup("pre:");
    len = 4;
    cap = 5;
    assert_int_equal(canon_json(v, &buf, &len, &cap, 100), 0);
    assert_int_equal(len, 4 + n);
    assert_string_equal(buf, "pre:{\"a\":\"x\",\"b\":[1,2]}");
    assert_true(cap > len);

    /* The cap counts everything in the buffer; one byte short fails and
     * leaves *len as it was. */
    len = 4;
    assert_int_equal(canon_json(v, &buf, &len, &cap, 4 + n), 0);
    assert_int_equal(len, 4 + n);
    len = 4;
    assert_int_equal(canon_json(v, &buf, &len, &cap, 4 + n - 1), -E2BIG);
    assert_int_equal(len, 4);
    free(buf);

    /* From an empty buffer, with a cap too small for anything. */
    buf = NULL;
    len = cap = 0;
    assert_int_equal(canon_json(v, &buf, &len, &cap, 0), -E2BIG);
    assert_int_equal(len, 0);
    free(buf);
    cJSON_Delete(v);
}

static void test_json_depth_and_invalid(void **state)
{
    enum { DEEP = 1000 };
    char *text = malloc(2 * DEEP + 1), *buf = NULL;
    size_t len = 0, cap = 0;
    cJSON *v, *inner, *raw;

    (void)state;
    /* As deep as cJSON parses (CJSON_NESTING_LIMIT) is fine... */
    assert_non_null(text);
    memset(text, '[', DEEP);
    memset(text + DEEP, ']', DEEP);
    text[2 * DEEP] = '\0';
    v = cJSON_Parse(text);
    assert_non_null(v);
    assert_int_equal(canon_json(v, &buf, &len, &cap, CANON_MAX), 0);
    assert_string_equal(buf, text);
    cJSON_Delete(v);
    free(text);

    /* ...and a hand-built tree deeper than CANON_MAX_DEPTH is refused, not
     * followed down the stack. */
    v = cJSON_CreateArray();
    inner = v;
    for (int i = 0; i < CANON_MAX_DEPTH + 10; i++) {
        cJSON *next = cJSON_CreateObject();
        assert_non_null(next);
        if (cJSON_IsArray(inner))
            cJSON_AddItemToArray(inner, next);
        else
            cJSON_AddItemToObject(inner, "k", next);
        inner = next;
    }
    len = 0;
    assert_int_equal(canon_json(v, &buf, &len, &cap, CANON_MAX), -E2BIG);
    assert_int_equal(len, 0);
    cJSON_Delete(v);

    /* Things no JSON text yields. */
    v = cJSON_CreateArray();
    cJSON_AddItemToArray(v, cJSON_CreateNumber(NAN));
    assert_int_equal(canon_json(v, &buf, &len, &cap, CANON_MAX), -EINVAL);
    cJSON_Delete(v);
    raw = cJSON_CreateRaw("{}");
    assert_int_equal(canon_json(raw, &buf, &len, &cap, CANON_MAX), -EINVAL);
    cJSON_Delete(raw);
    v = cJSON_CreateObject(); /* a member without a name */
    cJSON_AddItemToArray(v, cJSON_CreateTrue());
    assert_int_equal(canon_json(v, &buf, &len, &cap, CANON_MAX), -EINVAL);
    cJSON_Delete(v);
    v = cJSON_CreateString("x"); /* a string without bytes */
    cJSON_free(v->valuestring);
    v->valuestring = NULL;
    assert_int_equal(canon_json(v, &buf, &len, &cap, CANON_MAX), -EINVAL);
    cJSON_Delete(v);
    assert_int_equal(len, 0);

    /* Inf can come from JSON (1e999) and keeps a spelling. */
    v = cJSON_CreateNumber(-INFINITY);
    assert_int_equal(canon_json(v, &buf, &len, &cap, CANON_MAX), 0);
    assert_string_equal(buf, "-1e999");
    cJSON_Delete(v);
    free(buf);
}

/* ---- partition and exact key: one change at a time -------------------- */

/* A conversation with every kind of turn; the last user message is 5. */
static const char BASE[] =
    "{'model':'gpt-4o',"
    " 'messages':["
    "  {'role':'system','content':'You are a terse assistant.'},"
    "  {'role':'user','content':'What is the capital of France?'},"
    "  {'role':'assistant','content':null,'tool_calls':[{'id':'call_1','type':'function',"
    "   'function':{'name':'lookup','arguments':'{}'}}]},"
    "  {'role':'tool','tool_call_id':'call_1','content':'Paris'},"
    "  {'role':'assistant','content':'Paris.'},"
    "  {'role':'user','content':'And of Spain?'}],"
    " 'tools':[{'type':'function','function':{'name':'lookup','parameters':{'type':'object',"
    "  'properties':{'q':{'type':'string'}}}}}],"
    " 'tool_choice':'auto','response_format':{'type':'text'},'temperature':0.2,'top_p':1,"
    " 'n':1,'seed':7,'stop':['END'],'max_tokens':100,'max_completion_tokens':100,"
    " 'logprobs':false,'frequency_penalty':0,'presence_penalty':0,'logit_bias':{'50256':-100},"
    " 'reasoning_effort':'low','modalities':['text'],"
    " 'stream':false,'stream_options':{'include_usage':true},'user':'u1','metadata':{'k':'v'},"
    " 'store':false,'service_tier':'auto','safety_identifier':'s1','prompt_cache_key':'p1'}";

/* One edit of BASE: the value at path (object names and array indexes
 * separated by /) becomes value, or is removed when value is NULL. */
struct edit {
    const char *what;
    const char *path;
    const char *value;
};

static void apply(cJSON *doc, const char *path, const char *value)
{
    cJSON *node = doc;
    char seg[64];

    for (;;) {
        size_t n = strcspn(path, "/");
        long idx;

        assert_true(n < sizeof(seg));
        memcpy(seg, path, n);
        seg[n] = '\0';
        idx = strtol(seg, NULL, 10);
        if (path[n] == '\0') {
            cJSON *v = value ? sq(value) : NULL;

            if (cJSON_IsArray(node) && v)
                assert_true(cJSON_ReplaceItemInArray(node, (int)idx, v));
            else if (cJSON_IsArray(node))
                cJSON_DeleteItemFromArray(node, (int)idx);
            else if (!v)
                cJSON_DeleteItemFromObjectCaseSensitive(node, seg);
            else if (cJSON_GetObjectItemCaseSensitive(node, seg))
                assert_true(cJSON_ReplaceItemInObjectCaseSensitive(node, seg, v));
            else
                assert_true(cJSON_AddItemToObject(node, seg, v));
            return;
        }
        node = cJSON_IsArray(node) ? cJSON_GetArrayItem(node, (int)idx)
                                   : cJSON_GetObjectItemCaseSensitive(node, seg);
        if (!node)
            fail_msg("no %s in BASE", path);
        path += n + 1;
    }
}

enum expect {
    PARTITION, /* a different partition (and so a different exact key) */
    TEXT_ONLY, /* the same partition, a different exact key */
    SAME,      /* the same partition and exact key */
};

static void check_edits(const struct edit *e, size_t n, enum expect want)
{
    struct canon_key base, k;

    key_sq(BASE, &base);
    assert_non_null(base.lookup_text);
    for (size_t i = 0; i < n; i++) {
        cJSON *doc = sq(BASE);
        bool part, exact;

        apply(doc, e[i].path, e[i].value);
        key_of(doc, "tenant", ROUTE, &k);
        part = same_partition(&base, &k);
        exact = same_exact(&base, &k);
        if (want == PARTITION && (part || exact))
            fail_msg("%s: partition should change", e[i].what);
        if (want == TEXT_ONLY && (!part || exact))
            fail_msg("%s: only the exact key should change (partition %s, exact %s)", e[i].what,
                     part ? "same" : "changed", exact ? "same" : "changed");
        if (want == SAME && (!part || !exact))
            fail_msg("%s: keys should not change (partition %s, exact %s)", e[i].what,
                     part ? "same" : "changed", exact ? "same" : "changed");
        canon_key_fini(&k);
        cJSON_Delete(doc);
    }
    canon_key_fini(&base);
}

/* Every field that can change the answer is in the partition. */
static const struct edit answer_changing[] = {
    {"model", "model", "'gpt-4o-mini'"},
    {"system prompt", "messages/0/content", "'You are a verbose assistant.'"},
    {"system becomes developer", "messages/0/role", "'developer'"},
    {"earlier user turn", "messages/1/content", "'What is the capital of Germany?'"},
    {"earlier assistant turn", "messages/4/content", "'Lyon.'"},
    {"assistant tool call", "messages/2/tool_calls/0/function/arguments", "'{\\'q\\':1}'"},
    {"tool result", "messages/3/content", "'Lyon'"},
    {"an earlier turn removed", "messages/4", NULL},
    {"tools", "tools/0/function/name", "'search'"},
    {"tool_choice", "tool_choice", "'none'"},
    {"response_format", "response_format", "{'type':'json_object'}"},
    {"temperature", "temperature", "0.3"},
    {"temperature removed", "temperature", NULL},
    {"top_p", "top_p", "0.9"},
    {"n", "n", "2"},
    {"seed", "seed", "8"},
    {"stop", "stop", "['STOP']"},
    {"max_tokens", "max_tokens", "200"},
    {"max_completion_tokens", "max_completion_tokens", "200"},
    {"logprobs", "logprobs", "true"},
    {"top_logprobs", "top_logprobs", "3"},
    {"frequency_penalty", "frequency_penalty", "0.5"},
    {"presence_penalty", "presence_penalty", "0.5"},
    {"logit_bias", "logit_bias", "{'50256':100}"},
    {"reasoning_effort", "reasoning_effort", "'high'"},
    {"modalities", "modalities", "['text','audio']"},
    {"audio", "audio", "{'voice':'alloy','format':'wav'}"},
    {"parallel_tool_calls", "parallel_tool_calls", "false"},
    {"prediction", "prediction", "{'type':'content','content':'x'}"},
    {"web_search_options", "web_search_options", "{}"},
    {"an unknown field", "foo", "1"},
    {"an inert name below the top level", "messages/1/metadata", "{'k':'v'}"},
    {"name on the last user message", "messages/5/name", "'alice'"},
    {"an image in the last user message", "messages/5/content",
     "[{'type':'text','text':'And of Spain?'},{'type':'image_url','image_url':{'url':'a.png'}}]"},
    {"audio in the last user message", "messages/5/content",
     "[{'type':'text','text':'And of Spain?'},"
     "{'type':'input_audio','input_audio':{'data':'AAA','format':'wav'}}]"},
    {"the text split into two parts", "messages/5/content",
     "[{'type':'text','text':'And of'},{'type':'text','text':'Spain?'}]"},
    {"an unknown member of a text part", "messages/5/content",
     "[{'type':'text','text':'And of Spain?','cache_control':{'type':'ephemeral'}}]"},
    {"the last message is no longer a user's", "messages/5/role", "'assistant'"},
};

static void test_answer_changing_fields(void **state)
{
    (void)state;
    check_edits(answer_changing, sizeof(answer_changing) / sizeof(answer_changing[0]), PARTITION);
}

/* Fields that cannot change the answer are left out of both keys. */
static const struct edit inert_fields[] = {
    {"stream", "stream", "true"},
    {"stream removed", "stream", NULL},
    {"stream_options", "stream_options", "{'include_usage':false}"},
    {"user", "user", "'u2'"},
    {"metadata", "metadata", "{'k':'w','x':'y'}"},
    {"store", "store", "true"},
    {"service_tier", "service_tier", "'flex'"},
    {"safety_identifier", "safety_identifier", "'s2'"},
    {"prompt_cache_key", "prompt_cache_key", "'p2'"},
    {"prompt_cache_key removed", "prompt_cache_key", NULL},
    {"same text as one text part", "messages/5/content",
     "[{'type':'text','text':'And of Spain?'}]"},
    {"surrounding whitespace", "messages/5/content", "' \\n And of Spain?\\t '"},
    {"inner whitespace runs", "messages/5/content", "'And  \\r\\n of\\tSpain?'"},
};

static void test_inert_fields(void **state)
{
    (void)state;
    check_edits(inert_fields, sizeof(inert_fields) / sizeof(inert_fields[0]), SAME);
}

/* The last user text only moves the exact key: similar questions in one
 * partition can find each other. */
static const struct edit text_only[] = {
    {"another question", "messages/5/content", "'And of Italy?'"},
    {"case is kept", "messages/5/content", "'And of SPAIN?'"},
    {"whitespace inside a word", "messages/5/content", "'And of Spa in?'"},
    {"another question in a text part", "messages/5/content",
     "[{'type':'text','text':'And of Italy?'}]"},
    {"an empty question", "messages/5/content", "''"},
};

static void test_last_user_text(void **state)
{
    (void)state;
    check_edits(text_only, sizeof(text_only) / sizeof(text_only[0]), TEXT_ONLY);
}

/* ---- equivalent and different spellings of whole requests --------------- */

static const struct {
    const char *what, *a, *b;
    enum expect want;
} spellings[] = {
    {"member order and whitespace",
     "{'model':'m','temperature':1,'messages':[{'role':'user','content':'hi'}]}",
     " { 'messages' : [ { 'content' : 'hi' , 'role' : 'user' } ] ,\n 'temperature' : 1 ,"
     " 'model' : 'm' } ",
     SAME},
    {"1 vs 1.0", "{'model':'m','temperature':1,'messages':[{'role':'user','content':'hi'}]}",
     "{'model':'m','temperature':1.0,'messages':[{'role':'user','content':'hi'}]}", SAME},
    {"1 vs 1e0", "{'model':'m','temperature':1,'messages':[{'role':'user','content':'hi'}]}",
     "{'model':'m','temperature':1e0,'messages':[{'role':'user','content':'hi'}]}", SAME},
    {"0.5 vs 5e-1", "{'model':'m','top_p':0.5,'messages':[{'role':'user','content':'hi'}]}",
     "{'model':'m','top_p':5E-1,'messages':[{'role':'user','content':'hi'}]}", SAME},
    {"-0 vs 0", "{'model':'m','seed':0,'messages':[{'role':'user','content':'hi'}]}",
     "{'model':'m','seed':-0.0,'messages':[{'role':'user','content':'hi'}]}", SAME},
    {"\\u0041 vs A in the model", "{'model':'A','messages':[{'role':'user','content':'hi'}]}",
     "{'model':'\\u0041','messages':[{'role':'user','content':'hi'}]}", SAME},
    {"\\u0041 vs A in the text", "{'model':'m','messages':[{'role':'user','content':'A'}]}",
     "{'model':'m','messages':[{'role':'user','content':'\\u0041'}]}", SAME},
    {"\\u0041 vs A in a name",
     "{'model':'m','messages':[{'role':'user','content':'hi'}],'logit_bias':{'A':1}}",
     "{'model':'m','messages':[{'role':'user','content':'hi'}],'logit_bias':{'\\u0041':1}}", SAME},
    {"1 vs 1.5", "{'model':'m','temperature':1,'messages':[{'role':'user','content':'hi'}]}",
     "{'model':'m','temperature':1.5,'messages':[{'role':'user','content':'hi'}]}", PARTITION},
    {"1 vs '1'", "{'model':'m','seed':1,'messages':[{'role':'user','content':'hi'}]}",
     "{'model':'m','seed':'1','messages':[{'role':'user','content':'hi'}]}", PARTITION},
    {"different images, same text",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'what is it?'},"
     "{'type':'image_url','image_url':{'url':'https://x/cat.png'}}]}]}",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'what is it?'},"
     "{'type':'image_url','image_url':{'url':'https://x/dog.png'}}]}]}",
     PARTITION},
    {"images in another order",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'compare'},"
     "{'type':'image_url','image_url':{'url':'a'}},{'type':'image_url','image_url':{'url':'b'}}]}]"
     "}",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'compare'},"
     "{'type':'image_url','image_url':{'url':'b'}},{'type':'image_url','image_url':{'url':'a'}}]}]"
     "}",
     PARTITION},
    {"text before or after the image",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'what?'},"
     "{'type':'image_url','image_url':{'url':'a'}}]}]}",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':"
     "{'url':'a'}},{'type':'text','text':'what?'}]}]}",
     PARTITION},
    {"same image, other text",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'what is it?'},"
     "{'type':'image_url','image_url':{'url':'a'}}]}]}",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'who is it?'},"
     "{'type':'image_url','image_url':{'url':'a'}}]}]}",
     TEXT_ONLY},
    {"a malformed text part does not pose as a lifted one",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'text'}]}]}",
     "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':''}]}]}", PARTITION},
    {"assistant prefill is keyed in full",
     "{'model':'m','messages':[{'role':'user','content':'hi'},{'role':'assistant',"
     "'content':'Sure'}]}",
     "{'model':'m','messages':[{'role':'user','content':'hi'},{'role':'assistant',"
     "'content':'No'}]}",
     PARTITION},
    {"a trailing tool result is keyed in full",
     "{'model':'m','messages':[{'role':'tool','tool_call_id':'c','content':'1'}]}",
     "{'model':'m','messages':[{'role':'tool','tool_call_id':'c','content':'2'}]}", PARTITION},
    {"duplicate members keep their order",
     "{'model':'m','messages':[{'role':'user','content':'hi'}],'seed':1,'seed':2}",
     "{'model':'m','messages':[{'role':'user','content':'hi'}],'seed':2,'seed':1}", PARTITION},
};

static void test_spellings(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        struct canon_key a, b;
        bool part, exact;

        key_sq(spellings[i].a, &a);
        key_sq(spellings[i].b, &b);
        part = same_partition(&a, &b);
        exact = same_exact(&a, &b);
        switch (spellings[i].want) {
        case SAME:
            if (!part || !exact)
                fail_msg("%s: should be the same request", spellings[i].what);
            break;
        case TEXT_ONLY:
            if (!part || exact)
                fail_msg("%s: should differ in the exact key only", spellings[i].what);
            break;
        case PARTITION:
            if (part || exact)
                fail_msg("%s: should differ in the partition", spellings[i].what);
            break;
        }
        canon_key_fini(&a);
        canon_key_fini(&b);
    }
}

/* ---- lookup text ------------------------------------------------------- */

static const struct {
    const char *what, *req, *text; /* text NULL: none, exact matches only */
} lookups[] = {
    {"string content", "{'messages':[{'role':'user','content':'What is 2+2?'}]}", "What is 2+2?"},
    {"kept as written", "{'messages':[{'role':'user','content':'  Two\\tspaces  '}]}",
     "  Two\tspaces  "},
    {"text parts joined by newlines",
     "{'messages':[{'role':'user','content':[{'type':'text','text':'Look:'},"
     "{'type':'image_url','image_url':{'url':'a'}},{'type':'text','text':'what is it?'}]}]}",
     "Look:\nwhat is it?"},
    {"only the last message",
     "{'messages':[{'role':'user','content':'first'},{'role':'assistant','content':'ok'},"
     "{'role':'user','content':'second'}]}",
     "second"},
    {"assistant prefill last",
     "{'messages':[{'role':'user','content':'hi'},{'role':'assistant','content':'Sure'}]}", NULL},
    {"tool result last", "{'messages':[{'role':'tool','tool_call_id':'c','content':'42'}]}", NULL},
    {"system only", "{'messages':[{'role':'system','content':'be terse'}]}", NULL},
    {"image only",
     "{'messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'a'}}]}]}",
     NULL},
    {"whitespace only", "{'messages':[{'role':'user','content':' \\n '}]}", NULL},
    {"empty", "{'messages':[{'role':'user','content':''}]}", NULL},
    {"null content", "{'messages':[{'role':'user','content':null}]}", NULL},
    {"no content", "{'messages':[{'role':'user'}]}", NULL},
    {"text that is not a string",
     "{'messages':[{'role':'user','content':[{'type':'text','text':5}]}]}", NULL},
    {"role is case-sensitive", "{'messages':[{'role':'User','content':'hi'}]}", NULL},
    {"two roles", "{'messages':[{'role':'user','content':'hi','role':'user'}]}", NULL},
    {"two contents", "{'messages':[{'role':'user','content':'hi','content':'ho'}]}", NULL},
    {"two messages arrays",
     "{'messages':[{'role':'user','content':'hi'}],'messages':[{'role':'user','content':'ho'}]}",
     NULL},
    {"messages not an array", "{'messages':{'role':'user','content':'hi'}}", NULL},
    {"messages empty", "{'messages':[]}", NULL},
    {"no messages", "{'model':'m'}", NULL},
};

static void test_lookup_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(lookups) / sizeof(lookups[0]); i++) {
        struct canon_key k;

        key_sq(lookups[i].req, &k);
        if (!lookups[i].text && k.lookup_text)
            fail_msg("%s: lookup text '%s', want none", lookups[i].what, k.lookup_text);
        if (lookups[i].text && (!k.lookup_text || strcmp(k.lookup_text, lookups[i].text) != 0))
            fail_msg("%s: lookup text '%s', want '%s'", lookups[i].what,
                     k.lookup_text ? k.lookup_text : "(none)", lookups[i].text);
        assert_int_equal(k.lookup_len, lookups[i].text ? strlen(lookups[i].text) : 0);
        canon_key_fini(&k);
    }
}

/* ---- the exact byte forms ------------------------------------------------ */

static void sha(const void *p, size_t n, uint8_t out[CANON_HASH_LEN])
{
    assert_non_null(SHA256(p, n, out));
}

/* The exact key is SHA-256(partition || 0x00 || normalised text). */
static void expect_exact(const struct canon_key *k, const char *norm)
{
    uint8_t msg[CANON_HASH_LEN + 1 + 256], want[CANON_HASH_LEN];
    size_t n = strlen(norm);

    assert_true(n <= 256);
    memcpy(msg, k->partition, CANON_HASH_LEN);
    msg[CANON_HASH_LEN] = 0x00;
    memcpy(msg + CANON_HASH_LEN + 1, norm, n);
    sha(msg, CANON_HASH_LEN + 1 + n, want);
    assert_memory_equal(k->exact, want, CANON_HASH_LEN);
}

static void test_exact_key_normalisation(void **state)
{
    struct canon_key k;

    (void)state;
    key_sq("{'model':'m','messages':[{'role':'user','content':'\\t Is  the US\\r\\nbig? \\n'}]}",
           &k);
    assert_string_equal(k.lookup_text, "\t Is  the US\r\nbig? \n");
    expect_exact(&k, "Is the US big?");
    canon_key_fini(&k);

    /* No text: the partition and an empty text. */
    key_sq("{'model':'m','messages':[{'role':'assistant','content':'x'}]}", &k);
    assert_null(k.lookup_text);
    expect_exact(&k, "");
    canon_key_fini(&k);
    key_sq("{'model':'m','messages':[{'role':'user','content':'   '}]}", &k);
    assert_null(k.lookup_text);
    expect_exact(&k, "");
    canon_key_fini(&k);
}

static void expect_form(const char *req, const char *tenant, const char *route, const char *want)
{
    cJSON *doc = sq(req);
    char *buf = NULL, *w = dq(want);
    size_t len = 0, cap = 0;
    uint8_t h[CANON_HASH_LEN];
    struct canon_key k;

    assert_int_equal(canon_partition_form(doc, tenant, route, &buf, &len, &cap, CANON_MAX), 0);
    assert_string_equal(buf, w);
    key_of(doc, tenant, route, &k);
    sha(buf, len, h);
    assert_memory_equal(k.partition, h, CANON_HASH_LEN);
    canon_key_fini(&k);
    free(buf);
    free(w);
    cJSON_Delete(doc);
}

/* Pins the documented partition form: changing it needs a new CANON_VERSION. */
static void test_partition_form(void **state)
{
    (void)state;
    expect_form("{'stream':true,'model':'m','user':'u','messages':[{'role':'system','content':'s'},"
                "{'role':'user','name':'al','content':[{'type':'text','text':'hi'},"
                "{'type':'image_url','image_url':{'url':'u','detail':'low'}}]}],'top_p':1.0}",
                "t", ROUTE,
                "['parrot-partition-v1','t','/v1/chat/completions',true,"
                "{'messages':[{'content':'s','role':'system'},{'content':[{'type':'text'},"
                "{'image_url':{'detail':'low','url':'u'},'type':'image_url'}],'name':'al',"
                "'role':'user'}],'model':'m','top_p':1}]");
    expect_form("{'model':'m','messages':[{'role':'user','content':'hi'}]}", "t", ROUTE,
                "['parrot-partition-v1','t','/v1/chat/completions',true,"
                "{'messages':[{'content':[{'type':'text'}],'role':'user'}],'model':'m'}]");
    expect_form("{'model':'m','messages':[{'role':'assistant','content':'hi'}]}", NULL, "r",
                "['parrot-partition-v1',null,'r',false,"
                "{'messages':[{'content':'hi','role':'assistant'}],'model':'m'}]");
}

/* No tenant/route pair can be spelled as another one. */
static void test_tenant_route_forgery(void **state)
{
    static const char *const pairs[][2] = {
        {"a", "b/c"},
        {"ab", "/c"},
        {"a/b", "c"},
        {"a\",\"b", "c"},
        {"a", "b\",\"c"},
        {"a\"", "b"},
        {"a", "\"b"},
        {"a\\", "b"},
        {"a", "\\b"},
        {"", "ab"},
        {"ab", ""},
        {NULL, "ab"},
        {"null", "ab"},
        {"ab", NULL},
        {"ab", "null"},
        {"a\nb", "c"},
        {"a\\nb", "c"},
        {"t", ROUTE},
        {"t", "/v1/completions"},
        {"t\",\"/v1", "/chat/completions"},
    };
    enum { N = sizeof(pairs) / sizeof(pairs[0]) };
    struct canon_key k[N];
    cJSON *doc = sq("{'model':'m','messages':[{'role':'user','content':'hi'}]}");

    (void)state;
    for (size_t i = 0; i < N; i++)
        key_of(doc, pairs[i][0], pairs[i][1], &k[i]);
    for (size_t i = 0; i < N; i++) {
        for (size_t j = i + 1; j < N; j++)
            if (same_partition(&k[i], &k[j]))
                fail_msg("tenant/route %zu and %zu collide", i, j);
    }
    for (size_t i = 0; i < N; i++)
        canon_key_fini(&k[i]);
    cJSON_Delete(doc);
}

/* A request whose message with a string of n bytes at messages[at]. */
static cJSON *big_request(size_t n, int at)
{
    cJSON *doc = sq("{'model':'m','messages':[{'role':'system','content':'s'},"
                    "{'role':'user','content':'q'}]}");
    char *s = malloc(n + 1);
    cJSON *msg = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "messages"), at);

    assert_non_null(s);
    memset(s, 'x', n);
    s[n] = '\0';
    assert_true(cJSON_ReplaceItemInObject(msg, "content", cJSON_CreateString(s)));
    free(s);
    return doc;
}

static void test_too_big(void **state)
{
    struct canon_key k;
    cJSON *doc;

    (void)state;
    /* The partition form would pass CANON_MAX. */
    doc = big_request(CANON_MAX, 0);
    memset(&k, 0xa5, sizeof(k));
    assert_int_equal(canon_request(doc, "t", ROUTE, &k), -E2BIG);
    assert_null(k.lookup_text);
    assert_int_equal(k.lookup_len, 0);
    canon_key_fini(&k);
    cJSON_Delete(doc);

    /* The lookup text would pass CANON_MAX. */
    doc = big_request(CANON_MAX + 1, 1);
    assert_int_equal(canon_request(doc, "t", ROUTE, &k), -E2BIG);
    assert_null(k.lookup_text);
    cJSON_Delete(doc);

    /* Large but within the caps. */
    doc = big_request(CANON_MAX / 2, 1);
    key_of(doc, "t", ROUTE, &k);
    assert_int_equal(k.lookup_len, CANON_MAX / 2);
    canon_key_fini(&k);
    cJSON_Delete(doc);
}

static void test_not_a_request(void **state)
{
    struct canon_key k;
    cJSON *v = sq("[1]");

    (void)state;
    assert_int_equal(canon_request(v, "t", ROUTE, &k), -EINVAL);
    assert_null(k.lookup_text);
    assert_int_equal(canon_request(NULL, "t", ROUTE, &k), -EINVAL);
    cJSON_Delete(v);
}

static void test_hex_and_fini(void **state)
{
    static const uint8_t h[] = {0x00, 0x01, 0xab, 0xff, 0x7f};
    char out[2 * CANON_HASH_LEN + 1];
    struct canon_key k;

    (void)state;
    canon_hex(h, sizeof(h), out);
    assert_string_equal(out, "0001abff7f");
    canon_hex(h, 0, out);
    assert_string_equal(out, "");

    memset(&k, 0, sizeof(k));
    canon_key_fini(&k);
    canon_key_fini(NULL);
    key_sq("{'model':'m','messages':[{'role':'user','content':'hi'}]}", &k);
    canon_hex(k.partition, CANON_HASH_LEN, out);
    assert_int_equal(strlen(out), 2 * CANON_HASH_LEN);
    canon_key_fini(&k);
    assert_null(k.lookup_text);
    canon_key_fini(&k);
}

/* Keys from a request's source text (canon_request_src), single-quoted. */
static void key_src(const char *req, struct canon_key *k)
{
    char *t = dq(req);
    cJSON *doc = cJSON_Parse(t);

    assert_non_null(doc);
    assert_int_equal(canon_request_src(doc, t, strlen(t), "tenant", ROUTE, k), 0);
    cJSON_Delete(doc);
    free(t);
}

/* Integers no double holds keep their digits; every other number keys as
 * before (canon_request without the text), so no existing key moved. */
static void test_big_integers_exact(void **state)
{
    static const char *const split[][2] = {
        /* 2^53 + 1 reads as 2^53 */
        {"{'model':'m','seed':9007199254740993}", "{'model':'m','seed':9007199254740992}"},
        {"{'model':'m','seed':-9007199254740993}", "{'model':'m','seed':-9007199254740992}"},
        {"{'model':'m','seed':18446744073709551617}", "{'model':'m','seed':18446744073709551616}"},
        /* deep, after strings holding digits and numbers that are fine */
        {"{'a':'123456789012345678901','b':[1.5,{'9007199254740993':[7,123456789012345678901]}]}",
         "{'a':'123456789012345678901','b':[1.5,{'9007199254740993':[7,123456789012345678900]}]}"},
    };
    static const char *const unchanged[] = {
        "{'model':'m','seed':9007199254740992,'n':1,'t':0.7,'x':-0,'y':1e400}",
        "{'model':'m','big':100000000000000000000,'neg':-123456789,'f':9007199254740993.0}",
        "{'model':'m','s':'9007199254740993','e':9007199254740993e0}",
    };
    struct canon_key a, b;

    (void)state;
    for (size_t i = 0; i < sizeof(split) / sizeof(split[0]); i++) {
        key_src(split[i][0], &a);
        key_src(split[i][1], &b);
        if (same_partition(&a, &b))
            fail_msg("%s and %s share a partition", split[i][0], split[i][1]);
        canon_key_fini(&a);
        canon_key_fini(&b);
    }
    for (size_t i = 0; i < sizeof(unchanged) / sizeof(unchanged[0]); i++) {
        key_src(unchanged[i], &a);
        key_sq(unchanged[i], &b);
        if (!same_partition(&a, &b))
            fail_msg("%s: the source text changed a key it must not", unchanged[i]);
        canon_key_fini(&a);
        canon_key_fini(&b);
    }
    /* One spelling per integer: leading zeros (which cJSON accepts) drop. */
    key_src("{'seed':009007199254740993}", &a);
    key_src("{'seed':9007199254740993}", &b);
    assert_true(same_partition(&a, &b));
    canon_key_fini(&a);
    canon_key_fini(&b);
    /* A text that is not the tree's: numbers key by their doubles. */
    {
        cJSON *doc = sq("{'seed':9007199254740993}");
        const char *other = "{\"seed\":9007199254740993,\"n\":2}";
        assert_int_equal(canon_request_src(doc, other, strlen(other), "tenant", ROUTE, &a), 0);
        key_sq("{'seed':9007199254740992}", &b);
        assert_true(same_partition(&a, &b));
        canon_key_fini(&a);
        canon_key_fini(&b);
        cJSON_Delete(doc);
    }
}

/* canon_print keeps members in their order, and prints what cJSON prints
 * for strings (every escape), integers and the floats an answer holds, but
 * an integer of 16 digits exactly (cJSON's "%1.15g" rounds it). */
static void test_print_in_order(void **state)
{
    static const char *const docs[] = {
        "{\"z\":1,\"a\":[1,-2,0,1741570283,999999999999999],\"m\":{\"y\":null,\"b\":true,"
        "\"c\":false},\"s\":\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f caf\\u00e9 "
        "\\ud83d\\ude00\","
        "\"f\":[1.5,0.1,-0.25,3.14159,2.5e-07,1e+20],\"e\":{},\"ea\":[]}",
        "[\"x\",{\"b\":1,\"a\":2}]",
    };
    char *buf = NULL;
    size_t len = 0, cap = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        cJSON *v = cJSON_Parse(docs[i]);
        char *want = cJSON_PrintUnformatted(v);

        len = 0;
        assert_int_equal(canon_print(v, &buf, &len, &cap, SIZE_MAX), 0);
        assert_string_equal(buf, want);
        assert_int_equal(len, strlen(want));
        free(want);
        cJSON_Delete(v);
    }
    cJSON *v = cJSON_Parse("[9007199254740991]");
    len = 0;
    assert_int_equal(canon_print(v, &buf, &len, &cap, SIZE_MAX), 0);
    assert_string_equal(buf, "[9007199254740991]");
    cJSON_Delete(v);
    /* The order is the input's: canon_json sorts the same object. */
    v = cJSON_Parse("{\"b\":1,\"a\":2}");
    len = 0;
    assert_int_equal(canon_json(v, &buf, &len, &cap, SIZE_MAX), 0);
    assert_string_equal(buf, "{\"a\":2,\"b\":1}");
    cJSON_Delete(v);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_forms),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test(test_json_append_and_cap),
        cmocka_unit_test(test_json_depth_and_invalid),
        cmocka_unit_test(test_answer_changing_fields),
        cmocka_unit_test(test_inert_fields),
        cmocka_unit_test(test_last_user_text),
        cmocka_unit_test(test_spellings),
        cmocka_unit_test(test_lookup_text),
        cmocka_unit_test(test_exact_key_normalisation),
        cmocka_unit_test(test_partition_form),
        cmocka_unit_test(test_tenant_route_forgery),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_not_a_request),
        cmocka_unit_test(test_hex_and_fini),
        cmocka_unit_test(test_big_integers_exact),
        cmocka_unit_test(test_print_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
