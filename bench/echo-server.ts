/**
 * The ceiling: the least a Node.js server must do to speak the XIMSS TCP framing. It splits
 * the input at zero bytes and answers each `<noop id="N"/>` with `<response id="N"/>`,
 * writing once per chunk read (as ximssd writes once per turn of the event loop). No XML
 * parser, no session: what is left is the cost of Node's sockets and of string handling.
 *
 * Run as its own process; it prints `ECHO PORT <n>` once listening on 127.0.0.1.
 */
import net from 'node:net';

const ID = 'id="';

function serve(socket: net.Socket): void {
  socket.setNoDelay(true);
  let carry = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    const data = carry === '' ? chunk : carry + chunk;
    let out = '';
    let start = 0;
    for (;;) {
      const zero = data.indexOf('\0', start);
      if (zero < 0) break;
      const at = data.indexOf(ID, start);
      if (at >= 0 && at < zero) {
        const end = data.indexOf('"', at + ID.length);
        out += '<response id="' + data.slice(at + ID.length, end) + '"/>\0';
      } else if (zero > start) {
        out += '<response errorText="no id" errorNum="500"/>\0';
      }
      start = zero + 1;
    }
    carry = start < data.length ? data.slice(start) : '';
    if (out !== '') socket.write(out);
  });
  socket.on('error', () => socket.destroy());
}

const server = net.createServer(serve);
const port = Number(process.argv[2] ?? 0);
server.listen(port, '127.0.0.1', () => {
  console.log(`ECHO PORT ${(server.address() as net.AddressInfo).port}`);
});
process.on('SIGTERM', () => process.exit(0));
// The bench keeps a pipe on our stdin: when it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
