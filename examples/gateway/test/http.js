'use strict';
// HTTP tests of the gateway (run by test/scripts/gateway.sh).  Every answer
// is checked against what the database committed, read over a superuser
// connection: the ledger, the holds and pool_status.
//
//   GATEWAY_URL          the running gateway, e.g. http://127.0.0.1:8080
//   ADMIN_DATABASE_URL   a superuser connection to the gateway's database
//
// Prints "ok N - name" / "not ok N - name" and exits 1 when any failed.

const assert = require('assert/strict');
const http = require('http');
const { Client } = require('pg');
const mock = require('../mock');

const URL_ = process.env.GATEWAY_URL;
const db = new Client({ connectionString: process.env.ADMIN_DATABASE_URL });

// --- harness ----------------------------------------------------------------
const tests = [];
const test = (name, fn) => tests.push({ name, fn });
async function run() {
  await db.connect();
  let n = 0;
  let failed = 0;
  for (const t of tests) {
    n++;
    try {
      await t.fn();
      console.log(`ok ${n} - ${t.name}`);
    } catch (err) {
      failed++;
      console.log(`not ok ${n} - ${t.name}`);
      console.log(String(err && err.stack || err).split('\n').map((l) => '#   ' + l).join('\n'));
    }
  }
  console.log(`1..${n}`);
  await db.end();
  if (failed) {
    console.log(`# ${failed} of ${n} failed`);
    process.exit(1);
  }
}

async function q(sql, params) {
  return (await db.query(sql, params)).rows;
}
async function q1(sql, params) {
  const rows = await q(sql, params);
  assert.equal(rows.length, 1, 'one row from: ' + sql);
  return rows[0];
}

// request(method, path, {headers, body}) -> {status, headers, text, json}
function request(method, path, opts = {}) {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? null
      : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    const req = http.request(URL_ + path, {
      method,
      headers: Object.assign(body !== null ? { 'content-type': 'application/json' } : {}, opts.headers || {}),
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch (e) { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.setTimeout(30000, () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
    if (body !== null) req.write(body);
    req.end();
  });
}
const who = (org, user, extra) => Object.assign({ 'x-org-id': org }, user ? { 'x-user-id': user } : {}, extra || {});
const chat = (org, user, body, extra) => request('POST', '/v1/chat/completions', { headers: who(org, user, extra), body });
const msgs = (text) => [{ role: 'system', content: 'You are a test.' }, { role: 'user', content: text }];

function expectError(r, status, code) {
  assert.equal(r.status, status, `status of ${r.text}`);
  assert.match(r.headers['content-type'], /^application\/json/);
  assert.ok(r.json && r.json.error, 'an error object: ' + r.text);
  assert.equal(r.json.error.code, code, r.text);
  assert.equal(typeof r.json.error.message, 'string');
}

// the SSE data lines of a streamed answer
function sseData(text) {
  return text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
}

async function pool(org) {
  return q1('SELECT available::text, reserved::text, allowance_used::text, exhausted, ' +
            'period_end::text FROM credits.pool_status WHERE org_id = $1', [org]);
}
async function ledgerCount(org) {
  return Number((await q1('SELECT count(*) AS n FROM credits.ledger WHERE org_id = $1', [org])).n);
}
async function settleOf(holdId) {
  const rows = await q("SELECT model, input_tokens::int, output_tokens::int, cost::text, charged::text, " +
                       "shortfall::text, available_after::text FROM credits.ledger " +
                       "WHERE hold_id = $1 AND kind = 'settle'", [holdId]);
  assert.equal(rows.length, 1, 'one settle entry for hold ' + holdId);
  return rows[0];
}
async function holdStatus(holdId) {
  return (await q1('SELECT status FROM credits.holds WHERE hold_id = $1', [holdId])).status;
}
async function sameCredit(a, b) {
  return (await q1('SELECT $1::credits.credit = $2::credits.credit AS eq', [a, b])).eq;
}

// --- set-up -------------------------------------------------------------------
// acme: 2 members x 0.05 credits = a pool of 0.1; openai and anthropic.
// other: a second tenant with the default plan, openai only.
test('set-up: two orgs', async () => {
  await q(`SELECT credits.create_org('acme', allowance_per_user => '0.05')`);
  await q(`SELECT credits.enable_provider('acme', 'openai'), credits.enable_provider('acme', 'anthropic')`);
  await q(`SELECT credits.add_member('acme', 'alice'), credits.add_member('acme', 'bob')`);
  await q(`SELECT credits.create_org('other')`);
  await q(`SELECT credits.enable_provider('other', 'openai'), credits.add_member('other', 'carol')`);
  assert.equal((await pool('acme')).available, '0.1');
});

test('GET / serves the model switcher page', async () => {
  const r = await request('GET', '/');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/html/);
  assert.match(r.text, /<title>Model switcher/);
  assert.match(r.text, /\/v1\/events\?org=/);
});

test('GET /v1/models lists allowed_models, all available', async () => {
  const r = await request('GET', '/v1/models', { headers: who('acme', 'alice') });
  assert.equal(r.status, 200);
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.equal(r.json.object, 'list');
  const want = (await q(`SELECT to_json(m) AS j FROM credits.allowed_models('acme', 'alice') m`)).map((x) => x.j);
  assert.ok(want.length >= 6, 'openai and anthropic models');
  for (const w of want) {
    assert.ok('limited_by' in w && 'resets_at' in w,
      'credits.allowed_models returns limited_by and resets_at (1.1): ' + JSON.stringify(w));
  }
  assert.deepEqual(r.json.data, want.map((m) => ({
    id: m.model, object: 'model', created: 0, owned_by: m.provider, provider: m.provider,
    display_name: m.display_name, is_fallback: m.is_fallback, available: true, reason: null,
    limited_by: null, resets_at: null, input_price: m.input_price, output_price: m.output_price,
  })));
  assert.deepEqual([...new Set(r.json.data.map((m) => m.owned_by))], ['anthropic', 'openai']);
  // without X-User-Id: the org's view, same models
  const o = await request('GET', '/v1/models', { headers: who('acme') });
  assert.equal(o.status, 200);
  assert.deepEqual(o.json.data.map((m) => m.id), r.json.data.map((m) => m.id));
});

let first;
test('POST /v1/chat/completions charges exactly what the ledger shows', async () => {
  const text = 'Hello from the gateway test, how are you today?';
  const r = await chat('acme', 'alice', { model: 'gpt-4o', messages: msgs(text), max_tokens: 16 });
  assert.equal(r.status, 200, r.text);
  const b = r.json;
  const p = Math.ceil(('You are a test.'.length + text.length) / 4);
  const c = mock.completionTokens('gpt-4o', msgs(text), 16);
  assert.ok(c >= 1 && c <= 16);
  assert.equal(b.object, 'chat.completion');
  assert.equal(b.model, 'gpt-4o');
  assert.deepEqual(b.usage, { prompt_tokens: p, completion_tokens: c, total_tokens: p + c });
  assert.equal(b.choices[0].message.role, 'assistant');
  assert.equal(b.choices[0].message.content, mock.complete('gpt-4o', msgs(text), 16).content);
  assert.equal(r.headers['x-credits-fell-back'], 'false');
  assert.equal(b.credits.fell_back, false);
  assert.equal(b.credits.replayed, false);
  const s = await settleOf(b.credits.hold_id);
  assert.equal(s.model, 'gpt-4o');
  assert.equal(s.input_tokens, p);
  assert.equal(s.output_tokens, c);
  assert.equal(b.credits.cost, s.cost);
  assert.equal(b.credits.charged, s.charged);
  assert.equal(s.shortfall, '0');
  assert.equal(s.cost, (await q1(`SELECT credits.cost('gpt-4o', $1, $2)::text AS c`, [p, c])).c);
  assert.equal(s.charged, s.cost);
  // the hold held the estimate (prompt + max_tokens) and is settled
  assert.equal(b.credits.reserved, (await q1(`SELECT credits.cost('gpt-4o', $1, 16)::text AS c`, [p])).c);
  assert.equal(await holdStatus(b.credits.hold_id), 'settled');
  const pl = await pool('acme');
  assert.equal(r.headers['x-credits-available'], pl.available);
  assert.equal(b.credits.available, pl.available);
  assert.equal(s.available_after, pl.available);
  assert.equal(pl.reserved, '0');
  assert.equal(pl.allowance_used, s.charged);
  assert.ok(await sameCredit((await q1(`SELECT ('0.1'::credits.credit - $1::credits.credit)::text AS a`, [s.charged])).a, pl.available));
  first = b;
});

test('Idempotency-Key: a retry answers the original result and is not charged again', async () => {
  const body = { model: 'gpt-4o', messages: msgs('an idempotent question'), max_tokens: 12 };
  const a = await chat('acme', 'bob', body, { 'idempotency-key': 'idem-1' });
  assert.equal(a.status, 200, a.text);
  assert.equal(a.json.credits.request_id, 'idem-1');
  const before = await pool('acme');
  const entries = await ledgerCount('acme');
  const b = await chat('acme', 'bob', body, { 'idempotency-key': 'idem-1' });
  assert.equal(b.status, 200, b.text);
  assert.equal(b.headers['idempotent-replayed'], 'true');
  assert.equal(a.headers['idempotent-replayed'], undefined);
  for (const h of ['x-credits-available', 'x-credits-fell-back']) assert.equal(b.headers[h], a.headers[h], h);
  const strip = (x) => Object.assign({}, x, { created: 0, credits: Object.assign({}, x.credits, { replayed: null }) });
  assert.deepEqual(strip(b.json), strip(a.json));
  assert.equal(b.json.credits.replayed, true);
  assert.deepEqual(await pool('acme'), before);
  assert.equal(await ledgerCount('acme'), entries);
  assert.equal(Number((await q1(`SELECT count(*) AS n FROM credits.ledger WHERE org_id = 'acme' AND request_id = 'idem-1'`)).n), 1);
  assert.equal(Number((await q1(`SELECT count(*) AS n FROM credits.ledger WHERE hold_id = $1 AND kind = 'settle'`, [a.json.credits.hold_id])).n), 1);
  // replayed as a stream: the same content and charge, still nothing charged
  const s = await chat('acme', 'bob', Object.assign({}, body, { stream: true }), { 'idempotency-key': 'idem-1' });
  assert.equal(s.status, 200, s.text);
  assert.equal(s.headers['idempotent-replayed'], 'true');
  const d = sseData(s.text);
  assert.equal(d[d.length - 1], '[DONE]');
  const chunks = d.slice(0, -1).map((x) => JSON.parse(x));
  assert.equal(chunks.map((x) => x.choices[0].delta.content || '').join(''), a.json.choices[0].message.content);
  assert.equal(chunks[chunks.length - 1].credits.charged, a.json.credits.charged);
  assert.deepEqual(await pool('acme'), before);
  assert.equal(await ledgerCount('acme'), entries);
  // the same key with another request: UC007, 422, nothing charged
  const c = await chat('acme', 'bob', Object.assign({}, body, { max_tokens: 13 }), { 'idempotency-key': 'idem-1' });
  expectError(c, 422, 'UC007');
  assert.equal(await ledgerCount('acme'), entries);
  // keys are per org: the same key in another org is another request
  const o = await chat('other', 'carol', body, { 'idempotency-key': 'idem-1' });
  assert.equal(o.status, 200, o.text);
  assert.equal(o.json.credits.replayed, false);
  assert.equal((await settleOf(o.json.credits.hold_id)).charged, o.json.credits.charged);
  assert.equal(await ledgerCount('acme'), entries);
});

test('an upstream failure releases the hold: nothing charged, 502', async () => {
  const before = await pool('acme');
  const entries = await ledgerCount('acme');
  const body = { model: 'gpt-4o', messages: msgs('please fail ' + mock.FAIL_MARKER), max_tokens: 20 };
  const r = await chat('acme', 'alice', body, { 'idempotency-key': 'fail-1' });
  expectError(r, 502, 'upstream_error');
  const holdId = r.json.error.hold_id;
  assert.ok(Number.isInteger(holdId));
  assert.equal(await holdStatus(holdId), 'released');
  const kinds = (await q('SELECT kind, charged::text FROM credits.ledger WHERE hold_id = $1 ORDER BY entry_id', [holdId]));
  assert.deepEqual(kinds, [{ kind: 'hold', charged: '0' }, { kind: 'release', charged: '0' }]);
  assert.deepEqual(await pool('acme'), before);
  assert.equal(await ledgerCount('acme'), entries + 2);
  // its retry answers the same failure and changes nothing
  const again = await chat('acme', 'alice', body, { 'idempotency-key': 'fail-1' });
  expectError(again, 502, 'upstream_error');
  assert.equal(again.json.error.hold_id, holdId);
  assert.equal(again.json.error.replayed, true);
  assert.deepEqual(await pool('acme'), before);
  assert.equal(await ledgerCount('acme'), entries + 2);
  // a failing stream too: a JSON error before any event
  const st = await chat('acme', 'alice', Object.assign({}, body, { stream: true }));
  expectError(st, 502, 'upstream_error');
  assert.equal(await holdStatus(st.json.error.hold_id), 'released');
  assert.deepEqual(await pool('acme'), before);
});

test('stream: true answers server-sent events ending in data: [DONE], charged as settled', async () => {
  const body = { model: 'gpt-4o', messages: msgs('stream this please'), max_tokens: 10, stream: true };
  const r = await chat('acme', 'alice', body);
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'], /^text\/event-stream/);
  assert.equal(r.headers['x-credits-fell-back'], 'false');
  assert.ok(r.text.endsWith('data: [DONE]\n\n'), 'ends with data: [DONE]');
  const d = sseData(r.text);
  assert.equal(d.filter((x) => x === '[DONE]').length, 1);
  const chunks = d.slice(0, -1).map((x) => JSON.parse(x));
  const up = mock.complete('gpt-4o', body.messages, 10);
  assert.ok(chunks.every((x) => x.object === 'chat.completion.chunk' && x.model === 'gpt-4o'));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.equal(chunks.map((x) => x.choices[0].delta.content || '').join(''), up.content);
  const last = chunks[chunks.length - 1];
  assert.equal(last.choices[0].finish_reason, 'stop');
  assert.deepEqual(last.usage, { prompt_tokens: up.prompt_tokens, completion_tokens: up.completion_tokens,
    total_tokens: up.prompt_tokens + up.completion_tokens });
  const s = await settleOf(last.credits.hold_id);
  assert.equal(s.input_tokens, up.prompt_tokens);
  assert.equal(s.output_tokens, up.completion_tokens);
  assert.equal(last.credits.charged, s.charged);
  assert.equal(last.credits.available, (await pool('acme')).available);
  // the header was sent before the settle: the pool with the hold counted
  const held = await q1(`SELECT available_after::text AS a FROM credits.ledger WHERE hold_id = $1 AND kind = 'hold'`, [last.credits.hold_id]);
  assert.equal(r.headers['x-credits-available'], held.a);
});

test('the pool runs dry: the call falls back, header x-credits-fell-back: true', async () => {
  const left = (await pool('acme')).available;
  // 40,000 characters: 10,000 prompt tokens, far beyond what gpt-4o may hold
  const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'x'.repeat(40000) }], max_tokens: 8 };
  const r = await chat('acme', 'alice', body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.model, 'gpt-4o-mini');
  assert.equal(r.headers['x-credits-fell-back'], 'true');
  assert.equal(r.json.credits.fell_back, true);
  assert.equal(r.json.credits.requested_model, 'gpt-4o');
  assert.equal(r.json.usage.prompt_tokens, 10000);
  const s = await settleOf(r.json.credits.hold_id);
  assert.equal(s.model, 'gpt-4o-mini');
  assert.equal(s.charged, left);                      // what was left, no more
  assert.equal(r.json.credits.charged, left);
  assert.equal(s.shortfall, '0');                     // a fallback is never short
  assert.equal(r.headers['x-credits-available'], '0');
  assert.equal(r.json.credits.exhausted, true);
  const pl = await pool('acme');
  assert.equal(pl.available, '0');
  assert.equal(pl.exhausted, true);
  // now every premium call is switched, and free
  for (const [asked, used] of [['gpt-4o', 'gpt-4o-mini'], ['claude-sonnet-4-5', 'claude-haiku-4-5']]) {
    const f = await chat('acme', 'bob', { model: asked, messages: msgs('and now?'), max_tokens: 8 });
    assert.equal(f.status, 200, f.text);
    assert.equal(f.json.model, used);
    assert.equal(f.headers['x-credits-fell-back'], 'true');
    assert.equal(f.headers['x-credits-available'], '0');
    assert.equal((await settleOf(f.json.credits.hold_id)).charged, '0');
    assert.equal(f.json.credits.charged, '0');
  }
});

test('GET /v1/models when the pool is exhausted: premium grayed, limited_by pool, resets_at', async () => {
  const pl = await pool('acme');
  for (const user of ['alice', null]) {
    const r = await request('GET', '/v1/models', { headers: who('acme', user) });
    assert.equal(r.status, 200);
    assert.ok(r.json.data.length >= 6);
    for (const m of r.json.data) {
      if (m.is_fallback) {
        assert.equal(m.available, true, m.id);
        assert.equal(m.reason, null, m.id);
        assert.equal(m.limited_by, null, m.id);
        assert.equal(m.resets_at, null, m.id);
      } else {
        assert.equal(m.available, false, m.id);
        assert.equal(m.reason, 'credits_exhausted', m.id);
        assert.equal(m.limited_by, 'pool', m.id);
        assert.equal(typeof m.resets_at, 'string', m.id + ' resets_at');
        const same = await q1('SELECT $1::timestamptz = $2::timestamptz AS eq', [m.resets_at, pl.period_end]);
        assert.equal(same.eq, true, `${m.id} resets_at ${m.resets_at} is the next period start`);
      }
    }
  }
});

test('a member cap and a team cap: limited_by member_cap / team_cap, the call falls back', async () => {
  await q(`SELECT credits.create_org('caps', allowance_per_user => 1)`);
  await q(`SELECT credits.enable_provider('caps', 'openai')`);
  await q(`SELECT credits.add_member('caps', 'dan', cap => '0.02'), credits.add_member('caps', 'eve'),
                  credits.add_member('caps', 'fay')`);
  await q(`SELECT credits.create_team('caps', 'red', cap => '0.02')`);
  await q(`SELECT credits.set_member_team('caps', 'eve', 'red')`);
  // dan and eve use up their cap / their team's cap through the gateway: a
  // premium call the cap covers, then one it does not (switched to the
  // fallback, charged what is left of the cap)
  for (const user of ['dan', 'eve']) {
    const a = await chat('caps', user, { model: 'gpt-4o', messages: [{ role: 'user', content: 'z'.repeat(80) }], max_tokens: 8 });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.model, 'gpt-4o', user);
    assert.equal(a.headers['x-credits-fell-back'], 'false', user);
    const b = await chat('caps', user, { model: 'gpt-4o', messages: [{ role: 'user', content: 'z'.repeat(8000) }], max_tokens: 8 });
    assert.equal(b.status, 200, b.text);
    assert.equal(b.json.model, 'gpt-4o-mini', user);
    assert.equal(b.headers['x-credits-fell-back'], 'true', user);
    const left = (await q1(`SELECT ('0.02'::credits.credit - $1::credits.credit)::text AS l`, [a.json.credits.charged])).l;
    assert.equal(b.json.credits.charged, left, user + ' is charged what was left of the cap');
    assert.equal((await settleOf(b.json.credits.hold_id)).charged, left);
  }
  const end = (await pool('caps')).period_end;
  const want = { dan: ['user_cap_reached', 'member_cap'], eve: ['team_cap_reached', 'team_cap'] };
  for (const [user, [reason, limit]] of Object.entries(want)) {
    const r = await request('GET', '/v1/models', { headers: who('caps', user) });
    assert.equal(r.status, 200);
    for (const m of r.json.data) {
      if (m.is_fallback) {
        assert.deepEqual([m.available, m.reason, m.limited_by, m.resets_at], [true, null, null, null], user + ' ' + m.id);
        continue;
      }
      assert.deepEqual([m.available, m.reason, m.limited_by], [false, reason, limit], user + ' ' + m.id);
      assert.equal((await q1('SELECT $1::timestamptz = $2::timestamptz AS eq', [m.resets_at, end])).eq, true,
        `${user} ${m.id} resets_at ${m.resets_at} is the next period start ${end}`);
    }
  }
  // fay and the org's view are not limited
  for (const user of ['fay', null]) {
    const r = await request('GET', '/v1/models', { headers: who('caps', user) });
    assert.ok(r.json.data.every((m) => m.available && m.limited_by === null && m.resets_at === null), String(user));
  }
});

test('errors: JSON with the SQLSTATE, 4xx by the documented map, nothing charged', async () => {
  const entries = await ledgerCount('acme');
  const ok = { model: 'gpt-4o', messages: msgs('hi'), max_tokens: 8 };
  expectError(await request('GET', '/v1/models', { headers: who('nope') }), 404, 'UC004');
  expectError(await chat('nope', 'alice', ok), 404, 'UC004');
  expectError(await chat('acme', 'mallory', ok), 403, 'UC005');
  expectError(await chat('acme', 'alice', Object.assign({}, ok, { model: 'gpt-9' })), 404, 'UC002');
  expectError(await chat('other', 'carol', Object.assign({}, ok, { model: 'claude-sonnet-4-5' })), 403, 'UC003');
  expectError(await chat('acme', null, ok), 400, '22004');
  expectError(await request('GET', '/v1/models', {}), 400, '22004');
  expectError(await chat('acme', 'alice', '{"model": "gpt-4o", '), 400, 'invalid_request');
  expectError(await chat('acme', 'alice', { messages: msgs('hi') }), 400, 'invalid_request');
  expectError(await chat('acme', 'alice', { model: 'gpt-4o', messages: [] }), 400, 'invalid_request');
  const mt = await chat('acme', 'alice', Object.assign({}, ok, { max_tokens: 0 }));
  expectError(mt, 400, 'invalid_request');
  assert.equal(mt.json.error.param, 'max_tokens');
  expectError(await chat('acme', 'alice', Object.assign({}, ok, { stream: 'yes' })), 400, 'invalid_request');
  // an estimate beyond the credit range (9e15 tokens at 7500 per million)
  expectError(await chat('acme', 'alice', Object.assign({}, ok, { model: 'claude-opus-4-1', max_tokens: 2 ** 53 - 1 })), 400, '22003');
  expectError(await request('GET', '/v1/chat/completions', { headers: who('acme', 'alice') }), 405, 'method_not_allowed');
  expectError(await request('GET', '/v2/nothing'), 404, 'not_found');
  // a provider disabled by an admin: refused, and no longer listed
  await q(`SELECT credits.disable_provider('acme', 'anthropic')`);
  const d = await chat('acme', 'alice', Object.assign({}, ok, { model: 'claude-haiku-4-5' }));
  expectError(d, 403, 'UC003');
  assert.match(d.json.error.hint, /enable_provider/);
  const l = await request('GET', '/v1/models', { headers: who('acme', 'alice') });
  assert.deepEqual([...new Set(l.json.data.map((m) => m.owned_by))], ['openai']);
  await q(`SELECT credits.enable_provider('acme', 'anthropic')`);
  assert.equal(await ledgerCount('acme'), entries);
});

// the live channel: LISTEN credits -> server-sent events, per org
test('GET /v1/events pushes the org\'s committed events, only that org\'s', async () => {
  const events = [];
  let wake = null;
  const req = http.get(URL_ + '/v1/events?org=acme', (res) => {
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'], /^text\/event-stream/);
    let buf = '';
    res.on('data', (c) => {
      buf += c.toString('utf8');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = /^event: (.*)$/m.exec(block);
        const data = /^data: (.*)$/m.exec(block);
        if (ev) events.push({ event: ev[1], data: JSON.parse(data[1]) });
        if (wake) wake();
      }
    });
  });
  const until = (pred, what) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no ' + what + ' within 30 s: ' + JSON.stringify(events))), 30000);
    const check = () => { if (pred()) { clearTimeout(t); wake = null; resolve(); } };
    wake = check;
    check();
  });
  try {
    await until(() => events.some((e) => e.event === 'ready'), 'ready event');
    assert.equal(events[0].data.listening, true);
    // another org's event first, then acme's: notifications arrive in commit
    // order, so acme's recharge is the first credits event this page gets
    await q(`SELECT credits.recharge('other', 5, note => 'not for acme')`);
    const r = await q1(`SELECT available::text FROM credits.recharge('acme', note => 'restore')`);
    const isOurs = (e) => e.event === 'credits' && e.data.kind === 'recharge' && e.data.note === 'restore';
    await until(() => events.some(isOurs), 'the recharge event');
    const credits = events.filter((e) => e.event === 'credits');
    assert.ok(credits.every((e) => e.data.org_id === 'acme'), 'only acme\'s events: ' + JSON.stringify(credits));
    const got = credits.filter(isOurs);
    assert.equal(got.length, 1, JSON.stringify(got));
    assert.equal(got[0].data.kind, 'recharge');
    assert.equal(got[0].data.note, 'restore');
    assert.equal(String(got[0].data.available), r.available);
    const row = await q1(`SELECT event_id FROM credits.events WHERE org_id = 'acme' AND kind = 'recharge' ORDER BY event_id DESC LIMIT 1`);
    assert.equal(String(got[0].data.event_id), String(row.event_id));
  } finally {
    req.destroy();
  }
});

test('after the recharge every model is available again', async () => {
  const r = await request('GET', '/v1/models', { headers: who('acme', 'alice') });
  assert.equal(r.status, 200);
  for (const m of r.json.data) {
    assert.equal(m.available, true, m.id);
    assert.equal(m.reason, null);
    assert.equal(m.limited_by, null);
    assert.equal(m.resets_at, null);
  }
  const f = await chat('acme', 'alice', { model: 'gpt-4o', messages: msgs('back?'), max_tokens: 8 });
  assert.equal(f.status, 200, f.text);
  assert.equal(f.json.model, 'gpt-4o');
  assert.equal(f.headers['x-credits-fell-back'], 'false');
});

test('verify() finds the ledger and the pools consistent', async () => {
  assert.deepEqual(await q('SELECT * FROM credits.verify()'), []);
  assert.equal(Number((await q1(`SELECT count(*) AS n FROM credits.holds WHERE status = 'open'`)).n), 0);
});

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
