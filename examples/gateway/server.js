'use strict';
// credits reference gateway: an OpenAI-compatible HTTP front for the credits
// PostgreSQL extension, with a built-in mock upstream and a live model
// switcher page.  See README.md beside this file.
//
// Environment:
//   DATABASE_URL  libpq-style URL of the database that has the extension, as a
//                 login granted credits_app and credits_reader (required)
//   PORT          HTTP port (default 8080)
//   HOST          address to listen on (default 127.0.0.1)
//   PGPOOL_MAX    connections in the pool (default 10)
//   DEFAULT_MAX_TOKENS  max_tokens when a request gives none (default 256)
//
// Nothing is cached: every answer comes from a transaction that reads the
// committed state of the pool.

const http = require('http');
const fs = require('fs');
const path = require('path');
const { Pool, Client } = require('pg');
const mock = require('./mock');

const PORT = parseInt(process.env.PORT || '8080', 10);
const HOST = process.env.HOST || '127.0.0.1';
const DATABASE_URL = process.env.DATABASE_URL;
const DEFAULT_MAX_TOKENS = parseInt(process.env.DEFAULT_MAX_TOKENS || '256', 10);
const MAX_BODY = 1 << 20;

if (!DATABASE_URL) {
  console.error('credits gateway: DATABASE_URL is not set');
  process.exit(2);
}

const pool = new Pool({
  connectionString: DATABASE_URL,
  max: parseInt(process.env.PGPOOL_MAX || '10', 10),
  application_name: 'credits-gateway',
});
pool.on('error', (err) => console.error('credits gateway: idle connection error:', err.message));

// ---------------------------------------------------------------------------
// SQLSTATE -> HTTP status.  The error body always carries the SQLSTATE as
// error.code, so a client can match on it exactly as a SQL client would.
const SQLSTATE_HTTP = {
  UC001: 402, // premium model unavailable and its provider has no fallback
  UC002: 404, // unknown or inactive model
  UC003: 403, // the model's provider is not enabled for the org
  UC004: 404, // unknown org
  UC005: 403, // user is not an active member of the org
  UC006: 409, // unknown hold, or hold already ended
  UC007: 422, // Idempotency-Key reused with a different request
  '22004': 400, // a required value is missing (X-Org-Id, X-User-Id, model)
  '22023': 400, // invalid value (empty id, negative tokens, ...)
  '22003': 400, // out of range (token counts too large)
  '22P02': 400, // malformed value
  '42501': 403, // the login lacks the role, or tenant confinement refused
  '25006': 503, // read-only server (a standby): retry on the primary
  '40001': 503, // serialization failure: retry
  '40P01': 503, // deadlock victim: retry
  '57P01': 503, // server shutting down
};
const ERROR_TYPE = { 400: 'invalid_request_error', 402: 'insufficient_quota', 403: 'permission_error',
  404: 'not_found_error', 409: 'conflict_error', 422: 'invalid_request_error', 502: 'upstream_error',
  503: 'service_unavailable', 500: 'server_error' };

class HttpError extends Error {
  constructor(status, code, message, extra) {
    super(message);
    this.status = status;
    this.code = code;
    this.extra = extra || {};
  }
}

function errorBody(status, code, message, extra) {
  return { error: Object.assign({ code, type: ERROR_TYPE[status] || 'error', message }, extra || {}) };
}

// An error of the database (or of the driver) as an HTTP status and body.
function fromDbError(err) {
  if (err instanceof HttpError) return { status: err.status, body: errorBody(err.status, err.code, err.message, err.extra) };
  if (err && typeof err.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code)) {
    let status = SQLSTATE_HTTP[err.code];
    if (!status) status = err.code.startsWith('08') || err.code.startsWith('53') || err.code.startsWith('57') ? 503 : 500;
    const extra = {};
    if (err.detail) extra.detail = err.detail;
    if (err.hint) extra.hint = err.hint;
    return { status, body: errorBody(status, err.code, err.message, extra) };
  }
  // connection refused, terminated connection, ...
  console.error('credits gateway:', err && err.stack ? err.stack : err);
  return { status: 503, body: errorBody(503, 'database_unavailable', String(err && err.message || err)) };
}

// ---------------------------------------------------------------------------
// One transaction on a pooled connection, confined to one tenant:
// set_config('credits.org_id', org, true) is SET LOCAL, so the setting ends
// with the transaction and never reaches the next request that gets this
// connection (also behind a transaction pooler such as PgBouncer).
async function tx(org, fn) {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    if (typeof org === 'string' && org !== '') {
      await client.query("SELECT set_config('credits.org_id', $1, true)", [org]);
    }
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch (e) {
      broken = true;
    }
    throw err;
  } finally {
    client.release(broken);
  }
}

// One row of a set-returning function as JSON: to_json renders timestamps
// as ISO 8601 (whatever DateStyle) and credit amounts as exact decimal
// strings.
async function one(client, sql, params) {
  const r = await client.query(sql, params);
  return r.rows.length ? r.rows[0].j : null;
}

// ---------------------------------------------------------------------------
// HTTP helpers
function header(req, name) {
  const v = req.headers[name];
  return typeof v === 'string' && v !== '' ? v : null;
}

function sendJson(res, status, body, headers) {
  const data = JSON.stringify(body);
  res.writeHead(status, Object.assign({
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(data),
    'cache-control': 'no-store',
  }, headers || {}));
  res.end(data);
}

function sendError(res, err) {
  const { status, body } = fromDbError(err);
  sendJson(res, status, body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'request_too_large', 'request body larger than ' + MAX_BODY + ' bytes'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------
// GET /v1/models
function modelObject(m) {
  return {
    id: m.model,
    object: 'model',
    created: 0,
    owned_by: m.provider,
    provider: m.provider,
    display_name: m.display_name,
    is_fallback: m.is_fallback,
    available: m.available,
    reason: m.reason,
    // 1.1: the limit that made the model unavailable and when it resets
    limited_by: m.limited_by === undefined ? null : m.limited_by,
    resets_at: m.resets_at === undefined ? null : m.resets_at,
    input_price: m.input_price,
    output_price: m.output_price,
  };
}

async function listModels(org, user) {
  return tx(org, async (c) => {
    const r = await c.query('SELECT to_json(m) AS j FROM credits.allowed_models($1, $2) m', [org, user]);
    return r.rows.map((row) => modelObject(row.j));
  });
}

async function handleModels(req, res) {
  const org = header(req, 'x-org-id');
  const user = header(req, 'x-user-id');
  const data = await listModels(org, user);
  sendJson(res, 200, { object: 'list', data });
}

// ---------------------------------------------------------------------------
// POST /v1/chat/completions
function badRequest(message, param) {
  return new HttpError(400, 'invalid_request', message, param ? { param } : undefined);
}

function parseCompletionRequest(text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw badRequest('the request body is not valid JSON');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the request body must be a JSON object');
  const { model, messages } = body;
  if (typeof model !== 'string' || model === '') throw badRequest('model must be a non-empty string', 'model');
  if (!Array.isArray(messages) || messages.length === 0) throw badRequest('messages must be a non-empty array', 'messages');
  for (const m of messages) {
    if (m === null || typeof m !== 'object' || typeof m.role !== 'string' ||
        !(typeof m.content === 'string' || Array.isArray(m.content))) {
      throw badRequest('each message needs a string role and a string (or array of parts) content', 'messages');
    }
  }
  let maxTokens = body.max_tokens === undefined || body.max_tokens === null ? DEFAULT_MAX_TOKENS : body.max_tokens;
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) throw badRequest('max_tokens must be a positive integer', 'max_tokens');
  if (body.stream !== undefined && typeof body.stream !== 'boolean') throw badRequest('stream must be a boolean', 'stream');
  return { model, messages, maxTokens, stream: body.stream === true };
}

let idCounter = 0;
function completionId(hold) {
  return 'chatcmpl-' + (hold && hold.hold_id !== undefined ? 'h' + hold.hold_id : 'x' + (++idCounter));
}

function creditHeaders(available, fellBack, replayed) {
  const h = {
    'x-credits-available': String(available),
    'x-credits-fell-back': fellBack ? 'true' : 'false',
  };
  if (replayed) h['idempotent-replayed'] = 'true';
  return h;
}

// What a completed request answers (also what its replay answers).
function completionBody(ctx, upstream, settle) {
  return {
    id: completionId(ctx.hold),
    object: 'chat.completion',
    created: ctx.created,
    model: ctx.hold.model,
    choices: [{ index: 0, message: { role: 'assistant', content: upstream.content }, finish_reason: 'stop' }],
    usage: {
      prompt_tokens: upstream.prompt_tokens,
      completion_tokens: upstream.completion_tokens,
      total_tokens: upstream.prompt_tokens + upstream.completion_tokens,
    },
    credits: creditsObject(ctx, settle),
  };
}

function creditsObject(ctx, settle) {
  return {
    requested_model: ctx.req.model,
    fell_back: ctx.hold.fell_back,
    request_id: ctx.requestId,
    hold_id: ctx.hold.hold_id,
    reserved: ctx.hold.reserved,
    cost: settle.cost,
    charged: settle.charged,
    shortfall: settle.shortfall,
    available: settle.available,
    exhausted: settle.available === '0',
    replayed: !!ctx.replayed,
  };
}

// The original outcome of a request whose Idempotency-Key was used before:
// its hold and, when it was settled, the settle entry of the ledger (read
// with credits_reader, confined to the org by credits.org_id).
async function originalOutcome(org, holdId) {
  return tx(org, async (c) => {
    const hold = await one(c, 'SELECT to_json(h) AS j FROM credits.holds h WHERE hold_id = $1', [holdId]);
    const settle = await one(c,
      "SELECT to_json(l) AS j FROM credits.ledger l WHERE hold_id = $1 AND kind = 'settle'", [holdId]);
    return { hold, settle };
  });
}

async function handleCompletion(req, res) {
  const org = header(req, 'x-org-id');
  const user = header(req, 'x-user-id');
  const requestId = header(req, 'idempotency-key');
  const creq = parseCompletionRequest(await readBody(req));
  const promptTokens = mock.promptTokens(creq.messages);
  const ctx = { req: creq, requestId, created: Math.floor(Date.now() / 1000), replayed: false };

  // 1. what to call, and hold the estimate (prompt + max_tokens at the
  //    model's price).  credit_reserve switches to the provider's fallback
  //    itself, atomically, when the pool (or a cap) cannot cover the
  //    premium estimate: the hold's model is the one to call.
  const reserved = await tx(org, async (c) => {
    const resolved = (await c.query('SELECT credits.resolve_model($1, $2, $3) AS m', [org, user, creq.model])).rows[0].m;
    const hold = await one(c,
      'SELECT to_json(r) AS j FROM credits.credit_reserve($1, $2, $3, $4, $5, $6) r',
      [org, user, creq.model, promptTokens, creq.maxTokens, requestId]);
    return { resolved, hold };
  });
  ctx.hold = reserved.hold;
  ctx.resolved = reserved.resolved;

  if (ctx.hold.replayed) return replay(res, org, ctx);

  // 2. the upstream call (the mock); when it fails, give the hold back
  let upstream;
  try {
    upstream = mock.complete(ctx.hold.model, creq.messages, creq.maxTokens);
  } catch (err) {
    if (!(err instanceof mock.UpstreamError)) throw err;
    const released = await tx(org, async (c) =>
      (await c.query('SELECT credits.credit_release($1)::text AS r', [ctx.hold.hold_id])).rows[0].r);
    throw new HttpError(502, 'upstream_error', err.message,
      { hold_id: ctx.hold.hold_id, released, model: ctx.hold.model });
  }

  if (creq.stream) return streamCompletion(res, org, ctx, upstream);

  // 3. charge the real usage; the rest of the hold goes back to the pool
  const settle = await settleHold(org, ctx.hold.hold_id, upstream.prompt_tokens, upstream.completion_tokens);
  sendJson(res, 200, completionBody(ctx, upstream, settle),
    creditHeaders(settle.available, ctx.hold.fell_back, false));
}

async function settleHold(org, holdId, input, output) {
  return tx(org, (c) => one(c, 'SELECT to_json(r) AS j FROM credits.credit_settle($1, $2, $3) r',
    [holdId, input, output]));
}

async function replay(res, org, ctx) {
  ctx.replayed = true;
  const { hold, settle } = await originalOutcome(org, ctx.hold.hold_id);
  if (!hold) throw new HttpError(409, 'request_unknown', 'the hold of this Idempotency-Key is not visible');
  ctx.created = Math.floor(Date.parse(hold.created_at) / 1000);
  if (hold.status === 'settled' && settle) {
    // regenerate the answer (the mock is deterministic) and check it is the
    // one that was charged
    const upstream = mock.complete(settle.model, ctx.req.messages, ctx.req.maxTokens);
    if (upstream.prompt_tokens !== Number(settle.input_tokens) ||
        upstream.completion_tokens !== Number(settle.output_tokens)) {
      throw new HttpError(422, 'idempotency_key_reused',
        'this Idempotency-Key was used for a different request');
    }
    const result = { cost: settle.cost, charged: settle.charged, shortfall: settle.shortfall,
      available: settle.available_after };
    if (ctx.req.stream) return streamCompletion(res, org, ctx, upstream, result);
    return sendJson(res, 200, completionBody(ctx, upstream, result),
      creditHeaders(result.available, ctx.hold.fell_back, true));
  }
  if (hold.status === 'released') {
    throw new HttpError(502, 'upstream_error',
      'the upstream failed for this Idempotency-Key and its hold was released; retry with a new key',
      { hold_id: hold.hold_id, replayed: true });
  }
  if (hold.status === 'open') {
    throw new HttpError(409, 'request_in_progress', 'a request with this Idempotency-Key is still in progress',
      { hold_id: hold.hold_id });
  }
  throw new HttpError(409, 'request_expired',
    'the request with this Idempotency-Key ended without a result (its hold ' + hold.status + '); retry with a new key',
    { hold_id: hold.hold_id });
}

// stream: true.  Headers go first, so x-credits-available is the pool right
// after the hold; the final chunk carries usage and the settled charge.
async function streamCompletion(res, org, ctx, upstream, replayedSettle) {
  res.writeHead(200, Object.assign({
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
  }, creditHeaders(replayedSettle ? replayedSettle.available : ctx.hold.available, ctx.hold.fell_back, !!replayedSettle)));
  const id = completionId(ctx.hold);
  const chunk = (delta, finish, extra) => 'data: ' + JSON.stringify(Object.assign({
    id, object: 'chat.completion.chunk', created: ctx.created, model: ctx.hold.model,
    choices: [{ index: 0, delta, finish_reason: finish }],
  }, extra || {})) + '\n\n';

  let closed = false;
  res.on('close', () => { closed = true; });
  let sent = 0;
  res.write(chunk({ role: 'assistant', content: '' }, null));
  for (const piece of upstream.pieces) {
    if (closed) break;
    res.write(chunk({ content: piece }, null));
    sent++;
    await new Promise((r) => setImmediate(r));
  }
  let settle = replayedSettle;
  if (!settle) {
    // a client that went away is charged what was generated until then
    const output = closed ? sent : upstream.completion_tokens;
    try {
      settle = await settleHold(org, ctx.hold.hold_id, upstream.prompt_tokens, output);
    } catch (err) {
      if (!closed) {
        res.write('data: ' + JSON.stringify(fromDbError(err).body) + '\n\n');
        res.end('data: [DONE]\n\n');
      }
      return;
    }
  }
  if (closed) return;
  res.write(chunk({}, 'stop', {
    usage: {
      prompt_tokens: upstream.prompt_tokens,
      completion_tokens: upstream.completion_tokens,
      total_tokens: upstream.prompt_tokens + upstream.completion_tokens,
    },
    credits: creditsObject(ctx, settle),
  }));
  res.end('data: [DONE]\n\n');
}

// ---------------------------------------------------------------------------
// Live updates: one connection LISTENs on channel "credits" (events of every
// org: thresholds, recharges, top-ups, period resets); each is pushed to the
// switcher pages open for that org as a server-sent event, and the page
// reloads /v1/models.  Notifications arrive after the commit that sent them,
// so the reload sees the new state.
const subscribers = new Map(); // org_id -> Set of responses
let listener = null;
let listenerReady = false;

function broadcast(org, event, data) {
  const set = org === null ? [].concat(...[...subscribers.values()].map((s) => [...s])) : subscribers.get(org);
  if (!set) return;
  const msg = 'event: ' + event + '\ndata: ' + JSON.stringify(data) + '\n\n';
  for (const res of set) res.write(msg);
}

async function startListener() {
  const client = new Client({ connectionString: DATABASE_URL, application_name: 'credits-gateway-listen' });
  client.on('notification', (n) => {
    if (n.channel !== 'credits') return;
    let ev;
    try {
      ev = JSON.parse(n.payload);
    } catch (e) {
      return;
    }
    if (ev && typeof ev.org_id === 'string') broadcast(ev.org_id, 'credits', ev);
  });
  const restart = (err) => {
    if (listener !== client) return;
    listener = null;
    listenerReady = false;
    console.error('credits gateway: LISTEN connection lost:', err && err.message);
    client.end().catch(() => {});
    setTimeout(() => startListener().catch(() => {}), 1000);
  };
  client.on('error', restart);
  client.on('end', () => restart(new Error('connection ended')));
  listener = client;
  try {
    await client.connect();
    await client.query('LISTEN credits');
  } catch (err) {
    restart(err);
    throw err;
  }
  listenerReady = true;
  // pages reload: events may have been missed while not listening
  broadcast(null, 'ready', { listening: true });
}

function handleEvents(req, res, url) {
  const org = url.searchParams.get('org');
  if (!org) throw badRequest('the org query parameter is required', 'org');
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
  });
  if (!subscribers.has(org)) subscribers.set(org, new Set());
  subscribers.get(org).add(res);
  // registered first, then "ready": whatever committed after the page's
  // reload on "ready" reaches it as an event
  res.write('retry: 1000\nevent: ready\ndata: ' + JSON.stringify({ listening: listenerReady }) + '\n\n');
  const ping = setInterval(() => res.write(': ping\n\n'), 15000);
  res.on('close', () => {
    clearInterval(ping);
    const set = subscribers.get(org);
    if (set) {
      set.delete(res);
      if (set.size === 0) subscribers.delete(org);
    }
  });
}

// ---------------------------------------------------------------------------
const INDEX = path.join(__dirname, 'public', 'index.html');

async function route(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const p = url.pathname;
  if (req.method === 'GET' && (p === '/' || p === '/index.html')) {
    const html = fs.readFileSync(INDEX);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(html);
  }
  if (req.method === 'GET' && p === '/favicon.ico') {
    res.writeHead(204, { 'cache-control': 'max-age=86400' });
    return res.end();
  }
  if (p === '/v1/models') {
    if (req.method !== 'GET') throw new HttpError(405, 'method_not_allowed', 'use GET');
    return handleModels(req, res);
  }
  if (p === '/v1/chat/completions') {
    if (req.method !== 'POST') throw new HttpError(405, 'method_not_allowed', 'use POST');
    return handleCompletion(req, res);
  }
  if (p === '/v1/events' && req.method === 'GET') return handleEvents(req, res, url);
  if (p === '/healthz' && req.method === 'GET') {
    await pool.query('SELECT 1');
    return sendJson(res, 200, { ok: true, listening: listenerReady });
  }
  throw new HttpError(404, 'not_found', 'no route for ' + req.method + ' ' + p);
}

const server = http.createServer((req, res) => {
  route(req, res).catch((err) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendError(res, err);
  });
});

startListener().catch((err) => console.error('credits gateway: LISTEN failed:', err.message));
server.listen(PORT, HOST, () => {
  console.log('credits gateway listening on http://' + HOST + ':' + server.address().port + '/');
});

function shutdown() {
  server.close();
  for (const set of subscribers.values()) for (const res of set) res.end();
  const l = listener;
  listener = null;
  Promise.allSettled([l ? l.end() : null, pool.end()]).then(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
