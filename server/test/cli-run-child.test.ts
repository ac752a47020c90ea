import { afterEach, expect, it, vi } from 'vitest';
import { startCommand } from '../src/cli-run-child.js';

afterEach(() => {
  vi.restoreAllMocks();
});

it('keeps a command it may not signal (EPERM) running, and ends with its own exit, not as a command that never started', async () => {
  const realKill = process.kill.bind(process);
  const refused: NodeJS.Signals[] = [];
  // As for a command that became another user (`sudo`): every signal to it is refused.
  vi.spyOn(process, 'kill').mockImplementation((pid: number, signal?: string | number) => {
    if (pid > 0 && pid !== process.pid) {
      refused.push(signal as NodeJS.Signals);
      throw Object.assign(new Error(`kill EPERM`), { code: 'EPERM', errno: -1, syscall: 'kill' });
    }
    return realKill(pid, signal);
  });
  const running = startCommand({
    command: [process.execPath, '-e', 'setTimeout(() => process.exit(7), 300)'],
    env: process.env,
    ownGroup: false,
    killGrace: 10,
  });
  running.signal('SIGTERM');
  running.stop();
  // The command runs on until it exits by itself: the lock of `lockwire run` is held until then.
  expect(await running.ended).toEqual({ code: 7, signal: null });
  expect(refused).toEqual(expect.arrayContaining(['SIGTERM', 'SIGKILL']));
});

it('ends with the error of a command that cannot be started', async () => {
  const running = startCommand({ command: ['/nonexistent/lockwire-test-command'], env: process.env, ownGroup: false, killGrace: 10 });
  expect(await running.ended).toMatchObject({ error: expect.objectContaining({ code: 'ENOENT' }) });
});
