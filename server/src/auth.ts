import { createPublicKey, type JsonWebKey } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  createLocalJWKSet,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyOptions,
} from 'jose';
import type { Clock } from './clock.js';
import { jsonProblem } from './json-problem.js';
import { ALLOW_ALL, type KeyPattern, type Permissions } from './permissions.js';
import { createOriginCheck } from './origin-check.js';
import { parseRequestUrl } from './request-url.js';

export { normaliseOrigin } from './origin-check.js';

/**
 * How connections prove who they are. With neither `secret` nor `jwks`
 * every connection may do everything (the default: a trusted network).
 */
export interface AuthOptions {
  /** HS256 secret the tokens are signed with (text is used as its UTF-8 bytes). */
  secret?: string | Uint8Array;
  /**
   * Public keys (a JWKS) the tokens are signed with; asymmetric algorithms
   * only. A token's `kid` picks its key; a token without one is checked
   * against every key of its algorithm and accepted when one verifies it.
   */
  jwks?: JSONWebKeySet;
  /** Required `aud` claim, when given. */
  audience?: string;
  /** Required `iss` claim, when given. */
  issuer?: string;
}

/** The outcome of checking a request's credentials and Origin. */
export type Admission =
  | { ok: true; permissions: Permissions }
  | { ok: false; status: 401 | 403; reason: string };

/** Checks HTTP requests (WebSocket upgrades, dashboard, `/v1/locks`) before anything is served. */
export interface Authenticator {
  /** True when credentials are required. */
  readonly enabled: boolean;
  /**
   * Admits or refuses a request: 403 for an Origin not on the allow-list,
   * 401 for missing, invalid or expired credentials, a token among them
   * whose `sub` is missing, empty or not a string. Never throws.
   */
  admit(req: IncomingMessage): Promise<Admission>;
}

export interface AuthenticatorOptions {
  auth?: AuthOptions;
  /**
   * Exact Origins allowed; `*` allows any. Absent or empty: Origin is not
   * checked. A request without an Origin header (not a browser) is not refused,
   * nor one from a page the server serves itself (see `createOriginCheck`).
   * Entries are normalised as browsers send Origin (`normaliseOrigin`).
   */
  allowOrigins?: readonly string[];
  /** Time of the `exp`/`nbf` checks. */
  clock: Clock;
}

/** The `access_token` query parameter, where browsers (which cannot set headers) put the token. */
export const TOKEN_PARAM = 'access_token';

/**
 * The request's token: `Authorization: Bearer <token>`, else the
 * `access_token` query parameter. Null when there is none (or the request
 * target does not parse).
 */
export function tokenOf(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match?.[1]) return match[1];
  }
  const query = parseRequestUrl(req.url)?.searchParams.get(TOKEN_PARAM) ?? null;
  return query === null || query === '' ? null : query;
}

function patterns(payload: JWTPayload, claim: string): KeyPattern[] {
  const value = payload[claim];
  if (value === undefined) return [];
  if (Array.isArray(value) && value.every((item): item is string => typeof item === 'string')) return value;
  if (typeof value === 'string') return [value];
  throw new TypeError(`claim ${claim} must be a string or an array of strings`);
}

/** The permissions a verified token grants; throws `TypeError` for malformed claims. */
export function permissionsOf(payload: JWTPayload): Permissions {
  return {
    user: typeof payload.sub === 'string' ? payload.sub : null,
    locks: patterns(payload, 'locks'),
    watch: patterns(payload, 'watch'),
    steal: patterns(payload, 'steal'),
    admin: patterns(payload, 'admin'),
    expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : null,
  };
}

/**
 * Refuses a verified token that names no user: `sub` missing, empty, or
 * not a string (RFC 7519: a StringOrURI). The user is what a resume is
 * checked against, so tokens without a user of their own would all name
 * the same one and could take over each other's sessions. Throws jose's
 * `JWTClaimValidationFailed`, as for a wrong audience or issuer.
 */
function checkSubject(payload: JWTPayload): void {
  const { sub } = payload;
  if (typeof sub === 'string' && sub !== '') return;
  const missing = sub === undefined;
  throw new errors.JWTClaimValidationFailed(
    missing ? 'missing required "sub" claim' : '"sub" claim must be a non-empty string',
    payload,
    'sub',
    missing ? 'missing' : 'invalid',
  );
}

/**
 * Refuses a verified token whose `exp` is at or before `now` (ms). jose
 * compares whole seconds, so a fractional `exp` (RFC 7519 allows one) would
 * pass for up to a second after it: the session would open and be closed
 * for expired credentials at once. Throws jose's `JWTExpired`, as jose does.
 */
function checkExpiry(payload: JWTPayload, now: number): void {
  if (typeof payload.exp === 'number' && payload.exp * 1000 <= now) {
    throw new errors.JWTExpired('"exp" claim timestamp check failed', payload, 'exp', 'check_failed');
  }
}

/**
 * Refuses a verified token whose `nbf` is after `now` (ms), to the
 * millisecond, as `checkExpiry` does for `exp`: jose compares whole seconds,
 * and would refuse a fractional `nbf` for up to a second after it.
 */
function checkNotBefore(payload: JWTPayload, now: number): void {
  if (typeof payload.nbf === 'number' && payload.nbf * 1000 > now) {
    throw new errors.JWTClaimValidationFailed('"nbf" claim timestamp check failed', payload, 'nbf', 'check_failed');
  }
}

/** The slack given jose's own whole-second checks of `exp` and `nbf`, which `checkExpiry` and `checkNotBefore` redo exactly. */
const WHOLE_SECOND_SLACK_S = 1;

/** True for a failure of the token's claims, which jose checks after its signature. */
function isClaimFailure(failure: unknown): boolean {
  return (
    failure instanceof errors.JWTClaimValidationFailed ||
    failure instanceof errors.JWTExpired ||
    failure instanceof errors.JWTInvalid
  );
}

/**
 * Verifies `token` against a key set. A token without `kid` matches every
 * key of its algorithm; with several (a key rotation), each is tried, and the
 * token is valid when one of them verifies its signature. A key that cannot
 * be used (jose refuses it) does not stop the others from being tried.
 */
async function verifyWithKeySet(
  token: string,
  keySet: ReturnType<typeof createLocalJWKSet>,
  checks: JWTVerifyOptions,
): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, keySet, checks)).payload;
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
    for await (const key of error) {
      try {
        return (await jwtVerify(token, key, checks)).payload;
      } catch (failure) {
        // A claim is checked only once this key verified the signature: its
        // failure (expired, wrong audience) holds whatever the key and is the
        // answer. Any other failure is this key's (another key's signature,
        // a key jose will not verify with): the next key may still verify it.
        if (isClaimFailure(failure)) throw failure;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

/** The shortest RSA modulus jose verifies RS* and PS* signatures with: it refuses every token of a shorter key. */
const MIN_RSA_BITS = 2048;

/** The signature algorithms jose verifies with an RSA key. */
const RSA_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const;

/** The signature algorithm of each EC curve and OKP curve jose verifies with; other curves verify nothing. */
const CURVE_ALGS: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>> = {
  EC: { 'P-256': ['ES256'], 'P-384': ['ES384'], 'P-521': ['ES512'] },
  OKP: { Ed25519: ['EdDSA', 'Ed25519'] },
};

/** The JWE key-management algorithms of public keys: a key marked with one is for encryption. */
const ENCRYPTION_ALGS: ReadonlySet<string> = new Set([
  'RSA1_5',
  'RSA-OAEP',
  'RSA-OAEP-256',
  'RSA-OAEP-384',
  'RSA-OAEP-512',
  'ECDH-ES',
  'ECDH-ES+A128KW',
  'ECDH-ES+A192KW',
  'ECDH-ES+A256KW',
]);

/** The OKP curves of key agreement (ECDH), which sign nothing. */
const AGREEMENT_CURVES: ReadonlySet<string> = new Set(['X25519', 'X448']);

/**
 * What a JWKS key is to lockwire: a key tokens are verified with, a key its
 * own members mark for something else (`unused`: encryption, key agreement),
 * or a `broken` one: not a public key, or a signature key no token signed
 * with it could be verified with.
 */
type JwkVerdict = { kind: 'usable' } | { kind: 'unused' | 'broken'; problem: string };

const broken = (problem: string): JwkVerdict => ({ kind: 'broken', problem });

function isDistinctStrings(value: unknown): boolean {
  return Array.isArray(value) && value.every((item, index) => typeof item === 'string' && value.indexOf(item) === index);
}

/** Why a JWK's members say it is not for verifying signatures, or null when they do not. */
function otherUse(jwk: { use?: unknown; key_ops?: unknown; alg?: unknown; crv?: unknown }): string | null {
  if (jwk.use !== undefined && jwk.use !== 'sig') return `use ${JSON.stringify(jwk.use)}: not a signature key (use "sig")`;
  if (Array.isArray(jwk.key_ops) && !jwk.key_ops.includes('verify')) return `key_ops ${JSON.stringify(jwk.key_ops)}: without "verify"`;
  if (typeof jwk.alg === 'string' && ENCRYPTION_ALGS.has(jwk.alg)) {
    return `alg ${JSON.stringify(jwk.alg)}: an encryption algorithm, not a signature one`;
  }
  if (typeof jwk.crv === 'string' && AGREEMENT_CURVES.has(jwk.crv)) return `curve ${jwk.crv}: for key agreement (encryption), not signatures`;
  return null;
}

/**
 * Whether lockwire verifies tokens with a JWK. The `use`, `key_ops` and
 * `alg` members are checked as jose checks them when it picks a key, so a
 * key accepted here is one jose verifies with.
 */
function judgeJwk(jwk: unknown): JwkVerdict {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return broken('not a JWK (a JSON object with kty)');
  const members = jwk as { kty?: unknown; use?: unknown; key_ops?: unknown; alg?: unknown; crv?: unknown; ext?: unknown };
  const { kty } = members;
  if (kty === 'oct') return broken('a symmetric key: give an HS256 secret with --auth-secret instead');
  if ('d' in jwk) return broken('a private key: the file must hold public keys only');
  if (kty !== 'RSA' && kty !== 'EC' && kty !== 'OKP') return broken(`kty ${JSON.stringify(kty)}: expected RSA, EC or OKP`);
  if (members.use !== undefined && typeof members.use !== 'string') return broken('use: expected a string');
  if (members.key_ops !== undefined && !isDistinctStrings(members.key_ops)) return broken('key_ops: expected an array of distinct strings');
  if (members.alg !== undefined && typeof members.alg !== 'string') return broken('alg: expected a string');
  // jose passes over a key whose `ext` is not a boolean: one that verifies nothing must not pass for one that does.
  if (members.ext !== undefined && typeof members.ext !== 'boolean') return broken('ext: expected true or false');
  let bits: number | undefined;
  try {
    bits = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }).asymmetricKeyDetails?.modulusLength;
  } catch (error) {
    return broken(`not a valid ${kty} public key: ${error instanceof Error ? error.message : String(error)}`);
  }
  const unused = otherUse(members);
  if (unused !== null) return { kind: 'unused', problem: unused };
  let algs: readonly string[];
  let what: string;
  if (kty === 'RSA') {
    if (bits === undefined || bits < MIN_RSA_BITS) {
      return broken(`an RSA key of ${bits ?? 'unknown'} bits: tokens are verified only with RSA keys of ${MIN_RSA_BITS} bits or more`);
    }
    algs = RSA_ALGS;
    what = 'an RSA key';
  } else {
    const curves = CURVE_ALGS[kty] ?? {};
    const curve = String(members.crv);
    const fitting = curves[curve];
    if (fitting === undefined) {
      const known = Object.keys(curves);
      const list = known.length > 1 ? `${known.slice(0, -1).join(', ')} or ${known.at(-1)}` : known.join('');
      return broken(`curve ${curve}: tokens are verified only with ${kty} keys on ${list}`);
    }
    algs = fitting;
    what = `an ${kty} key on ${curve}`;
  }
  if (members.alg !== undefined && !algs.includes(members.alg)) {
    const expected = algs.length > 1 ? `${algs.slice(0, -1).join(', ')} or ${algs.at(-1)}` : algs.join('');
    return broken(`alg ${JSON.stringify(members.alg)} does not fit ${what}: expected ${expected}`);
  }
  return { kind: 'usable' };
}

/** How an error names a key of a JWKS: by its index, and its `kid` when it has one. */
function keyName(index: number, jwk: unknown): string {
  const kid = typeof jwk === 'object' && jwk !== null && 'kid' in jwk ? jwk.kid : undefined;
  return typeof kid === 'string' ? `keys[${index}] (kid ${JSON.stringify(kid)})` : `keys[${index}]`;
}

/** What `parseJwks` tells beyond the key set. */
export interface ParseJwksOptions {
  /**
   * Called for each key left out of the key set because its own members
   * mark it for something other than signatures, with the key's name
   * (`keys[0] (kid "e1")`) and why. Default: nothing is told.
   */
  onSkipped?: (key: string, reason: string) => void;
}

/**
 * The key set of a JWKS file's text (`--auth-jwks-file`): the public
 * signature keys (RSA, EC or OKP) that tokens are verified with.
 *
 * A key whose `use` is not `sig`, whose `key_ops` lack `verify`, whose `alg`
 * is an encryption algorithm (RSA-OAEP, ECDH-ES, ...) or whose curve is one
 * of key agreement (X25519, X448) is left out, and `onSkipped` told: an
 * identity provider's JWKS often publishes encryption keys beside its
 * signature keys. When no key is left, it throws, naming every key and why.
 *
 * Throws an `Error` saying what is wrong: not JSON, no `keys` array, no
 * keys, no key left to verify with, or a key that is not a public key
 * (private, symmetric, malformed) or is a signature key no token could be
 * verified with (an RSA key under 2048 bits, a curve other than P-256,
 * P-384, P-521 or Ed25519, an `alg` that does not fit the key): named by
 * its index and its kid, `keys[1] (kid "k2"): a private key ...`. The
 * checks run when the server starts, so a bad file stops it instead of
 * leaving every token refused.
 */
export function parseJwks(text: string, options: ParseJwksOptions = {}): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // Without the parser's own message, which quotes the text around the fault: a key's material included.
    throw new Error(`not valid JSON: ${jsonProblem(error, text)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || !('keys' in parsed) || !Array.isArray(parsed.keys)) {
    throw new Error('expected a JSON object with a keys array');
  }
  if (parsed.keys.length === 0) throw new Error('the keys array is empty: no token could be verified');
  const usable: unknown[] = [];
  const unused: Array<[string, string]> = [];
  for (const [index, jwk] of parsed.keys.entries()) {
    const verdict = judgeJwk(jwk);
    if (verdict.kind === 'broken') throw new Error(`${keyName(index, jwk)}: ${verdict.problem}`);
    if (verdict.kind === 'unused') unused.push([keyName(index, jwk), verdict.problem]);
    else usable.push(jwk);
  }
  if (usable.length === 0) {
    throw new Error(`no key can verify a token: ${unused.map(([key, problem]) => `${key}: ${problem}`).join('; ')}`);
  }
  for (const [key, problem] of unused) options.onSkipped?.(key, problem);
  const jwks = { ...parsed, keys: usable } as JSONWebKeySet;
  createLocalJWKSet(jwks);
  return jwks;
}

/**
 * Creates the request check of a server. Throws `TypeError` when both
 * `secret` and `jwks`, an empty `secret` or one of blanks only, or an `audience` or `issuer`
 * without either are given, so a misconfigured server does not start open,
 * and for an allowed Origin that is not one.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { auth, clock } = options;
  if (auth?.secret !== undefined && auth.jwks !== undefined) {
    throw new TypeError('auth: give either secret or jwks, not both');
  }
  if (auth?.secret !== undefined && auth.secret.length === 0) throw new TypeError('auth.secret: must not be empty');
  if (typeof auth?.secret === 'string' && auth.secret.trim() === '') {
    throw new TypeError('auth.secret: must not be blanks only (anyone could sign tokens with it)');
  }
  if (auth?.secret === undefined && auth?.jwks === undefined && (auth?.audience !== undefined || auth?.issuer !== undefined)) {
    throw new TypeError('auth: audience and issuer need a secret or jwks to check the tokens against');
  }
  const secret = typeof auth?.secret === 'string' ? new TextEncoder().encode(auth.secret) : auth?.secret;
  const keySet = auth?.jwks ? createLocalJWKSet(auth.jwks) : undefined;
  const enabled = secret !== undefined || keySet !== undefined;
  const originAllowed = createOriginCheck({ allowOrigins: options.allowOrigins, authEnabled: enabled });

  const verify = async (token: string): Promise<Permissions> => {
    const now = clock.now();
    const checks: JWTVerifyOptions = { currentDate: new Date(now), clockTolerance: WHOLE_SECOND_SLACK_S };
    if (auth?.audience !== undefined) checks.audience = auth.audience;
    if (auth?.issuer !== undefined) checks.issuer = auth.issuer;
    let payload: JWTPayload;
    if (secret) payload = (await jwtVerify(token, secret, { ...checks, algorithms: ['HS256'] })).payload;
    else if (keySet) payload = await verifyWithKeySet(token, keySet, checks);
    else return ALLOW_ALL;
    checkExpiry(payload, now);
    checkNotBefore(payload, now);
    checkSubject(payload);
    return permissionsOf(payload);
  };

  return {
    enabled,
    async admit(req) {
      // Origin is what a browser says about the page that opens the socket;
      // clients without one (not browsers) can claim any, so none is not refused.
      if (!originAllowed(req)) return { ok: false, status: 403, reason: 'origin not allowed' };
      if (!enabled) return { ok: true, permissions: ALLOW_ALL };
      const token = tokenOf(req);
      if (token === null) return { ok: false, status: 401, reason: 'missing credentials' };
      try {
        return { ok: true, permissions: await verify(token) };
      } catch (error) {
        const code = typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : 'invalid';
        return { ok: false, status: 401, reason: `invalid credentials (${code})` };
      }
    },
  };
}
