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
import { ALLOW_ALL, type KeyPattern, type Permissions } from './permissions.js';
import { parseRequestUrl } from './request-url.js';

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
   * 401 for missing, invalid or expired credentials. Never throws.
   */
  admit(req: IncomingMessage): Promise<Admission>;
}

export interface AuthenticatorOptions {
  auth?: AuthOptions;
  /**
   * Exact Origins allowed; `*` allows any. Absent or empty: Origin is not
   * checked. A request without an Origin header (not a browser) is not refused.
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

/**
 * An allowed-Origin entry as a browser would send it in `Origin`: scheme and
 * host lowercased, a default port and a trailing `/` dropped
 * (`HTTPS://App.Example:443/` -> `https://app.example`). `*` and `null` (the
 * Origin of opaque pages) stay as they are. Throws `TypeError` for an entry
 * that is not an origin (one with a path, query or fragment, or no host),
 * which could never match.
 */
export function normaliseOrigin(entry: string): string {
  const trimmed = entry.trim();
  if (trimmed === '*' || trimmed === 'null') return trimmed;
  let url: URL | null = null;
  try {
    url = new URL(trimmed);
  } catch {
    url = null;
  }
  if (url === null || url.origin === 'null' || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new TypeError(`allowOrigins: ${JSON.stringify(entry)} is not an origin (scheme://host[:port])`);
  }
  return url.origin;
}

/** The shortest RSA modulus jose verifies RS* and PS* signatures with: it refuses every token of a shorter key. */
const MIN_RSA_BITS = 2048;

/** Why a JWK is not a public signature key lockwire can verify with, or null when it is one. */
function jwkProblem(jwk: unknown): string | null {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return 'not a JWK (a JSON object with kty)';
  const { kty } = jwk as { kty?: unknown };
  if (kty === 'oct') return 'a symmetric key: give an HS256 secret with --auth-secret instead';
  if ('d' in jwk) return 'a private key: the file must hold public keys only';
  if (kty !== 'RSA' && kty !== 'EC' && kty !== 'OKP') return `kty ${JSON.stringify(kty)}: expected RSA, EC or OKP`;
  let bits: number | undefined;
  try {
    bits = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }).asymmetricKeyDetails?.modulusLength;
  } catch (error) {
    return `not a valid ${kty} public key: ${error instanceof Error ? error.message : String(error)}`;
  }
  if (kty === 'RSA' && (bits === undefined || bits < MIN_RSA_BITS)) {
    return `an RSA key of ${bits ?? 'unknown'} bits: tokens are verified only with RSA keys of ${MIN_RSA_BITS} bits or more`;
  }
  return null;
}

/** How an error names a key of a JWKS: by its index, and its `kid` when it has one. */
function keyName(index: number, jwk: unknown): string {
  const kid = typeof jwk === 'object' && jwk !== null && 'kid' in jwk ? jwk.kid : undefined;
  return typeof kid === 'string' ? `keys[${index}] (kid ${JSON.stringify(kid)})` : `keys[${index}]`;
}

/**
 * The key set of a JWKS file's text (`--auth-jwks-file`): public signature
 * keys (RSA, EC or OKP) that tokens are verified with. Throws an `Error`
 * saying what is wrong: not JSON, no `keys` array, no keys, or a key that is
 * not such a key or is an RSA key under 2048 bits (named by its index and
 * its kid: `keys[1] (kid "k2"): a private key ...`). The
 * checks run when the server starts, so a bad file stops it instead of
 * leaving every token refused.
 */
export function parseJwks(text: string): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || !('keys' in parsed) || !Array.isArray(parsed.keys)) {
    throw new Error('expected a JSON object with a keys array');
  }
  if (parsed.keys.length === 0) throw new Error('the keys array is empty: no token could be verified');
  for (const [index, jwk] of parsed.keys.entries()) {
    const problem = jwkProblem(jwk);
    if (problem !== null) throw new Error(`${keyName(index, jwk)}: ${problem}`);
  }
  const jwks = parsed as JSONWebKeySet;
  createLocalJWKSet(jwks);
  return jwks;
}

/**
 * Creates the request check of a server. Throws `TypeError` when both
 * `secret` and `jwks`, an empty `secret`, or an `audience` or `issuer`
 * without either are given, so a misconfigured server does not start open,
 * and for an allowed Origin that is not one.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { auth, clock } = options;
  const origins = new Set((options.allowOrigins ?? []).map(normaliseOrigin));
  if (auth?.secret !== undefined && auth.jwks !== undefined) {
    throw new TypeError('auth: give either secret or jwks, not both');
  }
  if (auth?.secret !== undefined && auth.secret.length === 0) throw new TypeError('auth.secret: must not be empty');
  if (auth?.secret === undefined && auth?.jwks === undefined && (auth?.audience !== undefined || auth?.issuer !== undefined)) {
    throw new TypeError('auth: audience and issuer need a secret or jwks to check the tokens against');
  }
  const secret = typeof auth?.secret === 'string' ? new TextEncoder().encode(auth.secret) : auth?.secret;
  const keySet = auth?.jwks ? createLocalJWKSet(auth.jwks) : undefined;
  const enabled = secret !== undefined || keySet !== undefined;

  const verify = async (token: string): Promise<Permissions> => {
    const checks: JWTVerifyOptions = { currentDate: new Date(clock.now()) };
    if (auth?.audience !== undefined) checks.audience = auth.audience;
    if (auth?.issuer !== undefined) checks.issuer = auth.issuer;
    if (secret) return permissionsOf((await jwtVerify(token, secret, { ...checks, algorithms: ['HS256'] })).payload);
    if (keySet) return permissionsOf(await verifyWithKeySet(token, keySet, checks));
    return ALLOW_ALL;
  };

  return {
    enabled,
    async admit(req) {
      const origin = req.headers.origin;
      // Origin is what a browser says about the page that opens the socket;
      // clients without one (not browsers) can claim any, so none is not refused.
      if (origins.size > 0 && !origins.has('*') && origin !== undefined && !origins.has(origin)) {
        return { ok: false, status: 403, reason: 'origin not allowed' };
      }
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
