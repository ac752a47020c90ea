import { SignJWT } from 'jose';
import { parseToolFlags, usageFailure, type ToolIo } from './cli-connect.js';

/** Where `lockwire token` reads and writes. */
export interface TokenIo extends ToolIo {
  /** Epoch ms: `iat` and `exp` are computed from it. */
  now(): number;
}

export const TOKEN_USAGE = `Usage: lockwire token --sub NAME [options]

Prints a JWT signed with HS256 for a server run with --auth-secret. The
permission flags take key patterns: an exact key, or a prefix ending in *
(quote it for the shell: 'doc:*'); each may be given several times.

Options:
  --sub NAME        the user the token names (required)
  --locks PATTERN   may acquire, release, extend and wait on these keys
  --watch PATTERN   may status, list and watch these keys
  --steal PATTERN   may acquire these keys with steal
  --admin PATTERN   may revoke these keys
  --ttl DURATION    lifetime: a whole number with s, m, h or d, at least 1s
                    (default 1h); unlike the other tools' durations a bare
                    number is refused: write 3600s or 1h
  --audience AUD    sets aud (for a server run with --auth-audience)
  --issuer ISS      sets iss (for a server run with --auth-issuer)
  --secret SECRET   the signing secret (default: env LOCKWIRE_AUTH_SECRET; an
                    empty value counts as not given)
  -h, --help        show this help
`;

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };

/**
 * Seconds of a `--ttl`: a whole number with `s`, `m`, `h` or `d` (`90s`,
 * `15m`, `1h`, `7d`). Null when invalid, when under 1 s, and for a bare
 * number: the other tools read one as milliseconds, so no reading of it
 * here is safe, and a lifetime 1000 times off is the worst mistake to make
 * silently.
 */
export function parseTtl(text: string): number | null {
  const match = /^(\d{1,9})([smhd])$/.exec(text.trim());
  if (!match?.[1] || !match[2]) return null;
  const seconds = Number(match[1]) * (UNIT_SECONDS[match[2]] ?? 1);
  return seconds > 0 ? seconds : null;
}

/** The one-line problem of a `--ttl` that {@link parseTtl} refused. */
function ttlProblem(text: string): string {
  const bare = text.trim();
  if (/^\d+$/.test(bare)) return `--ttl ${JSON.stringify(text)} has no unit: add one, e.g. --ttl ${bare}s or --ttl 1h`;
  return `--ttl ${JSON.stringify(text)}: expected a whole number of at least 1 with s, m, h or d, e.g. 90s, 15m, 1h or 7d`;
}

/** The claims `lockwire token` signs; exported so tests and tools build the same shape. */
export interface TokenClaims {
  sub: string;
  locks: string[];
  watch: string[];
  steal: string[];
  admin: string[];
}

/** Signs `claims` with HS256 for `ttlSeconds` from `now` (epoch ms). */
export async function signToken(
  claims: TokenClaims,
  options: { secret: string; ttlSeconds: number; now: number; audience?: string; issuer?: string },
): Promise<string> {
  const issuedAt = Math.floor(options.now / 1000);
  const { sub, ...permissions } = claims;
  let jwt = new SignJWT({ ...permissions })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + options.ttlSeconds);
  if (options.audience !== undefined) jwt = jwt.setAudience(options.audience);
  if (options.issuer !== undefined) jwt = jwt.setIssuer(options.issuer);
  return jwt.sign(new TextEncoder().encode(options.secret));
}

function fail(io: TokenIo, problem: string): number {
  return usageFailure(io, 'token', TOKEN_USAGE, problem);
}

/** Runs `lockwire token ARGS`: prints a signed token and resolves 0, or 2 on bad usage. */
export async function tokenCommand(args: string[], io: TokenIo): Promise<number> {
  const values = parseToolFlags(io, 'token', TOKEN_USAGE, args, {
    sub: { type: 'string' },
    locks: { type: 'string', multiple: true },
    watch: { type: 'string', multiple: true },
    steal: { type: 'string', multiple: true },
    admin: { type: 'string', multiple: true },
    ttl: { type: 'string' },
    audience: { type: 'string' },
    issuer: { type: 'string' },
    secret: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (typeof values === 'number') return values;
  if (values.sub === undefined || values.sub === '') return fail(io, '--sub is required');
  // An empty flag or variable counts as not given, as `lockwire serve` reads its settings.
  const secret = values.secret || io.env['LOCKWIRE_AUTH_SECRET'] || '';
  if (secret === '') return fail(io, 'no secret: pass --secret or set LOCKWIRE_AUTH_SECRET');
  const ttl = values.ttl ?? '1h';
  const ttlSeconds = parseTtl(ttl);
  if (ttlSeconds === null) return fail(io, ttlProblem(ttl));
  const token = await signToken(
    {
      sub: values.sub,
      locks: values.locks ?? [],
      watch: values.watch ?? [],
      steal: values.steal ?? [],
      admin: values.admin ?? [],
    },
    {
      secret,
      ttlSeconds,
      now: io.now(),
      ...(values.audience !== undefined ? { audience: values.audience } : {}),
      ...(values.issuer !== undefined ? { issuer: values.issuer } : {}),
    },
  );
  io.stdout.write(`${token}\n`);
  return 0;
}
