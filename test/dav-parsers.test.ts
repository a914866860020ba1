/**
 * The DAV core's parsers and writers on their own: the If header (RFC 4918 10.4) and its
 * evaluation, Depth, Destination, Timeout, Overwrite, Range, PROPFIND/PROPPATCH/LOCK bodies
 * through the XML guard, and multistatus output (namespace-correct: parsed back).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseLockinfo, parseProppatch, parsePropfind } from '../src/transports/dav/bodies.js';
import {
  HeaderError,
  evaluateIf,
  localPath,
  parseDepth,
  parseEtagList,
  parseIf,
  parseOverwrite,
  parseRange,
  parseTimeout,
  pathSegments,
  hrefOf,
  type ResourceState,
} from '../src/transports/dav/headers.js';
import { propfindEntry, proppatchEntry, type PropertyNode } from '../src/transports/dav/properties.js';
import { DavBodyError, errorXml, multistatusXml, parseDavBody, standalone, type DavElement } from '../src/transports/dav/xml.js';
import { DEFAULT_XML_LIMITS, parseXml } from '../src/xml/parser.js';

const body = (xml: string): DavElement => parseDavBody(xml, DEFAULT_XML_LIMITS);

describe('DAV headers', () => {
  test('Depth, Overwrite and Timeout', () => {
    assert.equal(parseDepth(undefined, 'infinity'), 'infinity');
    assert.equal(parseDepth('0', 'infinity'), '0');
    assert.equal(parseDepth(' Infinity ', '0'), 'infinity');
    assert.throws(() => parseDepth('2', '0'), HeaderError);
    assert.equal(parseOverwrite(undefined), true);
    assert.equal(parseOverwrite('F'), false);
    assert.throws(() => parseOverwrite('maybe'), HeaderError);
    assert.equal(parseTimeout('Second-3600'), 3600);
    assert.equal(parseTimeout('Infinite, Second-4100000000'), Number.POSITIVE_INFINITY);
    assert.equal(parseTimeout('Extended-1, Second-60'), 60);
    assert.equal(parseTimeout('bogus'), undefined);
    assert.equal(parseTimeout(undefined), undefined);
  });

  test('paths: decoded segments; "." and ".." refused; hrefs encoded back', () => {
    assert.deepEqual(pathSegments('/dav/files/u/a%20b/c%C3%A9/'), ['dav', 'files', 'u', 'a b', 'cé']);
    assert.throws(() => pathSegments('/dav/files/u/../v'), HeaderError);
    assert.throws(() => pathSegments('/dav/files/u/%2e%2e/v'), HeaderError);
    assert.throws(() => pathSegments('/dav/%ZZ'), HeaderError);
    assert.throws(() => pathSegments('/dav/a%2Fb'), HeaderError);
    assert.equal(hrefOf(['a b', "x'y"], true), "/a%20b/x%27y/");
  });

  test('Destination: an absolute URI of this host or a path; another host is 502', () => {
    assert.equal(localPath('http://h:8100/dav/files/u/x', 'h:8100'), '/dav/files/u/x');
    assert.equal(localPath('/dav/files/u/x?q', 'h'), '/dav/files/u/x');
    assert.throws(
      () => localPath('http://elsewhere/dav/files/u/x', 'h:8100'),
      (err: unknown) => err instanceof HeaderError && err.status === 502,
    );
    assert.throws(() => localPath('ftp://h/x', 'h'), HeaderError);
    assert.throws(() => localPath('not a uri', 'h'), HeaderError);
  });

  test('Range: one range, suffixes, open ends; past the end is unsatisfiable; others ignored', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=50-500', 100), { start: 50, end: 99 });
    assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
    assert.equal(parseRange('bytes=0-1,5-6', 100), undefined);
    assert.equal(parseRange('items=0-1', 100), undefined);
    assert.equal(parseRange(undefined, 100), undefined);
  });

  test('If-Match lists', () => {
    assert.equal(parseEtagList('*'), '*');
    assert.deepEqual(parseEtagList('"a", W/"b"'), ['"a"', 'W/"b"']);
  });

  test('If: untagged and tagged lists, Not, entity tags; malformed ones refused', () => {
    assert.deepEqual(parseIf('(<opaquelocktoken:a> ["e1"]) (Not <DAV:no-lock>)'), [
      { resource: undefined, conditions: [{ not: false, token: 'opaquelocktoken:a' }, { not: false, etag: '"e1"' }] },
      { resource: undefined, conditions: [{ not: true, token: 'DAV:no-lock' }] },
    ]);
    assert.deepEqual(parseIf('<http://h/dav/files/u/x> (<t1>) <http://h/dav/files/u/y> (NOT ["e"])'), [
      { resource: 'http://h/dav/files/u/x', conditions: [{ not: false, token: 't1' }] },
      { resource: 'http://h/dav/files/u/y', conditions: [{ not: true, etag: '"e"' }] },
    ]);
    for (const bad of ['', '(', '()', '(<a>', '<x>', '(<a>) <x> (<b>)', '(junk)']) {
      assert.throws(() => parseIf(bad), HeaderError, bad);
    }
  });

  test('If evaluation: one list holding is enough; tokens are submitted; the request etag is kept', async () => {
    const state: ResourceState = { etag: '"e1"', lockTokens: new Set(['opaquelocktoken:a']) };
    const at = async (): Promise<ResourceState> => state;
    let outcome = await evaluateIf(parseIf('(<opaquelocktoken:a> ["e1"])'), at);
    assert.deepEqual(outcome, { holds: true, tokens: ['opaquelocktoken:a'], etag: '"e1"' });
    outcome = await evaluateIf(parseIf('(<opaquelocktoken:a> ["bad"]) (Not <DAV:no-lock> ["bad"])'), at);
    assert.equal(outcome.holds, false);
    outcome = await evaluateIf(parseIf('(<opaquelocktoken:foobar>) (Not <DAV:no-lock>)'), at);
    assert.equal(outcome.holds, true);
    assert.deepEqual(outcome.tokens, ['opaquelocktoken:foobar']);
    outcome = await evaluateIf(parseIf('<http://h/other> (<opaquelocktoken:a>)'), async (r) => (r === undefined ? state : undefined));
    assert.equal(outcome.holds, false);
  });
});

describe('DAV bodies', () => {
  test('PROPFIND: prop names in their namespaces, allprop with include, propname; empty means allprop', () => {
    assert.deepEqual(parsePropfind(body('<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><x:a xmlns:x="urn:x"/><b xmlns=""/></D:prop></D:propfind>')), {
      kind: 'prop',
      names: ['{DAV:}getetag', '{urn:x}a', 'b'],
    });
    assert.deepEqual(parsePropfind(body('<propfind xmlns="DAV:"><allprop/><include><quota-used-bytes/></include></propfind>')), {
      kind: 'allprop',
      include: ['{DAV:}quota-used-bytes'],
    });
    assert.deepEqual(parsePropfind(body('<propfind xmlns="DAV:"><propname/></propfind>')), { kind: 'propname' });
    assert.deepEqual(parsePropfind(undefined), { kind: 'allprop', include: [] });
    assert.throws(() => parsePropfind(body('<x xmlns="DAV:"/>')), DavBodyError);
    assert.throws(() => body('<D:propfind><D:prop/></D:propfind>'), DavBodyError, 'undeclared prefix');
    assert.throws(() => body('<a><b></a>'), DavBodyError, 'malformed');
  });

  test('the XML guard applies: too deep a body is refused', () => {
    const deep = '<a>'.repeat(80) + '</a>'.repeat(80);
    assert.throws(() => body(deep), DavBodyError);
  });

  test('PROPPATCH: set and remove in order; values kept with the namespaces they use', () => {
    const updates = parseProppatch(
      body(
        '<D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://example.com/z"><D:set><D:prop><Z:author><Z:name>Jim &amp; co</Z:name></Z:author></D:prop></D:set>' +
          '<D:remove><D:prop><Z:old/></D:prop></D:remove></D:propertyupdate>',
      ),
    );
    assert.deepEqual(
      updates.map((u) => [u.action, u.name]),
      [
        ['set', '{http://example.com/z}author'],
        ['remove', '{http://example.com/z}old'],
      ],
    );
    const kept = parseXml(updates[0]!.xml);
    assert.equal(kept.attrs['xmlns:Z'], 'http://example.com/z');
    assert.equal(kept.element('Z:name')?.text(), 'Jim & co');
    assert.throws(() => parseProppatch(body('<D:propertyupdate xmlns:D="DAV:"/>')), DavBodyError);
  });

  test('a dead property in no namespace stays in none', () => {
    const root = body('<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><nons xmlns="">v</nons></D:prop></D:set></D:propertyupdate>');
    const [u] = parseProppatch(root);
    assert.equal(u!.name, 'nons');
    assert.equal(standalone(u!.element), '<nons xmlns="">v</nons>');
  });

  test('LOCK: scope, type, owner; an empty body is a refresh; other types are refused', () => {
    const info = parseLockinfo(
      body('<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>mailto:u@x</D:href></D:owner></D:lockinfo>'),
    );
    assert.equal(info?.scope, 'exclusive');
    assert.equal(info?.type, 'write');
    assert.match(info!.ownerXml, /^<D:owner xmlns:D="DAV:"><D:href>mailto:u@x<\/D:href><\/D:owner>$/);
    assert.equal(parseLockinfo(undefined), undefined);
    assert.throws(() => parseLockinfo(body('<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope></D:lockinfo>')), DavBodyError);
    assert.throws(
      () => parseLockinfo(body('<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><x:read xmlns:x="urn:x"/></D:locktype></D:lockinfo>')),
      (err: unknown) => err instanceof DavBodyError && err.status === 422,
    );
  });
});

describe('DAV responses', () => {
  const node: PropertyNode = {
    href: '/dav/files/u/a%20b',
    live: new Map([
      ['{DAV:}getetag', () => '"e1"'],
      ['{DAV:}resourcetype', () => ''],
      ['{DAV:}quota-used-bytes', () => '10'],
    ]),
    hidden: new Set(['{DAV:}quota-used-bytes']),
    dead: async () => [{ name: '{urn:x}color', xml: '<x:color xmlns:x="urn:x">red</x:color>' }],
  };

  test('a multistatus is namespace-correct XML: 200 and 404 propstats, foreign namespaces declared', async () => {
    const entry = await propfindEntry(node, { kind: 'prop', names: ['{DAV:}getetag', '{urn:x}color', '{urn:y}missing', 'bare'] });
    const xml = multistatusXml([entry]).toString('utf8');
    const parsed = parseXml(xml);
    assert.equal(parsed.name, 'D:multistatus');
    assert.equal(parsed.attrs['xmlns:D'], 'DAV:');
    const propstats = parsed.element('D:response')!.elements('D:propstat');
    assert.equal(propstats.length, 2);
    assert.equal(propstats[0]!.element('D:status')!.text(), 'HTTP/1.1 200 OK');
    assert.equal(propstats[1]!.element('D:status')!.text(), 'HTTP/1.1 404 Not Found');
    assert.match(xml, /<x:missing xmlns:x="urn:y"\/>/);
    assert.match(xml, /<bare xmlns=""\/>/);
  });

  test('allprop leaves hidden live properties out unless included; propname names everything', async () => {
    const all = multistatusXml([await propfindEntry(node, { kind: 'allprop', include: [] })]).toString('utf8');
    assert.doesNotMatch(all, /quota-used-bytes/);
    assert.match(all, /<x:color xmlns:x="urn:x">red<\/x:color>/);
    const included = multistatusXml([await propfindEntry(node, { kind: 'allprop', include: ['{DAV:}quota-used-bytes'] })]).toString('utf8');
    assert.match(included, /<D:quota-used-bytes>10<\/D:quota-used-bytes>/);
    const names = multistatusXml([await propfindEntry(node, { kind: 'propname' })]).toString('utf8');
    assert.match(names, /<D:getetag\/>/);
    assert.match(names, /<x:color xmlns:x="urn:x"\/>/);
  });

  test('PROPPATCH of a protected property: 403 for it, 424 for the others, nothing applied', async () => {
    let applied = false;
    const updates = parseProppatch(
      body('<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getetag>x</D:getetag><y:a xmlns:y="urn:y">1</y:a></D:prop></D:set></D:propertyupdate>'),
    );
    const entry = await proppatchEntry(node, updates, async () => {
      applied = true;
    });
    assert.equal(applied, false);
    assert.deepEqual([...entry.propstats!.keys()], [403, 424]);
  });

  test('error bodies name their condition', () => {
    const parsed = parseXml(errorXml('{DAV:}lock-token-matches-request-uri'));
    assert.equal(parsed.name, 'D:error');
    assert.ok(parsed.element('D:lock-token-matches-request-uri'));
  });
});
