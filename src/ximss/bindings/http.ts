import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Engine } from '../engine.js';
import type { TcpListener } from './tcp.js';

/**
 * XIMSS over HTTP, as the existing web clients use it. A connection whose first byte is
 * `<` is a raw XIMSS connection and is handed to the TCP binding.
 */
export class HttpListener {
  private readonly server: net.Server;
  private readonly http: http.Server;

  constructor(
    private readonly engine: Engine,
    private readonly tcp: TcpListener,
    secureContext?: tls.SecureContext,
  ) {
    this.http = http.createServer((req, res) => this.handle(req, res));
    const sniff = (socket: net.Socket): void => {
      socket.once('data', (first: Buffer) => {
        if (first[0] === 0x3c /* < */) {
          this.tcp.adopt(socket, first);
        } else {
          socket.pause();
          socket.unshift(first);
          this.http.emit('connection', socket);
          socket.resume();
        }
      });
      socket.on('error', () => socket.destroy());
    };
    this.server = secureContext ? tls.createServer({ secureContext }, sniff) : net.createServer(sniff);
  }

  private handle(_req: http.IncomingMessage, res: http.ServerResponse): void {
    void this.engine;
    res.writeHead(501, { 'Content-Type': 'text/plain' });
    res.end('XIMSS over HTTP is not implemented yet\n');
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.http.closeAllConnections();
    });
  }
}
