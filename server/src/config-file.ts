import { readFileSync } from 'node:fs';
import { CONFIG_KEYS, ConfigError, type ConfigKey, type ConfigLayer } from './config.js';
import { jsonProblem, problem } from './json-problem.js';

/** The flag that names a config file: `lockwire serve --config lockwire.json`. */
export const CONFIG_FILE_FLAG = 'config';
/** The environment variable that names a config file when the flag is not given. */
export const CONFIG_FILE_ENV = 'LOCKWIRE_CONFIG';

const known: ReadonlySet<string> = new Set(CONFIG_KEYS);

function isConfigKey(name: string): name is ConfigKey {
  return known.has(name);
}

/**
 * The settings of a config file's text: one JSON object whose keys are the
 * settings' names as in `configOptions` (`port`, `maxPayload`, `logLevel`,
 * ...), with JSON values (`"port": 7311`, `"allowOrigin": ["https://a"]`).
 * The values are validated with every other layer by `resolveConfig`, which
 * names the file and the setting at fault. Throws a `ConfigError` naming the
 * file for text that is not a JSON object, and for unknown keys (all of them),
 * so a typo cannot pass for a default.
 */
export function configFileLayer(file: string, text: string): ConfigLayer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${file}: not valid JSON: ${jsonProblem(error, text)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`${file}: expected a JSON object of settings, e.g. {"port": 7311}`);
  }
  const values: Partial<Record<ConfigKey, unknown>> = {};
  const unknown: string[] = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (isConfigKey(name)) values[name] = value;
    else unknown.push(JSON.stringify(name));
  }
  if (unknown.length > 0) {
    const noun = unknown.length === 1 ? 'setting' : 'settings';
    throw new ConfigError(`${file}: unknown ${noun} ${unknown.join(', ')}; known: ${CONFIG_KEYS.join(', ')}`);
  }
  return { values, describe: (key) => `${file}: ${key}` };
}

/**
 * Reads a config file (see `configFileLayer`). Throws a `ConfigError` naming
 * the file when it cannot be read or is not a JSON object of known settings.
 */
export function readConfigFile(file: string, read: (file: string) => string = (f) => readFileSync(f, 'utf8')): ConfigLayer {
  let text: string;
  try {
    text = read(file);
  } catch (error) {
    throw new ConfigError(`${file}: cannot be read: ${problem(error)}`);
  }
  return configFileLayer(file, text);
}
