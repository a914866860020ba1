import type net from 'node:net';

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
