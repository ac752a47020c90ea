/**
 * The table of `lockwire serve`'s settings: for each one its flag,
 * environment variable, default, help text and the schema of one value.
 * How settings are gathered from their sources and checked together lives
 * in `config.ts`.
 */
import { DEFAULT_LIMITS, MAX_DURATION_MS } from '@lockwire/protocol';
import * as z from 'zod';
import { normaliseOrigin } from './auth.js';
import { DEFAULT_SERVER_LIMITS } from './limits.js';
import { shownUrl } from './redact-url.js';
import { DEFAULT_REDIS_CONNECTIONS, MAX_REDIS_CONNECTIONS } from './redis/command-pool.js';
import { NAMESPACE_PATTERN } from './redis/key-codec.js';

/** Reads an integer given as text (flags, environment) and leaves other values to the schema. */
function fromText(value: unknown): unknown {
  return typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
}

function integer(min: number, max: number) {
  const error = `expected an integer from ${min} to ${max}`;
  return z.preprocess(fromText, z.number({ error }).int({ error }).min(min, { error }).max(max, { error }));
}

/** True for what the Redis client connects to: `redis://` or `rediss://`, a host, and at most a database number. */
function isRedisUrl(text: string): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  return (
    (url.protocol === 'redis:' || url.protocol === 'rediss:') &&
    url.hostname !== '' &&
    /^(\/\d*)?$/.test(url.pathname) &&
    url.search === '' &&
    url.hash === ''
  );
}

/**
 * Why the user name or password of a Redis URL would not decode, or null
 * when both do. The Redis client percent-decodes them when it connects and
 * fails on a `%` not followed by two hex digits (or on bytes that are not
 * UTF-8): found here, that is a setting to fix, not a failure to connect.
 * Never names the password itself.
 */
function redisCredentialsProblem(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  const undecodable = (part: string) => {
    try {
      decodeURIComponent(part);
      return false;
    } catch {
      return true;
    }
  };
  const parts = [undecodable(url.username) ? 'user name' : null, undecodable(url.password) ? 'password' : null].filter(
    (part) => part !== null,
  );
  if (parts.length === 0) return null;
  const [subject, verb, pronoun] = parts.length === 2 ? ['user name and password', 'are', 'them'] : [parts[0], 'is', 'it'];
  return `the ${subject} of ${JSON.stringify(shownUrl(text))} ${verb} not percent-encoded: write a % in ${pronoun} as %25`;
}

/** What a namespace may be: `NAMESPACE_PATTERN`, which `createRedisStore` checks, said in words. */
const NAMESPACE_ERROR = 'expected 1 to 64 of the letters A-Z and a-z, the digits, _, . and -';

/** pino's level names, least severe first; `silent` writes nothing. */
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/**
 * pino's name of a log level given in any case: platforms often set
 * `LOG_LEVEL=INFO` or `WARN` for every service, and many log setups call
 * warn `warning`. Other values are left to the schema.
 */
function logLevelName(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const name = value.toLowerCase();
  return name === 'warning' ? 'warn' : name;
}

/** The entries of a comma-separated setting, trimmed, empty ones dropped. */
export function entries(text: string): string[] {
  return text.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
}

/**
 * Every server setting once: its flag, environment variable, default, and
 * schema. The CLI's usage, its parser and the environment layer are all
 * derived from this table, so a new option (or a config-file layer) is one
 * entry here.
 */
export const configOptions = {
  host: {
    flag: 'host',
    env: 'LOCKWIRE_HOST',
    arg: 'HOST',
    help: 'interface to listen on',
    default: '127.0.0.1',
    schema: z.string().min(1, { error: 'expected a host name or address' }),
  },
  port: {
    flag: 'port',
    env: 'LOCKWIRE_PORT',
    arg: 'PORT',
    help: 'port to listen on; 0 picks a free one',
    default: 7311,
    schema: integer(0, 65_535),
  },
  maxPayload: {
    flag: 'max-payload',
    env: 'LOCKWIRE_MAX_PAYLOAD',
    arg: 'BYTES',
    help: 'largest frame; larger ones close the connection with 1009',
    default: DEFAULT_LIMITS.maxPayload,
    schema: integer(1024, 256 * 1024 * 1024),
  },
  maxKeyLength: {
    flag: 'max-key-length',
    env: 'LOCKWIRE_MAX_KEY_LENGTH',
    arg: 'N',
    help: 'longest key, in UTF-16 code units',
    default: DEFAULT_LIMITS.maxKeyLength,
    schema: integer(1, 65_536),
  },
  maxLocksPerSession: {
    flag: 'max-locks-per-session',
    env: 'LOCKWIRE_MAX_LOCKS_PER_SESSION',
    arg: 'N',
    help: 'keys one connection may hold or wait for',
    default: DEFAULT_LIMITS.maxLocksPerSession,
    schema: integer(1, 10_000_000),
  },
  maxWaitersPerKey: {
    flag: 'max-waiters-per-key',
    env: 'LOCKWIRE_MAX_WAITERS_PER_KEY',
    arg: 'N',
    help: 'longest queue of one key',
    default: DEFAULT_LIMITS.maxWaitersPerKey,
    schema: integer(1, 10_000_000),
  },
  heartbeat: {
    flag: 'heartbeat',
    env: 'LOCKWIRE_HEARTBEAT',
    arg: 'MS',
    help: 'ping interval; a connection missing a ping is cut; 0 disables',
    default: 10_000,
    schema: integer(0, MAX_DURATION_MS),
  },
  store: {
    flag: 'store',
    env: 'LOCKWIRE_STORE',
    arg: 'KIND',
    help: 'lock table: memory, redis (one redis-server) or redis-cluster; nodes on one Redis share one table',
    default: 'memory',
    schema: z.enum(['memory', 'redis', 'redis-cluster'], { error: 'expected one of: memory, redis, redis-cluster' }),
  },
  redisUrl: {
    flag: 'redis-url',
    env: 'LOCKWIRE_REDIS_URL',
    arg: 'URL',
    help: 'Redis of the redis stores: redis://host:port, or rediss:// for TLS (cluster: one or more nodes, comma-separated)',
    default: '',
    schema: z.string().check((ctx) => {
      for (const url of entries(ctx.value)) {
        if (isRedisUrl(url)) {
          const problem = redisCredentialsProblem(url);
          if (problem !== null) ctx.issues.push({ code: 'custom', input: ctx.value, message: problem });
          continue;
        }
        ctx.issues.push({
          code: 'custom',
          input: ctx.value,
          message: `${JSON.stringify(shownUrl(url))} is not a Redis URL: expected redis://host:port or rediss://host:port`,
        });
      }
    }),
  },
  redisTlsCa: {
    flag: 'redis-tls-ca',
    env: 'LOCKWIRE_REDIS_TLS_CA',
    arg: 'FILE',
    help: 'rediss:// only: PEM CA bundle the Redis server\'s certificate is checked against, instead of the system CAs',
    default: '',
    schema: z.string(),
  },
  redisTlsCert: {
    flag: 'redis-tls-cert',
    env: 'LOCKWIRE_REDIS_TLS_CERT',
    arg: 'FILE',
    help: 'rediss:// only: PEM client certificate, for a Redis that requires one (tls-auth-clients); needs --redis-tls-key',
    default: '',
    schema: z.string(),
  },
  redisTlsKey: {
    flag: 'redis-tls-key',
    env: 'LOCKWIRE_REDIS_TLS_KEY',
    arg: 'FILE',
    help: 'rediss:// only: PEM private key (unencrypted) of --redis-tls-cert',
    default: '',
    schema: z.string(),
  },
  redisNamespace: {
    flag: 'redis-namespace',
    env: 'LOCKWIRE_REDIS_NAMESPACE',
    arg: 'NAME',
    help: 'redis stores: prefix of the keys and channels; nodes of one table share it, deployments on one Redis database need different ones',
    default: 'lw',
    schema: z.string({ error: NAMESPACE_ERROR }).regex(NAMESPACE_PATTERN, { error: NAMESPACE_ERROR }),
  },
  nodeTtl: {
    flag: 'node-ttl',
    env: 'LOCKWIRE_NODE_TTL',
    arg: 'MS',
    help: 'redis stores: a dead node\'s locks are released within this time',
    default: 5000,
    schema: integer(100, 3_600_000),
  },
  redisConnections: {
    flag: 'redis-connections',
    env: 'LOCKWIRE_REDIS_CONNECTIONS',
    arg: 'N',
    help: 'redis store: command connections to the Redis server (a key\'s commands share one); more lets Redis and the node work at once',
    default: DEFAULT_REDIS_CONNECTIONS,
    schema: integer(1, MAX_REDIS_CONNECTIONS),
  },
  maxWatchesPerSession: {
    flag: 'max-watches-per-session',
    env: 'LOCKWIRE_MAX_WATCHES_PER_SESSION',
    arg: 'N',
    help: 'prefixes one connection may watch at once',
    default: DEFAULT_SERVER_LIMITS.maxWatchesPerSession,
    schema: integer(1, 1_000_000),
  },
  maxPendingPerSession: {
    flag: 'max-pending-per-session',
    env: 'LOCKWIRE_MAX_PENDING_PER_SESSION',
    arg: 'N',
    help: 'requests of one connection unanswered at once (waits included, acquires waiting in a queue not)',
    default: DEFAULT_SERVER_LIMITS.maxPendingPerSession,
    schema: integer(1, 10_000_000),
  },
  maxConnections: {
    flag: 'max-connections',
    env: 'LOCKWIRE_MAX_CONNECTIONS',
    arg: 'N',
    help: 'open connections; further upgrades get 503',
    default: DEFAULT_SERVER_LIMITS.maxConnections,
    schema: integer(1, 10_000_000),
  },
  maxBufferedBytes: {
    flag: 'max-buffered-bytes',
    env: 'LOCKWIRE_MAX_BUFFERED_BYTES',
    arg: 'BYTES',
    help: 'unsent output of one connection; a slower reader is cut',
    default: DEFAULT_SERVER_LIMITS.maxBufferedBytes,
    schema: integer(64 * 1024, 1024 * 1024 * 1024),
  },
  rateLimit: {
    flag: 'rate-limit',
    env: 'LOCKWIRE_RATE_LIMIT',
    arg: 'N',
    help: 'frames per second one connection may send on average',
    default: DEFAULT_SERVER_LIMITS.rateLimit,
    schema: integer(1, 10_000_000),
  },
  rateBurst: {
    flag: 'rate-burst',
    env: 'LOCKWIRE_RATE_BURST',
    arg: 'N',
    help: 'frames one connection may send at once after a quiet spell',
    default: DEFAULT_SERVER_LIMITS.rateBurst,
    schema: integer(1, 10_000_000),
  },
  sessionGrace: {
    flag: 'session-grace',
    env: 'LOCKWIRE_SESSION_GRACE',
    arg: 'MS',
    help: 'how long a disconnected session keeps its locks for a resume; 0 disables',
    default: 0,
    schema: integer(0, MAX_DURATION_MS),
  },
  authSecret: {
    flag: 'auth-secret',
    env: 'LOCKWIRE_AUTH_SECRET',
    arg: 'SECRET',
    help: 'require JWTs signed with this HS256 secret (prefer the environment variable)',
    default: '',
    // Blanks only never reach here from a flag or variable (they count as
    // not given); from a file they would be a secret anyone can guess.
    schema: z.string().refine((secret) => secret === '' || secret.trim() !== '', {
      error: 'a secret of blanks only: use 32 random bytes or more',
    }),
  },
  authJwksFile: {
    flag: 'auth-jwks-file',
    env: 'LOCKWIRE_AUTH_JWKS_FILE',
    arg: 'FILE',
    help: 'require JWTs signed with a key of this JWKS file (public keys)',
    default: '',
    schema: z.string(),
  },
  authAudience: {
    flag: 'auth-audience',
    env: 'LOCKWIRE_AUTH_AUDIENCE',
    arg: 'AUD',
    help: 'required aud claim of the tokens (with --auth-secret or --auth-jwks-file)',
    default: '',
    schema: z.string(),
  },
  authIssuer: {
    flag: 'auth-issuer',
    env: 'LOCKWIRE_AUTH_ISSUER',
    arg: 'ISS',
    help: 'required iss claim of the tokens (with --auth-secret or --auth-jwks-file)',
    default: '',
    schema: z.string(),
  },
  allowOrigin: {
    flag: 'allow-origin',
    env: 'LOCKWIRE_ALLOW_ORIGIN',
    arg: 'ORIGIN',
    help: 'allowed browser Origin, exact (repeatable; env: comma-separated; * allows any); none: not checked',
    default: '',
    multiple: true,
    schema: z.preprocess(
      (value) => (Array.isArray(value) ? value.join(',') : value),
      z
        .string()
        .transform(entries)
        .check((ctx) => {
          for (const origin of ctx.value) {
            try {
              normaliseOrigin(origin);
            } catch {
              ctx.issues.push({
                code: 'custom',
                input: ctx.value,
                message: `${JSON.stringify(origin)} is not an origin: expected scheme://host[:port] (no path), * or null`,
              });
            }
          }
        }),
    ),
  },
  logLevel: {
    flag: 'log-level',
    env: 'LOCKWIRE_LOG_LEVEL',
    arg: 'LEVEL',
    help: 'least severe log level written to stderr: trace, debug, info, warn, error, fatal, silent (any case; warning for warn)',
    default: 'info',
    schema: z.preprocess(
      logLevelName,
      z.enum(LOG_LEVELS, { error: `expected one of: ${LOG_LEVELS.join(', ')} (in any case; warning for warn)` }),
    ),
    /** The variable most log setups already set, read when LOCKWIRE_LOG_LEVEL is not. */
    envAlias: 'LOG_LEVEL',
  },
  drainDelay: {
    flag: 'drain-delay',
    env: 'LOCKWIRE_DRAIN_DELAY',
    arg: 'MS',
    help: 'on SIGTERM, answer /healthz and /readyz 503 and refuse new connections this long before closing any',
    default: 0,
    schema: integer(0, MAX_DURATION_MS),
  },
  shutdownTimeout: {
    flag: 'shutdown-timeout',
    env: 'LOCKWIRE_SHUTDOWN_TIMEOUT',
    arg: 'MS',
    help: 'after the drain delay, cut whatever connections are left after this long',
    default: 10_000,
    schema: integer(1, MAX_DURATION_MS),
  },
} as const;

/** The camelCase name of a setting, as in the config file: `port`, `maxPayload`, ... */
export type ConfigKey = keyof typeof configOptions;
/** Every setting's name, in the table's order (the order of `lockwire serve --help`). */
export const CONFIG_KEYS = Object.keys(configOptions) as ConfigKey[];
