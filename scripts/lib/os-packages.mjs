// Ensures the Debian packages the test suites need: redis-server (the
// Redis store's tests start their own servers on free ports), chromium
// (browser tests drive /usr/bin/chromium with playwright-core) and openssl
// (the Redis TLS tests make a throwaway CA and certificates with it).
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Debian package -> the executables the tests run from it. */
export const OS_PACKAGES = [
  { name: 'redis-server', binaries: ['redis-server', 'redis-cli'] },
  { name: 'chromium', binaries: ['/usr/bin/chromium'] },
  { name: 'openssl', binaries: ['openssl'] },
];

const INSTALL_HINT =
  'apt-get update && apt-get install -y --no-install-recommends ' + OS_PACKAGES.map((p) => p.name).join(' ');

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** True when `binary` (an absolute path, or a name looked up on PATH) can be run. */
export function hasBinary(binary) {
  if (binary.startsWith('/')) return isExecutable(binary);
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return dirs.some((dir) => isExecutable(join(dir, binary)));
}

/** The packages with at least one executable missing. */
export function missingPackages() {
  return OS_PACKAGES.filter((p) => !p.binaries.every(hasBinary)).map((p) => p.name);
}

function run(log, command, args) {
  log(`$ ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (result.error) return `${command} could not run: ${result.error.message}`;
  if (result.status !== 0) return `${command} ${args[0]} exited with ${result.status ?? result.signal}`;
  return null;
}

/**
 * Installs missing packages with apt-get. Returns null when every package
 * is present afterwards, else a message that names the fix.
 */
export function ensureOsPackages(log) {
  const missing = missingPackages();
  if (missing.length === 0) {
    log(`OS packages present: ${OS_PACKAGES.map((p) => p.name).join(', ')}`);
    return null;
  }
  log(`OS packages missing: ${missing.join(', ')}; installing with apt-get`);
  if (!hasBinary('apt-get')) {
    return `apt-get not found; install ${missing.join(' and ')} by hand (Debian: ${INSTALL_HINT})`;
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return `installing ${missing.join(', ')} needs root; run: sudo sh -c '${INSTALL_HINT}'`;
  }
  // A failed update may still leave usable package lists; the install decides.
  const updateFailure = run(log, 'apt-get', ['update']);
  if (updateFailure) log(`warning: ${updateFailure}; trying the install with the lists at hand`);
  const failure = run(log, 'apt-get', ['install', '-y', '--no-install-recommends', ...missing]);
  if (failure) return `${failure}; fix the package source and run: ${INSTALL_HINT}`;
  const still = missingPackages();
  if (still.length > 0) {
    return `after apt-get install, still missing executables of: ${still.join(', ')}; run: ${INSTALL_HINT}`;
  }
  log(`installed: ${missing.join(', ')}`);
  return null;
}
