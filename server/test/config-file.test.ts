import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main, type CliIo } from '../src/cli.js';
import { configFileLayer, readConfigFile } from '../src/config-file.js';
import { ConfigError, configOptions, defaultsLayer, envLayer, flagLayer, resolveConfig } from '../src/config.js';
import { RawClient, within } from './server-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'lockwire-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(name: string, content: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

/** A CliIo capturing output, whose stop signal the test fires. */
function fakeIo(env: Record<string, string> = {}) {
  const written = { stdout: '', stderr: '' };
  let fire: (() => void) | null = null;
  let listening: (() => void) | null = null;
  const listeningLine = new Promise<void>((resolve) => {
    listening = resolve;
  });
  const io: CliIo = {
    stdout: {
      write: (text: string) => {
        written.stdout += text;
        if (text.includes('listening on')) listening?.();
      },
    },
    stderr: { write: (text: string) => (written.stderr += text) },
    env,
    onStopSignal(handler) {
      fire = handler;
      return () => {
        fire = null;
      };
    },
  };
  return { io, written, listeningLine, stop: () => fire?.() };
}

/** The problem `fn` throws as a `ConfigError`. */
function configProblem(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('the config file layer', () => {
  it('takes flags over environment over file over defaults, per setting', () => {
    const file = configFileLayer('lockwire.json', JSON.stringify({ port: 1001, heartbeat: 2001, nodeTtl: 3001 }));
    const env = envLayer({ LOCKWIRE_PORT: '1002', LOCKWIRE_HEARTBEAT: '2002' });
    const flags = flagLayer({ port: '1003' });
    const config = resolveConfig([defaultsLayer(), file, env, flags]);
    expect(config.port).toBe(1003);
    expect(config.heartbeat).toBe(2002);
    expect(config.nodeTtl).toBe(3001);
    expect(config.maxPayload).toBe(configOptions.maxPayload.default);
  });

  it('reads JSON values of every kind: numbers, strings and lists', () => {
    const file = configFileLayer(
      'lockwire.json',
      JSON.stringify({ host: '0.0.0.0', maxPayload: 2048, logLevel: 'warn', drainDelay: 500, allowOrigin: ['https://a.example', 'https://b.example'] }),
    );
    const config = resolveConfig([defaultsLayer(), file]);
    expect(config).toMatchObject({ host: '0.0.0.0', maxPayload: 2048, logLevel: 'warn', drainDelay: 500 });
    expect(config.allowOrigin).toEqual(['https://a.example', 'https://b.example']);
  });

  it('names the file and the setting at fault for a bad value', () => {
    const file = configFileLayer('conf/lockwire.json', JSON.stringify({ port: 'eighty', logLevel: 'loud' }));
    const problem = configProblem(() => resolveConfig([defaultsLayer(), file]));
    expect(problem).toContain('conf/lockwire.json: port "eighty": expected an integer from 0 to 65535');
    expect(problem).toContain('conf/lockwire.json: logLevel "loud": expected one of: trace');
  });

  it('refuses an auth secret of blanks only in a file, without showing it, where it would let anyone sign tokens', () => {
    const file = configFileLayer('conf/lockwire.json', JSON.stringify({ authSecret: '   ' }));
    const problem = configProblem(() => resolveConfig([defaultsLayer(), file]));
    expect(problem).toContain('conf/lockwire.json: authSecret "REDACTED": a secret of blanks only');
    // An empty one is no secret at all, as an empty flag or variable: authentication stays off.
    const empty = configFileLayer('conf/lockwire.json', JSON.stringify({ authSecret: '' }));
    expect(resolveConfig([defaultsLayer(), empty]).authSecret).toBe('');
  });

  it('rejects unknown keys, naming each, so a typo cannot pass for a default', () => {
    const problem = configProblem(() => configFileLayer('lockwire.json', JSON.stringify({ prot: 1, port: 2, 'log-level': 'warn' })));
    expect(problem).toMatch(/^lockwire\.json: unknown settings "prot", "log-level"; known: host, port, /);
  });

  it('says where a config file stops being JSON without quoting its text, which may hold a secret', () => {
    expect(configProblem(() => configFileLayer('a.json', '{"port": 1,\n}'))).toBe(
      'a.json: not valid JSON: Expected double-quoted property name at line 2, column 1',
    );
    const secret = configProblem(() => configFileLayer('a.json', '{"authSecret": sekret-auth-value}'));
    expect(secret).toBe('a.json: not valid JSON: an unexpected character');
    const cut = configProblem(() => configFileLayer('a.json', '{"authSecret": "sekret'));
    expect(cut).toMatch(/^a\.json: not valid JSON: /);
    expect(cut).not.toContain('sekret');
    expect(configProblem(() => configFileLayer('a.json', '{"port": ['))).toBe('a.json: not valid JSON: the text ends before the JSON does');
  });

  it('rejects text that is not JSON, and JSON that is not an object', () => {
    expect(configProblem(() => configFileLayer('a.json', '{"port": 1,}'))).toMatch(/^a\.json: not valid JSON: /);
    expect(configProblem(() => configFileLayer('a.json', '[{"port": 1}]'))).toMatch(/^a\.json: expected a JSON object/);
    expect(configProblem(() => configFileLayer('a.json', 'null'))).toMatch(/^a\.json: expected a JSON object/);
  });

  it('names a file that cannot be read', () => {
    const missing = join(dir, 'missing.json');
    expect(configProblem(() => readConfigFile(missing))).toMatch(new RegExp(`^${missing}: cannot be read: .*ENOENT`));
  });

  it('takes LOG_LEVEL when LOCKWIRE_LOG_LEVEL is not set, and names the variable it read', () => {
    expect(resolveConfig([defaultsLayer(), envLayer({ LOG_LEVEL: 'debug' })]).logLevel).toBe('debug');
    expect(resolveConfig([defaultsLayer(), envLayer({ LOG_LEVEL: 'debug', LOCKWIRE_LOG_LEVEL: 'error' })]).logLevel).toBe('error');
    expect(configProblem(() => resolveConfig([defaultsLayer(), envLayer({ LOG_LEVEL: 'chatty' })]))).toContain('LOG_LEVEL "chatty"');
  });
});

describe('lockwire serve --config', () => {
  it('serves with the file settings under the environment and the flags', async () => {
    const file = writeConfig('serve.json', { port: 1, maxKeyLength: 40, maxPayload: 4096, heartbeat: 0 });
    const { io, written, listeningLine, stop } = fakeIo({ LOCKWIRE_MAX_PAYLOAD: '8192', LOCKWIRE_LOG_LEVEL: 'silent' });
    const exit = main(['serve', '--config', file, '--port', '0'], io);
    await within(Promise.race([listeningLine, exit.then(() => Promise.reject(new Error(written.stderr)))]), 'the listening line');
    const url = /ws:\/\/\S+/.exec(written.stdout)?.[0] ?? '';
    const { client, welcome } = await RawClient.connect(url);
    expect(welcome['limits']).toMatchObject({ maxKeyLength: 40, maxPayload: 8192 });
    await client.close();
    stop();
    expect(await within(exit, 'serve to return')).toBe(0);
  });

  it('takes the file from LOCKWIRE_CONFIG when no flag names one', async () => {
    const file = writeConfig('env.json', { port: 'x' });
    const { io, written } = fakeIo({ LOCKWIRE_CONFIG: file });
    expect(await main(['serve'], io)).toBe(2);
    expect(written.stderr).toContain(`${file}: port "x": expected an integer`);
  });

  it('takes a --config or LOCKWIRE_CONFIG of blanks only as not given, as any other setting', async () => {
    const file = writeConfig('blank-flag.json', { port: 'x' });
    let run = fakeIo({ LOCKWIRE_CONFIG: file });
    expect(await main(['serve', '--config', '  '], run.io)).toBe(2);
    // The file of LOCKWIRE_CONFIG decides, not a file named "  ".
    expect(run.written.stderr).toContain(`${file}: port "x": expected an integer`);

    run = fakeIo({ LOCKWIRE_CONFIG: ' ' });
    expect(await main(['serve', '--port', 'y'], run.io)).toBe(2);
    expect(run.written.stderr).toContain('--port "y": expected an integer');
    expect(run.written.stderr).not.toContain('cannot be read');
  });

  it('exits 2 naming the file and field for a bad file, and for an unknown key', async () => {
    const bad = writeConfig('bad.json', { port: 7311, shutdownTimeout: -5 });
    let run = fakeIo();
    expect(await main(['serve', '--config', bad], run.io)).toBe(2);
    expect(run.written.stderr).toContain(`lockwire: ${bad}: shutdownTimeout "-5": expected an integer`);
    expect(run.written.stderr).toContain('Usage: lockwire serve');

    const typo = writeConfig('typo.json', { maxPayLoad: 1 });
    run = fakeIo();
    expect(await main(['serve', '--config', typo], run.io)).toBe(2);
    expect(run.written.stderr).toContain(`${typo}: unknown setting "maxPayLoad"`);
  });

  it('documents every option in serve --help, the config file included', async () => {
    const { io, written } = fakeIo();
    expect(await main(['serve', '--help'], io)).toBe(0);
    expect(written.stdout).toContain('--config FILE');
    expect(written.stdout).toContain('LOCKWIRE_CONFIG');
    for (const option of Object.values(configOptions)) {
      expect(written.stdout).toContain(`--${option.flag} ${option.arg}`);
      expect(written.stdout).toContain(option.env);
    }
    expect(written.stdout).toContain('LOCKWIRE_LOG_LEVEL or LOG_LEVEL');
  });
});

describe('docs/operations.md', () => {
  it('lists every setting a configuration file accepts', () => {
    const text = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
    const list = /The keys are ([\s\S]*?);/.exec(text)?.[1] ?? '';
    const documented = new Set([...list.matchAll(/`(\w+)`/g)].map((match) => match[1]));
    expect(Object.keys(configOptions).filter((key) => !documented.has(key))).toEqual([]);
  });
});
