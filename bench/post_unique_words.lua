-- wrk -s bench/post_unique_words.lua URL : as ../shared/bench/post_unique.lua (a new last
-- user message on every request, so every request is a real miss), but the question
-- carries no digits: its counter is spelt in letters ("... fact xkcp zqcpbn about rivers").
-- post_unique.lua's questions differ only in their numbers, and parrot keeps questions
-- with other numbers apart (docs/cache.md, Lookup), so each is stored alone; these all
-- go to one group of one partition, whose HNSW index every store inserts into.
local path = os.getenv("BENCH_REQUEST") or "request.json"
local f = assert(io.open(path, "r"))
local body = f:read("*a"); f:close()
local pre, post = body:match("^(.*\"content\"%s*:%s*\")([^\"]*\"%s*}%s*%]%s*.*)$")
assert(pre, "request.json: the last message must be {\"role\":\"user\",\"content\":\"...\"}")
local id, n = 0, 0
function setup(thread) id = id + 1; thread:set("tid", id) end
function init(args) n = 0 end
-- k in base 9, a digit written as two letters ("bn", "cp", ...; the first and the
-- second from two sets that share none), after a prefix: no English word (one like
-- "in" or "be" is a stop word, and two questions would differ in nothing else), no two
-- one edit apart (parrot takes an unknown word one edit from another for a typo), and
-- prefixes two letters apart for the thread and the count, as word order is not compared.
local first, second = "bcdfghklm", "npqrtvwxz"
local function letters(prefix, k)
  local s = ""
  repeat
    local d = k % 9 + 1
    s = first:sub(d, d) .. second:sub(d, d) .. s
    k = math.floor(k / 9)
  until k == 0
  return prefix .. s
end
function request()
  n = n + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer sk-bench"},
    pre .. "Tell me fact " .. letters("xk", tid) .. " " .. letters("zq", n) .. " about rivers. " .. post)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
