import { afterEach, describe, expect, it } from 'vitest';
import { main, type CliIo } from '../src/cli.js';
import { defaultsLayer, envLayer, flagLayer, resolveConfig } from '../src/config.js';
import { upgradeStatus } from './auth-harness.js';
import { within } from './server-harness.js';

const running: Array<{ stop: () => void; exit: Promise<number> }> = [];
afterEach(async () => {
  for (const serve of running.splice(0)) {
    serve.stop();
    await within(serve.exit, 'serve to stop');
  }
});

/**
 * Runs `lockwire serve --port 0 ...args` in process with `env` as its
 * environment (logs silenced). Resolves its exit code when it stops before
 * listening, else the WebSocket URL it printed (the server is stopped after
 * the test).
 */
async function serve(args: string[], env: Record<string, string> = {}) {
  const written = { stdout: '', stderr: '' };
  let fire: () => void = () => {};
  let listening: (url: string) => void = () => {};
  const listeningLine = new Promise<string>((resolve) => {
    listening = resolve;
  });
  const io: CliIo = {
    stdout: {
      write: (text: string) => {
        written.stdout += text;
        const url = /ws:\/\/\S+/.exec(text)?.[0];
        if (url !== undefined) listening(url);
      },
    },
    stderr: { write: (text: string) => (written.stderr += text) },
    env: { LOCKWIRE_LOG_LEVEL: 'silent', ...env },
    onStopSignal(handler) {
      fire = handler;
      return () => {
        fire = () => {};
      };
    },
  };
  const exit = main(['serve', '--port', '0', ...args], io);
  const first = await within(Promise.race([exit, listeningLine]), 'serve to exit or listen');
  if (typeof first === 'string') running.push({ stop: () => fire(), exit });
  return { exit: typeof first === 'number' ? first : null, url: typeof first === 'string' ? first : null, written };
}

describe('empty settings', () => {
  it('counts an empty flag as unset, so it leaves the value of the environment in place', () => {
    const config = resolveConfig([
      defaultsLayer(),
      envLayer({
        LOCKWIRE_AUTH_SECRET: 'the secret of the environment',
        LOCKWIRE_AUTH_AUDIENCE: 'locks',
        LOCKWIRE_ALLOW_ORIGIN: 'https://app.example',
        LOCKWIRE_HOST: '0.0.0.0',
      }),
      flagLayer({ 'auth-secret': '', 'auth-audience': '', 'allow-origin': [''], host: '' }),
    ]);
    expect(config).toMatchObject({
      authSecret: 'the secret of the environment',
      authAudience: 'locks',
      allowOrigin: ['https://app.example'],
      host: '0.0.0.0',
    });
  });

  it('keeps authentication on when an empty --auth-secret meets the LOCKWIRE_AUTH_SECRET of the environment', async () => {
    const started = await serve(['--auth-secret='], { LOCKWIRE_AUTH_SECRET: 'a long enough secret of the environment' });
    expect(started.written.stderr).toBe('');
    expect(started.url).not.toBeNull();
    expect(await upgradeStatus(started.url ?? '')).toBe(401);
  });
});

describe('auth settings that would leave the server open', () => {
  it('refuses to start with --auth-audience but neither a secret nor a JWKS, naming the setting', async () => {
    const started = await serve(['--auth-audience', 'locks']);
    expect(started.exit).toBe(2);
    expect(started.written.stderr).toMatch(/^lockwire: --auth-audience "locks": requires --auth-secret or --auth-jwks-file/);
  });

  it('refuses to start with LOCKWIRE_AUTH_ISSUER but neither a secret nor a JWKS, naming the variable', async () => {
    const started = await serve([], { LOCKWIRE_AUTH_ISSUER: 'https://id.example' });
    expect(started.exit).toBe(2);
    expect(started.written.stderr).toMatch(/^lockwire: LOCKWIRE_AUTH_ISSUER "https:\/\/id\.example": requires --auth-secret/);
  });
});
