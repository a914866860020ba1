/**
 * The `xmpp` bench area's load client: many XMPP c2s connections from one Node process, each
 * a raw TCP socket that does STARTTLS, SASL (PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256), resource
 * binding and initial presence, then counts the messages it receives. A real library client
 * (slixmpp, @xmpp/client) spends far more CPU per stanza than the servers being measured; this
 * one parses with saxes (already a dependency) and keeps only stanzas of the handshake as
 * small trees: in the load phase a message costs it a counter increment.
 *
 * The same client measures ximssd and Prosody, so whatever it costs is the same for both.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { SaxesParser } from 'saxes';

export type LoadMechanism = 'PLAIN' | 'SCRAM-SHA-1' | 'SCRAM-SHA-256';

export interface XmppLoginOptions {
  host: string;
  port: number;
  domain: string;
  /** The localpart. */
  user: string;
  password: string;
  resource: string;
  mechanism: LoadMechanism;
  /** A loopback source address (127.0.0.x), to spread thousands of connections over several. */
  localAddress?: string;
  /** Ms for the whole login; the connection is destroyed and the login rejected past it. */
  timeoutMs?: number;
  /** Called with every stanza after login, kept as a tree (instead of only counting messages). */
  onStanza?: (stanza: XmppStanza) => void;
}

/** A depth-1 element of the stream (a stanza, stream features, a SASL or TLS element). */
export type XmppStanza = Node;
interface Node {
  name: string;
  attributes: Record<string, string>;
  children: Node[];
  text: string;
}

const child = (node: Node, name: string): Node | undefined => node.children.find((c) => c.name === name);
const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');

/** A logged-in connection: available, bound, counting the messages that reach it. */
export interface XmppLoadConnection {
  readonly jid: string;
  /** Messages received since login (not counting error bounces). */
  readonly received: number;
  /** Messages of type error received since login (what the server bounced). */
  readonly bounced: number;
  /** Writes stanzas (already serialized); resolves once the socket took them (backpressure). */
  send(xml: string): Promise<void>;
  /** Ends the stream and the connection. */
  close(): void;
  /** Cuts the connection without ending the stream. */
  destroy(): void;
}

/**
 * SaltedPassword by (hash, password, salt, iterations): computed once, as real clients keep it
 * (a server with stored SCRAM keys sends the same salt every time), so that the load client
 * spends its PBKDF2 once per account, not once per login.
 */
const saltedCache = new Map<string, Buffer>();
function saltedPassword(hash: 'sha1' | 'sha256', password: string, salt: string, iterations: number, length: number): Buffer {
  const key = `${hash}\0${password}\0${salt}\0${iterations}`;
  let salted = saltedCache.get(key);
  if (!salted) {
    salted = pbkdf2Sync(password, Buffer.from(salt, 'base64'), iterations, length, hash);
    if (saltedCache.size > 100_000) saltedCache.clear();
    saltedCache.set(key, salted);
  }
  return salted;
}

/** SCRAM (RFC 5802/7677) client side: one exchange, with the server's signature checked. */
class ScramClient {
  private readonly nonce = randomBytes(18).toString('base64');
  private readonly firstBare: string;
  private serverSignature: Buffer | undefined;

  constructor(
    private readonly hash: 'sha1' | 'sha256',
    user: string,
    private readonly password: string,
  ) {
    this.firstBare = `n=${user.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${this.nonce}`;
  }

  first(): string {
    return Buffer.from(`n,,${this.firstBare}`).toString('base64');
  }

  final(challenge: string): string {
    const serverFirst = Buffer.from(challenge, 'base64').toString();
    const fields = new Map(serverFirst.split(',').map((f) => [f.slice(0, 1), f.slice(2)] as const));
    const nonce = fields.get('r') ?? '';
    if (!nonce.startsWith(this.nonce)) throw new Error('SCRAM: the server nonce does not extend ours');
    const iterations = Number(fields.get('i'));
    if (!Number.isInteger(iterations) || iterations < 1) throw new Error(`SCRAM: bad iteration count in ${serverFirst}`);
    const length = this.hash === 'sha1' ? 20 : 32;
    const salted = saltedPassword(this.hash, this.password, fields.get('s') ?? '', iterations, length);
    const clientKey = createHmac(this.hash, salted).update('Client Key').digest();
    const storedKey = createHash(this.hash).update(clientKey).digest();
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.firstBare},${serverFirst},${withoutProof}`;
    const signature = createHmac(this.hash, storedKey).update(authMessage).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
    this.serverSignature = createHmac(this.hash, createHmac(this.hash, salted).update('Server Key').digest()).update(authMessage).digest();
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`).toString('base64');
  }

  /** Checks the server's `v=` (in the success element or a last challenge). */
  verify(data: string): void {
    const text = Buffer.from(data, 'base64').toString();
    const v = /(?:^|,)v=([^,]+)/.exec(text)?.[1];
    if (!v || !this.serverSignature || !Buffer.from(v, 'base64').equals(this.serverSignature)) throw new Error('SCRAM: the server signature does not match');
  }
}

/**
 * Connects and logs in; resolves once the server has answered an iq sent after the initial
 * presence (so the presence has been processed), with the connection counting messages.
 */
export function xmppLogin(options: XmppLoginOptions): Promise<XmppLoadConnection> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket = net.connect({ host: options.host, port: options.port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
    socket.setNoDelay(true);
    let settled = false;
    let received = 0;
    let bounced = 0;
    let counting = false;
    let jid = '';
    let scram: ScramClient | undefined;
    const timer = setTimeout(() => fail(new Error(`login of ${options.user}/${options.resource} took more than ${options.timeoutMs ?? 30_000} ms (step: ${step})`)), options.timeoutMs ?? 30_000);
    let step = 'connect';

    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const write = (xml: string): void => {
      socket.write(xml);
    };
    const openStream = (): void => {
      parser = newParser();
      write(`<?xml version='1.0'?><stream:stream to='${escapeXml(options.domain)}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`);
    };

    // One parser per stream (a new one after STARTTLS and after SASL): depth 1 are stanzas.
    let parser: SaxesParser;
    function newParser(): SaxesParser {
      const p = new SaxesParser({ position: false });
      const stack: Node[] = [];
      let depth = 0;
      p.on('opentag', (tag) => {
        depth++;
        if (counting && !options.onStanza) {
          if (depth === 2 && tag.name === 'message') {
            if (tag.attributes.type === 'error') bounced++;
            else received++;
          }
          if (!(depth === 2 && tag.name === 'stream:error')) return;
        }
        if (depth < 2) return;
        const node: Node = { name: tag.name, attributes: tag.attributes as Record<string, string>, children: [], text: '' };
        if (stack.length) stack[stack.length - 1]!.children.push(node);
        stack.push(node); // saxes emits closetag for self-closing tags too
      });
      p.on('text', (text) => {
        if (stack.length) stack[stack.length - 1]!.text += text;
      });
      p.on('cdata', (text) => {
        if (stack.length) stack[stack.length - 1]!.text += text;
      });
      p.on('closetag', () => {
        depth--;
        if (depth === 0) return fail(new Error(`the server closed the stream (step: ${step})`));
        if (!stack.length) return;
        const node = stack.pop()!;
        if (depth === 1) onStanza(node);
      });
      p.on('error', (err) => fail(new Error(`unparsable data from the server (step: ${step}): ${err.message}`)));
      return p;
    }

    const onStanza = (node: Node): void => {
      try {
        handle(node);
      } catch (err) {
        fail(err as Error);
      }
    };

    const handle = (node: Node): void => {
      if (node.name === 'stream:error') throw new Error(`stream error: ${node.children.map((c) => c.name).join(' ')} (step: ${step})`);
      switch (step) {
        case 'features-tls': {
          if (node.name !== 'stream:features') return;
          if (!child(node, 'starttls')) throw new Error('the server does not offer STARTTLS');
          step = 'proceed';
          write(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
          return;
        }
        case 'proceed': {
          if (node.name !== 'proceed') throw new Error(`STARTTLS refused: ${node.name}`);
          step = 'tls';
          const plain = socket;
          plain.removeAllListeners('data');
          socket = tls.connect({ socket: plain, servername: options.domain, rejectUnauthorized: false }, () => {
            step = 'features-sasl';
            openStream();
          });
          attach(socket);
          return;
        }
        case 'features-sasl': {
          if (node.name !== 'stream:features') return;
          const offered = (child(node, 'mechanisms')?.children ?? []).map((m) => m.text.trim());
          if (!offered.includes(options.mechanism)) throw new Error(`the server does not offer ${options.mechanism} (it offers ${offered.join(' ')})`);
          step = 'sasl';
          let initial: string;
          if (options.mechanism === 'PLAIN') initial = Buffer.from(`\0${options.user}\0${options.password}`).toString('base64');
          else {
            scram = new ScramClient(options.mechanism === 'SCRAM-SHA-1' ? 'sha1' : 'sha256', options.user, options.password);
            initial = scram.first();
          }
          write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='${options.mechanism}'>${initial}</auth>`);
          return;
        }
        case 'sasl': {
          if (node.name === 'challenge') {
            if (!scram) throw new Error('a SASL challenge to PLAIN');
            const text = node.text.trim();
            // The second challenge (if any) carries the server signature: answer it empty.
            if (Buffer.from(text, 'base64').toString().includes('v=')) {
              scram.verify(text);
              write(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`);
            } else write(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${scram.final(text)}</response>`);
            return;
          }
          if (node.name === 'success') {
            const data = node.text.trim();
            if (scram && data) scram.verify(data);
            step = 'features-bind';
            openStream();
            return;
          }
          throw new Error(`SASL ${options.mechanism} failed: ${node.children.map((c) => c.name).join(' ') || node.name}`);
        }
        case 'features-bind': {
          if (node.name !== 'stream:features') return;
          if (!child(node, 'bind')) throw new Error('the server offers no resource binding');
          step = 'bind';
          write(`<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${escapeXml(options.resource)}</resource></bind></iq>`);
          return;
        }
        case 'bind': {
          if (node.name !== 'iq' || node.attributes.id !== 'bind') return;
          if (node.attributes.type !== 'result') throw new Error(`bind refused: ${node.children.map((c) => c.name).join(' ')}`);
          jid = child(child(node, 'bind') ?? node, 'jid')?.text ?? '';
          step = 'presence';
          // Initial presence, then an iq: its answer (result or error) says the presence was processed.
          write(`<presence/><iq type='get' id='ready'><ping xmlns='urn:xmpp:ping'/></iq>`);
          return;
        }
        case 'presence': {
          if (node.name !== 'iq' || node.attributes.id !== 'ready') return;
          step = 'ready';
          counting = true;
          settled = true;
          clearTimeout(timer);
          resolve(connection);
          return;
        }
        default:
          if (step === 'ready') options.onStanza?.(node);
      }
    };

    const attach = (s: net.Socket): void => {
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => {
        try {
          parser.write(chunk);
        } catch (err) {
          fail(err as Error);
        }
      });
      s.on('error', (err) => fail(new Error(`${err.message} (step: ${step})`)));
      s.on('close', () => fail(new Error(`the server closed the connection (step: ${step})`)));
    };

    const connection: XmppLoadConnection = {
      get jid() {
        return jid;
      },
      get received() {
        return received;
      },
      get bounced() {
        return bounced;
      },
      send(xml) {
        return new Promise((done) => {
          if (socket.write(xml)) done();
          else socket.once('drain', done);
        });
      },
      close() {
        if (!socket.destroyed) socket.end('</stream:stream>');
        setTimeout(() => socket.destroy(), 2000).unref();
      },
      destroy() {
        socket.destroy();
      },
    };

    attach(socket);
    socket.once('connect', () => {
      step = 'features-tls';
      openStream();
    });
  });
}

/** A chat message stanza to `to` (a bare JID). */
export function chatMessage(to: string, id: string, body: string): string {
  return `<message to='${escapeXml(to)}' type='chat' id='${id}'><body>${escapeXml(body)}</body></message>`;
}
