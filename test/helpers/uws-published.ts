// The uWebSockets.js files exactly as published: the lockfile's version, from npm (its cache after `npm ci`).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Test } from 'tap';
import { ROOT } from './server.js';
import { tempDir } from './temp.js';

/** Unpacks the named files of the published package into a fresh directory and returns it. */
export function unpackPublished(t: Test, files: readonly string[]): string {
  const lock = JSON.parse(readFileSync(`${ROOT}package-lock.json`, 'utf8')) as { packages: Record<string, { name: string; version: string }> };
  const { name, version } = lock.packages['node_modules/uWebSockets.js']!;
  const dir = tempDir(t, 'uws-published');
  execFileSync('npm', ['pack', `${name}@${version}`, '--prefer-offline', '--silent', '--pack-destination', dir], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
  execFileSync('tar', ['-xzf', tarball, '--strip-components=1', ...files.map((f) => `package/${f}`)], { cwd: dir });
  return dir;
}
