// Installs the workspace's npm dependencies when node_modules is missing or
// does not match package-lock.json, then type-checks every package.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Whether an installed package.json version is the lockfile's. Some packages
 * publish a version with a leading `v` (redlock's "v5.0.0-beta.2") that npm
 * records without it, and would otherwise look stale on every run.
 */
function sameVersion(installed, locked) {
  const clean = (version) => String(version).trim().replace(/^[v=]+/, '');
  return clean(installed) === clean(locked);
}

/**
 * Why node_modules does not match the lockfile, or null when it does. Each
 * installed package of the lockfile must be present at its locked version;
 * optional packages (platform builds) may be absent.
 */
export function staleReason(root) {
  if (!existsSync(join(root, 'node_modules'))) return 'node_modules is missing';
  const lock = readJson(join(root, 'package-lock.json'));
  if (!lock || typeof lock.packages !== 'object') return 'package-lock.json is missing or unreadable';
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path.includes('node_modules/')) continue;
    const dir = join(root, path);
    if (entry.link) {
      if (!existsSync(dir)) return `${path} is not linked`;
      continue;
    }
    const installed = readJson(join(dir, 'package.json'));
    if (!installed) {
      if (entry.optional || entry.peer) continue;
      return `${path} is not installed`;
    }
    if (entry.version && !sameVersion(installed.version, entry.version)) {
      return `${path} is ${installed.version}, the lockfile has ${entry.version}`;
    }
  }
  return null;
}

function run(log, root, command, args) {
  log(`$ ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.error) return `${command} could not run: ${result.error.message}`;
  if (result.status !== 0) return `${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`;
  return null;
}

/**
 * Brings node_modules in line with the lockfile: `npm ci` on a fresh clone,
 * `npm install` when it is only stale (so a working tree's node_modules is
 * not wiped). The root `prepare` script builds the packages. Returns null
 * on success, else what failed.
 */
export function ensureNodeModules(log, root) {
  const reason = staleReason(root);
  if (reason === null) {
    log('node_modules matches package-lock.json');
    return null;
  }
  log(`installing npm dependencies: ${reason}`);
  const fresh = !existsSync(join(root, 'node_modules'));
  const args = fresh ? ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund'];
  const failure = run(log, root, 'npm', args);
  // The root `prepare` script runs `tsc -b`, so a type error fails the install too.
  return failure && `${failure} (its prepare step runs tsc -b; see the output above)`;
}

/** Type-checks and builds every package with `tsc -b`; null on success. */
export function typecheck(log, root) {
  return run(log, root, 'npx', ['--no-install', 'tsc', '-b']);
}

/**
 * Type-checks every test file and helper with tsconfig.tests.json (vitest
 * strips types without checking them). Runs after `tsc -b`, because tests
 * import the packages through their built declarations. Incremental: the
 * build info lives under node_modules/.cache, so an unchanged tree checks
 * quickly. The errors print as tsc reports them; null on success.
 */
export function typecheckTests(log, root) {
  return run(log, root, 'npx', ['--no-install', 'tsc', '-p', 'tsconfig.tests.json']);
}
