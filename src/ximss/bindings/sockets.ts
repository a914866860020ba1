import type net from 'node:net';
import tls from 'node:tls';

/** Starts `server` listening; resolves with the port actually bound (useful for port 0). */
export function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/** The client's address as sessions record it: IPv4-mapped IPv6 addresses in IPv4 form. */
export function clientAddress(socket: net.Socket): string {
  const address = socket.remoteAddress;
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/**
 * The server side of TLS on an accepted socket: implicit-TLS listeners (tls.createServer()
 * ignores a ready `secureContext` option, building its own from cert/key) and `starttls`.
 */
export function serverTls(raw: net.Socket, secureContext: tls.SecureContext): tls.TLSSocket {
  raw.on('error', () => raw.destroy());
  return new tls.TLSSocket(raw, { isServer: true, secureContext });
}

/** Answers a connection that is not admitted with `reply` and closes it (at once if the client does not read). */
export function refuseConnection(socket: net.Socket, reply: string): void {
  socket.on('error', () => socket.destroy());
  socket.end(reply);
  setTimeout(() => socket.destroy(), 1000).unref();
}
