import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import type { Config } from './config.js';
import { privateDirectory, privateFile } from './store/modes.js';

/**
 * The server certificate: the configured PEM files, or a self-signed certificate generated
 * on first start and kept in `<data>/tls/` (0700; key and certificate 0600) so that clients
 * can pin it.
 */
export async function loadTlsContext(config: Config): Promise<tls.SecureContext> {
  let certFile = config.tls.certFile;
  let keyFile = config.tls.keyFile;
  if (!certFile || !keyFile) {
    const dir = join(config.dataDir, 'tls');
    certFile = join(dir, 'cert.pem');
    keyFile = join(dir, 'key.pem');
    privateDirectory(dir);
    if (!existsSync(certFile) || !existsSync(keyFile)) {
      // Loaded only when a certificate is generated: it takes longer to load than the rest.
      const { generate } = await import('selfsigned');
      const pems = await generate([{ name: 'commonName', value: config.defaultDomain }], {
        keyType: 'ec',
        curve: 'P-256',
        algorithm: 'sha256',
        notAfterDate: new Date(Date.now() + 5 * 365 * 24 * 3600 * 1000),
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
          { name: 'extKeyUsage', serverAuth: true },
          {
            name: 'subjectAltName',
            altNames: [
              { type: 2, value: config.defaultDomain },
              { type: 2, value: 'localhost' },
              { type: 7, ip: '127.0.0.1' },
            ],
          },
        ],
      });
      writeFileSync(keyFile, pems.private, { mode: 0o600 });
      writeFileSync(certFile, pems.cert, { mode: 0o600 });
    }
    // 0600 even when an earlier version wrote them wider.
    privateFile(keyFile);
    privateFile(certFile);
  }
  return tls.createSecureContext({ cert: readFileSync(certFile), key: readFileSync(keyFile) });
}
