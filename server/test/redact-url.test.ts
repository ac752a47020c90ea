import { describe, expect, it } from 'vitest';
import { redactRequestTarget, redactUrl } from '../src/redact-url.js';

describe('redactUrl', () => {
  it('replaces the access_token and resume values of a request target and keeps the session id', () => {
    expect(redactUrl('/v1?session=s&access_token=eyJabc.def.ghi')).toBe('/v1?session=s&access_token=REDACTED');
    expect(redactUrl('/v1?session=s&resume=p9Xk&access_token=t')).toBe(
      '/v1?session=s&resume=REDACTED&access_token=REDACTED',
    );
  });

  it('replaces the access_token of a tool URL and keeps its scheme, host and other parameters', () => {
    expect(redactUrl('ws://127.0.0.1:1/v1?access_token=secret&x=1')).toBe('ws://127.0.0.1:1/v1?access_token=REDACTED&x=1');
    expect(redactUrl('wss://locks.example/v1?x=1&ACCESS_TOKEN=secret')).toBe('wss://locks.example/v1?x=1&ACCESS_TOKEN=REDACTED');
  });

  it('replaces the password of the userinfo and keeps the user name', () => {
    expect(redactUrl('redis://default:hunter2@redis.internal:6379/0')).toBe('redis://default:REDACTED@redis.internal:6379/0');
    expect(redactUrl('ws://:hunter2@127.0.0.1:7311/v1')).toBe('ws://:REDACTED@127.0.0.1:7311/v1');
  });

  it('shows nothing of a URL whose userinfo the parser leaves in the path: an unknown scheme with a slash too few or too many', () => {
    expect(redactUrl('redis:/:sekret-pw@127.0.0.1:6379')).toBeNull();
    expect(redactUrl('redis:///user:sekret-pw@127.0.0.1:6379')).toBeNull();
    expect(redactUrl('ws://127.0.0.1/v1?note=a@b')).toBe('ws://127.0.0.1/v1?note=a@b');
    expect(redactUrl('/v1?note=a@b')).toBe('/v1?note=a@b');
  });

  it('replaces the usual credential parameters, in the query and in the fragment, but not a lock key', () => {
    const redacted = redactUrl('http://h/x?password=a&Token=b&secret=c&auth=d&key=orders#token=e&view=f');
    expect(redacted).toBe('http://h/x?password=REDACTED&Token=REDACTED&secret=REDACTED&auth=REDACTED&key=orders#token=REDACTED&view=f');
  });

  it('replaces every value of a secret parameter given more than once', () => {
    const redacted = redactUrl('/v1?access_token=a&session=s&access_token=b');
    expect(redacted).not.toMatch(/=a\b|=b\b/);
    expect(redacted).toContain('access_token=REDACTED');
  });

  it('returns a URL with no secret exactly as given', () => {
    expect(redactUrl('/v1?session=s')).toBe('/v1?session=s');
    expect(redactUrl('ws://user@127.0.0.1:7311/v1?x=a%20b')).toBe('ws://user@127.0.0.1:7311/v1?x=a%20b');
  });

  it('returns null for a URL that does not parse', () => {
    expect(redactUrl('http://[?access_token=secret')).toBeNull();
    expect(redactUrl('ws://[')).toBeNull();
  });
});

describe('redactRequestTarget', () => {
  it('redacts as redactUrl does, logs nothing of a target that does not parse, and an absent one as empty', () => {
    expect(redactRequestTarget('/v1?resume=p9Xk')).toBe('/v1?resume=REDACTED');
    const unparsable = redactRequestTarget('http://[?access_token=secret');
    expect(unparsable).not.toContain('[');
    expect(unparsable).not.toContain('secret');
    expect(redactRequestTarget(undefined)).toBe('');
  });
});
