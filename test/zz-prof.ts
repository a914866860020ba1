import { startTestServer } from './helpers.js';
const server = await startTestServer({});
const address = await server.newAccount('prof');
const account = (await server.services.accounts.find(address))!;
const files = server.services.files;
await files.createDirectory(account, 'dir');
for (let i = 0; i < 1000; i++) await files.write(account, `dir/file-${String(i).padStart(4, '0')}.txt`, Buffer.from('x'.repeat(100)), { kind: 'replace' });
const auth = 'Basic ' + Buffer.from(`${address}:secret`).toString('base64');
const body = '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/></D:prop></D:propfind>';
const time = async (label: string, n: number, fn: () => Promise<unknown>) => {
  for (let i = 0; i < 10; i++) await fn();
  const t = performance.now();
  for (let i = 0; i < n; i++) await fn();
  console.log(label, ((performance.now() - t) / n).toFixed(2), 'ms');
};
await time('store list', 200, () => server.services.store.files.list(account.id, 'dir'));
await time('service list', 200, () => files.list(account, 'dir'));
await time('http propfind', 200, async () => {
  const r = await fetch(`http://127.0.0.1:${server.ports.http}/dav/files/${address}/dir/`, { method: 'PROPFIND', body, headers: { Authorization: auth, Depth: '1' } });
  await r.arrayBuffer();
});
await server.stop();
