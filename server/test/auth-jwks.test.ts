import { generateKeyPairSync } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { parseJwks } from '../src/auth.js';
import { connectWith, startServer, upgradeStatus } from './auth-harness.js';

/** The public JWK of a new key of node:crypto's `type` (`x25519`, `ed448`, `ec` with its curve ...). */
function publicJwk(type: 'ec' | 'ed448' | 'x25519' | 'x448', extra: Partial<JWK> = {}, namedCurve = 'P-256'): JWK {
  const { publicKey } =
    type === 'ec' ? generateKeyPairSync('ec', { namedCurve }) : generateKeyPairSync(type as 'x25519');
  return { ...publicKey.export({ format: 'jwk' }), ...extra };
}

/** What `parseJwks` throws for `keys`, or null when it accepts them. */
function readError(keys: unknown[]): string | null {
  try {
    parseJwks(JSON.stringify({ keys }));
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

describe('JWKS keys no token can be verified with', () => {
  it('refuses at read time a JWKS whose only key is an encryption key (use "enc"), which would leave every token refused', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256', { modulusLength: 2048 });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'enc' };
    // What such a key set does once in use: even a token signed by this very key is 401.
    const { server, clock } = await startServer({ auth: { jwks: { keys: [jwk] } } });
    const signed = await new SignJWT({ sub: 'bo', locks: ['*'] })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setExpirationTime(Math.floor(clock.now() / 1000) + 60)
      .sign(privateKey);
    const status = await upgradeStatus(server.url, { headers: { authorization: `Bearer ${signed}` } });
    expect({ readError: readError([jwk]), status }).toEqual({
      readError: 'no key can verify a token: keys[0] (kid "k1"): use "enc": not a signature key (use "sig")',
      status: 401,
    });
  });

  it('refuses at read time a JWKS whose keys are all for encryption or key agreement, naming each key and why', async () => {
    const rsa = await exportJWK((await generateKeyPair('RSA-OAEP-256', { modulusLength: 2048 })).publicKey);
    const ec = await exportJWK((await generateKeyPair('ES256')).publicKey);
    const cases: Array<[JWK, string]> = [
      [{ ...rsa, key_ops: ['encrypt', 'wrapKey'] }, 'keys[0]: key_ops ["encrypt","wrapKey"]: without "verify"'],
      [{ ...rsa, alg: 'RSA-OAEP-256' }, 'keys[0]: alg "RSA-OAEP-256": an encryption algorithm, not a signature one'],
      [{ ...rsa, alg: 'RSA1_5', use: 'sig' }, 'keys[0]: alg "RSA1_5": an encryption algorithm, not a signature one'],
      [{ ...ec, alg: 'ECDH-ES+A256KW', kid: 'agree' }, 'keys[0] (kid "agree"): alg "ECDH-ES+A256KW": an encryption algorithm'],
      [publicJwk('x25519'), 'keys[0]: curve X25519: for key agreement (encryption), not signatures'],
      [publicJwk('x448'), 'keys[0]: curve X448: for key agreement (encryption), not signatures'],
    ];
    for (const [jwk, expected] of cases) {
      expect(readError([jwk])).toMatch(new RegExp(`^no key can verify a token: ${expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    }
    expect(readError(cases.slice(0, 2).map(([jwk]) => jwk))).toBe(
      'no key can verify a token: keys[0]: key_ops ["encrypt","wrapKey"]: without "verify"; ' +
        'keys[1]: alg "RSA-OAEP-256": an encryption algorithm, not a signature one',
    );
  });

  it('skips the encryption keys beside a signature key, saying which and why, and verifies tokens with the signature key', async () => {
    const enc = await generateKeyPair('RS256', { modulusLength: 2048 });
    const sig = await generateKeyPair('ES256');
    const encJwk = { ...(await exportJWK(enc.publicKey)), kid: 'e1', use: 'enc' };
    const sigJwk = { ...(await exportJWK(sig.publicKey)), kid: 's1', use: 'sig', alg: 'ES256' };
    const skipped: Array<[string, string]> = [];
    const jwks = parseJwks(JSON.stringify({ keys: [encJwk, sigJwk] }), { onSkipped: (key, reason) => skipped.push([key, reason]) });
    expect({ kids: jwks.keys.map((key) => key.kid), skipped }).toEqual({
      kids: ['s1'],
      skipped: [['keys[0] (kid "e1")', 'use "enc": not a signature key (use "sig")']],
    });
    const { server, clock } = await startServer({ auth: { jwks } });
    const exp = Math.floor(clock.now() / 1000) + 60;
    const signed = await new SignJWT({ sub: 'bo', locks: ['*'] }).setProtectedHeader({ alg: 'ES256', kid: 's1' }).setExpirationTime(exp).sign(sig.privateKey);
    expect((await connectWith(server.url, signed)).welcome).toMatchObject({ user: 'bo' });
    const byEncKey = await new SignJWT({ sub: 'bo' }).setProtectedHeader({ alg: 'RS256', kid: 'e1' }).setExpirationTime(exp).sign(enc.privateKey);
    expect(await upgradeStatus(server.url, { headers: { authorization: `Bearer ${byEncKey}` } })).toBe(401);
  });

  it('refuses a signature key it cannot verify with even beside a usable one: an alg that does not fit the key, an unsupported curve, a malformed use or key_ops', async () => {
    const good = { ...(await exportJWK((await generateKeyPair('ES256')).publicKey)), kid: 'good' };
    const rsa = await exportJWK((await generateKeyPair('RS256', { modulusLength: 2048 })).publicKey);
    const cases: Array<[unknown, string]> = [
      [{ ...good, kid: 'p256', alg: 'ES384' }, 'keys[1] (kid "p256"): alg "ES384" does not fit an EC key on P-256: expected ES256'],
      [{ ...rsa, alg: 'EdDSA' }, 'keys[1]: alg "EdDSA" does not fit an RSA key: expected RS256, RS384, RS512, PS256, PS384 or PS512'],
      [{ ...rsa, alg: 'HS256' }, 'keys[1]: alg "HS256" does not fit an RSA key: expected RS256, RS384, RS512, PS256, PS384 or PS512'],
      [publicJwk('ec', {}, 'secp256k1'), 'keys[1]: curve secp256k1: tokens are verified only with EC keys on P-256, P-384 or P-521'],
      [publicJwk('ed448'), 'keys[1]: curve Ed448: tokens are verified only with OKP keys on Ed25519'],
      [{ ...rsa, use: 1 }, 'keys[1]: use: expected a string'],
      [{ ...rsa, key_ops: 'verify' }, 'keys[1]: key_ops: expected an array of distinct strings'],
      [{ ...rsa, key_ops: ['verify', 'verify'] }, 'keys[1]: key_ops: expected an array of distinct strings'],
      [{ ...rsa, alg: 7 }, 'keys[1]: alg: expected a string'],
      // jose passes over such a key: a file of it alone would start a server that refuses every token.
      [{ ...rsa, ext: 'true' }, 'keys[1]: ext: expected true or false'],
    ];
    for (const [jwk, expected] of cases) expect(readError([good, jwk])).toBe(expected);
    expect(readError([good, { ...rsa, alg: 'PS384', use: 'sig', key_ops: ['verify'] }])).toBeNull();
    expect(readError([good, { ...rsa, ext: true }])).toBeNull();
  });

  it('says what is wrong with a JWKS file that is not JSON without quoting its text, which may hold key material', () => {
    const problemOf = (text: string) => {
      try {
        parseJwks(text);
      } catch (error) {
        return (error as Error).message;
      }
      return null;
    };
    // A trailing comma after a symmetric key, and a private EC key whose d lost its quotes: the parser's own
    // message quotes the text around the fault.
    const oct = problemOf('{"keys":[{"kty":"oct","k":"c2VjcmV0LXN5bW1ldHJpYy1rZXk"},]}');
    const priv = problemOf('{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","d": zszDm4B7ylx842fYkmDa4m_GD5gMulVf9v8PXfcRDiI}]}');
    expect(oct).toMatch(/^not valid JSON: /);
    expect(priv).toMatch(/^not valid JSON: /);
    expect(`${oct} ${priv}`).not.toMatch(/Yy1rZXk|zszDm4B7/);
  });
});
