/**
 * Locating another domain's SIP server (RFC 3263 4, src/transports/sip/locate.ts) against a
 * stub resolver: numeric hosts, a port given, NAPTR then SRV then A, the transport SRV names
 * without NAPTR, sips, a "." SRV target, and DNS failures told apart from absence.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DnsResolver } from '../src/services/mail-auth.js';
import { locateSipServers, SipLocateError } from '../src/transports/sip/locate.js';

/** A resolver from a table `name rrtype` → records; anything else is ENOTFOUND. */
function stub(table: Record<string, unknown[]>, failing: string[] = []): DnsResolver & { asked: string[] } {
  const asked: string[] = [];
  const resolver = async (name: string, rrtype: string): Promise<unknown> => {
    asked.push(`${name} ${rrtype}`);
    if (failing.includes(`${name} ${rrtype}`)) throw Object.assign(new Error('timeout'), { code: 'ETIMEOUT' });
    const records = table[`${name} ${rrtype}`];
    if (!records) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    return records;
  };
  return Object.assign(resolver, { asked });
}

describe('RFC 3263 server location', () => {
  test('a numeric host is used as it is, with its port or the default, and its transport', async () => {
    const resolver = stub({});
    assert.deepEqual(await locateSipServers('sip:bob@192.0.2.7', resolver), [{ host: '192.0.2.7', port: 5060, transport: 'udp' }]);
    assert.deepEqual(await locateSipServers('sip:bob@192.0.2.7:5080;transport=tcp', resolver), [{ host: '192.0.2.7', port: 5080, transport: 'tcp' }]);
    assert.deepEqual(await locateSipServers('sips:bob@[2001:db8::1]', resolver), [{ host: '2001:db8::1', port: 5061, transport: 'tls' }]);
    assert.deepEqual(await locateSipServers('sip:bob@example.org;maddr=192.0.2.9', resolver), [{ host: '192.0.2.9', port: 5060, transport: 'udp' }]);
    assert.deepEqual(resolver.asked, []);
  });

  test('a port given: A records of the host, no NAPTR or SRV', async () => {
    const resolver = stub({ 'sip.example.org A': ['192.0.2.1'] });
    assert.deepEqual(await locateSipServers('sip:bob@sip.example.org:5070', resolver), [{ host: '192.0.2.1', port: 5070, transport: 'udp' }]);
    assert.deepEqual(resolver.asked, ['sip.example.org A', 'sip.example.org AAAA']);
  });

  test('NAPTR names the transports in order and their SRV names; SRV by priority; the targets resolved', async () => {
    const resolver = stub({
      'example.org NAPTR': [
        { order: 20, preference: 10, flags: 'S', service: 'SIP+D2U', regexp: '', replacement: '_sip._udp.example.org' },
        { order: 10, preference: 10, flags: 'S', service: 'SIP+D2T', regexp: '', replacement: '_sip._tcp.example.org' },
        { order: 5, preference: 10, flags: 'S', service: 'SIP+D2X', regexp: '', replacement: '_sip._sctp.example.org' },
      ],
      '_sip._tcp.example.org SRV': [
        { name: 'b.example.org', port: 5062, priority: 20, weight: 0 },
        { name: 'a.example.org', port: 5061, priority: 10, weight: 0 },
      ],
      'a.example.org A': ['192.0.2.10'],
      'b.example.org A': ['192.0.2.11'],
    });
    assert.deepEqual(await locateSipServers('sip:bob@example.org', resolver), [
      { host: '192.0.2.10', port: 5061, transport: 'tcp' },
      { host: '192.0.2.11', port: 5062, transport: 'tcp' },
    ]);
    assert.ok(!resolver.asked.includes('_sip._sctp.example.org SRV'), 'a transport we do not speak is skipped');
  });

  test('without NAPTR the SRV names of our transports, then A on 5060 over UDP', async () => {
    const srv = stub({ '_sip._udp.example.net SRV': [{ name: 'pbx.example.net', port: 5090, priority: 0, weight: 0 }], 'pbx.example.net A': ['192.0.2.20'] });
    assert.deepEqual(await locateSipServers('sip:bob@example.net', srv), [{ host: '192.0.2.20', port: 5090, transport: 'udp' }]);
    const plain = stub({ 'example.com A': ['192.0.2.30'] });
    assert.deepEqual(await locateSipServers('sip:bob@example.com', plain), [{ host: '192.0.2.30', port: 5060, transport: 'udp' }]);
    assert.deepEqual(plain.asked.slice(0, 4), ['example.com NAPTR', '_sips._tcp.example.com SRV', '_sip._tcp.example.com SRV', '_sip._udp.example.com SRV']);
    const secure = stub({ 'example.com A': ['192.0.2.30'] });
    assert.deepEqual(await locateSipServers('sips:bob@example.com', secure), [{ host: '192.0.2.30', port: 5061, transport: 'tls' }]);
    assert.ok(!secure.asked.includes('_sip._udp.example.com SRV'), 'sips never falls back to UDP');
  });

  test('a "." SRV target means no service; no address at all is 404; a DNS failure is 503', async () => {
    const none = stub({ '_sip._udp.example.edu SRV': [{ name: '.', port: 0, priority: 0, weight: 0 }] });
    await assert.rejects(locateSipServers('sip:bob@example.edu', none), (err: unknown) => err instanceof SipLocateError && err.status === 404);
    const failing = stub({}, ['example.edu NAPTR']);
    await assert.rejects(locateSipServers('sip:bob@example.edu', failing), (err: unknown) => err instanceof SipLocateError && err.status === 503);
  });
});
