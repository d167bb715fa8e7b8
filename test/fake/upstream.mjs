// Scripted fake OpenAI-compatible upstream for parrot's integration tests.
//
// In-process:   import { startFake } from './fake/upstream.mjs';
//               const fake = await startFake();   // { port, url, stats(), reset(), close() }
// Stand-alone:  node test/fake/upstream.mjs [--port N]
//               prints one line {"listening":PORT} on stdout.
//
// Routes: POST /v1/chat/completions (echo of the last user message, or an
// SSE stream with "stream": true), POST /v1/completions (legacy: "completed:
// PROMPT" per prompt, plain or as text_completion chunks; stats.completions
// counts the calls), POST /v1/responses (plain, or typed events with
// "stream": true; stats.responses),
// GET /v1/models, GET /v1/models/{id},
// POST /v1/embeddings (8-dim, float32 values as JSON numbers or base64, one
// vector per input of a batch, `usage` counting the inputs' words),
// anything else 404.
// Control: GET /_fake/stats, POST /_fake/reset (not counted in stats).
//
// Embeddings script (for parrot's remote embedder, which sends no x-fake-*
// headers): POST /_fake/embed-script with a JSON object; /_fake/reset
// clears it. Fields (all optional):
//   dim: N             answer N-dim vectors from textVector() instead of the
//                      legacy 8-dim fakeEmbedding()
//   concepts: {text: name}  texts sharing a name get vectors with cosine
//                      1/(1+NOISE^2) ~ 0.94 (paraphrases); other texts are
//                      unrelated (cosine near 0 for dim >= 32)
//   mode: 'ok' (default) | 'status' (reply `status`, default 500) |
//         'garbage' (200 with a body that is not JSON) | 'wrong-dim' (200,
//         vectors one shorter than asked) | 'drop' (destroy the socket) |
//         'missing' (200 with one vector too few)
//   delayMs: N         wait N ms before answering
//   hold: N            hold the next N calls until POST /_fake/embed-release
// Stats: embedCalls, embedBatches (input count of each call, in order),
// embedInputs (every text received), embedHeld (calls held right now).
//
// Chat script (for audits, which parrot sends with only the client's
// credentials and an x-parrot-audit: 1 mark): POST /_fake/chat-script with
// a JSON object; /_fake/reset clears it. Fields (all optional):
//   answers: {text: content}  answer a chat whose last user message is text
//                      with content instead of the echo (e.g. one answer
//                      per entity, so paraphrases disagree or agree)
//   holdAudits: true   hold audit calls until POST /_fake/chat-release
//   status: N          answer every chat call with an OpenAI-shaped error N
// Stats: auditCalls (chat calls marked x-parrot-audit), auditHeld (held
// right now), lastAudit {headers, body} (the latest audit call).
//
// Scripting request headers (any /v1 route unless noted):
//   x-fake-status: N            reply N with an OpenAI-shaped error (429 adds retry-after: 0)
//   x-fake-delay-ms: N          wait N ms before the headers
//   x-fake-chunk-delay-ms: N    (stream) wait N ms between SSE events
//   x-fake-chunks: N            (chat) content is "w1 w2 ... wN"
//   x-fake-drop: before-headers destroy the socket before replying
//   x-fake-drop: mid-stream     (stream) destroy it after half the events
//   x-fake-bytes: N             (stream) N bytes of 64 KiB SSE events, honouring back-pressure
//   x-fake-finish: REASON       (chat) finish_reason REASON (length, content_filter, ...)
//                               instead of "stop" / "tool_calls"
//   x-fake-tool-calls: N        (chat) answer with N tool calls (content null,
//                               finish_reason "tool_calls"); names come from the
//                               request's tools (else fake_fn_I), ids are
//                               call_fake_<request>_<I>; streamed as OpenAI does:
//                               one chunk per call with index/id/type/name, then
//                               the arguments split over several chunks
//
// stats(): total, paths{path: count}, last{method,url,path,headers,body},
// lastBody (exact bytes of the latest response body sent, including
// streams so far), aborted (responses whose client went away before the
// fake finished), completed (streams fully sent), bigWritten (bytes handed
// to the socket for the latest x-fake-bytes stream), dropped (scripted
// drops), inflight (requests not yet closed), chat (POST
// /v1/chat/completions calls that reached the fake, whatever the
// outcome), chatByText{last user text: count of those calls}.

import http from 'node:http';
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';

export const FAKE_CREATED = 1700000000;
export const FAKE_MODELS = ['gpt-fake', 'gpt-fake-mini', 'text-embedding-fake'];
export const EMBEDDING_DIM = 8;
export const CONCEPT_NOISE = 0.25;
const BIG_EVENT_SIZE = 64 * 1024;
const MIN_EVENT_SIZE = 'data: x\n\n'.length;

// ---------------------------------------------------------------- helpers

function countWords(s) {
  const t = String(s).trim();
  return t === '' ? 0 : t.split(/\s+/).length;
}

function contentText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (part && typeof part.text === 'string' ? part.text : ''))
      .filter((s) => s !== '')
      .join(' ');
  }
  return '';
}

/** Text of the last message with role "user" ('' if none). */
export function lastUserText(body) {
  const msgs = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    if (msgs[i] && msgs[i].role === 'user') return contentText(msgs[i].content);
  }
  return '';
}

/** Assistant content the fake answers with. */
export function replyContent(body, chunks) {
  if (Number.isInteger(chunks) && chunks > 0) {
    const words = [];
    for (let i = 1; i <= chunks; i++) words.push(`w${i}`);
    return words.join(' ');
  }
  return `echo: ${lastUserText(body)}`;
}

/** Deterministic usage numbers for a request and its reply. */
export function fakeUsage(body, content) {
  const msgs = Array.isArray(body?.messages) ? body.messages : [];
  let prompt = 3;
  for (const m of msgs) prompt += 4 + countWords(contentText(m?.content));
  const completion = countWords(content);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * Deterministic embedding of dimension 8. Every component is k/256 with
 * |k| < 256, so it survives a float32 round trip (base64 encoding) exactly.
 */
export function fakeEmbedding(text) {
  let h = 2166136261;
  for (const b of Buffer.from(String(text), 'utf8')) {
    h ^= b;
    h = Math.imul(h, 16777619) >>> 0;
  }
  const out = [];
  for (let j = 0; j < EMBEDDING_DIM; j++) {
    const k = ((h >>> (j * 3)) + j * 37) % 255;
    out.push((k - 127) / 256);
  }
  return out;
}

/** Deterministic pseudo-random vector (entries in [-1, 1)) for a seed string. */
function seededVector(seed, dim) {
  let h = 2166136261;
  for (const b of Buffer.from(seed, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 16777619) >>> 0;
  }
  const out = [];
  for (let j = 0; j < dim; j++) {
    // xorshift32
    h ^= h << 13; h >>>= 0;
    h ^= h >>> 17;
    h ^= h << 5; h >>>= 0;
    out.push((h / 2 ** 32) * 2 - 1);
  }
  return out;
}

/**
 * The scripted embedding of `text`: texts mapped to one concept share its
 * vector plus CONCEPT_NOISE of their own, so two of them have a cosine of
 * about 1 / (1 + CONCEPT_NOISE^2); any other text gets its own vector.
 */
export function textVector(text, dim, concepts = {}) {
  const own = seededVector(`text:${text}`, dim);
  const name = Object.hasOwn(concepts, text) ? concepts[text] : null;
  if (name === null) return own;
  const base = seededVector(`concept:${name}`, dim);
  return base.map((x, j) => x + CONCEPT_NOISE * own[j]);
}

function float32Base64(vec) {
  const f = new Float32Array(vec);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
}

export function errorBody(message, type, code, param = null) {
  return { error: { message, type, param, code } };
}

/** Wait ms, or less if the response closes first (no timer left behind). */
function pauseUnlessClosed(res, ms) {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); res.off('close', done); resolve(); };
    const timer = setTimeout(done, ms);
    res.on('close', done);
  });
}

function intHeader(req, name) {
  const v = req.headers[name];
  if (v === undefined) return undefined;
  const n = Number.parseInt(String(v), 10);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * The tool calls the fake answers with for x-fake-tool-calls: N. `requestId`
 * is the fake's request counter, so two upstream calls never share ids.
 */
export function fakeToolCalls(body, n, requestId) {
  const tools = Array.isArray(body?.tools) ? body.tools : [];
  const names = tools.map((t) => t?.function?.name).filter((x) => typeof x === 'string' && x !== '');
  const calls = [];
  for (let i = 0; i < n; i++) {
    calls.push({
      id: `call_fake_${requestId}_${i}`,
      type: 'function',
      function: {
        name: names.length ? names[i % names.length] : `fake_fn_${i}`,
        arguments: JSON.stringify({ query: lastUserText(body), index: i }),
      },
    });
  }
  return calls;
}

/** Split s into pieces of at most `size` characters (at least one piece). */
function pieces(s, size) {
  const out = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out.length ? out : [''];
}

/** The SSE events (strings) the fake sends for a chat stream. */
export function chatStreamEvents({ id, model, content, usage, includeUsage, finish = 'stop', toolCalls = null }) {
  const base = { id, object: 'chat.completion.chunk', created: FAKE_CREATED, model, system_fingerprint: null };
  const ev = (obj) => `data: ${JSON.stringify(obj)}\n\n`;
  const choice = (delta, fin) => ({ index: 0, delta, logprobs: null, finish_reason: fin });
  const events = [];
  if (toolCalls && toolCalls.length) {
    events.push(ev({ ...base, choices: [choice({ role: 'assistant', content: null }, null)] }));
    toolCalls.forEach((tc, index) => {
      events.push(ev({
        ...base,
        choices: [choice({
          tool_calls: [{ index, id: tc.id, type: tc.type, function: { name: tc.function.name, arguments: '' } }],
        }, null)],
      }));
      for (const part of pieces(tc.function.arguments, 7)) {
        events.push(ev({ ...base, choices: [choice({ tool_calls: [{ index, function: { arguments: part } }] }, null)] }));
      }
    });
  } else {
    events.push(ev({ ...base, choices: [choice({ role: 'assistant', content: '' }, null)] }));
    const words = content.split(' ');
    words.forEach((w, i) => {
      events.push(ev({ ...base, choices: [choice({ content: i === 0 ? w : ` ${w}` }, null)] }));
    });
  }
  events.push(ev({ ...base, choices: [choice({}, finish)] }));
  if (includeUsage) events.push(ev({ ...base, choices: [], usage }));
  events.push('data: [DONE]\n\n');
  return events;
}

// ---------------------------------------------------------------- server

export async function startFake({ port = 0, host = '127.0.0.1' } = {}) {
  let counter = 0;
  let st;
  const freshStats = () => ({
    total: 0,
    paths: {},
    last: null,
    lastBody: null,
    aborted: 0,
    completed: 0,
    bigWritten: 0,
    dropped: 0,
    inflight: 0,
    chat: 0,
    chatByText: {},
    completions: 0,
    responses: 0,
    embedCalls: 0,
    embedBatches: [],
    embedInputs: [],
    embedHeld: 0,
    auditCalls: 0,
    auditHeld: 0,
    lastAudit: null,
  });
  st = freshStats();
  let embedScript = {};
  let held = []; // resolvers of held embeddings calls
  let chatScript = {};
  let heldAudits = []; // resolvers of held audit calls
  const releaseAudits = () => {
    const h = heldAudits;
    heldAudits = [];
    for (const r of h) r();
  };

  const sockets = new Set();
  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      // Never let a scripted behaviour crash the fake.
      if (!res.headersSent && !res.destroyed) {
        sendJson(res, 500, errorBody(`fake internal error: ${err.message}`, 'fake_error', 'fake_internal'));
      } else {
        res.destroy();
      }
    });
  });
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 60_000;
  server.requestTimeout = 0;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  function readBody(req) {
    return new Promise((resolve) => {
      const parts = [];
      req.on('data', (c) => parts.push(c));
      req.on('end', () => resolve(Buffer.concat(parts)));
      req.on('close', () => resolve(Buffer.concat(parts)));
      req.on('error', () => resolve(Buffer.concat(parts)));
    });
  }

  function commonHeaders(id) {
    return { 'x-request-id': `upstream-${id}`, 'openai-processing-ms': '1' };
  }

  function sendJson(res, status, obj, extra = {}) {
    const text = JSON.stringify(obj);
    st.lastBody = text;
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...extra,
    });
    res.end(text);
  }

  // Resolves true when the socket accepted more data, false when the client went away.
  function waitDrain(res) {
    if (res.destroyed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onDrain = () => { cleanup(); resolve(true); };
      const onClose = () => { cleanup(); resolve(false); };
      const cleanup = () => { res.off('drain', onDrain); res.off('close', onClose); };
      res.on('drain', onDrain);
      res.on('close', onClose);
    });
  }

  // Write one piece honouring back-pressure; resolves false if the client is gone.
  async function writePiece(res, piece) {
    if (res.destroyed) return false;
    const ok = res.write(piece);
    if (!ok) return waitDrain(res);
    return !res.destroyed;
  }

  function writeFlushed(res, piece) {
    return new Promise((resolve) => {
      if (res.destroyed) return resolve(false);
      res.write(piece, (err) => resolve(!err));
    });
  }

  async function handle(req, res) {
    const url = new URL(req.url, 'http://fake.invalid');
    const path = url.pathname;

    // Control endpoints: not counted in the stats.
    if (path === '/_fake/stats' && req.method === 'GET') {
      const text = JSON.stringify(snapshot());
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    if (path === '/_fake/reset' && req.method === 'POST') {
      await readBody(req);
      reset();
      res.writeHead(204);
      res.end();
      return;
    }
    if ((path === '/_fake/embed-script' || path === '/_fake/chat-script') && req.method === 'POST') {
      const kind = path === '/_fake/embed-script' ? 'embed' : 'chat';
      const raw = await readBody(req);
      try {
        const v = JSON.parse(raw.toString('utf8'));
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        if (kind === 'embed') embedScript = v;
        else chatScript = v;
      } catch (err) {
        sendJson(res, 400, errorBody(`fake: bad ${kind} script: ${err.message}`, 'fake_error', 'fake_script'));
        return;
      }
      res.writeHead(204);
      res.end();
      return;
    }
    if (path === '/_fake/chat-release' && req.method === 'POST') {
      await readBody(req);
      releaseAudits();
      res.writeHead(204);
      res.end();
      return;
    }
    if (path === '/_fake/embed-release' && req.method === 'POST') {
      await readBody(req);
      releaseHeld();
      res.writeHead(204);
      res.end();
      return;
    }

    // Track responses that the client abandoned before the fake finished.
    const gen = st;
    let deliberatelyDropped = false;
    gen.inflight += 1;
    res.on('close', () => {
      gen.inflight -= 1;
      if (!res.writableFinished && !deliberatelyDropped) gen.aborted += 1;
    });

    const body = await readBody(req);
    if (res.destroyed) return;
    const id = ++counter;
    st.total += 1;
    st.paths[path] = (st.paths[path] || 0) + 1;
    st.last = {
      method: req.method,
      url: req.url,
      path,
      headers: { ...req.headers },
      body: body.toString('utf8'),
    };
    if (path === '/v1/chat/completions' && req.method === 'POST') {
      st.chat += 1;
      let text = '';
      try { text = lastUserText(JSON.parse(body.toString('utf8'))); } catch { /* counted under '' */ }
      st.chatByText[text] = (st.chatByText[text] || 0) + 1;
      if (req.headers['x-parrot-audit'] !== undefined) {
        st.auditCalls += 1;
        st.lastAudit = { headers: { ...req.headers }, body: body.toString('utf8') };
        if (chatScript.holdAudits) {
          st.auditHeld += 1;
          await new Promise((resolve) => { heldAudits.push(resolve); });
          st.auditHeld -= 1;
          if (res.destroyed) return;
        }
      }
      if (Number.isInteger(chatScript.status)) {
        sendJson(res, chatScript.status, errorBody(`fake error ${chatScript.status}`, 'fake_error',
          `fake_${chatScript.status}`), commonHeaders(id));
        return;
      }
    }

    const drop = req.headers['x-fake-drop'];
    if (drop === 'before-headers') {
      deliberatelyDropped = true;
      st.dropped += 1;
      st.lastBody = '';
      req.socket.destroy();
      return;
    }

    const delay = intHeader(req, 'x-fake-delay-ms');
    if (delay && delay > 0) {
      await pauseUnlessClosed(res, delay);
      if (res.destroyed) return;
    }

    const status = intHeader(req, 'x-fake-status');
    if (status && status >= 400 && status <= 599) {
      const extra = commonHeaders(id);
      if (status === 429) extra['retry-after'] = '0';
      sendJson(res, status, errorBody(`fake error ${status}`, 'fake_error', `fake_${status}`), extra);
      return;
    }

    if (path === '/v1/chat/completions' && req.method === 'POST') {
      return chat(req, res, id, body, () => { deliberatelyDropped = true; st.dropped += 1; });
    }
    if (path === '/v1/models' && req.method === 'GET') {
      sendJson(res, 200, {
        object: 'list',
        data: FAKE_MODELS.map((m) => ({ id: m, object: 'model', created: 0, owned_by: 'fake' })),
      }, commonHeaders(id));
      return;
    }
    if (path.startsWith('/v1/models/') && req.method === 'GET') {
      const name = decodeURIComponent(path.slice('/v1/models/'.length));
      if (FAKE_MODELS.includes(name)) {
        sendJson(res, 200, { id: name, object: 'model', created: 0, owned_by: 'fake' }, commonHeaders(id));
      } else {
        sendJson(res, 404, errorBody(`The model '${name}' does not exist`, 'invalid_request_error', 'model_not_found', 'model'), commonHeaders(id));
      }
      return;
    }
    if (path === '/v1/embeddings' && req.method === 'POST') {
      return embeddings(req, res, id, body);
    }
    if (path === '/v1/completions' && req.method === 'POST') {
      return completions(req, res, id, body);
    }
    if (path === '/v1/responses' && req.method === 'POST') {
      return responses(req, res, id, body);
    }
    sendJson(res, 404, errorBody(`fake: no route for ${req.method} ${path}`, 'invalid_request_error', 'unknown_url'), commonHeaders(id));
  }

  function parseJson(res, id, body) {
    try {
      const v = JSON.parse(body.toString('utf8'));
      if (v && typeof v === 'object' && !Array.isArray(v)) return v;
    } catch { /* fall through */ }
    sendJson(res, 400, errorBody('fake: body is not a JSON object', 'invalid_request_error', 'invalid_json'), commonHeaders(id));
    return null;
  }

  function releaseHeld() {
    const r = held;
    held = [];
    st.embedHeld = 0;
    for (const fn of r) fn();
  }

  async function embeddings(req, res, id, raw) {
    const body = parseJson(res, id, raw);
    if (!body) return;
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    const b64 = body.encoding_format === 'base64';
    const sc = embedScript;
    const gen = st;
    gen.embedCalls += 1;
    gen.embedBatches.push(inputs.length);
    for (const inp of inputs) gen.embedInputs.push(typeof inp === 'string' ? inp : JSON.stringify(inp));
    if (Number.isInteger(sc.hold) && sc.hold > 0) {
      sc.hold -= 1;
      gen.embedHeld += 1;
      await new Promise((resolve) => { held.push(resolve); res.on('close', resolve); });
      if (res.destroyed) return;
    }
    if (Number.isInteger(sc.delayMs) && sc.delayMs > 0) {
      await pauseUnlessClosed(res, sc.delayMs);
      if (res.destroyed) return;
    }
    const mode = sc.mode || 'ok';
    if (mode === 'drop') {
      req.socket.destroy();
      return;
    }
    if (mode === 'status') {
      const status = Number.isInteger(sc.status) ? sc.status : 500;
      sendJson(res, status, errorBody(`fake embeddings error ${status}`, 'fake_error', `fake_${status}`), commonHeaders(id));
      return;
    }
    if (mode === 'garbage') {
      const text = '{"object":"list","data":[{"embedding":[0.1,0.2,';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    const dim = Number.isInteger(sc.dim) && sc.dim > 0 ? sc.dim - (mode === 'wrong-dim' ? 1 : 0) : 0;
    const vectorOf = (text) => (dim ? textVector(text, dim, sc.concepts || {}) : fakeEmbedding(text));
    let tokens = 0;
    const data = inputs.map((inp, index) => {
      const text = typeof inp === 'string' ? inp : JSON.stringify(inp);
      tokens += Math.max(1, countWords(text));
      const vec = vectorOf(text);
      // OpenAI computes float32 and prints those values as doubles.
      return { object: 'embedding', index, embedding: b64 ? float32Base64(vec) : vec.map(Math.fround) };
    });
    if (mode === 'missing') data.pop();
    sendJson(res, 200, {
      object: 'list',
      data,
      model: typeof body.model === 'string' ? body.model : 'text-embedding-fake',
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    }, commonHeaders(id));
  }

  // Responses API, plain or streamed as typed events: one assistant message "echo: LAST INPUT TEXT"
  // (x-fake-finish: incomplete answers status "incomplete"); "store" is
  // echoed (default true), as OpenAI does.
  async function responses(req, res, id, raw) {
    const body = parseJson(res, id, raw);
    if (!body) return;
    st.responses += 1;
    const input = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : (body.input || []);
    const text = `echo: ${lastUserText({ messages: input })}`;
    const incomplete = req.headers['x-fake-finish'] === 'incomplete';
    const inputTokens = 3 + input.reduce((n, m) => n + countWords(contentText(m?.content)), 0);
    const outputTokens = countWords(text);
    const response = {
      id: `resp_fake_${id}`,
      object: 'response',
      created_at: FAKE_CREATED,
      status: incomplete ? 'incomplete' : 'completed',
      error: null,
      incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null,
      instructions: body.instructions ?? null,
      model: typeof body.model === 'string' ? body.model : 'gpt-fake',
      output: [{
        type: 'message',
        id: `msg_fake_${id}`,
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text, annotations: [] }],
      }],
      parallel_tool_calls: true,
      store: body.store !== false,
      temperature: body.temperature ?? 1,
      tools: body.tools || [],
      usage: { input_tokens: inputTokens, output_tokens: outputTokens, total_tokens: inputTokens + outputTokens },
    };
    if (!body.stream) {
      sendJson(res, 200, response, commonHeaders(id));
      return;
    }
    // The typed events OpenAI streams, one word per output_text.delta; a
    // x-fake-drop: mid-stream request stops before response.completed.
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...commonHeaders(id) });
    let seq = 0;
    const events = [];
    const ev = (type, o) => events.push(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...o })}\n\n`);
    const started = { ...response, status: 'in_progress', output: [], usage: null };
    ev('response.created', { response: started });
    ev('response.in_progress', { response: started });
    const item = response.output[0];
    const at = { item_id: item.id, output_index: 0 };
    ev('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } });
    ev('response.content_part.added', { ...at, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
    for (const [k, w] of text.split(' ').entries()) {
      ev('response.output_text.delta', { ...at, content_index: 0, delta: k ? ` ${w}` : w, logprobs: [] });
    }
    ev('response.output_text.done', { ...at, content_index: 0, text, logprobs: [] });
    ev('response.content_part.done', { ...at, content_index: 0, part: item.content[0] });
    ev('response.output_item.done', { output_index: 0, item });
    if (req.headers['x-fake-drop'] !== 'mid-stream') {
      ev(incomplete ? 'response.incomplete' : 'response.completed', { response });
    }
    st.lastBody = events.join('');
    for (const e of events) {
      if (res.destroyed) return;
      if (!(await writePiece(res, e))) return;
    }
    res.end(() => { st.completed += 1; });
  }

  // Legacy completions: one choice per prompt, text "completed: PROMPT"
  // (or x-fake-chunks words), streamed as text_completion chunks.
  async function completions(req, res, id, raw) {
    const body = parseJson(res, id, raw);
    if (!body) return;
    st.completions += 1;
    const model = typeof body.model === 'string' ? body.model : 'gpt-fake-instruct';
    const prompts = Array.isArray(body.prompt) && body.prompt.length > 0 && !Number.isInteger(body.prompt[0])
      ? body.prompt : [body.prompt];
    const chunks = intHeader(req, 'x-fake-chunks');
    const finishHeader = req.headers['x-fake-finish'];
    const finish = typeof finishHeader === 'string' && finishHeader !== '' ? finishHeader : 'stop';
    const texts = prompts.map((p) => (Number.isInteger(chunks) && chunks > 0
      ? replyContent(body, chunks) : `completed: ${typeof p === 'string' ? p : JSON.stringify(p)}`));
    const promptTokens = prompts.reduce((n, p) => n + (typeof p === 'string' ? countWords(p) : p.length), 0);
    const completionTokens = texts.reduce((n, t) => n + countWords(t), 0);
    const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    const cid = `cmpl-fake-${id}`;
    const base = { id: cid, object: 'text_completion', created: FAKE_CREATED, model };
    if (!body.stream) {
      sendJson(res, 200, {
        ...base,
        choices: texts.map((text, index) => ({ text, index, logprobs: null, finish_reason: finish })),
        usage,
      }, commonHeaders(id));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...commonHeaders(id) });
    const events = [];
    const ev = (o) => events.push(`data: ${JSON.stringify(o)}\n\n`);
    texts.forEach((text, index) => {
      for (const [k, w] of text.split(' ').entries()) {
        ev({ ...base, choices: [{ text: k ? ` ${w}` : w, index, logprobs: null, finish_reason: null }] });
      }
      ev({ ...base, choices: [{ text: '', index, logprobs: null, finish_reason: finish }] });
    });
    if (body.stream_options?.include_usage === true) ev({ ...base, choices: [], usage });
    events.push('data: [DONE]\n\n');
    st.lastBody = events.join('');
    for (const e of events) {
      if (res.destroyed) return;
      if (!(await writePiece(res, e))) return;
    }
    res.end(() => { st.completed += 1; });
  }

  async function chat(req, res, id, raw, markDropped) {
    const body = parseJson(res, id, raw);
    if (!body) return;
    const model = typeof body.model === 'string' ? body.model : 'gpt-fake';
    const chunks = intHeader(req, 'x-fake-chunks');
    const nTools = intHeader(req, 'x-fake-tool-calls');
    const toolCalls = nTools && nTools > 0 ? fakeToolCalls(body, nTools, id) : null;
    const scripted = chatScript.answers && Object.hasOwn(chatScript.answers, lastUserText(body))
      ? String(chatScript.answers[lastUserText(body)]) : null;
    const content = toolCalls ? null : (scripted ?? replyContent(body, chunks));
    const usage = fakeUsage(body, toolCalls ? toolCalls.map((t) => t.function.arguments).join(' ') : content);
    const finishHeader = req.headers['x-fake-finish'];
    const finish = typeof finishHeader === 'string' && finishHeader !== ''
      ? finishHeader
      : (toolCalls ? 'tool_calls' : 'stop');
    const cid = `chatcmpl-fake-${id}`;

    if (!body.stream) {
      const message = { role: 'assistant', content, refusal: null };
      if (toolCalls) message.tool_calls = toolCalls;
      sendJson(res, 200, {
        id: cid,
        object: 'chat.completion',
        created: FAKE_CREATED,
        model,
        choices: [{
          index: 0,
          message,
          logprobs: null,
          finish_reason: finish,
        }],
        usage,
        system_fingerprint: null,
      }, commonHeaders(id));
      return;
    }

    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      ...commonHeaders(id),
    });
    st.lastBody = '';

    const big = intHeader(req, 'x-fake-bytes');
    if (big !== undefined && big > 0) return bigStream(res, big);

    const events = chatStreamEvents({
      id: cid,
      model,
      content,
      usage,
      includeUsage: body.stream_options?.include_usage === true,
      finish,
      toolCalls,
    });
    const chunkDelay = intHeader(req, 'x-fake-chunk-delay-ms') || 0;
    const dropMid = req.headers['x-fake-drop'] === 'mid-stream';
    const dropAt = dropMid ? Math.floor(events.length / 2) : -1;

    res.flushHeaders();
    for (let i = 0; i < events.length; i++) {
      if (i === dropAt) {
        markDropped();
        res.socket?.destroy();
        return;
      }
      if (i > 0 && chunkDelay > 0) {
        await pauseUnlessClosed(res, chunkDelay);
      }
      if (res.destroyed) return;
      st.lastBody += events[i];
      // Before a deliberate drop make sure the bytes left the process.
      const ok = i === dropAt - 1 ? await writeFlushed(res, events[i]) : await writePiece(res, events[i]);
      if (!ok) return;
    }
    res.end(() => { st.completed += 1; });
  }

  async function bigStream(res, total) {
    st.bigWritten = 0;
    st.lastBody = `<${total} bytes of SSE>`;
    const full = Buffer.from(`data: ${'x'.repeat(BIG_EVENT_SIZE - 8)}\n\n`);
    let left = total;
    res.flushHeaders();
    while (left > 0) {
      let size = Math.min(BIG_EVENT_SIZE, left);
      const rest = left - size;
      if (rest > 0 && rest < MIN_EVENT_SIZE) size = left - MIN_EVENT_SIZE; // keep the tail a valid event
      let piece;
      if (size === BIG_EVENT_SIZE) {
        piece = full;
      } else if (size >= MIN_EVENT_SIZE) {
        piece = Buffer.from(`data: ${'x'.repeat(size - 8)}\n\n`);
      } else {
        piece = Buffer.from('\n'.repeat(size)); // only when total itself < 9 bytes
      }
      if (res.destroyed) return;
      st.bigWritten += piece.length;
      left -= piece.length;
      const ok = await writePiece(res, piece);
      if (!ok) return;
    }
    res.end(() => { st.completed += 1; });
  }

  function snapshot() {
    return JSON.parse(JSON.stringify(st));
  }

  function reset() {
    st = freshStats();
    embedScript = {};
    releaseHeld();
    chatScript = {};
    releaseAudits();
  }

  server.listen(port, host);
  await once(server, 'listening');
  const actual = server.address().port;

  return {
    port: actual,
    url: `http://${host}:${actual}/v1`,
    origin: `http://${host}:${actual}`,
    stats: snapshot,
    reset,
    /** Set the embeddings script (see the header comment). */
    embedScript(sc) { embedScript = { ...sc }; },
    releaseEmbeddings: releaseHeld,
    /** Set the chat script (see the header comment). */
    chatScript(sc) { chatScript = { ...sc }; },
    releaseAudits,
    async close() {
      const closed = new Promise((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

// ---------------------------------------------------------------- CLI

function parseArgs(argv) {
  let port = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port' && i + 1 < argv.length) {
      port = Number.parseInt(argv[++i], 10);
    } else if (a.startsWith('--port=')) {
      port = Number.parseInt(a.slice('--port='.length), 10);
    } else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node upstream.mjs [--port N]\n');
      process.exit(0);
    } else {
      process.stderr.write(`upstream.mjs: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write('upstream.mjs: --port must be an integer 0..65535\n');
    process.exit(2);
  }
  return { port };
}

const isMain = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const { port } = parseArgs(process.argv.slice(2));
  const fake = await startFake({ port });
  process.stdout.write(`${JSON.stringify({ listening: fake.port })}\n`);
  const stop = async () => { await fake.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
