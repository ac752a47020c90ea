import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Fails loudly when openssl is missing: the TLS suites never skip. */
function openssl(): string {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/local/bin'])) {
    const path = join(dir, 'openssl');
    if (dir && existsSync(path)) return path;
  }
  throw new Error('openssl is not installed; install it with: apt-get install -y openssl');
}

/** A certificate and its key, as files and as PEM text. */
export interface CertFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

/**
 * A throwaway CA, a server certificate for 127.0.0.1 and localhost, and a
 * client certificate, all signed by the CA; and server certificates the CA
 * signed that a client still refuses: one expired, one naming localhost only.
 */
export interface TestPki {
  readonly dir: string;
  /** The CA's certificate (`caFile`, `ca`) and key. */
  readonly ca: CertFiles;
  /** Names IP 127.0.0.1 and DNS localhost; usable as a client certificate too (Redis Cluster nodes reach each other with it). */
  readonly server: CertFiles;
  readonly client: CertFiles;
  /** Names IP 127.0.0.1 and DNS localhost, but its validity ended a day before it began: expired. */
  readonly expired: CertFiles;
  /** Names DNS localhost only, not 127.0.0.1; usable as a client certificate too. */
  readonly localhostOnly: CertFiles;
  /** A second CA that signed none of the above. */
  readonly otherCa: CertFiles;
  /** Removes the directory. */
  remove(): void;
}

function run(bin: string, args: string[], cwd: string): void {
  const result = spawnSync(bin, args, { cwd, encoding: 'utf8', timeout: 20_000 });
  if (result.error) throw new Error(`openssl ${args[0]} could not run: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr}`);
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/**
 * Makes a `TestPki` in a new temp directory with `openssl` (P-256 keys, one
 * day of validity, but for `expired`). Throws naming the install command
 * when openssl is missing.
 */
export function createTestPki(): TestPki {
  const bin = openssl();
  const dir = mkdtempSync(join(tmpdir(), 'lockwire-pki-'));
  const files = (name: string): CertFiles => {
    const certFile = join(dir, `${name}.crt`);
    const keyFile = join(dir, `${name}.key`);
    return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
  };
  try {
    const makeCa = (name: string) =>
      run(bin, ['req', '-x509', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=lockwire test ${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
    // `days` -1 ends the validity a day before it begins (openssl 3.0 has no -not_after).
    const issue = (name: string, extensions: string, days = 1) => {
      writeFileSync(join(dir, `${name}.ext`), extensions);
      run(bin, ['req', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=lockwire test ${name}`], dir);
      run(bin, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`,
        '-days', String(days), '-extfile', `${name}.ext`], dir);
    };
    makeCa('ca');
    makeCa('other-ca');
    issue('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    issue('client', 'extendedKeyUsage=clientAuth\n');
    issue('expired', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n', -1);
    issue('localhost-only', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    return {
      dir,
      ca: files('ca'),
      server: files('server'),
      client: files('client'),
      expired: files('expired'),
      localhostOnly: files('localhost-only'),
      otherCa: files('other-ca'),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
