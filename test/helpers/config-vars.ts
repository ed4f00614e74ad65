// The environment variables src/config.ts reads, from its source: what docs and deploy files must match.
import { readFileSync } from 'node:fs';
import { ROOT } from './server.js';

export function configVariables(): Set<string> {
  const source = readFileSync(`${ROOT}src/config.ts`, 'utf8');
  const read = new Set([...source.matchAll(/(?:env\.get|int|list|optional)\('([A-Z0-9_]+)'/g)].map((m) => m[1]!));
  // Read only to derive the INSTANCE_ID default, not a setting.
  read.delete('ECS_CONTAINER_METADATA_URI_V4');
  return read;
}
