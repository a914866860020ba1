import http from 'node:http';
import type { NodeRecord } from '../../store/store.js';

/** Headers a forwarding node adds: the cluster's key (proves it is a node) and the client's address. */
export const CLUSTER_KEY_HEADER = 'x-ximssd-cluster-key';
export const CLIENT_ADDRESS_HEADER = 'x-ximssd-client-address';

/** Hop-by-hop headers (RFC 9110 section 7.6.1) are not passed on. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/**
 * Passes an HTTP request for another node's session on to that node (a load balancer
 * without stickiness sent it here), and its answer back, both streamed: a long poll waits
 * there, an upload flows through. The owning node trusts the client address it is told only
 * with the cluster's key. Resolves false, having sent nothing, when the node cannot be
 * reached (it died before the others noticed): the caller answers as for a lost session.
 */
export function forwardRequest(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  node: NodeRecord,
  clusterKey: string,
  clientAddress: string,
): Promise<boolean> {
  return new Promise((resolve) => {
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
    headers[CLUSTER_KEY_HEADER] = clusterKey;
    headers[CLIENT_ADDRESS_HEADER] = clientAddress;
    const target = new URL(req.url ?? '/', node.httpUrl);
    const upstream = http.request(target, { method: req.method, headers, agent });
    let answered = false;
    upstream.on('response', (answer) => {
      answered = true;
      const back: http.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(answer.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) back[name] = value;
      res.writeHead(answer.statusCode ?? 502, back);
      answer.pipe(res);
      answer.on('error', () => res.destroy());
      resolve(true);
    });
    upstream.on('error', () => {
      if (!answered) resolve(false);
      else res.destroy();
    });
    // The client went away: so does the forwarded request (a long poll, an upload).
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
}
