'use strict';
// The built-in mock upstream: a deterministic stand-in for a model provider.
// No network, no randomness: the same model and messages always give the
// same answer, so a replay can be regenerated and a test can predict the
// charge.
//
//   prompt_tokens     = ceil(characters of all message contents / 4)
//                       (characters are Unicode code points)
//   completion_tokens = min(max_tokens, 8 + (first 4 bytes of
//                       sha256(model + "\n" + JSON(messages)) mod 57))
//                       i.e. 8..64, never more than max_tokens
//   content           = completion_tokens words, one word per token
//
// Failure on purpose: when any message content contains the marker
// "[[mock:fail]]" the upstream fails before producing anything (as a
// provider's 5xx or a dropped connection would).  The gateway then releases
// the hold, so nothing is charged.

const crypto = require('crypto');

const FAIL_MARKER = '[[mock:fail]]';

const WORDS = [
  'credits', 'pool', 'model', 'answer', 'token', 'stream', 'ledger', 'hold',
  'settle', 'release', 'premium', 'fallback', 'period', 'member', 'cap',
  'team', 'provider', 'request', 'reply', 'mock', 'exact', 'atomic', 'commit',
  'gateway', 'switch', 'gray', 'back', 'soon', 'here', 'is', 'the', 'a',
];

class UpstreamError extends Error {
  constructor(message) {
    super(message);
    this.name = 'UpstreamError';
  }
}

function contentText(content) {
  // OpenAI allows a string or an array of parts ({type:"text", text})
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((p) => (p && typeof p.text === 'string' ? p.text : '')).join('');
  }
  return '';
}

function promptChars(messages) {
  let n = 0;
  for (const m of messages) n += [...contentText(m.content)].length;
  return n;
}

function promptTokens(messages) {
  return Math.ceil(promptChars(messages) / 4);
}

function digest(model, messages) {
  return crypto.createHash('sha256')
    .update(model + '\n' + JSON.stringify(messages.map((m) => [m.role, contentText(m.content)])))
    .digest();
}

function completionTokens(model, messages, maxTokens) {
  const d = digest(model, messages);
  return Math.min(maxTokens, 8 + (d.readUInt32BE(0) % 57));
}

function shouldFail(messages) {
  return messages.some((m) => contentText(m.content).includes(FAIL_MARKER));
}

// complete(model, messages, maxTokens) -> {pieces, content, prompt_tokens,
// completion_tokens}; throws UpstreamError when asked to fail.  pieces are
// the streamed deltas (one per completion token); content is their
// concatenation.
function complete(model, messages, maxTokens) {
  if (shouldFail(messages)) {
    throw new UpstreamError('mock upstream failed (the request contains ' + FAIL_MARKER + ')');
  }
  const n = completionTokens(model, messages, maxTokens);
  const d = digest(model, messages);
  const pieces = [];
  for (let i = 0; i < n; i++) {
    let w = WORDS[(d[(i + 4) % d.length] + i) % WORDS.length];
    if (i === 0) w = w[0].toUpperCase() + w.slice(1);
    if (i === n - 1) w += '.';
    pieces.push(i === 0 ? w : ' ' + w);
  }
  return {
    pieces,
    content: pieces.join(''),
    prompt_tokens: promptTokens(messages),
    completion_tokens: n,
  };
}

module.exports = { complete, promptTokens, completionTokens, UpstreamError, FAIL_MARKER };
