import { describe, expect, it } from 'vitest';
import { binaryFrameError, decodeClientMessage, decodeServerMessage, resultSchemas } from '@lockwire/protocol';

function expectBadRequest(text: string, id: string | number | null, messagePart: string) {
  const result = decodeClientMessage(text);
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect(result.id).toBe(id);
  expect(result.error.code).toBe('bad_request');
  expect(result.error.message).toContain(messagePart);
}

describe('decodeClientMessage', () => {
  it('accepts a full acquire and keeps every field', () => {
    const text = JSON.stringify({
      op: 'acquire',
      id: 1,
      key: 'doc:42',
      mode: 'shared',
      acquireTimeout: 5000,
      holdTimeout: null,
      steal: false,
      meta: { user: 'ana' },
    });
    const result = decodeClientMessage(text);
    expect(result).toEqual({
      ok: true,
      message: {
        op: 'acquire',
        id: 1,
        key: 'doc:42',
        mode: 'shared',
        acquireTimeout: 5000,
        holdTimeout: null,
        steal: false,
        meta: { user: 'ana' },
      },
    });
  });

  it('treats __proto__, the empty string, NUL and lone surrogates as ordinary keys', () => {
    for (const key of ['__proto__', 'constructor', '', 'a\u0000b', '\ud800', '🔒 room/7:x']) {
      const result = decodeClientMessage(JSON.stringify({ op: 'status', id: 'k', key }));
      expect(result.ok).toBe(true);
      if (result.ok && result.message.op === 'status') expect(result.message.key).toBe(key);
    }
  });

  it('keeps a __proto__ field inside meta as an own property', () => {
    const result = decodeClientMessage('{"op":"acquire","id":2,"key":"k","meta":{"__proto__":{"x":1}}}');
    if (!result.ok || result.message.op !== 'acquire') throw new Error(`not decoded as an acquire: ${JSON.stringify(result)}`);
    const meta = result.message.meta;
    expect(meta && Object.prototype.hasOwnProperty.call(meta, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(meta)).toBe(Object.prototype);
  });

  it('answers bad_request without an id for a frame that is not JSON or not an object', () => {
    expectBadRequest('{"op":', null, 'not valid JSON');
    expectBadRequest('[1,2]', null, 'not a JSON object');
    expectBadRequest('null', null, 'not a JSON object');
  });

  it('names the unknown op and keeps the usable id', () => {
    expectBadRequest('{"op":"lock","id":"r1","key":"k"}', 'r1', 'unknown op "lock"');
  });

  it('answers an op nested thousands of arrays deep (a 10 KB frame) with bad_request naming its type, never throwing', () => {
    const depth = 5000;
    expectBadRequest(`{"op":${'['.repeat(depth)}${']'.repeat(depth)},"id":1}`, 1, 'unknown op of type array');
    expectBadRequest('{"op":{"a":1},"id":2}', 2, 'unknown op of type object');
    expectBadRequest('{"op":7,"id":3}', 3, 'unknown op 7');
  });

  it('quotes only the first 64 characters of a long unknown op', () => {
    const decoded = decodeClientMessage(JSON.stringify({ op: 'x'.repeat(100_000), id: 1 }));
    expect(decoded).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(decoded.ok ? '' : decoded.error.message).toBe(`op: unknown op "${'x'.repeat(64)}"...`);
  });

  it('rejects an unusable id with a null reply id', () => {
    expectBadRequest('{"op":"ping"}', null, 'id: required');
    expectBadRequest('{"op":"ping","id":-1}', null, 'id:');
    expectBadRequest('{"op":"ping","id":1.5}', null, 'id:');
    expectBadRequest('{"op":"ping","id":""}', null, 'id:');
    expectBadRequest(JSON.stringify({ op: 'ping', id: 'x'.repeat(65) }), null, 'id:');
  });

  it('rejects unknown fields so typos are caught', () => {
    expectBadRequest('{"op":"acquire","id":3,"key":"k","holdTimeot":100}', 3, 'holdTimeot');
  });

  it('names the field at fault for a wrong type or range', () => {
    expectBadRequest('{"op":"acquire","id":4,"key":"k","mode":"read"}', 4, 'mode');
    expectBadRequest('{"op":"acquire","id":5,"key":"k","holdTimeout":-1}', 5, 'holdTimeout');
    expectBadRequest('{"op":"acquire","id":6,"key":"k","acquireTimeout":2147483648}', 6, 'acquireTimeout');
    expectBadRequest('{"op":"acquire","id":7,"key":7}', 7, 'key');
    expectBadRequest('{"op":"list","id":8,"limit":0}', 8, 'limit');
    expectBadRequest('{"op":"list","id":9,"limit":10001}', 9, 'limit');
  });

  it('accepts the largest duration, 2147483647 ms', () => {
    const result = decodeClientMessage('{"op":"acquire","id":1,"key":"k","holdTimeout":2147483647}');
    expect(result.ok).toBe(true);
  });

  it('requires holdTimeout on extend but accepts null there', () => {
    expectBadRequest('{"op":"extend","id":10,"key":"k"}', 10, 'holdTimeout');
    expect(decodeClientMessage('{"op":"extend","id":11,"key":"k","holdTimeout":null}').ok).toBe(true);
  });

  it('rejects meta that is not an object or is larger than 1024 bytes of compact JSON', () => {
    expectBadRequest('{"op":"acquire","id":12,"key":"k","meta":[1]}', 12, 'meta');
    expectBadRequest('{"op":"acquire","id":13,"key":"k","meta":"ana"}', 13, 'meta');
    // 1024 bytes exactly passes: {"a":"..."} is 8 bytes of framing.
    const fits = JSON.stringify({ op: 'acquire', id: 14, key: 'k', meta: { a: 'x'.repeat(1016) } });
    expect(decodeClientMessage(fits).ok).toBe(true);
    const tooBig = JSON.stringify({ op: 'acquire', id: 15, key: 'k', meta: { a: 'x'.repeat(1017) } });
    expectBadRequest(tooBig, 15, 'meta');
    // Bytes, not characters: 'é' is two bytes of UTF-8.
    const wide = JSON.stringify({ op: 'acquire', id: 16, key: 'k', meta: { a: 'é'.repeat(509) } });
    expectBadRequest(wide, 16, 'meta');
  });

  it('accepts meta: null as no meta', () => {
    const result = decodeClientMessage('{"op":"acquire","id":17,"key":"k","meta":null}');
    expect(result.ok).toBe(true);
  });

  it('bounds keys and prefixes by maxKeyLength in UTF-16 code units', () => {
    const atLimit = JSON.stringify({ op: 'status', id: 1, key: 'k'.repeat(256) });
    expect(decodeClientMessage(atLimit).ok).toBe(true);
    expectBadRequest(JSON.stringify({ op: 'status', id: 18, key: 'k'.repeat(257) }), 18, 'key');
    expectBadRequest(JSON.stringify({ op: 'watch', id: 19, prefix: 'p'.repeat(257) }), 19, 'prefix');
    // Each emoji is two code units.
    const emoji = JSON.stringify({ op: 'status', id: 20, key: '🔒'.repeat(3) });
    expect(decodeClientMessage(emoji, { maxKeyLength: 6 }).ok).toBe(true);
    expect(decodeClientMessage(emoji, { maxKeyLength: 5 }).ok).toBe(false);
  });

  it('describes binary frames as bad_request', () => {
    expect(binaryFrameError().code).toBe('bad_request');
  });
});

describe('decodeServerMessage', () => {
  it('decodes a welcome with its limits', () => {
    const text = JSON.stringify({
      type: 'welcome',
      session: 's1',
      protocol: 1,
      server: 'lockwire/0.1.0',
      limits: { maxPayload: 65536, maxKeyLength: 256, maxLocksPerSession: 1000, maxWaitersPerKey: 10000 },
    });
    const result = decodeServerMessage(text);
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.message.type).toBe('welcome');
  });

  it('decodes a successful reply with its result fields', () => {
    const result = decodeServerMessage('{"type":"reply","id":1,"ok":true,"acquired":true,"token":17,"expiresAt":null}');
    expect(result).toEqual({
      ok: true,
      message: { type: 'reply', id: 1, ok: true, acquired: true, token: 17, expiresAt: null },
    });
  });

  it('decodes an error reply with a null id', () => {
    const result = decodeServerMessage(
      '{"type":"reply","id":null,"ok":false,"error":{"code":"bad_request","message":"frame is not valid JSON"}}',
    );
    expect(result.ok).toBe(true);
    if (result.ok && result.message.type === 'reply' && result.message.ok === false) {
      expect(result.message.error.code).toBe('bad_request');
    } else {
      expect.unreachable('expected an error reply');
    }
  });

  it('decodes queued, lost and event pushes', () => {
    const queued = decodeServerMessage('{"type":"queued","id":1,"key":"k","position":1}');
    const lost = decodeServerMessage('{"type":"lost","key":"k","token":3,"reason":"stolen"}');
    const event = decodeServerMessage(
      '{"type":"event","key":"k","event":"queued","session":"s2","mode":"exclusive","meta":null,"holders":1,"waiters":1,"at":1}',
    );
    expect([queued.ok, lost.ok, event.ok]).toEqual([true, true, true]);
  });

  it('rejects an unknown error code, an unknown lost reason and a zero token', () => {
    expect(
      decodeServerMessage('{"type":"reply","id":1,"ok":false,"error":{"code":"nope","message":""}}').ok,
    ).toBe(false);
    expect(decodeServerMessage('{"type":"lost","key":"k","token":3,"reason":"gone"}').ok).toBe(false);
    expect(decodeServerMessage('{"type":"lost","key":"k","token":0,"reason":"expired"}').ok).toBe(false);
  });

  it('rejects text that is not JSON', () => {
    expect(decodeServerMessage('welcome')).toEqual({ ok: false, error: 'frame is not valid JSON' });
  });
});

describe('meta in server messages', () => {
  const metaJson = '{"__proto__":{"role":"admin"},"user":"ana"}';

  it('keeps a __proto__ field of an event\'s meta as an own property, as the server sent it', () => {
    const text = `{"type":"event","key":"k","event":"acquired","session":"s","token":5,"mode":"exclusive","meta":${metaJson},"holders":1,"waiters":0,"at":1}`;
    const decoded = decodeServerMessage(text);
    if (!decoded.ok || decoded.message.type !== 'event') throw new Error(JSON.stringify(decoded));
    expect(JSON.stringify(decoded.message.meta)).toBe(metaJson);
    expect(Object.hasOwn(decoded.message.meta ?? {}, '__proto__')).toBe(true);
  });

  it('keeps a __proto__ field of a status holder\'s meta', () => {
    const reply = JSON.parse(
      `{"key":"k","locked":true,"mode":"exclusive","holders":[{"session":"s","mode":"exclusive","token":5,"since":1,"expiresAt":null,"meta":${metaJson}}],"queue":[],"heldByYou":true}`,
    );
    const parsed = resultSchemas.status.safeParse(reply);
    if (!parsed.success) throw new Error('not parsed');
    expect(JSON.stringify(parsed.data.holders[0]?.meta)).toBe(metaJson);
  });

  it('refuses a meta that is not an object', () => {
    const text = '{"type":"event","key":"k","event":"acquired","session":"s","token":5,"mode":"exclusive","meta":[1],"holders":1,"waiters":0,"at":1}';
    expect(decodeServerMessage(text).ok).toBe(false);
  });
});
