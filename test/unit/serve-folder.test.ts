/** `browse --serve`'s static server: answers this machine's requests for the site's files, and nothing else. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import path from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { serveFolder } from '../../lib/cli/browse.js';
import { tempDir } from '../helpers/run-fixtures.js';

let port = 0;
let close: () => void = () => {};

beforeAll(async () => {
  const root = tempDir('serve-folder');
  const site = path.join(root, 'site');
  mkdirSync(site);
  writeFileSync(path.join(site, 'index.html'), '<p>index</p>');
  writeFileSync(path.join(root, 'secret.txt'), 'outside the site');
  const served = await serveFolder(site, 0);
  port = served.port;
  close = () => served.server.close();
});
afterAll(() => close());

/** Status and body of GET `rawPath` (sent as is) with the given Host header. */
function get(rawPath: string, host = `127.0.0.1:${port}`): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: rawPath, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

it('serves the site to 127.0.0.1 and localhost', async () => {
  expect(await get('/')).toEqual({ status: 200, body: '<p>index</p>' });
  expect((await get('/index.html', `localhost:${port}`)).status).toBe(200);
});

it('answers a malformed path with 400 and goes on serving', async () => {
  expect((await get('/%E0%A4%A')).status).toBe(400);
  expect((await get('/')).status).toBe(200);
});

it('refuses other host names (a rebound name) and paths outside the site', async () => {
  expect((await get('/', `attacker.example:${port}`)).status).toBe(421);
  expect((await get('/', '127.0.0.1:1')).status).toBe(421);
  for (const p of ['/../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt']) expect([403, 404]).toContain((await get(p)).status);
});
