/**
 * A store that fails to start (a Redis that cannot be reached, refuses the
 * node's credentials or its TLS) is reported by the CLI as a listen fault
 * is: one line naming the setting it came from and its value, then what
 * failed, instead of a stack trace. It stays a failure to start (exit 1),
 * not a setting to fix: the same settings may work once Redis is back.
 */
import { shownValue, type ConfigKey, type ServerConfig } from './config.js';
import { entries } from './config-options.js';
import { shownUrl } from './redact-url.js';
import { StoreStartError } from './store.js';

/**
 * The one-line problem of a store that failed to start, e.g.
 * `--redis-url "redis://app:REDACTED@10.0.0.5:6379": could not connect to
 * Redis within 4000 ms (last error: connect ECONNREFUSED 10.0.0.5:6379)`:
 * the URL's source (from `describe`), the URL with its password redacted,
 * and the store's message, with each URL of the setting redacted there too.
 * Undefined for any other failure, and for the memory store.
 */
export function storeProblem(
  error: unknown,
  config: Pick<ServerConfig, 'store' | 'redisUrl'>,
  describe: (key: ConfigKey) => string,
): string | undefined {
  if (!(error instanceof StoreStartError) || config.store === 'memory') return undefined;
  let cause = error.message;
  // A client's message may quote the URL it was given; never its password.
  for (const url of entries(config.redisUrl)) cause = cause.split(url).join(shownUrl(url));
  // One line: the store's message is shown whole, its line breaks as blanks.
  cause = cause.replace(/\s*\n\s*/g, ' ');
  return `${describe('redisUrl')} ${JSON.stringify(shownValue('redisUrl', config.redisUrl))}: ${cause}`;
}
