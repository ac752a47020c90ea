/**
 * The configuration of `lockwire serve`: the sources of settings (defaults,
 * environment, flags; the config file is in `config-file.ts`) as layers,
 * their merge and whole validation into a `ServerConfig`, and the
 * `createLockServer` options of one. The table of settings is in
 * `config-options.ts` and re-exported here.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as z from 'zod';
import { parseJwks, type AuthOptions } from './auth.js';
import { CONFIG_KEYS, configOptions, entries, type ConfigKey } from './config-options.js';
import { REDACTED, shownUrl } from './redact-url.js';
import { clusterUrlProblem } from './redis/redis-link.js';
import type { RedisTlsOptions } from './redis/redis-tls.js';
import type { LockServerOptions } from './server.js';

export { CONFIG_KEYS, configOptions, type ConfigKey } from './config-options.js';

/** The settings that name the TLS files of a `rediss://` Redis. */
const REDIS_TLS_KEYS = ['redisTlsCa', 'redisTlsCert', 'redisTlsKey'] as const;

/**
 * Every setting's schema, and the rules that hold between settings (a Redis
 * store needs a URL, a required claim needs a secret or keys to check it).
 */
export const serverConfigSchema = z.strictObject({
  host: configOptions.host.schema,
  port: configOptions.port.schema,
  maxPayload: configOptions.maxPayload.schema,
  maxKeyLength: configOptions.maxKeyLength.schema,
  maxLocksPerSession: configOptions.maxLocksPerSession.schema,
  maxWaitersPerKey: configOptions.maxWaitersPerKey.schema,
  heartbeat: configOptions.heartbeat.schema,
  store: configOptions.store.schema,
  redisUrl: configOptions.redisUrl.schema,
  redisTlsCa: configOptions.redisTlsCa.schema,
  redisTlsCert: configOptions.redisTlsCert.schema,
  redisTlsKey: configOptions.redisTlsKey.schema,
  redisNamespace: configOptions.redisNamespace.schema,
  nodeTtl: configOptions.nodeTtl.schema,
  redisConnections: configOptions.redisConnections.schema,
  maxWatchesPerSession: configOptions.maxWatchesPerSession.schema,
  maxPendingPerSession: configOptions.maxPendingPerSession.schema,
  maxConnections: configOptions.maxConnections.schema,
  maxBufferedBytes: configOptions.maxBufferedBytes.schema,
  rateLimit: configOptions.rateLimit.schema,
  rateBurst: configOptions.rateBurst.schema,
  sessionGrace: configOptions.sessionGrace.schema,
  authSecret: configOptions.authSecret.schema,
  authJwksFile: configOptions.authJwksFile.schema,
  authAudience: configOptions.authAudience.schema,
  authIssuer: configOptions.authIssuer.schema,
  allowOrigin: configOptions.allowOrigin.schema,
  logLevel: configOptions.logLevel.schema,
  drainDelay: configOptions.drainDelay.schema,
  shutdownTimeout: configOptions.shutdownTimeout.schema,
})
  .refine((config) => config.store === 'memory' || config.redisUrl !== '', {
    path: ['redisUrl'],
    error: 'required with --store redis or redis-cluster',
  })
  .refine((config) => config.store !== 'redis' || entries(config.redisUrl).length <= 1, {
    path: ['redisUrl'],
    error: 'one URL with --store redis; a list of nodes is for --store redis-cluster',
  })
  // node-redis gives every cluster node the same credentials and TLS: a
  // list that mixes them would reach some nodes and fail on the others.
  .check((ctx) => {
    if (ctx.value.store !== 'redis-cluster' || ctx.value.redisUrl === '') return;
    const problem = clusterUrlProblem(ctx.value.redisUrl);
    if (problem !== undefined) ctx.issues.push({ code: 'custom', input: ctx.value, path: ['redisUrl'], message: problem });
  })
  .refine((config) => config.redisTlsCert === '' || config.redisTlsKey !== '', {
    path: ['redisTlsCert'],
    error: 'needs --redis-tls-key, the private key of the client certificate',
  })
  .refine((config) => config.redisTlsKey === '' || config.redisTlsCert !== '', {
    path: ['redisTlsKey'],
    error: 'needs --redis-tls-cert, the client certificate of this key',
  })
  // TLS files beside a redis:// URL would be read and then not used: the
  // connection would go out in clear text while the settings ask for TLS.
  .check((ctx) => {
    const config = ctx.value;
    if (config.store === 'memory' || config.redisUrl === '') return;
    if (entries(config.redisUrl).every((url) => url.toLowerCase().startsWith('rediss:'))) return;
    const given = REDIS_TLS_KEYS.find((key) => config[key] !== '');
    if (given === undefined) return;
    ctx.issues.push({
      code: 'custom',
      input: config,
      path: [given],
      message: 'TLS files need a rediss:// URL: --redis-url is redis://, which connects without TLS',
    });
  })
  .refine((config) => config.authSecret === '' || config.authJwksFile === '', {
    path: ['authJwksFile'],
    error: 'give either --auth-secret or --auth-jwks-file, not both',
  })
  // Without a secret or keys no token is checked: a required claim given
  // alone would leave the server open while it looks guarded.
  .refine((config) => config.authAudience === '' || config.authSecret !== '' || config.authJwksFile !== '', {
    path: ['authAudience'],
    error: 'requires --auth-secret or --auth-jwks-file; without them no token is checked',
  })
  .refine((config) => config.authIssuer === '' || config.authSecret !== '' || config.authJwksFile !== '', {
    path: ['authIssuer'],
    error: 'requires --auth-secret or --auth-jwks-file; without them no token is checked',
  });

/** The validated settings of a `lockwire serve`. */
export type ServerConfig = z.infer<typeof serverConfigSchema>;

/** One source of settings: raw values by key, and how to name a key of this source in an error. */
export interface ConfigLayer {
  values: Partial<Record<ConfigKey, unknown>>;
  describe(key: ConfigKey): string;
  /** True for the defaults: a setting left at its default is named by its flag and variable in an error. */
  readonly defaults?: boolean;
}

/** A setting failed validation; the message names the flag or variable at fault. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** The defaults of every setting. */
export function defaultsLayer(): ConfigLayer {
  const values: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of CONFIG_KEYS) values[key] = configOptions[key].default;
  return { values, describe: (key) => `default ${key}`, defaults: true };
}

/** Settings from environment variables (`LOCKWIRE_PORT`, ...); empty variables count as unset. */
export function envLayer(env: Readonly<Record<string, string | undefined>>): ConfigLayer {
  const values: Partial<Record<ConfigKey, unknown>> = {};
  const names = new Map<ConfigKey, string>();
  for (const key of CONFIG_KEYS) {
    const option: { env: string; envAlias?: string } = configOptions[key];
    for (const name of option.envAlias ? [option.env, option.envAlias] : [option.env]) {
      const value = env[name];
      if (value === undefined || isEmpty(key, value)) continue;
      values[key] = value;
      names.set(key, name);
      break;
    }
  }
  return { values, describe: (key) => names.get(key) ?? configOptions[key].env };
}

/** The settings that take a comma-separated list: a value of commas and blanks lists nothing. */
const LIST_KEYS: ReadonlySet<ConfigKey> = new Set(['allowOrigin', 'redisUrl']);

/**
 * An empty flag or variable: `--auth-secret=`, `--allow-origin=`, `LOCKWIRE_PORT=`, one of blanks only
 * (`LOCKWIRE_ALLOW_ORIGIN=" "`), and for a list setting one that lists nothing (`--allow-origin=,`). Taken for
 * a value, such a setting would outrank the file's and switch its check off (no origin allowed = not checked).
 */
function isEmpty(key: ConfigKey, value: unknown): boolean {
  const blank = (item: unknown) =>
    typeof item === 'string' && (LIST_KEYS.has(key) ? entries(item).length === 0 : item.trim() === '');
  return blank(value) || (Array.isArray(value) && value.every(blank));
}

/**
 * Settings from command-line flags, as `node:util` `parseArgs` returns them
 * (keyed by flag name). Empty flags count as unset, as empty variables do:
 * `--auth-secret="$UNSET"` must not switch off the secret of the
 * environment or the config file.
 */
export function flagLayer(flags: Readonly<Record<string, unknown>>): ConfigLayer {
  const values: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of CONFIG_KEYS) {
    const value = flags[configOptions[key].flag];
    if (value !== undefined && !isEmpty(key, value)) values[key] = value;
  }
  return { values, describe: (key) => `--${configOptions[key].flag}` };
}

/** The raw value of each setting, later layers winning, and the layer it came from. */
function merge(layers: readonly ConfigLayer[]) {
  const raw: Partial<Record<ConfigKey, unknown>> = {};
  const origin = new Map<ConfigKey, ConfigLayer>();
  for (const layer of layers) {
    for (const key of CONFIG_KEYS) {
      if (layer.values[key] === undefined) continue;
      raw[key] = layer.values[key];
      origin.set(key, layer);
    }
  }
  return { raw, origin };
}

/** A setting's value as a config error shows it: the auth secret never, a Redis URL redacted. */
export function shownValue(key: ConfigKey, value: unknown): string {
  if (key === 'authSecret') return REDACTED;
  if (key === 'redisUrl') return entries(String(value)).map(shownUrl).join(',');
  return String(value);
}

/**
 * Merges layers, later ones winning per setting (e.g. defaults, a config
 * file, the environment, flags), and validates the result. Throws a
 * `ConfigError` listing every invalid setting with the source it came from.
 */
export function resolveConfig(layers: readonly ConfigLayer[]): ServerConfig {
  const { raw, origin } = merge(layers);
  const parsed = serverConfigSchema.safeParse(raw);
  const problems = (parsed.success ? [] : parsed.error.issues).map((issue) => {
    const key = issue.path[0] as ConfigKey;
    const layer = origin.get(key);
    // A setting left at its default (a Redis URL that --store redis needs) is named by the flag and variable that set it.
    if (layer === undefined || layer.defaults === true) {
      return `--${configOptions[key].flag} (or ${configOptions[key].env}): ${issue.message}`;
    }
    return `${layer.describe(key)} ${JSON.stringify(shownValue(key, raw[key]))}: ${issue.message}`;
  });
  const redisUrlBad = !parsed.success && parsed.error.issues.some((issue) => issue.path[0] === 'redisUrl');
  problems.push(...unusedRedisSettings(layers, raw, origin, redisUrlBad));
  if (parsed.success && problems.length === 0) return parsed.data;
  throw new ConfigError(problems.join('\n'));
}

/**
 * A Redis URL (or a Redis TLS file, or a namespace but the default) beside
 * the memory store, which would leave it unused: an operator who forgot
 * `--store` would run one unshared lock table per node. It is a problem
 * unless `--store memory` comes from a source that outranks the setting's
 * (`--store memory` on the command line over a machine-wide
 * `LOCKWIRE_REDIS_URL`): that is a choice to serve from memory. A URL
 * already reported invalid (`urlBad`) is not reported again.
 */
function unusedRedisSettings(
  layers: readonly ConfigLayer[],
  raw: Partial<Record<ConfigKey, unknown>>,
  origin: ReadonlyMap<ConfigKey, ConfigLayer>,
  urlBad: boolean,
): string[] {
  if (raw.store !== 'memory') return [];
  const storeLayer = origin.get('store');
  const rank = (layer: ConfigLayer | undefined) => (layer === undefined ? -1 : layers.indexOf(layer));
  const storeSource = storeLayer?.describe('store') ?? 'default store';
  const problems: string[] = [];
  for (const key of ['redisUrl', 'redisNamespace', ...REDIS_TLS_KEYS] as const) {
    const value = raw[key];
    if (typeof value !== 'string' || entries(value).length === 0 || value === configOptions[key].default) continue;
    if (key === 'redisUrl' && urlBad) continue;
    const layer = origin.get(key);
    if (rank(storeLayer) > rank(layer)) continue;
    const source = layer?.describe(key) ?? `--${configOptions[key].flag}`;
    // Only a later source can outrank the setting's: from the last one, leaving it out is the way to serve from memory.
    const what = key === 'redisUrl' ? 'URL' : key === 'redisNamespace' ? 'namespace' : 'file';
    const memory = rank(layer) === layers.length - 1 ? `leave the ${what} out` : 'give --store memory';
    const use =
      key === 'redisUrl'
        ? 'add --store redis to keep the lock table in this Redis'
        : key === 'redisNamespace'
          ? 'add --store redis and a --redis-url to keep the lock table in a Redis under this namespace'
          : 'add --store redis and a rediss:// --redis-url to keep the lock table in a Redis reached with it';
    problems.push(
      `${source} ${JSON.stringify(shownValue(key, value))}: not used by the memory store (${storeSource} "memory"): ` +
        `${use} (--store redis-cluster for a cluster), or ${memory} to serve from memory without it`,
    );
  }
  return problems;
}

/**
 * Names the source each setting of `layers` came from, as `resolveConfig`
 * does in its errors (`--port`, `LOCKWIRE_PORT`, `lockwire.json: port`);
 * a setting no layer gives is named by its flag.
 */
export function configSources(layers: readonly ConfigLayer[]): (key: ConfigKey) => string {
  const { origin } = merge(layers);
  return (key) => origin.get(key)?.describe(key) ?? `--${configOptions[key].flag}`;
}

function problemOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** What `serverOptionsFromConfig` needs beyond the configuration. */
export interface ServerOptionsContext {
  /** Names where a setting came from in errors (see `configSources`). Default: its flag. */
  describe?: (key: ConfigKey) => string;
  /** Reads the `--auth-jwks-file` as text. Default: the file system. */
  readFile?: (file: string) => string;
  /**
   * Told what of a setting is left unused, naming the setting's source:
   * each key of the `--auth-jwks-file` skipped as not for signatures.
   * Default: nothing is told.
   */
  warn?: (message: string) => void;
}

/**
 * The `createLockServer` options of a configuration. Reads and checks the
 * `--auth-jwks-file` (see `parseJwks`): throws a `ConfigError` naming the
 * setting's source and the file when it cannot be read, is not JSON, holds
 * anything but public keys, a signature key no token could be verified with,
 * or no signature key at all, so a bad key set stops the server before it
 * listens rather than refusing every token. Keys marked for encryption
 * beside signature keys are left out, each told to `warn`.
 */
export function serverOptionsFromConfig(config: ServerConfig, context: ServerOptionsContext = {}): LockServerOptions {
  const describe = context.describe ?? ((key: ConfigKey) => `--${configOptions[key].flag}`);
  const readFile = context.readFile ?? ((file: string) => readFileSync(file, 'utf8'));
  const auth: AuthOptions = {};
  if (config.authSecret !== '') auth.secret = config.authSecret;
  if (config.authJwksFile !== '') {
    const file = config.authJwksFile;
    const fault = (problem: string) =>
      new ConfigError(`${describe('authJwksFile')} ${JSON.stringify(file)}: ${problem}`);
    let text: string;
    try {
      text = readFile(file);
    } catch (error) {
      throw fault(`cannot be read: ${problemOf(error)}`);
    }
    try {
      auth.jwks = parseJwks(text, {
        onSkipped: (key, reason) => context.warn?.(fault(`${key}: skipped, no token is verified with it: ${reason}`).message),
      });
    } catch (error) {
      throw fault(problemOf(error));
    }
  }
  if (config.authAudience !== '') auth.audience = config.authAudience;
  if (config.authIssuer !== '') auth.issuer = config.authIssuer;
  return {
    host: config.host,
    port: config.port,
    heartbeatInterval: config.heartbeat,
    drainDelay: config.drainDelay,
    shutdownTimeout: config.shutdownTimeout,
    sessionGrace: config.sessionGrace,
    ...(auth.secret !== undefined || auth.jwks !== undefined ? { auth } : {}),
    ...(config.allowOrigin.length > 0 ? { allowOrigins: config.allowOrigin } : {}),
    limits: {
      maxPayload: config.maxPayload,
      maxKeyLength: config.maxKeyLength,
      maxLocksPerSession: config.maxLocksPerSession,
      maxWaitersPerKey: config.maxWaitersPerKey,
      maxWatchesPerSession: config.maxWatchesPerSession,
      maxPendingPerSession: config.maxPendingPerSession,
      maxConnections: config.maxConnections,
      maxBufferedBytes: config.maxBufferedBytes,
      rateLimit: config.rateLimit,
      rateBurst: config.rateBurst,
    },
  };
}

/**
 * The TLS options of the Redis stores (`createRedisStore`'s `tls`) from the
 * `--redis-tls-*` files, read once, or undefined when none is given. Throws
 * a `ConfigError` naming the setting's source and the file when a file
 * cannot be read, the CA file holds no PEM certificate, the certificate or
 * key does not parse, or the key is not the certificate's: a wrong file
 * stops the server before it starts rather than failing each handshake.
 * Which settings go together is checked by `resolveConfig`.
 */
export function redisTlsFromConfig(config: ServerConfig, context: ServerOptionsContext = {}): RedisTlsOptions | undefined {
  if (REDIS_TLS_KEYS.every((key) => config[key] === '')) return undefined;
  const describe = context.describe ?? ((key: ConfigKey) => `--${configOptions[key].flag}`);
  const readFile = context.readFile ?? ((file: string) => readFileSync(file, 'utf8'));
  const fault = (key: ConfigKey, problem: string) => new ConfigError(`${describe(key)} ${JSON.stringify(config[key])}: ${problem}`);
  const read = (key: (typeof REDIS_TLS_KEYS)[number]): string => {
    try {
      return readFile(config[key]);
    } catch (error) {
      throw fault(key, `cannot be read: ${problemOf(error)}`);
    }
  };
  const certificate = (key: (typeof REDIS_TLS_KEYS)[number], text: string, problem: string) => {
    try {
      return new X509Certificate(text);
    } catch (error) {
      throw fault(key, `${problem} (${problemOf(error)})`);
    }
  };
  const tls: RedisTlsOptions = {};
  if (config.redisTlsCa !== '') {
    tls.ca = read('redisTlsCa');
    certificate('redisTlsCa', tls.ca, 'holds no PEM certificate');
  }
  if (config.redisTlsCert !== '' && config.redisTlsKey !== '') {
    const cert = read('redisTlsCert');
    const key = read('redisTlsKey');
    const parsed = certificate('redisTlsCert', cert, 'is not a PEM certificate');
    let privateKey;
    try {
      privateKey = createPrivateKey(key);
    } catch (error) {
      throw fault('redisTlsKey', `is not an unencrypted PEM private key (${problemOf(error)})`);
    }
    if (!parsed.checkPrivateKey(privateKey)) {
      throw fault('redisTlsKey', `is not the private key of the certificate in ${JSON.stringify(config.redisTlsCert)}`);
    }
    tls.cert = cert;
    tls.key = key;
  }
  return tls;
}
